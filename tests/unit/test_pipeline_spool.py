"""SinkRunner with a spool: a failing sink's chunks go to disk, are acknowledged, and
drain in order; direct writes resume only once the spool is empty."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from socd.app import deadletter
from socd.app.deadletter import DeadLetter
from socd.app.pipeline import EventBatch, Pipeline, SinkRunner
from socd.app.spool import Spool
from socd.config import ClassificationConfig, SinkConfig
from socd.decoders.json import JsonDecoder
from socd.engine.classify import Classifier
from socd.errors import SinkError
from socd.event import Event
from socd.plugins import Ack, PluginContext

from .conftest import sample_value
from .test_pipeline import records

pytestmark = pytest.mark.timeout(60)

SAFETY = 10.0  # seconds; only a safety net, never what a test measures


class FlakySink:
    """In-memory sink. ``down``: every write raises a retryable error. ``gate``: writes
    wait for it. ``reject``: the next write raises a non-retryable error. Records every
    write attempt and the most writes ever running at once."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.down = False
        self.reject = 0
        self.errors: list[Exception] = []
        self.gate: asyncio.Event | None = None
        self.gate_from = 0  # attempts before this one pass the gate
        self.written: list[Event] = []
        self.attempts: list[list[str]] = []
        self.running = 0
        self.max_running = 0
        self.entered = asyncio.Event()

    async def start(self) -> None:
        pass

    async def healthcheck(self) -> None:
        pass

    async def write(self, events: Sequence[Event]) -> None:
        index = len(self.attempts)
        self.attempts.append([e["message"] for e in events])
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        self.entered.set()
        try:
            if self.gate is not None and index >= self.gate_from:
                await self.gate.wait()
            if self.reject:
                self.reject -= 1
                raise SinkError("mapping conflict", retryable=False)
            if self.errors:
                raise self.errors.pop(0)
            if self.down:
                raise SinkError("connection refused")
            self.written.extend(events)
        finally:
            self.running -= 1

    async def close(self) -> None:
        pass

    def messages(self) -> list[str]:
        return [e["message"] for e in self.written]


def spool_config(**overrides: Any) -> SinkConfig:
    options: dict[str, Any] = {"type": "fake", "select": "all", "batch_max_events": 1,
                               "flush_interval_secs": 0.01, "queue_max_batches": 1,
                               "retry_max_backoff_secs": 0.001, "spool": {"enabled": True}}
    options.update(overrides)
    return SinkConfig(**options)


def events(start: int, count: int) -> list[Event]:
    return [{"message": str(i), "event": {"kind": "alert", "hash": f"h{i}"},
             "socd": {"collector": "test"}} for i in range(start, start + count)]


def batch(start: int, count: int, acked: list[int] | None = None) -> EventBatch:
    ack = None
    if acked is not None:
        ack = Ack(lambda: acked.append(start))
        ack.pending = 1
    return EventBatch(events(start, count), ack, 0.0)


