"""socd's self-metrics: one set of names shared by every plugin.

All metrics live in :data:`REGISTRY` (not the process-global default registry)
so that ``/metrics`` shows socd's series and nothing else. Labels are bounded:
plugin names come from the config, reasons and error types from fixed sets in
the code; no address or free text is ever a label value.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from socd import __version__
from socd.severity import Severity
from socd.vocabulary import ASSET_KINDS, LAYERS

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
    "Alerts classified, by SOC severity, protection layer and asset kind (a value "
    "outside its enum is counted as `other`).",
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
ADDRESSES_REFUSED = Counter(
    "socd_addresses_refused_total",
    "Values refused by the address gate (socd.netaddr), by reason: empty, too_long, "
    "bad_character, scope_id, syntax, host_bits.",
    ["reason"],
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
CONFIG_LAST_RELOAD = Gauge(
    "socd_config_last_reload_timestamp_seconds",
    "Unix time of the last configuration reload, by result (`success`, `failure`); 0 until "
    "one happens (the console's health page shows it).",
    ["result"],
    registry=REGISTRY,
)


def reloaded(result: str) -> None:
    """Count a configuration reload (``success``/``failure``) and note when it was."""
    CONFIG_RELOADS.labels(result).inc()
    CONFIG_LAST_RELOAD.labels(result).set_to_current_time()


DEAD_LETTERS = Counter(
    "socd_dead_letters_total",
    "Records written to the dead-letter file.",
    ["stage"],
    registry=REGISTRY,
)
COLLECTOR_LAST_RECEIVED = Gauge(
    "socd_collector_last_received_timestamp_seconds",
    "Unix time a collector last handed records to the pipeline (a silent source shows as "
    "`time() - this` growing).",
    ["collector"],
    registry=REGISTRY,
)
COLLECTOR_RECONNECTS = Counter(
    "socd_collector_reconnects_total",
    "Connections of a collector to its broker lost or refused, each followed by a new "
    "attempt (MQTT). A steady rate with short connections is a client id shared by two "
    "clients (docs/sources/mqtt.md).",
    ["collector"],
    registry=REGISTRY,
)
COLLECTOR_LAG = Histogram(
    "socd_collector_lag_seconds",
    "How old events are when socd receives them (receipt time minus the event's own "
    "@timestamp), observed once per received batch on its oldest event.",
    ["collector"],
    buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 6 * 3600, 86400),
    registry=REGISTRY,
)
SPOOL_BYTES = Gauge(
    "socd_spool_bytes",
    "Bytes of events waiting in a sink's on-disk spool.",
    ["sink"],
    registry=REGISTRY,
)
SPOOL_EVENTS = Gauge(
    "socd_spool_events",
    "Events waiting in a sink's on-disk spool.",
    ["sink"],
    registry=REGISTRY,
)
SPOOL_MAX_BYTES = Gauge(
    "socd_spool_max_bytes",
    "Configured size cap of a sink's spool (spool.max_bytes).",
    ["sink"],
    registry=REGISTRY,
)
SPOOL_WRITTEN = Counter(
    "socd_spool_written_total",
    "Events written to a sink's spool because the sink failed or had a backlog.",
    ["sink"],
    registry=REGISTRY,
)
SPOOL_DRAINED = Counter(
    "socd_spool_drained_total",
    "Events taken from a sink's spool and stored by the sink.",
    ["sink"],
    registry=REGISTRY,
)
ALERTS_BY_UNIT = Counter(
    "socd_alerts_by_unit_total",
    "Alerts by owning unit (đơn vị) and SOC severity. Units beyond the first "
    "200 seen are counted as `other`, so the series stay bounded.",
    ["unit", "severity"],
    registry=REGISTRY,
)
NOTIFY_ALERTS = Counter(
    "socd_notification_alerts_total",
    "What the notification core did with each alert: `routed`, `unrouted` (no route "
    "matched), `deduplicated` (same alert within repeat_interval), `deferred_quiet` "
    "(held for quiet hours). Nothing leaves without being counted here.",
    ["outcome"],
    registry=REGISTRY,
)
NOTIFICATIONS_SENT = Counter(
    "socd_notifications_sent_total",
    "Messages delivered, by notifier.",
    ["notifier"],
    registry=REGISTRY,
)
NOTIFICATIONS_FAILED = Counter(
    "socd_notifications_failed_total",
    "Failed send attempts by notifier and outcome (`retry` or `dead_letter`).",
    ["notifier", "outcome"],
    registry=REGISTRY,
)
NOTIFICATIONS_THROTTLED = Counter(
    "socd_notifications_throttled_total",
    "Messages held back by a notifier's rate limit (they are sent later).",
    ["notifier"],
    registry=REGISTRY,
)
NOTIFICATIONS_GROUPED = Counter(
    "socd_notifications_grouped_alerts_total",
    "Alerts that went out inside a digest message rather than a message of their own.",
    ["notifier"],
    registry=REGISTRY,
)
NOTIFY_QUEUE = Gauge(
    "socd_notification_queue_depth",
    "Messages waiting in the durable send queue, by notifier.",
    ["notifier"],
    registry=REGISTRY,
)
BUILD_INFO = Info("socd_build", "socd version.", registry=REGISTRY)
BUILD_INFO.info({"version": __version__})

for _stage in ("intake",):
    QUEUE_DEPTH.labels(_stage).set(0)
for _result in ("success", "failure"):
    CONFIG_RELOADS.labels(_result)
    CONFIG_LAST_RELOAD.labels(_result)
for _outcome in ("routed", "unrouted", "deduplicated", "deferred_quiet"):
    NOTIFY_ALERTS.labels(_outcome)


def init_collector(name: str) -> None:
    """Create a collector's series at zero so they exist before the first event."""
    EVENTS_RECEIVED.labels(name)
    COMPONENT_UP.labels("collector", name).set(0)
    COLLECTOR_LAST_RECEIVED.labels(name)
    COLLECTOR_LAG.labels(name)


