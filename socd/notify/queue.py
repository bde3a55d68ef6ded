"""The durable state of the notification core: one SQLite file.

Tables:

* ``pending``: alerts accepted for a group and not yet in a message (with
  ``hold_until`` > 0 while quiet hours hold them);
* ``groups``: per (route, group key) the time of the last message and the
  number of repeats deduplicated since;
* ``dedup``: dedup keys and when they stop suppressing repeats;
* ``outbox``: rendered messages, one row per notifier, in send order.

Every change is one transaction with ``synchronous=FULL`` in WAL mode: when a
method returns, its change survives a crash or power loss. Turning pending
alerts into outbox rows deletes the alerts in the same transaction, so a crash
never loses nor doubles a message. All methods are synchronous and called from one
thread (the core runs them on a dedicated thread); the store's lock
(:class:`socd.sqlite.Store`) makes that a matter of speed, not of correctness.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from socd.sqlite import Schema, Store, script

SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    gid TEXT NOT NULL,
    hold_until REAL NOT NULL,
    accepted REAL NOT NULL,
    severity INTEGER NOT NULL,
    event BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS pending_gid ON pending (gid, id);
CREATE TABLE IF NOT EXISTS groups (
    gid TEXT PRIMARY KEY,
    route TEXT NOT NULL,
    group_key TEXT NOT NULL,
    group_values BLOB NOT NULL,
    notifiers BLOB NOT NULL,
    last_flush REAL,
    repeated INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS dedup (
    key BLOB PRIMARY KEY,
    expires REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    notifier TEXT NOT NULL,
    payload BLOB NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_notifier ON outbox (notifier, id);
"""

STORE_SCHEMA = Schema(name="notification queue", create=script(SCHEMA))

PendingRow = tuple[str, float, float, int, bytes]  # gid, hold_until, accepted, severity, event
GroupRow = tuple[str, str, str, bytes, bytes, int]  # gid, route, key, values, notifiers, +repeated


@dataclass(slots=True)
class StoredGroup:
    gid: str
    route: str
    group_key: str
    group_values: bytes
    notifiers: bytes
    last_flush: float | None
    repeated: int
    ready: int = 0  # pending alerts not held
    first_ready: float | None = None
    held: dict[float, int] = field(default_factory=dict)  # release time -> alerts


@dataclass(slots=True)
class Snapshot:
    groups: list[StoredGroup]
    dedup: dict[bytes, float]
    outbox: list[tuple[int, str]]  # (id, notifier) in send order


@dataclass(slots=True)
class Batch:
    """What one flush takes from a group: the alerts it lists and its totals."""

    total: int
    max_id: int
    severity: int
    held: bool
    events: list[bytes]  # the listed alerts, in arrival order


