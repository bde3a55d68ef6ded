"""The pipeline: collectors -> decode/normalize -> classify -> sinks.

Stages are connected by bounded asyncio queues of *batches*, so the per-event
cost of queueing is amortized and memory is bounded by
``queue_max_batches x batch_max_events`` per queue. A full queue makes the
stage before it wait: a slow sink slows the decoder, which slows intake, which
a collector passes on to its source (TCP window, HTTP 429, MQTT acks held
back). Nothing is dropped silently: every record that is not delivered is
counted in ``socd_events_dropped_total{stage,reason}`` and dead-lettered. A sink
with ``spool.enabled`` puts what it cannot store yet on disk instead
(:mod:`socd.app.spool`), so an outage of that sink does not hold the sources back.

Control messages (sink swaps on reload, barriers) travel through the intake
queue in order with the data, so a reload never races a batch in flight.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from socd import metrics
from socd.app import spool as spool_mod
from socd.app.alertless import AlertlessWatch
from socd.app.deadletter import DeadLetter
from socd.app.journal import Journal
from socd.app.spool import Spool
from socd.config import SinkConfig, resolve_path
from socd.engine.classify import Processor
from socd.errors import SinkError
from socd.event import Event
from socd.plugins import Ack, Decoder, RawRecord, Sink
from socd.retry import backoff
from socd.tz import iso_or_none

log = structlog.get_logger("socd.pipeline")


@dataclass(slots=True)
class Batch:
    records: list[RawRecord]
    ack: Ack | None


@dataclass(slots=True)
class EventBatch:
    events: list[Event]
    ack: Ack | None
    received: float


@dataclass(slots=True)
class Processed:
    """Events already decoded and classified elsewhere (a cluster worker's rule alerts):
    routed to the sinks as they are, in order with the rest of the intake queue."""

    events: list[Event]
    ack: Ack | None
    received: float


@dataclass(slots=True)
class Control:
    """An in-band instruction for the decode loop."""

    action: Callable[[], Any]
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop()
                                       .create_future())


class SinkRunner:
    """Owns one sink's queue: batches, writes, retries, acknowledges.

    Without a spool, a chunk that fails with a retryable error is retried in place
    with exponential backoff and jitter; the batch is acknowledged once stored.

    With ``spool.enabled`` (see :mod:`socd.app.spool`) the first failure of a chunk sends
    it to the on-disk spool instead and the batch is acknowledged as soon as the
    chunk is on disk. While the spool holds anything, every later chunk is appended
    too (so the order of the input holds), and a drainer task writes the oldest
    chunks to the sink with the same backoff. Once the spool is empty, chunks go
    straight to the sink again (one attempt, no disk I/O). A direct write and a
    drain write never run at the same time (the spool's lock). On stop, what is
    spooled stays on disk for the next start: a drain write already under way may
    finish (a few seconds at most), but nothing is retried or waited for.
    """

    def __init__(self, name: str, sink: Sink, config: SinkConfig, dead_letter: DeadLetter,
                 *, state_dir: str | None = None) -> None:
        self.name = name
        self.sink = sink
        self.config = config
        self.dead_letter = dead_letter
        self.queue: asyncio.Queue[EventBatch | None] = asyncio.Queue(config.queue_max_batches)
        self.queued_events = 0
        self.up = False
        self._in_flight: list[EventBatch] = []
        self._alerts_only = config.select == "alerts"
        self._task: asyncio.Task[None] | None = None
        # The chunks of the buffer being written and how many are done (stored,
        # spooled or dead-lettered): abort() spools only the rest.
        self._chunks: list[list[Event]] | None = None
        self._chunks_done = 0
        self._append_job: concurrent.futures.Future[None] | None = None
        self.spool: Spool | None = None
        self.spool_path: str | None = None
        self._drainer: asyncio.Task[None] | None = None
        # Set by stop: the drainer finishes the write it is in (so a stored chunk is
        # also removed, not sent again at the next start) but starts no new one.
        self._stopping = asyncio.Event()
        self._drain_busy = False
        if config.spool.enabled:
            base = state_dir if state_dir is not None else _state_dir_of(dead_letter)
            self.spool_path = resolve_path(
                base, config.spool.path or os.path.join("spool", f"{name}.db"))
        metrics.init_sink(name)

    @property
    def started(self) -> bool:
        """Whether :meth:`start` has run (a runner is started once, by the pipeline)."""
        return self._task is not None

    def start(self) -> None:
        if self.spool_path is not None:
            spool_cfg = self.config.spool
            self.spool = spool_mod.acquire(self.spool_path, name=self.name,
                                           max_bytes=spool_cfg.max_bytes,
                                           warn_ratio=spool_cfg.warn_ratio)
        self._task = asyncio.create_task(self._run(), name=f"sink/{self.name}")

    async def put(self, batch: EventBatch) -> None:
        self.queued_events += len(batch.events)
        await self.queue.put(batch)

    async def stop(self) -> None:
        """Ask the runner to write what it has and finish (in-band)."""
        await self.queue.put(None)

    async def wait(self) -> None:
        """Wait until the runner has finished (never raises for its cancellation)."""
        if self._task is not None:
            await asyncio.wait({self._task})

    def abort(self) -> int:
        """Cancel the runner; dead-letter everything not yet written. Returns the count.

        With a spool, what it holds stays there, and what is not yet written is
        appended to it (a blocking write, at shutdown only); only what does not fit
        or cannot be written is dead-lettered."""
        if self._task is not None:
            self._task.cancel()
        if self._drainer is not None:
            self._drainer.cancel()
        spool = self.spool if self.spool is not None and self.spool.is_open else None
        if spool is None:
            return self._abort_dead_letter()
        pending = list(self._in_flight)
        self._in_flight = []
        chunks: list[list[Event]] = []
        if pending and self._chunks is not None:
            start = self._chunks_done
            job = self._append_job
            if job is not None and start < len(self._chunks):
                # The chunk being appended when the task was cancelled: once the
                # worker thread has finished it, it is either on disk or not.
                concurrent.futures.wait([job])
                if not job.cancelled() and job.exception() is None:
                    start += 1
            chunks.extend(self._chunks[start:])
        else:
            for batch in pending:
                chunks.extend(self._split(self._select(batch.events)))
        self._chunks = None
        self._append_job = None
        while not self.queue.empty():
            item = self.queue.get_nowait()
            if item is not None:
                pending.append(item)
                chunks.extend(self._split(self._select(item.events)))
        lost = spooled = 0
        for chunk in chunks:
            if spool.append_blocking(chunk):
                spooled += len(chunk)
                continue
            for event in chunk:
                self.dead_letter.write(stage=f"sink/{self.name}", reason="shutdown_timeout",
                                       event=event, collector=event["socd"].get("collector", ""))
                lost += 1
        for batch in pending:
            if batch.ack is not None:
                batch.ack.done()
        self.queued_events = 0
        if spooled:
            log.warning("undelivered events spooled at shutdown", sink=self.name,
                        events=spooled, spool_events=spool.events, file=spool.path)
        return lost

    def _abort_dead_letter(self) -> int:
        lost = 0
        pending = list(self._in_flight)
        self._in_flight = []
        while not self.queue.empty():
            item = self.queue.get_nowait()
            if item is not None:
                pending.append(item)
        for batch in pending:
            for event in self._select(batch.events):
                self.dead_letter.write(stage=f"sink/{self.name}", reason="shutdown_timeout",
                                       event=event, collector=event["socd"].get("collector", ""))
                lost += 1
            if batch.ack is not None:
                batch.ack.done()
        self.queued_events = 0
        return lost

    @property
    def selects_alerts_only(self) -> bool:
        """``select: alerts``: plain events are not this sink's to keep."""
        return self._alerts_only

    def _select(self, events: Sequence[Event]) -> list[Event]:
        if not self._alerts_only:
            return list(events)
        return [e for e in events if e["event"].get("kind") == "alert"]

    def _split(self, events: list[Event]) -> list[list[Event]]:
        # One received batch may hold many events (an MQTT message with an array of
        # thousands): writes never exceed batch_max_events, whatever came in.
        limit = self.config.batch_max_events
        return [events[start:start + limit] for start in range(0, len(events), limit)]

    async def _run(self) -> None:
        try:
            if self.spool is not None:
                await self._open_spool()
            await self._batch_loop()
        finally:
            await self._close_spool()

    async def _batch_loop(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.config.flush_interval_secs
        limit = self.config.batch_max_events
        stopping = False
        while not stopping:
            first = await self.queue.get()
            if first is None:
                break
            buffer = [first]
            # Batches taken from the queue count as in flight at once, so abort()
            # dead-letters them even while this loop still waits for a fuller batch.
            self._in_flight = buffer
            count = len(first.events)
            deadline = loop.time() + interval
            while count < limit:
                if self.queue.empty():
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(self.queue.get(), remaining)
                    except TimeoutError:
                        break
                else:
                    item = self.queue.get_nowait()
                if item is None:
                    stopping = True
                    break
                buffer.append(item)
                count += len(item.events)
            await self._write(buffer)

    async def _write(self, batches: list[EventBatch]) -> None:
        self._in_flight = batches
        events = [e for b in batches for e in self._select(b.events)]
        self._chunks = self._split(events)
        self._chunks_done = 0
        for chunk in self._chunks:
            if self.spool is None:
                await self._write_chunk(chunk)
            else:
                await self._store_chunk(chunk)
            self._chunks_done += 1
        self._chunks = None
        now = time.time()
        latency = metrics.PROCESSING_LATENCY.labels(self.name)
        for batch in batches:
            self.queued_events -= len(batch.events)
            if batch.events:
                latency.observe(max(0.0, now - batch.received))
            if batch.ack is not None:
                batch.ack.done()
        self._in_flight = []

    async def _attempt(self, events: list[Event]) -> tuple[str, BaseException | None]:
        """One write: ``stored``, ``rejected`` (dead-lettered, never retried) or
        ``failed`` (may succeed later; counted, and the sink marked down)."""
        started = time.perf_counter()
        try:
            await self.sink.write(events)
        except SinkError as exc:
            metrics.ERRORS.labels(f"sink/{self.name}", type(exc).__name__).inc()
            if not exc.retryable:
                for event in events:
                    self.dead_letter.write(stage=f"sink/{self.name}", reason="rejected",
                                           event=event, detail=str(exc))
                return _REJECTED, exc
            self.mark_up(False)
            return _FAILED, exc
        except Exception as exc:
            metrics.ERRORS.labels(f"sink/{self.name}", type(exc).__name__).inc()
            self.mark_up(False)
            return _FAILED, exc
        elapsed = time.perf_counter() - started
        metrics.SINK_BATCH_SECONDS.labels(self.name).observe(elapsed)
        metrics.EVENTS_SENT.labels(self.name).inc(len(events))
        self.mark_up(True)
        return _STORED, None

    async def _write_chunk(self, events: list[Event], *, draining: bool = False) -> str:
        """Write one chunk: retry failures with backoff until the sink stores it
        (``stored``) or refuses it for good (``rejected``, dead-lettered).

        The spool's drainer (``draining``) stops retrying once the runner is stopping
        (``failed``: the chunk stays spooled for the next start); its waits end early
        then, where a direct write has nowhere else to keep the chunk and waits on.
        """
        attempt = 0
        failed, raised = _RETRY_MESSAGES[draining]
        while True:
            outcome, exc = await self._attempt(events)
            if outcome != _FAILED or (draining and self._stopping.is_set()):
                return outcome
            attempt += 1
            # Jitter for sink errors: every writer of a restarted server fails at once.
            sink_error = isinstance(exc, SinkError)
            delay = backoff(attempt, self.config.retry_max_backoff_secs,
                            first=_FIRST_RETRY_SECS, jitter=sink_error)
            if sink_error:
                log.warning(failed, sink=self.name, error=str(exc),
                            attempt=attempt, retry_in_secs=round(delay, 2), events=len(events))
            else:
                log.error(raised, sink=self.name, attempt=attempt, exc_info=exc)
            if not draining:
                await asyncio.sleep(delay)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            if self._stopping.is_set():
                return _FAILED

    # -- the spool ---------------------------------------------------------------

    async def _store_chunk(self, events: list[Event]) -> None:
        """Write one chunk directly while the spool is empty, else (or when that one
        attempt fails) append it to the spool."""
        spool = self.spool
        assert spool is not None
        self._append_job = None
        if spool.events == 0:
            async with spool.lock:
                # Checked again under the lock: the drainer may have been finishing.
                if spool.events == 0:
                    outcome, exc = await self._attempt(events)
                    if outcome != _FAILED:
                        return
                    if isinstance(exc, SinkError):
                        log.warning("sink write failed; spooling until it is back",
                                    sink=self.name, error=str(exc), events=len(events),
                                    file=spool.path)
                    else:
                        log.error("sink write raised unexpectedly; spooling", sink=self.name,
                                  events=len(events), file=spool.path, exc_info=exc)
        await self._append(spool, events)

    async def _append(self, spool: Spool, events: list[Event]) -> None:
        blob = spool.encode(events)
        try:
            await spool.reserve(len(blob))
            self._append_job = spool.submit(blob, len(events), reserved=True)
            await asyncio.wrap_future(self._append_job)
        except Exception as exc:
            # The disk failed us (full, read-only, corrupt): keep the events in memory
            # and retry the sink in place, as without a spool. Older spooled chunks may
            # then arrive after this one; a loss would be worse.
            metrics.ERRORS.labels(f"sink/{self.name}", "SpoolError").inc()
            log.error("spool append failed; writing to the sink in place", sink=self.name,
                      file=spool.path, events=len(events), exc_info=exc)
            self._append_job = None
            async with spool.lock:
                await self._write_chunk(events)
            return
        self._append_job = None
        spool.after_append()

    async def _open_spool(self) -> None:
        spool = self.spool
        assert spool is not None
        try:
            await spool.open()
        except Exception as exc:
            metrics.ERRORS.labels(f"sink/{self.name}", "SpoolError").inc()
            log.error("cannot open the spool; writes retry in place without it",
                      sink=self.name, file=spool.path, exc_info=exc)
            self.spool = None
            await spool_mod.release(spool)
            return
        if spool.events and spool.holders == 1:  # not a reload sharing it
            log.warning("spool holds events from an earlier run; draining them first",
                        sink=self.name, events=spool.events, spool_bytes=spool.bytes,
                        file=spool.path)
        self._drainer = asyncio.create_task(self._drain_spool(spool),
                                            name=f"sink/{self.name}/spool")

    async def _close_spool(self) -> None:
        drainer, self._drainer = self._drainer, None
        if drainer is not None:
            self._stopping.set()
            if self._drain_busy:
                await asyncio.wait({drainer}, timeout=_DRAIN_STOP_GRACE_SECS)
            if not drainer.done():
                # Idle, or a write that hangs: its chunk stays spooled and is sent
                # again at the next start (idempotent sinks store it once).
                drainer.cancel()
                await asyncio.wait({drainer})
        spool, self.spool = self.spool, None
        if spool is None:
            return
        if spool.events:
            log.warning("spooled events kept for the next start", sink=self.name,
                        events=spool.events, file=spool.path)
        await spool_mod.release(spool)

    async def _drain_spool(self, spool: Spool) -> None:
        """Write the spool's oldest chunks to the sink until it is empty; then sleep
        until the next append."""
        limit = self.config.batch_max_events
        failures = 0
        while not self._stopping.is_set():
            spool.appended.clear()
            try:
                while spool.events > 0 and not self._stopping.is_set():
                    async with spool.lock:
                        self._drain_busy = True
                        try:
                            seq_ids, events = await spool.peek(limit)
                            if not seq_ids:
                                break
                            outcomes = [await self._write_chunk(chunk, draining=True)
                                        for chunk in self._split(events)]
                            if _FAILED in outcomes:
                                return  # stopping: the rows stay for the next start
                            stored = sum(len(chunk) for chunk, outcome
                                         in zip(self._split(events), outcomes, strict=True)
                                         if outcome == _STORED)
                            await spool.remove(seq_ids, drained=stored)
                        finally:
                            self._drain_busy = False
                    if spool.events == 0:
                        log.info("spool drained; writing to the sink directly again",
                                 sink=self.name)
                failures = 0
            except Exception as exc:
                # The spool file itself failed (disk error): keep trying, never lose it.
                failures += 1
                metrics.ERRORS.labels(f"sink/{self.name}", "SpoolError").inc()
                delay = backoff(failures, self.config.retry_max_backoff_secs,
                                first=_FIRST_RETRY_SECS, jitter=False)
                log.error("spool drain failed; retrying", sink=self.name, file=spool.path,
                          retry_in_secs=round(delay, 2), exc_info=exc)
                await asyncio.sleep(delay)
                continue
            if self._stopping.is_set():
                return
            await spool.appended.wait()

    def mark_up(self, up: bool) -> None:
        """Set the sink's state as ``/readyz`` and ``socd_component_up`` show it: the
        runner after each write; the daemon after a health check passed at start."""
        if up != self.up:
            self.up = up
            metrics.COMPONENT_UP.labels("sink", self.name).set(1 if up else 0)


def _state_dir_of(dead_letter: DeadLetter) -> str:
    """The state_dir when the caller did not pass it (tests; the daemon always does):
    the parent of the dead-letter directory, its default place."""
    return os.path.dirname(os.path.abspath(dead_letter.directory))


_STORED, _REJECTED, _FAILED = "stored", "rejected", "failed"
# Sink retries wait 0.2 s × 2ⁿ after n failures (docs/architecture.md), up to the
# sink's retry_max_backoff_secs.
_FIRST_RETRY_SECS = 0.4
# (sink error, unexpected exception) log messages of a direct write and of the drainer.
_RETRY_MESSAGES = {
    False: ("sink write failed; retrying", "sink write raised unexpectedly; retrying"),
    True: ("sink write failed; retrying from the spool",
           "sink write raised unexpectedly; retrying from the spool"),
}
_DRAIN_STOP_GRACE_SECS = 5.0  # how long stop() lets a drain write under way finish


class Pipeline:
    """Decodes, classifies and fans batches out to the sink runners.

    With a :class:`~socd.app.journal.Journal`, :meth:`submit` returns only once the
    batch is on disk, so whatever a collector acknowledges after its ``emit``
    returned survives a crash; the batch leaves the journal when every sink has
    it (the same :class:`~socd.plugins.Ack` that releases its memory budget).
    :meth:`recover` processes what an earlier run left in the journal; the daemon
    awaits it before starting the collectors.
    """

    def __init__(self, decoders: Mapping[str, Decoder], processor: Processor,
                 runners: Sequence[SinkRunner], dead_letter: DeadLetter,
                 queue_max_batches: int = 64,
                 max_buffered_bytes: int = 16 * 1024 * 1024,
                 journal: Journal | None = None,
                 warn_alertless_after_secs: float = 60.0) -> None:
        self.decoders = dict(decoders)
        self.processor = processor
        self.runners = list(runners)
        self.dead_letter = dead_letter
        self.intake: asyncio.Queue[Batch | Processed | Control | None] = \
            asyncio.Queue(queue_max_batches)
        self.intake_events = 0
        self.events_processed = 0
        self._task: asyncio.Task[None] | None = None
        self._current: Batch | None = None
        self._abort = asyncio.Event()
        self.max_buffered_bytes = max_buffered_bytes
        self.buffered_bytes = 0
        self._freed = asyncio.Event()
        self.journal = journal
        self._recovered = journal is None
        # Counts each collector's alerts and the events no sink keeps; warns about a
        # source whose records never become alerts while no sink keeps events.
        self.alertless = AlertlessWatch(warn_alertless_after_secs)

    def start(self) -> None:
        for runner in self.runners:
            runner.start()
        collect_less_often()
        self._task = asyncio.create_task(self._decode_loop(), name="pipeline/decode")

    async def recover(self) -> int:
        """Open the journal and queue what an earlier run left in it, oldest first;
        returns the number of records. Call after :meth:`start`, before any collector
        submits (the daemon starts the collectors once this returns)."""
        journal = self.journal
        if journal is None or self._recovered:
            return 0
        await journal.open()
        self._recovered = True
        records_total = 0
        async for seq, records in journal.replay():
            if not records:
                journal.release(seq)
                continue
            # Not counted as received again: socd_journal_replayed_records_total says it.
            size = sum(len(r.data) for r in records)
            await self._wait_for_room(size)
            self.intake_events += len(records)
            await self.intake.put(Batch(records, self._budget(size, None, seq)))
            records_total += len(records)
        if records_total:
            log.info("journal replayed", records=records_total, directory=journal.directory)
        return records_total

    async def submit(self, records: list[RawRecord], ack: Ack | None = None) -> None:
        """Queue a batch from a collector; waits while the pipeline is full. With the
        journal, returns once the batch is on disk: the collector may then
        acknowledge its source."""
        if not records:
            if ack is not None:
                ack.done()
            return
        _count_received(records)
        size = sum(len(r.data) for r in records)
        await self._wait_for_room(size)
        seq: int | None = None
        if self.journal is not None:
            self._check_recovered()
            # The memory budget is held while the journal writes, so concurrent
            # submitters cannot overshoot it meanwhile.
            self.buffered_bytes += size
            try:
                seq = await self.journal.append(records)
            finally:
                self.buffered_bytes -= size
                self._freed.set()
        self.intake_events += len(records)
        await self.intake.put(Batch(records, self._budget(size, ack, seq)))

    async def submit_processed(self, events: list[Event], ack: Ack | None = None,
                               received: float | None = None) -> None:
        """Hand events that need no decoding or classification (a cluster worker's
        alerts) to the sinks; ``ack`` is called once every sink has them (stored,
        spooled or dead-lettered). ``received``: when their input was received (the
        latency metrics count from it; default now). Waits while the queue is full."""
        await self.intake.put(Processed(events, ack, time.time() if received is None
                                        else received))

    async def submit_durable(self, records: list[RawRecord], ack: Ack | None = None) -> None:
        """:meth:`submit` under the name collectors use to say that they acknowledge
        their source after it (file checkpoints, TCP reads)."""
        await self.submit(records, ack)

    @property
    def durable(self) -> bool:
        """Whether :meth:`submit` returns only once the batch is in the journal (on
        disk), so that returning may be acknowledged to the source."""
        return self.journal is not None

    async def _wait_for_room(self, size: int) -> None:
        # Always admit a batch when nothing is buffered, however big it is.
        while self.buffered_bytes and self.buffered_bytes + size > self.max_buffered_bytes:
            self._freed.clear()
            await self._freed.wait()

    def _check_recovered(self) -> None:
        if not self._recovered:
            raise RuntimeError("Pipeline.recover() must run before anything is submitted "
                               "when the journal is enabled")

    def _budget(self, size: int, ack: Ack | None, seq: int | None = None) -> Ack:
        """Account ``size`` bytes until every sink has stored the batch (or it is
        dead-lettered), then release them, the batch's journal entry ``seq`` and
        call the collector's ack."""
        self.buffered_bytes += size
        journal = self.journal if seq is not None else None

        def release() -> None:
            self.buffered_bytes -= size
            self._freed.set()
            if journal is not None:
                journal.release(seq)  # type: ignore[arg-type]
            if ack is not None:
                ack.pending = 1
                ack.done()

        return Ack(release)

    def try_submit(self, records: list[RawRecord], ack: Ack | None = None) -> bool:
        """Queue a batch only if there is room now.

        With the journal, the batch is appended to it but queued at once, before it
        is on disk: a caller that acknowledges its source uses
        :meth:`try_submit_durable` (the webhook does)."""
        return self.try_submit_durable(records, ack) is not None

    def try_submit_durable(self, records: list[RawRecord],
                           ack: Ack | None = None) -> asyncio.Future[None] | None:
        """Queue a batch only if there is room now: ``None`` when there is not (the
        caller answers 429), else a future that completes once the batch is on disk
        (at once without the journal; with a :class:`~socd.errors.JournalError` if
        the journal closes first). The batch is queued either way; acknowledge the
        source only after awaiting the future.

        While the journal cannot write (disk full, I/O error) there is no room: a
        batch taken then could not be acknowledged, and the client would send it
        again, so every retry would be processed once more and wait in memory."""
        loop = asyncio.get_running_loop()
        if not records:
            if ack is not None:
                ack.done()
            return _completed(loop)
        if self.intake.full():
            return None
        size = sum(len(r.data) for r in records)
        if self.buffered_bytes and self.buffered_bytes + size > self.max_buffered_bytes:
            return None
        seq: int | None = None
        durable: asyncio.Future[None] | None = None
        if self.journal is not None:
            self._check_recovered()
            if not self.journal.healthy:
                return None
            appended = self.journal.try_append(records)
            if appended is None:
                return None
            seq, durable = appended
        _count_received(records)
        self.intake_events += len(records)
        self.intake.put_nowait(Batch(records, self._budget(size, ack, seq)))
        return durable if durable is not None else _completed(loop)

    async def control(self, action: Callable[[], Any]) -> None:
        """Run ``action`` in the decode loop between two batches and wait for it."""
        item = Control(action)
        await self.intake.put(item)
        await item.done

    async def barrier(self) -> None:
        """Wait until everything submitted before this call has been stored."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def settle() -> None:
            if not done.done():
                done.set_result(None)
        ack = Ack(settle)
        await self.intake.put(Batch([], ack))
        await done

    async def replace(self, *, decoders: Mapping[str, Decoder] | None = None,
                      processor: Processor | None = None,
                      runners: Sequence[SinkRunner] | None = None) -> list[SinkRunner]:
        """Swap components atomically between batches; returns the retired runners
        (already told to stop; await their ``wait``)."""
        retired: list[SinkRunner] = []

        async def swap() -> None:
            if decoders is not None:
                self.decoders = dict(decoders)
            if processor is not None:
                self.processor = processor
            if runners is not None:
                keep = {id(r) for r in runners}
                retired.extend(r for r in self.runners if id(r) not in keep)
                for runner in runners:
                    if not runner.started:
                        runner.start()
                self.runners = list(runners)
                for runner in retired:
                    await runner.stop()

        await self.control(swap)
        return retired

    async def close(self, drain_timeout: float) -> int:
        """Finish intake, drain to the sinks within ``drain_timeout``; returns the number of
        events dead-lettered because the timeout passed (or :meth:`abort` was called)."""
        self.alertless.close()
        drain = asyncio.create_task(self._drain(), name="pipeline/drain")
        abort = asyncio.create_task(self._abort.wait(), name="pipeline/abort")
        done, _ = await asyncio.wait({drain, abort}, timeout=drain_timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
        abort.cancel()
        if drain in done:
            drain.result()
            await self._close_journal()
            return 0
        drain.cancel()
        lost = 0
        if self.journal is not None:
            # What the sinks did not store stays journaled for the next start.
            self.journal.freeze()
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.wait({self._task})
        if self.journal is None:
            lost += self._dead_letter_intake()
        else:
            kept = self.intake_events + sum(len(b.records) for b in
                                            ([self._current] if self._current else []))
            self._current = None
            if kept:
                log.warning("drain did not finish; queued records stay in the journal for "
                            "the next start", records=kept, directory=self.journal.directory)
        for runner in self.runners:
            lost += runner.abort()
        await self._close_journal()
        if lost:
            log.error("drain did not finish; undelivered events dead-lettered",
                      timeout_secs=drain_timeout, events=lost, file=self.dead_letter.path)
        else:
            log.warning("drain did not finish; what was not stored stays in the spools",
                        timeout_secs=drain_timeout)
        return lost

    def abort(self) -> None:
        """Stop waiting for the drain (a second SIGINT/SIGTERM)."""
        self._abort.set()

    async def _close_journal(self) -> None:
        if self.journal is not None and self._recovered:
            await self.journal.close()

    async def _drain(self) -> None:
        await self.intake.put(None)
        if self._task is not None:
            await asyncio.wait({self._task})
        for runner in self.runners:
            await runner.wait()

    def _dead_letter_intake(self) -> int:
        lost = 0
        current, self._current = self._current, None
        if current is not None:
            # Taken from the queue but not yet handed to every sink: dead-letter it
            # (a sink may have it too; a duplicate is better than a loss).
            for record in current.records:
                self.dead_letter.write(stage="intake", reason="shutdown_timeout",
                                       raw=record.data, collector=record.collector,
                                       source=record.source)
                lost += 1
        while not self.intake.empty():
            item = self.intake.get_nowait()
            if isinstance(item, Batch):
                for record in item.records:
                    self.dead_letter.write(stage="intake", reason="shutdown_timeout",
                                           raw=record.data, collector=record.collector,
                                           source=record.source)
                    lost += 1
        return lost

    @property
    def sinks_up(self) -> bool:
        return all(r.up for r in self.runners)

    def journal_status(self) -> dict[str, Any] | None:
        """The journal's depth and age (``/readyz``), None without a journal."""
        return self.journal.status() if self.journal is not None else None

    def update_gauges(self) -> None:
        if self.journal is not None:
            self.journal.update_gauges()
        metrics.QUEUE_DEPTH.labels("intake").set(self.intake_events)
        for runner in self.runners:
            metrics.QUEUE_DEPTH.labels(f"sink/{runner.name}").set(max(0, runner.queued_events))

    async def _decode_loop(self) -> None:
        while True:
            item = await self.intake.get()
            if item is None:
                break
            if isinstance(item, Control):
                try:
                    result = item.action()
                    if asyncio.iscoroutine(result):
                        await result
                except Exception as exc:  # the caller gets the error, the loop goes on
                    item.done.set_exception(exc)
                else:
                    item.done.set_result(None)
                continue
            if isinstance(item, Processed):
                await self._route(item.events, item.ack, item.received)
                continue
            self.intake_events -= len(item.records)
            self._current = item
            try:
                await self._handle(item)
            except Exception:
                # A bug in a decoder or the classifier must not stop the daemon:
                # the batch is dead-lettered with its raw bytes and we go on.
                log.exception("batch processing failed; dead-lettering it")
                metrics.ERRORS.labels("pipeline", "internal_error").inc()
                for record in item.records:
                    self.dead_letter.write(stage="classify", reason="internal_error",
                                           raw=record.data, collector=record.collector,
                                           source=record.source)
                if item.ack is not None:
                    item.ack.done()
            self._current = None
        for runner in self.runners:
            await runner.stop()

    async def _handle(self, batch: Batch) -> None:
        events: list[Event] = []
        received = time.time()
        if batch.records:
            collector = batch.records[0].collector
        dead_letter = self.dead_letter
        decoded: dict[str, int] = {}
        for record in batch.records:
            received = min(received, record.received)
            decoder = self.decoders.get(record.decoder)
            if decoder is None:
                dead_letter.write(stage="decode", reason="unknown_decoder", raw=record.data,
                                  collector=record.collector, source=record.source,
                                  detail=record.decoder)
                continue
            result = decoder.decode(record)
            for failure in result.failures:
                dead_letter.write(stage="decode", reason=failure.reason, raw=failure.raw,
                                  collector=record.collector, source=record.source,
                                  detail=failure.detail)
            if result.events:
                decoded[decoder.name] = decoded.get(decoder.name, 0) + len(result.events)
                events.extend(result.events)
        # Counted once per decoder and batch, not per record: a labelled counter costs
        # about 1 us, and with one record per MQTT message that was once per event.
        for name, count in decoded.items():
            metrics.EVENTS_DECODED.labels(name).inc(count)
        if events:
            _observe_lag(collector, received, events)
            events = self.processor.process(events)
            runners = self.runners  # none: every event is dead-lettered below
            self.alertless.observe(collector, batch.records[0].decoder, events, bool(runners)
                                   and all(r.selects_alerts_only for r in runners))
        await self._route(events, batch.ack, received)

    async def _route(self, events: list[Event], ack: Ack | None, received: float) -> None:
        """Put one batch of events into every sink's queue."""
        self.events_processed += len(events)
        runners = self.runners
        if ack is not None:
            ack.pending = len(runners)
            if not runners:
                ack.done()
        if not runners and events:
            for event in events:
                self.dead_letter.write(stage="route", reason="no_sink", event=event)
            return
        out = EventBatch(events, ack, received)
        for runner in runners:
            await runner.put(out)
        # Let collectors and the HTTP server run between CPU-bound batches.
        await asyncio.sleep(0)


# The cyclic garbage collector's oldest generation: at most one full collection per
# this many collections of the middle one (CPython's default is 10).
FULL_COLLECTION_EVERY = 100


def collect_less_often() -> None:
    """Make full collections of the cyclic garbage collector rarer in the daemon.

    Every full collection walks every live container, and the daemon's live set is
    mostly events in flight (up to ``pipeline.max_buffered_bytes``: 80,000 in the MQTT
    -> Elasticsearch benchmark). CPython starts one whenever the objects that outlived
    two young collections grew by a quarter and ten middle collections passed: 13 of
    about 70 ms in that benchmark's 200,000 events, a sixth of socd's CPU. With a
    full collection at most every 100 middle ones there were 3; young and middle
    collections are unchanged, so short-lived reference cycles go as soon as before.
    """
    young, middle, full = gc.get_threshold()
    if full < FULL_COLLECTION_EVERY:
        gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)


def _completed(loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
    future: asyncio.Future[None] = loop.create_future()
    future.set_result(None)
    return future


def _count_received(records: list[RawRecord]) -> None:
    collector = records[0].collector
    metrics.EVENTS_RECEIVED.labels(collector).inc(len(records))
    metrics.COLLECTOR_LAST_RECEIVED.labels(collector).set(records[-1].received)


def _observe_lag(collector: str, received: float, events: list[Event]) -> None:
    """Observe receipt time minus the first event's own time, once per batch (one
    parse a batch keeps it off the hot path)."""
    parsed = iso_or_none(events[0].get("@timestamp"), naive=None)
    if parsed is None:
        return
    metrics.COLLECTOR_LAG.labels(collector).observe(max(0.0, received - parsed.timestamp()))