def init_sink(name: str) -> None:
    """Create a sink's series at zero so they exist before the first write."""
    EVENTS_SENT.labels(name)
    COMPONENT_UP.labels("sink", name).set(0)
    QUEUE_DEPTH.labels(f"sink/{name}").set(0)
    PROCESSING_LATENCY.labels(name)
    SINK_BATCH_SECONDS.labels(name)


def init_decoder(name: str) -> None:
    EVENTS_DECODED.labels(name)


def init_spool(name: str, max_bytes: int) -> None:
    SPOOL_BYTES.labels(name).set(0)
    SPOOL_EVENTS.labels(name).set(0)
    SPOOL_MAX_BYTES.labels(name).set(max_bytes)
    SPOOL_WRITTEN.labels(name)
    SPOOL_DRAINED.labels(name)


def init_notifier(name: str) -> None:
    """Create a notifier's series at zero so Grafana and alert rules see them."""
    NOTIFICATIONS_SENT.labels(name)
    for outcome in ("retry", "dead_letter"):
        NOTIFICATIONS_FAILED.labels(name, outcome)
    NOTIFICATIONS_THROTTLED.labels(name)
    NOTIFICATIONS_GROUPED.labels(name)
    NOTIFY_QUEUE.labels(name).set(0)
    COMPONENT_UP.labels("notifier", name).set(0)


_UNITS: set[str] = set()
MAX_UNITS = 200
MAX_UNIT_LABEL_CHARS = 128

# Label values of socd_alerts_total: each label has its enum, and a value outside it
# (from a decoder plugin, a config default...) is counted as "other", so the number of
# series has a fixed bound whatever the input says.
_SEVERITY_LABELS = frozenset(s.value for s in Severity)
_LAYER_LABELS = frozenset(str(n) for n in LAYERS)


def _label(value: object, allowed: frozenset[str]) -> str:
    text = str(value)
    return text if text in allowed else "other"


def count_alert(socd: dict[str, object], asset_kinds: frozenset[str] = ASSET_KINDS,
                count: int = 1) -> None:
    """Count one classified alert in socd_alerts_total and socd_alerts_by_unit_total
    (``count`` alerts alike: the classifier counts a batch's alerts by their labels).

    ``asset_kinds``: the label values allowed for the asset kind (the enum, plus the
    configured default when the classifier has one outside it).
    """
    severity = _label(socd["severity"], _SEVERITY_LABELS)
    ALERTS.labels(severity, _label(socd["layer"], _LAYER_LABELS),
                  _label(socd["asset_kind"], asset_kinds)).inc(count)
    unit = str(socd.get("unit") or "unknown")
    if unit not in _UNITS:
        if len(_UNITS) >= MAX_UNITS or len(unit) > MAX_UNIT_LABEL_CHARS:
            unit = "other"
        else:
            _UNITS.add(unit)
    ALERTS_BY_UNIT.labels(unit, severity).inc(count)
