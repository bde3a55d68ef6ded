"""The ``mqtt`` notifier against the real Mosquitto (`make services`) and a private one
that the test restarts."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from socd.alerting.notifiers.mqtt import MqttNotifier
from socd.app.deadletter import DeadLetter
from socd.errors import HealthCheckError, NotifyError
from socd.plugins import PluginContext
from tests.conftest import free_port
from tests.integration.private_broker import PrivateBroker
from tests.unit.test_notifiers import TITLE, sample_notification

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def notifier(host: str, port: int, tmp_path: Path, unique: str, **options: Any) -> MqttNotifier:
    cfg = MqttNotifier.Config.model_validate({
        "type": "mqtt", "host": host, "port": port, "client_id": f"socd-notify-it-{unique}",
        "timeout_secs": 10, **options})
    ctx = PluginContext(name=f"mqtt-{unique}", dead_letter=DeadLetter(str(tmp_path / "dl")),
                        config_dir=str(tmp_path))
    return MqttNotifier(cfg, ctx)


async def _next_message(client: aiomqtt.Client, within: float = 30) -> aiomqtt.Message:
    async def first() -> aiomqtt.Message:
        async for message in client.messages:
            return message
        raise AssertionError("subscription ended")
    return await asyncio.wait_for(first(), within)


async def test_publishes_json_on_expanded_topic(services: dict[str, Any], tmp_path: Path,
                                                unique: str) -> None:
    host, port = services["MQTT_HOST"], int(services["MQTT_PORT"])
    mqtt = notifier(host, port, tmp_path, unique,
                    topic=f"it/{unique}/socd/{{severity}}/{{route}}")
    async with aiomqtt.Client(host, port, identifier=f"it-sub-{unique}") as sub:
        await sub.subscribe(f"it/{unique}/#", qos=1)
        await mqtt.start()
        try:
            await mqtt.healthcheck()
            n = sample_notification(2, total=3, route="soc/ca-dem")
            await mqtt.send(n)
            message = await _next_message(sub)
        finally:
            await mqtt.close()
    assert str(message.topic) == f"it/{unique}/socd/critical/soc_ca-dem"
    assert message.qos == 1
    assert not message.retain
    assert isinstance(message.payload, bytes)
    body = json.loads(message.payload)
    assert body["id"] == n.id
    assert body["title"] == TITLE
    assert body["severity"] == "critical"
    assert body["severity_label"] == "nghiêm trọng"
    assert body["total"] == 3
    assert len(body["alerts"]) == 2


async def test_unreachable_broker(tmp_path: Path, unique: str) -> None:
    mqtt = notifier("127.0.0.1", free_port(), tmp_path, unique)
    await mqtt.start()  # logs a warning, does not raise: the broker may come later
    try:
        with pytest.raises(NotifyError) as info:
            await mqtt.send(sample_notification())
        with pytest.raises(HealthCheckError):
            await mqtt.healthcheck()
    finally:
        await mqtt.close()
    assert info.value.retryable


async def test_reconnects_after_broker_restart(tmp_path: Path, unique: str) -> None:
    broker = PrivateBroker(tmp_path / "broker").start()
    mqtt = notifier("127.0.0.1", broker.port, tmp_path, unique, topic=f"it/{unique}/n")
    try:
        await mqtt.start()
        await mqtt.send(sample_notification())
        broker.stop()
        # The connection is gone: a retryable error, never a silent loss.
        error: NotifyError | None = None
        for _ in range(50):  # until the client notices the closed socket
            try:
                await mqtt.send(sample_notification())
            except NotifyError as exc:
                error = exc
                break
            await asyncio.sleep(0.1)
        assert error is not None
        assert error.retryable
        broker.start()
        async with aiomqtt.Client("127.0.0.1", broker.port,
                                  identifier=f"it-sub-{unique}") as sub:
            await sub.subscribe(f"it/{unique}/#", qos=1)
            await mqtt.send(sample_notification(id="after-restart"))
            message = await _next_message(sub)
        assert isinstance(message.payload, bytes)
        assert json.loads(message.payload)["id"] == "after-restart"
    finally:
        await mqtt.close()
        broker.stop()


async def test_authentication_required(tmp_path: Path, unique: str) -> None:
    broker = PrivateBroker(tmp_path / "broker", users={"socd": "mqtt-pass"}).start()
    try:
        good = notifier("127.0.0.1", broker.port, tmp_path, unique, username="socd",
                        password="mqtt-pass")
        try:
            await good.healthcheck()
            await good.send(sample_notification())
        finally:
            await good.close()
        bad = notifier("127.0.0.1", broker.port, tmp_path, f"{unique}b", username="socd",
                       password="wrong")
        try:
            with pytest.raises(HealthCheckError) as health:
                await bad.healthcheck()
            with pytest.raises(NotifyError):
                await bad.send(sample_notification())
        finally:
            await bad.close()
        assert "wrong" not in str(health.value)
    finally:
        broker.stop()
