"""The ``kafka`` collector against the real Kafka broker of `make services`.

* Records of several topics reach ``emit`` with each topic's decoder, and the group's
  committed offsets end at the topics' end: everything stored is committed.
* Only what ``emit`` confirmed is committed: a collector stopped while a batch is
  still in the pipeline leaves the commit before that batch, and the next member of
  the group starts exactly there (at-least-once, nothing skipped).
* A real ``socd run`` SIGKILLed mid-stream and started again stores every record.
* SASL (SCRAM-SHA-512 in plaintext, PLAIN over TLS with the test CA) works; a wrong
  password leaves the collector not ready with the authentication error counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from pathlib import Path
from typing import Any

import pytest

from socd import metrics
from socd.app.deadletter import DeadLetter
from socd.collectors.kafka import KafkaCollector, KafkaFatalError
from socd.plugins import Ack, PluginContext, RawRecord
from tests.conftest import free_port
from tests.helpers import SocdProcess, wait_for
from tests.integration.kafka_util import (
    PrivateKafka,
    committed,
    create_topic,
    end_offsets,
    produce,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


class Received:
    """An ``emit`` that keeps the records; ``hold_after`` records in, the next emit
    never returns (a batch still in the pipeline when the collector stops)."""

    def __init__(self, hold_after: int | None = None) -> None:
        self.records: list[RawRecord] = []
        self.hold_after = hold_after
        self.changed = asyncio.Event()

    async def emit(self, records: list[RawRecord], ack: Ack | None = None) -> None:
        if self.hold_after is not None and len(self.records) >= self.hold_after:
            self.changed.set()
            await asyncio.Event().wait()
        self.records.extend(records)
        if ack is not None:
            ack.done()
        self.changed.set()

    async def wait_for(self, n: int, within: float = 60) -> None:
        async def loop() -> None:
            while len(self.records) < n:
                self.changed.clear()
                await self.changed.wait()
        await asyncio.wait_for(loop(), within)

    def numbers(self) -> list[int]:
        return [json.loads(r.data)["n"] for r in self.records]


def _collector(bootstrap: str, unique: str, tmp_path: Path, **options: Any) -> KafkaCollector:
    config = KafkaCollector.Config.model_validate({
        "type": "kafka", "bootstrap_servers": bootstrap, "group_id": f"socd-it-{unique}",
        "batch_max_events": 100, "lag_interval_secs": 0.5, **options})
    return KafkaCollector(config, PluginContext(name=f"it-{unique}",
                                                dead_letter=DeadLetter(str(tmp_path))))


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _values(start: int, stop: int) -> list[bytes]:
    return [json.dumps({"n": i}).encode() for i in range(start, stop)]


async def test_topics_reach_emit_with_their_decoders_and_all_is_committed(
        kafka_bootstrap: str, unique: str, tmp_path: Path) -> None:
    logs, edr = f"it-{unique}-logs", f"it-{unique}-edr"
    create_topic(kafka_bootstrap, logs, 3)
    create_topic(kafka_bootstrap, edr, 1)
    await asyncio.to_thread(produce, kafka_bootstrap, logs, _values(0, 300))
    await asyncio.to_thread(produce, kafka_bootstrap, edr, _values(300, 350))
    collector = _collector(kafka_bootstrap, unique, tmp_path, topics=[logs], subscriptions=[
        {"topic": f"^it-{unique}-e.r$", "decoder": "server_edr"}])
    received = Received()
    task = asyncio.create_task(collector.run(received.emit))
    await received.wait_for(350)
    assert collector.ready
    await _stop(task)

    assert sorted(received.numbers()) == list(range(350))
    by_topic = {(r.source, r.decoder) for r in received.records}
    assert by_topic == {(logs, "json"), (edr, "server_edr")}
    assert committed(kafka_bootstrap, collector.group, logs, 3) == \
        end_offsets(kafka_bootstrap, logs, 3)
    assert committed(kafka_bootstrap, collector.group, edr, 1) == [50]
    assert metrics.REGISTRY.get_sample_value("socd_kafka_rebalances_total", {
        "group": collector.group, "change": "assigned"}) >= 1


async def test_only_what_emit_confirmed_is_committed_and_the_rest_comes_again(
        kafka_bootstrap: str, unique: str, tmp_path: Path) -> None:
    topic = f"it-{unique}-resume"
    create_topic(kafka_bootstrap, topic, 1)
    await asyncio.to_thread(produce, kafka_bootstrap, topic, _values(0, 1000))

    first = Received(hold_after=400)
    task = asyncio.create_task(_collector(kafka_bootstrap, unique, tmp_path,
                                          topics=[topic]).run(first.emit))
    await first.wait_for(400)
    await asyncio.sleep(0)  # the held emit is entered once 400 are in
    await _stop(task)  # cancelled while a batch is "in the pipeline"
    stored = len(first.records)
    assert first.numbers() == list(range(stored))
    assert committed(kafka_bootstrap, f"socd-it-{unique}", topic, 1) == [stored]

    second = Received()
    task = asyncio.create_task(_collector(kafka_bootstrap, unique, tmp_path,
                                          topics=[topic]).run(second.emit))
    await second.wait_for(1000 - stored)
    await _stop(task)
    # the next member starts exactly after the last stored record: nothing skipped,
    # nothing that was stored delivered again
    assert second.numbers() == list(range(stored, 1000))


async def test_without_the_journal_offsets_wait_for_the_sinks(
        kafka_bootstrap: str, unique: str, tmp_path: Path) -> None:
    """With a plain ``emit`` (no intake journal) a batch is committed only once every
    sink acknowledged it, and never past an older batch still out."""
    topic = f"it-{unique}-acks"
    create_topic(kafka_bootstrap, topic, 1)
    await asyncio.to_thread(produce, kafka_bootstrap, topic, _values(0, 300))
    acks: list[Ack] = []
    sizes: list[int] = []
    received = Received()

    async def emit(records: list[RawRecord], ack: Ack | None = None) -> None:
        assert ack is not None  # not durable: the collector asks to be called back
        acks.append(ack)
        sizes.append(len(records))
        await received.emit(records)

    collector = _collector(kafka_bootstrap, unique, tmp_path, topics=[topic])
    task = asyncio.create_task(collector.run(emit))
    await received.wait_for(300)
    group = collector.group

    async def committed_now() -> int:
        return (await asyncio.to_thread(committed, kafka_bootstrap, group, topic, 1))[0]

    assert await committed_now() < 0  # nothing acknowledged yet
    acks[1].done()  # a younger batch stored first: still nothing to commit
    assert collector.ledger.take() == {}
    acks[0].done()  # now the first two batches are stored
    first_two = sizes[0] + sizes[1]
    for _ in range(200):
        if await committed_now() == first_two:
            break
        await asyncio.sleep(0.05)
    assert await committed_now() == first_two
    for ack in acks[2:]:
        ack.done()
    await _stop(task)  # the last commit is made on the way out
    assert await committed_now() == 300


async def test_a_static_member_resumes_where_it_stopped(
        kafka_bootstrap: str, unique: str, tmp_path: Path) -> None:
    topic = f"it-{unique}-static"
    create_topic(kafka_bootstrap, topic, 2)
    await asyncio.to_thread(produce, kafka_bootstrap, topic, _values(0, 50))
    first = Received()
    options = {"topics": [topic], "group_instance_id": f"member-{unique}"}
    task = asyncio.create_task(_collector(kafka_bootstrap, unique, tmp_path,
                                          **options).run(first.emit))
    await first.wait_for(50)
    await _stop(task)
    await asyncio.to_thread(produce, kafka_bootstrap, topic, _values(50, 80))
    again = Received()
    # the same instance id takes its partitions back at once (no session timeout wait)
    task = asyncio.create_task(_collector(kafka_bootstrap, unique, tmp_path,
                                          **options).run(again.emit))
    await again.wait_for(30, within=20)
    await _stop(task)
    assert sorted(first.numbers()) == list(range(50))
    assert sorted(again.numbers()) == list(range(50, 80))


async def test_a_fenced_static_member_stops_with_a_fatal_error(
        kafka_bootstrap: str, unique: str, tmp_path: Path) -> None:
    """Two members with one group_instance_id: the broker fences the older one, whose
    consumer is then unusable; its run ends with KafkaFatalError, so the daemon starts
    it again with a new consumer (after a backoff) instead of polling a dead one."""
    topic = f"it-{unique}-fenced"
    create_topic(kafka_bootstrap, topic, 1)
    await asyncio.to_thread(produce, kafka_bootstrap, topic, _values(0, 10))
    options = {"topics": [topic], "group_instance_id": f"member-{unique}"}
    first, second = Received(), Received()
    old = asyncio.create_task(_collector(kafka_bootstrap, unique, tmp_path,
                                         **options).run(first.emit))
    await first.wait_for(10)
    new = asyncio.create_task(_collector(kafka_bootstrap, unique + "-2", tmp_path,
                                         **{**options, "group_id": f"socd-it-{unique}"}
                                         ).run(second.emit))
    with pytest.raises(KafkaFatalError, match="fenced"):
        await asyncio.wait_for(old, 60)
    await _stop(new)


def test_socd_killed_mid_stream_loses_nothing(kafka_bootstrap: str, unique: str,
                                              tmp_path: Path) -> None:
    topic = f"it-{unique}-crash"
    total = 6000
    create_topic(kafka_bootstrap, topic, 3)

    def records(start: int, stop: int) -> list[bytes]:
        return [json.dumps({"n": i, "event": {"kind": "event"}, "message": f"record {i}"}
                           ).encode() for i in range(start, stop)]

    produce(kafka_bootstrap, topic, records(0, total // 2))
    out = tmp_path / "state" / "out.ndjson"
    config = {
        "state_dir": str(tmp_path / "state"), "log": {"format": "json"},
        "http": {"host": "127.0.0.1", "port": free_port()}, "rules": {"paths": []},
        "collectors": {"kafka": {"type": "kafka", "bootstrap_servers": kafka_bootstrap,
                                 "group_id": f"socd-it-{unique}", "topics": [topic],
                                 "batch_max_events": 200,
                                 # the killed member holds its partitions this long
                                 "session_timeout_secs": 6}},
        "sinks": {"out": {"type": "ndjson", "path": "out.ndjson", "select": "all",
                          "batch_max_events": 200}},
    }

    def seen() -> list[int]:
        if not out.exists():
            return []
        return [json.loads(line)["n"] for line in out.read_text().splitlines()
                if line.endswith("}")]

    socd = SocdProcess(config, tmp_path)
    try:
        socd.start()
        wait_for(lambda: len(seen()) >= 1000, 90, "the first records stored")
        socd.signal(signal.SIGKILL)
        assert socd.proc is not None
        socd.proc.wait(30)
        socd.kill()
        produce(kafka_bootstrap, topic, records(total // 2, total))  # while socd is down
        socd.start()
        wait_for(lambda: set(seen()) >= set(range(total)), 120, "every record stored")
        assert socd.stop() == 0
    finally:
        socd.kill()
    numbers = seen()
    assert set(numbers) == set(range(total))  # duplicates allowed: at-least-once
    assert committed(kafka_bootstrap, f"socd-it-{unique}", topic, 3) == \
        end_offsets(kafka_bootstrap, topic, 3)


def _sasl(services: dict[str, Any], mechanism: str, password: str | None = None,
          ) -> dict[str, Any]:
    return {"mechanism": mechanism, "username": services["KAFKA_SASL_USER"],
            "password": password or services["KAFKA_SASL_PASSWORD"]}


@pytest.mark.parametrize("listener", ["sasl_scram", "tls_plain"])
async def test_sasl_and_tls_listeners(kafka_services: dict[str, Any], kafka_bootstrap: str,
                                      unique: str, tmp_path: Path, listener: str) -> None:
    topic = f"it-{unique}-auth"
    create_topic(kafka_bootstrap, topic, 1)
    await asyncio.to_thread(produce, kafka_bootstrap, topic, _values(0, 20))
    if listener == "sasl_scram":
        options = {"bootstrap_servers": kafka_services["KAFKA_SASL_BOOTSTRAP"],
                   "sasl": _sasl(kafka_services, "SCRAM-SHA-512")}
    else:
        options = {"bootstrap_servers": kafka_services["KAFKA_TLS_BOOTSTRAP"],
                   "sasl": _sasl(kafka_services, "PLAIN"),
                   "tls": {"ca_file": kafka_services["KAFKA_TLS_CA"]}}
    collector = _collector(kafka_bootstrap, unique, tmp_path, topics=[topic], **options)
    received = Received()
    task = asyncio.create_task(collector.run(received.emit))
    await received.wait_for(20)
    await _stop(task)
    assert sorted(received.numbers()) == list(range(20))


async def test_wrong_password_fails_clearly(kafka_services: dict[str, Any],
                                            kafka_bootstrap: str, unique: str,
                                            tmp_path: Path) -> None:
    topic = f"it-{unique}-denied"
    create_topic(kafka_bootstrap, topic, 1)
    await asyncio.to_thread(produce, kafka_bootstrap, topic, _values(0, 5))
    collector = _collector(kafka_bootstrap, unique, tmp_path, topics=[topic],
                           bootstrap_servers=kafka_services["KAFKA_SASL_BOOTSTRAP"],
                           sasl=_sasl(kafka_services, "SCRAM-SHA-256", "wrong-password"))
    received = Received()
    task = asyncio.create_task(collector.run(received.emit))

    def auth_errors() -> float:
        return sum(s.value for m in metrics.ERRORS.collect() for s in m.samples
                   if s.name.endswith("_total")
                   and s.labels["component"] == f"collector/{collector.name}"
                   and "AUTHENTICATION" in s.labels["error_type"])

    for _ in range(600):
        if auth_errors():
            break
        await asyncio.sleep(0.05)
    await _stop(task)
    assert auth_errors() >= 1
    assert not collector.ready
    assert received.records == []


async def test_broker_restart_mid_stream_loses_nothing(
        kafka_services: dict[str, Any], unique: str, tmp_path: Path) -> None:
    """A private broker stopped and started again under a running collector: it goes
    not ready, comes back by itself, and every record arrives with all committed."""
    private = PrivateKafka(kafka_services, tmp_path / "kafka").start()
    try:
        topic = f"it-{unique}-restart"
        create_topic(private.bootstrap, topic, 2)
        await asyncio.to_thread(produce, private.bootstrap, topic, _values(0, 300))
        collector = _collector(private.bootstrap, unique, tmp_path, topics=[topic],
                               connect_timeout_secs=2)
        received = Received()
        task = asyncio.create_task(collector.run(received.emit))
        await received.wait_for(300)
        await asyncio.to_thread(private.stop)
        for _ in range(600):
            if not collector.ready:
                break
            await asyncio.sleep(0.05)
        assert not collector.ready
        await asyncio.to_thread(private.start)
        await asyncio.to_thread(produce, private.bootstrap, topic, _values(300, 600))
        await received.wait_for(600)
        for _ in range(600):
            if collector.ready:
                break
            await asyncio.sleep(0.05)
        assert collector.ready
        await _stop(task)
        assert sorted(set(received.numbers())) == list(range(600))
        assert committed(private.bootstrap, collector.group, topic, 2) == \
            end_offsets(private.bootstrap, topic, 2)
    finally:
        private.stop()
