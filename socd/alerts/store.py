"""The embedded alert store (SQLite).

It keeps alerts where there is no Elasticsearch (the embedded default, small
sites) and the alert lifecycle (status, assignee, history; see
:mod:`socd.alerts.lifecycle` and docs/alerts.md). SQLite in WAL mode gives durable writes
with one ``fsync`` per transaction and lets the CLI read and update while the
daemon writes.

Guarantees:

* An alert is stored once (``id`` = ``event.hash``): the sink's ``INSERT OR
  IGNORE`` skips a retried or redelivered alert and so never resets a status,
  an assignee or a note set by ``socd alert``.
* Every lifecycle change is one short ``BEGIN IMMEDIATE`` transaction that reads
  the current row, applies the caller's decision and appends to
  ``alert_history``: two operators acting at once are serialized, and the
  history always explains the current status.
* Opening a version 1, 2, 3 or 4 file migrates it to version 5 in place, in one
  transaction (a crash leaves the old schema, never half a new one). A file
  written by a newer socd is refused rather than misread (:class:`socd.sqlite.Schema`).

The ``alerts`` and ``alert_history`` tables are this module's: the reports and layer-4
sharing read them through :class:`AlertStore`'s methods (:meth:`AlertStore.group_counts`,
:meth:`AlertStore.docs`...), never with their own SQL.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

import orjson

from socd.event import Event, get, now_iso
from socd.severity import fold
from socd.sqlite import Schema, Store, has_table
from socd.tz import iso_or_none

SCHEMA_VERSION = "5"

# Version 2, created as a whole in a new file. A version 1 file gets the same
# shape from _MIGRATE_1_2. ``ts_ms`` (epoch milliseconds of @timestamp) exists
# because @timestamp keeps its source's offset, so its text does not sort in
# time order across sources.
_SCHEMA_2 = (
    """CREATE TABLE alerts (
    id             TEXT PRIMARY KEY,          -- event.hash: a retry never duplicates
    ts             TEXT NOT NULL,             -- @timestamp (RFC 3339)
    kind           TEXT NOT NULL,             -- event.kind
    severity       TEXT,
    layer          INTEGER,
    asset_kind     TEXT,
    unit           TEXT,
    module         TEXT,
    rule_id        TEXT,
    rule_name      TEXT,
    host_name      TEXT,
    source_ip      TEXT,
    destination_ip TEXT,
    ioc            INTEGER NOT NULL DEFAULT 0,
    status         TEXT NOT NULL DEFAULT 'new',
    doc            BLOB NOT NULL,             -- the whole event as JSON, as received
    assignee       TEXT,
    status_by      TEXT,                      -- who made the last lifecycle change
    status_note    TEXT,                      -- its note
    status_at      TEXT,                      -- its time (RFC 3339, UTC)
    ts_ms          INTEGER                    -- @timestamp as epoch milliseconds
)""",
    "CREATE INDEX alerts_ts ON alerts (ts)",
    "CREATE INDEX alerts_severity ON alerts (severity, asset_kind)",
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)
_HISTORY = (
    """CREATE TABLE alert_history (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id    TEXT NOT NULL,
    ts          TEXT NOT NULL,                -- RFC 3339, UTC
    action      TEXT NOT NULL,                -- ack, reopen, resolve, false_positive, assign
    status_from TEXT,
    status_to   TEXT,
    "by"        TEXT,
    note        TEXT
)""",
    "CREATE INDEX alert_history_alert ON alert_history (alert_id, id)",
    "CREATE INDEX alerts_ts_ms ON alerts (ts_ms)",
    "CREATE INDEX alerts_status ON alerts (status, rule_id)",
    "CREATE INDEX alerts_rule ON alerts (rule_id)",
)
# Version 3: the console's alert queue (socd.console) pages through alerts newest first
# under any mix of filters, with 1,000,000 alerts in ≤ 200 ms. Each index starts with
# ``kind`` (the queue shows alerts only) and ends with ``ts_ms`` (the order), so a
# page is a range walk that stops after one page, and the counts per severity are
# covering range counts. Measured on 1M alerts: +3 % insert time, +13 % file size.
_CONSOLE = (
    "CREATE INDEX alerts_q_ts ON alerts (kind, ts_ms)",
    "CREATE INDEX alerts_q_severity ON alerts (kind, severity, unit, ts_ms)",
    "CREATE INDEX alerts_q_unit ON alerts (kind, unit, ts_ms)",
    "CREATE INDEX alerts_q_status ON alerts (kind, status, ts_ms)",
)
# Version 4: free text is looked up in ``search``, the five text columns lower-cased by
# Python (every letter, "ĐĂNG NHẬP" as "đăng nhập", as Elasticsearch's case-insensitive
# wildcard matches them; SQLite's LIKE folds ASCII only) and joined by U+001F; written at
# insert (the columns never change afterwards). The queue's rule sort walks the rule
# index in time order. Filling ``search`` in a file of 1,000,000 alerts takes seconds, once.
_V4 = (
    "ALTER TABLE alerts ADD COLUMN search TEXT",
    "CREATE INDEX alerts_q_rule ON alerts (kind, rule_id, ts_ms)",
)
# Version 5: free text walks this index in time order and tests ``search`` on its
# entries, reading a row only when it matches: ``search`` is the last column, after the
# event's JSON, so reading it from the table means reading each row's overflow pages
# (a rare term over 1,000,000 alerts: 9 s from the table, 0.2 s from this index; the
# counts per severity are a covering scan of it). +3 % file size.
_V5 = ("CREATE INDEX alerts_q_text ON alerts (kind, ts_ms, severity, search)",)
_TEXT_INDEX: Final = " INDEXED BY alerts_q_text"
SEARCH_SEPARATOR: Final = "\x1f"
_TEXT_COLUMNS: Final = ("id", "rule_id", "rule_name", "host_name", "unit")


def search_text(*values: Any) -> str:
    """The ``search`` column of an alert's text columns (see ``_V4``)."""
    return SEARCH_SEPARATOR.join(str(v).lower() for v in values
                                 if isinstance(v, str | int | float) and not isinstance(v, bool)
                                 and v != "")


