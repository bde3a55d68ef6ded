"""The notification core: grouping timing, dedup, quiet hours, digests, restart.

Time is a fake clock: ``write`` and ``flush_due`` run at the instants the test
sets, nothing sleeps. The flusher and sender tasks are off (``run_tasks=False``)
except where a test says otherwise; messages are read from the outbox.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from socd.app.deadletter import DeadLetter
from socd.config import NotificationsConfig, NotifierConfig
from socd.notify.core import NotificationCore
from socd.notify.sender import SystemClock, notification_from_json
from socd.plugins import Notification
from tests.unit.conftest import sample_value

VN = ZoneInfo("Asia/Ho_Chi_Minh")
T0 = datetime(2026, 11, 16, 10, 0, tzinfo=VN).timestamp()  # a working day, 10:00


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now

    async def sleep(self, secs: float) -> None:
        self.now += secs
        await asyncio.sleep(0)


class Recorder:
    """A notifier that keeps what it is sent."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sent: list[Notification] = []

    async def start(self) -> None: ...

    async def healthcheck(self) -> None: ...

    async def send(self, notification: Notification) -> None:
        self.sent.append(notification)

    async def close(self) -> None: ...


def alert(i: int, rule: str = "net-port-scan", severity: str = "high", unit: str = "Sở Y tế",
          src: str | None = None) -> dict[str, Any]:
    return {
        "@timestamp": "2026-11-16T03:00:00Z",
        "event": {"kind": "alert", "hash": f"hash{i:06d}"},
        "rule": {"id": rule, "name": f"Quy tắc {rule}"},
        "source": {"ip": src or f"203.0.113.{i % 250}"},
        "socd": {"severity": severity, "unit": unit, "layer": 2, "asset_kind": "server"},
    }


Factory = Callable[..., NotificationCore]


@pytest.fixture
async def make_core(tmp_path: Path, dead_letter: DeadLetter, uid: str
                    ) -> AsyncIterator[Factory]:
    cores: list[NotificationCore] = []

    def make(doc: dict[str, Any] | None = None, *, clock: Any = None,
             notifiers: tuple[str, ...] = ("chat",), run_tasks: bool = False,
             path: Path | None = None) -> NotificationCore:
        doc = doc or {}
        doc.setdefault("routes", [{"name": "all", "notifiers": list(notifiers)}])
        cfg = NotificationsConfig.model_validate(doc)
        core = NotificationCore(
            cfg, {n: Recorder(f"{uid}{n}") for n in notifiers},
            {n: NotifierConfig.model_validate({"type": "test"}) for n in notifiers},
            path=str(path or tmp_path / "notify.db"), dead_letter=dead_letter,
            clock=clock or FakeClock(T0), run_tasks=run_tasks)
        cores.append(core)
        return core

    yield make
    for core in cores:
        await core.close()


def outbox(core: NotificationCore, notifier: str = "chat") -> list[Notification]:
    assert core.store is not None
    out = []
    for row_id in core.senders[notifier].queue:
        row = core.store.outbox_get(row_id)
        assert row is not None
        out.append(notification_from_json(row[0]))
    return out


def grouping(**kw: Any) -> dict[str, Any]:
    base = {"group_wait_secs": 30, "group_interval_secs": 300, "repeat_interval_secs": 3600,
            "group_by": ["rule.id", "socd.unit"], "dedup_by": ["rule.id", "source.ip"]}
    return {**base, **kw}


