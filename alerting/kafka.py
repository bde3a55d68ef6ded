"""The ``kafka`` sink: events (alerts by default) as JSON records on a Kafka topic.

* The producer is idempotent with ``acks=all``: a record counts as stored only once
  every in-sync replica has it, and librdkafka's own retries never write it twice or
  out of order within a partition.
* ``write`` returns only when every record of the batch has a successful delivery
  report. Any failed or missing report (broker down, timeout after
  ``delivery_timeout_secs``, not enough replicas) raises a retryable
  :class:`~socd.errors.SinkError`: the pipeline retries the batch with backoff or puts
  it in the sink's spool, so nothing is dropped. The retried batch is produced again
  in full, so the records that had been delivered before the failure appear twice in
  the topic (at-least-once); the record key (``event.hash`` by default) and the
  ``socd-event-hash`` header let consumers drop them, and a compacted topic keyed by
  ``event.hash`` drops them itself (docs/kafka.md).
* A record the broker refuses for itself (larger than ``max_message_bytes`` or the
  topic's limit) is dead-lettered and not retried, like a document Elasticsearch
  rejects.
* Headers carry socd's metadata so consumers can route without parsing the value:
  ``socd-version``, ``socd-event-hash``, ``socd-rule-id``, ``socd-severity`` (each only
  when the event has it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import orjson
import structlog
from pydantic import Field

from socd import __version__
from socd.config import SinkConfig
from socd.errors import HealthCheckError, SinkError
from socd.event import Event, get
from socd.kafka import metrics as kafka_metrics
from socd.kafka.client import KafkaClientConfig, librdkafka_logger, producer_settings
from socd.plugins import PluginContext
from socd.ratelimit import LogLimiter

if TYPE_CHECKING:
    from confluent_kafka import KafkaError, Message, Producer

log = structlog.get_logger("socd.alerting.kafka")

# Delivery errors that are about the record itself: retrying cannot help.
_REJECTED = frozenset({"MSG_SIZE_TOO_LARGE", "_MSG_SIZE_TOO_LARGE", "INVALID_RECORD",
                       "RECORD_LIST_TOO_LARGE", "INVALID_MSG_SIZE", "CORRUPT_MESSAGE"})
_HEADERS = (("socd-event-hash", "event.hash"), ("socd-rule-id", "rule.id"),
            ("socd-severity", "socd.severity"))


class KafkaSink:
    """Produces events to one topic and returns once the brokers confirmed them."""

    class Config(KafkaClientConfig, SinkConfig):
        type: Literal["kafka"]
        topic: str = Field(min_length=1, max_length=249, pattern=r"^[A-Za-z0-9._-]+$",
                           description="Topic to write to (created beforehand, with the "
                           "partitions and replication the cluster needs).")
        key_field: str | None = Field(
            "event.hash", description="Event field (dotted path) whose value is the record "
            "key: records with one key go to one partition, in order. `event.hash` (the "
            "default) spreads evenly and lets a compacted topic drop duplicates; "
            "`source.ip` or `host.name` keep one entity's alerts together; null: no key.")
        delivery_timeout_secs: float = Field(
            30.0, ge=1, le=900, description="How long a record may wait for the brokers' "
            "confirmation (librdkafka message.timeout.ms); past it the batch fails and is "
            "retried or spooled.")
        max_message_bytes: int = Field(1024 * 1024, ge=1024, le=64 * 1024 * 1024,
                                       description="Larger events are dead-lettered; keep "
                                       "it at most the topic's max.message.bytes.")

    def __init__(self, config: Config, ctx: PluginContext) -> None:
        self.name = ctx.name
        self.config = config
        self.ctx = ctx
        self._producer: Producer | None = None
        self._log_limit = LogLimiter(60.0)
        kafka_metrics.init_sink(self.name)

    def _new_producer(self) -> Producer:
        from confluent_kafka import Producer

        settings: dict[str, Any] = producer_settings(
            self.config, client_id=f"socd-{self.name}", config_dir=self.ctx.config_dir,
            delivery_timeout_secs=self.config.delivery_timeout_secs,
            max_message_bytes=self.config.max_message_bytes)
        settings.update(error_cb=self._on_error, logger=librdkafka_logger(self.name))
        return Producer(settings)

    async def start(self) -> None:
        # Connects lazily: a broker that is down at start makes the first write fail
        # (and the batch wait in the spool), not the daemon's start.
        self._producer = await asyncio.to_thread(self._new_producer)
        log.info("producing", sink=self.name, topic=self.config.topic,
                 servers=",".join(self.config.bootstrap_servers),
                 security=self.config.security_protocol, key_field=self.config.key_field)

    async def healthcheck(self) -> None:
        await asyncio.to_thread(self._check_topic)

    def _check_topic(self) -> None:
        from confluent_kafka import KafkaException

        producer = self._producer or self._new_producer()
        topic = self.config.topic
        try:
            metadata = producer.list_topics(topic, timeout=min(
                10.0, self.config.delivery_timeout_secs))
        except KafkaException as exc:
            raise HealthCheckError(f"kafka {','.join(self.config.bootstrap_servers)}: "
                                   f"{exc.args[0].str() if exc.args else exc}") from exc
        found = metadata.topics.get(topic)
        if found is None or found.error is not None:
            why = found.error.str() if found is not None and found.error else "not found"
            raise HealthCheckError(f"kafka topic {topic!r}: {why}")

    async def write(self, events: Sequence[Event]) -> None:
        if self._producer is None:
            self._producer = await asyncio.to_thread(self._new_producer)
        producer = self._producer
        outcome = await asyncio.to_thread(self._produce, producer, events)
        failed = [(i, err) for i, err in enumerate(outcome) if err is not None]
        if not failed:
            return
        kafka_metrics.PRODUCE_ERRORS.labels(self.name).inc(len(failed))
        retry = [(i, err) for i, err in failed if not _rejected(err)]
        for i, err in failed:
            if _rejected(err):
                self.ctx.dead_letter.write(stage=f"sink/{self.name}", reason="rejected",
                                           event=events[i], detail=_text(err))
        if retry:
            if any(not isinstance(err, str) and err.fatal() for _, err in retry):
                self._producer = None  # a fatal idempotence error: start a new producer
            raise SinkError(f"{len(retry)} of {len(events)} records to kafka topic "
                            f"{self.config.topic!r} not confirmed: {_text(retry[0][1])}")

    def _produce(self, producer: Producer, events: Sequence[Event]) -> list[Any]:
        """Produce ``events`` and wait for their delivery reports: one entry per event,
        None when delivered, else the error (a :class:`KafkaError`, or a text)."""
        outcome: list[Any] = ["no delivery report"] * len(events)
        topic = self.config.topic
        limit = self.config.max_message_bytes
        deadline = time.monotonic() + self.config.delivery_timeout_secs

        def report(index: int) -> Any:
            def on_delivery(err: KafkaError | None, _msg: Message) -> None:
                outcome[index] = err
            return on_delivery

        for i, event in enumerate(events):
            value = orjson.dumps(event)
            if len(value) > limit:
                outcome[i] = f"MSG_SIZE_TOO_LARGE: {len(value)} bytes > {limit}"
                continue
            key = self._key(event)
            headers = self._headers(event)
            while True:
                try:
                    producer.produce(topic, value=value, key=key, headers=headers,
                                     on_delivery=report(i))
                    break
                except BufferError:  # the local queue is full: let deliveries drain it
                    if time.monotonic() > deadline:
                        outcome[i] = "_QUEUE_FULL: librdkafka's local queue stayed full"
                        break
                    producer.poll(0.1)
        producer.flush(max(1.0, deadline - time.monotonic()) + 5.0)
        return outcome

    def _key(self, event: Event) -> bytes | None:
        field = self.config.key_field
        if field is None:
            return None
        value = get(event, field)
        if value is None:
            return None
        return value.encode() if isinstance(value, str) else orjson.dumps(value)

    @staticmethod
    def _headers(event: Event) -> list[tuple[str, str | bytes | None]]:
        headers: list[tuple[str, str | bytes | None]] = [("socd-version", __version__.encode())]
        for name, path in _HEADERS:
            value = get(event, path)
            if value is not None:
                headers.append((name, str(value).encode()))
        return headers

    def _on_error(self, err: KafkaError) -> None:
        held = self._log_limit.allow(err.name())
        if held is not None:
            log.error("Kafka producer error", sink=self.name, code=err.name(), error=err.str(),
                      fatal=err.fatal(), repeated=held,
                      servers=",".join(self.config.bootstrap_servers))

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            left = await asyncio.to_thread(producer.flush, self.config.delivery_timeout_secs)
            if left:
                log.warning("records not confirmed at close (the pipeline keeps their batch)",
                            sink=self.name, records=left)


def _rejected(err: Any) -> bool:
    name = err.split(":", 1)[0] if isinstance(err, str) else err.name()
    return name in _REJECTED


def _text(err: Any) -> str:
    return err if isinstance(err, str) else f"{err.name()}: {err.str()}"