async def until(predicate: Callable[[], bool], what: str) -> None:
    """Poll (a safety net of SAFETY seconds, not a measurement)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SAFETY
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.002)


async def spin(times: int = 200) -> None:
    for _ in range(times):
        await asyncio.sleep(0)


async def stop(runner: SinkRunner) -> None:
    await runner.stop()
    await asyncio.wait_for(runner.wait(), SAFETY)


def dead_letters(dl: DeadLetter) -> list[dict[str, Any]]:
    import os

    return deadletter.read(dl.path) if os.path.exists(dl.path) else []


async def spooled(path: Path, name: str = "reader") -> list[str]:
    """The messages a spool file holds, oldest first (opened separately)."""
    spool = Spool(str(path), name=name, max_bytes=1 << 30)
    try:
        await spool.open()
        _, held = await spool.peek(1 << 30)
    finally:
        await spool.close()
    return [e["message"] for e in held]


async def test_failing_sink_spools_acks_and_drains_in_order(dead_letter: DeadLetter, uid: str,
                                                            tmp_path: Path) -> None:
    sink = FlakySink(uid)
    sink.down = True
    runner = SinkRunner(uid, sink, spool_config(), dead_letter, state_dir=str(tmp_path))
    assert runner.spool_path == str(tmp_path / "spool" / f"{uid}.db")
    runner.start()
    acked: list[int] = []
    for i in range(10):
        await runner.put(batch(i, 1, acked))
    # Every batch is acknowledged while the sink is still down: it is on disk.
    await until(lambda: len(acked) == 10, "acks of spooled batches")
    assert acked == list(range(10))
    assert sink.written == []
    assert runner.spool is not None
    assert runner.spool.events == 10
    assert not runner.up
    assert sample_value("socd_component_up", kind="sink", name=uid) == 0
    assert sample_value("socd_spool_events", sink=uid) == 10
    assert sample_value("socd_spool_written_total", sink=uid) == 10
    assert sample_value("socd_spool_bytes", sink=uid) > 0

    sink.down = False
    await until(lambda: runner.spool is not None and runner.spool.events == 0, "spool drained")
    assert sink.messages() == [str(i) for i in range(10)]
    assert runner.up
    assert sample_value("socd_spool_drained_total", sink=uid) == 10
    assert sample_value("socd_spool_events", sink=uid) == 0
    assert sample_value("socd_spool_bytes", sink=uid) == 0

    # Back on the fast path: one attempt each, nothing more goes to disk.
    attempts = len(sink.attempts)
    for i in range(10, 13):
        await runner.put(batch(i, 1, acked))
    await until(lambda: len(acked) == 13, "acks of direct writes")
    assert sink.messages() == [str(i) for i in range(13)]
    assert len(sink.attempts) == attempts + 3
    assert sample_value("socd_spool_written_total", sink=uid) == 10
    assert sample_value("socd_events_sent_total", sink=uid) == 13
    assert sink.max_running == 1
    await stop(runner)
    assert dead_letters(dead_letter) == []


@pytest.mark.parametrize("error", [SinkError("503"), RuntimeError("bug in the sink")])
async def test_no_direct_write_while_the_spool_holds_older_chunks(
        dead_letter: DeadLetter, uid: str, tmp_path: Path, error: Exception) -> None:
    sink = FlakySink(uid)
    sink.errors = [error]  # the first (direct) write fails ...
    sink.gate = asyncio.Event()
    sink.gate_from = 1  # ... and the drainer's first write is held inside the sink
    runner = SinkRunner(uid, sink, spool_config(), dead_letter, state_dir=str(tmp_path))
    runner.start()
    acked: list[int] = []
    await runner.put(batch(0, 1, acked))
    await until(lambda: acked == [0], "ack of the spooled chunk")
    await until(lambda: len(sink.attempts) == 2, "the drainer's write")
    assert sink.attempts == [["0"], ["0"]]
    # The next chunks must be spooled behind "0", not written past it.
    await runner.put(batch(1, 1, acked))
    await runner.put(batch(2, 1, acked))
    await until(lambda: acked == [0, 1, 2], "acks of chunks spooled behind the first")
    await spin()
    assert len(sink.attempts) == 2, "a chunk was written while older ones were spooled"
    assert runner.spool is not None
    assert runner.spool.events == 3
    assert sample_value("socd_errors_total", component=f"sink/{uid}",
                        error_type=type(error).__name__) == 1

    sink.gate.set()
    await until(lambda: runner.spool is not None and runner.spool.events == 0, "spool drained")
    await runner.put(batch(3, 1, acked))
    await stop(runner)
    assert sink.messages() == ["0", "1", "2", "3"]
    assert sink.attempts == [["0"], ["0"], ["1"], ["2"], ["3"]]
    assert sink.max_running == 1
    assert sample_value("socd_spool_written_total", sink=uid) == 3
    assert sample_value("socd_spool_drained_total", sink=uid) == 3


async def test_non_retryable_error_dead_letters_on_both_paths(dead_letter: DeadLetter,
                                                              uid: str, tmp_path: Path) -> None:
    sink = FlakySink(uid)
    sink.reject = 1
    runner = SinkRunner(uid, sink, spool_config(batch_max_events=10), dead_letter,
                        state_dir=str(tmp_path))
    runner.start()
    acked: list[int] = []
    # Fast path: rejected -> dead-lettered as without a spool, nothing spooled.
    await runner.put(batch(0, 2, acked))
    await until(lambda: acked == [0], "ack of the rejected batch")
    assert runner.spool is not None
    assert runner.spool.events == 0
    assert sample_value("socd_spool_written_total", sink=uid) == 0

    # Drain path: spooled while down, then rejected -> dead-lettered and removed.
    sink.down = True
    await runner.put(batch(2, 2, acked))
    await until(lambda: acked == [0, 2], "ack of the spooled batch")
    sink.reject = 1
    await until(lambda: runner.spool is not None and runner.spool.events == 0,
                "rejected chunk removed from the spool")
    sink.down = False
    await runner.put(batch(4, 1, acked))
    await stop(runner)
    assert sink.messages() == ["4"]
    entries = dead_letters(dead_letter)
    assert [e["event"]["message"] for e in entries] == ["0", "1", "2", "3"]
    assert {(e["stage"], e["reason"]) for e in entries} == {(f"sink/{uid}", "rejected")}
    assert sample_value("socd_spool_drained_total", sink=uid) == 0


async def test_stop_leaves_the_spool_on_disk_and_a_restart_drains_it_first(
        dead_letter: DeadLetter, uid: str, tmp_path: Path) -> None:
    sink = FlakySink(uid)
    sink.down = True  # and it stays down: stop() must not wait for it
    runner = SinkRunner(uid, sink, spool_config(batch_max_events=2), dead_letter,
                        state_dir=str(tmp_path))
    runner.start()
    for i in range(5):
        await runner.put(batch(i, 1))
    await stop(runner)
    assert runner.spool is None  # released
    path = tmp_path / "spool" / f"{uid}.db"
    assert await spooled(path) == ["0", "1", "2", "3", "4"]
    assert dead_letters(dead_letter) == []

    # A new runner (a restart) starts in spooling mode: new batches queue behind the old.
    sink2 = FlakySink(uid)
    sink2.gate = asyncio.Event()
    runner2 = SinkRunner(uid, sink2, spool_config(batch_max_events=2), dead_letter,
                         state_dir=str(tmp_path))
    runner2.start()
    await asyncio.wait_for(sink2.entered.wait(), SAFETY)
    assert sink2.attempts == [["0", "1"]]  # the drainer began at once, oldest first
    assert sample_value("socd_spool_events", sink=uid) == 5
    await runner2.put(batch(5, 1))
    await runner2.put(batch(6, 1))
    sink2.gate.set()
    await until(lambda: runner2.spool is not None and runner2.spool.events == 0
                and len(sink2.written) == 7, "old and new events stored")
    await stop(runner2)
    assert sink2.messages() == [str(i) for i in range(7)]
    assert await spooled(path) == []


async def test_abort_spools_what_is_not_written_and_keeps_what_is(dead_letter: DeadLetter,
                                                                  uid: str,
                                                                  tmp_path: Path) -> None:
    sink = FlakySink(uid)
    sink.down = True
    runner = SinkRunner(uid, sink, spool_config(queue_max_batches=8), dead_letter,
                        state_dir=str(tmp_path))
    runner.start()
    acked: list[int] = []
    await runner.put(batch(0, 1, acked))
    await runner.put(batch(1, 1, acked))
    await until(lambda: acked == [0, 1], "spooled")
    # The sink now hangs (a request that never returns); more batches queue up.
    sink.down = False
    sink.gate = asyncio.Event()
    sink.entered.clear()
    await asyncio.wait_for(sink.entered.wait(), SAFETY)  # the drainer is stuck in it
    for i in range(2, 6):
        await runner.put(batch(i, 1, acked))
    await spin()

    assert runner.abort() == 0
    await asyncio.wait_for(runner.wait(), SAFETY)
    assert sorted(acked) == list(range(6))
    assert dead_letters(dead_letter) == []
    assert await spooled(tmp_path / "spool" / f"{uid}.db") == [str(i) for i in range(6)]
    assert sink.written == []


async def test_abort_with_direct_write_in_flight_spools_it(dead_letter: DeadLetter, uid: str,
                                                           tmp_path: Path) -> None:
    sink = FlakySink(uid)
    sink.gate = asyncio.Event()  # the first direct write never returns
    runner = SinkRunner(uid, sink, spool_config(batch_max_events=2, queue_max_batches=4,
                                                flush_interval_secs=300),
                        dead_letter, state_dir=str(tmp_path))
    runner.start()
    acked: list[int] = []
    await runner.put(batch(0, 3, acked))  # chunks [0, 1] (in the sink) and [2]
    await asyncio.wait_for(sink.entered.wait(), SAFETY)
    await runner.put(batch(3, 1, acked))
    assert runner.abort() == 0
    await asyncio.wait_for(runner.wait(), SAFETY)
    assert sorted(acked) == [0, 3]
    assert await spooled(tmp_path / "spool" / f"{uid}.db") == ["0", "1", "2", "3"]
    assert dead_letters(dead_letter) == []


async def test_abort_without_an_open_spool_dead_letters(dead_letter: DeadLetter, uid: str,
                                                        tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    sink = FlakySink(uid)
    sink.gate = asyncio.Event()
    runner = SinkRunner(uid, sink, spool_config(spool={"enabled": True,
                                                       "path": str(blocker / "x.db")}),
                        dead_letter, state_dir=str(tmp_path))
    runner.start()
    await runner.put(batch(0, 1))
    await asyncio.wait_for(sink.entered.wait(), SAFETY)
    assert runner.spool is None  # could not open: runs as without a spool
    assert sample_value("socd_errors_total", component=f"sink/{uid}",
                        error_type="SpoolError") == 1
    assert runner.abort() == 1
    await asyncio.wait_for(runner.wait(), SAFETY)
    assert [e["reason"] for e in dead_letters(dead_letter)] == ["shutdown_timeout"]


async def test_full_spool_holds_the_runner_back_until_it_drains(dead_letter: DeadLetter,
                                                               uid: str,
                                                               tmp_path: Path) -> None:
    big = "x" * (400 * 1024)

    def fat(i: int) -> EventBatch:
        return EventBatch([{"message": str(i), "pad": big, "event": {"kind": "alert"},
                            "socd": {"collector": "t"}}], None, 0.0)

    sink = FlakySink(uid)
    sink.down = True
    runner = SinkRunner(uid, sink, spool_config(spool={"enabled": True,
                                                       "max_bytes": 1024 * 1024}),
                        dead_letter, state_dir=str(tmp_path))
    runner.start()
    put = 0

    async def produce() -> None:
        nonlocal put
        for i in range(8):
            await runner.put(fat(i))
            put += 1

    producer = asyncio.create_task(produce())
    await until(lambda: runner.spool is not None and runner.spool.rows == 2, "spool full")
    await spin()
    assert not producer.done()
    assert runner.spool is not None
    assert runner.spool.bytes <= 1024 * 1024
    held = put
    await spin()
    assert put == held  # the producer is held back, nothing dropped
    sink.down = False
    await asyncio.wait_for(producer, SAFETY)
    await until(lambda: len(sink.written) == 8, "everything stored")
    await stop(runner)
    assert sink.messages() == [str(i) for i in range(8)]
    assert dead_letters(dead_letter) == []


async def test_pipeline_close_with_a_down_sink_does_not_wait_for_it(
        dead_letter: DeadLetter, uid: str, tmp_path: Path) -> None:
    sink = FlakySink(uid)
    sink.down = True
    decoder = JsonDecoder(JsonDecoder.Config(type="json"),
                          PluginContext(name="json", dead_letter=dead_letter))
    runner = SinkRunner(uid, sink, spool_config(batch_max_events=100, queue_max_batches=4),
                        dead_letter, state_dir=str(tmp_path))
    pipeline = Pipeline({"json": decoder}, Classifier(ClassificationConfig()), [runner],
                        dead_letter, 4)
    pipeline.start()
    acked = asyncio.Event()
    await pipeline.submit(records(uid, 0, 20), Ack(acked.set))
    await asyncio.wait_for(acked.wait(), SAFETY)  # acknowledged while the sink is down
    await pipeline.submit(records(uid, 20, 5))
    # A drain timeout of an hour: close() returns as soon as everything is on disk.
    assert await asyncio.wait_for(pipeline.close(3600), SAFETY) == 0
    assert sink.written == []
    assert await spooled(tmp_path / "spool" / f"{uid}.db") == [str(i) for i in range(25)]
    assert dead_letters(dead_letter) == []


async def test_default_spool_path_is_below_the_state_dir(dead_letter: DeadLetter,
                                                         uid: str) -> None:
    # Without state_dir: the parent of the dead-letter directory (its default place).
    runner = SinkRunner(uid, FlakySink(uid), spool_config(), dead_letter)
    state_dir = Path(dead_letter.directory).parent
    assert runner.spool_path == str(state_dir / "spool" / f"{uid}.db")
    relative = SinkRunner(uid, FlakySink(uid),
                          spool_config(spool={"enabled": True, "path": "q/es.db"}),
                          dead_letter, state_dir="/var/lib/socd")
    assert relative.spool_path == "/var/lib/socd/q/es.db"
    disabled = SinkRunner(uid, FlakySink(uid), spool_config(spool={"enabled": False}),
                          dead_letter)
    assert disabled.spool_path is None


async def test_reload_hands_the_spool_to_the_new_runner(dead_letter: DeadLetter, uid: str,
                                                        tmp_path: Path) -> None:
    # A reload starts the new runner of a sink before the old one has stopped: both
    # share one Spool object (counts, lock), and the new runner drains what the old
    # one spooled, in order, once the old one is gone.
    old_sink, new_sink = FlakySink(uid), FlakySink(uid)
    old_sink.down = True
    old = SinkRunner(uid, old_sink, spool_config(), dead_letter, state_dir=str(tmp_path))
    old.start()
    acked: list[int] = []
    for i in range(5):
        await old.put(batch(i, 1, acked))
    await until(lambda: len(acked) == 5, "spooled by the old runner")

    new = SinkRunner(uid, new_sink, spool_config(), dead_letter, state_dir=str(tmp_path))
    new.start()
    assert new.spool is old.spool
    await new.put(batch(5, 1, acked))  # the spool is not empty: queued behind 0..4
    await until(lambda: len(acked) == 6, "spooled by the new runner")
    await stop(old)
    await until(lambda: len(new_sink.written) == 6 and new.spool is not None
                and new.spool.events == 0, "everything stored by the new sink")
    assert new_sink.messages() == [str(i) for i in range(6)]
    assert new.spool is not None
    assert new.spool.events == 0
    assert not new.spool.closed
    spool = new.spool
    await stop(new)
    assert spool.closed
    assert sample_value("socd_spool_drained_total", sink=uid) == 6
    assert dead_letters(dead_letter) == []


async def test_stop_lets_a_drain_write_under_way_finish(dead_letter: DeadLetter, uid: str,
                                                        tmp_path: Path) -> None:
    # A chunk the sink stored while stopping is removed too: not sent again at the
    # next start.
    sink = FlakySink(uid)
    sink.errors = [SinkError("503")]
    sink.gate = asyncio.Event()
    sink.gate_from = 1
    runner = SinkRunner(uid, sink, spool_config(), dead_letter, state_dir=str(tmp_path))
    runner.start()
    acked: list[int] = []
    await runner.put(batch(0, 1, acked))
    await until(lambda: acked == [0] and len(sink.attempts) == 2, "the drainer's write")
    stopper = asyncio.create_task(stop(runner))
    await spin()
    assert not stopper.done()
    sink.gate.set()
    await asyncio.wait_for(stopper, SAFETY)
    assert sink.messages() == ["0"]
    assert await spooled(tmp_path / "spool" / f"{uid}.db") == []
