"""Deadline reminders with a controllable clock and an in-test notifier."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from socd.config import IncidentsConfig
from socd.errors import NotifyError
from socd.incidents.reminders import (
    INCIDENTS_OPEN,
    INCIDENTS_OVERDUE,
    Reminders,
    stage,
)
from socd.incidents.store import IncidentStore
from socd.plugins import Notification

T0 = datetime(2026, 3, 2, 1, 30, tzinfo=UTC)


class Recorder:
    """A notifier that keeps what it is sent; ``fail`` makes the next sends fail."""

    def __init__(self, name: str = "soc") -> None:
        self.name = name
        self.sent: list[Notification] = []
        self.fail = 0

    async def start(self) -> None: ...
    async def healthcheck(self) -> None: ...
    async def close(self) -> None: ...

    async def send(self, notification: Notification) -> None:
        if self.fail:
            self.fail -= 1
            raise NotifyError("receiver down", retryable=True)
        self.sent.append(notification)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[IncidentStore]:
    s = IncidentStore(str(tmp_path / "incidents.db"))
    yield s
    s.close()


def test_stage() -> None:
    due = T0 + timedelta(days=5)
    offsets = [48.0, 24.0]
    assert stage(due, due - timedelta(hours=49), offsets) is None
    assert stage(due, due - timedelta(hours=48), offsets) == "before_48h"
    assert stage(due, due - timedelta(hours=30), offsets) == "before_48h"
    assert stage(due, due - timedelta(hours=24), offsets) == "before_24h"
    assert stage(due, due, offsets) == "overdue"


async def test_each_reminder_once_per_offset(store: IncidentStore) -> None:
    inc = store.open_incident(title="Lộ lọt dữ liệu cổng dịch vụ công", by="an", alerts=[],
                              discovered=T0, now=T0)
    clock = Clock(T0)
    recorder, other = Recorder("soc"), Recorder("email")
    cfg = IncidentsConfig(notifiers=["soc", "email"])
    reminders = Reminders(store, cfg, {"soc": recorder, "email": other}, clock=clock)
    due = T0 + timedelta(days=5)

    for at in (T0, due - timedelta(hours=49)):  # too early
        clock.now = at
        assert await reminders.tick() == []
    for at in (due - timedelta(hours=47), due - timedelta(hours=40)):
        clock.now = at
        await reminders.tick()
    for at in (due - timedelta(hours=23), due - timedelta(hours=1)):
        clock.now = at
        await reminders.tick()
    for at in (due + timedelta(minutes=1), due + timedelta(days=3)):
        clock.now = at
        await reminders.tick()
    assert [n.id.split(":")[3] for n in recorder.sent] == ["before_48h", "before_24h",
                                                          "overdue"]
    assert [n.id for n in other.sent] == [n.id for n in recorder.sent]
    assert INCIDENTS_OVERDUE.labels("notification")._value.get() == 1
    assert INCIDENTS_OPEN._value.get() == 1

    first, last = recorder.sent[0], recorder.sent[-1]
    assert first.title.startswith(f"[{inc.id}] Nhắc hạn: Báo cáo ban đầu sự cố")
    assert "Lộ lọt dữ liệu cổng dịch vụ công" in first.text
    # due 01:30Z on 7 March = 08:30 in Asia/Ho_Chi_Minh
    assert "Thời hạn: 08:30 ngày 07/03/2026 (giờ Asia/Ho_Chi_Minh)" in first.text
    assert "còn 1 ngày 23 giờ" in first.text
    assert f"socd incident notified {inc.id}" in first.text
    assert last.title.startswith(f"[{inc.id}] QUÁ HẠN")
    assert "ĐÃ QUÁ HẠN 1 phút" in last.text
    assert first.severity == "cao"

    # once notified, nothing more for that deadline; the final report starts its own
    ended = due + timedelta(days=3, hours=1)
    store.notified(inc.id, due + timedelta(days=3), by="an", now=ended)
    store.response_ended(inc.id, ended, by="an", now=ended)
    clock.now = ended + timedelta(days=4)  # 24 h before the final report
    sent = await reminders.tick()
    assert [(s.deadline.value, s.stage, s.notifier, s.ok) for s in sent] == [
        ("final_report", "before_24h", "soc", True), ("final_report", "before_24h", "email",
                                                      True)]
    assert "Báo cáo kết thúc ứng cứu sự cố" in recorder.sent[-1].text
    assert f"socd incident reported {inc.id}" in recorder.sent[-1].text
    assert INCIDENTS_OVERDUE.labels("notification")._value.get() == 0


async def test_failed_send_is_retried_and_late_start_sends_only_latest(
        store: IncidentStore) -> None:
    discovered = T0 - timedelta(days=4, hours=12)  # due in 12 h: the 48 h window is past
    inc = store.open_incident(title="x", by="an", alerts=[], discovered=discovered, now=T0)
    recorder = Recorder()
    recorder.fail = 1
    clock = Clock(T0)
    reminders = Reminders(store, IncidentsConfig(notifiers=["soc"]), {"soc": recorder},
                          clock=clock)
    sent = await reminders.tick()
    assert [(s.stage, s.ok) for s in sent] == [("before_24h", False)]
    clock.now = T0 + timedelta(minutes=1)
    sent = await reminders.tick()
    assert [(s.stage, s.ok) for s in sent] == [("before_24h", True)]
    assert await reminders.tick() == []
    assert [n.id for n in recorder.sent] == [
        f"incident-reminder:{inc.id}:notification:before_24h:{inc.notify_due}"]


async def test_reminders_survive_a_restart(store: IncidentStore) -> None:
    store.open_incident(title="x", by="an", alerts=[], discovered=T0, now=T0)
    now = T0 + timedelta(days=4, hours=1)
    first, second = Recorder(), Recorder()
    cfg = IncidentsConfig(notifiers=["soc"])
    await Reminders(store, cfg, {"soc": first}, clock=lambda: now).tick()
    await Reminders(store, cfg, {"soc": second}, clock=lambda: now).tick()
    assert len(first.sent) == 1
    assert second.sent == []


async def test_without_notifiers_only_metrics(store: IncidentStore) -> None:
    store.open_incident(title="x", by="an", alerts=[], discovered=T0, now=T0)
    late = T0 + timedelta(days=6)
    assert await Reminders(store, IncidentsConfig(), {}, clock=lambda: late).tick() == []
    assert INCIDENTS_OVERDUE.labels("notification")._value.get() == 1


def test_config_validation() -> None:
    assert IncidentsConfig().reminder_offsets_hours == [48.0, 24.0]
    assert IncidentsConfig(reminder_offsets_hours=[2, 72, 2]).reminder_offsets_hours == [72, 2]
    with pytest.raises(ValueError, match="must be > 0"):
        IncidentsConfig(reminder_offsets_hours=[0])
    with pytest.raises(ValueError, match="unknown time zone"):
        IncidentsConfig(timezone="Mars/Olympus")
