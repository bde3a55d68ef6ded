"""Kafka collector and sink throughput against the broker of `make services` (one process).

* ``kafka_collector``: N `server_edr` records are produced to a 3-partition topic
  first; then the collector joins a new group and the time to receive, decode and
  commit all of them is measured (the decoded events are discarded). Offsets are
  committed per batch as with the intake journal.
* ``kafka_sink``: N alerts written by the sink in batches of 1,000, each batch
  returning only once every record is confirmed by the broker (``acks=all``,
  idempotent producer).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from socd import config as config_mod
from socd.alerting.kafka import KafkaSink
from socd.app.components import build_decoders
from socd.app.deadletter import DeadLetter
from socd.collectors.kafka import KafkaCollector
from socd.plugins import PluginContext, RawRecord
from tests.helpers import server_edr_record
from tests.integration.kafka_util import create_topic, produce

SERVICES = Path(os.environ.get("SOCD_SERVICES_DIR", "/tmp/socd-services")) / "services.json"
SCOPE = "one socd process, the broker on the same 2-core machine"


def _bootstrap() -> str:
    return str(json.loads(SERVICES.read_text())["KAFKA_BOOTSTRAP"])


async def _drain(bootstrap: str, topic: str, expected: int, dead: DeadLetter) -> float:
    decoders = build_decoders(config_mod.load(), dead)
    config = KafkaCollector.Config.model_validate({
        "type": "kafka", "bootstrap_servers": bootstrap, "topics": [topic],
        "group_id": f"socd-bench-{topic}", "decoder": "server_edr",
        "batch_max_events": 1000})
    collector = KafkaCollector(config, PluginContext(name="bench", dead_letter=dead))
    events = 0
    done = asyncio.Event()

    async def emit(records: list[RawRecord], ack: Any = None) -> None:
        nonlocal events
        for record in records:
            events += len(decoders[record.decoder].decode(record).events)
        if ack is not None:
            ack.done()
        if events >= expected:
            done.set()

    t0 = time.perf_counter()
    task = asyncio.create_task(collector.run(emit))
    await asyncio.wait_for(done.wait(), 600)
    elapsed = time.perf_counter() - t0
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return elapsed


def collector_bench(events: int = 200_000) -> dict[str, Any]:
    bootstrap = _bootstrap()
    run = uuid.uuid4().hex[:8]
    topic = f"socd-bench-{run}"
    create_topic(bootstrap, topic, 3)
    produce(bootstrap, topic, [json.dumps(server_edr_record(i, run), ensure_ascii=False)
                               .encode() for i in range(events)])
    with tempfile.TemporaryDirectory() as tmp:
        dead = DeadLetter(tmp)
        elapsed = asyncio.run(_drain(bootstrap, topic, events, dead))
        dead.close()
    rate = events / elapsed
    return {"benchmark": "kafka_collector", "events": events, "partitions": 3,
            "seconds": round(elapsed, 3), "events_per_sec": round(rate),
            "target_events_per_sec": 20_000, "meets_target": rate >= 20_000,
            "scope": f"broker -> KafkaCollector -> server_edr decoder, group join "
                     f"included; {SCOPE}"}


async def _write(bootstrap: str, topic: str, events: int, dead: DeadLetter) -> float:
    sink = KafkaSink(KafkaSink.Config.model_validate({
        "type": "kafka", "bootstrap_servers": bootstrap, "topic": topic}),
        PluginContext(name="bench", dead_letter=dead))
    await sink.start()
    batches = [[{"@timestamp": "2026-12-06T03:00:00Z",
                 "event": {"kind": "alert", "hash": f"{b}-{i}"}, "rule": {"id": "R1"},
                 "socd": {"severity": "high"}, "message": f"alert {b}-{i}"}
                for i in range(1000)] for b in range(events // 1000)]
    t0 = time.perf_counter()
    for batch in batches:
        await sink.write(batch)
    elapsed = time.perf_counter() - t0
    await sink.close()
    return elapsed


def sink_bench(events: int = 100_000) -> dict[str, Any]:
    bootstrap = _bootstrap()
    topic = f"socd-bench-sink-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic, 3)
    with tempfile.TemporaryDirectory() as tmp:
        dead = DeadLetter(tmp)
        elapsed = asyncio.run(_write(bootstrap, topic, events, dead))
        dead.close()
    rate = events / elapsed
    return {"benchmark": "kafka_sink", "events": events, "batch": 1000,
            "seconds": round(elapsed, 3), "events_per_sec": round(rate),
            "target_events_per_sec": 20_000, "meets_target": rate >= 20_000,
            "scope": f"KafkaSink.write (idempotent, acks=all, delivery reports awaited); "
                     f"{SCOPE}"}


BENCHMARKS = {
    "kafka_collector": collector_bench,
    "kafka_sink": sink_bench,
}

if __name__ == "__main__":
    from scripts.benchlib import standalone

    raise SystemExit(standalone(__doc__ or "", {
        "kafka_collector": collector_bench, "kafka_sink": sink_bench}, "events", 100_000))
