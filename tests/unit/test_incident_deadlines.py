"""Deadlines, overdue status and the serious-incident check, with a fixed clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from socd.incidents.model import Deadline, Impact, is_serious
from socd.incidents.store import IncidentError, IncidentStore

T0 = datetime(2026, 3, 2, 1, 30, tzinfo=UTC)  # 08:30 in Hà Nội


@pytest.fixture
def store(tmp_path: Path) -> IncidentStore:
    s = IncidentStore(str(tmp_path / "incidents.db"))
    yield s  # type: ignore[misc]
    s.close()


def opened(store: IncidentStore, **kw: object) -> str:
    inc = store.open_incident(title="Tấn công thay đổi giao diện", by="an",
                              alerts=[("a" * 40, "high", "Sở Tài chính")], discovered=T0,
                              now=T0 + timedelta(hours=2), **kw)  # type: ignore[arg-type]
    return inc.id


def test_notification_due_five_days_after_discovery(store: IncidentStore) -> None:
    inc = store.get(opened(store))
    assert inc.id == "SC-2026-0001"
    assert inc.notify_due == "2026-03-07T01:30:00Z"
    due = inc.due(Deadline.NOTIFICATION)
    assert due == T0 + timedelta(days=5)
    assert inc.overdue(due) == []  # exactly at the due time: not yet late
    assert inc.overdue(due + timedelta(seconds=1)) == [Deadline.NOTIFICATION]
    assert inc.compliance(Deadline.NOTIFICATION, due - timedelta(hours=1)) == "pending"
    assert inc.compliance(Deadline.FINAL_REPORT, due) == "not_started"
    assert store.find(overdue_at=due) == []
    assert [i.id for i in store.find(overdue_at=due + timedelta(minutes=1))] == [inc.id]


def test_notified_late_is_not_overdue_but_late(store: IncidentStore) -> None:
    iid = opened(store)
    at = T0 + timedelta(days=6)
    inc, changed = store.notified(iid, at, by="an", now=at)
    assert changed
    assert inc.overdue(at + timedelta(days=1)) == []
    assert inc.compliance(Deadline.NOTIFICATION, at) == "late"
    assert store.notified(iid, at, by="an", now=at)[1] is False  # same again: no-op


def test_final_report_due_five_days_after_response_ends(store: IncidentStore) -> None:
    iid = opened(store)
    ended = T0 + timedelta(days=2, hours=3)
    inc, _ = store.response_ended(iid, ended, by="an", now=ended)
    assert inc.status == "response_ended"
    assert inc.report_due == "2026-03-09T04:30:00Z"
    late = ended + timedelta(days=5, seconds=1)
    store.notified(iid, T0 + timedelta(days=1), by="an", now=late)
    assert store.get(iid).overdue(late) == [Deadline.FINAL_REPORT]
    assert store.counts(late) == (1, {"notification": 0, "final_report": 1})
    inc, _ = store.reported(iid, late, by="an", now=late)
    assert inc.overdue(late + timedelta(days=3)) == []
    assert inc.compliance(Deadline.FINAL_REPORT, late) == "late"
    with pytest.raises(IncidentError, match="before the discovery"):
        store.response_ended(iid, T0 - timedelta(hours=1), by="an")


def test_close_starts_the_final_report_deadline(store: IncidentStore) -> None:
    iid = opened(store)
    now = T0 + timedelta(days=1)
    inc, changed = store.close_incident(iid, by="an", now=now)
    assert changed
    assert inc.status == "closed"
    assert inc.response_ended_at == inc.closed_at == "2026-03-03T01:30:00Z"
    assert inc.report_due == "2026-03-08T01:30:00Z"
    assert store.counts(now)[0] == 0
    assert store.find(open_only=True) == []


def test_ids_count_per_year(store: IncidentStore) -> None:
    assert opened(store) == "SC-2026-0001"
    assert opened(store) == "SC-2026-0002"
    ny = datetime(2026, 12, 31, 17, 30, tzinfo=UTC)  # 1 Jan 2027 00:30 in Hà Nội
    inc = store.open_incident(title="x", by="an", alerts=[], now=ny)
    assert inc.id == "SC-2027-0001"


@pytest.mark.parametrize(("level", "critical", "impacts", "beyond", "serious"), [
    (4, False, [Impact.SERVICE_INTERRUPTION], True, True),
    (5, False, [Impact.SECRET_DATA_LEAK, Impact.CASCADING_HARM], True, True),
    (3, True, [Impact.LOSS_OF_CONTROL], True, True),  # nationally critical system
    (3, False, [Impact.INTEGRITY_LOSS], True, False),  # level too low
    (None, False, [Impact.INTEGRITY_LOSS], True, False),  # level unknown
    (4, False, [], True, False),  # no listed impact
    (5, False, [Impact.SERVICE_INTERRUPTION], False, False),  # the owner handles it alone
])
def test_serious_incident(store: IncidentStore, level: int | None, critical: bool,
                          impacts: list[Impact], beyond: bool, serious: bool) -> None:
    assert is_serious(level, impacts, national_critical=critical,
                      beyond_capacity=beyond) is serious
    iid = opened(store, system_level=level, national_critical=critical)
    inc, _ = store.set_impacts(iid, impacts, beyond_capacity=beyond, by="an")
    assert inc.serious is serious
    assert store.get(iid).serious is serious


def test_impact_labels_are_vietnamese() -> None:
    assert Impact.SERVICE_INTERRUPTION.label == "Gián đoạn dịch vụ của hệ thống"
    assert Impact.SECRET_DATA_LEAK.label == "Có khả năng lộ, mất dữ liệu bí mật"
    assert {i.value for i in Impact} == {"service_interruption", "secret_data_leak",
                                          "integrity_loss", "loss_of_control",
                                          "cascading_harm"}


def test_schema_for_the_reports(store: IncidentStore) -> None:
    """The columns the reports read (docs/incidents.md)."""
    import sqlite3

    opened(store)
    db = sqlite3.connect(store.path)
    cols = {r[1]: r[2] for r in db.execute("PRAGMA table_info(incidents)")}
    for name in ("id", "title", "opened_at", "discovered_at", "response_ended_at", "closed_at",
                 "status", "severity", "unit", "system_name", "system_level", "serious",
                 "notify_due", "report_due", "notified_at", "reported_at", "assignee"):
        assert name in cols
    assert cols["system_level"] == "INTEGER"
    assert cols["serious"] == "INTEGER"
    assert [r[1] for r in db.execute("PRAGMA table_info(incident_alerts)")][:2] == [
        "incident_id", "alert_id"]
    assert [r[1] for r in db.execute("PRAGMA table_info(incident_actions)")][1:] == [
        "incident_id", "ts", "layer", "by", "text"]
    db.close()
