"""Scheduled reports: due times and the scheduler loop, with a fake clock (no sleeping)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from socd.alerts.store import AlertStore
from socd.errors import NotifyError
from socd.plugins import Notification
from socd.reports.data import StoreBackend
from socd.reports.schedule import (
    ReportScheduler,
    ReportsConfig,
    ScheduleConfig,
    due_times,
    last_due,
    next_due,
)
from socd.reports.testing import seed_events
from socd.reports.vn import local_zone
from tests.unit.conftest import sample_value

VN = local_zone()


def vn(*args: int) -> datetime:
    return datetime(*args, tzinfo=VN)  # type: ignore[misc]


def test_weekly_due_times() -> None:
    # Sunday 22/11/2026 23:00 in Vietnam (16:00 UTC): due Monday 23/11 07:00 local.
    after = datetime(2026, 11, 22, 16, 0, tzinfo=UTC)
    assert next_due("weekly", "MON 07:00", after, VN) == vn(2026, 11, 23, 7, 0)
    assert next_due("weekly", "MON 07:00", after, VN).astimezone(UTC) == datetime(
        2026, 11, 23, 0, 0, tzinfo=UTC)
    # Exactly at the due time: the next one is a week later.
    assert next_due("weekly", "MON 07:00", vn(2026, 11, 23, 7, 0), VN) == vn(2026, 11, 30, 7)
    assert last_due("weekly", "MON 07:00", vn(2026, 11, 23, 7, 0), VN) == vn(2026, 11, 23, 7)
    assert last_due("weekly", "MON 07:00", vn(2026, 11, 23, 6, 59), VN) == vn(2026, 11, 16, 7)
    assert next_due("weekly", "fri 17:30", vn(2026, 11, 23, 7, 0), VN) == vn(2026, 11, 27, 17,
                                                                             30)


def test_monthly_and_semiannual_due_times() -> None:
    assert next_due("monthly", "1 07:00", vn(2026, 11, 15), VN) == vn(2026, 12, 1, 7)
    assert next_due("monthly", "1 07:00", vn(2026, 12, 1, 7), VN) == vn(2027, 1, 1, 7)
    assert next_due("monthly", "5 08:15", vn(2026, 12, 31, 23), VN) == vn(2027, 1, 5, 8, 15)
    assert next_due("semiannual", "1 07:00", vn(2026, 3, 15), VN) == vn(2026, 7, 1, 7)
    assert next_due("semiannual", None, vn(2026, 7, 1, 7), VN) == vn(2027, 1, 1, 7)
    cfg = ReportsConfig(enabled=True)  # default: weekly Monday 07:00 and monthly the 1st
    assert due_times(cfg, vn(2026, 11, 22, 12), 4) == [
        vn(2026, 11, 23, 7), vn(2026, 11, 30, 7), vn(2026, 12, 1, 7), vn(2026, 12, 7, 7)]


@pytest.mark.parametrize(("kind", "at"), [
    ("weekly", "MON 7"), ("weekly", "1 07:00"), ("weekly", "MON 24:00"),
    ("monthly", "31 07:00"), ("monthly", "MON 07:00"), ("semiannual", "0 07:00"),
])
def test_bad_schedules(kind: str, at: str) -> None:
    with pytest.raises(ValidationError):
        ScheduleConfig(kind=kind, at=at)  # type: ignore[arg-type]


def test_config_validation() -> None:
    with pytest.raises(ValidationError, match="time zone"):
        ReportsConfig(timezone="Mars/Olympus")
    with pytest.raises(ValidationError):
        ReportsConfig(formats=["odt"])  # type: ignore[list-item] (docx is one since issue 19)
    assert ReportsConfig().enabled is False


class FakeClock:
    """Time moves only when the scheduler sleeps; sleeping returns at once."""

    def __init__(self, start: datetime) -> None:
        self.t = start
        self.sleeps: list[float] = []

    def now(self) -> datetime:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += timedelta(seconds=seconds)
        await asyncio.sleep(0)


class Recorder:
    """A notifier that keeps what it is given (this tests the scheduler, not a channel;
    the e-mail path is tested against a real SMTP server in
    tests/integration/test_report_render.py)."""

    name = "rec"

    def __init__(self, fail: int = 0) -> None:
        self.sent: list[Notification] = []
        self.fail = fail
        self.started = self.closed = 0

    async def start(self) -> None:
        self.started += 1

    async def healthcheck(self) -> None:
        pass

    async def send(self, notification: Notification) -> None:
        if self.fail:
            self.fail -= 1
            raise NotifyError("temporarily unavailable", retryable=True)
        self.sent.append(notification)

    async def close(self) -> None:
        self.closed += 1


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = str(tmp_path_factory.mktemp("sched") / "alerts.db")
    store = AlertStore(path)
    store.insert(seed_events())
    store.close()
    return path


def scheduler(tmp_path: Path, store_path: str, clock: FakeClock, notifier: Any,
              **cfg: Any) -> ReportScheduler:
    config = ReportsConfig(enabled=True, formats=["md", "xlsx"], notifiers=["rec"], **cfg)
    return ReportScheduler(config, state_dir=str(tmp_path),
                           backend_factory=lambda: StoreBackend.open(store_path),
                           notifiers={"rec": notifier}, clock=clock)


async def run_until(sched: ReportScheduler, count: int) -> None:
    task = asyncio.create_task(sched.run())
    try:
        for _ in range(6000):  # generous: each report renders in a worker thread
            if len(sched.history) >= count or task.done():
                break
            await asyncio.sleep(0.01)
        if task.done():
            task.result()  # surface an unexpected error
        assert len(sched.history) >= count, sched.history
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_scheduler_runs_weekly_and_monthly(tmp_path: Path, store_path: str) -> None:
    # Start on Sunday evening (local): the due times of last week and of 01/11 are more
    # than a day old, so nothing is caught up.
    clock = FakeClock(vn(2026, 11, 22, 20, 0))
    rec = Recorder()
    before = sample_value("socd_reports_total", kind="weekly", result="ok")
    sched = scheduler(tmp_path, store_path, clock, rec)
    await run_until(sched, 3)
    runs = sched.history[:3]
    assert [(g.kind, g.slug) for g in runs] == [
        ("weekly", "weekly-2026-W47"), ("weekly", "weekly-2026-W48"),
        ("monthly", "monthly-2026-11")]
    # It slept to Monday 07:00 local, then to the next Monday, then to 01/12 07:00.
    assert clock.now() >= vn(2026, 12, 1, 7, 0)
    assert clock.sleeps[:11] == [3600.0] * 11  # Sunday 20:00 to Monday 07:00, hourly
    out = tmp_path / "reports"
    assert sorted(p.name for p in out.iterdir()) == [
        ".generated.json", "monthly-2026-11.md", "monthly-2026-11.xlsx",
        "weekly-2026-W47.md", "weekly-2026-W47.xlsx", "weekly-2026-W48.md",
        "weekly-2026-W48.xlsx"]
    md = (out / "weekly-2026-W47.md").read_text(encoding="utf-8")
    assert md.startswith("# Tóm tắt tình hình an toàn thông tin tuần 47/2026 (từ ngày "
                         "16/11/2026 đến ngày 22/11/2026)")
    assert "1.489 cảnh báo" in md
    assert "Ngày lập: 07:00 23/11/2026" in md  # the clock's time, local
    first = rec.sent[0]
    assert first.title == ("Tóm tắt tình hình an toàn thông tin tuần 47/2026 (từ ngày "
                           "16/11/2026 đến ngày 22/11/2026)")
    assert "Tổng số 1.489 cảnh báo" in first.text
    assert first.html is not None
    assert "<!DOCTYPE html>" in first.html  # the HTML report is the e-mail body
    assert first.id == "report-weekly-2026-W47"
    assert [n.title for n in rec.sent][2] == "Bản tin SOC tháng 11/2026"
    assert rec.started == rec.closed == 3
    assert json.loads((out / ".generated.json").read_text())["generated"] == [
        "monthly-2026-11", "weekly-2026-W47", "weekly-2026-W48"]
    assert sample_value("socd_reports_total", kind="weekly", result="ok") == before + 2


async def test_restart_does_not_resend(tmp_path: Path, store_path: str) -> None:
    rec = Recorder()
    first = scheduler(tmp_path, store_path, FakeClock(vn(2026, 11, 23, 6, 0)), rec)
    await run_until(first, 1)
    assert rec.sent[0].id == "report-weekly-2026-W47"
    # Restarted an hour after the due time: W47 exists, nothing is caught up; the next
    # run is the following Monday.
    rec2 = Recorder()
    second = scheduler(tmp_path, store_path, FakeClock(vn(2026, 11, 23, 8, 0)), rec2)
    await run_until(second, 1)
    assert [g.slug for g in second.history] == ["weekly-2026-W48"]


async def test_catch_up_after_downtime(tmp_path: Path, store_path: str) -> None:
    # Down at Monday 07:00, started at 09:00: W47 is generated at once (within 24 h).
    rec = Recorder()
    clock = FakeClock(vn(2026, 11, 23, 9, 0))
    sched = scheduler(tmp_path, store_path, clock, rec)
    await run_until(sched, 1)
    assert sched.history[0].slug == "weekly-2026-W47"
    md = (tmp_path / "reports" / "weekly-2026-W47.md").read_text(encoding="utf-8")
    assert "Ngày lập: 09:00 23/11/2026" in md  # at start, before any sleep
    # Two days late is too late (catch_up_hours 24): skipped, next week's runs instead.
    rec2 = Recorder()
    late = scheduler(tmp_path / "late", store_path, FakeClock(vn(2026, 11, 25, 9, 0)), rec2)
    await run_until(late, 1)
    assert late.history[0].slug == "weekly-2026-W48"


async def test_notifier_retries_and_failed_formats(tmp_path: Path, store_path: str) -> None:
    rec = Recorder(fail=2)  # two retryable failures, then accepted
    clock = FakeClock(vn(2026, 11, 23, 6, 0))

    def render(data: Any, fmt: str) -> bytes:
        if fmt == "xlsx":
            raise RuntimeError("no openpyxl today")
        from socd.reports.render import render as real

        return real(data, fmt)

    config = ReportsConfig(enabled=True, formats=["md", "xlsx"], notifiers=["rec"],
                           schedules=[ScheduleConfig(kind="weekly")])
    sched = ReportScheduler(config, state_dir=str(tmp_path),
                            backend_factory=lambda: StoreBackend.open(store_path),
                            notifiers={"rec": rec}, clock=clock, render=render)
    await run_until(sched, 1)
    result = sched.history[0]
    assert set(result.files) == {"md"}
    assert "no openpyxl today" in result.failed["xlsx"]
    assert result.sent == ["rec"]
    assert len(rec.sent) == 1
    assert rec.sent[0].html is not None  # rendered for the message though not written
    assert 30.0 in clock.sleeps
    assert 60.0 in clock.sleeps  # backoff between attempts


async def test_from_config_as_a_daemon_service(tmp_path: Path, store_path: str) -> None:
    import dataclasses
    import shutil

    from socd import config as config_mod
    from socd.app.components import notifier_factory
    from socd.app.deadletter import DeadLetter
    from socd.errors import ConfigError

    state = tmp_path / "state"
    state.mkdir()
    shutil.copy(store_path, state / "alerts.db")
    cfg = config_mod.loads(f"state_dir: {state}\nsinks:\n  store:\n    type: sqlite\n")

    def with_reports(**kw: Any) -> Any:
        # `reports:` as socd.config.DocumentConfig will hold it.
        doc = cfg.document.model_copy(update={"reports": ReportsConfig(**kw)})
        return dataclasses.replace(cfg, document=doc)

    dead = DeadLetter(str(tmp_path / "dl"))
    notifiers = notifier_factory(cfg, dead)
    try:
        assert ReportScheduler.from_config(cfg, notifiers) is None  # no section: no service
        assert ReportScheduler.from_config(with_reports(), notifiers) is None  # not enabled
        with pytest.raises(ConfigError, match="unknown notifier 'mail'"):
            ReportScheduler.from_config(with_reports(enabled=True, notifiers=["mail"]),
                                        notifiers)
        clock = FakeClock(vn(2026, 11, 23, 7, 30))  # 30 min after Monday's due time
        service = ReportScheduler.from_config(
            with_reports(enabled=True, formats=["md"]), notifiers, clock=clock)
        assert service is not None
        await service.start()
        for _ in range(6000):
            if service.history:
                break
            await asyncio.sleep(0.01)
        await service.stop()
        assert [g.slug for g in service.history][:1] == ["weekly-2026-W47"]
        assert (state / "reports" / "weekly-2026-W47.md").exists()
        await service.stop()  # idempotent
    finally:
        dead.close()