def _fill_search(db: sqlite3.Connection) -> None:
    """The upgrade step that writes ``search`` for the alerts already stored."""
    db.create_function("socd_search", len(_TEXT_COLUMNS), search_text, deterministic=True)
    db.execute(f"UPDATE alerts SET search = socd_search({', '.join(_TEXT_COLUMNS)})")  # noqa: S608


_MIGRATE_1_2 = (
    "ALTER TABLE alerts ADD COLUMN assignee TEXT",
    "ALTER TABLE alerts ADD COLUMN status_by TEXT",
    "ALTER TABLE alerts ADD COLUMN status_note TEXT",
    "ALTER TABLE alerts ADD COLUMN status_at TEXT",
    "ALTER TABLE alerts ADD COLUMN ts_ms INTEGER",
    # SQLite's julianday() reads RFC 3339 with an offset or Z and fractions.
    "UPDATE alerts SET ts_ms = CAST(round((julianday(ts) - 2440587.5) * 86400000) AS INTEGER)",
)



def _version_1(db: sqlite3.Connection) -> str | None:
    """A file from before the ``meta`` table is version 1 when it has alerts."""
    return "1" if has_table(db, "alerts") else None


SCHEMA: Final = Schema(
    name="alert store",
    create=(*_SCHEMA_2, *_HISTORY, *_CONSOLE, *_V4, *_V5),
    version=SCHEMA_VERSION,
    # A version 1 file may predate the meta table too. Building the version 3 indexes
    # of a large file takes a few seconds (4 s for 1,000,000 alerts), once.
    upgrades={"1": ("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
                    *_MIGRATE_1_2, *_HISTORY, *_CONSOLE, *_V4, _fill_search, *_V5),
              "2": (*_CONSOLE, *_V4, _fill_search, *_V5),
              "3": (*_V4, _fill_search, *_V5),
              "4": _V5},
    legacy=_version_1,
    create_always=False,
    unknown="newer",
)

# The columns an alert count can be grouped by (:meth:`AlertStore.group_counts`), by the
# name the reports give them.
GROUP_COLUMNS: Final[Mapping[str, str]] = {
    "severity": "severity", "asset_kind": "asset_kind", "status": "status", "unit": "unit",
    "rule_id": "rule_id", "rule_name": "rule_name", "host_name": "host_name",
    "destination_ip": "destination_ip",
}
_IN_CHUNK = 500  # ids per `IN (...)` query

_SELECT = ("SELECT id, ts, ts_ms, kind, severity, layer, asset_kind, unit, module, rule_id, "
           "rule_name, host_name, source_ip, destination_ip, ioc, status, assignee, status_by, "
           "status_note, status_at, doc FROM alerts")

_SELECT_ROWID = _SELECT.replace("SELECT ", "SELECT rowid, ", 1)
_UPDATE_ROWID = ("UPDATE alerts SET status = ?, assignee = ?, status_by = ?, status_note = ?, "
                 "status_at = ? WHERE rowid = ?")
