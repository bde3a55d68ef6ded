"""The embedded alert store (SQLite).

It keeps alerts where there is no Elasticsearch (the embedded default, small
sites), and later the alert lifecycle, IoCs and block decisions. SQLite in WAL
mode gives durable writes with one ``fsync`` per transaction and lets the CLI
read while the daemon writes.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from socd.event import Event, get

SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
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
    doc            BLOB NOT NULL              -- the whole event as JSON
);
CREATE INDEX IF NOT EXISTS alerts_ts ON alerts (ts);
CREATE INDEX IF NOT EXISTS alerts_severity ON alerts (severity, asset_kind);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
SCHEMA_VERSION = "1"


class AlertStore:
    """Thread-safe access to the SQLite file; async callers use ``asyncio.to_thread``."""

    def __init__(self, path: str) -> None:
        self.path = path
        parent = os.path.dirname(os.path.abspath(path))
        os.makedirs(parent, mode=0o750, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(SCHEMA)
        self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                         (SCHEMA_VERSION,))

    def insert(self, events: Sequence[Event]) -> int:
        """Insert events; ones already stored (same id) are skipped. Returns new rows."""
        rows = [_row(e) for e in events]
        with self._lock:
            before = self._db.total_changes
            self._db.execute("BEGIN")
            try:
                self._db.executemany(
                    "INSERT OR IGNORE INTO alerts (id, ts, kind, severity, layer, asset_kind, "
                    "unit, module, rule_id, rule_name, host_name, source_ip, destination_ip, "
                    "ioc, doc) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return self._db.total_changes - before

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return list(self._db.execute(sql, tuple(params)))

    def count(self) -> int:
        return int(self.query("SELECT count(*) FROM alerts")[0][0])

    def severity_by_asset(self) -> dict[tuple[str, str], int]:
        """Alert counts keyed by (severity, asset_kind)."""
        rows = self.query("SELECT severity, asset_kind, count(*) FROM alerts "
                          "WHERE kind = 'alert' GROUP BY severity, asset_kind")
        return {(str(s), str(a)): int(n) for s, a, n in rows}

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _row(event: Event) -> tuple[Any, ...]:
    socd = event.get("socd", {})
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
    )
