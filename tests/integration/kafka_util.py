"""Helpers for the tests against the real Kafka broker of `make services`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


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
