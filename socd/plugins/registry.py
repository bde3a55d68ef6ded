"""Maps a config ``type:`` to the plugin class that implements it.

Plugins are imported lazily, so socd starts without loading what it does not
use, and a known type whose module cannot be imported ("not built": a missing
optional library) is reported differently from a type nobody has heard of.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from socd.errors import PluginError

if TYPE_CHECKING:
    from socd.plugins.context import PluginContext

Kind = Literal["collector", "decoder", "sink", "notifier"]


class PluginClass(Protocol):
    """A plugin class as the registry hands it out: its nested ``Config`` model is the
    schema of its config section, and ``cls(config, ctx)`` builds the plugin."""

    # A pydantic model; which base (CollectorConfig, SinkConfig...) is the config
    # loader's to check, so the registry stays below the config package.
    Config: type[Any]

    def __call__(self, config: Any, ctx: PluginContext, /) -> object: ...


@dataclass(frozen=True, slots=True)
class PluginSpec:
    """Where a plugin type is implemented and what it is for."""

    kind: Kind
    type: str
    target: str  # "module:Class"
    summary: str

    def load(self) -> PluginClass:
        """Import and return the plugin class."""
        module_name, _, attr = self.target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise PluginError(
                f"{self.kind} type {self.type!r} is known but cannot be loaded: {exc}"
            ) from exc
        cls: PluginClass = getattr(module, attr)
        return cls


_BUILTIN: tuple[PluginSpec, ...] = (
    PluginSpec("collector", "mqtt", "socd.collectors.mqtt:MqttCollector",
               "Subscribe to MQTT topics (QoS 1, persistent session)."),
    PluginSpec("collector", "file", "socd.collectors.file:FileCollector",
               "Tail JSON-lines or text log files (rotation, checkpoints) or import them once."),
    PluginSpec("collector", "syslog", "socd.collectors.syslog:SyslogCollector",
               "Syslog server: UDP, TCP (octet counting or newline), TLS and RELP."),
    PluginSpec("collector", "webhook", "socd.collectors.webhook:WebhookCollector",
               "HTTP webhook: POSTed JSON or NDJSON batches with a bearer token per source."),
    PluginSpec("collector", "sensor", "socd.collectors.sensor:SensorCollector",
               "Network sensor (scapy): per-flow connection and DNS events, live or pcap."),
    PluginSpec("collector", "kafka", "socd.collectors.kafka:KafkaCollector",
               "Kafka consumer group: commits offsets only once records are stored."),
    PluginSpec("decoder", "json", "socd.decoders.json:JsonDecoder",
               "ECS-shaped JSON objects, arrays or NDJSON."),
    PluginSpec("decoder", "mapping", "socd.decoders.mapping:MappingDecoder",
               "Vendor JSON mapped to ECS by a YAML field mapping."),
    PluginSpec("decoder", "syslog", "socd.decoders.syslog:SyslogDecoder",
               "RFC 3164 / RFC 5424 syslog; CEF, LEEF and sshd/sudo payloads parsed."),
    PluginSpec("decoder", "cef", "socd.decoders.cef:CefDecoder",
               "CEF records from firewalls and IPS (with or without a syslog header)."),
    PluginSpec("decoder", "suricata", "socd.decoders.suricata:SuricataDecoder",
               "Suricata EVE JSON: alert, dns, flow, http, tls."),
    PluginSpec("decoder", "wazuh", "socd.decoders.wazuh:WazuhDecoder",
               "Wazuh alerts.json (rule.level 0-15, agent, groups, MITRE)."),
    PluginSpec("decoder", "winlogbeat", "socd.decoders.winlogbeat:WinlogbeatDecoder",
               "Windows Security events as shipped by Winlogbeat (ECS JSON)."),
    PluginSpec("decoder", "windows_json", "socd.decoders.windows_json:WindowsJsonDecoder",
               "Windows events as flat JSON (NXLog im_msvistalog), completed as Winlogbeat's."),
    PluginSpec("sink", "elasticsearch", "socd.alerting.elasticsearch:ElasticsearchSink",
               "Bulk-index into Elasticsearch with an explicit index template."),
    PluginSpec("sink", "ndjson", "socd.alerting.ndjson:NdjsonSink",
               "Append events as JSON lines to a file or stdout."),
    PluginSpec("sink", "sqlite", "socd.alerting.sqlite:SqliteSink",
               "The embedded alert store (SQLite)."),
    PluginSpec("sink", "blocker", "socd.block.sink:BlockerSink",
               "Block decisions: nftables/ipset and feeds for firewall appliances."),
    PluginSpec("sink", "syslog_cef", "socd.alerting.cef:SyslogCefSink",
               "Forward alerts as CEF over syslog (UDP, TCP, TLS) to an upstream SIEM."),
    PluginSpec("sink", "kafka", "socd.alerting.kafka:KafkaSink",
               "Produce events as JSON to a Kafka topic (idempotent, acks=all, keyed)."),
    PluginSpec("notifier", "email", "socd.alerting.notifiers.email:EmailNotifier",
               "E-mail over SMTP (STARTTLS or implicit TLS, AUTH)."),
    PluginSpec("notifier", "webhook", "socd.alerting.notifiers.webhook:WebhookNotifier",
               "Generic JSON webhook (bearer token or HMAC-SHA256 signature)."),
    PluginSpec("notifier", "telegram", "socd.alerting.notifiers.telegram:TelegramNotifier",
               "Telegram Bot API sendMessage to a chat or group."),
    PluginSpec("notifier", "slack", "socd.alerting.notifiers.chat:SlackNotifier",
               "Slack incoming webhook."),
    PluginSpec("notifier", "mattermost", "socd.alerting.notifiers.chat:MattermostNotifier",
               "Mattermost incoming webhook (Slack-compatible)."),
    PluginSpec("notifier", "teams", "socd.alerting.notifiers.chat:TeamsNotifier",
               "Microsoft Teams webhook (Workflows / connector card)."),
    PluginSpec("notifier", "mqtt", "socd.alerting.notifiers.mqtt:MqttNotifier",
               "Publish notifications as JSON to an MQTT topic (QoS 1)."),
    PluginSpec("notifier", "alertmanager",
               "socd.alerting.notifiers.alertmanager:AlertmanagerNotifier",
               "Prometheus Alertmanager v2 API (POST /api/v2/alerts)."),
)  # fmt: skip

REGISTRY: Mapping[Kind, Mapping[str, PluginSpec]] = {
    kind: {s.type: s for s in _BUILTIN if s.kind == kind}
    for kind in ("collector", "decoder", "sink", "notifier")
}


def known_types(kind: Kind) -> list[str]:
    return sorted(REGISTRY[kind])


def lookup(kind: Kind, type_: str) -> PluginSpec:
    """The spec for ``type_``; an unknown type lists the known ones."""
    spec = REGISTRY[kind].get(type_)
    if spec is None:
        raise PluginError(unknown_type_message(kind, type_))
    return spec


def unknown_type_message(kind: Kind, type_: str) -> str:
    known = known_types(kind)
    close = difflib.get_close_matches(type_, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    listed = ", ".join(known) if known else "(none yet)"
    return f"unknown {kind} type {type_!r}{hint} Known {kind} types: {listed}"
