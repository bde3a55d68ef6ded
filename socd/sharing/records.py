"""The exchange log ``<state_dir>/sharing.db`` and the layer-4 metrics.

Every push (`socd share push`) appends one row, success or failure, to
``exchanges``; rows are never changed. The reports read the table for the
"last successful exchange" of layer 4 (through :func:`exchange_log`, this module owns
the table); ``socd share exchanges`` lists it.

The metrics are computed from the table, not counted in memory, because pushes
usually run from the CLI (cron, a systemd timer) while ``/metrics`` is served by
the daemon: :func:`refresh_metrics` re-reads the table (one small query) and the
collector below reports the snapshot.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from socd import metrics
from socd.sqlite import (
    Error,
    NoDatabase,
    Schema,
    Store,
    columns,
    has_table,
    read_only,
    script,
)
from socd.tz import iso_or_none

if TYPE_CHECKING:
    from socd.config import Config

SCHEMA = """
CREATE TABLE IF NOT EXISTS exchanges (
    id          INTEGER PRIMARY KEY,
    ts          TEXT NOT NULL,      -- ISO 8601 UTC (2026-11-23T08:00:00Z)
    kind        TEXT NOT NULL,      -- stix | misp
    target      TEXT NOT NULL,      -- the target's name in the config (or file:<path>)
    recipient   TEXT NOT NULL,      -- the recipient organisation
    period_from TEXT,               -- ISO UTC, inclusive (NULL for an incident)
    period_to   TEXT,               -- ISO UTC, exclusive
    incident    TEXT,               -- SC-YYYY-NNNN
    objects     INTEGER NOT NULL,   -- STIX objects or MISP attributes sent
    result      TEXT NOT NULL,      -- success | failure
    detail      TEXT NOT NULL       -- server's answer or the error
);
CREATE INDEX IF NOT EXISTS exchanges_target ON exchanges (target, result, ts);
"""
STORE_SCHEMA = Schema(name="exchange log", create=script(SCHEMA))


@dataclass(frozen=True, slots=True)
class Exchange:
    """One row of ``exchanges``."""

    id: int | None
    ts: str
    kind: str
    target: str
    recipient: str
    period_from: str | None
    period_to: str | None
    incident: str | None
    objects: int
    result: str
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def db_path(config: Config) -> str:
    """``<state_dir>/<sharing.db_path>`` of a loaded config."""
    return os.path.join(config.state_dir, config.document.sharing.db_path)


class ExchangeLog(Store):
    """``sharing.db``, opened for one command (a push, a listing) and closed."""

    schema = STORE_SCHEMA

    def __init__(self, path: str) -> None:
        # FULL: the exchange log is evidence of what was sent to the national centre.
        super().__init__(path, synchronous="FULL", busy_timeout_ms=5000)


def _connect(path: str) -> ExchangeLog:
    return ExchangeLog(path)


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def record(path: str, exchange: Exchange) -> int:
    """Append ``exchange`` (its ``id`` is ignored); returns the new row id."""
    store = _connect(path)
    try:
        with store.transaction() as tx:
            cur = tx.db.execute(
                "INSERT INTO exchanges (ts, kind, target, recipient, period_from, period_to, "
                "incident, objects, result, detail) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (exchange.ts, exchange.kind, exchange.target, exchange.recipient,
                 exchange.period_from, exchange.period_to, exchange.incident,
                 exchange.objects, exchange.result, exchange.detail))
        return int(cur.lastrowid or 0)
    finally:
        store.close()


def exchanges(path: str, *, limit: int | None = None,
              target: str | None = None) -> list[Exchange]:
    """Rows, newest first (an absent file has none)."""
    if not os.path.exists(path):
        return []
    store = _connect(path)
    try:
        sql = "SELECT * FROM exchanges"
        params: list[Any] = []
        if target is not None:
            sql += " WHERE target = ?"
            params.append(target)
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        with store.reading() as db:
            return [Exchange(*row) for row in db.execute(sql, params)]
    finally:
        store.close()


def last_success(path: str, target: str | None = None) -> Exchange | None:
    """The newest successful exchange (of ``target``, else of any target)."""
    if not os.path.exists(path):
        return None
    store = _connect(path)
    try:
        sql = "SELECT * FROM exchanges WHERE result = 'success'"
        params: list[Any] = []
        if target is not None:
            sql += " AND target = ?"
            params.append(target)
        with store.reading() as db:
            row = db.execute(sql + " ORDER BY id DESC LIMIT 1", params).fetchone()
        return Exchange(*row) if row else None
    finally:
        store.close()


@dataclass(frozen=True, slots=True)
class LoggedExchange:
    """What the reports count of one exchange (values as stored; a column a file of an
    older shape lacks reads as ``None``)."""

    ts: str | float | None
    kind: str | None
    target: str | None
    recipient: str | None
    objects: int | str | None
    result: str | None


_REPORTED = ("ts", "kind", "target", "recipient", "objects", "result")


def exchange_log(path: str | None) -> list[LoggedExchange] | None:
    """Every exchange, read without changing the file (the reports); ``None`` when there
    is no file or no ``exchanges`` table."""
    with read_only(path) as db:
        if db is None or not has_table(db, "exchanges"):
            return None
        present = columns(db, "exchanges")
        select = ", ".join(c if c in present else "NULL" for c in _REPORTED)
        rows = db.execute(f"SELECT {select} FROM exchanges").fetchall()  # noqa: S608
    return [LoggedExchange(*row) for row in rows]


# -- metrics ------------------------------------------------------------------------------


class _SharingCollector(Collector):
    """Reports the last snapshot of the exchange log (see :func:`refresh_metrics`).

    Label values are target names from the config and ``success``/``failure``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._totals: dict[tuple[str, str], int] = {}

    def set(self, last: dict[str, float], totals: dict[tuple[str, str], int]) -> None:
        with self._lock:
            self._last, self._totals = dict(last), dict(totals)

    def describe(self) -> list[Any]:
        return [GaugeMetricFamily(LAST_SUCCESS, _LAST_HELP, labels=["target"]),
                CounterMetricFamily(EXCHANGES, _EXCHANGES_HELP, labels=["target", "result"])]

    def collect(self) -> Iterator[Any]:
        with self._lock:
            last, totals = dict(self._last), dict(self._totals)
        gauge = GaugeMetricFamily(LAST_SUCCESS, _LAST_HELP, labels=["target"])
        for target, ts in sorted(last.items()):
            gauge.add_metric([target], ts)
        counter = CounterMetricFamily(EXCHANGES, _EXCHANGES_HELP, labels=["target", "result"])
        for (target, result), n in sorted(totals.items()):
            counter.add_metric([target, result], n)
        yield gauge
        yield counter


