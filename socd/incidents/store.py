"""The incident store: ``<state_dir>/incidents.db`` (SQLite, WAL).

Every change is one ``BEGIN IMMEDIATE`` transaction (the daemon's reminder task and
CLI commands may write at once); after it commits, the change is appended to the
hash-chained audit log (:mod:`socd.alerts.audit`). Times are UTC ISO 8601 text
(``2026-11-23T08:00:00Z``), so they compare and sort as text. The schema is
documented in docs/incidents.md. The tables are this module's: the reports and
layer-4 sharing read them through :func:`incident_dates` and :func:`alert_ids`.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from socd.alerts import audit
from socd.errors import SocdError
from socd.incidents.model import (
    ID_PREFIX,
    Action,
    Impact,
    Incident,
    IncidentStatus,
    is_serious,
    iso,
    notify_due,
    report_due,
)
from socd.sqlite import Schema, Store, columns, has_table, open_db, read_only

SCHEMA_VERSION: Final = "1"
DB_NAME: Final = "incidents.db"

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS incidents (
    id                TEXT PRIMARY KEY,   -- SC-2026-0001
    title             TEXT NOT NULL,
    description       TEXT,
    opened_at         TEXT NOT NULL,
    opened_by         TEXT NOT NULL,
    discovered_at     TEXT NOT NULL,
    response_ended_at TEXT,
    closed_at         TEXT,
    status            TEXT NOT NULL,      -- open | response_ended | closed
    severity          TEXT,               -- highest socd.severity of the alerts
    unit              TEXT,
    system_name       TEXT,
    system_level      INTEGER,            -- security level (cấp độ) 1-5
    national_critical INTEGER NOT NULL DEFAULT 0,
    impacts           TEXT NOT NULL DEFAULT '[]',  -- JSON list of Impact codes
    beyond_capacity   INTEGER NOT NULL DEFAULT 0,  -- the owner cannot handle it alone
    serious           INTEGER NOT NULL DEFAULT 0,
    notify_due        TEXT NOT NULL,
    report_due        TEXT,
    notified_at       TEXT,
    reported_at       TEXT,
    assignee          TEXT,
    updated_at        TEXT NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS incidents_status ON incidents (status)",
    """CREATE TABLE IF NOT EXISTS incident_alerts (
    incident_id TEXT NOT NULL,
    alert_id    TEXT NOT NULL,
    added_at    TEXT NOT NULL,
    added_by    TEXT NOT NULL,
    PRIMARY KEY (incident_id, alert_id)
)""",
    "CREATE INDEX IF NOT EXISTS incident_alerts_alert ON incident_alerts (alert_id)",
    """CREATE TABLE IF NOT EXISTS incident_actions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id TEXT NOT NULL,
    ts          TEXT NOT NULL,
    layer       INTEGER NOT NULL,        -- 1 on-site staff, 2 SOC
    "by"        TEXT NOT NULL,
    text        TEXT NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS incident_actions_incident ON incident_actions (incident_id, id)",
    """CREATE TABLE IF NOT EXISTS incident_reminders (
    incident_id TEXT NOT NULL,
    deadline    TEXT NOT NULL,           -- notification | final_report
    stage       TEXT NOT NULL,           -- before_48h, before_24h..., overdue
    due         TEXT NOT NULL,           -- the due time it was about
    notifier    TEXT NOT NULL,
    sent_at     TEXT NOT NULL,
    PRIMARY KEY (incident_id, deadline, stage, due, notifier)
)""",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)

STORE_SCHEMA: Final = Schema(name="incident store", create=_SCHEMA, version=SCHEMA_VERSION)

_COLUMNS = ("id, title, description, opened_at, opened_by, discovered_at, response_ended_at, "
            "closed_at, status, severity, unit, system_name, system_level, national_critical, "
            "impacts, beyond_capacity, serious, notify_due, report_due, notified_at, "
            "reported_at, assignee, updated_at")


