"""What reports read besides alerts: IoC imports, block decisions, incidents, exchanges.

Each source is a SQLite file in the state directory that its subsystem owns; the
report asks the owner's read functions, which open the file **read-only** (a report
never creates, migrates or locks a subsystem's file) and run the SQL:

* the IoC imports of the period: :func:`socd.ioc.store.import_activity` (an import
  *batch* is one (source, letter reference) pair whose attribution was used by an
  import in the period);
* the block decisions: :func:`socd.block.decisions.activity`;
* the incidents' dates: :func:`socd.incidents.store.incident_dates`;
* the layer-4 exchanges: :func:`socd.sharing.records.exchange_log`.

A missing file or table gives a summary with ``available = False`` and the report says
"no data" (``chưa có dữ liệu``) instead of failing: the incidents (``incidents.db``)
and layer-4 sharing (``sharing.db``) subsystems may not be set up on a site yet. The
subsystems are imported when their source is read, not with this module.

Times may be Unix seconds (int/float) or RFC 3339 text; both are understood.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from socd import netaddr
from socd.reports.periods import Period
from socd.sqlite import Error, NoDatabase
from socd.tz import iso_or_none

if TYPE_CHECKING:
    from socd.config import Config

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
    def from_config(cls, cfg: Config) -> SideSources:
        from socd.config import resolve_path

        state = cfg.state_dir
        blocks = [p.config for p in cfg.sinks.values()
                  if getattr(p.config, "type", None) == "blocker"]
        blocks_path = getattr(blocks[0], "path", "blocks.db") if blocks else "blocks.db"
        doc = cfg.document
        return cls(ioc_db=resolve_path(state, doc.ioc.db_path),
                   blocks_db=resolve_path(state, blocks_path),
                   incidents_db=resolve_path(state, doc.incidents.db_path or "incidents.db"),
                   sharing_db=resolve_path(state, doc.sharing.db_path or "sharing.db"))

    def _safe(self, what: str, fn: Callable[[Period], T], empty: T, period: Period) -> T:
        try:
            return fn(period)
        except (Error, NoDatabase) as exc:
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
        from socd.ioc.store import import_activity

        start, end = period.start.timestamp(), period.end.timestamp()
        rows = import_activity(self.ioc_db, start, end)
        if rows is None:
            return IocSummary(False)
        merged: dict[tuple[str, str], dict[str, Any]] = {}
        for row in rows:
            item = merged.setdefault((row.source, row.ref),
                                     {"received": 0.0, "entries": 0, "new": 0, "kinds": {}})
            item["received"] = max(item["received"], row.last_used)
            item["entries"] += row.entries
            item["new"] += row.new_entries
            item["kinds"][row.kind] = item["kinds"].get(row.kind, 0) + row.entries
        batches = [IocBatch(s, r, v["received"], v["entries"], v["new"], dict(sorted(
            v["kinds"].items()))) for (s, r), v in merged.items()]
        batches.sort(key=lambda b: (b.received, b.source, b.ref))
        return IocSummary(True, batches)

    def _blocks(self, period: Period) -> BlockSummary:
        from socd.block.decisions import activity

        start, end = period.start.timestamp(), period.end.timestamp()
        done = activity(self.blocks_db, start, end)
        if done is None:
            return BlockSummary(False)
        blocked: dict[str, str] = {}
        new: set[str] = set()
        refused: set[str] = set()
        for row in done.actions:
            if not netaddr.is_network(row.value):  # addresses and networks only
                continue
            if row.action == "refuse":
                refused.add(row.value)
                continue
            blocked.setdefault(row.value, row.ref)
            if row.action == "add":
                new.add(row.value)
        by_ref = Counter(ref or "—" for ref in blocked.values())
        return BlockSummary(True, len(blocked), len(new), len(refused), done.active_at_end,
                            dict(sorted(by_ref.items(), key=lambda kv: (-kv[1], kv[0]))))

    def _incidents(self, period: Period) -> IncidentSummary:
        from socd.incidents.store import incident_dates

        start, end = period.start.timestamp(), period.end.timestamp()
        rows = incident_dates(self.incidents_db)
        if rows is None:
            return IncidentSummary(False)
        opened = closed = open_at_end = serious = 0
        deadlines = Counter[str]()
        by_sev: Counter[str] = Counter()
        for row in rows:
            o, c, sev, ser = row.opened_at, row.closed_at, row.severity, row.serious
            ndue, rdue, nat, rat = row.notify_due, row.report_due, row.notified_at, \
                row.reported_at
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
        from socd.sharing.records import exchange_log

        start, end = period.start.timestamp(), period.end.timestamp()
        rows = exchange_log(self.sharing_db)
        if rows is None:
            return ExchangeSummary(False)
        total = ok = failed = objects = 0
        kinds: Counter[str] = Counter()
        last: tuple[float, str, str] | None = None
        for row in rows:
            ts, kind, target, recipient = row.ts, row.kind, row.target, row.recipient
            objs, result = row.objects, row.result
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
