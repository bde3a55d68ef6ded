"""The send queue: rate limit, retries with backoff in order, dead letters.

Messages are put in the outbox through the core (one group per alert, sent at
once); the sender is then stepped by hand with a fake clock whose ``sleep``
only moves time forward, so backoffs and rate limits cost no real time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from socd.app.deadletter import DeadLetter, read
from socd.config import NotificationsConfig, NotifierConfig
from socd.errors import NotifyError
from socd.notify.core import NotificationCore
from socd.notify.sender import Sender, TokenBucket
from socd.plugins import Notification
from socd.retry import backoff
from tests.unit.conftest import sample_value

T0 = 1_794_800_000.0


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now
        self.slept: list[float] = []

    def time(self) -> float:
        return self.now

    async def sleep(self, secs: float) -> None:
        self.slept.append(secs)
        self.now += secs
        await asyncio.sleep(0)


class Flaky:
    """A notifier whose ``send`` outcomes are scripted: an exception to raise, "hang"
    to never answer, or None to accept."""

    def __init__(self, name: str, script: list[Any] | None = None) -> None:
        self.name = name
        self.script = list(script or [])
        self.sent: list[Notification] = []
        self.attempts: list[str] = []
        self.started = 0
        self.closed = 0

    async def start(self) -> None:
        self.started += 1

    async def healthcheck(self) -> None: ...

    async def send(self, notification: Notification) -> None:
        self.attempts.append(notification.alerts[0]["event"]["hash"])
        outcome = self.script.pop(0) if self.script else None
        if outcome == "hang":
            await asyncio.Event().wait()
        if isinstance(outcome, BaseException):
            raise outcome
        self.sent.append(notification)

    async def close(self) -> None:
        self.closed += 1


def alert(i: int) -> dict[str, Any]:
    return {"@timestamp": "2026-11-16T03:00:00Z",
            "event": {"kind": "alert", "hash": f"m{i}"}, "rule": {"id": "r"},
            "socd": {"severity": "high", "unit": "U"}}


@pytest.fixture
async def queued(tmp_path: Path, dead_letter: DeadLetter, uid: str
                 ) -> AsyncIterator[Callable[..., Any]]:
    cores: list[NotificationCore] = []

    async def make(count: int, script: list[Any] | None = None,
                   **notifier: Any) -> tuple[Sender, Flaky, FakeClock]:
        clock = FakeClock()
        cfg = NotificationsConfig.model_validate({
            "grouping": {"group_by": ["event.hash"], "group_wait_secs": 0,
                         "repeat_interval_secs": 0},
            "routes": [{"name": "all", "notifiers": [uid]}]})
        flaky = Flaky(uid, script)
        core = NotificationCore(cfg, {uid: flaky},
                                {uid: NotifierConfig.model_validate({"type": "t", **notifier})},
                                path=str(tmp_path / "q.db"), dead_letter=dead_letter,
                                clock=clock, run_tasks=False)
        cores.append(core)
        await core.start()
        await core.write([alert(i) for i in range(1, count + 1)])
        assert await core.flush_due() == count
        return core.senders[uid], flaky, clock

    yield make
    for core in cores:
        await core.close()


async def drain(sender: Sender, limit: int = 200) -> None:
    for _ in range(limit):
        if not sender.queue:
            return
        await sender.step()
    raise AssertionError(f"queue not drained after {limit} steps: {list(sender.queue)}")


def hashes(notifications: list[Notification]) -> list[str]:
    return [n.alerts[0]["event"]["hash"] for n in notifications]


async def test_sends_in_order_and_counts(queued: Any, uid: str) -> None:
    sender, flaky, _ = await queued(3)
    assert sample_value("socd_notification_queue_depth", notifier=uid) == 3
    await drain(sender)
    assert hashes(flaky.sent) == ["m1", "m2", "m3"]
    assert sample_value("socd_notifications_sent_total", notifier=uid) == 3
    assert sample_value("socd_notification_queue_depth", notifier=uid) == 0
    assert sample_value("socd_component_up", kind="notifier", name=uid) == 1
    assert flaky.started == 1
    assert sender.store.counts()["outbox"] == 0


async def test_rate_limit_holds_messages_and_never_drops(queued: Any, uid: str) -> None:
    # 6 a minute: a burst of one, then one every 10 s.
    sender, flaky, clock = await queued(4, rate_limit_per_minute=6)
    await drain(sender)
    assert hashes(flaky.sent) == ["m1", "m2", "m3", "m4"]
    assert clock.now - T0 == pytest.approx(30, abs=0.01)
    assert sample_value("socd_notifications_throttled_total", notifier=uid) == 3  # once each


def test_token_bucket_burst_and_refill() -> None:
    clock = FakeClock()
    bucket = TokenBucket(60, clock)  # 1/s, burst of 10
    for _ in range(10):
        assert bucket.wait_time() == 0
        bucket.take()
    assert bucket.wait_time() == pytest.approx(1.0)
    clock.now += 0.5
    assert bucket.wait_time() == pytest.approx(0.5)
    clock.now += 100
    bucket.take()
    assert bucket.tokens == pytest.approx(9.0)  # refilled to the burst size only


async def test_retry_with_backoff_keeps_order(queued: Any, uid: str) -> None:
    script = [NotifyError("HTTP 503"), NotifyError("HTTP 503"), RuntimeError("bug"), None,
              NotifyError("HTTP 429", retry_after=40.0), None, None]
    sender, flaky, clock = await queued(3, script, retry_max_backoff_secs=60)
    await drain(sender)
    assert flaky.attempts == ["m1", "m1", "m1", "m1", "m2", "m2", "m3"]
    assert hashes(flaky.sent) == ["m1", "m2", "m3"]
    assert sample_value("socd_notifications_failed_total", notifier=uid, outcome="retry") == 4
    assert sample_value("socd_notifications_failed_total", notifier=uid,
                        outcome="dead_letter") == 0
    # Exponential with jitter (base 1 s), then retry_after honoured.
    b1, b2, b3, b4 = clock.slept
    assert 0.5 <= b1 <= 1.0
    assert 1.0 <= b2 <= 2.0
    assert 2.0 <= b3 <= 4.0
    assert b4 == pytest.approx(40.0)
    assert sample_value("socd_component_up", kind="notifier", name=uid) == 1


async def test_backoff_is_capped() -> None:
    assert all(backoff(attempt, 30) <= 30 for attempt in range(1, 100))
    assert backoff(50, 30) >= 15
    assert backoff(1, 30, retry_after=3600) == 30  # retry_after up to the cap


async def test_timeout_is_retried(queued: Any, uid: str) -> None:
    sender, flaky, _ = await queued(2, ["hang"], timeout_secs=0.05)
    await sender.step()
    assert sample_value("socd_component_up", kind="notifier", name=uid) == 0
    assert sender.store.outbox_get(sender.queue[0])[1] == 1  # attempts persisted
    await drain(sender)
    assert flaky.attempts == ["m1", "m1", "m2"]
    assert hashes(flaky.sent) == ["m1", "m2"]


async def test_non_retryable_error_is_dead_lettered(queued: Any, uid: str,
                                                    dead_letter: DeadLetter) -> None:
    sender, flaky, _ = await queued(2, [NotifyError("HTTP 400 bad chat id", retryable=False)])
    await drain(sender)
    assert hashes(flaky.sent) == ["m2"]
    [entry] = read(dead_letter.path)
    assert entry["stage"] == f"notify/{uid}"
    assert entry["reason"] == "rejected"
    assert "HTTP 400 bad chat id" in entry["detail"]
    body = orjson.loads(entry["raw"])
    assert body["alerts"][0]["event"]["hash"] == "m1"
    assert {"id", "route", "group_key", "severity", "title", "text", "total"} <= set(body)
    assert sample_value("socd_notifications_failed_total", notifier=uid,
                        outcome="dead_letter") == 1
    assert sender.store.counts()["outbox"] == 0


async def test_max_attempts_dead_letters(queued: Any, uid: str,
                                         dead_letter: DeadLetter) -> None:
    sender, flaky, _ = await queued(2, [NotifyError("down"), NotifyError("down")],
                                    max_attempts=2)
    await drain(sender)
    assert flaky.attempts == ["m1", "m1", "m2"]
    assert [e["reason"] for e in read(dead_letter.path)] == ["max_attempts"]
    assert sample_value("socd_notifications_failed_total", notifier=uid, outcome="retry") == 1
    assert sample_value("socd_notifications_failed_total", notifier=uid,
                        outcome="dead_letter") == 1


async def test_retries_forever_by_default(queued: Any) -> None:
    sender, flaky, _ = await queued(1, [NotifyError("down")] * 30)
    await drain(sender)
    assert len(flaky.attempts) == 31
    assert hashes(flaky.sent) == ["m1"]


async def test_grouped_alerts_are_counted(tmp_path: Path, dead_letter: DeadLetter,
                                          uid: str) -> None:
    cfg = NotificationsConfig.model_validate({
        "grouping": {"group_wait_secs": 0, "repeat_interval_secs": 0, "digest_max_alerts": 2},
        "routes": [{"name": "all", "notifiers": [uid]}]})
    flaky = Flaky(uid)
    core = NotificationCore(cfg, {uid: flaky}, {uid: NotifierConfig.model_validate(
        {"type": "t"})}, path=str(tmp_path / "g.db"), dead_letter=dead_letter,
        clock=FakeClock(), run_tasks=False)
    await core.start()
    try:
        await core.write([alert(i) for i in range(5)])
        await core.flush_due()
        await drain(core.senders[uid])
    finally:
        await core.close()
    assert [n.total for n in flaky.sent] == [5]
    assert len(flaky.sent[0].alerts) == 2
    assert sample_value("socd_notifications_grouped_alerts_total", notifier=uid) == 4
    assert flaky.closed == 1


async def test_notifier_that_fails_to_start_is_retried(queued: Any) -> None:
    sender, flaky, _ = await queued(1)
    calls = []

    async def failing_start() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("broker down")

    flaky.start = failing_start  # type: ignore[method-assign]
    await drain(sender)
    assert len(calls) == 2
    assert hashes(flaky.sent) == ["m1"]
