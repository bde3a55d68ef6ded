"""The ``kafka`` collector: a consumer-group member reading log and alert topics.

Delivery guarantee (at-least-once): auto commit is off. A consumed batch's offsets
are committed only once ``emit`` returned with the batch in the intake journal (on
by default), or, without the journal, once every sink stored it (:class:`Ack`);
:class:`socd.kafka.offsets.OffsetLedger` keeps batches in order so a commit never
passes a record that is not stored. After a crash, a restart or a rebalance the
partition's next reader starts at the last commit, so the records stored after it
are delivered again: alerts are deduplicated downstream by ``event.hash``
(Elasticsearch ``_id``, the alert store), docs/kafka.md.

Rebalancing is cooperative-sticky: when a member joins or leaves, only the
partitions that change owner stop; on revocation the member first commits what is
stored. A member that was thrown out (``lost``, e.g. after the pipeline held it
longer than ``max_poll_interval_secs``) commits nothing: the new owner reads again.

confluent-kafka's calls block, so the consumer lives on one dedicated thread: every
call to it (consume, commit, close, the rebalance callbacks inside consume) runs
there, one at a time, and the event loop only awaits them.

Hostile input: a record whose value, key and headers together exceed
``max_message_bytes`` is dead-lettered (``collect/oversize``, with its raw value);
everything else goes to the topic's decoder, which dead-letters what it cannot read
(invalid JSON, invalid UTF-8). Keys and headers are never parsed.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

import structlog
from pydantic import Field, model_validator

from socd import metrics
from socd.config import CollectorConfig, StrictModel
from socd.errors import SocdError
from socd.kafka import metrics as kafka_metrics
from socd.kafka.client import KafkaClientConfig, consumer_settings, librdkafka_logger
from socd.kafka.offsets import Batch, OffsetLedger, TopicPartition
from socd.plugins import Ack, Emit, PluginContext, RawRecord, durable_emit
from socd.ratelimit import LogLimiter

if TYPE_CHECKING:
    from confluent_kafka import Consumer, KafkaError, Message
    from confluent_kafka import TopicPartition as KafkaTopicPartition

log = structlog.get_logger("socd.collectors.kafka")

T = TypeVar("T")
_MAX_ROUTES = 1024  # topic -> decoder cache entries (regex subscriptions)
# librdkafka error names that mean "cannot reach or log in to the cluster".
_DOWN = frozenset({"_ALL_BROKERS_DOWN", "_TRANSPORT", "_AUTHENTICATION",
                   "SASL_AUTHENTICATION_FAILED", "_SSL", "_RESOLVE"})


class KafkaFatalError(SocdError):
    """librdkafka reported a fatal error: this consumer instance is unusable."""


class TopicSubscription(StrictModel):
    topic: str = Field(description="Topic name, or a regular expression starting with `^` "
                       "(every matching topic, including ones created later).")
    decoder: str | None = Field(None, description="Decoder for this topic's records; "
                                "defaults to the collector's decoder.")


class KafkaCollector:
    """Consumes Kafka topics in a consumer group and commits only what is stored."""

    class Config(KafkaClientConfig, CollectorConfig):
        type: Literal["kafka"]
        group_id: str | None = Field(None, description="Consumer group; members of one "
                                     "group split the topics' partitions. Default "
                                     "`socd-<collector name>`.")
        group_instance_id: str | None = Field(
            None, min_length=1, max_length=249, description="Static group membership "
            "(group.instance.id), unique per member, e.g. the pod name of a StatefulSet: a "
            "member restarted within `session_timeout_secs` gets its partitions back "
            "without a rebalance. A static member that stops does not leave the group: "
            "its partitions wait `session_timeout_secs` for it.")
        topics: list[str] = Field(default_factory=list, description="Shorthand: topics "
                                  "decoded by `decoder`.")
        subscriptions: list[TopicSubscription] = Field(default_factory=list)
        auto_offset_reset: Literal["earliest", "latest"] = Field(
            "earliest", description="Where a group with no committed offset starts: "
            "`earliest` reads what the topic still holds, `latest` only new records.")
        max_message_bytes: int = Field(1024 * 1024, ge=1024, le=64 * 1024 * 1024,
                                       description="Records larger than this (value, key "
                                       "and headers) are dead-lettered.")
        poll_timeout_secs: float = Field(0.5, gt=0, le=10, description="Longest wait of "
                                         "one poll; also how long a stop may wait for it.")
        session_timeout_secs: float = Field(45.0, ge=6, le=1800, description="A member "
                                            "silent this long is removed from the group.")
        max_poll_interval_secs: float = Field(
            300.0, ge=10, le=86400, description="A member that does not poll for this long "
            "(the pipeline held it: sinks down and no spool) leaves the group; its "
            "uncommitted records go to another member.")
        lag_interval_secs: float = Field(5.0, ge=0.5, le=300, description="How often the "
                                         "consumer lag metric is updated.")

        decoder_fields: ClassVar[tuple[tuple[str, ...], ...]] = (
            ("decoder",), ("subscriptions", "[*]", "decoder"))

        @model_validator(mode="after")
        def _has_topics(self) -> KafkaCollector.Config:
            if not self.topics and not self.subscriptions:
                raise ValueError("set `topics` or `subscriptions`")
            for sub in self.subscriptions:
                if sub.topic.startswith("^"):
                    try:
                        re.compile(sub.topic)
                    except re.error as exc:
                        raise ValueError(f"topic pattern {sub.topic!r}: {exc}") from None
            return self

        def default_decoder_users(self) -> list[str]:
            unnamed = [s.topic for s in self.subscriptions if not s.decoder]
            return (["the records of its `topics`"] if self.topics else []) + [
                f"the records of topic {topic!r}" for topic in unnamed]

    def __init__(self, config: Config, ctx: PluginContext) -> None:
        self.config = config
        self.ctx = ctx
        self.name = ctx.name
        self.group = config.group_id or f"socd-{ctx.name}"
        self.subscriptions = [*(TopicSubscription(topic=t) for t in config.topics),
                              *config.subscriptions]
        self._patterns: list[tuple[Callable[[str], bool], str]] = [
            (_topic_matcher(s.topic), s.decoder or config.decoder) for s in self.subscriptions]
        self._routes: dict[str, str] = {}
        self.ledger = OffsetLedger()
        self.lag = kafka_metrics.LagGauge(self.group)
        self._ready = False
        self._consumer: Consumer | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._last_lag = 0.0
        self._fatal: str | None = None
        self._log_limit = LogLimiter(60.0)
        metrics.init_collector(self.name)
        metrics.COLLECTOR_RECONNECTS.labels(self.name)
        kafka_metrics.init_group(self.group)

    @property
    def ready(self) -> bool:
        return self._ready

    def _set_ready(self, ready: bool) -> None:
        self._ready = ready
        metrics.COMPONENT_UP.labels("collector", self.name).set(1 if ready else 0)

    def decoder_for(self, topic: str) -> str:
        """The decoder of ``topic``: the first subscription that names or matches it."""
        decoder = self._routes.get(topic)
        if decoder is None:
            decoder = next((d for match, d in self._patterns if match(topic)),
                           self.config.decoder)
            if len(self._routes) >= _MAX_ROUTES:
                self._routes.clear()
            self._routes[topic] = decoder
        return decoder

    # -- the consumer thread ---------------------------------------------------------------

    async def _call(self, fn: Callable[[], T]) -> T:
        assert self._executor is not None
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    def _open(self) -> None:
        from confluent_kafka import Consumer

        settings: dict[str, Any] = consumer_settings(
            self.config, group_id=self.group, client_id=f"socd-{self.name}",
            config_dir=self.ctx.config_dir, auto_offset_reset=self.config.auto_offset_reset,
            session_timeout_secs=self.config.session_timeout_secs,
            max_poll_interval_secs=self.config.max_poll_interval_secs,
            instance_id=self.config.group_instance_id)
        settings.update(error_cb=self._on_error, on_commit=self._on_commit,
                        logger=librdkafka_logger(self.name))
        consumer = Consumer(settings)
        consumer.subscribe([s.topic for s in self.subscriptions], on_assign=self._on_assign,
                           on_revoke=self._on_revoke, on_lost=self._on_lost)
        self._consumer = consumer

    def _poll(self, limit: int) -> list[Message]:
        """Commit what is stored, then fetch up to ``limit`` records."""
        consumer = self._consumer
        assert consumer is not None
        self._commit(self.ledger.take(), asynchronous=True)
        messages = consumer.consume(limit, self.config.poll_timeout_secs)
        now = time.monotonic()
        if now - self._last_lag >= self.config.lag_interval_secs:
            self._last_lag = now
            if not self._ready:
                self._probe()
            self._update_lag()
        return messages

    def _probe(self) -> None:
        """After the brokers were lost: ready again once a metadata request succeeds (an
        idle member sees no assignment or record that would tell it)."""
        from confluent_kafka import KafkaException

        assert self._consumer is not None
        with contextlib.suppress(KafkaException):
            self._consumer.list_topics(timeout=1.0)
            self._set_ready(True)

    def _commit(self, offsets: dict[TopicPartition, int], *, asynchronous: bool) -> None:
        if not offsets or self._consumer is None:
            return
        from confluent_kafka import KafkaException
        from confluent_kafka import TopicPartition as KafkaTopicPartition

        listed = [KafkaTopicPartition(t, p, o) for (t, p), o in offsets.items()]
        try:
            if asynchronous:
                self._consumer.commit(offsets=listed, asynchronous=True)
            else:
                self._consumer.commit(offsets=listed, asynchronous=False)
        except KafkaException as exc:
            self._commit_failed(str(exc.args[0] if exc.args else exc))

    def _update_lag(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        try:
            positions = consumer.position(consumer.assignment())
            for tp in positions:
                low, high = consumer.get_watermark_offsets(tp, cached=True) or (-1, -1)
                if high < 0:
                    low, high = consumer.get_watermark_offsets(tp, timeout=1.0) or (-1, -1)
                self.lag.set(tp.topic, tp.partition, kafka_metrics.partition_lag(
                    low, high, tp.offset))
        except Exception as exc:  # a metric must never stop intake
            log.debug("consumer lag not updated", collector=self.name, error=str(exc))

    def _close(self) -> None:
        """Commit what is stored and leave the group (its partitions move on at once)."""
        if self._consumer is None:
            return
        try:
            self._commit(self.ledger.take(), asynchronous=False)
        finally:
            consumer, self._consumer = self._consumer, None
            consumer.close()
            self.lag.forget_all()

    # -- callbacks (on the consumer thread, inside consume) --------------------------------

    def _on_assign(self, _consumer: Consumer, partitions: list[KafkaTopicPartition]) -> None:
        kafka_metrics.count_rebalance(self.group, "assigned", len(partitions))
        self._set_ready(True)
        if partitions:
            log.info("partitions assigned", collector=self.name, group=self.group,
                     partitions=_names(partitions))

    def _on_revoke(self, _consumer: Consumer, partitions: list[KafkaTopicPartition]) -> None:
        kafka_metrics.count_rebalance(self.group, "revoked", len(partitions))
        owned = [(tp.topic, tp.partition) for tp in partitions]
        self._commit(self.ledger.take(owned), asynchronous=False)
        self.ledger.drop(owned)
        self.lag.forget(owned)
        if partitions:
            log.info("partitions revoked; stored records committed", collector=self.name,
                     group=self.group, partitions=_names(partitions))

    def _on_lost(self, _consumer: Consumer, partitions: list[KafkaTopicPartition]) -> None:
        kafka_metrics.count_rebalance(self.group, "lost", len(partitions))
        owned = [(tp.topic, tp.partition) for tp in partitions]
        self.ledger.drop(owned)
        self.lag.forget(owned)
        log.warning("partitions lost (this member was removed from the group); their "
                    "uncommitted records go to the new owner", collector=self.name,
                    group=self.group, partitions=_names(partitions),
                    hint="raise max_poll_interval_secs if the pipeline held intake longer")

    def _on_error(self, err: KafkaError) -> None:
        name = err.name()
        if err.fatal():  # e.g. a static member fenced by another with the same id
            self._fatal = f"{name}: {err.str()}"
        metrics.ERRORS.labels(f"collector/{self.name}", f"Kafka{name}").inc()
        if name in _DOWN:
            if self._ready:
                metrics.COLLECTOR_RECONNECTS.labels(self.name).inc()
            self._set_ready(False)
        held = self._log_limit.allow(name)
        if held is None:
            return
        auth = "AUTHENTICATION" in name
        log.error("Kafka client error", collector=self.name, group=self.group,
                  servers=",".join(self.config.bootstrap_servers), error=err.str(),
                  code=name, fatal=err.fatal(), repeated=held,
                  **({"hint": "check `sasl.username`, `sasl.password` and `sasl.mechanism` "
                      "(SCRAM users are per mechanism on the broker)"} if auth else {}))

    def _on_commit(self, err: KafkaError | None, _partitions: list[KafkaTopicPartition]) -> None:
        if err is not None:
            self._commit_failed(err.str())

    def _commit_failed(self, error: str) -> None:
        """Not fatal: the records after the last commit are read again after the next
        rebalance or restart (and stored once, by event.hash)."""
        metrics.ERRORS.labels(f"collector/{self.name}", "KafkaCommit").inc()
        held = self._log_limit.allow("commit")
        if held is not None:
            log.warning("offset commit failed; the records after the last commit will be "
                        "delivered again", collector=self.name, group=self.group,
                        error=error, repeated=held)

    # -- the loop --------------------------------------------------------------------------

    async def run(self, emit: Emit) -> None:
        # The daemon calls run again after a failure: a batch of the failed run that was
        # never stored must not hold back the commits of the new consumer's batches.
        self.ledger = OffsetLedger()
        self._fatal = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"kafka-{self.name}")
        durable = durable_emit(emit)
        limit = min(self.config.batch_max_events, 10_000)
        try:
            await self._call(self._open)
            log.info("consuming", collector=self.name, group=self.group,
                     servers=",".join(self.config.bootstrap_servers),
                     topics=[s.topic for s in self.subscriptions],
                     security=self.config.security_protocol)
            while True:
                messages = await self._call(lambda: self._poll(limit))
                if self._fatal is not None:
                    # the consumer cannot go on: the daemon runs the collector again,
                    # with a new consumer, after a backoff
                    raise KafkaFatalError(f"fatal Kafka consumer error {self._fatal}")
                if messages:
                    await self._hand_on(messages, emit, durable)
        finally:
            self._set_ready(False)
            try:
                await asyncio.shield(self._call(self._close))
            finally:
                self._executor.shutdown(wait=False)

    async def _hand_on(self, messages: list[Message], emit: Emit, durable: bool) -> None:
        """Emit the records of one poll in batches and record their offsets in the
        ledger, released once every part is stored."""
        offsets: dict[TopicPartition, int] = {}
        parts = self._records(messages, offsets)
        batch = self.ledger.add(offsets, len(parts))
        for records in parts:
            if durable:
                await emit(records, None)
                self.ledger.done(batch)
            else:
                await emit(records, Ack(_done(self.ledger, batch)))

    def _records(self, messages: list[Message],
                 offsets: dict[TopicPartition, int]) -> list[list[RawRecord]]:
        """The records of ``messages`` split into batches of at most ``batch_max_bytes``;
        oversize records dead-lettered, error events logged; ``offsets`` gets the next
        offset to read of each partition seen."""
        max_bytes = self.config.max_message_bytes
        limit_bytes = self.config.batch_max_bytes
        parts: list[list[RawRecord]] = []
        records: list[RawRecord] = []
        size = 0
        for message in messages:
            err = message.error()
            if err is not None:
                self._message_error(err, message.topic())
                continue
            topic = message.topic() or ""
            partition = message.partition() or 0
            offsets[(topic, partition)] = (message.offset() or 0) + 1
            value = message.value()
            data = value if isinstance(value, bytes) else b""
            total = _record_bytes(message, data)
            if total > max_bytes:
                metrics.EVENTS_RECEIVED.labels(self.name).inc()
                self.ctx.dead_letter.write(
                    stage="collect", reason="oversize", raw=data[:max_bytes],
                    collector=self.name, source=topic,
                    detail=f"{total} bytes (value, key and headers) > {max_bytes}; "
                    f"partition {partition} offset {message.offset()}")
                continue
            records.append(RawRecord(data, self.decoder_for(topic), self.name, topic))
            size += len(data)
            if size >= limit_bytes:
                parts.append(records)
                records, size = [], 0
        if records:
            parts.append(records)
        if parts:
            self._set_ready(True)
        return parts

    def _message_error(self, err: KafkaError, topic: str | None) -> None:
        name = err.name()
        if err.fatal() or name == "_FATAL":  # consume reports it as a message error
            self._fatal = err.str()
        metrics.ERRORS.labels(f"collector/{self.name}", f"Kafka{name}").inc()
        if self._log_limit.allow(("message", name, topic)) is None:
            return
        log.warning("Kafka consumer error", collector=self.name, group=self.group,
                    topic=topic, code=name, error=err.str(),
                    **({"hint": "the topic does not exist (create it; socd does not)"}
                       if name == "UNKNOWN_TOPIC_OR_PART" else {}))


def _done(ledger: OffsetLedger, batch: Batch) -> Callable[[], None]:
    return lambda: ledger.done(batch)


def _record_bytes(message: Message, value: bytes) -> int:
    """Size of a record as the limit counts it: value, key and every header."""
    key = message.key()
    total = len(value) + (len(key) if isinstance(key, bytes | str) else 0)
    headers = message.headers()
    if headers:
        pairs = headers.items() if isinstance(headers, dict) else headers
        for name, header in pairs:
            total += len(name) + (len(header) if isinstance(header, bytes | str) else 0)
    return total


def _topic_matcher(topic: str) -> Callable[[str], bool]:
    if topic.startswith("^"):
        return re.compile(topic).fullmatch  # type: ignore[return-value]
    return topic.__eq__


def _names(partitions: list[KafkaTopicPartition]) -> list[str]:
    return [f"{tp.topic}[{tp.partition}]" for tp in partitions[:50]]
