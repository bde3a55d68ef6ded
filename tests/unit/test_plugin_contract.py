"""Contract over the plugin registry: every registered type builds and exposes its series."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.metrics import MetricWrapperBase

from socd import config, metrics
from socd.app.components import build_decoders, dead_letter_for, instantiate
from socd.app.pipeline import SinkRunner
from socd.config import CollectorConfig, DecoderConfig, NotifierConfig, SinkConfig
from socd.errors import ConfigError, PluginError
from socd.plugins import (
    AllowlistAware,
    Collector,
    Decoder,
    IocAware,
    Notifier,
    RawRecord,
    Sink,
    ZoneAware,
    registry,
)

from .conftest import sample_value, series_exists

# Smallest valid config of every registered type. A new plugin must add itself here.
SAMPLES: dict[str, dict[str, dict[str, Any]]] = {
    "collector": {
        "file": {"type": "file", "paths": ["logs/*.ndjson"]},
        "kafka": {"type": "kafka", "bootstrap_servers": ["127.0.0.1:9092"],
                  "topics": ["edr"]},
        "mqtt": {"type": "mqtt", "topics": ["edr/#"]},
        "sensor": {"type": "sensor", "pcap_files": ["capture.pcap"]},
        "syslog": {"type": "syslog", "listeners": [{"protocol": "udp", "port": 5514}]},
        "webhook": {"type": "webhook", "sources": {"ids": {"token": "0123456789abcdef"}}},
    },
    "decoder": {
        "json": {"type": "json"},
        "mapping": {"type": "mapping", "mapping": "server_edr"},
        "syslog": {"type": "syslog"},
        "cef": {"type": "cef"},
        "suricata": {"type": "suricata"},
        "wazuh": {"type": "wazuh"},
        "winlogbeat": {"type": "winlogbeat"},
        "windows_json": {"type": "windows_json"},
    },
    "sink": {
        "blocker": {"type": "blocker", "backend": "none"},
        "elasticsearch": {"type": "elasticsearch"},
        "kafka": {"type": "kafka", "bootstrap_servers": ["127.0.0.1:9092"],
                  "topic": "socd-alerts"},
        "ndjson": {"type": "ndjson", "path": "out.ndjson"},
        "sqlite": {"type": "sqlite"},
        "syslog_cef": {"type": "syslog_cef", "host": "siem.example.vn"},
    },
    "notifier": {
        "email": {"type": "email", "host": "smtp.example.vn", "from_addr": "soc@example.vn",
                  "to": ["analyst@example.vn"]},
        "webhook": {"type": "webhook", "url": "https://siem.example.vn/hook"},
        "telegram": {"type": "telegram", "bot_token": "123:abc", "chat_id": "-1001"},
        "slack": {"type": "slack", "url": "https://hooks.slack.com/services/T/B/x"},
        "mattermost": {"type": "mattermost", "url": "https://mm.example.vn/hooks/x"},
        "teams": {"type": "teams", "url": "https://prod.westeurope.logic.azure.com/x"},
        "mqtt": {"type": "mqtt"},
        "alertmanager": {"type": "alertmanager"},
    },
}
BASES = {"collector": CollectorConfig, "decoder": DecoderConfig, "sink": SinkConfig,
         "notifier": NotifierConfig}
SECTIONS = {"collector": "collectors", "decoder": "decoders", "sink": "sinks",
            "notifier": "notifiers"}
FORBIDDEN_LABELS = {"ip", "address", "addr", "message", "msg", "host", "source", "topic",
                    "path", "file", "user", "hash", "detail", "event"}


def registered(kind: str) -> list[str]:
    return registry.known_types(kind)  # type: ignore[arg-type]


def all_types() -> list[tuple[str, str]]:
    return [(kind, t) for kind in ("collector", "decoder", "sink", "notifier")
            for t in registered(kind)]


def load_one(tmp_path: Path, kind: str, type_: str, name: str) -> config.Config:
    doc = {"state_dir": str(tmp_path / "state"),
           SECTIONS[kind]: {name: SAMPLES[kind][type_]}}
    path = tmp_path / "socd.yaml"
    path.write_text(yaml.safe_dump(doc))
    return config.load(path, env={})


@pytest.mark.parametrize("kind", ["collector", "decoder", "sink", "notifier"])
def test_every_registered_type_has_a_contract_sample(kind: str) -> None:
    assert set(registered(kind)) == set(SAMPLES[kind])


@pytest.mark.parametrize(("kind", "type_"), all_types())
def test_plugin_class_loads_with_matching_config(kind: str, type_: str) -> None:
    spec = registry.lookup(kind, type_)  # type: ignore[arg-type]
    assert spec.kind == kind
    assert spec.type == type_
    assert spec.summary
    cls = spec.load()
    assert issubclass(cls.Config, BASES[kind])
    assert cls.Config.model_validate(SAMPLES[kind][type_]).type == type_
    with pytest.raises(ValueError):
        cls.Config.model_validate({**SAMPLES[kind][type_], "type": "something_else"})
    with pytest.raises(ValueError):
        cls.Config.model_validate({**SAMPLES[kind][type_], "no_such_option": 1})


# The optional capabilities each type declares (socd.plugins.protocols); the daemon checks
# them with isinstance. A type that gains one adds itself here.
CAPABILITIES: dict[tuple[str, str], set[type]] = {
    ("collector", "sensor"): {IocAware},
    ("decoder", "syslog"): {ZoneAware},
    ("decoder", "cef"): {ZoneAware},
    ("decoder", "windows_json"): {ZoneAware},
    ("sink", "blocker"): {AllowlistAware},
}


@pytest.mark.parametrize(("kind", "type_"), all_types())
def test_capabilities_are_declared(kind: str, type_: str) -> None:
    cls = registry.lookup(kind, type_).load()  # type: ignore[arg-type]
    found = {cap for cap in (ZoneAware, IocAware, AllowlistAware) if issubclass(cls, cap)}
    assert found == CAPABILITIES.get((kind, type_), set())


@pytest.mark.parametrize("type_", registered("collector"))
def test_collector_contract(type_: str, tmp_path: Path, uid: str) -> None:
    name = f"{uid}_{type_}"
    cfg = load_one(tmp_path, "collector", type_, name)
    dl = dead_letter_for(cfg)
    collector = instantiate(cfg, cfg.collectors[name], dl)
    assert isinstance(collector, Collector)
    assert collector.name == name
    assert collector.ready is False
    assert series_exists("socd_events_received_total", collector=name)
    assert sample_value("socd_events_received_total", collector=name) == 0
    assert sample_value("socd_component_up", kind="collector", name=name) == 0
    dl.close()


@pytest.mark.parametrize("type_", registered("decoder"))
def test_decoder_contract(type_: str, tmp_path: Path, uid: str) -> None:
    name = f"{uid}_{type_}"
    cfg = load_one(tmp_path, "decoder", type_, name)
    dl = dead_letter_for(cfg)
    decoders = build_decoders(cfg, dl)
    decoder = decoders[name]
    assert isinstance(decoder, Decoder)
    assert decoder.name == name
    assert series_exists("socd_events_decoded_total", decoder=name)
    # Bad input is reported, never raised.
    for data in (b"\xff{", b"[1]", b"{}", b'{"a": 1}\n{"b"'):
        result = decoder.decode(RawRecord(data, name, "c"))
        for failure in result.failures:
            assert failure.reason
            assert isinstance(failure.raw, bytes)
    dl.close()


@pytest.mark.parametrize("type_", registered("sink"))
def test_sink_contract(type_: str, tmp_path: Path, uid: str) -> None:
    name = f"{uid}_{type_}"
    cfg = load_one(tmp_path, "sink", type_, name)
    dl = dead_letter_for(cfg)
    plugin = cfg.sinks[name]
    sink = instantiate(cfg, plugin, dl)  # no I/O: start() opens connections
    assert isinstance(sink, Sink)
    assert sink.name == name
    SinkRunner(name, sink, plugin.config, dl)  # what the daemon wraps every sink in
    assert series_exists("socd_events_sent_total", sink=name)
    assert series_exists("socd_queue_depth", stage=f"sink/{name}")
    assert series_exists("socd_processing_latency_seconds_count", sink=name)
    assert series_exists("socd_sink_write_seconds_count", sink=name)
    assert sample_value("socd_component_up", kind="sink", name=name) == 0
    dl.close()


@pytest.mark.parametrize(
    ("family", "kind", "labels"),
    [
        ("socd_events_received_total", "counter", ["collector"]),
        ("socd_events_decoded_total", "counter", ["decoder"]),
        ("socd_events_dropped_total", "counter", ["stage", "reason"]),
        ("socd_events_sent_total", "counter", ["sink"]),
        ("socd_errors_total", "counter", ["component", "error_type"]),
        ("socd_alerts_total", "counter", ["severity", "layer", "asset_kind"]),
        ("socd_queue_depth", "gauge", ["stage"]),
        ("socd_processing_latency_seconds", "histogram", ["sink"]),
        ("socd_component_up", "gauge", ["kind", "name"]),
        ("socd_dead_letters_total", "counter", ["stage"]),
    ],
)
def test_standard_families_are_exposed(family: str, kind: str, labels: list[str]) -> None:
    text = generate_latest(metrics.REGISTRY).decode()
    assert f"# TYPE {family} {kind}" in text
    assert f"# HELP {family} " in text
    metric = next(m for m in metrics.REGISTRY.collect() if m.name == family.removesuffix(
        "_total"))
    assert metric.type == kind
    wrapper = next(w for w in vars(metrics).values()
                   if isinstance(w, MetricWrapperBase) and w._name == family.removesuffix(
                       "_total"))
    assert list(wrapper._labelnames) == labels


def test_intake_queue_depth_and_reload_series_exist_at_start() -> None:
    assert series_exists("socd_queue_depth", stage="intake")
    assert series_exists("socd_config_reloads_total", result="success")
    assert series_exists("socd_config_reloads_total", result="failure")
    assert series_exists("socd_build_info", version=metrics.__version__)


# A Kafka topic is not a value senders choose per message (as an MQTT topic is): the
# cluster's metrics label the repartition topics of the rule pack (about 24), and the
# consumer lag only the partitions a member owns, each series removed when it loses one.
BOUNDED_TOPIC_FAMILIES = ("socd_kafka_", "socd_cluster_")


def _forbidden(name: str, labels: Iterable[str]) -> set[str]:
    found = set(labels) & FORBIDDEN_LABELS
    if name.startswith(BOUNDED_TOPIC_FAMILIES):
        found.discard("topic")
    return found


def test_no_unbounded_metric_labels() -> None:
    wrappers = [w for w in vars(metrics).values() if isinstance(w, MetricWrapperBase)]
    assert len(wrappers) >= 10
    for wrapper in wrappers:
        assert not _forbidden(wrapper._name, wrapper._labelnames), wrapper._name
    for family in metrics.REGISTRY.collect():
        for sample in family.samples:
            assert not _forbidden(sample.name, sample.labels), sample


def test_only_socd_series_in_registry() -> None:
    for family in metrics.REGISTRY.collect():
        assert family.name.startswith("socd_"), family.name


@pytest.mark.parametrize(("kind", "typo", "hint"), [
    ("collector", "mqqt", "did you mean 'mqtt'?"),
    ("collector", "amqp", ""),
    ("decoder", "mapings", "did you mean 'mapping'?"),
    ("sink", "sqlit", "did you mean 'sqlite'?"),
    ("sink", "amqp", ""),
])
def test_unknown_type_lists_known_types(kind: str, typo: str, hint: str) -> None:
    text = yaml.safe_dump({SECTIONS[kind]: {"x": {"type": typo}}})
    with pytest.raises(ConfigError) as info:
        config.loads(text, file="socd.yaml", env={})
    message = str(info.value)
    assert f"socd.yaml:3: {SECTIONS[kind]}.x.type: unknown {kind} type {typo!r}" in message
    assert f"Known {kind} types: {', '.join(registered(kind))}" in message
    assert hint in message
    with pytest.raises(PluginError) as direct:
        registry.lookup(kind, typo)  # type: ignore[arg-type]
    assert f"Known {kind} types: {', '.join(registered(kind))}" in str(direct.value)


@pytest.mark.parametrize("type_", registered("notifier"))
def test_notifier_contract(type_: str, tmp_path: Path, uid: str) -> None:
    name = f"{uid}_{type_}"
    cfg = load_one(tmp_path, "notifier", type_, name)
    dl = dead_letter_for(cfg)
    notifier = instantiate(cfg, cfg.notifiers[name], dl)  # no I/O before start()
    assert isinstance(notifier, Notifier)
    assert notifier.name == name
    metrics.init_notifier(name)  # what the notification core does for each notifier
    assert sample_value("socd_notifications_sent_total", notifier=name) == 0
    assert sample_value("socd_notification_queue_depth", notifier=name) == 0
    assert sample_value("socd_component_up", kind="notifier", name=name) == 0
    dl.close()


def test_unknown_notifier_type_lists_known_types() -> None:
    with pytest.raises(PluginError, match=r"Known notifier types: alertmanager, email"):
        registry.lookup("notifier", "smtp")


def test_known_type_that_cannot_be_imported_is_reported_differently() -> None:
    spec = registry.PluginSpec("sink", "broken", "socd.no_such_module:Thing", "test only")
    with pytest.raises(PluginError, match="is known but cannot be loaded"):
        spec.load()