class NotifyStore(Store):
    """The SQLite file behind the notification core (see the module docstring)."""

    schema = STORE_SCHEMA

    def __init__(self, path: str) -> None:
        super().__init__(path, synchronous="FULL")

    def ping(self) -> None:
        with self.reading() as db:
            db.execute("SELECT count(*) FROM outbox").fetchone()

    def load(self) -> Snapshot:
        with self.reading() as db:
            return self._load(db)

    @staticmethod
    def _load(db: sqlite3.Connection) -> Snapshot:
        groups: dict[str, StoredGroup] = {}
        for row in db.execute("SELECT gid, route, group_key, group_values, notifiers, "
                                   "last_flush, repeated FROM groups"):
            groups[row[0]] = StoredGroup(*row)
        for gid, hold, count, first in db.execute(
                "SELECT gid, hold_until, count(*), min(accepted) FROM pending "
                "GROUP BY gid, hold_until"):
            group = groups.get(gid)
            if group is None:
                continue  # cannot happen: groups rows are written with their pending rows
            if hold > 0:
                group.held[hold] = count
            else:
                group.ready, group.first_ready = count, first
        dedup = dict(db.execute("SELECT key, expires FROM dedup").fetchall())
        outbox = [(i, n) for i, n in db.execute("SELECT id, notifier FROM outbox ORDER BY id")]
        return Snapshot(list(groups.values()), dedup, outbox)

    def accept(self, pending: Sequence[PendingRow], dedup: Iterable[tuple[bytes, float]],
               groups: Sequence[GroupRow]) -> None:
        """Store accepted alerts, new dedup keys and group changes in one transaction."""
        with self.transaction() as tx:
            db = tx.db
            db.executemany(
                "INSERT INTO groups (gid, route, group_key, group_values, notifiers, repeated) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (gid) DO UPDATE SET "
                "repeated = repeated + excluded.repeated, notifiers = excluded.notifiers",
                groups)
            db.executemany("INSERT INTO pending (gid, hold_until, accepted, severity, event) "
                           "VALUES (?, ?, ?, ?, ?)", pending)
            db.executemany("INSERT OR REPLACE INTO dedup (key, expires) VALUES (?, ?)", dedup)

    def take(self, gid: str, now: float, limit: int) -> Batch | None:
        """The alerts of ``gid`` due at ``now`` (read only: :meth:`flush` deletes them)."""
        with self.reading() as db:
            total, max_id, severity, held = db.execute(
                "SELECT count(*), max(id), max(severity), max(hold_until) FROM pending "
                "WHERE gid = ? AND hold_until <= ?", (gid, now)).fetchone()
            if not total:
                return None
            rows = db.execute(
                "SELECT id, event FROM pending WHERE gid = ? AND hold_until <= ? AND id <= ? "
                "ORDER BY severity DESC, id LIMIT ?", (gid, now, max_id, limit)).fetchall()
        rows.sort()
        return Batch(total, max_id, severity, held > 0, [r[1] for r in rows])

    def flush(self, taken: Sequence[tuple[str, float, int]], outbox: Sequence[tuple[str, bytes]],
              now: float) -> list[int]:
        """In one transaction: delete the taken alerts (``(gid, now, max_id)`` each), mark
        their groups flushed and append ``outbox`` rows; returns the new outbox ids."""
        with self.transaction() as tx:
            db = tx.db
            ids = [db.execute("INSERT INTO outbox (notifier, payload, created) VALUES (?, ?, ?) "
                              "RETURNING id", (name, payload, now)).fetchone()[0]
                   for name, payload in outbox]
            db.executemany("DELETE FROM pending WHERE gid = ? AND hold_until <= ? AND id <= ?",
                           taken)
            db.executemany("UPDATE groups SET last_flush = ?, repeated = 0 WHERE gid = ?",
                           [(now, gid) for gid, _, _ in taken])
        return ids

    def drop_pending(self, gid: str, now: float) -> list[bytes]:
        """Delete (and return) the due alerts of a group that has no notifier left."""
        with self.transaction() as tx:
            rows = tx.db.execute("DELETE FROM pending WHERE gid = ? AND hold_until <= ? "
                                 "RETURNING event", (gid, now)).fetchall()
            tx.db.execute("UPDATE groups SET last_flush = ?, repeated = 0 WHERE gid = ?",
                          (now, gid))
        return [r[0] for r in rows]

    def outbox_get(self, row_id: int) -> tuple[bytes, int] | None:
        with self.reading() as db:
            row = db.execute("SELECT payload, attempts FROM outbox WHERE id = ?",
                             (row_id,)).fetchone()
        return None if row is None else (row[0], row[1])

    def outbox_delete(self, row_id: int) -> None:
        with self.transaction() as tx:
            tx.db.execute("DELETE FROM outbox WHERE id = ?", (row_id,))

    def outbox_attempts(self, row_id: int, attempts: int) -> None:
        with self.transaction() as tx:
            tx.db.execute("UPDATE outbox SET attempts = ? WHERE id = ?", (attempts, row_id))

    def gc(self, now: float, groups: Sequence[str]) -> None:
        """Forget expired dedup keys and the given idle groups."""
        with self.transaction() as tx:
            tx.db.execute("DELETE FROM dedup WHERE expires <= ?", (now,))
            tx.db.executemany("DELETE FROM groups WHERE gid = ? AND NOT EXISTS "
                              "(SELECT 1 FROM pending WHERE pending.gid = groups.gid)",
                              [(g,) for g in groups])

    def counts(self) -> dict[str, Any]:
        """Rows per table (tests, diagnostics)."""
        out: dict[str, Any] = {}
        with self.reading() as db:
            for table in ("pending", "groups", "dedup", "outbox"):
                out[table] = db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608
        return out
