"""What reports read besides alerts: IoC imports, block decisions, incidents, exchanges.

Each source is a SQLite file in the state directory, opened **read-only** (``mode=ro``:
a report never creates, migrates or locks a subsystem's file) and read with plain
SQL, so the report does not import the subsystem's code. A missing file or table
gives a summary with ``available = False`` and the report says "no data"
(``chưa có dữ liệu``) instead of failing: the incidents (``incidents.db``) and
layer-4 sharing (``sharing.db``) subsystems may not be set up on a site yet.

Expected tables (owned by their subsystems; only these columns are read):

* ``ioc.db`` ``attrs(id, source, ref, last_used)`` and ``iocs(kind, attr, first_seen)``
  (:mod:`socd.ioc.store`): an import *batch* is one (source, letter reference) pair
  whose attribution was used by an import in the period.
* ``blocks.db`` ``audit(ts, action, value, ref, dry_run)`` and ``decisions(value,
  kind, state, expires)`` (:mod:`socd.block.decisions`).
* ``incidents.db`` ``incidents(id, opened_at, discovered_at, closed_at,
  response_ended_at, status, severity, system_level, serious, notify_due,
  report_due, notified_at, reported_at)``.
* ``sharing.db`` ``exchanges(id, ts, kind, target, recipient, objects, result,
  detail)``.

Times may be Unix seconds (int/float) or RFC 3339 text; both are understood.
"""

from __future__ import annotations

import os
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog

from socd.reports.periods import Period
from socd.tz import iso_or_none

log = structlog.get_logger("socd.reports.sources")
T = TypeVar("T")


