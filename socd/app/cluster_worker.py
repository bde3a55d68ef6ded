"""The worker role: stateful rules over the repartition topics, state per partition.

All workers are one consumer group (``<prefix>.workers``, cooperative-sticky) over every
repartition topic. For each (topic, partition) it owns, a worker keeps a
:class:`~socd.engine.RuleEngine` holding only that topic's rules, so a key's state lives
in exactly one process.

**Assignment.** The state of a partition a worker takes over is rebuilt from Kafka: it
seeks to ``offsets_for_times(now - longest window - rebuild_slack_secs)`` and replays up
to the group's committed offset with the alerts muted (the previous owner raised them),
then goes on from the committed offset live. **Revocation** waits for the batches in
flight, commits, and drops the partition's state. **Lost** partitions (the group gave
them away after a timeout) are dropped without a commit.

**Delivery.** A batch's alerts go to the sinks through the pipeline
(:meth:`~socd.app.pipeline.Pipeline.submit_processed`: same runners, spools and
notification core as in one process); its offsets are committed once they are stored or
spooled, in order. A crash replays from the last commit: the alerts raised again have the
same ids (``event.hash`` = rule, key, first trigger event), which Elasticsearch and the
SQLite store keep once; a notification queue knows only its own process, so alerts
another worker raised before it crashed may be notified again (docs/scaling.md). An
event an intake published twice (it crashed between Kafka's confirmation and its
journal's release) is skipped (:mod:`socd.app.cluster_seen`), so a count does not
count it twice.

Every Kafka call is made in one worker thread at a time (confluent-kafka is blocking);
rebalance callbacks run inside ``consume`` there, while the event loop is not using the
engines (it awaits the poll).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog

from socd.app.cluster_metrics import (
    DUPLICATES,
    PARTITIONS_ASSIGNED,
    PROCESSED,
    REBUILD_EVENTS,
    REBUILD_SECONDS,
    REBUILDS,
    STATE_KEYS,
)
from socd.app.cluster_plan import ClusterPlan, KeyTopic
from socd.app.cluster_seen import SeenEvents, publish_id
from socd.app.deadletter import DeadLetter
from socd.config import ClassificationConfig
from socd.config.cluster import ClusterConfig
from socd.engine import CompiledRule, RuleEngine
from socd.event import Event, set_severity
from socd.kafka.client import KafkaClientConfig, consumer_settings, librdkafka_logger
from socd.kafka.metrics import LagGauge, count_rebalance, init_group, partition_lag
from socd.metrics import count_alert
from socd.plugins import Ack
from socd.ratelimit import LogLimiter
from socd.vocabulary import ASSET_KINDS

log = structlog.get_logger("socd.cluster")

Deliver = Callable[[list[Event], Ack, float], Awaitable[None]]
EngineFactory = Callable[[Sequence[CompiledRule]], RuleEngine]
TP = tuple[str, int]

STAGE = "cluster/worker"
_REVOKE_WAIT_SECS = 60.0
_POLL_SECS = 0.5
_LAG_EVERY_SECS = 5.0
_COMMIT_EVERY_SECS = 0.2


def consumer_config(client: KafkaClientConfig, config_dir: str, group: str,
                    cfg: ClusterConfig) -> dict[str, Any]:
    """One group, cooperative-sticky, offsets committed by socd only (socd.kafka.client),
    the group's session timeout from ``cluster.session_timeout_ms``."""
    settings: dict[str, Any] = dict(consumer_settings(
        client, group_id=group, client_id="socd-cluster-worker", config_dir=config_dir,
        session_timeout_secs=cfg.session_timeout_ms / 1000))
    settings.update({"heartbeat.interval.ms": max(500, cfg.session_timeout_ms // 5),
                     "logger": librdkafka_logger("cluster-worker")})
    return settings


def _retry(call: Callable[[], Any], attempts: int = 20) -> Any:
    """``call()`` again while Kafka answers with a passing error (a new topic's leader
    not elected yet: NOT_LEADER_FOR_PARTITION, LEADER_NOT_AVAILABLE)."""
    from confluent_kafka import KafkaException

    for attempt in range(attempts):
        try:
            return call()
        except KafkaException:
            if attempt == attempts - 1:
                raise
            time.sleep(min(2.0, 0.1 * 2 ** attempt))
    return None  # pragma: no cover


def state_size(engine: RuleEngine) -> int:
    """Keys an engine holds (groups, suppression and escalation entries)."""
    return sum(len(s.groups) + len(s.suppress) + len(s.escalate) for s in engine.state.values())


@dataclass(eq=False)
class PartitionState:
    """One owned partition: its engine, where live processing starts, the rebuild."""

    topic: KeyTopic
    partition: int
    engine: RuleEngine
    # The committed offset at assignment: messages before it are a muted replay.
    live_from: int
    next_offset: int
    # events read lately: an intake's republished batch is skipped
    seen: SeenEvents
    assigned_at: float = field(default_factory=time.monotonic)
    rebuilding: bool = True
    replayed: int = 0

    def finish_rebuild(self) -> None:
        if not self.rebuilding:
            return
        self.rebuilding = False
        REBUILDS.labels(self.topic.name).inc()
        REBUILD_SECONDS.labels(self.topic.name).observe(time.monotonic() - self.assigned_at)
        log.info("partition state rebuilt", topic=self.topic.name, partition=self.partition,
                 replayed=self.replayed, keys=state_size(self.engine),
                 secs=round(time.monotonic() - self.assigned_at, 3))


@dataclass(eq=False)
class _InFlight:
    offsets: dict[TP, int]
    done: bool = False


class AlertFinisher:
    """What the classifier gives every rule alert in one process (defaults for asset
    kind, layer and severity, the lifecycle's ``new``, socd_alerts_total)."""

    def __init__(self, config: ClassificationConfig) -> None:
        self.config = config
        self.kinds = ASSET_KINDS | {config.default_asset_kind}

    def finish(self, alerts: list[Event]) -> None:
        cfg = self.config
        for alert in alerts:
            socd = alert.setdefault("socd", {})
            if "severity" not in socd:
                set_severity(alert, cfg.default_alert_severity)
            socd.setdefault("asset_kind", cfg.default_asset_kind)
            socd.setdefault("layer", cfg.default_layer)
            socd["alert"] = {"status": "new"}
            count_alert(socd, self.kinds)


class ClusterWorker:
    """Consumes the repartition topics; see the module docstring."""

    def __init__(self, plan: ClusterPlan, settings: dict[str, Any], cfg: ClusterConfig,
                 make_engine: EngineFactory, deliver: Deliver,
                 finisher: AlertFinisher, dead_letter: DeadLetter,
                 before_batch: Callable[[], None] | None = None) -> None:
        self.plan = plan
        self.topics = plan.by_name()
        self.cfg = cfg
        self.group = str(settings["group.id"])
        self.settings = settings
        self.make_engine = make_engine
        self.deliver = deliver
        self.finisher = finisher
        self.dead_letter = dead_letter
        self.before_batch = before_batch
        self.parts: dict[TP, PartitionState] = {}
        self._consumer: Any = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        # Rebalance events recorded by the callbacks (consume thread), applied by the loop.
        self._changes: list[tuple[str, TP, int, int]] = []
        # Offsets whose batches are stored, not yet committed; batches in flight in order.
        self._lock = threading.Condition()
        self._inflight: deque[_InFlight] = deque()
        self._ready: dict[TP, int] = {}
        self._owned: set[TP] = set()  # as the consume thread knows it
        self._room = asyncio.Event()
        self._errors = LogLimiter(60.0)
        # How long a revocation waits for the batches in flight (shorter when stopping).
        self._revoke_wait = _REVOKE_WAIT_SECS
        self.lag = LagGauge(self.group)
        self._lag_at = 0.0
        self._commit_at = 0.0
        init_group(self.group)
        self._drained = asyncio.Event()  # set whenever nothing is in flight
        self.events_processed = 0
        self.duplicates_skipped = 0
        self.ready = False

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        from confluent_kafka import Consumer

        self._consumer = Consumer({**self.settings, "on_commit": self._on_commit})
        self._consumer.subscribe(self.plan.topic_names, on_assign=self._on_assign,
                                 on_revoke=self._on_revoke, on_lost=self._on_lost)
        self._task = asyncio.create_task(self._run(), name="cluster/worker")
        self.ready = True

    async def stop(self, drain_secs: float) -> None:
        """Stop consuming, wait (up to ``drain_secs``) for the batches in flight to be
        stored, commit them and leave the group (its partitions go to the others)."""
        self._stopping = True
        self._room.set()
        if self._task is not None:
            await asyncio.wait({self._task})
        consumer, self._consumer = self._consumer, None
        if consumer is None:
            return
        if self._inflight:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), drain_secs)
        self._revoke_wait = 0.0  # what is still in flight is read again by the next owner
        await asyncio.to_thread(self._close, consumer)

    def _close(self, consumer: Any) -> None:
        self._commit(consumer)
        consumer.close()  # leaves the group: the revoke callback runs (nothing in flight)
        self.lag.forget_all()
        for tp in list(self.parts):
            self._drop(tp)

    # -- the consume thread -----------------------------------------------------------

    def _poll(self) -> list[Any]:
        consumer = self._consumer
        if time.monotonic() - self._commit_at >= _COMMIT_EVERY_SECS:
            # Asynchronous between polls (a broker round trip per batch would cap the
            # rate); the revocation and the close commit synchronously.
            self._commit_at = time.monotonic()
            self._commit(consumer, wait=False)
        # The first message as soon as there is one (consume() would wait for a full
        # batch or the timeout: up to _POLL_SECS of latency at low rates), then what is
        # already fetched, without waiting.
        first = consumer.poll(_POLL_SECS)
        msgs: list[Any] = [] if first is None else \
            [first, *consumer.consume(self.cfg.batch_max_events - 1, 0)]
        if time.monotonic() - self._lag_at >= _LAG_EVERY_SECS:
            self._lag_at = time.monotonic()
            self._update_lag(consumer)
        return msgs

    def _update_lag(self, consumer: Any) -> None:
        """socd_kafka_consumer_lag of the owned partitions: the end offset librdkafka
        learnt from its last fetch minus the position (no request to the brokers)."""
        from confluent_kafka import KafkaException, TopicPartition

        with self._lock:
            owned = sorted(self._owned)
        self.lag.forget([tp for tp in self.lag.owned if tp not in set(owned)])
        if not owned:
            return
        try:
            positions = consumer.position([TopicPartition(t, p) for t, p in owned])
            for tp in positions:
                low, high = consumer.get_watermark_offsets(tp, cached=True)
                self.lag.set(tp.topic, tp.partition, partition_lag(low, high, tp.offset))
        except KafkaException as exc:
            log.debug("consumer lag not known", error=str(exc))

    def _commit(self, consumer: Any, only: set[TP] | None = None, *,
                wait: bool = True) -> None:
        from confluent_kafka import KafkaException, TopicPartition

        with self._lock:
            # Only partitions this worker still owns: a late commit of a partition given
            # away would move its group offset back behind the new owner's.
            ready = {tp: o for tp, o in self._ready.items()
                     if tp in self._owned and (only is None or tp in only)}
            for tp in ready:
                del self._ready[tp]
        if not ready:
            return
        try:
            consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in ready.items()],
                            asynchronous=not wait)
        except KafkaException as exc:
            # Not lost: the next owner (or this worker, on the next batch) commits later;
            # at worst those batches are processed again (same alert ids).
            log.warning("offset commit failed", error=str(exc), partitions=len(ready))
            with self._lock:
                for tp, o in ready.items():
                    self._ready[tp] = max(o, self._ready.get(tp, 0))

    def _on_commit(self, err: Any, partitions: list[Any]) -> None:
        """An asynchronous commit that failed (a rebalance under way, the coordinator
        moving) is tried again with the next one, for the partitions still owned: a
        partition that gets no more messages would else keep its old offset."""
        failed = [tp for tp in partitions if err is not None or tp.error is not None]
        if not failed:
            return
        with self._lock:
            for tp in failed:
                key = (tp.topic, tp.partition)
                if key in self._owned and tp.offset >= 0:
                    self._ready[key] = max(tp.offset, self._ready.get(key, 0))

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        # An exception must not leave a rebalance callback: confluent-kafka would raise
        # it from consume() with the assignment half done.
        try:
            self._assign(consumer, partitions)
        except Exception:
            log.exception("partition assignment failed; the partitions are rebuilt from "
                          "their beginning")
            consumer.incremental_assign(partitions)

    def _assign(self, consumer: Any, partitions: list[Any]) -> None:
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        if not partitions:  # a rebalance that gives this worker nothing new
            consumer.incremental_assign(partitions)
            return
        committed = _retry(lambda: consumer.committed(partitions, timeout=10))
        now_ms = int(time.time() * 1000)
        queries = []
        for tp in committed:
            topic = self.topics[tp.topic]
            back_ms = int((topic.window + self.cfg.rebuild_slack_secs) * 1000)
            queries.append(TopicPartition(tp.topic, tp.partition, max(0, now_ms - back_ms)))
        try:
            found = _retry(lambda: consumer.offsets_for_times(queries, timeout=10))
        except Exception as exc:  # the replay then starts at the beginning: slower, exact
            log.warning("offsets_for_times failed; rebuilding from the partitions' start",
                        error=str(exc))
            found = [TopicPartition(q.topic, q.partition, 0) for q in queries]
        starts = []
        for tp, at in zip(committed, found, strict=True):
            live_from = tp.offset if tp.offset >= 0 else 0
            if tp.offset < 0:
                start = OFFSET_BEGINNING  # the group never committed here: all is live
            else:
                start = at.offset if 0 <= at.offset < live_from else live_from
            starts.append(TopicPartition(tp.topic, tp.partition, start))
            self._changes.append(("assign", (tp.topic, tp.partition),
                                  max(start, 0), live_from))
        consumer.incremental_assign(starts)
        count_rebalance(self.group, "assigned", len(starts))
        with self._lock:
            self._owned.update((t.topic, t.partition) for t in starts)
        log.info("partitions assigned", group=self.group,
                 partitions=[f"{t.topic}[{t.partition}]@{t.offset}" for t in starts])

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        tps = {(tp.topic, tp.partition) for tp in partitions}
        try:
            with self._lock:
                self._lock.wait_for(lambda: not self._inflight, timeout=self._revoke_wait)
            self._commit(consumer, tps)
        except Exception:  # not committed: the next owner processes a little again
            log.exception("commit on revocation failed")
        self._disown(tps)
        consumer.incremental_unassign(partitions)
        count_rebalance(self.group, "revoked", len(tps))
        self._changes.extend(("revoke", tp, 0, 0) for tp in tps)
        log.info("partitions revoked", group=self.group, partitions=len(tps))

    def _on_lost(self, consumer: Any, partitions: list[Any]) -> None:
        tps = {(tp.topic, tp.partition) for tp in partitions}
        self._disown(tps)
        consumer.incremental_unassign(partitions)
        count_rebalance(self.group, "lost", len(tps))
        self._changes.extend(("revoke", tp, 0, 0) for tp in tps)
        log.warning("partitions lost (the group gave them away)", group=self.group,
                    partitions=len(tps))

    def _disown(self, tps: set[TP]) -> None:
        """Forget partitions given away: nothing more is committed for them (what was
        not is processed again by the next owner)."""
        with self._lock:
            self._owned -= tps
            for tp in tps:
                self._ready.pop(tp, None)
        self.lag.forget(tps)

    # -- the event loop ------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._stopping:
            try:
                msgs = await asyncio.to_thread(self._poll)
            except Exception:
                log.exception("Kafka poll failed; retrying")
                await asyncio.sleep(1.0)
                continue
            self._apply_changes()
            if msgs:
                if self.before_batch is not None:
                    self.before_batch()
                await self._handle(msgs)
            await self._wait_for_room()

    def _apply_changes(self) -> None:
        changes, self._changes = self._changes, []
        for kind, tp, start, live_from in changes:
            if kind == "revoke":
                self._drop(tp)
                continue
            topic = self.topics[tp[0]]
            window_ms = int((topic.window + self.cfg.rebuild_slack_secs) * 1000)
            state = PartitionState(topic, tp[1], self.make_engine(topic.rules),
                                   live_from=live_from, next_offset=start,
                                   seen=SeenEvents(window_ms))
            self.parts[tp] = state
            if start >= live_from:
                state.finish_rebuild()
        self._update_assigned()

    def _drop(self, tp: TP) -> None:
        if self.parts.pop(tp, None) is not None:
            with contextlib.suppress(KeyError):
                STATE_KEYS.remove(tp[0], str(tp[1]))
        self._update_assigned()

    def _update_assigned(self) -> None:
        counts = dict.fromkeys(self.topics, 0)
        for t, _ in self.parts:
            counts[t] += 1
        for name, n in counts.items():
            PARTITIONS_ASSIGNED.labels(name).set(n)

    async def _handle(self, msgs: list[Any]) -> None:
        by_tp: dict[TP, list[Any]] = {}
        for msg in msgs:
            error = msg.error()
            if error is not None:
                # A broker away reports an error per poll: one line a minute per kind.
                held = self._errors.allow(error.code())
                if held is not None:
                    log.warning("Kafka consumer error", error=str(error), repeated=held)
                continue
            by_tp.setdefault((msg.topic(), msg.partition()), []).append(msg)
        alerts: list[Event] = []
        offsets: dict[TP, int] = {}
        for tp, batch in by_tp.items():
            state = self.parts.get(tp)
            if state is None:
                continue  # revoked meanwhile: its next owner reads it
            last = self._run_partition(state, batch, alerts)
            if last is not None:
                offsets[tp] = last + 1
        if not offsets and not alerts:
            return
        entry = _InFlight(offsets)
        with self._lock:
            self._inflight.append(entry)
            self._drained.clear()
        if not alerts:
            self._settle(entry)
            return
        self.finisher.finish(alerts)
        ack = Ack(lambda: self._settle(entry))
        # latency metrics count from the first message's publication by the intake
        await self.deliver(alerts, ack, min(m.timestamp()[1] for batch in by_tp.values()
                                            for m in batch) / 1000)

    def _run_partition(self, state: PartitionState, batch: list[Any],
                       alerts: list[Event]) -> int | None:
        """Run one partition's messages; returns the last live offset (None if none)."""
        muted: list[Event] = []
        live: list[Event] = []
        last_live: int | None = None
        repeats = 0
        seen = state.seen
        for msg in batch:
            offset = msg.offset()
            if offset < state.next_offset:
                continue  # already seen (a seek back in a rebalance)
            state.next_offset = offset + 1
            event = self._decode(msg)
            is_live = offset >= state.live_from
            if is_live:
                last_live = offset  # committed even when skipped below
            if event is None:
                continue
            ev = event["event"]
            if seen.repeated(ev.get("hash"), ev.get("created"), publish_id(msg.headers()),
                             msg.timestamp()[1]):
                repeats += is_live  # a replayed repeat was counted by its first reader
                continue
            (live if is_live else muted).append(event)
        engine = state.engine
        name = state.topic.name
        if repeats:
            DUPLICATES.labels(name).inc(repeats)
            self.duplicates_skipped += repeats
        if muted:
            engine.process(muted)  # alerts muted: the previous owner raised them
            state.replayed += len(muted)
            REBUILD_EVENTS.labels(name).inc(len(muted))
        if state.rebuilding and state.next_offset >= state.live_from:
            state.finish_rebuild()
        if live:
            out = engine.process(live)
            alerts.extend(out[len(live):])
            PROCESSED.labels(name).inc(len(live))
            self.events_processed += len(live)
        STATE_KEYS.labels(name, str(state.partition)).set(state_size(engine))
        return last_live

    def _decode(self, msg: Any) -> Event | None:
        raw = msg.value()
        try:
            event = orjson.loads(raw) if raw is not None else None
        except orjson.JSONDecodeError as exc:
            event, detail = None, str(exc)
        else:
            detail = "not a JSON object with an event section"
        if type(event) is dict and type(event.get("event")) is dict \
                and type(event.get("socd")) is dict:
            return event
        self.dead_letter.write(stage=STAGE, reason="invalid_message",
                               raw=raw if isinstance(raw, bytes) else b"",
                               source=f"{msg.topic()}[{msg.partition()}]@{msg.offset()}",
                               detail=detail)
        return None

    def _settle(self, entry: _InFlight) -> None:
        """A batch's alerts are stored (or it had none): its offsets, and those of every
        earlier settled batch, may be committed (in order: never past an unstored one)."""
        with self._lock:
            entry.done = True
            while self._inflight and self._inflight[0].done:
                for tp, offset in self._inflight.popleft().offsets.items():
                    if tp in self._owned:
                        self._ready[tp] = max(offset, self._ready.get(tp, 0))
            self._lock.notify_all()
            if not self._inflight:
                self._drained.set()
        self._room.set()

    async def _wait_for_room(self) -> None:
        while len(self._inflight) >= self.cfg.max_in_flight_batches and not self._stopping:
            self._room.clear()
            await self._room.wait()
