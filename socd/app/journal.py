"""The durable intake journal: nothing acknowledged to a source is lost in a crash.

Collectors hand batches of raw records to the pipeline; with the journal, the
pipeline first appends each batch here and lets the collector acknowledge its
source (MQTT PUBACK, ...) only once the batch is on disk. The batch leaves the
journal when every sink has stored or spooled what was decoded from it (the
pipeline's :class:`~socd.plugins.Ack`). After a crash (SIGKILL, OOM killer,
watchdog, power cut), whatever is still in the journal is read back and processed
before the collectors start; event ids are deterministic, so what is delivered
twice is stored once by Elasticsearch and the SQLite store.

On disk (``<state_dir>/journal/``):

* **Segments** ``<first seq>.seg``, append-only. One frame per batch:
  ``magic(4) | payload length u32 | crc32 u32 | seq u64 | payload``; the CRC
  covers the seq and the payload. The payload is ``record count u32 | oldest
  receipt time f64`` then, per record, ``received f64 | lengths of collector,
  decoder (u16), source, data (u32) | provenance flags u8`` and the bytes. The
  flags keep the record's ``authenticated`` and ``blocking_allowed``: a UDP line
  replayed after a crash is as untrusted as it was when it arrived. A new segment starts past
  ``segment_bytes`` and at every start (a torn tail is never appended to).
* **Group commit**: one writer thread writes every frame queued since its last
  round with one ``write`` and one ``fdatasync``, then wakes the producers. Two
  fsyncs are at least ``fsync_interval_ms`` apart unless ``fsync_max_bytes`` are
  waiting, so a busy source shares one fsync among many batches and an idle one
  pays no added wait.
* **Release**: a segment whose batches are all released and which is not the one
  being written is deleted. A ``checkpoint`` file (the lowest unreleased seq and
  the released ranges above it, rewritten ten times a second, not fsync'd: a
  stale one only means more repeats) keeps a restart from replaying what was
  released.
* **Recovery**: frames are checked by magic, length and CRC. A torn or corrupt
  frame (a crash during a write, a bad sector) is skipped and counted in
  ``socd_journal_torn_records_total``; reading goes on at the next valid frame.
* **Bounded**: past ``max_bytes`` on disk, appends wait (back-pressure to the
  sources). A write or fsync error (disk full, I/O error) never crashes socd and
  never acknowledges anything: the writer logs it, starts a new segment (after a
  failed fsync the kernel may have dropped the pages) and retries the same frames
  with backoff, while intake waits.

Threads: the event loop appends and releases; the writer thread does all file
I/O. Both touch the bookkeeping only under ``_lock``.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import errno
import fcntl
import os
import struct
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from prometheus_client import Counter, Gauge, Histogram

from socd import metrics
from socd.errors import JournalError
from socd.filemode import FILE_MODE, ensure_dir
from socd.plugins import RawRecord
from socd.retry import backoff

log = structlog.get_logger("socd.journal")

JOURNAL_BYTES = Gauge(
    "socd_journal_bytes", "Bytes of the intake journal's segment files on disk.",
    registry=metrics.REGISTRY)
JOURNAL_MAX_BYTES = Gauge(
    "socd_journal_max_bytes", "Configured size cap of the intake journal (journal.max_bytes).",
    registry=metrics.REGISTRY)
JOURNAL_RECORDS = Gauge(
    "socd_journal_records", "Raw records in the intake journal not yet stored by every sink.",
    registry=metrics.REGISTRY)
JOURNAL_OLDEST_AGE = Gauge(
    "socd_journal_oldest_age_seconds",
    "Age of the oldest record in the intake journal not yet stored by every sink (0 when "
    "empty).", registry=metrics.REGISTRY)
JOURNAL_FSYNC_SECONDS = Histogram(
    "socd_journal_fsync_seconds",
    "Time of one group commit of the intake journal (write and fdatasync).",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
    registry=metrics.REGISTRY)
JOURNAL_TORN = Counter(
    "socd_journal_torn_records_total",
    "Torn or corrupt frames found in the intake journal at start and skipped.",
    registry=metrics.REGISTRY)
JOURNAL_REPLAYED = Counter(
    "socd_journal_replayed_records_total",
    "Raw records read back from the intake journal at start and processed again.",
    registry=metrics.REGISTRY)

MAGIC = b"SJ\x02\n"
_HEADER = struct.Struct("<4sIIQ")  # magic, payload length, crc32, seq
_SEQ = struct.Struct("<Q")
_BATCH = struct.Struct("<Id")  # record count, oldest receipt time
_RECORD = struct.Struct("<dHHIIB")  # received, len collector, decoder, source, data, flags
_AUTHENTICATED, _BLOCKING_ALLOWED = 1, 2
_SUFFIX = ".seg"
_CHECKPOINT = "checkpoint"
_LOCK = "lock"
_CHECKPOINT_EVERY_SECS = 0.1  # a crash repeats at most this much already released
_MAX_RANGES = 10_000  # released ranges kept in the checkpoint
_MAX_SEQ = 2**64 - 1
_LOAD_CHUNK_BYTES = 8 * 1024 * 1024  # recovery decodes this much at a time
_MAX_BACKOFF_SECS = 5.0
_CLOSE_ATTEMPTS = 3  # failed writes after which closing gives up
_CLOSE_WAIT_SECS = 10.0  # how long close() waits for the writer thread
_ERROR_LOG_EVERY_SECS = 30.0


def encode(seq: int, records: Sequence[RawRecord]) -> bytes:
    """One frame for a batch of records (see the module doc for the layout)."""
    parts: list[bytes] = [b"", _BATCH.pack(len(records), min(r.received for r in records))]
    names: dict[str, bytes] = {}
    for r in records:
        collector = names.get(r.collector)
        if collector is None:
            collector = names[r.collector] = r.collector.encode()
        decoder = names.get(r.decoder)
        if decoder is None:
            decoder = names[r.decoder] = r.decoder.encode()
        source = r.source.encode()
        flags = (_AUTHENTICATED if r.authenticated else 0) | (
            _BLOCKING_ALLOWED if r.blocking_allowed else 0)
        parts.append(_RECORD.pack(r.received, len(collector), len(decoder), len(source),
                                  len(r.data), flags))
        parts += (collector, decoder, source, r.data)
    payload = b"".join(parts)
    if len(payload) > 0xFFFFFFFF:
        raise ValueError("a journal frame cannot exceed 4 GiB")
    crc = zlib.crc32(payload, zlib.crc32(_SEQ.pack(seq)))
    return _HEADER.pack(MAGIC, len(payload), crc, seq) + payload


def decode(payload: bytes | memoryview) -> list[RawRecord]:
    """The records of one frame's payload (checked by CRC before)."""
    view = memoryview(payload)
    count, _oldest = _BATCH.unpack_from(view, 0)
    pos = _BATCH.size
    out: list[RawRecord] = []
    for _ in range(count):
        received, lc, ld, ls, ln, flags = _RECORD.unpack_from(view, pos)
        pos += _RECORD.size
        collector = str(view[pos:pos + lc], "utf-8")
        pos += lc
        decoder = str(view[pos:pos + ld], "utf-8")
        pos += ld
        source = str(view[pos:pos + ls], "utf-8")
        pos += ls
        data = bytes(view[pos:pos + ln])
        pos += ln
        out.append(RawRecord(data, decoder, collector, source, received,
                             authenticated=bool(flags & _AUTHENTICATED),
                             blocking_allowed=bool(flags & _BLOCKING_ALLOWED)))
    return out


