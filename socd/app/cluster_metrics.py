"""Metrics of the Kafka roles (docs/scaling.md; the dashboard and alert rules use these
names). Label values are topic names (one per distinct group-by key of the rule pack) and
partition numbers (at most ``cluster.partitions``): bounded by the configuration."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from socd.metrics import REGISTRY

PARTITIONS_ASSIGNED = Gauge(
    "socd_cluster_partitions_assigned",
    "Partitions of a repartition topic this worker owns now.", ["topic"], registry=REGISTRY)
STATE_KEYS = Gauge(
    "socd_cluster_state_keys",
    "Keys a worker's rules hold for one partition (groups, sequences, suppression and "
    "escalation entries).", ["topic", "partition"], registry=REGISTRY)
REBUILD_SECONDS = Histogram(
    "socd_cluster_state_rebuild_seconds",
    "Time from a partition's assignment to its state rebuilt (replay done, alerts live).",
    ["topic"], registry=REGISTRY,
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900))
REBUILD_EVENTS = Counter(
    "socd_cluster_state_rebuild_events_total",
    "Events replayed with alerts muted to rebuild rule state after an assignment.",
    ["topic"], registry=REGISTRY)
REBUILDS = Counter(
    "socd_cluster_rebuilds_total",
    "Partition assignments whose state was rebuilt (or found nothing to replay).",
    ["topic"], registry=REGISTRY)
PUBLISHED = Counter(
    "socd_cluster_events_published_total",
    "Events an intake published to a repartition topic (delivery confirmed).", ["topic"],
    registry=REGISTRY)
PROCESSED = Counter(
    "socd_cluster_events_processed_total",
    "Events a worker ran through a partition's rules (live, not rebuild replays).",
    ["topic"], registry=REGISTRY)
DUPLICATES = Counter(
    "socd_cluster_duplicates_skipped_total",
    "Events a worker skipped because it had read them from another intake run within "
    "the partition's longest window (a batch the journal published again after a crash).",
    ["topic"], registry=REGISTRY)
