"""Kafka metrics shared by the ``kafka`` collector, the ``kafka`` sink and the
partitioned-correlation roles, and the consumer-lag arithmetic behind them.

Label sets stay bounded: ``group`` and ``sink`` come from the config, ``event`` from
a fixed set, and a ``partition`` label exists only while this consumer owns the
partition (at most the topic's partition count): :class:`LagGauge` removes a
partition's series when it is revoked or lost, so a rebalance leaves no stale
series that would show an old lag for ever.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from prometheus_client import Counter, Gauge

from socd.metrics import REGISTRY

CONSUMER_LAG = Gauge(
    "socd_kafka_consumer_lag",
    "Records of a partition this consumer owns that it has not processed yet (the "
    "partition's end offset minus the consumer's position, or its committed offset "
    "before the first fetch). Growing: socd reads slower than the producers write.",
    ["group", "topic", "partition"],
    registry=REGISTRY,
)
REBALANCES = Counter(
    "socd_kafka_rebalances",
    "Partition assignment changes of a consumer group member: `assigned`, `revoked` "
    "(handed over cleanly, offsets committed first) or `lost` (the member was thrown "
    "out, e.g. after missing max.poll.interval.ms: its uncommitted records are "
    "delivered again to the new owner).",
    ["group", "change"],
    registry=REGISTRY,
)
PRODUCE_ERRORS = Counter(
    "socd_kafka_produce_errors",
    "Records a Kafka sink could not deliver (delivery report with an error, or a full "
    "local queue); the batch is retried and spooled, never dropped.",
    ["sink"],
    registry=REGISTRY,
)

RebalanceEvent = Literal["assigned", "revoked", "lost"]



def partition_lag(low: int, high: int, offset: int) -> int:
    """Records still to read in a partition whose log spans ``[low, high)`` when the
    next record to read is ``offset`` (a position or a committed offset). A negative
    (logical) offset, such as librdkafka's OFFSET_INVALID (-1001), means none yet: the
    whole retained log is behind. Never negative: watermarks and positions are read at
    slightly different times."""
    if high < 0:
        return 0
    if offset < 0:
        offset = max(low, 0)
    return max(0, high - max(offset, low))


def init_group(group: str) -> None:
    """Show the rebalance counters of ``group`` at 0 before the first rebalance."""
    for event in ("assigned", "revoked", "lost"):
        REBALANCES.labels(group, event)


def count_rebalance(group: str, event: RebalanceEvent, partitions: int = 1) -> None:
    """Count one assignment change; nothing when it moved no partition (a cooperative
    rebalance calls back with an empty list for members it did not touch)."""
    if partitions:
        REBALANCES.labels(group, event).inc()


def init_sink(sink: str) -> None:
    PRODUCE_ERRORS.labels(sink)


class LagGauge:
    """The ``socd_kafka_consumer_lag`` series of one consumer group member."""

    def __init__(self, group: str) -> None:
        self.group = group
        self._owned: set[tuple[str, int]] = set()

    def set(self, topic: str, partition: int, lag: int) -> None:
        """Record the lag of an owned partition."""
        self._owned.add((topic, partition))
        CONSUMER_LAG.labels(self.group, topic, str(partition)).set(lag)

    def forget(self, partitions: Iterable[tuple[str, int]]) -> None:
        """Drop the series of partitions this member no longer owns."""
        for topic, partition in partitions:
            if (topic, partition) in self._owned:
                self._owned.discard((topic, partition))
                CONSUMER_LAG.remove(self.group, topic, str(partition))

    def forget_all(self) -> None:
        self.forget(list(self._owned))

    @property
    def owned(self) -> frozenset[tuple[str, int]]:
        return frozenset(self._owned)

