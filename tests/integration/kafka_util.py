"""Helpers for the tests against the real Kafka broker of `make services`."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.conftest import free_port


def create_topic(bootstrap: str, name: str, partitions: int = 1) -> None:
    """Create ``name`` and wait until the broker confirms it."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, partitions, 1)], operation_timeout=30)
    futures[name].result(timeout=60)


def produce(bootstrap: str, topic: str, values: Iterable[bytes], *,
            keys: Iterable[bytes | None] | None = None,
            headers: list[tuple[str, bytes]] | None = None,
            partition: int | None = None, extra: dict[str, Any] | None = None) -> int:
    """Produce ``values`` with a plain idempotent producer; every delivery confirmed."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                         "linger.ms": 5, "message.max.bytes": 10 * 1024 * 1024,
                         **(extra or {})})
    errors: list[object] = []
    key_list = list(keys) if keys is not None else None
    count = 0
    for i, value in enumerate(values):
        kwargs: dict[str, Any] = {"value": value, "on_delivery":
                                  lambda err, _msg: errors.append(err) if err else None}
        if key_list is not None:
            kwargs["key"] = key_list[i]
        if headers is not None:
            kwargs["headers"] = headers
        if partition is not None:
            kwargs["partition"] = partition
        while True:
            try:
                producer.produce(topic, **kwargs)
                break
            except BufferError:
                producer.poll(0.5)
        count += 1
        producer.poll(0)
    left = producer.flush(60)
    assert left == 0, f"{left} records not confirmed"
    assert not errors, f"delivery errors: {errors[:3]}"
    return count


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> list[int]:
    """The group's committed offset of each partition (-1001: none)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        offsets = consumer.committed([TopicPartition(topic, p) for p in range(partitions)],
                                     timeout=30)
        return [tp.offset for tp in offsets]
    finally:
        consumer.close()


def end_offsets(bootstrap: str, topic: str, partitions: int) -> list[int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "socd-test-probe"})
    try:
        return [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
                for p in range(partitions)]
    finally:
        consumer.close()


class PrivateKafka:
    """A broker of the test's own (KRaft, one node) that the test may stop and start
    again: same ports, same data. It runs from the jars and the Java that `make
    services` uses (KAFKA_CLASSPATH, KAFKA_JAVA in services.json); the shared broker is
    left alone."""

    def __init__(self, services: dict[str, Any], directory: Path) -> None:
        self.java = str(services["KAFKA_JAVA"])
        self.classpath = str(services["KAFKA_CLASSPATH"])
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port, controller = free_port(), free_port()
        self.conf = self.dir / "server.properties"
        self.log = self.dir / "kafka.log"
        self.conf.write_text("\n".join([
            "process.roles=broker,controller", "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{controller}",
            "controller.listener.names=CONTROLLER",
            f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{controller}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            f"log.dirs={self.dir / 'data'}", "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=2", "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1", "group.initial.rebalance.delay.ms=0",
            "share.coordinator.state.topic.replication.factor=1", ""]))
        self.proc: subprocess.Popen[bytes] | None = None
        self._run("kafka.tools.StorageTool", "format", "-t", "socd-test-k1-private-0",
                  "-c", str(self.conf))

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _run(self, *args: str) -> None:
        with self.log.open("ab") as out:
            subprocess.run([self.java, "-Xmx256m", "-cp", self.classpath, *args],
                           stdout=out, stderr=subprocess.STDOUT, check=True, timeout=120)

    def start(self) -> PrivateKafka:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [self.java, "-Xms256m", "-Xmx256m", "-cp", self.classpath, "kafka.Kafka",
                 str(self.conf)], stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the private Kafka exited; see {self.log}")
            with contextlib.suppress(KafkaException):
                metadata = admin.list_topics(timeout=2)
                if metadata.brokers and metadata.controller_id >= 0:
                    return self
            time.sleep(0.2)
        raise AssertionError(f"the private Kafka did not answer within 90 s; see {self.log}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