async def test_group_wait_then_group_interval(make_core: Factory) -> None:
    clock = FakeClock(T0)
    core = make_core({"grouping": grouping()}, clock=clock)
    await core.start()
    await core.write([alert(1), alert(2)])
    clock.now = T0 + 10
    await core.write([alert(3, rule="edr-malware")])  # another group
    assert await core.flush_due(T0 + 29.9) == 0
    assert await core.flush_due(T0 + 30) == 1
    first = outbox(core)
    assert [(n.group_key, n.total) for n in first] == [
        ("rule.id=net-port-scan,socd.unit=Sở Y tế", 2)]
    assert await core.flush_due(T0 + 39.9) == 0
    assert await core.flush_due(T0 + 40) == 1  # the other group's own group_wait
    # A new alert in the first group: not before group_interval after its message.
    clock.now = T0 + 100
    await core.write([alert(4)])
    assert await core.flush_due(T0 + 329.9) == 0
    assert await core.flush_due(T0 + 330) == 1
    assert outbox(core)[-1].total == 1
    # Nothing new: nothing is sent again.
    assert await core.flush_due(T0 + 5000) == 0
    # After a quiet spell longer than group_interval a new alert waits group_wait only.
    clock.now = T0 + 6000
    await core.write([alert(5)])
    assert await core.flush_due(T0 + 6029) == 0
    assert await core.flush_due(T0 + 6030) == 1
    assert len(outbox(core)) == 4


async def test_zero_wait_sends_at_once(make_core: Factory) -> None:
    core = make_core({"grouping": grouping(group_wait_secs=0)})
    await core.start()
    await core.write([alert(1)])
    assert core.next_due() == T0
    assert await core.flush_due(T0) == 1


async def test_dedup_within_repeat_interval(make_core: Factory) -> None:
    clock = FakeClock(T0)
    core = make_core({"grouping": grouping()}, clock=clock)
    await core.start()
    before = {o: sample_value("socd_notification_alerts_total", outcome=o)
              for o in ("routed", "deduplicated")}
    same = alert(1, src="198.51.100.7")
    await core.write([same, alert(2, src="198.51.100.7")])  # same rule + source: a repeat
    clock.now = T0 + 60
    await core.write([alert(3, src="198.51.100.7"), alert(4, src="198.51.100.8")])
    assert sample_value("socd_notification_alerts_total", outcome="routed") \
        - before["routed"] == 2
    assert sample_value("socd_notification_alerts_total", outcome="deduplicated") \
        - before["deduplicated"] == 2
    await core.flush_due(T0 + 60)
    [message] = outbox(core)
    assert message.total == 2
    assert [a["event"]["hash"] for a in message.alerts] == ["hash000001", "hash000004"]
    assert "(+2 cảnh báo lặp lại đã gộp)" in message.text
    # After repeat_interval the same alert is news again.
    clock.now = T0 + 3601
    await core.write([alert(5, src="198.51.100.7")])
    await core.flush_due(T0 + 4000)
    assert outbox(core)[-1].total == 1
    assert "lặp lại" not in outbox(core)[-1].text


async def test_no_dedup_when_repeat_interval_is_zero(make_core: Factory) -> None:
    core = make_core({"grouping": grouping(repeat_interval_secs=0)})
    await core.start()
    await core.write([alert(1, src="198.51.100.7"), alert(2, src="198.51.100.7")])
    await core.flush_due(T0 + 30)
    assert outbox(core)[0].total == 2


async def test_unrouted_alerts_are_counted(make_core: Factory) -> None:
    core = make_core({"routes": [{"name": "high", "match": {"min_severity": "high"},
                                  "notifiers": ["chat"]}]})
    await core.start()
    before = sample_value("socd_notification_alerts_total", outcome="unrouted")
    await core.write([alert(1, severity="low"), alert(2, severity="medium"), alert(3)])
    assert sample_value("socd_notification_alerts_total", outcome="unrouted") - before == 2
    assert core.store is not None
    assert core.store.counts()["pending"] == 1


async def test_continue_routes_feed_each_notifier_once(make_core: Factory) -> None:
    core = make_core({
        "grouping": grouping(group_wait_secs=0),
        "routes": [
            {"name": "critical", "match": {"severity": ["critical"]}, "notifiers": ["irt"],
             "continue": True},
            {"name": "all", "notifiers": ["chat"]},
        ]}, notifiers=("irt", "chat"))
    await core.start()
    before = sample_value("socd_notification_alerts_total", outcome="routed")
    await core.write([alert(1, severity="critical"), alert(2)])
    assert sample_value("socd_notification_alerts_total", outcome="routed") - before == 2
    await core.flush_due(T0)
    assert [n.total for n in outbox(core, "irt")] == [1]
    assert [n.route for n in outbox(core, "irt")] == ["critical"]
    assert [n.total for n in outbox(core, "chat")] == [2]