LAST_SUCCESS = "socd_sharing_last_success_timestamp_seconds"
EXCHANGES = "socd_sharing_exchanges"  # exposed as socd_sharing_exchanges_total
_LAST_HELP = ("Unix time of the last successful layer-4 exchange (push to the national "
              "centre), by target; read from sharing.db.")
_EXCHANGES_HELP = "Layer-4 exchanges recorded in sharing.db, by target and result."

COLLECTOR = _SharingCollector()
metrics.REGISTRY.register(COLLECTOR)


def refresh_metrics(config: Config) -> None:
    """Re-read ``sharing.db`` into the metrics (cheap; call it every 30-60 s).

    Only exchanges with configured targets are reported, so label values stay
    bounded by the config. Never raises: a missing or locked file keeps the
    previous snapshot.
    """
    path = db_path(config)
    targets = set(config.document.sharing.targets)
    if not os.path.exists(path):
        COLLECTOR.set({}, {})
        return
    try:
        with read_only(path, busy_timeout_ms=2000) as db:
            if db is None:
                return
            rows = db.execute("SELECT target, result, count(*), max(CASE WHEN result = "
                              "'success' THEN ts END) FROM exchanges "
                              "GROUP BY target, result").fetchall()
    except (Error, NoDatabase):  # locked, or removed meanwhile: keep the last snapshot
        return
    last: dict[str, float] = {}
    totals: dict[tuple[str, str], int] = {}
    for target, result, n, ts in rows:
        if target not in targets or result not in ("success", "failure"):
            continue
        totals[(target, result)] = int(n)
        when = _epoch(ts) if ts else None
        if when is not None:
            last[target] = when
    COLLECTOR.set(last, totals)


def _epoch(ts: str) -> float | None:
    when = iso_or_none(str(ts))  # None for a row written by hand: never break /metrics
    return None if when is None else when.timestamp()
