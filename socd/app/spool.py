"""The durable on-disk spool in front of a sink.

When a sink cannot store a chunk of events, its :class:`~socd.app.pipeline.SinkRunner`
appends the chunk here, acknowledges the input, and a drainer writes the spooled
chunks to the sink in order once it is back. Guarantees:

* **Durable before acknowledged**: one SQLite transaction per append in WAL mode
  with ``synchronous=FULL``; :meth:`Spool.append` returns only once the chunk is on
  disk, so a crash (SIGKILL, power loss) after it returns loses nothing.
* **FIFO**: rows are ``(seq, count, bytes, blob)`` with a growing ``seq``;
  :meth:`Spool.peek` returns the oldest rows first. One row holds one chunk (the
  events serialized with orjson), not one event, so the per-event cost is small.
* **Bounded, nothing dropped**: when ``max_bytes`` would be exceeded, ``append``
  waits until the drainer frees space (back-pressure to the sources). A warning
  is logged once per crossing of ``warn_ratio``, an error when full.
* **Restartable**: opening an existing file continues where the last run (or
  crash) stopped; counts are recomputed from the file.
* **The event loop never waits for the disk**: every SQLite call runs in one
  dedicated worker thread per spool (serialized, in submission order).

Within one process a spool file is opened once: :func:`acquire` shares the
object between the runners of one sink (a reload starts a new runner before the
old one has finished), so their counts and the lock that keeps direct writes and
drain writes apart are common to both.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import orjson
import structlog

from socd import metrics
from socd.event import Event
from socd.sqlite import Schema, Store, transaction

log = structlog.get_logger("socd.spool")

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    seq   INTEGER PRIMARY KEY,
    count INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    blob  BLOB NOT NULL
)
"""


class SpoolFile(Store):
    """The spool's SQLite file, used by one worker thread (see :class:`Spool`)."""

    schema = Schema(name="spool", create=(_SCHEMA,))

    def __init__(self, path: str) -> None:
        # Alerts are sensitive: the file (and SQLite's -wal/-shm, which copy its mode) is
        # created 0640 in a 0750 folder, and tightened if an older one is looser.
        # synchronous=FULL: an appended chunk was acknowledged to its source. No busy
        # timeout: only this process's worker thread uses the file. auto_vacuum only takes
        # effect on a new file (before the first table): an emptied spool then gives its
        # pages back to the file system.
        super().__init__(path, synchronous="FULL", busy_timeout_ms=0,
                         pragmas=("auto_vacuum=INCREMENTAL", "journal_size_limit=67108864"))

    def conn(self) -> sqlite3.Connection:
        """The connection, for the one thread that uses this file (no lock needed)."""
        return self._db


class SpoolClosedError(RuntimeError):
    """The spool was used after :meth:`Spool.close`."""