class IncidentError(SocdError):
    """An incident command cannot be carried out; ``hint`` says what to do instead."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.hint = hint
        super().__init__(message)


class IncidentNotFound(IncidentError):
    """No incident has this id."""


def normalize_id(text: str) -> str:
    """``sc-2026-1`` or ``2026-0001`` -> ``SC-2026-0001``."""
    value = text.strip().upper()
    if value.startswith(f"{ID_PREFIX}-"):
        value = value[len(ID_PREFIX) + 1:]
    parts = value.split("-")
    if len(parts) != 2 or not all(p.isdigit() for p in parts) or len(parts[0]) != 4:
        raise IncidentError(f"{text!r} is not an incident id",
                            hint="ids look like SC-2026-0001 (`socd incident list`)")
    return f"{ID_PREFIX}-{parts[0]}-{int(parts[1]):04d}"


class IncidentStore(Store):
    """Thread-safe access to ``incidents.db``; changes are audited to ``audit_path``."""

    schema = STORE_SCHEMA

    def __init__(self, path: str, audit_path: str | None = None, *,
                 readonly: bool = False) -> None:
        """``readonly``: open an existing store for reading, creating nothing
        (socd.sqlite.NoDatabase when there is none yet: no incident was opened)."""
        super().__init__(path, readonly=readonly)
        self.audit_path = audit_path or os.path.join(
            os.path.dirname(os.path.abspath(path)), audit.DB_NAME)

    # -- reading -------------------------------------------------------------------------

    def get(self, incident_id: str) -> Incident:
        with self._lock:
            found = self._load(self._db, normalize_id(incident_id))
        if found is None:
            raise IncidentNotFound(f"no incident {normalize_id(incident_id)}",
                                   hint="`socd incident list` shows the ids")
        return found

    def _load(self, db: sqlite3.Connection, incident_id: str) -> Incident | None:
        row = db.execute(f"SELECT {_COLUMNS} FROM incidents WHERE id = ?",  # noqa: S608
                         (incident_id,)).fetchone()
        if row is None:
            return None
        alerts = tuple(str(r[0]) for r in db.execute(
            "SELECT alert_id FROM incident_alerts WHERE incident_id = ? ORDER BY added_at, "
            "alert_id", (incident_id,)))
        actions = tuple(Action(str(r[0]), int(r[1]), str(r[2]), str(r[3])) for r in db.execute(
            'SELECT ts, layer, "by", text FROM incident_actions WHERE incident_id = ? '
            "ORDER BY id", (incident_id,)))
        return _incident(row, alerts, actions)

    def find(self, *, open_only: bool = False, overdue_at: datetime | None = None,
             limit: int | None = None) -> list[Incident]:
        """Incidents, newest first; ``open_only`` leaves out closed ones; ``overdue_at``
        keeps only those with a deadline passed and its action not done at that time."""
        where, params = [], []  # type: list[str], list[Any]
        if open_only:
            where.append("status != 'closed'")
        if overdue_at is not None:
            now = iso(overdue_at)
            where.append("((notified_at IS NULL AND notify_due < ?) OR (reported_at IS NULL "
                         "AND report_due IS NOT NULL AND report_due < ?))")
            params += [now, now]
        # Only fixed clauses are joined; values are parameters.
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        sql = f"SELECT id FROM incidents {clause} ORDER BY opened_at DESC, id DESC"  # noqa: S608
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        with self._lock:
            ids = [str(r[0]) for r in self._db.execute(sql, params)]
            found = [self._load(self._db, i) for i in ids]
        return [i for i in found if i is not None]

    def incidents_of_alert(self, alert_id: str) -> list[str]:
        with self._lock:
            return [str(r[0]) for r in self._db.execute(
                "SELECT incident_id FROM incident_alerts WHERE alert_id = ?", (alert_id,))]

    # -- writing -------------------------------------------------------------------------

    def _change(self, incident_id: str | None, by: str, action: str,
                apply: Callable[[sqlite3.Connection, str], dict[str, Any] | None],
                now: datetime) -> tuple[Incident, bool]:
        """Run ``apply`` in one transaction; it returns the audit details, or ``None``
        for a no-op (rolled back). Then append the audit record."""
        with self.transaction() as tx:
            db = tx.db
            target = incident_id or self._next_id(db, now)
            if incident_id is not None and self._load(db, target) is None:
                raise IncidentNotFound(f"no incident {target}",
                                       hint="`socd incident list` shows the ids")
            details = apply(db, target)
            if details is None:
                tx.rollback()
                loaded = self._load(db, target)
                assert loaded is not None
                return loaded, False
            db.execute("UPDATE incidents SET updated_at = ? WHERE id = ?",
                       (iso(now), target))
            self._refresh_serious(db, target)
            after = self._load(db, target)
            assert after is not None
        audit.record(self.audit_path, by, "incident", after.id, action, details)
        return after, True

    @staticmethod
    def _next_id(db: sqlite3.Connection, now: datetime) -> str:
        from socd.alerts.lifecycle import local_zone

        year = now.astimezone(local_zone()).year
        prefix = f"{ID_PREFIX}-{year}-"
        row = db.execute("SELECT max(CAST(substr(id, ?) AS INTEGER)) FROM incidents "
                         "WHERE id LIKE ?", (len(prefix) + 1, prefix + "%")).fetchone()
        return f"{prefix}{(row[0] or 0) + 1:04d}"

    @staticmethod
    def _refresh_serious(db: sqlite3.Connection, incident_id: str) -> None:
        row = db.execute("SELECT system_level, national_critical, impacts, beyond_capacity "
                         "FROM incidents WHERE id = ?", (incident_id,)).fetchone()
        serious = is_serious(row[0], orjson.loads(row[2]), national_critical=bool(row[1]),
                             beyond_capacity=bool(row[3]))
        db.execute("UPDATE incidents SET serious = ? WHERE id = ?", (int(serious), incident_id))

    def open_incident(self, *, title: str, by: str,
                      alerts: Sequence[tuple[str, str | None, str | None]],
                      discovered: datetime | None = None, description: str | None = None,
                      unit: str | None = None, system_name: str | None = None,
                      system_level: int | None = None, national_critical: bool = False,
                      now: datetime | None = None) -> Incident:
        """Open an incident from alerts given as (id, severity, unit) triples."""
        now = now or datetime.now(UTC)
        discovered = discovered or now
        if discovered > now:
            raise IncidentError("the discovery time is in the future",
                                hint="--discovered takes the time the incident was found")
        if system_level is not None and not 1 <= system_level <= 5:
            raise IncidentError("--level is the security level (cấp độ) 1 to 5")
        units = [u for _, _, u in alerts if u]
        unit = unit or (units[0] if units else None)

        def apply(db: sqlite3.Connection, incident_id: str) -> dict[str, Any]:
            db.execute(f"INSERT INTO incidents ({_COLUMNS}) VALUES "  # noqa: S608
                       f"({','.join('?' * 23)})",
                       (incident_id, title, description, iso(now), by, iso(discovered), None,
                        None, IncidentStatus.OPEN.value, None, unit, system_name, system_level,
                        int(national_critical), "[]", 0, 0, iso(notify_due(discovered)), None,
                        None, None, None, iso(now)))
            self._add_alerts(db, incident_id, alerts, by, now)
            return {"title": title, "discovered_at": iso(discovered), "unit": unit,
                    "system_name": system_name, "system_level": system_level,
                    "national_critical": national_critical,
                    "alerts": [a for a, _, _ in alerts],
                    "notify_due": iso(notify_due(discovered))}

        return self._change(None, by, "open", apply, now)[0]

    @staticmethod
    def _add_alerts(db: sqlite3.Connection, incident_id: str,
                    alerts: Iterable[tuple[str, str | None, str | None]], by: str,
                    now: datetime) -> list[str]:
        from socd.severity import Severity

        added = []
        for alert_id, _, _ in alerts:
            cur = db.execute("INSERT OR IGNORE INTO incident_alerts VALUES (?,?,?,?)",
                             (incident_id, alert_id, iso(now), by))
            if cur.rowcount:
                added.append(alert_id)
        severities = [s for _, s, _ in alerts if s]
        current = db.execute("SELECT severity FROM incidents WHERE id = ?",
                             (incident_id,)).fetchone()[0]
        ranked = [s for s in (*severities, current) if s in {v.value for v in Severity}]
        if ranked:
            order = [v.value for v in Severity]
            db.execute("UPDATE incidents SET severity = ? WHERE id = ?",
                       (max(ranked, key=order.index), incident_id))
        return added

    def add_alerts(self, incident_id: str, alerts: Sequence[tuple[str, str | None, str | None]],
                   *, by: str, now: datetime | None = None) -> tuple[Incident, bool]:
        now = now or datetime.now(UTC)

        def apply(db: sqlite3.Connection, target: str) -> dict[str, Any] | None:
            added = self._add_alerts(db, target, alerts, by, now)
            return {"alerts": added} if added else None

        return self._change(normalize_id(incident_id), by, "add_alerts", apply, now)

    def _set(self, incident_id: str, by: str, action: str, values: dict[str, Any],
             now: datetime | None, extra: Callable[[Incident], dict[str, Any]] | None = None
             ) -> tuple[Incident, bool]:
        """Set columns; a no-op when they already hold these values."""
        now = now or datetime.now(UTC)

        def apply(db: sqlite3.Connection, target: str) -> dict[str, Any] | None:
            before = self._load(db, target)
            assert before is not None
            wanted = dict(values)
            if extra is not None:
                wanted.update(extra(before))
            # Column names come from this module's callers, never from input.
            current = db.execute(f"SELECT {', '.join(wanted)} FROM incidents WHERE id = ?",  # noqa: S608
                                 (target,)).fetchone()
            changed = {k: v for (k, v), old in zip(wanted.items(), current, strict=True)
                       if old != v}
            if not changed:
                return None
            db.execute(f"UPDATE incidents SET {', '.join(f'{k} = ?' for k in changed)} "  # noqa: S608
                       "WHERE id = ?", (*changed.values(), target))
            old = dict(zip(wanted, current, strict=True))
            return {k: {"from": old[k], "to": v} for k, v in changed.items()}

        return self._change(normalize_id(incident_id), by, action, apply, now)

    def assign(self, incident_id: str, to: str | None, *, by: str,
               now: datetime | None = None) -> tuple[Incident, bool]:
        return self._set(incident_id, by, "assign", {"assignee": to}, now)

    def set_impacts(self, incident_id: str, impacts: Sequence[Impact], *, by: str,
                    beyond_capacity: bool | None = None, now: datetime | None = None
                    ) -> tuple[Incident, bool]:
        values: dict[str, Any] = {"impacts": orjson.dumps(sorted({i.value for i in impacts}))
                                  .decode()}
        if beyond_capacity is not None:
            values["beyond_capacity"] = int(beyond_capacity)
        return self._set(incident_id, by, "impact", values, now)

    def set_system(self, incident_id: str, *, by: str, name: str | None = None,
                   level: int | None = None, national_critical: bool | None = None,
                   now: datetime | None = None) -> tuple[Incident, bool]:
        values: dict[str, Any] = {}
        if name is not None:
            values["system_name"] = name
        if level is not None:
            if not 1 <= level <= 5:
                raise IncidentError("--level is the security level (cấp độ) 1 to 5")
            values["system_level"] = level
        if national_critical is not None:
            values["national_critical"] = int(national_critical)
        if not values:
            raise IncidentError("nothing to set", hint="give --system, --level or --critical")
        return self._set(incident_id, by, "system", values, now)

    def response_ended(self, incident_id: str, at: datetime, *, by: str,
                       now: datetime | None = None) -> tuple[Incident, bool]:
        def extra(before: Incident) -> dict[str, Any]:
            if at < _parse(before.discovered_at):
                raise IncidentError("the response cannot end before the discovery "
                                    f"({before.discovered_at})")
            status = (before.status if before.status == IncidentStatus.CLOSED
                      else IncidentStatus.RESPONSE_ENDED.value)
            return {"status": status}

        return self._set(incident_id, by, "response_ended",
                         {"response_ended_at": iso(at), "report_due": iso(report_due(at))},
                         now, extra)

    def notified(self, incident_id: str, at: datetime, *, by: str,
                 now: datetime | None = None) -> tuple[Incident, bool]:
        return self._set(incident_id, by, "notified", {"notified_at": iso(at)}, now)

    def reported(self, incident_id: str, at: datetime, *, by: str,
                 now: datetime | None = None) -> tuple[Incident, bool]:
        def extra(before: Incident) -> dict[str, Any]:
            if before.response_ended_at is None:
                raise IncidentError("the final report follows the end of the response",
                                    hint=f"first: socd incident response-ended {before.id}")
            return {}

        return self._set(incident_id, by, "reported", {"reported_at": iso(at)}, now, extra)

    def close_incident(self, incident_id: str, *, by: str, now: datetime | None = None
                       ) -> tuple[Incident, bool]:
        """Close; when the response end was not recorded, it ends now (the final report
        deadline starts)."""
        now = now or datetime.now(UTC)

        def extra(before: Incident) -> dict[str, Any]:
            if before.status == IncidentStatus.CLOSED:
                return {"closed_at": before.closed_at}
            values: dict[str, Any] = {"closed_at": iso(now)}
            if before.response_ended_at is None:
                values.update(response_ended_at=iso(now), report_due=iso(report_due(now)))
            return values

        return self._set(incident_id, by, "close", {"status": IncidentStatus.CLOSED.value},
                         now, extra)

    def add_action(self, incident_id: str, layer: int, text: str, *, by: str,
                   now: datetime | None = None) -> Incident:
        if layer not in (1, 2):
            raise IncidentError("--layer is 1 (on-site staff, lớp 1 tại chỗ) or 2 (SOC)")
        now = now or datetime.now(UTC)

        def apply(db: sqlite3.Connection, target: str) -> dict[str, Any]:
            db.execute('INSERT INTO incident_actions (incident_id, ts, layer, "by", text) '
                       "VALUES (?,?,?,?,?)", (target, iso(now), layer, by, text))
            return {"layer": layer, "text": text}

        return self._change(normalize_id(incident_id), by, "action", apply, now)[0]

    # -- reminders -------------------------------------------------------------------------

    def reminder_sent(self, incident_id: str, deadline: str, stage: str, due: str,
                      notifier: str) -> bool:
        with self._lock:
            return self._db.execute(
                "SELECT 1 FROM incident_reminders WHERE incident_id = ? AND deadline = ? AND "
                "stage = ? AND due = ? AND notifier = ?",
                (incident_id, deadline, stage, due, notifier)).fetchone() is not None

    def mark_reminder(self, incident_id: str, deadline: str, stage: str, due: str,
                      notifier: str, now: datetime) -> None:
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO incident_reminders VALUES (?,?,?,?,?,?)",
                             (incident_id, deadline, stage, due, notifier, iso(now)))

    def counts(self, now: datetime) -> tuple[int, dict[str, int]]:
        """(open incidents, overdue incidents per deadline) for the metrics."""
        t = iso(now)
        with self._lock:
            open_n = self._db.execute("SELECT count(*) FROM incidents WHERE status != 'closed'"
                                      ).fetchone()[0]
            notif = self._db.execute("SELECT count(*) FROM incidents WHERE notified_at IS NULL "
                                     "AND notify_due < ?", (t,)).fetchone()[0]
            final = self._db.execute("SELECT count(*) FROM incidents WHERE reported_at IS NULL "
                                     "AND report_due IS NOT NULL AND report_due < ?",
                                     (t,)).fetchone()[0]
        return int(open_n), {"notification": int(notif), "final_report": int(final)}


# -- what other subsystems read -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IncidentDates:
    """The dates and flags of one incident that the reports count (times as stored:
    RFC 3339 text, or Unix seconds in a file written by other tools)."""

    opened_at: str | float | None
    closed_at: str | float | None
    severity: str | None
    serious: int | None
    notify_due: str | float | None
    report_due: str | float | None
    notified_at: str | float | None
    reported_at: str | float | None


_DATES = ("opened_at", "closed_at", "severity", "serious", "notify_due", "report_due",
          "notified_at", "reported_at")


def incident_dates(path: str | None) -> list[IncidentDates] | None:
    """Every incident's dates, read without changing the file (the reports). ``None``
    when there is no file or no ``incidents`` table; a column a file of an older shape
    lacks reads as ``None``."""
    with read_only(path) as db:
        if db is None or not has_table(db, "incidents"):
            return None
        present = columns(db, "incidents")
        select = ", ".join(c if c in present else "NULL" for c in _DATES)
        rows = db.execute(f"SELECT {select} FROM incidents").fetchall()  # noqa: S608
    return [IncidentDates(*row) for row in rows]


def alert_ids(path: str, incident_id: str) -> list[str]:
    """The alert ids of an incident, read without changing the file (layer-4 sharing);
    :class:`socd.sqlite.NoDatabase` when the file does not exist."""
    db = open_db(path, readonly=True, busy_timeout_ms=5000)
    try:
        rows = db.execute("SELECT alert_id FROM incident_alerts WHERE incident_id = ?",
                          (incident_id,)).fetchall()
    finally:
        db.close()
    return [str(r[0]) for r in rows]


def _parse(text: str) -> datetime:
    from socd.incidents.model import parse

    value = parse(text)
    assert value is not None
    return value


def _incident(row: Sequence[Any], alerts: tuple[str, ...],
              actions: tuple[Action, ...]) -> Incident:
    values = list(row)
    values[13] = bool(values[13])
    values[14] = tuple(orjson.loads(values[14]))
    values[15] = bool(values[15])
    values[16] = bool(values[16])
    return replace(Incident(*values), alerts=alerts, actions=actions)
