"""The intake role's link to the workers: a sink that publishes events to Kafka.

It runs as one more sink of the pipeline (its runner, its spool), so an event batch is
acknowledged to its source (and released from the journal) only once Kafka confirmed
every message of it (``acks=all``, idempotent producer): a crash or a Kafka outage loses
nothing, and while Kafka is away the batches go to the spool on disk like any sink's.

Each event is published once per repartition topic one of whose rules matches it (the
engine's own routing and conditions), keyed by that topic's fields. The rule alerts the
intake's own (stateless) rules raised are not published: in one process the engine never
sees its own alerts either.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Sequence
from typing import Any

import orjson

from socd.app.cluster_metrics import PUBLISHED
from socd.app.cluster_plan import ClusterPlan
from socd.app.cluster_seen import PUBLISH_HEADER
from socd.app.deadletter import DeadLetter
from socd.errors import HealthCheckError, SinkError
from socd.event import Event
from socd.kafka.client import KafkaClientConfig, librdkafka_logger, producer_settings

NAME = "cluster"
# A message librdkafka could not deliver within this is reported failed; the runner then
# spools the batch. Covers a broker restart (seconds) without any duplicate.
MESSAGE_TIMEOUT_MS = 60_000
# An event larger than this (after JSON) cannot be published: it is dead-lettered.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024


def producer_config(client: KafkaClientConfig, config_dir: str) -> dict[str, Any]:
    """Idempotent, acks=all (socd.kafka.client), Java-compatible key hashing (murmur2:
    a Kafka Streams or Java client reading the topics finds the same partitions),
    batched and compressed; librdkafka's log lines go to socd's log."""
    settings: dict[str, Any] = dict(producer_settings(
        client, client_id="socd-cluster-intake", config_dir=config_dir,
        delivery_timeout_secs=MESSAGE_TIMEOUT_MS / 1000,
        max_message_bytes=MAX_MESSAGE_BYTES))
    settings.setdefault("compression.type", "lz4")
    settings.update({"partitioner": "murmur2_random", "queue.buffering.max.messages": 500_000,
                     "logger": librdkafka_logger("cluster-intake")})
    return settings


def is_rule_alert(event: Event) -> bool:
    """An alert the rules engine raised: the classifier removes ``socd.rule`` from every
    input event, and only the engine writes it."""
    socd = event.get("socd")
    return type(socd) is dict and "rule" in socd


class RepartitionSink:
    """Publishes the events the stateful rules need; see the module docstring."""

    name = NAME

    def __init__(self, plan: ClusterPlan, settings: dict[str, Any],
                 dead_letter: DeadLetter) -> None:
        self.plan = plan
        self.settings = settings
        self.dead_letter = dead_letter
        self._producer: Any = None
        self._published = {t.name: PUBLISHED.labels(t.name) for t in plan.topics}
        self._lock = threading.Lock()
        # One id per intake run, not per write: the sink runner merges and splits the
        # pipeline's batches into writes as it likes, so identical records a source sent
        # (two identical syslog lines in one second) can land in two writes of one run;
        # they must both count, as in one process.
        self._session = os.urandom(8)

    async def start(self) -> None:
        from confluent_kafka import Producer

        self._producer = Producer(self.settings)

    async def healthcheck(self) -> None:
        producer = self._producer
        if producer is None:
            raise HealthCheckError("the Kafka producer is not started")
        try:
            await asyncio.to_thread(producer.list_topics, None, 10.0)
        except Exception as exc:
            raise HealthCheckError(f"Kafka does not answer: {exc}") from exc

    def _messages(self, events: Sequence[Event]) -> list[tuple[str, bytes, bytes]]:
        out: list[tuple[str, bytes, bytes]] = []
        topics_for = self.plan.topics_for
        for event in events:
            if is_rule_alert(event):
                continue
            topics = topics_for(event)
            if not topics:
                continue
            value = orjson.dumps(event, default=str)
            if len(value) > MAX_MESSAGE_BYTES:  # Kafka would refuse it for good
                self.dead_letter.write(stage=f"sink/{NAME}", reason="oversize", event=event,
                                       detail=f"{len(value)} bytes")
                continue
            out.extend((topic.name, topic.key(event), value) for topic in topics)
        return out

    async def write(self, events: Sequence[Event]) -> None:
        producer = self._producer
        if producer is None:
            raise SinkError("the Kafka producer is not started")
        messages = self._messages(events)
        if not messages:
            return
        failures: list[str] = []
        # which intake run published these: a worker skips an event already read from
        # another run (a batch the journal published again after a crash; cluster_seen)
        headers = [(PUBLISH_HEADER, self._session)]

        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                failures.append(str(err))

        # produce() only queues; flush() waits for every delivery report. Both in one
        # thread: a full local queue (BufferError) is drained by polling there.
        def send() -> int:
            with self._lock:
                for topic, key, value in messages:
                    while True:
                        try:
                            producer.produce(topic, value, key, on_delivery=delivered,
                                             headers=headers)
                            break
                        except BufferError:
                            producer.poll(0.05)
                left: int = producer.flush(MESSAGE_TIMEOUT_MS / 1000 + 30)
                return left

        left = await asyncio.to_thread(send)
        if failures or left:
            raise SinkError(f"Kafka did not confirm {len(failures) + left} of "
                            f"{len(messages)} messages: {failures[:1] or 'timeout'}")
        counts: dict[str, int] = {}
        for topic, _, _ in messages:
            counts[topic] = counts.get(topic, 0) + 1
        for topic, n in counts.items():
            self._published[topic].inc(n)

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await asyncio.to_thread(producer.flush, 10.0)
