"""socd's self-metrics: one set of names shared by every plugin.

All metrics live in :data:`REGISTRY` (not the process-global default registry)
so that ``/metrics`` shows socd's series and nothing else. Labels are bounded:
plugin names come from the config, reasons and error types from fixed sets in
the code; no address or free text is ever a label value.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from socd import __version__

REGISTRY = CollectorRegistry(auto_describe=True)

EVENTS_RECEIVED = Counter(
    "socd_events_received_total",
    "Records received by a collector, before decoding.",
    ["collector"],
    registry=REGISTRY,
)
EVENTS_DECODED = Counter(
    "socd_events_decoded_total",
    "Events produced by a decoder.",
    ["decoder"],
    registry=REGISTRY,
)
EVENTS_DROPPED = Counter(
    "socd_events_dropped_total",
    "Records or events not delivered, by pipeline stage and reason. Every drop is "
    "also written to the dead-letter file.",
    ["stage", "reason"],
    registry=REGISTRY,
)
EVENTS_SENT = Counter(
    "socd_events_sent_total",
    "Events stored by a sink.",
    ["sink"],
    registry=REGISTRY,
)
ALERTS = Counter(
    "socd_alerts_total",
    "Alerts classified, by SOC severity, protection layer and asset kind.",
    ["severity", "layer", "asset_kind"],
    registry=REGISTRY,
)
IOC_HITS = Counter(
    "socd_ioc_hits_total",
    "Events with at least one value on an IoC list, by field kind.",
    ["kind"],
    registry=REGISTRY,
)
ERRORS = Counter(
    "socd_errors_total",
    "Errors by component and error type (retried or not).",
    ["component", "error_type"],
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge(
    "socd_queue_depth",
    "Events waiting in a pipeline queue.",
    ["stage"],
    registry=REGISTRY,
)
PROCESSING_LATENCY = Histogram(
    "socd_processing_latency_seconds",
    "Time from receipt by a collector to storage by a sink, observed once per "
    "received batch (an MQTT message, a file chunk).",
    ["sink"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
SINK_BATCH_SECONDS = Histogram(
    "socd_sink_write_seconds",
    "Duration of one sink write (one bulk request, one transaction).",
    ["sink"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
COMPONENT_UP = Gauge(
    "socd_component_up",
    "1 when a collector or sink is connected and working, else 0.",
    ["kind", "name"],
    registry=REGISTRY,
)
CONFIG_RELOADS = Counter(
    "socd_config_reloads_total",
    "Configuration reloads by result (`success` or `failure`).",
    ["result"],
    registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "socd_dead_letters_total",
    "Records written to the dead-letter file.",
    ["stage"],
    registry=REGISTRY,
)
BUILD_INFO = Info("socd_build", "socd version.", registry=REGISTRY)
BUILD_INFO.info({"version": __version__})

for _stage in ("intake",):
    QUEUE_DEPTH.labels(_stage).set(0)
for _result in ("success", "failure"):
    CONFIG_RELOADS.labels(_result)


def init_collector(name: str) -> None:
    """Create a collector's series at zero so they exist before the first event."""
    EVENTS_RECEIVED.labels(name)
    COMPONENT_UP.labels("collector", name).set(0)


def init_sink(name: str) -> None:
    """Create a sink's series at zero so they exist before the first write."""
    EVENTS_SENT.labels(name)
    COMPONENT_UP.labels("sink", name).set(0)
    QUEUE_DEPTH.labels(f"sink/{name}").set(0)
    PROCESSING_LATENCY.labels(name)
    SINK_BATCH_SECONDS.labels(name)


def init_decoder(name: str) -> None:
    EVENTS_DECODED.labels(name)