_HISTORY_ROW = ('INSERT INTO alert_history (alert_id, ts, action, status_from, status_to, "by", '
            "note) VALUES (?,?,?,?,?,?,?)")
_CHUNK: Final = 500  # ids per IN (...): under SQLite's bound-parameter limits
_AUTOCHECKPOINT: Final = 1000  # SQLite's default wal_autocheckpoint (pages)

KEEP: Any = object()
"""``Change.assignee`` default: leave the assignee as it is."""


@dataclass(frozen=True, slots=True)
class StoredAlert:
    """One row of ``alerts``: the indexed columns, the lifecycle state and the event."""

    id: str
    ts: str
    ts_ms: int | None
    kind: str
    severity: str | None
    layer: int | None
    asset_kind: str | None
    unit: str | None
    module: str | None
    rule_id: str | None
    rule_name: str | None
    host_name: str | None
    source_ip: str | None
    destination_ip: str | None
    ioc: bool
    status: str
    assignee: str | None
    status_by: str | None
    status_note: str | None
    status_at: str | None
    doc: bytes

    def event(self) -> Event:
        """The stored event with its current ``socd.alert.*`` lifecycle fields."""
        event: Event = orjson.loads(self.doc)
        socd = event.setdefault("socd", {})
        alert = socd.get("alert")
        if not isinstance(alert, dict):
            alert = socd["alert"] = {}
        alert["status"] = self.status
        for key, value in (("assignee", self.assignee), ("updated", self.status_at),
                           ("updated_by", self.status_by), ("note", self.status_note)):
            if value is not None:
                alert[key] = value
        return event


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One lifecycle change of an alert."""

    id: int
    alert_id: str
    ts: str
    action: str
    status_from: str | None
    status_to: str | None
    by: str | None
    note: str | None


@dataclass(frozen=True, slots=True)
class Change:
    """What a lifecycle decision wants written (see :meth:`AlertStore.update`)."""

    action: str
    status: str
    by: str
    note: str | None = None
    assignee: Any = KEEP  # str, None (unassign) or KEEP


@dataclass(frozen=True, slots=True)
class Updated:
    """The result of :meth:`AlertStore.update`: the row before and after."""

    before: StoredAlert
    after: StoredAlert
    changed: bool  # False: the decision was a no-op, nothing was written


@dataclass(frozen=True, slots=True)
class AlertQuery:
    """A filter over alerts (event.kind alert) and one page of them: the console's queue
    (:meth:`AlertStore.search`; the Elasticsearch reader in socd.console answers the same
    query with the same alerts). ``None`` leaves a field unfiltered.

    ``text`` is a substring of the id, rule id or name, host name or unit, every
    letter's case ignored (``str.lower``).

    ``sort`` is one of :data:`SORTS`: ``newest`` (the default) or ``oldest`` order by
    ``(ts_ms, id)``; ``severity`` (most severe first), ``unit`` and ``rule`` (rule id,
    ascending by code point) order by that key, alerts without one last, then newest
    first within a key. ``after`` is the keyset cursor: the ``(ts_ms, id)`` of the last
    alert of the previous page, and for a keyed sort ``after_key`` is ``(its key,)``
    (``(None,)``: it had none)."""

    severity: str | None = None
    status: str | None = None
    unit: str | None = None
    layer: int | None = None
    asset_kind: str | None = None
    rule: str | None = None  # rule.id or rule.name
    source_ip: str | None = None
    destination_ip: str | None = None
    since_ms: int | None = None  # ts_ms >= since_ms
    until_ms: int | None = None  # ts_ms < until_ms
    text: str | None = None
    after: tuple[int, str] | None = None
    sort: str = "newest"
    after_key: tuple[str | None] | None = None
    limit: int = 50

    @property
    def oldest_first(self) -> bool:
        return self.sort == "oldest"


#: The queue's sorts; the keyed ones and the column of their key.
SORTS: Final = ("newest", "oldest", "severity", "unit", "rule")
SORT_COLUMNS: Final[Mapping[str, str]] = {"severity": "severity", "unit": "unit",
                                          "rule": "rule_id"}
#: The severity sort's order of keys (then alerts without a severity).
SEVERITY_ORDER: Final = ("critical", "high", "medium", "low")


def sort_key(alert: StoredAlert, sort: str) -> str | None:
    """The key ``alert`` is ordered by under a keyed ``sort`` (``None``: last)."""
    if sort == "severity":
        return alert.severity if alert.severity in SEVERITY_ORDER else None
    return alert.unit if sort == "unit" else alert.rule_id


def severity_groups(q: AlertQuery) -> list[str | None]:
    """The severity sort's keys, from the cursor's on (the NULL group last); only the
    filtered severity when ``q`` has one (the other groups are empty)."""
    order: list[str | None] = [*SEVERITY_ORDER, None]
    if q.after_key is not None and q.after_key[0] in order:
        order = order[order.index(q.after_key[0]):]
    return order if q.severity is None else [k for k in order if k == q.severity]


# AlertQuery fields compared for equality, and their columns.
_EQUAL: Final = (("severity", "severity"), ("status", "status"), ("unit", "unit"),
                 ("layer", "layer"), ("asset_kind", "asset_kind"),
                 ("source_ip", "source_ip"), ("destination_ip", "destination_ip"))


def _like(text: str) -> str:
    """``text`` as a ``LIKE ... ESCAPE '\\'`` substring pattern (its % and _ literal)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _select(q: AlertQuery) -> str:
    """The SELECT of a page of ``q``: through ``alerts_q_text`` when it has free text."""
    return _SELECT + _TEXT_INDEX if q.text else _SELECT


