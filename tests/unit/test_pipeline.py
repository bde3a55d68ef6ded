"""The pipeline with in-memory fake sinks: back-pressure, drain, dead letters, retries."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from typing import Any

import orjson
import pytest

from socd.app import deadletter
from socd.app.deadletter import DeadLetter
from socd.app.pipeline import Pipeline, SinkRunner
from socd.config import ClassificationConfig, SinkConfig
from socd.decoders.json import JsonDecoder
from socd.engine.classify import Classifier
from socd.errors import SinkError
from socd.event import Event
from socd.plugins import Ack, PluginContext, RawRecord, Sink

from .conftest import sample_value

pytestmark = pytest.mark.timeout(60)

SAFETY = 10.0  # seconds; only a safety net, never what a test measures


class FakeSink:
    """Stores events in memory; ``gate`` makes writes block; ``errors`` are raised in turn."""

    def __init__(self, name: str, *, gate: asyncio.Event | None = None,
                 errors: Sequence[BaseException] = ()) -> None:
        self.name = name
        self.gate = gate
        self.errors = list(errors)
        self.written: list[Event] = []
        self.writes = 0
        self.entered = asyncio.Event()

    async def start(self) -> None:
        pass

    async def healthcheck(self) -> None:
        pass

    async def write(self, events: Sequence[Event]) -> None:
        self.writes += 1
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.errors:
            raise self.errors.pop(0)
        self.written.extend(events)

    async def close(self) -> None:
        pass

    def messages(self) -> list[str]:
        return [e["message"] for e in self.written]


def sink_config(**overrides: Any) -> SinkConfig:
    options: dict[str, Any] = {"type": "fake", "select": "all", "batch_max_events": 1,
                               "flush_interval_secs": 0.01, "queue_max_batches": 1,
                               "retry_max_backoff_secs": 0.001}
    options.update(overrides)
    return SinkConfig(**options)


def make_pipeline(sinks: Sequence[FakeSink], dl: DeadLetter, *, intake_max_batches: int = 2,
                  processor: Any = None, **sink_options: Any) -> Pipeline:
    decoder = JsonDecoder(JsonDecoder.Config(type="json"),
                          PluginContext(name="json", dead_letter=dl))
    runners = [SinkRunner(s.name, s, sink_config(**sink_options), dl) for s in sinks]
    return Pipeline({"json": decoder}, processor or Classifier(ClassificationConfig()), runners,
                    dl, intake_max_batches)


def records(collector: str, start: int, count: int, kind: str = "event") -> list[RawRecord]:
    return [RawRecord(orjson.dumps({"message": str(i), "event": {"kind": kind}}), "json",
                      collector, "test") for i in range(start, start + count)]


async def spin(times: int = 200) -> None:
    """Let every runnable task run until nothing changes (no wall-clock waiting)."""
    for _ in range(times):
        await asyncio.sleep(0)


def dead_letters(dl: DeadLetter) -> list[dict[str, Any]]:
    import os

    return deadletter.read(dl.path) if os.path.exists(dl.path) else []


def test_fake_sink_implements_the_protocol() -> None:
    assert isinstance(FakeSink("x"), Sink)


async def test_back_pressure_blocks_producer_and_resumes(dead_letter: DeadLetter,
                                                         uid: str) -> None:
    gate = asyncio.Event()
    sink = FakeSink(uid, gate=gate)
    pipeline = make_pipeline([sink], dead_letter, intake_max_batches=2)
    runner = pipeline.runners[0]
    pipeline.start()
    total = 30
    submitted = 0

    async def produce() -> None:
        nonlocal submitted
        for i in range(total):
            await pipeline.submit(records(uid, i, 1))
            submitted += 1

    producer = asyncio.create_task(produce())
    await asyncio.wait_for(sink.entered.wait(), SAFETY)
    await spin()
    blocked_at = submitted
    # sink (1) + sink queue (1) + decode loop (1) + intake queue (2): the producer waits.
    assert not producer.done()
    assert blocked_at <= 5
    assert pipeline.intake.full()
    assert pipeline.intake.qsize() <= 2
    assert runner.queue.qsize() <= 1
    pipeline.update_gauges()
    assert sample_value("socd_queue_depth", stage="intake") <= 3
    assert sample_value("socd_queue_depth", stage=f"sink/{uid}") <= 3
    await spin()
    assert submitted == blocked_at, "producer made progress while the sink was blocked"
    assert sink.written == []

    gate.set()
    await asyncio.wait_for(producer, SAFETY)
    assert await pipeline.close(SAFETY) == 0
    assert sink.messages() == [str(i) for i in range(total)]
    assert dead_letters(dead_letter) == []
    assert sample_value("socd_events_received_total", collector=uid) == total
    assert sample_value("socd_events_sent_total", sink=uid) == total


async def test_drain_on_close_delivers_everything(dead_letter: DeadLetter, uid: str) -> None:
    a, b = FakeSink(uid + "a"), FakeSink(uid + "b")
    # A long flush interval: the drain must not wait for it.
    pipeline = make_pipeline([a, b], dead_letter, intake_max_batches=64,
                             batch_max_events=1000, flush_interval_secs=300,
                             queue_max_batches=64)
    pipeline.start()
    for i in range(0, 50, 10):
        await pipeline.submit(records(uid, i, 10))
    lost = await asyncio.wait_for(pipeline.close(drain_timeout=SAFETY * 3), SAFETY)
    assert lost == 0
    expected = [str(i) for i in range(50)]
    assert a.messages() == expected
    assert b.messages() == expected
    assert pipeline.events_processed == 50
    assert dead_letters(dead_letter) == []
    assert sample_value("socd_processing_latency_seconds_count", sink=uid + "a") >= 1


async def test_close_timeout_dead_letters_undelivered(dead_letter: DeadLetter, uid: str) -> None:
    sink = FakeSink(uid, gate=asyncio.Event())  # never released
    pipeline = make_pipeline([sink], dead_letter, intake_max_batches=4, queue_max_batches=4)
    pipeline.start()
    total = 8
    for i in range(total):
        await pipeline.submit(records(uid, i, 1))
    await asyncio.wait_for(sink.entered.wait(), SAFETY)
    before_sink = sample_value("socd_events_dropped_total", stage=f"sink/{uid}",
                               reason="shutdown_timeout")
    before_intake = sample_value("socd_events_dropped_total", stage="intake",
                                 reason="shutdown_timeout")

    lost = await pipeline.close(drain_timeout=0.05)
    await asyncio.wait_for(pipeline.runners[0].wait(), SAFETY)

    assert sink.written == []
    assert lost == total
    entries = dead_letters(dead_letter)
    assert len(entries) == total
    assert {e["reason"] for e in entries} == {"shutdown_timeout"}
    assert {e["stage"] for e in entries} <= {"intake", f"sink/{uid}"}
    recovered = sorted(
        int(orjson.loads(e["raw"])["message"]) if "raw" in e else int(e["event"]["message"])
        for e in entries)
    assert recovered == list(range(total))
    dropped = (sample_value("socd_events_dropped_total", stage=f"sink/{uid}",
                            reason="shutdown_timeout") - before_sink
               + sample_value("socd_events_dropped_total", stage="intake",
                              reason="shutdown_timeout") - before_intake)
    assert dropped == total
    assert sample_value("socd_events_dropped_total", stage=f"sink/{uid}",
                        reason="shutdown_timeout") > before_sink


async def test_abort_skips_the_drain_wait(dead_letter: DeadLetter, uid: str) -> None:
    sink = FakeSink(uid, gate=asyncio.Event())
    pipeline = make_pipeline([sink], dead_letter)
    pipeline.start()
    await pipeline.submit(records(uid, 0, 1))
    await asyncio.wait_for(sink.entered.wait(), SAFETY)
    pipeline.abort()
    lost = await asyncio.wait_for(pipeline.close(drain_timeout=3600), SAFETY)
    assert lost == 1


async def test_non_retryable_error_dead_letters_batch(dead_letter: DeadLetter,
                                                      uid: str) -> None:
    sink = FakeSink(uid, errors=[SinkError("mapping conflict", retryable=False)])
    pipeline = make_pipeline([sink], dead_letter, batch_max_events=100)
    pipeline.start()
    acked = asyncio.Event()
    await pipeline.submit(records(uid, 0, 3), Ack(acked.set))
    await asyncio.wait_for(acked.wait(), SAFETY)
    assert sink.writes == 1
    assert sink.written == []
    entries = dead_letters(dead_letter)
    assert [e["event"]["message"] for e in entries] == ["0", "1", "2"]
    assert {(e["stage"], e["reason"]) for e in entries} == {(f"sink/{uid}", "rejected")}
    assert all("mapping conflict" in e["detail"] for e in entries)
    assert sample_value("socd_events_dropped_total", stage=f"sink/{uid}", reason="rejected") == 3
    assert sample_value("socd_errors_total", component=f"sink/{uid}",
                        error_type="SinkError") == 1
    # The pipeline goes on with the next batch.
    await pipeline.submit(records(uid, 3, 1))
    assert await pipeline.close(SAFETY) == 0
    assert sink.messages() == ["3"]


@pytest.mark.parametrize("error", [SinkError("503", retryable=True), RuntimeError("bug")])
async def test_retryable_error_retries_then_succeeds(dead_letter: DeadLetter, uid: str,
                                                     error: Exception) -> None:
    sink = FakeSink(uid, errors=[error, error])
    pipeline = make_pipeline([sink], dead_letter, batch_max_events=100)
    pipeline.start()
    await pipeline.submit(records(uid, 0, 4))
    assert await pipeline.close(SAFETY) == 0
    assert sink.writes == 3
    assert sink.messages() == ["0", "1", "2", "3"]
    assert dead_letters(dead_letter) == []
    assert sample_value("socd_errors_total", component=f"sink/{uid}",
                        error_type=type(error).__name__) == 2
    assert sample_value("socd_events_sent_total", sink=uid) == 4
    assert sample_value("socd_component_up", kind="sink", name=uid) == 1
    assert pipeline.sinks_up


async def test_decode_failures_are_dead_lettered(dead_letter: DeadLetter, uid: str) -> None:
    sink = FakeSink(uid)
    pipeline = make_pipeline([sink], dead_letter, batch_max_events=100)
    pipeline.start()
    bad = [RawRecord(b"{oops", "json", uid), RawRecord(b"\xff\xfe", "json", uid),
           RawRecord(b'{"message": "x"}', "nope", uid),
           RawRecord(b'{"source": {"ip": "1.2.3"}}', "json", uid)]
    await pipeline.submit([*bad, *records(uid, 0, 1)])
    assert await pipeline.close(SAFETY) == 0
    assert sink.messages() == ["0"]
    reasons = Counter((e["stage"], e["reason"]) for e in dead_letters(dead_letter))
    assert reasons == {("decode", "invalid_json"): 1, ("decode", "invalid_utf8"): 1,
                       ("decode", "unknown_decoder"): 1, ("decode", "invalid_field"): 1}
    raws = {e["raw"] for e in dead_letters(dead_letter)}
    assert {b"{oops", b"\xff\xfe"} <= raws


async def test_alerts_only_sink_and_ack_after_every_sink(dead_letter: DeadLetter,
                                                         uid: str) -> None:
    alerts = FakeSink(uid + "alerts")
    everything = FakeSink(uid + "all")
    decoder = JsonDecoder(JsonDecoder.Config(type="json"),
                          PluginContext(name="json", dead_letter=dead_letter))
    runners = [SinkRunner(alerts.name, alerts, sink_config(select="alerts"), dead_letter),
               SinkRunner(everything.name, everything, sink_config(select="all"), dead_letter)]
    pipeline = Pipeline({"json": decoder}, Classifier(ClassificationConfig()), runners,
                        dead_letter, 4)
    pipeline.start()
    acked = asyncio.Event()
    batch = [*records(uid, 0, 2, kind="event"), *records(uid, 2, 1, kind="alert")]
    await pipeline.submit(batch, Ack(acked.set))
    await asyncio.wait_for(acked.wait(), SAFETY)
    assert alerts.messages() == ["2"]
    assert everything.messages() == ["0", "1", "2"]
    await pipeline.barrier()
    assert await pipeline.close(SAFETY) == 0


async def test_no_sink_dead_letters_events(dead_letter: DeadLetter, uid: str) -> None:
    pipeline = make_pipeline([], dead_letter)
    pipeline.start()
    acked = asyncio.Event()
    await pipeline.submit(records(uid, 0, 2), Ack(acked.set))
    await asyncio.wait_for(acked.wait(), SAFETY)
    assert await pipeline.close(SAFETY) == 0
    entries = dead_letters(dead_letter)
    assert [(e["stage"], e["reason"]) for e in entries] == [("route", "no_sink")] * 2


async def test_processor_crash_dead_letters_batch_and_continues(dead_letter: DeadLetter,
                                                                uid: str) -> None:
    class Flaky:
        calls = 0

        def process(self, events: list[Event]) -> list[Event]:
            self.calls += 1
            if self.calls == 1:
                raise ValueError("bug in a rule")
            return events

    sink = FakeSink(uid)
    pipeline = make_pipeline([sink], dead_letter, processor=Flaky(), batch_max_events=100)
    pipeline.start()
    await pipeline.submit(records(uid, 0, 2))
    await pipeline.submit(records(uid, 2, 1))
    assert await pipeline.close(SAFETY) == 0
    assert sink.messages() == ["2"]
    entries = dead_letters(dead_letter)
    assert [(e["stage"], e["reason"]) for e in entries] == [("classify", "internal_error")] * 2
    assert sample_value("socd_errors_total", component="pipeline",
                        error_type="internal_error") >= 1


async def test_try_submit_refuses_when_full(dead_letter: DeadLetter, uid: str) -> None:
    pipeline = make_pipeline([FakeSink(uid)], dead_letter, intake_max_batches=1)
    # Not started: nothing takes from the intake queue.
    assert pipeline.try_submit(records(uid, 0, 1))
    assert not pipeline.try_submit(records(uid, 1, 1))
    assert pipeline.intake.qsize() == 1


async def test_empty_submit_acks_immediately(dead_letter: DeadLetter, uid: str) -> None:
    pipeline = make_pipeline([FakeSink(uid)], dead_letter)
    called: list[bool] = []
    await pipeline.submit([], Ack(lambda: called.append(True)))
    assert called == [True]
    assert pipeline.intake.empty()


async def test_replace_swaps_sinks_between_batches(dead_letter: DeadLetter, uid: str) -> None:
    old, new = FakeSink(uid + "old"), FakeSink(uid + "new")
    pipeline = make_pipeline([old], dead_letter)
    pipeline.start()
    await pipeline.submit(records(uid, 0, 2))
    runner = SinkRunner(new.name, new, sink_config(), dead_letter)
    retired = await pipeline.replace(runners=[runner])
    for r in retired:
        await asyncio.wait_for(r.wait(), SAFETY)
    await pipeline.submit(records(uid, 2, 2))
    assert await pipeline.close(SAFETY) == 0
    assert old.messages() == ["0", "1"]
    assert new.messages() == ["2", "3"]


async def test_abort_dead_letters_batch_waiting_for_flush_interval(dead_letter: DeadLetter,
                                                                   uid: str) -> None:
    # The runner holds the batch while it waits (up to 300 s) for a fuller one; a forced
    # shutdown must dead-letter it, not drop it silently.
    from socd.app.pipeline import EventBatch

    sink = FakeSink(uid)
    runner = SinkRunner(uid, sink, sink_config(batch_max_events=1000, flush_interval_secs=300,
                                               queue_max_batches=4), dead_letter)
    runner.start()
    acked = asyncio.Event()
    ack = Ack(acked.set)
    ack.pending = 1
    events = [{"message": str(i), "event": {"kind": "alert"}, "socd": {"collector": uid}}
              for i in range(3)]
    await runner.put(EventBatch(events, ack, 0.0))
    await spin()
    assert runner.queue.empty()  # taken by the runner, which now waits for more
    assert runner.abort() == 3
    await asyncio.wait_for(runner.wait(), SAFETY)
    assert sink.written == []
    assert acked.is_set()
    entries = dead_letters(dead_letter)
    assert [e["event"]["message"] for e in entries] == ["0", "1", "2"]
    assert {(e["stage"], e["reason"], e["collector"]) for e in entries} == {
        (f"sink/{uid}", "shutdown_timeout", uid)}
