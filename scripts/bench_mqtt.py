"""MQTT collector throughput, from the broker into the rules queue (one process).

The broker is loaded first: the collector's persistent session is created, the
collector stops, N messages are published (QoS 1) and queued by Mosquitto, then
the collector starts again and the time to receive and decode all of them is
measured. This isolates socd's side from the publisher's speed. Decoding uses
the `server_edr` mapping decoder; the decoded events are discarded.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from socd import config as config_mod
from socd.app.components import build_decoders
from socd.app.deadletter import DeadLetter
from socd.collectors.mqtt import MqttCollector
from socd.plugins import PluginContext, RawRecord
from tests.helpers import Publisher, server_edr_record

SERVICES = Path(os.environ.get("SOCD_SERVICES_DIR", "/tmp/socd-services")) / "services.json"


async def _drain(services: dict[str, Any], run: str, topic: str, expected: int,
                 dead: DeadLetter, publish: Any) -> tuple[float, int]:
    decoders = build_decoders(config_mod.load(), dead)
    config = MqttCollector.Config.model_validate({
        "type": "mqtt", "host": services["MQTT_HOST"], "port": int(services["MQTT_PORT"]),
        "client_id": f"socd-bench-{run}", "topics": [topic], "decoder": "server_edr"})
    ctx = PluginContext(name="bench", dead_letter=dead)
    events = 0
    done = asyncio.Event()
    started = 0.0

    async def emit(records: list[RawRecord], ack: Any = None) -> None:
        nonlocal events, started
        if not started:
            started = time.perf_counter()
        for record in records:
            events += len(decoders[record.decoder].decode(record).events)
        if ack is not None:
            ack.done()
        if events >= expected:
            done.set()

    # 1. create the persistent session, then leave
    collector = MqttCollector(config, ctx)
    task = asyncio.create_task(collector.run(emit))
    while not collector.ready:  # noqa: ASYNC110 - the collector exposes a flag, not an event
        await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    # 2. queue the messages at the broker while socd is away
    await asyncio.to_thread(publish)
    # 3. measure the drain
    collector = MqttCollector(config, ctx)
    t0 = time.perf_counter()
    task = asyncio.create_task(collector.run(emit))
    await asyncio.wait_for(done.wait(), 600)
    elapsed = time.perf_counter() - t0
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return elapsed, events


def _bench(name: str, events: int, per_message: int, target: int, unit: str) -> dict[str, Any]:
    services = json.loads(SERVICES.read_text())
    run = uuid.uuid4().hex[:8]
    topic = f"socd-bench/{run}"
    records = [json.dumps(server_edr_record(i, run), ensure_ascii=False).encode()
               for i in range(events)]
    payloads = ([b"\n".join(records[i:i + per_message]) for i in range(0, events, per_message)]
                if per_message > 1 else records)

    def publish() -> None:
        with Publisher(services) as pub:
            pub.publish(topic, payloads)

    with tempfile.TemporaryDirectory() as tmp:
        dead = DeadLetter(tmp)
        elapsed, got = asyncio.run(_drain(services, run, topic, events, dead, publish))
        dead.close()
    rate = events / elapsed if unit == "events" else len(payloads) / elapsed
    return {"benchmark": name, "events": got, "mqtt_messages": len(payloads),
            "events_per_message": per_message, "seconds": round(elapsed, 3),
            "events_per_sec": round(events / elapsed),
            "messages_per_sec": round(len(payloads) / elapsed),
            f"target_{unit}_per_sec": target, "meets_target": rate >= target,
            "scope": "broker -> MqttCollector -> server_edr decoder (one process, one core)"}


BENCHMARKS = {
    "mqtt_collector_batched": lambda: _bench("mqtt_collector_batched", 200_000, 100,
                                             20_000, "events"),
    "mqtt_collector_single": lambda: _bench("mqtt_collector_single", 50_000, 1, 5_000,
                                            "messages"),
}