async def test_one_message_per_notifier_of_a_route(make_core: Factory) -> None:
    core = make_core({"grouping": grouping(group_wait_secs=0)}, notifiers=("chat", "mail"))
    await core.start()
    await core.write([alert(1)])
    await core.flush_due(T0)
    chat, mail = outbox(core, "chat"), outbox(core, "mail")
    assert len(chat) == len(mail) == 1
    assert chat[0].id == mail[0].id  # same message, same stable id


async def test_quiet_hours_across_midnight(make_core: Factory) -> None:
    night = datetime(2026, 11, 16, 23, 0, tzinfo=VN).timestamp()
    morning = datetime(2026, 11, 17, 6, 30, tzinfo=VN).timestamp()
    clock = FakeClock(night)
    core = make_core({
        "grouping": grouping(),
        "quiet_hours": {"start": "22:00", "end": "06:30", "override_severities": ["critical"]},
        "routes": [{"name": "irt", "match": {"severity": ["critical"]}, "notifiers": ["chat"],
                    "quiet_hours": False, "continue": True},
                   {"name": "all", "notifiers": ["chat"]}],
    }, clock=clock)
    await core.start()
    before = {o: sample_value("socd_notification_alerts_total", outcome=o)
              for o in ("routed", "deferred_quiet")}
    await core.write([alert(1, severity="medium"), alert(2, severity="critical")])
    clock.now = night + 3 * 3600  # 02:00, still quiet
    await core.write([alert(3, severity="high"), alert(4, severity="medium", rule="edr-x")])
    assert sample_value("socd_notification_alerts_total", outcome="routed") \
        - before["routed"] == 1
    assert sample_value("socd_notification_alerts_total", outcome="deferred_quiet") \
        - before["deferred_quiet"] == 3
    # The critical alert goes out at once (group_wait), on both routes.
    assert await core.flush_due(night + 30) == 2
    assert {(n.route, n.total, n.severity) for n in outbox(core)} == {
        ("irt", 1, "nghiêm trọng"), ("all", 1, "nghiêm trọng")}
    # Nothing else before the end of the quiet period...
    assert core.next_due() == morning
    assert await core.flush_due(morning - 1) == 0
    # ...then one digest per group.
    assert await core.flush_due(morning) == 2
    digests = outbox(core)[2:]
    assert sorted((n.group_key, n.total) for n in digests) == [
        ("rule.id=edr-x,socd.unit=Sở Y tế", 1), ("rule.id=net-port-scan,socd.unit=Sở Y tế", 2)]
    assert all("giữ lại trong khung giờ không làm phiền" in n.text for n in digests)
    assert await core.flush_due(morning + 86400) == 0


async def test_quiet_hours_release_joins_the_ready_alerts(make_core: Factory) -> None:
    night = datetime(2026, 11, 16, 6, 0, tzinfo=VN).timestamp()
    clock = FakeClock(night)
    core = make_core({"grouping": grouping(),
                      "quiet_hours": {"start": "22:00", "end": "06:30"}}, clock=clock)
    await core.start()
    await core.write([alert(1)])  # held until 06:30
    clock.now = night + 1790  # 06:29:50, still quiet
    await core.write([alert(2)])
    assert await core.flush_due(night + 1799) == 0
    assert await core.flush_due(night + 1800) == 1  # 06:30: one digest of both
    assert outbox(core)[0].total == 2
    clock.now = night + 1805  # 06:30:05: no longer quiet, sent normally...
    await core.write([alert(3)])
    # ...but group_interval after the digest.
    assert await core.flush_due(night + 1800 + 299) == 0
    assert await core.flush_due(night + 1800 + 300) == 1
    assert outbox(core)[1].total == 1
    assert "không làm phiền" not in outbox(core)[1].text


