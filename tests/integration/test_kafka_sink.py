"""The ``kafka`` sink against the real Kafka broker of `make services`.

* Alerts arrive as JSON records with the configured key and socd's headers.
* An event larger than ``max_message_bytes`` is dead-lettered, the rest delivered.
* A broker that cannot be reached, or refuses the login, makes ``write`` raise a
  retryable SinkError (so the pipeline retries or spools) and the health check fail.
* SCRAM over TLS works.
* A real socd run whose broker goes down spools the alerts and delivers every one
  after the broker is back.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from socd import __version__
from socd.alerting.kafka import KafkaSink
from socd.app.deadletter import DeadLetter
from socd.errors import HealthCheckError, SinkError
from socd.metrics import REGISTRY
from socd.plugins import PluginContext
from tests.conftest import free_port
from tests.helpers import SocdProcess, metric, wait_for
from tests.integration.kafka_util import PrivateKafka, committed, create_topic, produce

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _sink(unique: str, tmp_path: Path, **options: Any) -> KafkaSink:
    config = KafkaSink.Config.model_validate({"type": "kafka", **options})
    return KafkaSink(config, PluginContext(name=f"it-{unique}",
                                           dead_letter=DeadLetter(str(tmp_path))))


def _alert(i: int, **extra: Any) -> dict[str, Any]:
    return {"@timestamp": "2026-12-06T10:00:00+07:00", "event": {
        "kind": "alert", "hash": f"hash-{i}"}, "rule": {"id": f"R{i % 3}"},
        "socd": {"severity": "high"}, "source": {"ip": f"10.0.0.{i % 5}"},
        "message": f"alert {i}", **extra}


def _consume(bootstrap: str, topic: str, n: int) -> list[Any]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-{topic}",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    got: list[Any] = []
    try:
        for _ in range(200):
            got += [m for m in consumer.consume(n, 0.5) if m.error() is None]
            if len(got) >= n:
                break
    finally:
        consumer.close()
    return got


async def test_alerts_reach_the_topic_with_keys_and_headers(
        kafka_bootstrap: str, unique: str, tmp_path: Path) -> None:
    topic = f"it-{unique}-alerts"
    create_topic(kafka_bootstrap, topic, 3)
    sink = _sink(unique, tmp_path, bootstrap_servers=kafka_bootstrap, topic=topic)
    await sink.start()
    await sink.healthcheck()
    events = [_alert(i) for i in range(50)]
    del events[7]["event"]["hash"]  # no key field: no key
    await sink.write(events)
    await sink.close()

    records = _consume(kafka_bootstrap, topic, 50)
    assert len(records) == 50
    by_value = {json.loads(r.value())["message"]: r for r in records}
    first = by_value["alert 1"]
    assert first.key() == b"hash-1"
    assert dict(first.headers()) == {"socd-version": __version__.encode(),
                                     "socd-event-hash": b"hash-1", "socd-rule-id": b"R1",
                                     "socd-severity": b"high"}
    assert json.loads(first.value()) == events[1]
    assert by_value["alert 7"].key() is None
    assert "socd-event-hash" not in dict(by_value["alert 7"].headers())
    # one key, one partition: a compacted topic or a consumer can drop repeats by key
    assert len({r.partition() for r in records if r.key() == b"hash-2"}) == 1


async def test_key_from_a_configured_field(kafka_bootstrap: str, unique: str,
                                           tmp_path: Path) -> None:
    topic = f"it-{unique}-bysource"
    create_topic(kafka_bootstrap, topic, 3)
    sink = _sink(unique, tmp_path, bootstrap_servers=kafka_bootstrap, topic=topic,
                 key_field="source.ip")
    await sink.start()
    await sink.write([_alert(i) for i in range(20)])
    await sink.close()
    records = _consume(kafka_bootstrap, topic, 20)
    partitions: dict[bytes, set[int]] = {}
    for record in records:
        partitions.setdefault(record.key(), set()).add(record.partition())
    assert sorted(partitions) == [f"10.0.0.{i}".encode() for i in range(5)]
    assert all(len(p) == 1 for p in partitions.values())  # one source, one partition


async def test_oversize_event_is_dead_lettered_and_the_rest_delivered(
        kafka_bootstrap: str, unique: str, tmp_path: Path) -> None:
    topic = f"it-{unique}-big"
    create_topic(kafka_bootstrap, topic, 1)
    sink = _sink(unique, tmp_path, bootstrap_servers=kafka_bootstrap, topic=topic,
                 max_message_bytes=2048)
    await sink.start()
    await sink.write([_alert(0), _alert(1, message="x" * 5000), _alert(2)])
    await sink.close()
    sink.ctx.dead_letter.close()
    assert sorted(json.loads(r.value())["message"]
                  for r in _consume(kafka_bootstrap, topic, 2)) == ["alert 0", "alert 2"]
    dead = [json.loads(line) for line in (tmp_path / "dead-letter.ndjson").read_text()
            .splitlines()]
    assert [d["reason"] for d in dead] == ["rejected"]
    assert "MSG_SIZE_TOO_LARGE" in dead[0]["detail"]


async def test_unreachable_broker_fails_the_write_for_a_retry(unique: str,
                                                              tmp_path: Path) -> None:
    sink = _sink(unique, tmp_path, bootstrap_servers=f"127.0.0.1:{free_port()}",
                 topic="nowhere", delivery_timeout_secs=2, connect_timeout_secs=1)
    await sink.start()
    with pytest.raises(SinkError) as failed:
        await sink.write([_alert(i) for i in range(3)])
    assert failed.value.retryable
    assert "not confirmed" in str(failed.value)
    assert REGISTRY.get_sample_value("socd_kafka_produce_errors_total",
                                     {"sink": sink.name}) == 3
    with pytest.raises(HealthCheckError):
        await sink.healthcheck()
    await sink.close()


async def test_sasl_login(kafka_services: dict[str, Any], kafka_bootstrap: str, unique: str,
                          tmp_path: Path) -> None:
    topic = f"it-{unique}-sasl"
    create_topic(kafka_bootstrap, topic, 1)
    login = {"mechanism": "SCRAM-SHA-256", "username": kafka_services["KAFKA_SASL_USER"],
             "password": kafka_services["KAFKA_SASL_PASSWORD"]}
    good = _sink(unique, tmp_path, bootstrap_servers=kafka_services["KAFKA_TLS_BOOTSTRAP"],
                 topic=topic, sasl=login, tls={"ca_file": kafka_services["KAFKA_TLS_CA"]})
    await good.start()
    await good.healthcheck()
    await good.write([_alert(1)])
    await good.close()
    assert len(_consume(kafka_bootstrap, topic, 1)) == 1

    bad = _sink(unique + "-bad", tmp_path,
                bootstrap_servers=kafka_services["KAFKA_SASL_BOOTSTRAP"], topic=topic,
                sasl={**login, "password": "wrong"}, delivery_timeout_secs=3)
    await bad.start()
    with pytest.raises(SinkError) as failed:
        await bad.write([_alert(2)])
    assert failed.value.retryable
    with pytest.raises(HealthCheckError):
        await bad.healthcheck()
    await bad.close()


def test_broker_outage_spools_and_delivers_after_restart(
        kafka_services: dict[str, Any], kafka_bootstrap: str, unique: str,
        tmp_path: Path) -> None:
    """A real socd run: alerts read from the shared broker, written to a private broker
    that is stopped mid-stream and started again. While it is down the sink's batches
    go to the spool (the input is committed); after the restart every alert is there."""
    private = PrivateKafka(kafka_services, tmp_path / "kafka").start()
    try:
        source, target = f"it-{unique}-src", "alerts"
        create_topic(kafka_bootstrap, source, 1)
        create_topic(private.bootstrap, target, 1)
        config = {
            "state_dir": str(tmp_path / "state"), "log": {"format": "json"},
            "http": {"host": "127.0.0.1", "port": free_port()}, "rules": {"paths": []},
            "collectors": {"in": {"type": "kafka", "bootstrap_servers": kafka_bootstrap,
                                  "group_id": f"socd-it-{unique}", "topics": [source]}},
            "sinks": {"bus": {"type": "kafka", "bootstrap_servers": private.bootstrap,
                              "topic": target, "delivery_timeout_secs": 3,
                              "retry_max_backoff_secs": 1, "spool": {"enabled": True}}},
        }

        def stored() -> set[bytes]:
            return {r.key() for r in _consume_all(private.bootstrap, target)}

        socd = SocdProcess(config, tmp_path)
        try:
            socd.start()
            produce(kafka_bootstrap, source, [json.dumps(_alert(i)).encode()
                                              for i in range(200)])
            wait_for(lambda: len(stored()) == 200, 60, "the first alerts in the topic")
            private.stop()
            produce(kafka_bootstrap, source, [json.dumps(_alert(i)).encode()
                                              for i in range(200, 500)])
            wait_for(lambda: metric(socd.metrics(), "socd_spool_written_total",
                                    sink="bus") >= 300, 60, "the alerts spooled")
            assert committed(kafka_bootstrap, f"socd-it-{unique}", source, 1) == [500]
            private.start()
            wait_for(lambda: len(stored()) == 500, 90, "every alert delivered")
            assert socd.stop() == 0
        finally:
            socd.kill()
    finally:
        private.stop()


def _consume_all(bootstrap: str, topic: str) -> list[Any]:
    """Every record of the one-partition ``topic`` (a new group each time)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        end = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1]
        consumer.assign([TopicPartition(topic, 0, 0)])
        got: list[Any] = []
        while len(got) < end:
            batch = consumer.consume(1000, 5)
            if not batch:
                break
            got += [m for m in batch if m.error() is None]
        return got
    finally:
        consumer.close()