class Spool:
    """An append-only FIFO of event chunks in one SQLite file (see the module doc).

    ``bytes`` and ``events`` are what the spool holds now; they are kept in memory
    (recomputed at :meth:`open`) and updated by the worker thread as each
    transaction commits, so they are right even if the coroutine that asked for
    the change was cancelled meanwhile.
    """

    def __init__(self, path: str, *, name: str, max_bytes: int,
                 warn_ratio: float = 0.8) -> None:
        self.path = path
        self.name = name
        self.max_bytes = max_bytes
        self.warn_ratio = warn_ratio
        self.bytes = 0
        self.events = 0
        self.rows = 0
        self.closed = False
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"spool-{name}")
        self._file: SpoolFile | None = None
        self._opened: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._freed: asyncio.Event | None = None
        self._appended: asyncio.Event | None = None
        self._lock: asyncio.Lock | None = None
        self._warned = False
        self._full_logged = False
        self._counts_lock = threading.Lock()
        self._reserved = 0
        self._refs = 0
        self._key = path
        metrics.init_spool(name, max_bytes)

    # -- lifecycle -----------------------------------------------------------

    async def open(self) -> None:
        """Open (or create) the file; idempotent, concurrent callers share one open."""
        if self.closed:
            raise SpoolClosedError(self.path)
        if self._opened is None:
            self._loop = asyncio.get_running_loop()
            self._freed = asyncio.Event()
            self._appended = asyncio.Event()
            self._lock = asyncio.Lock()
            self._opened = asyncio.wrap_future(self._executor.submit(self._open_db))
        await asyncio.shield(self._opened)

    @property
    def is_open(self) -> bool:
        return (self._opened is not None and self._opened.done()
                and not self._opened.cancelled() and self._opened.exception() is None
                and not self.closed)

    async def close(self) -> None:
        """Close the file; what it holds stays for the next :meth:`open`."""
        if self.closed:
            return
        self.closed = True
        future = self._executor.submit(self._close_db)
        self._executor.shutdown(wait=False)
        with contextlib.suppress(Exception):
            await asyncio.wrap_future(future)

    # -- state shared by the runners of one sink -------------------------------

    @property
    def holders(self) -> int:
        """Runners holding this spool (two while a reload replaces one)."""
        return self._refs

    @property
    def lock(self) -> asyncio.Lock:
        """Held by whoever writes to the sink on this spool's behalf (a direct write
        while the spool is empty, or the drainer): they never run at once."""
        assert self._lock is not None, "spool not opened"
        return self._lock

    @property
    def appended(self) -> asyncio.Event:
        """Set after every append: wakes the drainer."""
        assert self._appended is not None, "spool not opened"
        return self._appended

    def configure(self, *, max_bytes: int, warn_ratio: float) -> None:
        """Apply new limits (a reload); waiting appenders re-check the cap."""
        self.max_bytes = max_bytes
        self.warn_ratio = warn_ratio
        self._publish()
        if self._freed is not None:
            self._freed.set()

    # -- the FIFO --------------------------------------------------------------

    @staticmethod
    def encode(events: Sequence[Event]) -> bytes:
        return orjson.dumps(list(events), default=str)

    async def append(self, events: Sequence[Event]) -> None:
        """Store one chunk durably; waits while the spool is full (never drops)."""
        blob = self.encode(events)
        await self.reserve(len(blob))
        await asyncio.wrap_future(self.submit(blob, len(events), reserved=True))
        self.after_append()

    async def reserve(self, size: int) -> None:
        """Wait until ``size`` more bytes fit. An empty spool always admits a chunk,
        however big, so one oversized chunk cannot block forever."""
        assert self._freed is not None, "spool not opened"
        # Space reserved by appends still on their way to the disk counts as used.
        while (used := self.bytes + self._reserved) and used + size > self.max_bytes:
            if not self._full_logged:
                self._full_logged = True
                log.error("spool full; intake waits until the sink drains it", sink=self.name,
                          spool_bytes=self.bytes, max_bytes=self.max_bytes,
                          events=self.events, file=self.path)
            self._freed.clear()
            await self._freed.wait()
        with self._counts_lock:
            self._reserved += size

    def submit(self, blob: bytes, count: int, *,
               reserved: bool = False) -> concurrent.futures.Future[None]:
        """Queue the append of an encoded chunk to the worker thread; the future
        completes once it is committed. No cap check here: call :meth:`reserve`
        first and pass ``reserved=True`` to turn that reservation into the row."""
        held = len(blob) if reserved else 0
        if self.closed:
            self._unreserve(held)
            raise SpoolClosedError(self.path)
        future = self._executor.submit(self._append_db, blob, count, held)
        if held:
            # A job cancelled before it ran (its caller was cancelled) gives the space back.
            future.add_done_callback(lambda f: self._unreserve(held) if f.cancelled() else None)
        return future

    def _unreserve(self, size: int) -> None:
        if size:
            with self._counts_lock:
                self._reserved -= size

    def after_append(self) -> None:
        """Wake the drainer and log a crossing of the warning level."""
        if self._appended is not None:
            self._appended.set()
        if not self._warned and self.bytes >= self.warn_ratio * self.max_bytes:
            self._warned = True
            log.warning("spool is filling up: the sink has not been storing events",
                        sink=self.name, spool_bytes=self.bytes, max_bytes=self.max_bytes,
                        events=self.events, file=self.path)

    def append_blocking(self, events: Sequence[Event]) -> bool:
        """Append now, blocking the caller (shutdown only). False, and nothing
        stored, when the chunk does not fit or the write fails."""
        if self.closed or not self.is_open:
            return False
        blob = self.encode(events)
        used = self.bytes + self._reserved
        if used and used + len(blob) > self.max_bytes:
            return False
        try:
            self.submit(blob, len(events)).result()
        except Exception:
            log.exception("spool append failed at shutdown", sink=self.name, file=self.path)
            return False
        self.after_append()
        return True

    async def peek(self, max_events: int) -> tuple[list[int], list[Event]]:
        """The oldest rows holding at most ``max_events`` events (at least one row,
        whatever its size); ``([], [])`` when empty. Nothing is removed."""
        return await self._run(self._peek_db, max_events)

    async def remove(self, seq_ids: Sequence[int], *, drained: int = 0) -> None:
        """Delete rows returned by :meth:`peek` (idempotent). ``drained``: how many of
        their events the sink stored, counted in ``socd_spool_drained_total`` when
        the removal commits (so the counter and the gauges move together)."""
        if seq_ids:
            await self._run(self._remove_db, list(seq_ids), drained)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self.closed:
            raise SpoolClosedError(self.path)
        return await asyncio.wrap_future(self._executor.submit(fn, *args))

    # -- worker thread ---------------------------------------------------------

    def _open_db(self) -> None:
        spool = SpoolFile(self.path)
        try:
            rows, events, size = spool.conn().execute(
                "SELECT count(*), coalesce(sum(count), 0), coalesce(sum(bytes), 0) "
                "FROM spool").fetchone()
        except BaseException:
            spool.close()
            raise
        self._file = spool
        self._set_counts(int(rows), int(events), int(size))

    def _close_db(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _append_db(self, blob: bytes, count: int, reserved: int) -> None:
        try:
            with transaction(self._db()) as tx:
                tx.db.execute("INSERT INTO spool (count, bytes, blob) VALUES (?, ?, ?)",
                              (count, len(blob), blob))
        except BaseException:
            self._unreserve(reserved)
            raise
        metrics.SPOOL_WRITTEN.labels(self.name).inc(count)
        with self._counts_lock:
            self._reserved -= reserved
            self._set_counts(self.rows + 1, self.events + count, self.bytes + len(blob))

    def _peek_db(self, max_events: int) -> tuple[list[int], list[Event]]:
        conn = self._db()
        seq_ids: list[int] = []
        events: list[Event] = []
        cursor = conn.execute("SELECT seq, count, blob FROM spool ORDER BY seq")
        try:
            for seq, count, blob in cursor:
                if seq_ids and len(events) + count > max_events:
                    break
                seq_ids.append(seq)
                events.extend(orjson.loads(blob))
                if len(events) >= max_events:
                    break
        finally:
            cursor.close()
        return seq_ids, events

    def _remove_db(self, seq_ids: list[int], drained: int) -> None:
        conn = self._db()
        marks = ",".join("?" * len(seq_ids))
        with transaction(conn):
            rows, events, size = conn.execute(
                f"SELECT count(*), coalesce(sum(count), 0), coalesce(sum(bytes), 0) "  # noqa: S608 - placeholders only
                f"FROM spool WHERE seq IN ({marks})", seq_ids).fetchone()
            conn.execute(f"DELETE FROM spool WHERE seq IN ({marks})", seq_ids)  # noqa: S608
        if drained and rows:
            metrics.SPOOL_DRAINED.labels(self.name).inc(drained)
        with self._counts_lock:
            self._set_counts(self.rows - int(rows), self.events - int(events),
                             self.bytes - int(size))
            empty = self.rows == 0
        if empty:
            # Give the disk back after an outage (best effort, the data is gone already).
            with contextlib.suppress(sqlite3.Error):
                # executescript steps the pragma to the end (execute frees one page).
                conn.executescript("PRAGMA incremental_vacuum;")
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._on_freed)

    def _set_counts(self, rows: int, events: int, size: int) -> None:
        # Metrics first: whoever sees the new counts also sees the new gauges.
        metrics.SPOOL_BYTES.labels(self.name).set(size)
        metrics.SPOOL_EVENTS.labels(self.name).set(events)
        self.rows, self.events, self.bytes = rows, events, size

    def _db(self) -> sqlite3.Connection:
        if self._file is None:
            raise SpoolClosedError(self.path)
        return self._file.conn()

    # -- loop side -------------------------------------------------------------

    def _on_freed(self) -> None:
        if self._freed is not None:
            self._freed.set()
        # Both messages re-arm only below the warning level, so a spool hovering
        # at its cap (a slow sink) does not log on every chunk.
        if (self._warned or self._full_logged) and self.bytes < self.warn_ratio * self.max_bytes:
            self._warned = self._full_logged = False
            log.info("spool back below its warning level", sink=self.name,
                     spool_bytes=self.bytes, max_bytes=self.max_bytes)

    def _publish(self) -> None:
        metrics.SPOOL_BYTES.labels(self.name).set(self.bytes)
        metrics.SPOOL_EVENTS.labels(self.name).set(self.events)
        metrics.SPOOL_MAX_BYTES.labels(self.name).set(self.max_bytes)


_OPEN: dict[str, Spool] = {}


def acquire(path: str, *, name: str, max_bytes: int, warn_ratio: float = 0.8) -> Spool:
    """The process-wide :class:`Spool` for ``path`` (shared by the runners of a sink
    across a reload); pair every call with :func:`release`."""
    key = os.path.realpath(path)
    spool = _OPEN.get(key)
    if spool is None or spool.closed:
        spool = Spool(path, name=name, max_bytes=max_bytes, warn_ratio=warn_ratio)
        spool._key = key
        _OPEN[key] = spool
    else:
        spool.configure(max_bytes=max_bytes, warn_ratio=warn_ratio)
    spool._refs += 1
    return spool


async def release(spool: Spool) -> None:
    """Drop one reference; the last one closes the file."""
    spool._refs -= 1
    if spool._refs > 0:
        return
    if _OPEN.get(spool._key) is spool:
        del _OPEN[spool._key]
    await spool.close()