def _where(q: AlertQuery, *, page: bool) -> tuple[str, list[Any]]:
    """The WHERE clause of ``q`` (with its cursor when ``page``); values are parameters,
    column names come from this module."""
    where = ["kind = 'alert'"]
    params: list[Any] = []
    for name, column in _EQUAL:
        value = getattr(q, name)
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if q.rule is not None:
        where.append("(rule_id = ? OR rule_name = ?)")
        params += [q.rule, q.rule]
    if q.since_ms is not None:
        where.append("ts_ms >= ?")
        params.append(q.since_ms)
    if q.until_ms is not None:
        where.append("ts_ms < ?")
        params.append(q.until_ms)
    if q.text:
        # Both sides lower-cased by Python: LIKE's own folding (ASCII) has nothing left
        # to do. The separator never matches: no text crosses from one column to the next.
        if SEARCH_SEPARATOR in q.text:
            where.append("0")
        else:
            where.append("search LIKE ? ESCAPE '\\'")
            params.append(_like(q.text.lower()))
    if page and q.after is not None:
        # The range on ts_ms lets the index walk start at the cursor; ids break ties.
        op = ">" if q.oldest_first else "<"
        where.append(f"ts_ms {op}= ? AND (ts_ms {op} ? OR id {op} ?)")
        params += [q.after[0], q.after[0], q.after[1]]
    return " AND ".join(where), params


@dataclass(frozen=True, slots=True)
class RuleCounts:
    rule_id: str
    rule_name: str
    total: int
    false_positives: int


def _fold_sql(value: Any) -> str | None:
    return fold(value) if isinstance(value, str) else None