async def test_digest_truncation(make_core: Factory) -> None:
    core = make_core({"grouping": grouping(digest_max_alerts=3, repeat_interval_secs=0)})
    await core.start()
    events = [alert(i, severity="medium") for i in range(10)]
    events[6]["socd"]["severity"] = "critical"
    await core.write(events)
    await core.flush_due(T0 + 30)
    [message] = outbox(core)
    assert message.total == 10
    assert message.severity == "nghiêm trọng"
    # The most severe first, then the earliest; listed in arrival order.
    assert [a["event"]["hash"] for a in message.alerts] == [
        "hash000000", "hash000001", "hash000006"]
    assert message.title == "[socd] 10 cảnh báo nghiêm trọng — Quy tắc net-port-scan (Sở Y tế)"
    assert "… và 7 cảnh báo khác" in message.text
    assert sum(line.startswith("•") for line in message.text.splitlines()) == 3


async def test_notification_id_is_stable_and_unique(make_core: Factory) -> None:
    core = make_core({"grouping": grouping(group_wait_secs=0)})
    await core.start()
    await core.write([alert(1)])
    await core.flush_due(T0)
    await core.write([alert(2)])
    await core.flush_due(T0 + 300)
    ids = [n.id for n in outbox(core)]
    assert len(set(ids)) == 2
    assert all(len(i) == 32 for i in ids)


async def test_restart_keeps_pending_groups_outbox_and_dedup(make_core: Factory,
                                                             tmp_path: Path) -> None:
    clock = FakeClock(T0)
    path = tmp_path / "restart.db"
    first = make_core({"grouping": grouping()}, clock=clock, path=path)
    await first.start()
    await first.write([alert(1), alert(2, rule="edr-x")])
    await first.flush_due(T0 + 30)  # both groups -> outbox, not sent (no sender task)
    clock.now = T0 + 40
    await first.write([alert(3), alert(4, src="198.51.100.9")])
    await first.close()

    second = make_core({"grouping": grouping()}, clock=clock, path=path)
    await second.start()
    assert [n.total for n in outbox(second)] == [1, 1]
    group = second.groups["all\x1frule.id=net-port-scan,socd.unit=Sở Y tế"]
    assert (group.ready, group.last_flush, group.first_ready) == (2, T0 + 30, T0 + 40)
    # Dedup state survived: alert 1's key (rule + source) is still known.
    before = sample_value("socd_notification_alerts_total", outcome="deduplicated")
    await second.write([alert(5, src=alert(1)["source"]["ip"])])
    assert sample_value("socd_notification_alerts_total", outcome="deduplicated") - before == 1
    # The pending group is due group_interval after its last message, as before.
    assert await second.flush_due(T0 + 329) == 0
    assert await second.flush_due(T0 + 330) == 1
    assert [n.total for n in outbox(second)] == [1, 1, 2]
    assert "(+1 cảnh báo lặp lại đã gộp)" in outbox(second)[-1].text
    assert second.store is not None
    assert second.store.counts()["pending"] == 0


async def test_restart_sends_the_outbox(make_core: Factory, tmp_path: Path) -> None:
    path = tmp_path / "send.db"
    first = make_core({"grouping": grouping(group_wait_secs=0)}, path=path)
    await first.start()
    await first.write([alert(1), alert(2, rule="edr-x")])
    await first.flush_due(T0)
    await first.close()
    second = make_core({"grouping": grouping(group_wait_secs=0)}, path=path, run_tasks=True)
    await second.start()
    recorder = second.notifiers["chat"]
    assert isinstance(recorder, Recorder)
    for _ in range(1000):
        if len(recorder.sent) == 2:
            break
        await asyncio.sleep(0.01)
    assert [n.group_key for n in recorder.sent] == ["rule.id=net-port-scan,socd.unit=Sở Y tế",
                                                   "rule.id=edr-x,socd.unit=Sở Y tế"]
    for _ in range(1000):
        if not second.senders["chat"].queue:
            break
        await asyncio.sleep(0.01)
    assert second.store is not None
    assert second.store.counts()["outbox"] == 0


async def test_flusher_task_sends_without_being_called(make_core: Factory) -> None:
    # Real clock, real tasks: a group with group_wait 0 goes out by itself.
    core = make_core({"grouping": grouping(group_wait_secs=0)}, clock=SystemClock(),
                     run_tasks=True)
    await core.start()
    await core.write([alert(1), alert(2)])
    recorder = core.notifiers["chat"]
    assert isinstance(recorder, Recorder)
    for _ in range(1000):
        if recorder.sent:
            break
        await asyncio.sleep(0.01)
    assert [n.total for n in recorder.sent] == [2]