@dataclass(frozen=True, slots=True)
class Released:
    """The checkpoint: every seq below ``watermark`` is released, and so are the
    ``ranges`` (inclusive) above it, which out-of-order releases leave."""

    watermark: int
    ranges: tuple[tuple[int, int], ...] = ()

    @classmethod
    def of(cls, live: OrderedDict[int, Any], next_seq: int) -> Released:
        """From the unreleased seqs (ascending) and the next seq to assign."""
        if not live:
            return cls(next_seq)
        keys = iter(live)
        previous = next(keys)
        watermark = previous
        ranges: list[tuple[int, int]] = []
        for seq in keys:
            if seq > previous + 1:
                ranges.append((previous + 1, seq - 1))
                if len(ranges) >= _MAX_RANGES:
                    break  # the rest is replayed: repeats, never a loss
            previous = seq
        return cls(watermark, tuple(ranges))

    @classmethod
    def parse(cls, data: bytes) -> Released:
        lines = data.decode("ascii").split("\n")
        watermark = max(0, int(lines[0].strip() or "0"))
        ranges: list[tuple[int, int]] = []
        for part in (lines[1].split() if len(lines) > 1 else []):
            low, _, high = part.partition("-")
            ranges.append((int(low), int(high)))
        ranges.sort()
        return cls(watermark, tuple(ranges))

    def dump(self) -> bytes:
        ranges = " ".join(f"{low}-{high}" for low, high in self.ranges)
        return f"{self.watermark}\n{ranges}\n".encode("ascii")

    def __contains__(self, seq: object) -> bool:
        if not isinstance(seq, int):
            return False
        if seq < self.watermark:
            return True
        index = bisect.bisect_right(self.ranges, (seq, _MAX_SEQ)) - 1
        return index >= 0 and self.ranges[index][0] <= seq <= self.ranges[index][1]