class AlertStore(Store):
    """Thread-safe access to the SQLite file; async callers use ``asyncio.to_thread``.

    ``readonly``: read an existing file without migrating it (layer-4 sharing reads the
    daemon's store; :class:`socd.sqlite.NoDatabase` when there is none)."""

    schema = SCHEMA

    def __init__(self, path: str, *, readonly: bool = False) -> None:
        super().__init__(path, busy_timeout_ms=5000, readonly=readonly)
        # `socd alert list --unit` matches units as severities are matched (case,
        # diacritics and spacing ignored): find() compares socd_fold(unit).
        self._db.create_function("socd_fold", 1, _fold_sql, deterministic=True)

    # -- schema --------------------------------------------------------------------------

    def schema_version(self) -> str:
        return str(self.query("SELECT value FROM meta WHERE key='schema_version'")[0][0])

    # -- the sink's side -------------------------------------------------------------------

    def insert(self, events: Sequence[Event]) -> int:
        """Insert events; ones already stored (same id) are skipped, so their lifecycle
        state is never reset. Returns new rows."""
        rows = [_row(e) for e in events]
        with self.transaction() as tx:
            before = tx.db.total_changes
            tx.db.executemany(
                "INSERT OR IGNORE INTO alerts (id, ts, kind, severity, layer, asset_kind, "
                "unit, module, rule_id, rule_name, host_name, source_ip, destination_ip, "
                "ioc, doc, status, ts_ms, search) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                rows)
            return tx.db.total_changes - before

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        """Any read of this store's file (its own methods, tests, diagnostics). Other
        subsystems use the named read methods below instead."""
        with self.reading() as db:
            return list(db.execute(sql, tuple(params)))

    def count(self) -> int:
        return int(self.query("SELECT count(*) FROM alerts")[0][0])

    def severity_by_asset(self) -> dict[tuple[str, str], int]:
        """Alert counts keyed by (severity, asset_kind)."""
        rows = self.query("SELECT severity, asset_kind, count(*) FROM alerts "
                          "WHERE kind = 'alert' GROUP BY severity, asset_kind")
        return {(str(s), str(a)): int(n) for s, a, n in rows}

    # -- the lifecycle ---------------------------------------------------------------------

    def get(self, alert_id: str) -> StoredAlert | None:
        rows = self.query(f"{_SELECT} WHERE id = ?", (alert_id,))
        return _alert(rows[0]) if rows else None

    def ids_with_prefix(self, prefix: str, limit: int = 10) -> list[str]:
        """Ids of alerts (event.kind alert) starting with ``prefix`` (lower-case hex)."""
        # A range scan on the primary key: `prefix <= id < prefix + "g"` for hex ids.
        rows = self.query("SELECT id FROM alerts WHERE id >= ? AND id < ? AND kind = 'alert' "
                          "ORDER BY id LIMIT ?", (prefix, prefix + "g", limit))
        return [str(r[0]) for r in rows]

    def find(self, *, status: str | None = None, severity: str | None = None,
             unit: str | None = None, rule: str | None = None, since_ms: int | None = None,
             limit: int = 50) -> list[StoredAlert]:
        """Alerts matching every given filter, newest first; ``unit`` matches whatever
        its case, diacritics and spacing (``so y te`` finds ``Sở Y tế``)."""
        where: list[str] = ["kind = 'alert'"]
        params: list[Any] = []
        for column, value in (("status", status), ("severity", severity)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if unit is not None:
            where.append("socd_fold(unit) = ?")
            params.append(fold(unit))
        if rule is not None:
            where.append("(rule_id = ? OR rule_name = ?)")
            params += [rule, rule]
        if since_ms is not None:
            where.append("ts_ms >= ?")
            params.append(since_ms)
        params.append(limit)
        rows = self.query(f"{_SELECT} WHERE {' AND '.join(where)} "
                          "ORDER BY ts_ms DESC, id LIMIT ?", params)
        return [_alert(r) for r in rows]

    def search(self, q: AlertQuery) -> list[StoredAlert]:
        """One page of the alerts ``q`` selects (see :class:`AlertQuery`)."""
        if q.sort in SORT_COLUMNS:
            return self._search_keyed(q)
        where, params = _where(q, page=True)
        order = "ASC" if q.oldest_first else "DESC"
        rows = self.query(f"{_select(q)} WHERE {where} "
                          f"ORDER BY ts_ms {order}, id {order} LIMIT ?", [*params, q.limit])
        return [_alert(r) for r in rows]

    def _search_keyed(self, q: AlertQuery) -> list[StoredAlert]:
        """A keyed sort's page: key by key, each key's alerts newest first, until the
        page is full. Each key's part is a walk of a (kind, key, ts_ms) index in time
        order that stops after the page (severity: ``alerts_q_severity``, unit:
        ``alerts_q_unit``, rule: ``alerts_q_rule``), and the next key is one index seek
        (as :meth:`units`): no sort of the matching alerts, whatever their number."""
        column = SORT_COLUMNS[q.sort]
        out: list[StoredAlert] = []
        for key in self._groups(q, column):
            mine = q.after_key is not None and key == q.after_key[0]
            where, params = _where(replace(q, sort="newest", after=q.after if mine else None),
                                   page=True)
            where += f" AND {column} IS NULL" if key is None else f" AND {column} = ?"
            params += [] if key is None else [key]
            rows = self.query(f"{_select(q)} WHERE {where} ORDER BY ts_ms DESC, id DESC "
                              "LIMIT ?", [*params, q.limit - len(out)])
            out += [_alert(r) for r in rows]
            if len(out) >= q.limit:
                break
        return out

    def _groups(self, q: AlertQuery, column: str) -> Iterable[str | None]:
        """The keys of a keyed sort from the cursor's on, then ``None``."""
        if q.sort == "severity":
            yield from severity_groups(q)
            return
        if q.after_key is not None and q.after_key[0] is None:
            yield None
            return
        start = q.after_key[0] if q.after_key is not None else None  # None: the first
        if q.sort == "unit" and q.unit is not None:  # one unit: no other key to visit
            key: str | None = q.unit if start is None or start <= q.unit else None
        else:
            key = start if start is not None else self._next_key(column, None)
        while key is not None:
            yield key
            if q.sort == "unit" and q.unit is not None:
                break
            key = self._next_key(column, key)
        yield None

    def _next_key(self, column: str, after: str | None) -> str | None:
        """The smallest stored key after ``after`` (the first without): one seek."""
        sql = f"SELECT min({column}) FROM alerts WHERE kind = 'alert'"  # noqa: S608
        rows = self.query(sql if after is None else f"{sql} AND {column} > ?",
                          [] if after is None else [after])
        return None if rows[0][0] is None else str(rows[0][0])

    def count_matching(self, q: AlertQuery, cap: int) -> int:
        """How many alerts ``q`` selects (its cursor ignored), counted up to ``cap``: a
        count over a million rows that a filter does not narrow would cost seconds, so
        the queue shows "10.000+" instead."""
        where, params = _where(q, page=False)
        table = "alerts" + (_TEXT_INDEX if q.text else "")
        sql = f"SELECT count(*) FROM (SELECT 1 FROM {table} WHERE {where} LIMIT ?)"  # noqa: S608
        return int(self.query(sql, [*params, cap])[0][0])

    def units(self, limit: int = 500) -> list[str]:
        """The units alerts are stored under (sorted, at most ``limit``): the queue's
        unit filter offers them. Each step asks the (kind, unit) index for the next
        unit, so it reads one index entry per unit, not one per alert."""
        rows = self.query(
            "WITH RECURSIVE u(unit) AS (SELECT min(unit) FROM alerts WHERE kind = 'alert' "
            "UNION ALL SELECT (SELECT min(unit) FROM alerts WHERE kind = 'alert' AND "
            "unit > u.unit) FROM u WHERE u.unit IS NOT NULL) "
            "SELECT unit FROM u WHERE unit IS NOT NULL LIMIT ?", (limit,))
        return [str(r[0]) for r in rows]

    def severity_counts(self, q: AlertQuery) -> dict[str, int]:
        """Exact alerts per severity that ``q`` selects (its severity and cursor
        ignored), in one pass: cheaper than four :meth:`count_matching` calls when the
        query must read every row anyway (free text)."""
        where, params = _where(replace(q, severity=None), page=False)
        table = "alerts" + (_TEXT_INDEX if q.text else "")
        rows = self.query(f"SELECT severity, count(*) FROM {table} WHERE {where} "  # noqa: S608
                          "GROUP BY severity", params)
        return {str(s): int(n) for s, n in rows if s is not None}

    def update_many(self, alert_ids: Sequence[str],
                    decide: Callable[[StoredAlert], Change | None]) -> list[Updated]:
        """:meth:`update` for many alerts in one transaction (one ``fsync``). ``decide``
        may raise to refuse the whole batch (nothing is written). Ids of no alert are
        left out of the result, which keeps the order of ``alert_ids``.

        Why it is shaped so (1,000 ticked alerts spread over a 1,000,000-alert file,
        scripts/bench_console.py): the rows are read by ``id IN (...)`` in chunks and
        written in rowid order, each chunk's updates and history rows one
        ``executemany``, the row after the change built rather than read again; and the
        commit does not run SQLite's automatic WAL checkpoint, which at that size copies
        some 5,000 pages back into the database file and took 1.5 s of the request's
        2.4 s. The commit is as durable without it (the WAL is the record); the next
        commit of the daemon's writer, or the last connection's close, checkpoints."""
        wanted = list(dict.fromkeys(alert_ids))
        found: dict[str, Updated] = {}
        try:
            self._update_many(wanted, decide, found)
        finally:  # committed or not: back to SQLite's default for the next ones
            with self.reading() as conn:
                conn.execute(f"PRAGMA wal_autocheckpoint={_AUTOCHECKPOINT}")
        return [found[i] for i in wanted if i in found]

    def _update_many(self, wanted: Sequence[str],
                     decide: Callable[[StoredAlert], Change | None],
                     found: dict[str, Updated]) -> None:
        with self.transaction() as tx:
            db = tx.db
            now = now_iso()
            rows: list[Sequence[Any]] = []
            for start in range(0, len(wanted), _CHUNK):
                chunk = wanted[start:start + _CHUNK]
                rows += db.execute(f"{_SELECT_ROWID} WHERE id IN "
                                   f"({','.join('?' * len(chunk))})", chunk).fetchall()
            rows.sort(key=lambda r: int(r[0]))
            writes: list[tuple[int, StoredAlert, Change]] = []
            for row in rows:
                before = _alert(row[1:])
                change = decide(before)
                if change is None:
                    found[before.id] = Updated(before, before, changed=False)
                else:
                    writes.append((int(row[0]), before, change))
            for _, before, change in writes:
                found[before.id] = Updated(before, _after(before, change, now), changed=True)
            db.executemany(_UPDATE_ROWID, [
                (found[b.id].after.status, found[b.id].after.assignee, c.by, c.note, now, rid)
                for rid, b, c in writes])
            db.executemany(_HISTORY_ROW, [(b.id, now, c.action, b.status, c.status, c.by, c.note)
                                      for _, b, c in writes])
            if writes:
                db.execute("PRAGMA wal_autocheckpoint=0")

    @staticmethod
    def _write(db: sqlite3.Connection, before: StoredAlert, change: Change,
               now: str) -> StoredAlert:
        """Apply ``change`` to the alert's row and append its history entry."""
        after = _after(before, change, now)
        db.execute("UPDATE alerts SET status = ?, assignee = ?, status_by = ?, "
                   "status_note = ?, status_at = ? WHERE id = ?",
                   (change.status, after.assignee, change.by, change.note, now, before.id))
        db.execute(_HISTORY_ROW, (before.id, now, change.action, before.status, change.status,
                              change.by, change.note))
        return _alert(db.execute(f"{_SELECT} WHERE id = ?", (before.id,)).fetchone())

    def history(self, alert_id: str) -> list[HistoryEntry]:
        rows = self.query('SELECT id, alert_id, ts, action, status_from, status_to, "by", note '
                          "FROM alert_history WHERE alert_id = ? ORDER BY id", (alert_id,))
        return [HistoryEntry(*r) for r in rows]

    def update(self, alert_id: str,
               decide: Callable[[StoredAlert], Change | None]) -> Updated | None:
        """Read the alert, let ``decide`` choose a change, write it and its history entry,
        all in one transaction. ``decide`` returns ``None`` for a no-op and may raise to
        refuse (nothing is written). Returns ``None`` when no such alert exists."""
        with self.transaction() as tx:
            db = tx.db
            rows = db.execute(f"{_SELECT} WHERE id = ?", (alert_id,)).fetchall()
            if not rows:
                tx.rollback()
                return None
            before = _alert(rows[0])
            change = decide(before)
            if change is None:
                tx.rollback()
                return Updated(before, before, changed=False)
            return Updated(before, self._write(db, before, change, now_iso()), changed=True)

    def status_counts(self, since_ms: int | None = None) -> dict[str, int]:
        """Alerts by current status (alert time at or after ``since_ms``, if given)."""
        rows = self.query("SELECT status, count(*) FROM alerts WHERE kind = 'alert' "
                          "AND (?1 IS NULL OR ts_ms >= ?1) GROUP BY status", (since_ms,))
        return {str(s): int(n) for s, n in rows}

    def rule_counts(self, since_ms: int | None = None) -> list[RuleCounts]:
        """Per rule: alerts and how many of them are now false positives (most first).

        A rule is its ``rule.id``; vendor alerts that carry only a ``rule.name`` (the
        EDR threat names) are grouped by that name."""
        rows = self.query(
            "SELECT coalesce(rule_id, ''), coalesce(max(rule_name), ''), count(*), "
            "sum(status = 'false_positive') AS fp FROM alerts "
            "WHERE kind = 'alert' AND (?1 IS NULL OR ts_ms >= ?1) "
            # A rule is its id, else (vendor alerts naming only a threat) its name.
            "GROUP BY CASE WHEN coalesce(rule_id, '') = '' THEN 'name:' || "
            "coalesce(rule_name, '') ELSE 'id:' || rule_id END "
            "ORDER BY fp DESC, count(*) DESC, 1, 2", (since_ms,))
        return [RuleCounts(str(r), str(n), int(t), int(f or 0)) for r, n, t, f in rows]

    def false_positives_by_rule(self, limit: int = 500) -> dict[str, int]:
        """False positives per rule id, else rule name (cheap: the status index finds
        the rows)."""
        rows = self.query("SELECT coalesce(nullif(rule_id, ''), rule_name, ''), count(*) AS n "
                          "FROM alerts WHERE status = 'false_positive' AND kind = 'alert' "
                          "GROUP BY CASE WHEN coalesce(rule_id, '') = '' THEN 'name:' || "
                          "coalesce(rule_name, '') ELSE 'id:' || rule_id END "
                          "ORDER BY n DESC, 1 LIMIT ?", (limit,))
        return {str(r): int(n) for r, n in rows}

    # -- what other subsystems read ------------------------------------------------------

    def group_counts(self, start_ms: int, end_ms: int, dims: Sequence[str], *,
                     day_offset_secs: int = 0, units: Sequence[str] | None = None,
                     scan: bool = False) -> dict[tuple[Any, ...], int]:
        """Alerts (event.kind alert) with ``start_ms <= ts_ms < end_ms`` counted per
        combination of ``dims``: names of :data:`GROUP_COLUMNS`, or ``day`` (the local
        calendar day, ``YYYY-MM-DD``, at ``day_offset_secs`` from UTC). ``units`` keeps
        the alerts of those units (spellings as stored). ``scan`` reads the table
        sequentially instead of through the time index: faster when the period covers
        most of the stored alerts (the caller decides, see :meth:`time_range`)."""
        cols: list[str] = []
        for dim in dims:
            if dim == "day":
                cols.append(f"date(ts_ms / 1000 + {int(day_offset_secs)}, 'unixepoch')")
            else:
                cols.append(GROUP_COLUMNS[dim])
        where = "kind = 'alert' AND ts_ms >= ? AND ts_ms < ?"
        params: list[Any] = [start_ms, end_ms]
        if units is not None:
            where += f" AND unit IN ({','.join('?' * len(units))})"
            params.extend(units)
        select = ", ".join(cols) if cols else "1"
        table = "alerts NOT INDEXED" if scan else "alerts"
        # Column names come from GROUP_COLUMNS, values are parameters.
        sql = f"SELECT {select}, count(*) FROM {table} WHERE {where}"  # noqa: S608
        if cols:
            sql += " GROUP BY " + ", ".join(str(i + 1) for i in range(len(cols)))
        out: dict[tuple[Any, ...], int] = {}
        for row in self.query(sql, params):
            if not row[-1]:
                continue
            out[tuple(row[:-1])] = int(row[-1])
        return out

    def time_range(self) -> tuple[int | None, int | None]:
        """The first and last ``ts_ms`` stored (read from the index at once); ``None``
        when there is none."""
        lo, hi = self.query("SELECT min(ts_ms), max(ts_ms) FROM alerts")[0]
        return lo, hi

    def docs(self, alert_ids: Sequence[str]) -> list[bytes]:
        """The stored events (JSON, as received) of these alert ids; ids of other events
        or of none are left out."""
        rows: list[tuple[Any, ...]] = []
        ids = list(alert_ids)
        for i in range(0, len(ids), _IN_CHUNK):
            chunk = ids[i:i + _IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT doc FROM alerts WHERE id IN ({marks}) AND kind = 'alert'"  # noqa: S608
            rows += self.query(sql, chunk)
        return [r[0] for r in rows]

    def docs_between(self, start_ms: int, end_ms: int) -> list[bytes]:
        """The stored events (JSON) of the alerts with ``start_ms <= ts_ms < end_ms``, in
        time order."""
        rows = self.query("SELECT doc FROM alerts WHERE kind = 'alert' AND ts_ms >= ? AND "
                          "ts_ms < ? ORDER BY ts_ms, id", (start_ms, end_ms))
        return [r[0] for r in rows]


def _after(before: StoredAlert, change: Change, now: str) -> StoredAlert:
    """The row as ``change`` leaves it (what :meth:`AlertStore.update_many` writes)."""
    assignee = before.assignee if change.assignee is KEEP else change.assignee
    return replace(before, status=change.status, assignee=assignee, status_by=change.by,
                   status_note=change.note, status_at=now)


def _alert(row: Sequence[Any]) -> StoredAlert:
    values = list(row)
    values[14] = bool(values[14])
    return StoredAlert(*values)


def _epoch_ms(ts: str) -> int | None:
    dt = iso_or_none(ts, naive=None)  # without an offset: the machine's local time
    return None if dt is None else int(dt.timestamp() * 1000)


_STATUSES = frozenset({"new", "acknowledged", "false_positive", "resolved"})


def _row(event: Event) -> tuple[Any, ...]:
    socd = event.get("socd", {})
    status = get(event, "socd.alert.status")
    return (
        event["event"]["hash"],
        event["@timestamp"],
        event["event"].get("kind", "event"),
        socd.get("severity"),
        socd.get("layer"),
        socd.get("asset_kind"),
        socd.get("unit"),
        event["event"].get("module"),
        get(event, "rule.id"),
        get(event, "rule.name"),
        get(event, "host.name"),
        get(event, "source.ip"),
        get(event, "destination.ip"),
        1 if get(event, "socd.ioc.matched") else 0,
        orjson.dumps(event),
        status if status in _STATUSES else "new",
        _epoch_ms(event["@timestamp"]),
        search_text(event["event"]["hash"], get(event, "rule.id"), get(event, "rule.name"),
                    get(event, "host.name"), socd.get("unit")),
    )
