"""The ``file`` collector: reads files line by line and hands each line to a decoder.

``oneshot`` mode (the default) reads every matching file once from the start
(``.gz`` files are decompressed) and the collector then finishes; this is how
the embedded default replays its sample data and how old logs are imported.

``tail`` mode follows growing log files like ``tail -F``, with durable offsets:

* ``paths`` (glob patterns) are re-scanned every ``scan_interval_secs``; new
  files are picked up. Files are polled every ``poll_interval_secs``.
* Rotation by rename: the old file (same inode) is read to its end; once it is
  no longer matched and has not grown for ``rotate_wait_secs`` it is closed.
  The new file at the path is read from its start.
* copytruncate: a file whose size drops below the read offset (or whose first
  bytes changed) is read again from offset 0.
* Checkpoints: ``<state_dir>/checkpoints/<collector>.json`` records, per file,
  device, inode, the offset after the last line *in the intake journal* and a
  fingerprint (hash of the first 1 KiB) that detects inode reuse. Offsets move
  once ``emit`` has returned, that is once the batch is fsync'd in the journal,
  and in the order batches were read: after a crash the journal replays what
  the sinks had not stored and reading resumes after the last journaled line, so
  only what was read since the last checkpoint write is read twice. With
  ``journal.enabled: false`` the offsets move only when every sink has stored
  the batch (the pipeline's :class:`~socd.plugins.Ack`) instead.
* A last line without its newline waits for it, at most
  ``partial_line_timeout_secs``. Lines longer than ``max_line_bytes`` are
  dead-lettered (their first ``max_line_bytes`` bytes).
* ``.gz`` files matched in tail mode are imported once and checkpointed as done.
* Back-pressure: while the pipeline is full, ``emit`` waits and nothing more
  is read; memory stays bounded by one read chunk, one partial line and one batch.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import glob
import gzip
import hashlib
import os
import stat
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO, Any, Literal

import orjson
import structlog
from pydantic import Field

from socd import metrics
from socd.config import CollectorConfig, resolve_path
from socd.filemode import open_private
from socd.plugins import Ack, Emit, PluginContext, RawRecord, durable_emit

log = structlog.get_logger("socd.collectors.file")

FP_BYTES = 1024
READ_CHUNK = 1024 * 1024
CHECKPOINT_VERSION = 1

FileKey = tuple[int, int]


# -- checkpoints ---------------------------------------------------------------------


@dataclass(slots=True)
class Checkpoint:
    """What is stored for one file: where it is, which inode, how far it is stored."""

    path: str
    dev: int
    ino: int
    offset: int
    fp: str = ""
    fp_len: int = 0
    gz: bool = False
    done: bool = False

    @property
    def key(self) -> FileKey:
        return (self.dev, self.ino)


def dump_checkpoints(collector: str, entries: dict[FileKey, Checkpoint]) -> bytes:
    files = [{"path": c.path, "dev": c.dev, "ino": c.ino, "offset": c.offset, "fp": c.fp,
              "fp_len": c.fp_len, "gz": c.gz, "done": c.done}
             for c in sorted(entries.values(), key=lambda c: (c.path, c.dev, c.ino))]
    return orjson.dumps({"version": CHECKPOINT_VERSION, "collector": collector,
                         "files": files}, option=orjson.OPT_INDENT_2) + b"\n"


def load_checkpoints(data: bytes) -> dict[FileKey, Checkpoint]:
    """Parse a checkpoint file; raises ValueError when it is not one."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("version") != CHECKPOINT_VERSION:
        raise ValueError("not a version 1 checkpoint file")
    out: dict[FileKey, Checkpoint] = {}
    for item in doc.get("files", []):
        try:
            entry = Checkpoint(str(item["path"]), int(item["dev"]), int(item["ino"]),
                               int(item["offset"]), str(item.get("fp", "")),
                               int(item.get("fp_len", 0)), bool(item.get("gz", False)),
                               bool(item.get("done", False)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"bad file entry: {exc}") from None
        if entry.offset < 0 or not 0 <= entry.fp_len <= FP_BYTES:
            raise ValueError("bad file entry: negative offset or fingerprint length")
        out[entry.key] = entry
    return out


def fingerprint(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


Marks = dict[FileKey, Checkpoint | None]  # None: forget the file


class CheckpointStore:
    """Committed offsets, advanced in read order as the pipeline acknowledges batches.

    ``pending`` holds one entry per emitted batch, oldest first; an entry's marks
    are applied only once it and every older entry are acknowledged. The file is
    rewritten (tmp + fsync + rename) at most every ``interval`` seconds, and at
    once when the collector is stopping (acks arrive during the daemon's drain).
    """

    def __init__(self, path: str, collector: str, interval: float) -> None:
        self.path = path
        self.collector = collector
        self.interval = interval
        self.entries: dict[FileKey, Checkpoint] = {}
        self.pending: collections.deque[list[Any]] = collections.deque()
        self.stopping = False
        self.dirty = False
        self._last_write = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self.idle = asyncio.Event()
        self.idle.set()

    def load(self) -> bool:
        """Read the file; False when there is none (first run) or it was unusable."""
        try:
            with open(self.path, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            return False
        try:
            self.entries = load_checkpoints(data)
        except ValueError as exc:
            bad = f"{self.path}.corrupt-{int(time.time())}"
            with contextlib.suppress(OSError):
                os.replace(self.path, bad)
            log.error("checkpoint file unusable; starting without it", collector=self.collector,
                      file=self.path, moved_to=bad, error=str(exc))
            return False
        return True

    def add(self, marks: Marks) -> list[Any]:
        entry = [False, marks]
        self.pending.append(entry)
        self.idle.clear()
        return entry

    def ack(self, entry: list[Any]) -> None:
        entry[0] = True
        while self.pending and self.pending[0][0]:
            _, marks = self.pending.popleft()
            for key, mark in marks.items():
                if mark is None:
                    self.entries.pop(key, None)
                else:
                    self.entries[key] = mark
            self.dirty = True
        if not self.pending:
            self.idle.set()
        self._maybe_write()

    def discard(self, entry: list[Any]) -> None:
        """Forget a batch that was never queued (emit was cancelled)."""
        with contextlib.suppress(ValueError):
            self.pending.remove(entry)
        if not self.pending:
            self.idle.set()
        self.ack_ready()

    def ack_ready(self) -> None:
        if self.pending and self.pending[0][0]:
            self.ack(self.pending[0])

    def _maybe_write(self) -> None:
        if not self.dirty:
            return
        elapsed = time.monotonic() - self._last_write
        if self.stopping or elapsed >= self.interval:
            self.write()
        elif self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.write()
                return
            self._timer = loop.call_later(self.interval - elapsed, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self.dirty:
            self.write()

    def write(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        data = dump_checkpoints(self.collector, self.entries)
        directory = os.path.dirname(self.path)
        tmp = f"{self.path}.tmp"
        try:
            # Private whatever the umask (socd.filemode): 0640 in 0750 folders.
            with open_private(tmp, append=False) as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
            dfd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError as exc:
            metrics.ERRORS.labels(f"collector/{self.collector}", "CheckpointWriteError").inc()
            log.error("cannot write checkpoint; will retry", collector=self.collector,
                      file=self.path, error=str(exc))
            return
        self.dirty = False
        self._last_write = time.monotonic()

    def close(self) -> None:
        self.stopping = True
        if self.dirty:
            self.write()


# Stores of running tail collectors by checkpoint path: a collector restarted by a
# reload waits until its predecessor's batches are acknowledged before reading.
_ACTIVE: dict[str, CheckpointStore] = {}


# -- tailing -------------------------------------------------------------------------


class _File:
    """One followed file (identified by device and inode, not by name)."""

    __slots__ = ("done", "fd", "fp", "fp_len", "gone_since", "gz", "gzfile", "key",
                 "last_growth", "line_pos", "partial", "partial_since", "path", "pos", "raw",
                 "skipping")

    def __init__(self, key: FileKey, path: str, fd: int, offset: int) -> None:
        self.key = key
        self.path = path
        self.fd = fd
        self.pos = offset          # where the next read starts
        self.line_pos = offset     # just after the last complete line (what is committed)
        self.partial = b""         # bytes after the last newline
        self.partial_since = 0.0
        self.skipping = False      # inside an oversize line: drop bytes up to its newline
        self.fp = ""
        self.fp_len = 0
        self.gone_since: float | None = None
        self.last_growth = time.monotonic()
        self.gz = False
        self.gzfile: gzip.GzipFile | None = None
        self.raw: IO[bytes] | None = None
        self.done = False

    def read(self, size: int) -> bytes:
        if self.gzfile is not None:
            return self.gzfile.read(size)
        return os.read(self.fd, size)

    def close(self) -> None:
        if self.gzfile is not None:
            with contextlib.suppress(OSError, EOFError, zlib.error):
                self.gzfile.close()
            self.gzfile = None
        if self.raw is not None:
            with contextlib.suppress(OSError):
                self.raw.close()
            self.raw = None
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1


class _Batch:
    __slots__ = ("files", "records", "removed", "size")

    def __init__(self) -> None:
        self.records: list[RawRecord] = []
        self.size = 0
        self.files: dict[FileKey, _File] = {}
        self.removed: set[FileKey] = set()

    def __bool__(self) -> bool:
        return bool(self.records or self.files or self.removed)


def _fp_matches(fd: int, fp: str, fp_len: int) -> bool:
    """Whether the first ``fp_len`` bytes of the file still hash to ``fp``."""
    if fp_len == 0:
        return True
    try:
        head = os.pread(fd, fp_len, 0)
    except OSError:
        return False
    return len(head) == fp_len and fingerprint(head) == fp


class FileCollector:
    """Reads JSON-lines or text files; one record per non-empty line."""

    class Config(CollectorConfig):
        type: Literal["file"]
        paths: list[str] = Field(min_length=1, description="Files or glob patterns, relative "
                                 "to the config file's folder.")
        mode: Literal["oneshot", "tail"] = Field(
            "oneshot", description="`oneshot`: read each file once and finish. `tail`: follow "
            "the files as they grow and rotate, with durable offsets.")
        max_line_bytes: int = Field(1024 * 1024, ge=256,
                                    description="Longer lines are dead-lettered.")
        start_at: Literal["beginning", "end"] = Field(
            "beginning", description="tail: where to start in files present at the very first "
            "start (no checkpoint yet). Files found later are always read from the beginning.")
        scan_interval_secs: float = Field(5.0, gt=0, le=3600,
                                          description="tail: how often `paths` are re-globbed.")
        poll_interval_secs: float = Field(0.25, gt=0, le=60,
                                          description="tail: how often files are checked for "
                                          "new data when idle.")
        rotate_wait_secs: float = Field(5.0, ge=0, le=3600, description="tail: a rotated-away "
                                        "file is closed once it has not grown for this long.")
        partial_line_timeout_secs: float = Field(
            10.0, gt=0, le=86400, description="tail: a last line without newline is taken "
            "as it is after this long.")
        checkpoint_interval_secs: float = Field(
            1.0, ge=0, le=300, description="tail: longest delay between an acknowledged batch "
            "and the checkpoint file update (0: every batch). Graceful stops write at once.")

    def __init__(self, config: Config, ctx: PluginContext) -> None:
        self.name = ctx.name
        self.config = config
        self.ctx = ctx
        self._ready = False
        self.checkpoint_path = os.path.join(ctx.state_dir, "checkpoints", f"{ctx.name}.json")
        self.store: CheckpointStore | None = None
        self.files_open: dict[FileKey, _File] = {}
        self._done: dict[FileKey, str] = {}  # finished .gz files -> fingerprint
        self._first_run = False
        self._rescan = False
        self._warned: set[str] = set()
        self._resume: dict[FileKey, int] = {}  # files to reopen after a read error
        self._batch = _Batch()
        metrics.init_collector(self.name)

    @property
    def ready(self) -> bool:
        return self._ready

    def files(self) -> list[str]:
        found: list[str] = []
        for pattern in self.config.paths:
            full = resolve_path(self.ctx.config_dir, pattern)
            matches = sorted(glob.glob(full)) if glob.has_magic(full) else [full]
            found.extend(m for m in matches if os.path.isfile(m))
        return found

    async def run(self, emit: Emit) -> None:
        if self.config.mode == "tail":
            await self._tail(emit)
            return
        files = self.files()
        if not files:
            log.warning("no file matches the configured paths", collector=self.name,
                        paths=self.config.paths)
        self._ready = True
        metrics.COMPONENT_UP.labels("collector", self.name).set(1)
        for path in files:
            await self._read(path, emit)
        log.info("files read", collector=self.name, files=len(files))

    async def _read(self, path: str, emit: Emit) -> None:
        limit = self.config.batch_max_events
        max_bytes = self.config.batch_max_bytes
        size = 0
        max_line = self.config.max_line_bytes
        batch: list[RawRecord] = []
        opener = gzip.open if path.endswith(".gz") else open
        fh: Iterable[bytes]  # a GzipFile or a BufferedReader: both iterate lines
        with opener(path, "rb") as fh:
            now = time.time()
            for line in fh:
                line = line.rstrip(b"\r\n")
                if not line.strip():
                    continue
                if len(line) > max_line:
                    metrics.EVENTS_RECEIVED.labels(self.name).inc()
                    self.ctx.dead_letter.write(stage="collect", reason="oversize", raw=line,
                                               collector=self.name, source=path)
                    continue
                batch.append(RawRecord(line, self.config.decoder, self.name, path, now))
                size += len(line)
                if len(batch) >= limit or size >= max_bytes:
                    await emit(batch, None)
                    batch = []
                    size = 0
                    now = time.time()
        if batch:
            await emit(batch, None)

    # -- tail mode ---------------------------------------------------------------------

    async def _tail(self, emit: Emit) -> None:
        previous = _ACTIVE.get(self.checkpoint_path)
        if previous is not None and not previous.idle.is_set():
            # A reload restarted this collector: let the old instance's batches commit.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(previous.idle.wait(), 60)
        store = CheckpointStore(self.checkpoint_path, self.name,
                                self.config.checkpoint_interval_secs)
        self.store = store
        _ACTIVE[self.checkpoint_path] = store
        self._first_run = not store.load()
        self._batch = _Batch()
        try:
            self._scan(initial=True)
            self._recover_rotated()
            self._ready = True
            metrics.COMPONENT_UP.labels("collector", self.name).set(1)
            log.info("tailing files", collector=self.name, files=len(self.files_open),
                     checkpoint=self.checkpoint_path, first_run=self._first_run)
            loop = asyncio.get_running_loop()
            next_scan = loop.time() + self.config.scan_interval_secs
            while True:
                if self._rescan or loop.time() >= next_scan:
                    self._rescan = False
                    self._scan()
                    next_scan = loop.time() + self.config.scan_interval_secs
                progressed = False
                for f in list(self.files_open.values()):
                    if await self._poll_file(f, emit):
                        progressed = True
                await self._flush(emit)
                if not progressed:
                    await asyncio.sleep(self.config.poll_interval_secs)
        finally:
            self._ready = False
            for f in self.files_open.values():
                f.close()
            self.files_open.clear()
            store.close()  # acks that arrive while the daemon drains write at once

    def _scan(self, *, initial: bool = False) -> dict[FileKey, str]:
        """Glob ``paths``; open new files, note which followed files are gone."""
        assert self.store is not None
        batch = self._batch
        found: dict[FileKey, str] = {}
        for pattern in self.config.paths:
            full = resolve_path(self.ctx.config_dir, pattern)
            matches = sorted(glob.glob(full)) if glob.has_magic(full) else [full]
            for path in matches:
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    found.setdefault((st.st_dev, st.st_ino), path)
        now = time.monotonic()
        for key, f in self.files_open.items():
            if key in found:
                f.path = found[key]
                f.gone_since = None
            elif f.gone_since is None:
                f.gone_since = now
        for key, path in found.items():
            if key not in self.files_open and key not in self._done:
                self._open(key, path, initial=initial, offset=self._resume.pop(key, None))
        # Forget files that no longer exist (a reused inode is told apart by fingerprint).
        for key in list(self.store.entries):
            if key not in found and key not in self.files_open:
                batch.removed.add(key)
        for key in list(self._resume):
            if key not in found:
                del self._resume[key]
        for key in list(self._done):
            if key not in found:
                del self._done[key]
        return found

    def _open(self, key: FileKey, path: str, *, initial: bool = False,
              offset: int | None = None) -> _File | None:
        """Start following ``path``; where depends on its checkpoint (see module doc)."""
        assert self.store is not None
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            if path not in self._warned:
                self._warned.add(path)
                log.warning("cannot open file", collector=self.name, file=path,
                            error=exc.strerror)
            return None
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != key:  # replaced between glob and open
            os.close(fd)
            self._rescan = True
            return None
        entry = self.store.entries.get(key)
        if entry is not None and not _fp_matches(fd, entry.fp, entry.fp_len):
            log.info("inode reused by a new file; reading it from the start",
                     collector=self.name, file=path)
            entry, offset = None, None
        gz = path.endswith(".gz")
        if gz and entry is not None and entry.done:
            self._done[key] = entry.fp
            os.close(fd)
            return None
        if offset is not None:
            start = offset
        elif entry is not None:
            start = entry.offset
            if not gz and st.st_size < start:
                log.info("file shorter than its checkpoint (truncated); reading it from the "
                         "start", collector=self.name, file=path)
                start = 0
        elif not gz and initial and self._first_run and self.config.start_at == "end":
            start = _end_of_last_line(fd, st.st_size)
        else:
            start = 0
        f = _File(key, path, fd, start)
        if entry is not None:
            f.fp, f.fp_len = entry.fp, entry.fp_len
        if gz and not self._open_gz(f, start):
            return None
        if not gz:
            os.lseek(fd, start, os.SEEK_SET)
        self.files_open[key] = f
        self._batch.files[key] = f  # checkpoint it (start_at: end must survive a restart)
        self._batch.removed.discard(key)
        log.info("following file", collector=self.name, file=path, offset=start, gzip=gz)
        return f

    def _open_gz(self, f: _File, start: int) -> bool:
        f.gz = True
        try:
            head = os.pread(f.fd, FP_BYTES, 0)
            f.fp, f.fp_len = fingerprint(head), len(head)
            f.raw = os.fdopen(f.fd, "rb")
            f.fd = -1
            f.gzfile = gzip.GzipFile(fileobj=f.raw, mode="rb")
            if start:
                f.gzfile.seek(start)  # the offset of a .gz file counts uncompressed bytes
        except (OSError, EOFError, zlib.error) as exc:
            log.warning("cannot read gzip file; will retry", collector=self.name,
                        file=f.path, error=str(exc))
            f.close()
            return False
        return True

    def _recover_rotated(self) -> None:
        """Files checkpointed at a path that now holds another file were rotated while
        socd was stopped: find them next to it (same inode) and read them to the end."""
        assert self.store is not None
        for key, entry in list(self.store.entries.items()):
            if key in self.files_open or key in self._done or entry.gz:
                continue
            directory = os.path.dirname(entry.path)
            try:
                candidates = list(os.scandir(directory))
            except OSError:
                continue
            for item in candidates:
                try:
                    st = item.stat(follow_symlinks=False)
                except OSError:
                    continue
                if (st.st_dev, st.st_ino) == key and stat.S_ISREG(st.st_mode):
                    f = self._open(key, item.path)
                    if f is not None:
                        f.gone_since = time.monotonic()
                        log.info("reading the rest of a file rotated while stopped",
                                 collector=self.name, file=item.path, offset=f.pos)
                    break

    async def _poll_file(self, f: _File, emit: Emit) -> bool:
        """Read what ``f`` has (up to a budget per pass); True when data was read."""
        cfg = self.config
        progressed = False
        if f.fp_len and not f.gz and not _fp_matches(f.fd, f.fp, f.fp_len):
            self._truncated(f, "the first bytes changed")
        for _ in range(16):
            try:
                data = f.read(READ_CHUNK)
            except (OSError, EOFError, zlib.error) as exc:
                self._read_failed(f, exc)
                return progressed
            if not data:
                break
            progressed = True
            f.last_growth = time.monotonic()
            await self._lines(f, data, emit)
        else:
            return True
        now = time.monotonic()
        if f.gz:
            self._finish_gz(f)
            return progressed
        try:
            size = os.fstat(f.fd).st_size
        except OSError:
            size = f.pos
        if size < f.pos:
            self._truncated(f, "size shrank below the read offset")
            return True
        if f.partial and now - f.partial_since >= cfg.partial_line_timeout_secs:
            self._take_partial(f)
        if f.gone_since is not None:
            if now - max(f.gone_since, f.last_growth) >= cfg.rotate_wait_secs:
                if f.partial:
                    self._take_partial(f)
                log.info("rotated file read to its end; closed", collector=self.name,
                         file=f.path)
                self._forget(f)
        elif not progressed:
            try:
                st = os.stat(f.path)
                moved = (st.st_dev, st.st_ino) != f.key
            except OSError:
                moved = True
            if moved:  # renamed or deleted: look for the new file now
                self._rescan = True
        return progressed

    def _split(self, f: _File, data: bytes) -> tuple[int, list[bytes], bytes] | None:
        """Complete lines in ``data`` (read at ``f.pos``): the file offset where the first
        starts, the lines, and the rest after the last newline; None when there is none."""
        start = f.pos
        f.pos += len(data)
        nl = data.rfind(b"\n")
        if nl < 0:
            if not f.skipping:
                if not f.partial:
                    f.partial_since = time.monotonic()
                f.partial += data
                if len(f.partial) > self.config.max_line_bytes:
                    self._oversize(f, f.partial)
            return None
        if f.skipping:
            first = data.find(b"\n")
            pos = start + first + 1
            lines = data[first + 1:nl].split(b"\n") if first < nl else []
            f.skipping = False
        else:
            pos = f.line_pos
            lines = (f.partial + data[:nl] if f.partial else data[:nl]).split(b"\n")
        rest = data[nl + 1:]
        f.partial = rest
        if rest:
            f.partial_since = time.monotonic()
        return pos, lines, rest

    async def _lines(self, f: _File, data: bytes, emit: Emit) -> None:
        """Add the complete lines of ``data`` to the batch, handing full batches over."""
        split = self._split(f, data)
        if split is None:
            return
        pos, lines, rest = split
        cfg = self.config
        max_line, limit, limit_bytes = cfg.max_line_bytes, cfg.batch_max_events, \
            cfg.batch_max_bytes
        decoder, name, path = cfg.decoder, self.name, f.path
        now = time.time()
        batch = self._batch
        records = batch.records
        size = batch.size
        batch.files[f.key] = f
        for line in lines:
            pos += len(line) + 1
            if line[-1:] == b"\r":
                line = line[:-1]
            if not line or line.isspace():
                continue
            if len(line) > max_line:
                metrics.EVENTS_RECEIVED.labels(name).inc()
                self.ctx.dead_letter.write(stage="collect", reason="oversize", raw=line,
                                           collector=name, source=path,
                                           detail=f"{len(line)} bytes > {max_line}")
                continue
            records.append(RawRecord(line, decoder, name, path, now))
            size += len(line)
            if len(records) >= limit or size >= limit_bytes:
                f.line_pos = pos
                batch.size = size
                await self._flush(emit)
                batch = self._batch
                batch.files[f.key] = f
                records = batch.records
                size = 0
        f.line_pos = pos
        batch.size = size
        if len(rest) > max_line:
            self._oversize(f, rest)

    def _oversize(self, f: _File, data: bytes) -> None:
        """A line without newline grew past max_line_bytes: dead-letter its start, skip the
        rest (the offset stays at its start until its newline is read)."""
        limit = self.config.max_line_bytes
        metrics.EVENTS_RECEIVED.labels(self.name).inc()
        self.ctx.dead_letter.write(stage="collect", reason="oversize", raw=data[:limit],
                                   collector=self.name, source=f.path,
                                   detail=f"line longer than {limit} bytes; first {limit} kept")
        f.partial = b""
        f.skipping = True

    def _take_partial(self, f: _File) -> None:
        batch = self._batch
        line = f.partial.rstrip(b"\r")
        f.partial = b""
        f.line_pos = f.pos
        batch.files[f.key] = f
        if line.strip():
            batch.records.append(RawRecord(line, self.config.decoder, self.name, f.path))
            batch.size += len(line)

    def _truncated(self, f: _File, why: str) -> None:
        log.info("file truncated (copytruncate?); reading it from the start",
                 collector=self.name, file=f.path, reason=why, offset=f.pos)
        os.lseek(f.fd, 0, os.SEEK_SET)
        f.pos = f.line_pos = 0
        f.partial = b""
        f.skipping = False
        f.fp, f.fp_len = "", 0
        self._batch.files[f.key] = f

    def _forget(self, f: _File) -> None:
        batch = self._batch
        f.close()
        self.files_open.pop(f.key, None)
        batch.files.pop(f.key, None)
        batch.removed.add(f.key)

    def _finish_gz(self, f: _File) -> None:
        if f.partial:
            self._take_partial(f)
        f.done = True
        self._batch.files[f.key] = f
        self._done[f.key] = f.fp
        self.files_open.pop(f.key, None)
        f.close()
        log.info("gzip file imported", collector=self.name, file=f.path, bytes=f.pos)

    def _read_failed(self, f: _File, exc: BaseException) -> None:
        if f.gz and isinstance(exc, EOFError):
            # Still being compressed (logrotate): try again from the last line later.
            log.info("gzip file incomplete; will retry", collector=self.name, file=f.path)
        else:
            metrics.ERRORS.labels(f"collector/{self.name}", type(exc).__name__).inc()
            log.warning("read failed; the file will be reopened", collector=self.name,
                        file=f.path, error=str(exc),
                        stale=getattr(exc, "errno", None) == errno.ESTALE)
        f.close()
        self.files_open.pop(f.key, None)
        # Re-opened by a later scan, after the last complete line read (which the batch
        # in progress may still hold: it keeps its mark).
        self._resume[f.key] = f.line_pos

    def _mark(self, f: _File) -> Checkpoint:
        if not f.gz and f.fp_len < FP_BYTES and f.line_pos > f.fp_len and f.fd >= 0:
            with contextlib.suppress(OSError):
                head = os.pread(f.fd, min(FP_BYTES, f.line_pos), 0)
                f.fp, f.fp_len = fingerprint(head), len(head)
        return Checkpoint(f.path, f.key[0], f.key[1], f.line_pos, f.fp, f.fp_len, f.gz, f.done)

    async def _flush(self, emit: Emit) -> None:
        """Hand the batch over; its offsets are committed once it is journaled (or,
        without the journal, once every sink stored it)."""
        batch = self._batch
        if not batch:
            return
        self._batch = _Batch()
        assert self.store is not None
        store = self.store
        marks: Marks = {key: self._mark(f) for key, f in batch.files.items()}
        for key in batch.removed:
            marks[key] = None
        entry = store.add(marks)
        if not batch.records:
            store.ack(entry)
            return
        durable = durable_emit(emit)
        try:
            await emit(batch.records, None if durable else Ack(lambda: store.ack(entry)))
        except BaseException:
            store.discard(entry)
            raise
        if durable:
            # On disk in the journal: a crash replays it, so the offset moves on now.
            store.ack(entry)


def _end_of_last_line(fd: int, size: int) -> int:
    """The offset just after the last newline (start_at: end skips whole lines only)."""
    if size == 0:
        return 0
    n = min(size, 64 * 1024)
    tail = os.pread(fd, n, size - n)
    i = tail.rfind(b"\n")
    if i >= 0:
        return size - n + i + 1
    return 0 if n == size else size
