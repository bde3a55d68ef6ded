"""The MQTT collector against a real Mosquitto (see `make services`)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from socd.app.deadletter import DeadLetter
from socd.collectors.mqtt import MqttCollector
from socd.plugins import PluginContext, RawRecord
from tests.helpers import Publisher

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


class Received:
    def __init__(self) -> None:
        self.records: list[RawRecord] = []
        self.changed = asyncio.Event()

    async def emit(self, records, ack=None) -> None:
        self.records.extend(records)
        if ack is not None:
            ack.done()
        self.changed.set()

    async def wait_for(self, n: int, within: float = 30) -> None:
        async def loop() -> None:
            while len(self.records) < n:
                self.changed.clear()
                await self.changed.wait()
        await asyncio.wait_for(loop(), within)


def _collector(services, unique: str, tmp_path: Path, **options) -> MqttCollector:
    config = MqttCollector.Config.model_validate({
        "type": "mqtt", "host": services["MQTT_HOST"], "port": int(services["MQTT_PORT"]),
        "client_id": f"socd-it-{unique}", **options})
    return MqttCollector(config, PluginContext(name=f"it-{unique}",
                                               dead_letter=DeadLetter(str(tmp_path))))


async def _run(collector: MqttCollector, received: Received) -> asyncio.Task[None]:
    task = asyncio.create_task(collector.run(received.emit))
    for _ in range(200):
        if collector.ready:
            return task
        await asyncio.sleep(0.05)
    raise AssertionError("collector did not subscribe")


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_each_subscription_has_its_decoder_and_shared_groups_work(
        services, unique, tmp_path):
    collector = _collector(services, unique, tmp_path, subscriptions=[
        {"topic": f"$share/socd/it/{unique}/edr/+", "decoder": "server_edr"},
        {"topic": f"it/{unique}/ids", "decoder": "json"}])
    received = Received()
    task = await _run(collector, received)
    with Publisher(services) as pub:
        await asyncio.to_thread(pub.publish, f"it/{unique}/edr/srv1", [b"{}"] * 3)
        await asyncio.to_thread(pub.publish, f"it/{unique}/ids", [b"{}"] * 2)
    await received.wait_for(5)
    await _stop(task)
    by_decoder = sorted((r.decoder, r.source) for r in received.records)
    assert by_decoder == [("json", f"it/{unique}/ids")] * 2 + \
        [("server_edr", f"it/{unique}/edr/srv1")] * 3


async def test_persistent_session_keeps_messages_published_while_socd_is_down(
        services, unique, tmp_path):
    topic = f"it/{unique}/persist"
    first = Received()
    task = await _run(_collector(services, unique, tmp_path, topics=[topic]), first)
    await _stop(task)  # the session stays on the broker (clean_session false)

    with Publisher(services) as pub:
        await asyncio.to_thread(pub.publish, topic, [f'{{"n": {i}}}'.encode()
                                                     for i in range(50)])
    again = Received()
    task = await _run(_collector(services, unique, tmp_path, topics=[topic]), again)
    await again.wait_for(50)
    await _stop(task)
    assert sorted(r.data for r in again.records) == sorted(
        f'{{"n": {i}}}'.encode() for i in range(50))


async def test_oversize_payload_is_dead_lettered_not_emitted(services, unique, tmp_path):
    topic = f"it/{unique}/big"
    collector = _collector(services, unique, tmp_path, topics=[topic],
                           max_message_bytes=4096)
    received = Received()
    task = await _run(collector, received)
    with Publisher(services) as pub:
        await asyncio.to_thread(pub.publish, topic, [b"x" * 5000, b'{"ok": 1}'])
    await received.wait_for(1)
    await _stop(task)
    collector.ctx.dead_letter.close()
    assert [r.data for r in received.records] == [b'{"ok": 1}']
    dead = (tmp_path / "dead-letter.ndjson").read_text()
    assert '"reason":"oversize"' in dead


async def test_two_instances_in_a_share_group_split_one_stream(services, unique, tmp_path):
    topic = f"it/{unique}/split"
    sub = [{"topic": f"$share/socd-{unique}/{topic}"}]
    a, b = Received(), Received()
    task_a = await _run(_collector(services, unique + "a", tmp_path / "a", subscriptions=sub), a)
    task_b = await _run(_collector(services, unique + "b", tmp_path / "b", subscriptions=sub), b)
    payloads = [f'{{"n": {i}}}'.encode() for i in range(200)]
    with Publisher(services) as pub:
        await asyncio.to_thread(pub.publish, topic, payloads)

    async def both() -> None:
        while len(a.records) + len(b.records) < 200:
            await asyncio.sleep(0.05)

    await asyncio.wait_for(both(), 30)
    await asyncio.sleep(0.5)
    await _stop(task_a)
    await _stop(task_b)
    got = [r.data for r in a.records + b.records]
    assert sorted(got) == sorted(payloads)  # each message went to exactly one instance
    assert a.records  # both instances took a share
    assert b.records
