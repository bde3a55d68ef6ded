"""MQTT collector against a private Mosquitto: TLS, passwords, broker restarts."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest

from socd.app.deadletter import DeadLetter
from socd.collectors.mqtt import MqttCollector
from socd.plugins import PluginContext
from tests.integration.private_broker import PrivateBroker, make_pki
from tests.integration.test_mqtt_collector import Received, _stop

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def _collector(tmp_path: Path, **options) -> MqttCollector:
    config = MqttCollector.Config.model_validate({"type": "mqtt", **options})
    return MqttCollector(config, PluginContext(name="private", config_dir=str(tmp_path),
                                               dead_letter=DeadLetter(str(tmp_path / "dl"))))


async def _start(collector: MqttCollector, received: Received) -> asyncio.Task[None]:
    task = asyncio.create_task(collector.run(received.emit))
    for _ in range(200):
        if collector.ready:
            return task
        await asyncio.sleep(0.05)
    task.cancel()
    raise AssertionError("collector did not subscribe")


def _publisher(port: int, *, tls: dict[str, Path] | None = None, user: str | None = None,
               password: str | None = None, client_id: str = "") -> paho.Client:
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id,
                         clean_session=not client_id)
    if user:
        client.username_pw_set(user, password)
    if tls:
        client.tls_set(ca_certs=str(tls["ca.crt"]), certfile=str(tls["client.crt"]),
                       keyfile=str(tls["client.key"]), cert_reqs=ssl.CERT_REQUIRED)
    client.max_inflight_messages_set(100)
    client.reconnect_delay_set(0.1, 1)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


async def test_tls_with_client_certificate_and_password(tmp_path: Path):
    pki = make_pki(tmp_path / "pki")
    broker = PrivateBroker(tmp_path / "broker", tls=pki, users={"socd": "s3cret!"}).start()
    try:
        # Relative TLS paths resolve against the config folder (tmp_path).
        collector = _collector(tmp_path, host="127.0.0.1", port=broker.tls_port,
                               username="socd", password="s3cret!", topics=["edr/#"],
                               client_id="socd-tls",
                               tls={"ca_file": "pki/ca.crt", "cert_file": "pki/client.crt",
                                    "key_file": "pki/client.key"})
        received = Received()
        task = await _start(collector, received)
        pub = _publisher(broker.tls_port, tls=pki, user="socd", password="s3cret!")
        for i in range(20):
            pub.publish("edr/srv", f'{{"n": {i}}}'.encode(), qos=1).wait_for_publish(10)
        await received.wait_for(20)
        await _stop(task)
        pub.loop_stop()
        pub.disconnect()
        assert len(received.records) == 20
    finally:
        broker.stop()


async def test_wrong_password_keeps_retrying_and_never_becomes_ready(tmp_path: Path):
    broker = PrivateBroker(tmp_path / "broker", users={"socd": "right"}).start()
    try:
        collector = _collector(tmp_path, host="127.0.0.1", port=broker.port, username="socd",
                               password="wrong", topics=["x"], reconnect_max_secs=0.5)
        task = asyncio.create_task(collector.run(Received().emit))
        await asyncio.sleep(2)
        assert not collector.ready
        assert not task.done()  # retrying, not crashed
        await _stop(task)
    finally:
        broker.stop()


async def test_broker_restart_mid_stream_loses_nothing(tmp_path: Path):
    broker = PrivateBroker(tmp_path / "broker").start()
    total = 3000
    try:
        collector = _collector(tmp_path, host="127.0.0.1", port=broker.port,
                               topics=["ids/alerts"], client_id="socd-restart",
                               reconnect_min_secs=0.1, reconnect_max_secs=0.5)
        received = Received()
        task = await _start(collector, received)
        # A persistent publisher session: its unacknowledged messages are re-sent
        # after the broker comes back.
        pub = _publisher(broker.port, client_id="edr-console")
        infos = []
        restarted = threading.Event()

        def produce() -> None:
            for i in range(total):
                payload = f'{{"n": {i}}}'.encode()
                info = pub.publish("ids/alerts", payload, qos=1)
                while info.rc == paho.MQTT_ERR_NO_CONN:
                    # Like an EDR console: while the broker is away, retry (QoS 1 allows
                    # duplicates; the assertion counts distinct payloads).
                    time.sleep(0.05)
                    info = pub.publish("ids/alerts", payload, qos=1)
                infos.append(info)
                if i == total // 2:
                    broker.stop()
                    broker.start()
                    restarted.set()

        await asyncio.to_thread(produce)
        for info in infos:
            await asyncio.to_thread(info.wait_for_publish, 60)
        await received.wait_for(total, within=120)
        await asyncio.sleep(1)  # QoS 1 may deliver twice; count distinct payloads
        await _stop(task)
        pub.loop_stop()
        pub.disconnect()
        assert restarted.is_set()
        distinct = {r.data for r in received.records}
        assert distinct == {f'{{"n": {i}}}'.encode() for i in range(total)}
    finally:
        with contextlib.suppress(Exception):
            broker.stop()