@dataclass(slots=True)
class _Segment:
    first_seq: int
    path: str
    size: int = 0  # bytes in the file (written, or being written by the writer)
    synced: int = 0  # bytes known to be on disk (after the last fdatasync)
    live: int = 0  # unreleased frames stored in it (counted once committed)
    fd: int | None = None  # the active segment's descriptor (writer thread only)


@dataclass(slots=True)
class _Entry:
    seq: int
    size: int
    records: int
    received: float
    segment: _Segment | None = None
    offset: int = 0
    committed: bool = False  # on disk and counted in its segment's ``live``
    released: bool = False
    frame: bytes | None = None
    future: asyncio.Future[None] | None = None


@dataclass(slots=True)
class ScanResult:
    """What :meth:`Journal.open` found on disk."""

    segments: int = 0
    entries: int = 0
    records: int = 0
    torn: int = 0
    skipped_released: int = 0
    bytes: int = 0


@dataclass(slots=True)
class _Pending:
    entries: list[_Entry] = field(default_factory=list)
    bytes: int = 0


class Journal:
    """Append-only segment files with group commit (see the module doc).

    Lifecycle: :meth:`open` (scans what an earlier run left), :meth:`replay`
    (the unreleased batches, oldest first), then :meth:`append` /
    :meth:`try_append` and :meth:`release`; :meth:`close` at the end. The
    pipeline owns the journal; collectors never see it.
    """

    def __init__(self, directory: str, *, fsync_interval_ms: float = 2,
                 fsync_max_bytes: int = 4 * 1024 * 1024, max_bytes: int = 1024 * 1024 * 1024,
                 segment_bytes: int = 64 * 1024 * 1024) -> None:
        self.directory = directory
        self.fsync_interval = fsync_interval_ms / 1000.0
        self.fsync_max_bytes = fsync_max_bytes
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._live: OrderedDict[int, _Entry] = OrderedDict()
        self._live_bytes = 0
        self._live_records = 0
        self._segments: OrderedDict[int, _Segment] = OrderedDict()
        self._active: _Segment | None = None
        self._disk_bytes = 0
        self._pending = _Pending()
        self._deletable: list[_Segment] = []
        self._next_seq = 0
        self._recovered: list[_Entry] = []
        self._closing = False
        self._frozen = False
        self._failing: str | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._space: asyncio.Event | None = None
        self._checkpointed: Released | None = None
        self._checkpoint_at = 0.0
        self._lock_fd: int | None = None
        self._full_logged = -_ERROR_LOG_EVERY_SECS
        self.scan = ScanResult()
        JOURNAL_MAX_BYTES.set(max_bytes)

    @classmethod
    def from_config(cls, config: Any, state_dir: str) -> Journal:
        """The journal of a ``journal:`` config section (:class:`socd.config.JournalConfig`)."""
        path = os.path.expanduser(config.path)
        if not os.path.isabs(path):
            path = os.path.normpath(os.path.join(state_dir, path))
        return cls(path, fsync_interval_ms=config.fsync_interval_ms,
                   fsync_max_bytes=config.fsync_max_bytes, max_bytes=config.max_bytes,
                   segment_bytes=config.segment_bytes)

    # -- start -------------------------------------------------------------------

    async def open(self) -> ScanResult:
        """Scan the folder (in a thread), then start the writer."""
        self._loop = asyncio.get_running_loop()
        self._space = asyncio.Event()
        try:
            self.scan = await asyncio.to_thread(self._scan)
        except OSError as exc:
            raise JournalError(f"cannot open the journal {self.directory}: {exc}") from exc
        self._thread = threading.Thread(target=self._writer, name="socd-journal", daemon=True)
        self._thread.start()
        if self.scan.torn:
            log.error("torn or corrupt journal frames skipped", directory=self.directory,
                      frames=self.scan.torn)
        if self.scan.entries:
            log.warning("journal holds batches from an earlier run; processing them first",
                        directory=self.directory, batches=self.scan.entries,
                        records=self.scan.records, journal_bytes=self.scan.bytes)
        return self.scan

    def _scan(self) -> ScanResult:
        ensure_dir(self.directory)
        self._lock_folder()
        result = ScanResult()
        released = self._read_checkpoint()
        names = sorted(n for n in os.listdir(self.directory) if n.endswith(_SUFFIX)
                       and n[:-len(_SUFFIX)].isdigit())
        seen: set[int] = set()
        top = released.watermark - 1
        for name in names:
            segment = _Segment(int(name[:-len(_SUFFIX)]), os.path.join(self.directory, name))
            # New segments are named after their first seq: never reuse a name.
            top = max(top, segment.first_seq)
            frames, torn = _read_frames(segment.path)
            result.torn += torn
            segment.size = segment.synced = os.path.getsize(segment.path)
            for offset, seq, payload in frames:
                top = max(top, seq)
                if seq in released or seq in seen:
                    result.skipped_released += 1
                    continue
                seen.add(seq)
                count, oldest = _BATCH.unpack_from(payload, 0)
                entry = _Entry(seq, _HEADER.size + len(payload), count, oldest,
                               segment=segment, offset=offset, committed=True)
                self._recovered.append(entry)
                segment.live += 1
            result.segments += 1
            if segment.live == 0:
                _unlink(segment.path)
                continue
            self._segments[segment.first_seq] = segment
            self._disk_bytes += segment.size
        JOURNAL_TORN.inc(result.torn)
        self._recovered.sort(key=lambda e: e.seq)
        for entry in self._recovered:
            self._live[entry.seq] = entry
            self._live_bytes += entry.size
            self._live_records += entry.records
        self._next_seq = top + 1
        result.entries = len(self._recovered)
        result.records = self._live_records
        result.bytes = self._disk_bytes
        return result

    def _lock_folder(self) -> None:
        """Hold an exclusive lock on the folder for the journal's lifetime: two
        processes appending to the same segments would corrupt each other."""
        fd = os.open(os.path.join(self.directory, _LOCK), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                     FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise JournalError(f"the journal {self.directory} is in use by another socd "
                               "process (two instances need two state_dir)") from None
        self._lock_fd = fd

    def _unlock_folder(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)

    def _read_checkpoint(self) -> Released:
        try:
            with open(os.path.join(self.directory, _CHECKPOINT), "rb") as fh:
                return Released.parse(fh.read())
        except FileNotFoundError:
            return Released(0)
        except (OSError, ValueError) as exc:
            # Not fsync'd on purpose: after a power cut it may be empty. Replaying
            # more than needed is safe; the frames themselves are checked.
            log.warning("journal checkpoint unreadable; replaying every frame",
                        directory=self.directory, error=str(exc))
            return Released(0)

    async def replay(self) -> AsyncIterator[tuple[int, list[RawRecord]]]:
        """The batches left by an earlier run, oldest first: ``(seq, records)``.
        Read in chunks of a few MiB, so a large journal never sits in memory."""
        pending, self._recovered = self._recovered, []
        start = 0
        while start < len(pending):
            end, size = start, 0
            while end < len(pending) and (end == start or size < _LOAD_CHUNK_BYTES):
                size += pending[end].size
                end += 1
            loaded = await asyncio.to_thread(_load, pending[start:end])
            for seq, records in loaded:
                JOURNAL_REPLAYED.inc(len(records))
                yield seq, records
            start = end

    # -- intake ------------------------------------------------------------------

    async def append(self, records: Sequence[RawRecord]) -> int:
        """Append a batch; return its seq once it is on disk (fsync'd). Waits while
        the journal is full. If cancelled before, the batch is released: the
        source was not acknowledged, so it still has it."""
        frame_size = _frame_size(records)
        await self._wait_for_space(frame_size)
        entry = self._enqueue(records)
        assert entry.future is not None
        try:
            await asyncio.shield(entry.future)
        except asyncio.CancelledError:
            self.release(entry.seq)
            raise
        return entry.seq

    def try_append(self, records: Sequence[RawRecord]) -> tuple[int, asyncio.Future[None]] | None:
        """Append without waiting: ``None`` when the journal is full, else the seq
        and a future that completes once the batch is on disk."""
        if self._full(_frame_size(records)):
            return None
        entry = self._enqueue(records)
        assert entry.future is not None
        return entry.seq, entry.future

    def release(self, seq: int) -> None:
        """Every sink has the batch ``seq``: it may leave the journal."""
        with self._lock:
            if self._frozen:
                return
            entry = self._live.pop(seq, None)
            if entry is None:
                return
            self._live_bytes -= entry.size
            self._live_records -= entry.records
            entry.released = True
            segment = entry.segment
            if entry.committed and segment is not None:
                segment.live -= 1
                if segment.live == 0 and segment is not self._active:
                    self._deletable.append(segment)
                    self._wake.notify()
        if self._space is not None:
            self._space.set()

    def freeze(self) -> None:
        """Ignore releases from now on (a shutdown that gave up waiting for the
        sinks: what they did not store stays here for the next start)."""
        with self._lock:
            self._frozen = True

    async def _wait_for_space(self, size: int) -> None:
        space = self._space
        if space is None:
            raise JournalError("the journal is not open")
        warned = False
        while self._full(size):
            now = time.monotonic()
            if not warned and now - self._full_logged >= _ERROR_LOG_EVERY_SECS:
                self._full_logged = now
                log.error("journal full; intake waits until sinks catch up",
                          directory=self.directory, journal_bytes=self._disk_bytes,
                          max_bytes=self.max_bytes, records=self._live_records,
                          failing=self._failing)
            warned = True
            space.clear()
            await space.wait()

    def _full(self, size: int) -> bool:
        # Always admit when nothing is unreleased, however big the batch: released
        # bytes are freed by the writer's next segment roll.
        with self._lock:
            used = self._disk_bytes + self._pending.bytes
            return self._live_bytes > 0 and used + size > self.max_bytes

    def _enqueue(self, records: Sequence[RawRecord]) -> _Entry:
        if self._closing or self._loop is None:
            raise JournalError("the journal is closed")
        future: asyncio.Future[None] = self._loop.create_future()
        # Only the event loop's thread assigns seqs, so the frame can be encoded
        # outside the lock the writer thread needs.
        seq = self._next_seq
        frame = encode(seq, records)
        entry = _Entry(seq, len(frame), len(records), min(r.received for r in records),
                       frame=frame, future=future)
        with self._lock:
            self._next_seq = seq + 1
            self._live[seq] = entry
            self._live_bytes += entry.size
            self._live_records += entry.records
            self._pending.entries.append(entry)
            self._pending.bytes += entry.size
            self._wake.notify()
        return entry

    # -- the writer thread ---------------------------------------------------------

    def _writer(self) -> None:
        last_sync = 0.0
        failures = 0
        while True:
            with self._wake:
                group = self._next_group(last_sync)
                deletable, self._deletable = self._deletable, []
                closing = self._closing
            self._delete(deletable)
            if group is None:
                self._checkpoint(force=closing)
                if closing:
                    break
                continue
            started = time.perf_counter()
            try:
                self._write_group(group.entries)
            except OSError as exc:
                failures += 1
                self._write_failed(group, exc, failures)
                if closing and failures >= _CLOSE_ATTEMPTS:
                    break  # nothing of it was acknowledged; close() fails the waiters
                continue
            elapsed = time.perf_counter() - started
            last_sync = time.monotonic()
            JOURNAL_FSYNC_SECONDS.observe(elapsed)
            if failures:
                log.warning("journal writes resumed", directory=self.directory,
                            failed_attempts=failures)
                failures = 0
                self._failing = None
            self._committed(group.entries)
            self._checkpoint()
        self._finish()

    def _next_group(self, last_sync: float) -> _Pending | None:
        """Wait (under the lock) for frames to write; None on a checkpoint tick,
        a deletion or closing."""
        if not self._pending.entries and not self._deletable and not self._closing:
            self._wake.wait(_CHECKPOINT_EVERY_SECS)
        if not self._pending.entries:
            return None
        # Group commit: keep gathering until the interval since the last fsync has
        # passed or enough bytes wait.
        deadline = last_sync + self.fsync_interval
        while (self._pending.bytes < self.fsync_max_bytes and not self._closing
               and (remaining := deadline - time.monotonic()) > 0):
            self._wake.wait(remaining)
        group, self._pending = self._pending, _Pending()
        return group

    def _write_group(self, entries: list[_Entry]) -> None:
        chunks: list[bytes] = []
        for entry in entries:
            assert entry.frame is not None
            active = self._active
            if active is None or (active.size and active.size + entry.size
                                  > self.segment_bytes):
                if chunks:
                    self._write_out(chunks)
                    chunks = []
                self._roll(entry.seq)
                active = self._active
                assert active is not None
            with self._lock:
                entry.segment = active
                entry.offset = active.size
                active.size += entry.size
                self._disk_bytes += entry.size
            chunks.append(entry.frame)
        self._write_out(chunks)

    def _write_out(self, chunks: list[bytes]) -> None:
        active = self._active
        assert active is not None
        assert active.fd is not None
        data = memoryview(b"".join(chunks))
        while data:
            written = os.write(active.fd, data)
            data = data[written:]
        os.fdatasync(active.fd)
        active.synced = active.size

    def _roll(self, first_seq: int) -> None:
        """Close the active segment (its frames are already fsync'd) and start one."""
        self._close_active()
        path = os.path.join(self.directory, f"{first_seq:020d}{_SUFFIX}")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, FILE_MODE)
        size = os.fstat(fd).st_size
        segment = _Segment(first_seq, path, size=size, synced=size, fd=fd)
        with self._lock:
            self._segments[first_seq] = segment
            self._active = segment
            self._disk_bytes += segment.size
        _fsync_dir(self.directory)  # the new file's name must survive a power cut too

    def _close_active(self) -> None:
        with self._lock:
            active, self._active = self._active, None
            if active is not None and active.live == 0:
                self._deletable.append(active)
        if active is not None and active.fd is not None:
            with contextlib.suppress(OSError):
                os.close(active.fd)
            active.fd = None

    def _committed(self, entries: list[_Entry]) -> None:
        """The frames are on disk: count them in their segments, wake the producers."""
        with self._lock:
            for entry in entries:
                entry.frame = None
                entry.committed = True
                if not entry.released and entry.segment is not None:
                    entry.segment.live += 1
        futures = [e.future for e in entries if e.future is not None]
        self._call_soon(_resolve, futures)

    def _write_failed(self, group: _Pending, exc: OSError, failures: int) -> None:
        """Undo what the failed round counted, drop the segment it was writing (a
        failed fsync may have lost pages the kernel now calls clean), put the
        frames back in front, and wait before retrying. Intake waits meanwhile."""
        reason = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
        metrics.ERRORS.labels("journal", reason).inc()
        self._failing = reason
        if failures == 1 or failures % max(1, int(_ERROR_LOG_EVERY_SECS / _MAX_BACKOFF_SECS)) == 0:
            log.error("journal write failed; intake waits and nothing is acknowledged "
                      "until it succeeds", directory=self.directory, error=str(exc),
                      attempts=failures, batches=len(group.entries))
        with self._lock:
            for entry in group.entries:
                if entry.segment is not None:
                    entry.segment = None
                    entry.offset = 0
            self._pending.entries[:0] = group.entries
            self._pending.bytes += group.bytes
        active = self._active
        if active is not None:
            self._close_active()
            # What this round wrote there may be torn or not durable: cut it off
            # when possible (recovery would skip whatever remains).
            with contextlib.suppress(OSError):
                os.truncate(active.path, active.synced)
            with self._lock:
                self._disk_bytes -= active.size - active.synced
                active.size = active.synced
        delay = backoff(failures, _MAX_BACKOFF_SECS, first=0.1, jitter=False)
        with self._wake:
            self._wake.wait(delay)
            deletable, self._deletable = self._deletable, []
        self._delete(deletable)

    def _delete(self, segments: list[_Segment]) -> None:
        if not segments:
            return
        freed = 0
        for segment in segments:
            with self._lock:
                if segment.live or segment is self._active or \
                        self._segments.get(segment.first_seq) is not segment:
                    continue
                del self._segments[segment.first_seq]
            _unlink(segment.path)
            freed += segment.size
        if freed:
            with self._lock:
                self._disk_bytes -= freed
            self._call_soon(self._set_space)

    def _checkpoint(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._checkpoint_at < _CHECKPOINT_EVERY_SECS:
            return
        with self._lock:
            released = Released.of(self._live, self._next_seq)
        if released == self._checkpointed:
            return
        self._checkpoint_at = now
        path = os.path.join(self.directory, _CHECKPOINT)
        try:
            fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                         FILE_MODE)
            try:
                data = memoryview(released.dump())
                while data:
                    data = data[os.write(fd, data):]
            finally:
                os.close(fd)
            os.replace(path + ".tmp", path)
        except OSError as exc:
            log.warning("journal checkpoint not written", directory=self.directory,
                        error=str(exc))
            return
        self._checkpointed = released

    def _finish(self) -> None:
        """Closing: drop the active segment if nothing in it is unreleased."""
        self._close_active()
        with self._lock:
            deletable, self._deletable = self._deletable, []
        self._delete(deletable)
        self._checkpoint(force=True)

    def _call_soon(self, fn: Any, *args: Any) -> None:
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            loop.call_soon_threadsafe(fn, *args)

    def _set_space(self) -> None:
        if self._space is not None:
            self._space.set()

    # -- stop --------------------------------------------------------------------

    async def close(self) -> None:
        """Write what is queued, stop the writer, leave what is unreleased on disk."""
        thread = self._thread
        with self._wake:
            self._closing = True
            self._wake.notify()
        if thread is not None:
            await asyncio.to_thread(thread.join, _CLOSE_WAIT_SECS)
            if thread.is_alive():
                log.error("journal writer did not stop; unwritten batches were never "
                          "acknowledged", directory=self.directory,
                          batches=len(self._pending.entries))
        self._thread = None
        with self._lock:
            waiting = [e.future for e in self._pending.entries if e.future is not None]
        for future in waiting:
            if not future.done():
                future.set_exception(JournalError("the journal closed before the batch "
                                                  "was on disk"))
        if thread is None or not thread.is_alive():
            self._unlock_folder()
        self.update_gauges()

    # -- status --------------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        """False while writes fail (intake is stopped)."""
        return self._failing is None

    def status(self) -> dict[str, Any]:
        """Depth and age, for ``/readyz``."""
        with self._lock:
            oldest = next(iter(self._live.values())).received if self._live else None
            out: dict[str, Any] = {
                "records": self._live_records,
                "batches": len(self._live),
                "bytes": self._disk_bytes,
                "max_bytes": self.max_bytes,
                "oldest_age_seconds": round(max(0.0, time.time() - oldest), 3)
                if oldest is not None else 0.0,
            }
        if self._failing is not None:
            out["failing"] = self._failing
        return out

    def update_gauges(self) -> None:
        status = self.status()
        JOURNAL_BYTES.set(status["bytes"])
        JOURNAL_RECORDS.set(status["records"])
        JOURNAL_OLDEST_AGE.set(status["oldest_age_seconds"])
        JOURNAL_MAX_BYTES.set(self.max_bytes)


