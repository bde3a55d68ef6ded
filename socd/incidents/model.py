"""Incidents (sự cố): statuses, impacts, the legal deadlines and the serious-incident test.

The rules come from Circular 20/2017/TT-BTTTT and Decision 05/2017/QĐ-TTg (CONTEXT.md,
"Incidents and deadlines"):

* the operator notifies the authority within **5 days of discovery**
  (:data:`NOTIFY_DAYS`);
* the final report is due **5 days after the response ends** (:data:`REPORT_DAYS`);
* an incident is **serious** (sự cố nghiêm trọng) when *both* hold: the affected
  system is level 4 or 5 (or nationally critical) and suffers one of the
  :class:`Impact` s, **and** the owner cannot handle it alone.

Days are calendar days counted from the exact time (120 hours), not working days:
the stricter reading, so a reminder is never late.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from socd.tz import parse_iso

NOTIFY_DAYS: Final = 5
REPORT_DAYS: Final = 5
SERIOUS_LEVELS: Final = frozenset({4, 5})
ID_PREFIX: Final = "SC"


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


class Impact(StrEnum):
    """The impacts that make an incident on a level 4-5 system serious (Decision 05/2017)."""

    SERVICE_INTERRUPTION = "service_interruption"
    SECRET_DATA_LEAK = "secret_data_leak"  # noqa: S105 (an impact code)
    INTEGRITY_LOSS = "integrity_loss"
    LOSS_OF_CONTROL = "loss_of_control"
    CASCADING_HARM = "cascading_harm"

    @property
    def label(self) -> str:
        return IMPACT_LABELS[self]


IMPACT_LABELS: Final[Mapping[Impact, str]] = {
    Impact.SERVICE_INTERRUPTION: _nfc("Gián đoạn dịch vụ của hệ thống"),
    Impact.SECRET_DATA_LEAK: _nfc("Có khả năng lộ, mất dữ liệu bí mật"),
    Impact.INTEGRITY_LOSS: _nfc("Mất tính toàn vẹn dữ liệu, không thể khôi phục"),
    Impact.LOSS_OF_CONTROL: _nfc("Mất quyền kiểm soát hệ thống"),
    Impact.CASCADING_HARM: _nfc("Gây ảnh hưởng dây chuyền, thiệt hại lan rộng"),
}


class IncidentStatus(StrEnum):
    OPEN = "open"
    RESPONSE_ENDED = "response_ended"
    CLOSED = "closed"

    @property
    def label(self) -> str:
        return STATUS_LABELS[self]


STATUS_LABELS: Final[Mapping[IncidentStatus, str]] = {
    IncidentStatus.OPEN: _nfc("đang xử lý"),
    IncidentStatus.RESPONSE_ENDED: _nfc("đã kết thúc ứng cứu"),
    IncidentStatus.CLOSED: _nfc("đã đóng"),
}


class Deadline(StrEnum):
    """The two legal deadlines: ``notification`` (báo cáo ban đầu) and ``final_report``."""

    NOTIFICATION = "notification"
    FINAL_REPORT = "final_report"

    @property
    def label(self) -> str:
        return DEADLINE_LABELS[self]


DEADLINE_LABELS: Final[Mapping[Deadline, str]] = {
    Deadline.NOTIFICATION: _nfc("Báo cáo ban đầu sự cố (thông báo cho cơ quan chức năng)"),
    Deadline.FINAL_REPORT: _nfc("Báo cáo kết thúc ứng cứu sự cố"),
}

LAYER_LABELS: Final[Mapping[int, str]] = {
    1: _nfc("Lớp 1 (tại chỗ)"),
    2: _nfc("Lớp 2 (SOC)"),
}


# -- time ---------------------------------------------------------------------------------


def iso(dt: datetime) -> str:
    """UTC ISO 8601 text as stored: ``2026-11-23T08:00:00Z`` (sorts in time order)."""
    if dt.tzinfo is None:
        raise ValueError("a naive datetime: give a time zone")
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse(text: str | None) -> datetime | None:
    if not text:
        return None
    return parse_iso(text)


def notify_due(discovered: datetime) -> datetime:
    return discovered + timedelta(days=NOTIFY_DAYS)


def report_due(response_ended: datetime) -> datetime:
    return response_ended + timedelta(days=REPORT_DAYS)


def is_serious(level: int | None, impacts: Iterable[Impact | str], *,
               national_critical: bool = False, beyond_capacity: bool = False) -> bool:
    """Decision 05/2017: a level 4-5 (or nationally critical) system with one of the
    listed impacts, **and** the owner cannot handle it alone (``beyond_capacity``)."""
    system = national_critical or (level is not None and level in SERIOUS_LEVELS)
    return bool(system and any(True for _ in impacts) and beyond_capacity)


# -- the record ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Action:
    ts: str
    layer: int
    by: str
    text: str


@dataclass(frozen=True, slots=True)
class Incident:
    """One row of ``incidents`` with its alerts and actions."""

    id: str
    title: str
    description: str | None
    opened_at: str
    opened_by: str
    discovered_at: str
    response_ended_at: str | None
    closed_at: str | None
    status: str
    severity: str | None
    unit: str | None
    system_name: str | None
    system_level: int | None
    national_critical: bool
    impacts: tuple[str, ...]
    beyond_capacity: bool
    serious: bool
    notify_due: str
    report_due: str | None
    notified_at: str | None
    reported_at: str | None
    assignee: str | None
    updated_at: str
    alerts: tuple[str, ...] = ()
    actions: tuple[Action, ...] = field(default_factory=tuple)

    def overdue(self, now: datetime) -> list[Deadline]:
        """The deadlines passed whose action is not done."""
        late = []
        if self.notified_at is None and now > _dt(self.notify_due):
            late.append(Deadline.NOTIFICATION)
        if self.report_due and self.reported_at is None and now > _dt(self.report_due):
            late.append(Deadline.FINAL_REPORT)
        return late

    def due(self, deadline: Deadline) -> datetime | None:
        return parse(self.notify_due if deadline is Deadline.NOTIFICATION else self.report_due)

    def done_at(self, deadline: Deadline) -> str | None:
        return self.notified_at if deadline is Deadline.NOTIFICATION else self.reported_at

    def compliance(self, deadline: Deadline, now: datetime) -> str:
        """``on_time``, ``late`` (done after the due time), ``overdue`` (not done, past
        due), ``pending`` (not done, not yet due) or ``not_started`` (no due time yet)."""
        due, done = self.due(deadline), self.done_at(deadline)
        if due is None:
            return "not_started"
        if done is not None:
            return "on_time" if _dt(done) <= due else "late"
        return "overdue" if now > due else "pending"

    def impact_labels(self) -> list[str]:
        out = []
        for code in self.impacts:
            try:
                out.append(Impact(code).label)
            except ValueError:
                out.append(code)
        return out

    def status_label(self) -> str:
        try:
            return IncidentStatus(self.status).label
        except ValueError:
            return self.status

    def as_dict(self, now: datetime | None = None) -> dict[str, Any]:
        now = now or datetime.now(UTC)
        return {
            "id": self.id, "title": self.title, "description": self.description,
            "opened_at": self.opened_at, "opened_by": self.opened_by,
            "discovered_at": self.discovered_at, "response_ended_at": self.response_ended_at,
            "closed_at": self.closed_at, "status": self.status, "severity": self.severity,
            "unit": self.unit, "system_name": self.system_name,
            "system_level": self.system_level, "national_critical": self.national_critical,
            "impacts": list(self.impacts), "beyond_capacity": self.beyond_capacity,
            "serious": self.serious, "notify_due": self.notify_due,
            "report_due": self.report_due, "notified_at": self.notified_at,
            "reported_at": self.reported_at, "assignee": self.assignee,
            "updated_at": self.updated_at, "alerts": list(self.alerts),
            "actions": [{"ts": a.ts, "layer": a.layer, "by": a.by, "text": a.text}
                        for a in self.actions],
            "overdue": [d.value for d in self.overdue(now)],
            "compliance": {d.value: self.compliance(d, now) for d in Deadline},
        }


def _dt(text: str) -> datetime:
    value = parse(text)
    assert value is not None
    return value