def to_epoch(value: Any) -> float | None:
    """Unix seconds from a number or an RFC 3339 / ISO text (naive = UTC); None if not."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    parsed = iso_or_none(text)
    return None if parsed is None else parsed.timestamp()


@contextmanager
def _readonly(path: str | None) -> Iterator[sqlite3.Connection | None]:
    if not path or not os.path.isfile(path):
        yield None
        return
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        db.execute("PRAGMA busy_timeout=5000")
        yield db
    finally:
        db.close()


def _has_table(db: sqlite3.Connection, table: str) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?",
                      (table,)).fetchone() is not None


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {str(r[1]) for r in db.execute(f"PRAGMA table_info({table})")}


@dataclass(frozen=True, slots=True)
class IocBatch:
    source: str
    ref: str  # the letter (công văn) reference, "941/CATTT-NCSC"
    received: float  # Unix seconds of the latest import in the period
    entries: int  # entries now attributed to it
    new_entries: int  # of which first seen in the period
    by_kind: dict[str, int]


@dataclass(frozen=True, slots=True)
class IocSummary:
    available: bool
    batches: list[IocBatch] = field(default_factory=list)

    @property
    def entries(self) -> int:
        return sum(b.entries for b in self.batches)


@dataclass(frozen=True, slots=True)
class BlockSummary:
    available: bool
    blocked: int = 0  # distinct addresses blocked or re-blocked in the period
    new: int = 0  # of which blocked for the first time (action add)
    refused: int = 0  # blocks refused (allowlisted)
    active_at_end: int = 0  # decisions active at the end of the period
    by_ref: dict[str, int] = field(default_factory=dict)  # letter/origin -> addresses


@dataclass(frozen=True, slots=True)
class IncidentSummary:
    available: bool
    opened: int = 0
    closed: int = 0
    open_at_end: int = 0
    serious: int = 0  # opened in the period and flagged serious (Decision 05/2017)
    notify_on_time: int = 0  # notification (5 days after discovery) sent by its deadline
    notify_late: int = 0
    notify_overdue: int = 0  # due before the end of the period, still not sent
    report_on_time: int = 0  # final report (5 days after response ended)
    report_late: int = 0
    report_overdue: int = 0
    by_severity: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ExchangeSummary:
    available: bool
    total: int = 0
    succeeded: int = 0
    failed: int = 0
    objects: int = 0  # objects sent by successful exchanges
    by_kind: dict[str, int] = field(default_factory=dict)
    last_success: float | None = None  # Unix seconds, any time up to the period's end
    last_success_target: str = ""
    last_success_recipient: str = ""


@dataclass(frozen=True, slots=True)
class SideSources:
    """Paths of the side stores (None: not configured, reported as "no data")."""

    ioc_db: str | None = None
    blocks_db: str | None = None
    incidents_db: str | None = None
    sharing_db: str | None = None

    @classmethod
    def from_config(cls, cfg: Any) -> SideSources:
        from socd.config import resolve_path

        state = cfg.state_dir
        blocks = [p.config for p in cfg.sinks.values()
                  if getattr(p.config, "type", None) == "blocker"]
        blocks_path = getattr(blocks[0], "path", "blocks.db") if blocks else "blocks.db"
        # The incidents and sharing sections may not exist in every config (nor their
        # code on every install): their db_path when present, else the default name.
        incidents = getattr(getattr(cfg.document, "incidents", None), "db_path", None)
        sharing = getattr(getattr(cfg.document, "sharing", None), "db_path", None)
        return cls(ioc_db=resolve_path(state, cfg.document.ioc.db_path),
                   blocks_db=resolve_path(state, blocks_path),
                   incidents_db=resolve_path(state, incidents or "incidents.db"),
                   sharing_db=resolve_path(state, sharing or "sharing.db"))

    def _safe(self, what: str, fn: Callable[[Period], T], empty: T, period: Period) -> T:
        try:
            return fn(period)
        except sqlite3.Error as exc:
            log.warning("report source unreadable; reported as no data", source=what,
                        error=str(exc))
            return empty

    def ioc(self, period: Period) -> IocSummary:
        return self._safe("ioc", self._ioc, IocSummary(False), period)

    def blocks(self, period: Period) -> BlockSummary:
        return self._safe("blocks", self._blocks, BlockSummary(False), period)

    def incidents(self, period: Period) -> IncidentSummary:
        return self._safe("incidents", self._incidents, IncidentSummary(False), period)

    def exchanges(self, period: Period) -> ExchangeSummary:
        return self._safe("sharing", self._exchanges, ExchangeSummary(False), period)

    # -- readers ---------------------------------------------------------------------

    def _ioc(self, period: Period) -> IocSummary:
        start, end = period.start.timestamp(), period.end.timestamp()
        with _readonly(self.ioc_db) as db:
            if db is None or not (_has_table(db, "attrs") and _has_table(db, "iocs")):
                return IocSummary(False)
            rows = db.execute(
                "SELECT a.source, a.ref, max(a.last_used), i.kind, count(*), "
                "sum(i.first_seen >= ? AND i.first_seen < ?) FROM attrs a "
                "JOIN iocs i ON i.attr = a.id WHERE a.last_used >= ? AND a.last_used < ? "
                "GROUP BY a.source, a.ref, i.kind", (start, end, start, end)).fetchall()
        merged: dict[tuple[str, str], dict[str, Any]] = {}
        for source, ref, used, kind, n, new in rows:
            item = merged.setdefault((str(source), str(ref)),
                                     {"received": 0.0, "entries": 0, "new": 0, "kinds": {}})
            item["received"] = max(item["received"], float(used))
            item["entries"] += int(n)
            item["new"] += int(new or 0)
            item["kinds"][str(kind)] = item["kinds"].get(str(kind), 0) + int(n)
        batches = [IocBatch(s, r, v["received"], v["entries"], v["new"], dict(sorted(
            v["kinds"].items()))) for (s, r), v in merged.items()]
        batches.sort(key=lambda b: (b.received, b.source, b.ref))
        return IocSummary(True, batches)

    def _blocks(self, period: Period) -> BlockSummary:
        start, end = period.start.timestamp(), period.end.timestamp()
        with _readonly(self.blocks_db) as db:
            if db is None or not _has_table(db, "audit"):
                return BlockSummary(False)
            rows = db.execute(
                "SELECT action, value, ref FROM audit WHERE ts >= ? AND ts < ? AND dry_run = 0 "
                "AND action IN ('add', 'extend', 'refuse')", (start, end)).fetchall()
            active = 0
            if _has_table(db, "decisions"):
                active = int(db.execute(
                    "SELECT count(*) FROM decisions WHERE dry_run = 0 AND kind != 'domain' "
                    "AND created < ? AND expires >= ? AND (state = 'active' OR updated >= ?)",
                    (end, end, end)).fetchone()[0])
        blocked: dict[str, str] = {}
        new: set[str] = set()
        refused: set[str] = set()
        for action, value, ref in rows:
            value = str(value)
            if not _is_address(value):
                continue
            if action == "refuse":
                refused.add(value)
                continue
            blocked.setdefault(value, str(ref or ""))
            if action == "add":
                new.add(value)
        by_ref = Counter(ref or "—" for ref in blocked.values())
        return BlockSummary(True, len(blocked), len(new), len(refused), active,
                            dict(sorted(by_ref.items(), key=lambda kv: (-kv[1], kv[0]))))

    def _incidents(self, period: Period) -> IncidentSummary:
        start, end = period.start.timestamp(), period.end.timestamp()
        with _readonly(self.incidents_db) as db:
            if db is None or not _has_table(db, "incidents"):
                return IncidentSummary(False)
            cols = _columns(db, "incidents")
            wanted = ("opened_at", "closed_at", "severity", "serious", "notify_due",
                      "report_due", "notified_at", "reported_at")
            select = ", ".join(c if c in cols else "NULL" for c in wanted)
            rows = db.execute(f"SELECT {select} FROM incidents").fetchall()  # noqa: S608
        opened = closed = open_at_end = serious = 0
        deadlines = Counter[str]()
        by_sev: Counter[str] = Counter()
        for o, c, sev, ser, ndue, rdue, nat, rat in rows:
            o_t, c_t = to_epoch(o), to_epoch(c)
            if o_t is not None and start <= o_t < end:
                opened += 1
                by_sev[str(sev or "unknown")] += 1
                if ser:
                    serious += 1
            if c_t is not None and start <= c_t < end:
                closed += 1
            if o_t is not None and o_t < end and (c_t is None or c_t >= end):
                open_at_end += 1
            for name, due, done in (("notify", ndue, nat), ("report", rdue, rat)):
                due_t, done_t = to_epoch(due), to_epoch(done)
                if due_t is None:
                    continue
                if done_t is not None and start <= done_t < end:
                    deadlines[f"{name}_{'on_time' if done_t <= due_t else 'late'}"] += 1
                elif (done_t is None or done_t >= end) and due_t < end:
                    deadlines[f"{name}_overdue"] += 1
        return IncidentSummary(True, opened, closed, open_at_end, serious,
                               deadlines["notify_on_time"], deadlines["notify_late"],
                               deadlines["notify_overdue"], deadlines["report_on_time"],
                               deadlines["report_late"], deadlines["report_overdue"],
                               dict(sorted(by_sev.items())))

    def _exchanges(self, period: Period) -> ExchangeSummary:
        start, end = period.start.timestamp(), period.end.timestamp()
        with _readonly(self.sharing_db) as db:
            if db is None or not _has_table(db, "exchanges"):
                return ExchangeSummary(False)
            cols = _columns(db, "exchanges")
            wanted = ("ts", "kind", "target", "recipient", "objects", "result")
            select = ", ".join(c if c in cols else "NULL" for c in wanted)
            rows = db.execute(f"SELECT {select} FROM exchanges").fetchall()  # noqa: S608
        total = ok = failed = objects = 0
        kinds: Counter[str] = Counter()
        last: tuple[float, str, str] | None = None
        for ts, kind, target, recipient, objs, result in rows:
            t = to_epoch(ts)
            if t is None or t >= end:
                continue
            success = str(result or "").lower() in ("ok", "success", "succeeded", "sent", "1")
            if success and (last is None or t > last[0]):
                last = (t, str(target or ""), str(recipient or ""))
            if t < start:
                continue
            total += 1
            kinds[str(kind or "")] += 1
            if success:
                ok += 1
                objects += _int(objs)
            else:
                failed += 1
        return ExchangeSummary(True, total, ok, failed, objects, dict(sorted(kinds.items())),
                               last[0] if last else None, last[1] if last else "",
                               last[2] if last else "")


def _int(value: Any) -> int:
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            import json

            try:
                loaded = json.loads(value)
            except ValueError:
                return 0
            return len(loaded) if isinstance(loaded, list | dict) else 0
    return 0


def _is_address(value: str) -> bool:
    from socd import netaddr

    return netaddr.is_network(value)