def _frame_size(records: Sequence[RawRecord]) -> int:
    """The frame's size without encoding it (names are short; close enough)."""
    overhead = _RECORD.size + 64
    return _HEADER.size + _BATCH.size + sum(len(r.data) + overhead for r in records)


def _resolve(futures: list[asyncio.Future[None]]) -> None:
    for future in futures:
        if not future.done():
            future.set_result(None)


def _read_frames(path: str) -> tuple[list[tuple[int, int, bytes]], int]:
    """The valid frames of a segment ``(offset, seq, payload)`` and the count of
    torn or corrupt ones. After a bad frame, reading resumes at the next magic."""
    with open(path, "rb") as fh:
        data = fh.read()
    frames: list[tuple[int, int, bytes]] = []
    torn = 0
    pos = 0
    end = len(data)
    while pos < end:
        ok = False
        if end - pos >= _HEADER.size:
            magic, length, crc, seq = _HEADER.unpack_from(data, pos)
            stop = pos + _HEADER.size + length
            if magic == MAGIC and stop <= end and length >= _BATCH.size:
                payload = data[pos + _HEADER.size:stop]
                if zlib.crc32(payload, zlib.crc32(_SEQ.pack(seq))) == crc:
                    frames.append((pos, seq, payload))
                    pos = stop
                    ok = True
        if ok:
            continue
        torn += 1
        following = data.find(MAGIC, pos + 1)
        if following < 0:
            break
        pos = following
    return frames, torn


def _load(entries: list[_Entry]) -> list[tuple[int, list[RawRecord]]]:
    """Read and decode the given frames (worker thread)."""
    out: list[tuple[int, list[RawRecord]]] = []
    handles: dict[str, Any] = {}
    try:
        for entry in entries:
            segment = entry.segment
            assert segment is not None
            fh = handles.get(segment.path)
            if fh is None:
                fh = handles[segment.path] = open(segment.path, "rb")  # noqa: SIM115
            fh.seek(entry.offset + _HEADER.size)
            payload = fh.read(entry.size - _HEADER.size)
            out.append((entry.seq, decode(payload)))
    finally:
        for fh in handles.values():
            fh.close()
    return out


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = ["Journal", "JournalError", "Released", "ScanResult", "decode", "encode"]