async def test_route_removed_by_reload_keeps_its_notifiers(make_core: Factory,
                                                           tmp_path: Path) -> None:
    path = tmp_path / "routes.db"
    first = make_core({"grouping": grouping(),
                       "routes": [{"name": "old", "notifiers": ["chat"]}]}, path=path)
    await first.start()
    await first.write([alert(1)])
    await first.close()
    second = make_core({"grouping": grouping(),
                        "routes": [{"name": "new", "notifiers": ["chat"]}]}, path=path)
    await second.start()
    assert await second.flush_due(T0 + 30) == 1
    assert outbox(second)[0].route == "old"


async def test_group_without_notifier_is_dead_lettered(make_core: Factory, tmp_path: Path,
                                                       dead_letter: DeadLetter) -> None:
    from socd.app.deadletter import read

    path = tmp_path / "gone.db"
    first = make_core({"grouping": grouping(),
                       "routes": [{"name": "old", "notifiers": ["gone"]}]}, path=path,
                      notifiers=("gone",))
    await first.start()
    await first.write([alert(1)])
    await first.close()
    second = make_core({"grouping": grouping()}, path=path)
    await second.start()
    assert await second.flush_due(T0 + 30) == 0
    entries = read(dead_letter.path)
    assert [(e["stage"], e["reason"]) for e in entries] == [("notify", "no_notifier")]
    assert b"hash000001" in entries[0]["raw"]
    assert second.store is not None
    assert second.store.counts()["pending"] == 0


async def test_write_after_close_fails(make_core: Factory) -> None:
    from socd.errors import SinkError

    core = make_core()
    await core.start()
    await core.close()
    with pytest.raises(SinkError):
        await core.write([alert(1)])


async def test_healthcheck(make_core: Factory) -> None:
    core = make_core()
    await core.healthcheck()  # not started: opens and closes the file
    await core.start()
    await core.healthcheck()


async def test_unserializable_alert_is_dead_lettered_and_others_go_on(
        make_core: Factory, dead_letter: DeadLetter) -> None:
    from socd.app.deadletter import read

    core = make_core({"grouping": grouping(group_wait_secs=0)})
    await core.start()
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(300):  # deeper than JSON encoders accept
        node["x"] = {}
        node = node["x"]
    bad = alert(1)
    bad["socd"]["vendor"] = deep
    before = sample_value("socd_notification_alerts_total", outcome="unrouted")
    await core.write([bad, alert(2)])
    assert sample_value("socd_notification_alerts_total", outcome="unrouted") - before == 1
    assert [(e["stage"], e["reason"]) for e in read(dead_letter.path)] == [
        ("notify", "unserializable")]
    assert await core.flush_due(T0) == 1
    assert outbox(core)[0].alerts[0]["event"]["hash"] == "hash000002"


async def test_a_redelivered_alert_is_notified_once(make_core: Factory) -> None:
    """The same alert delivered again (a journal replay after a crash, a Kafka worker's
    batch processed again after a rebalance: same event.hash) is taken once, even
    without a repeat interval and within one batch; the seen-set is bounded."""
    from socd.notify import core as core_mod

    core = make_core({"grouping": grouping(repeat_interval_secs=0)})
    await core.start()
    before = sample_value("socd_notification_alerts_total", outcome="deduplicated")
    await core.write([alert(1), alert(2), alert(1)])
    await core.write([alert(2), alert(3)])
    assert sample_value("socd_notification_alerts_total", outcome="deduplicated") \
        - before == 2
    await core.flush_due(T0 + 30)
    [message] = outbox(core)
    assert [a["event"]["hash"] for a in message.alerts] == [
        "hash000001", "hash000002", "hash000003"]
    for i in range(10, 10 + core_mod.SEEN_MAX):
        core.seen[f"other{i}"] = None
    await core.write([alert(4)])
    assert len(core.seen) == core_mod.SEEN_MAX
    assert "hash000001" not in core.seen  # the oldest forgotten first
