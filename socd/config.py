"""Loading and validating socd's one YAML configuration file.

Validation happens in two steps, as CrowdSec and Vector do: everything that
can be checked without I/O here (types, unknown keys, plugin types, decoder
references), then runtime checks (sink health checks) in ``check-config
--connect`` and at start-up. Every problem carries the file, the key path, the
line and, for a misspelled key, the key that was probably meant.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from socd.access import read_problem
from socd.errors import ConfigError, ConfigProblem, PluginError
from socd.registry import Kind, known_types, lookup, unknown_type_message
from socd.severity import BUILTIN_TABLES, Severity
from socd.tz import TimeZone, ZoneOrOffset

_HOST_NAME = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]{0,252}[A-Za-z0-9_])?")


class StrictModel(BaseModel):
    """Base for every config section: unknown keys are errors, values immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class PluginConfig(StrictModel):
    """Base for a plugin's config; ``type`` selects the plugin."""

    type: str


class CollectorConfig(PluginConfig):
    """Options every collector has."""

    # True when the collector's default decoder is made for its records (the sensor
    # writes socd's own JSON): leaving `decoder` unset is then no trap to warn about.
    default_decoder_fits: ClassVar[bool] = False

    decoder: str = Field(
        "json", description="Name of the decoder for this source's records. Unset, they "
        "are read as ECS-shaped JSON (`json`): vendor alerts then become plain events, so "
        "`check-config` and the start-up log warn; name the vendor's decoder (`server_edr`, "
        "`workstation_edr`, `suricata`, `wazuh`, `winlogbeat`, `windows_json`, `cef`) or one "
        "under `decoders:`.")
    timezone: ZoneOrOffset | None = Field(
        None, description="Zone of timestamps written without one (RFC 3164 syslog, CEF, "
        "NXLog's EventTime) in this collector's records: an IANA name (`UTC`, "
        "`Asia/Ho_Chi_Minh`) or an offset (`+07:00`). Unset: the decoder's `timezone` "
        "(default Asia/Ho_Chi_Minh). Set it when the senders' clocks run in another zone "
        "(servers on UTC), else their events look hours old or new to the rules. For the "
        "`syslog`, `cef` and `windows_json` decoders.")
    sender_timezones: dict[str, ZoneOrOffset] = Field(
        default_factory=dict, description="Zone per sender, before `timezone`: an address or "
        "CIDR (the sender's, network collectors) or a host name (the syslog header's, or "
        "the `Hostname` of a Windows event; case-insensitive) -> zone. For the `syslog`, "
        "`cef` and `windows_json` decoders.")
    batch_max_events: int = Field(500, ge=1, le=100_000,
                                  description="Largest batch handed to the pipeline (records).")
    batch_max_bytes: int = Field(1024 * 1024, ge=1024, le=256 * 1024 * 1024,
                                 description="A batch is handed over once its records reach "
                                 "this many bytes, even if it has fewer records.")

    @field_validator("sender_timezones")
    @classmethod
    def _sender_keys(cls, value: dict[str, str]) -> dict[str, str]:
        from socd import netaddr

        for key in value:
            try:
                netaddr.parse_network(key, count=False)
            except netaddr.AddressError:
                if not _HOST_NAME.fullmatch(key):
                    raise ValueError(f"{key!r} is neither an address, a CIDR nor a host "
                                     "name") from None
        return value

    def unauthenticated_inputs(self) -> list[str]:
        """The inputs (``udp://0.0.0.0:514``...) that cannot authenticate their senders.

        Block decisions caused by their records are refused unless
        :meth:`allows_unauthenticated_blocking`. Token, broker-login and local-file
        sources have none; a collector with such inputs overrides this.
        """
        return []

    def allows_unauthenticated_blocking(self) -> bool:
        """The operator's opt-in to enforce blocks from unauthenticated inputs."""
        return False

    def unauthenticated_hint(self) -> str:
        """How to authenticate :meth:`unauthenticated_inputs` instead (the hint of the
        ``check-config`` warning); the default suits listeners (syslog)."""
        return "receive over TCP from allowed_senders or TLS with client certificates"


class SpoolConfig(StrictModel):
    """The durable on-disk spool in front of a sink (see docs/architecture.md)."""

    enabled: bool = Field(False, description="When the sink fails, store its batches on disk "
                          "and acknowledge the input; drain them in order once it is back.")
    path: str | None = Field(None, description="Spool file, relative to state_dir (default "
                             "`spool/<sink name>.db`).")
    max_bytes: int = Field(1024 * 1024 * 1024, ge=1024 * 1024,
                           description="Largest spool. When full, intake waits (back-pressure "
                           "to the sources); nothing is dropped.")
    warn_ratio: float = Field(0.8, gt=0, le=1, description="A warning is logged (and the "
                              "spool alert fires) once the spool is this full.")


class SinkConfig(PluginConfig):
    """Options every sink has; the pipeline uses them to batch, retry and spool."""

    select: Literal["alerts", "all"] = Field(
        "alerts", description="`alerts`: only events with event.kind=alert; `all`: everything."
    )
    batch_max_events: int = Field(1000, ge=1, le=100_000, description="Events per write.")
    flush_interval_secs: float = Field(
        1.0, gt=0, le=300, description="Longest wait before a partial batch is written.")
    queue_max_batches: int = Field(
        64, ge=1, le=100_000, description="Batches waiting for this sink before intake blocks.")
    retry_max_backoff_secs: float = Field(30.0, gt=0, le=3600,
                                          description="Cap of the exponential retry backoff.")
    spool: SpoolConfig = SpoolConfig()


class NotifierConfig(PluginConfig):
    """Options every notifier (a channel to people) has."""

    rate_limit_per_minute: int = Field(
        60, ge=1, le=100_000, description="Messages a minute this channel may send; more wait "
        "in the send queue (counted in socd_notifications_throttled_total), never dropped.")
    timeout_secs: float = Field(15.0, gt=0, le=300, description="Timeout of one send.")
    retry_max_backoff_secs: float = Field(
        300.0, gt=0, le=86400, description="Cap of the exponential backoff between attempts.")
    max_attempts: int = Field(
        0, ge=0, description="Attempts before a message is dead-lettered; 0 retries forever "
        "(the default: an outage of the mail server loses nothing).")


class DecoderConfig(PluginConfig):
    """Options every decoder has."""

    severity_table: str | None = Field(
        None, description="Built-in table mapping socd.vendor_severity (vietnamese, suricata, "
        "wazuh, cef, sigma).")
    keep_original: bool = Field(False, description="Keep the raw record in event.original.")

    @field_validator("severity_table")
    @classmethod
    def _known_table(cls, value: str | None) -> str | None:
        # Checked here so check-config reports it instead of a KeyError at start-up.
        if value is not None and value not in BUILTIN_TABLES:
            raise ValueError(f"unknown severity table {value!r}; known tables: "
                             f"{', '.join(sorted(BUILTIN_TABLES))}")
        return value


class LogConfig(StrictModel):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = Field(
        "auto", description="`auto`: console on a terminal, JSON lines otherwise (journald).")


class HttpLimits(StrictModel):
    """Timeouts, connection caps and header sizes of an HTTP listener (socd.http).

    Every HTTP listener of socd (`http`, each webhook collector, each blocker's `edl`)
    has these, so a slow or idle client, or many of them, cannot hold the listener."""

    header_timeout_secs: float = Field(
        10.0, gt=0, le=600, description="The request line and headers must arrive within "
        "this, counted from the connection's opening (or the first byte of a later request "
        "on a kept-alive connection); else the connection is closed. Also the TLS "
        "handshake timeout.")
    body_timeout_secs: float = Field(
        60.0, gt=0, le=3600, description="A request body must arrive within this once the "
        "headers are in (webhook: 408 and the connection is closed).")
    idle_timeout_secs: float = Field(
        30.0, gt=0, le=3600, description="A kept-alive connection with no request for this "
        "long is closed.")
    send_timeout_secs: float = Field(
        30.0, gt=0, le=3600, description="A client that reads nothing of its answer for "
        "this long (socd's send buffer stays full) has its connection cut.")
    max_connections: int = Field(
        1024, ge=1, le=1_000_000, description="Open connections of this listener. When "
        "full, a new connection closes the oldest one that has no request in progress; "
        "when every one is busy, the new one gets 503.")
    max_connections_per_ip: int = Field(
        128, ge=1, le=1_000_000, description="Open connections from one address (IPv6: "
        "from one /64); more get 503 at once.")
    max_request_line_bytes: int = Field(8190, ge=256, le=65536,
                                        description="Longest request line (else 400).")
    max_header_field_bytes: int = Field(8190, ge=256, le=65536,
                                        description="Longest header field (else 400).")
    max_headers: int = Field(64, ge=8, le=1024, description="Most header fields in a "
                             "request (else 400).")


class HttpConfig(StrictModel):
    enabled: bool = True
    host: str = Field("127.0.0.1", description="Address for /metrics, /healthz and /readyz.")
    port: int = Field(9797, ge=0, le=65535, description="0 picks a free port (tests).")
    limits: HttpLimits = Field(HttpLimits(), description="Timeouts, connection caps and "
                               "header sizes of this listener; every HTTP listener of socd "
                               "(webhook collectors, EDL feeds) has the same `limits`.")


class PipelineConfig(StrictModel):
    queue_max_batches: int = Field(64, ge=1, le=100_000,
                                   description="Batches waiting for decoding before intake blocks.")
    max_buffered_bytes: int = Field(
        16 * 1024 * 1024, ge=64 * 1024, le=4 * 1024 * 1024 * 1024,
        description="Raw input held in memory (received but not yet stored by every sink) "
        "before collectors must wait. This bounds memory whatever the batch shapes: decoded "
        "events take roughly ten times their raw size.")
    drain_timeout_secs: float = Field(30.0, ge=0, le=3600,
                                      description="How long shutdown waits for sinks to drain.")
    warn_alertless_after_secs: float = Field(
        60.0, ge=0, le=86400, description="While every sink stores alerts only (`select: "
        "alerts`), a collector whose records have for this long become plain events and no "
        "alert is named in a warning (then at most hourly, until its first alert): its "
        "events are kept nowhere, the sign of a missing `decoder:`. They are counted in "
        "socd_collector_events_unselected_total either way. 0: no warning.")


class JournalConfig(StrictModel):
    """The durable intake journal (socd.journal, docs/architecture.md): a batch is
    acknowledged to its source only once it is on disk here."""

    enabled: bool = Field(True, description="Journal every received batch before its source "
                          "is acknowledged, and process what a crash left in it at the next "
                          "start. Off: what is acknowledged but not yet stored is lost in a "
                          "crash (at most `pipeline.max_buffered_bytes`).")
    path: str = Field("journal", description="Folder of the segment files, relative to "
                      "state_dir.")
    fsync_interval_ms: float = Field(
        2, ge=0, le=1000, description="Least time between two fsyncs of the journal: batches "
        "arriving meanwhile share the next one (group commit). 0 syncs as often as the disk "
        "allows; more saves disk flushes under load, but a source that sends one batch at a "
        "time waits up to this long for each (scripts/bench_journal.py).")
    fsync_max_bytes: int = Field(4 * 1024 * 1024, ge=4096, le=1024 * 1024 * 1024,
                                 description="Sync at once, without waiting for "
                                 "`fsync_interval_ms`, when this much is waiting.")
    max_bytes: int = Field(1024 * 1024 * 1024, ge=4 * 1024 * 1024,
                           description="Largest journal on disk. When full, intake waits "
                           "(back-pressure to the sources) until sinks store what it holds.")
    segment_bytes: int = Field(64 * 1024 * 1024, ge=64 * 1024, le=1024 * 1024 * 1024,
                               validate_default=True,
                               description="Size of one segment file; a segment is deleted "
                               "once everything in it is stored. At most a quarter of "
                               "`max_bytes`.")

    @field_validator("segment_bytes")
    @classmethod
    def _segments_fit(cls, value: int, info: Any) -> int:
        # A full journal must free space by deleting whole segments (not the active one).
        max_bytes = info.data.get("max_bytes")
        if max_bytes is not None and value * 4 > max_bytes:
            raise ValueError(f"segment_bytes ({value}) must be at most a quarter of max_bytes "
                             f"({max_bytes})")
        return value


class DeadLetterConfig(StrictModel):
    path: str = Field("dead-letter", description="Directory, relative to state_dir.")
    max_file_bytes: int = Field(256 * 1024 * 1024, ge=1024,
                                description="A dead-letter file rotates past this size.")
    max_files: int = Field(20, ge=1, description="Rotated files kept; the oldest is removed.")


class ClassificationConfig(StrictModel):
    default_alert_severity: Severity = Field(
        Severity.MEDIUM, description="Severity of an alert whose source gave none we can map.")
    default_layer: int = Field(2, ge=1, le=4, description="Layer of alerts that name none.")
    default_asset_kind: str = Field("unknown", description="Asset kind of events that name none.")
    ioc_files: list[str] = Field(
        default_factory=list, description="Plain-text IoC lists (one IP, CIDR, domain or hash "
        "a line) marked on matching events.")


class EnrichmentConfig(StrictModel):
    assets_file: str | None = Field(
        None, description="Asset inventory (YAML or CSV, by extension) giving each IP, network "
        "or host name its unit, security level and asset kind; see docs/enrichment.md.")
    geoip_city_db: str | None = Field(
        None, description="MaxMind GeoIP2/GeoLite2 City .mmdb file: country, city and location "
        "of public addresses (needs the maxminddb package).")
    geoip_asn_db: str | None = Field(
        None, description="MaxMind GeoLite2 ASN .mmdb file: AS number and organization of "
        "public addresses (needs the maxminddb package).")


class RulesConfig(StrictModel):
    paths: list[str] = Field(
        default_factory=lambda: ["builtin"],
        description="Rule files, directories (every *.yaml below) and globs; see docs/rules.md. "
        "`builtin` is the shipped rule pack; listing paths replaces the default, so add "
        "`builtin` to keep it.")
    max_out_of_order_secs: float = Field(
        300, ge=0, le=7 * 86400,
        description="Events older than the newest event time seen minus this are still "
        "matched by stateless rules but left out of threshold and sequence windows.")
    max_clock_skew_secs: float = Field(
        1800, ge=0, le=7 * 86400,
        description="An event whose own time is more than this away from its arrival "
        "(event.created) while the newest event time is not (a sender's clock or time zone "
        "is wrong) is placed in threshold and sequence windows at its arrival time instead "
        "of being left out as late; an event this far in the future never moves the newest "
        "event time. Counted in socd_rules_clock_skew_events_total and logged with a hint. "
        "0: such events are left out (counted as late).")
    disabled: list[str] = Field(default_factory=list,
                                description="Ids of rules to switch off.")
    max_field_bytes: int = Field(
        64 * 1024, ge=1024, le=64 * 1024 * 1024,
        description="A regex condition reads at most this many bytes (UTF-8) of a field "
        "value; the rest of a longer value is not searched (counted in "
        "socd_rule_fields_truncated_total). Regexes run in linear time (RE2); this bounds "
        "the time one event with huge fields can take.")


class QuietHoursConfig(StrictModel):
    start: str = Field("22:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$",
                       description="Start of the quiet period (local time, HH:MM).")
    end: str = Field("06:30", pattern=r"^([01]\d|2[0-3]):[0-5]\d$",
                     description="End of the quiet period (HH:MM); may be earlier than start.")
    timezone: TimeZone = Field("Asia/Ho_Chi_Minh",
                               description="IANA time zone of start and end.")
    override_severities: list[Severity] = Field(
        default_factory=lambda: [Severity.CRITICAL],
        description="Alerts of these severities are sent at once even in quiet hours; the "
        "others are held and sent as one digest when the quiet period ends.")



class GroupingConfig(StrictModel):
    # The default groups by affected host: the alerts one event raises (its own alert
    # and every rule that fired on it, one socd.correlation_id) share the host and unit,
    # arrive in one batch and so go out as one message, and so do the alerts of a burst
    # on one host; the message lists each rule. Grouping by rule.id sent one message
    # per rule that fired (1.64 messages per incident on the sample week, 1.0 now:
    # scripts/measure_notifications.py).
    group_by: list[str] = Field(
        default_factory=lambda: ["socd.unit", "host.name"],
        description="Event fields whose values make a group: alerts of one group go out "
        "together, in one message that lists each of them (like Alertmanager's group_by). "
        "The default, one message per affected host and unit, sends the alerts one event "
        "raised (one `socd.correlation_id`) together.")
    group_wait_secs: float = Field(10.0, ge=0, le=86400,
                                   description="Wait after a group's first alert, to collect "
                                   "others before the first message.")
    group_interval_secs: float = Field(300.0, ge=0, le=86400,
                                       description="Wait before a message about alerts added "
                                       "to a group that was already notified.")
    repeat_interval_secs: float = Field(
        4 * 3600.0, ge=0, le=30 * 86400,
        description="An alert with the same dedup key as one already sent is counted, not "
        "sent again, within this time.")
    dedup_by: list[str] = Field(
        default_factory=lambda: ["rule.id", "source.ip", "destination.ip", "host.name",
                                 "socd.ioc.values"],
        description="Fields that make two alerts the same for repeat_interval.")
    digest_max_alerts: int = Field(20, ge=1, le=1000,
                                   description="Alerts listed in one message; the rest of the "
                                   "group is summarized by count.")


class RouteMatch(StrictModel):
    """Conditions of a route; each listed key must match (a list means any of)."""

    severity: list[Severity] = Field(default_factory=list, description="socd.severity codes.")
    min_severity: Severity | None = Field(None, description="This severity or higher.")
    unit: list[str] = Field(default_factory=list, description="socd.unit values.")
    layer: list[int] = Field(default_factory=list, description="socd.layer values (1-4).")
    asset_kind: list[str] = Field(default_factory=list, description="socd.asset_kind values.")
    rule: list[str] = Field(default_factory=list, description="rule.id values or globs.")
    tags: list[str] = Field(default_factory=list, description="Any of these in `tags`.")


class RouteConfig(StrictModel):
    # `continue` is a Python keyword: the field is continue_, the YAML key `continue`.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$",
                      description="Unique; keys the route's groups in the queue.")
    match: RouteMatch = Field(RouteMatch(), description="Conditions; all must hold.")
    notifiers: list[str] = Field(min_length=1, description="Names under `notifiers:`.")
    continue_: bool = Field(False, alias="continue",
                            description="Go on to later routes after this one matched.")
    quiet_hours: bool = Field(True, description="Apply notifications.quiet_hours to this "
                              "route (when that is set).")
    grouping: GroupingConfig | None = Field(None, description="Overrides the default grouping.")


class NotificationsConfig(StrictModel):
    language: Literal["vi", "en"] = Field("vi", description="Language of the built-in "
                                          "message templates.")
    templates_dir: str | None = Field(
        None, description="Folder with title.<lang>.j2 / text.<lang>.j2 / html.<lang>.j2 "
        "templates that replace the built-in ones (Jinja2, sandboxed).")
    queue_path: str = Field("notify.db", description="The durable send queue (SQLite), "
                            "relative to state_dir.")
    grouping: GroupingConfig = Field(GroupingConfig(),
                                     description="Default grouping of every route.")
    quiet_hours: QuietHoursConfig | None = Field(None, description="Unset: no quiet hours.")
    routes: list[RouteConfig] = Field(
        default_factory=list, description="Checked in order; an alert goes to the notifiers "
        "of the first route it matches (and of later ones while `continue` is true). Alerts "
        "no route matches are counted as `unrouted`.")

    @field_validator("routes")
    @classmethod
    def _unique_routes(cls, value: list[RouteConfig]) -> list[RouteConfig]:
        # A route's name keys its groups in the send queue: two routes must not share one.
        seen: set[str] = set()
        for route in value:
            if route.name in seen:
                raise ValueError(f"route name {route.name!r} is used twice")
            seen.add(route.name)
        return value


def _default_state_dir() -> str:
    # systemd sets STATE_DIRECTORY from StateDirectory=; fall back to XDG.
    if os.environ.get("STATE_DIRECTORY"):
        return os.environ["STATE_DIRECTORY"].split(":")[0]
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return os.path.join(base, "socd")


class IocConfig(StrictModel):
    enabled: bool = Field(True, description="Match events against the IoC store (`socd ioc "
                          "import`); the plain-text classification.ioc_files are matched "
                          "either way.")
    db_path: str = Field("ioc.db", description="The IoC database (SQLite), relative to "
                         "state_dir.")
    min_confidence: int = Field(0, ge=0, le=100,
                                description="Entries with a lower confidence never match.")
    refresh_interval_secs: float = Field(
        10.0, gt=0, le=3600, description="How often the daemon looks for imports by "
        "`socd ioc` and reloads its index (expired entries stop matching at once).")


class AllowlistConfig(StrictModel):
    cidrs: list[str] = Field(default_factory=list, description="The SOC's own networks and "
                             "addresses: never IoCs, never blocked.")
    hosts: list[str] = Field(default_factory=list, description="Own host names; each also "
                             "covers the names below it.")
    files: list[str] = Field(default_factory=list, description="Files with one CIDR, address "
                             "or host name a line (`#` comments).")

    @field_validator("cidrs")
    @classmethod
    def _valid_cidrs(cls, value: list[str]) -> list[str]:
        from socd import netaddr

        for item in value:
            try:
                netaddr.parse_network(item, count=False)
            except netaddr.AddressError as exc:
                raise ValueError(f"not an address or CIDR ({exc.reason.replace('_', ' ')}): "
                                 f"{item!r}") from None
        return value


class ContactConfig(StrictModel):
    """Who the authority contacts about an incident; printed on the documents."""

    organisation: str = Field("", description="The reporting organisation (đơn vị báo cáo), "
                              "e.g. the provincial SOC's agency.")
    person: str = Field("", description="The contact person (người liên hệ).")
    phone: str = Field("", description="Their phone number.")
    email: str = Field("", description="Their e-mail address.")


class IncidentsConfig(StrictModel):
    """Incident tracking: the store, deadline reminders and the documents' contact block."""

    db_path: str = Field("incidents.db", description="The incident store (SQLite), relative "
                         "to state_dir.")
    reminder_offsets_hours: list[float] = Field(
        default_factory=lambda: [48.0, 24.0],
        description="Send a reminder this many hours before each deadline (notification: 5 "
        "days after discovery; final report: 5 days after the response ends). One more is "
        "sent once the deadline has passed with the action not done.")
    notifiers: list[str] = Field(default_factory=list, description="Names under `notifiers:` "
                                 "that receive the reminders; none: no reminders are sent "
                                 "(the metrics still show overdue incidents).")
    check_interval_secs: float = Field(60.0, gt=0, le=3600, description="How often the daemon "
                                       "checks the deadlines and refreshes the metrics.")
    timezone: TimeZone = Field("Asia/Ho_Chi_Minh", description="Time zone of the times in "
                          "reminders and documents.")
    contact: ContactConfig = ContactConfig()

    @field_validator("reminder_offsets_hours")
    @classmethod
    def _positive(cls, value: list[float]) -> list[float]:
        if any(v <= 0 for v in value):
            raise ValueError("offsets are hours before the deadline: each must be > 0")
        return sorted(set(value), reverse=True)



from socd.reports.config import ReportsConfig  # noqa: E402 - no cycle: imports no socd module
from socd.sharing.config import SharingConfig  # noqa: E402 - no cycle: it has its own base


class DocumentConfig(StrictModel):
    """The top level of the YAML file. Plugin sections are checked against their
    own models once their ``type`` is known."""

    state_dir: str = Field(default_factory=_default_state_dir,
                           description="Where the store, spool and dead letters live. A "
                           "relative path is relative to the config file's folder.")
    exit_when_done: bool = Field(False, description="Exit once every one-shot collector has "
                                 "finished and the pipeline drained (batch imports).")
    log: LogConfig = LogConfig()
    http: HttpConfig = HttpConfig()
    pipeline: PipelineConfig = PipelineConfig()
    journal: JournalConfig = Field(
        default_factory=JournalConfig, description="The durable intake journal: what a source "
        "was told is received survives a crash (docs/architecture.md).")
    dead_letter: DeadLetterConfig = DeadLetterConfig()
    classification: ClassificationConfig = ClassificationConfig()
    enrichment: EnrichmentConfig = EnrichmentConfig()
    rules: RulesConfig = RulesConfig()
    ioc: IocConfig = IocConfig()
    allowlist: AllowlistConfig = AllowlistConfig()
    # The plugin sections as written (secrets substituted, not yet SecretStr): kept out of
    # repr() so a logged or printed config never shows a token; Config.collectors etc.
    # hold the validated models, whose secrets are SecretStr.
    decoders: dict[str, dict[str, Any]] = Field(default_factory=dict, repr=False)
    collectors: dict[str, dict[str, Any]] = Field(default_factory=dict, repr=False)
    sinks: dict[str, dict[str, Any]] = Field(default_factory=dict, repr=False)
    notifiers: dict[str, dict[str, Any]] = Field(default_factory=dict, repr=False)
    notifications: NotificationsConfig = NotificationsConfig()
    incidents: IncidentsConfig = IncidentsConfig()
    sharing: SharingConfig = SharingConfig()
    reports: ReportsConfig = ReportsConfig()


@dataclass(frozen=True, slots=True)
class Plugin:
    """A configured plugin: its name, class and validated config."""

    name: str
    cls: Any
    config: Any  # an instance of cls.Config
    # `${VAR}`s of this plugin's section that are not set (see Config.unresolved): the
    # plugin cannot be built (socd.components.instantiate raises these), and its secrets
    # that need them are UnsetSecret.
    unresolved: tuple[ConfigProblem, ...] = ()

    def same_as(self, other: Plugin | None) -> bool:
        return other is not None and self.cls is other.cls and self.config == other.config

    def require_env(self) -> None:
        """Raise :class:`ConfigError` naming the unset variables this plugin needs."""
        if self.unresolved:
            raise ConfigError(self.unresolved)


@dataclass(frozen=True, slots=True)
class Config:
    """A loaded, fully validated configuration."""

    file: str
    document: DocumentConfig
    config_dir: str
    state_dir: str
    decoders: dict[str, Plugin] = field(default_factory=dict)
    collectors: dict[str, Plugin] = field(default_factory=dict)
    sinks: dict[str, Plugin] = field(default_factory=dict)
    notifiers: dict[str, Plugin] = field(default_factory=dict)
    # Valid but risky settings: `check-config` prints them, `socd run` logs them.
    warnings: tuple[ConfigProblem, ...] = ()
    # `${VAR}`s that are not set, in plugin sections or secrets: a command that does not
    # use them runs without them (`socd ioc import` needs no Telegram token); what uses
    # them fails naming the variable. `socd run` and `check-config` require them all.
    unresolved: tuple[ConfigProblem, ...] = ()

    def resolve(self, path: str) -> str:
        """A path from the config, relative to the config file's folder."""
        return resolve_path(self.config_dir, path)

    def require_env(self, *sections: str) -> None:
        """Raise :class:`ConfigError` for the unset variables below these dotted key
        paths (``sinks.es``, ``sharing``); every one when no section is given."""
        wanted = [p for p in self.unresolved
                  if not sections or any(p.path == s or p.path.startswith((f"{s}.", f"{s}["))
                                         for s in sections)]
        if wanted:
            raise ConfigError(wanted)


def resolve_path(base: str, path: str) -> str:
    expanded = os.path.expanduser(path)
    return expanded if os.path.isabs(expanded) else os.path.normpath(os.path.join(base, expanded))


DEFAULT_CONFIG_NAME = "default/config.yaml"


def default_config_path() -> str:
    """The config shipped inside the package (the embedded default)."""
    return str(resources.files("socd").joinpath(DEFAULT_CONFIG_NAME))


# Decoders every config has without declaring them.
BUILTIN_DECODERS: Mapping[str, dict[str, Any]] = {
    "json": {"type": "json"},
    "server_edr": {"type": "mapping", "mapping": "server_edr"},
    "workstation_edr": {"type": "mapping", "mapping": "workstation_edr"},
    "syslog": {"type": "syslog"},
    "cef": {"type": "cef"},
    "suricata": {"type": "suricata"},
    "wazuh": {"type": "wazuh"},
    "winlogbeat": {"type": "winlogbeat"},
    "windows_json": {"type": "windows_json"},
}

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def load(path: str | os.PathLike[str] | None = None,
         env: Mapping[str, str] | None = None) -> Config:
    """Read, substitute and validate a config file; raise :class:`ConfigError`."""
    file = str(path) if path is not None else default_config_path()
    environ = os.environ if env is None else env
    try:
        text = Path(file).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([ConfigProblem(file, "", f"cannot read: {exc.strerror}")]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError([ConfigProblem(file, "", "not UTF-8 text")]) from exc
    return loads(text, file=file, env=environ)


def loads(text: str, *, file: str = "<string>", env: Mapping[str, str] | None = None) -> Config:
    environ = os.environ if env is None else env
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([ConfigProblem(file, "", f"invalid YAML: {reason}", line=line)]) from exc
    lines = _line_index(node) if node is not None else {}
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([ConfigProblem(file, "", "the top level must be a mapping", line=1)])

    problems: list[ConfigProblem] = []
    raw, unset = _Unset.substitute(raw, environ, file, lines)

    def problem(loc: tuple[Any, ...], message: str, hint: str | None = None) -> None:
        # One caused by an unset ${VAR} is reported as that (see _Unset).
        problems.extend([] if unset.covers(loc) else [
            ConfigProblem(file, _dotted(loc), message, hint, _line_for(lines, loc))])

    doc: DocumentConfig | None = None
    try:
        doc = DocumentConfig.model_validate(raw)
    except ValidationError as exc:
        _report(exc, DocumentConfig, (), problem)

    def section(name: str) -> Mapping[str, Any]:
        # Plugin sections are checked even when the rest of the document is not
        # valid, so one run of check-config reports every problem.
        value = getattr(doc, name) if doc is not None else raw.get(name)
        return value if isinstance(value, Mapping) else {}

    decoders_raw = {**BUILTIN_DECODERS, **section("decoders")}
    user_decoders = set(section("decoders"))
    decoders = _plugins("decoder", "decoders", decoders_raw, DecoderConfig, problem,
                        optional=set(BUILTIN_DECODERS) - user_decoders, unset=unset)
    collectors = _plugins("collector", "collectors", section("collectors"), CollectorConfig,
                          problem, unset=unset)
    sinks = _plugins("sink", "sinks", section("sinks"), SinkConfig, problem, unset=unset)
    for name, plugin in collectors.items():
        _check_zones(name, plugin.config, decoders, problem)
    _check_decoder_refs(section("collectors"), collectors, decoders, decoders_raw, problem)
    config_dir = os.path.dirname(os.path.abspath(file))
    unset.settle(doc)
    if doc is None:
        # The second pass too (files the config names), so one run lists everything.
        raise ConfigError([*problems, *_reference_problems(
            raw, config_dir, {n: decoders[n] for n in user_decoders if n in decoders},
            problem_at(file, lines)), *unset.fatal])

    state_dir = resolve_path(config_dir, doc.state_dir)
    notifiers = _plugins("notifier", "notifiers", section("notifiers"), NotifierConfig, problem,
                         unset=unset)
    for i, route in enumerate(doc.notifications.routes):
        for j, ref in enumerate(route.notifiers):
            if ref not in notifiers and ref not in section("notifiers"):
                close = difflib.get_close_matches(ref, list(section("notifiers")), n=1)
                hint = f"did you mean {close[0]!r}?" if close else (
                    "declare it under notifiers:" if not section("notifiers") else
                    f"use one of {', '.join(sorted(section('notifiers')))}")
                problem(("notifications", "routes", i, "notifiers", j),
                        f"unknown notifier {ref!r}", hint)
    for j, ref in enumerate(doc.incidents.notifiers):
        if ref not in section("notifiers"):
            problem(("incidents", "notifiers", j), f"unknown notifier {ref!r}",
                    "declare it under notifiers:")

    if problems or unset.fatal:
        # Every problem at once, the unset variables a later command would need included,
        # and those of the second pass (reference_problems), which otherwise come only
        # once these are fixed.
        raise ConfigError([*problems, *_reference_problems(
            doc, config_dir, {n: decoders[n] for n in user_decoders if n in decoders},
            problem_at(file, lines)), *unset.fatal, *unset.deferred])
    warnings = tuple(ConfigProblem(file, _dotted(loc), message, hint, _line_for(lines, loc))
                     for loc, message, hint in [*_blocking_warnings(collectors, sinks),
                                                *_decoder_warnings(collectors, sinks)])
    return Config(file=file, document=doc, config_dir=config_dir, state_dir=state_dir,
                  decoders=decoders, collectors=collectors, sinks=sinks, notifiers=notifiers,
                  warnings=warnings, unresolved=tuple(unset.deferred))


def _blocking_warnings(collectors: Mapping[str, Plugin], sinks: Mapping[str, Plugin]
                       ) -> list[tuple[tuple[Any, ...], str, str]]:
    """A blocker sink beside a collector whose senders are not authenticated: either
    its blocks are refused (say so) or anyone who can send to it can block addresses."""
    blockers = sorted(name for name, p in sinks.items() if p.config.type == "blocker")
    if not blockers:
        return []
    which = ", ".join(blockers)
    out: list[tuple[tuple[Any, ...], str, str]] = []
    for name, plugin in collectors.items():
        inputs = plugin.config.unauthenticated_inputs()
        if not inputs:
            continue
        listed = ", ".join(inputs)
        hint = plugin.config.unauthenticated_hint()
        if plugin.config.allows_unauthenticated_blocking():
            out.append((("collectors", name, "allow_unauthenticated_blocking"),
                        f"allow_unauthenticated_blocking is on: anyone who can send to "
                        f"{listed} (senders can be forged) can make the blocker "
                        f"({which}) block any address that is not allowlisted",
                        f"{hint}, and turn the option off"))
        else:
            out.append((("collectors", name),
                        f"{listed} cannot authenticate its senders: block decisions caused "
                        f"by its messages are refused (unauthenticated_source) by the "
                        f"blocker ({which})",
                        f"{hint}, or set allow_unauthenticated_blocking: true to "
                        "enforce them anyway"))
    return out


def _decoder_warnings(collectors: Mapping[str, Plugin], sinks: Mapping[str, Plugin]
                      ) -> list[tuple[tuple[Any, ...], str, str]]:
    """A collector whose records fall back to the generic ``json`` decoder because
    no ``decoder:`` is set: a vendor's alerts then decode as plain events, which a
    sink with ``select: alerts`` drops without a word (3 EDR alerts received, 0 stored)."""
    alerts_only = bool(sinks) and all(
        getattr(p.config, "select", "all") == "alerts" for p in sinks.values())
    out: list[tuple[tuple[Any, ...], str, str]] = []
    for name, plugin in collectors.items():
        config = plugin.config
        if (type(config).default_decoder_fits or "decoder" in config.model_fields_set
                or type(config).model_fields["decoder"].default != "json"):
            continue
        users = _default_decoder_users(config)
        if not users:
            continue
        kept = ("; no sink stores plain events (every sink has select: alerts), so they "
                "are kept nowhere" if alerts_only else "")
        out.append((("collectors", name),
                    f"no decoder is set, so {', '.join(users)} are read as ECS-shaped JSON "
                    f"(the default `json`): a vendor's alerts then become plain events "
                    f"(event.kind: event){kept}",
                    "name the source's decoder (server_edr, workstation_edr, suricata, "
                    "wazuh, winlogbeat, windows_json, cef or one declared under "
                    "decoders:); write `decoder: json` if the records really are ECS JSON"))
    return out


def _default_decoder_users(config: Any) -> list[str]:
    """What a collector reads with its own ``decoder`` (rather than a per-topic or
    per-source one), in words for the warning; empty when every input names one."""
    subscriptions = getattr(config, "subscriptions", None)
    sources = getattr(config, "sources", None)
    if subscriptions is None and not isinstance(sources, dict):
        return ["its records"]
    users: list[str] = []
    if getattr(config, "topics", None):
        users.append("the records of its `topics`")
    users += [f"the records of topic {sub.topic!r}" for sub in subscriptions or []
              if not getattr(sub, "decoder", None)]
    if isinstance(sources, dict):
        users += [f"the records of source {src!r}" for src, body in sources.items()
                  if not getattr(body, "decoder", None)]
    return users


def _check_zones(name: str, config: Any, decoders: Mapping[str, Plugin],
                 problem: typing.Callable[..., None]) -> None:
    """``timezone`` / ``sender_timezones`` on a collector whose decoders never read a
    time without a zone would be silently ignored: refuse it."""
    keys = [k for k in ("timezone", "sender_timezones") if getattr(config, k, None)]
    if not keys:
        return
    refs = [ref for _, ref in _decoder_refs(config) if ref in decoders]
    if not refs or any("timezone" in type(decoders[ref].config).model_fields for ref in refs):
        return
    for key in keys:
        problem(("collectors", name, key),
                f"{key} has no effect: decoder {', '.join(repr(r) for r in sorted(set(refs)))} "
                "reads no timestamps without a zone",
                "only the syslog, cef and windows_json decoders (and decoders of their types) "
                "use it; a mapping file sets its zone under timestamp.timezone")


def _check_decoder_refs(raw: Mapping[str, Any], valid: Mapping[str, Plugin],
                        decoders: Mapping[str, Plugin], declared: Mapping[str, Any],
                        problem: typing.Callable[..., None]) -> None:
    """Every decoder a collector names must exist. A collector whose own section is
    invalid (a misspelled key) is checked too, from its raw keys, against every declared
    decoder: in this run, not in the next one after the key is fixed."""
    for name, body in raw.items():
        if name in valid:
            refs, known = _decoder_refs(valid[name].config), decoders
        elif isinstance(body, Mapping):
            refs, known = _raw_decoder_refs(body), declared
        else:
            continue
        for loc, ref in refs:
            if ref not in known:
                close = difflib.get_close_matches(ref, list(known), n=1)
                hint = f"did you mean {close[0]!r}?" if close else (
                    f"declare it under decoders: or use one of {', '.join(sorted(decoders))}")
                problem(("collectors", name, *loc), f"unknown decoder {ref!r}", hint)


def _raw_decoder_refs(body: Mapping[str, Any]) -> list[tuple[tuple[Any, ...], str]]:
    """:func:`_decoder_refs` of a collector section that did not validate (its dict)."""
    refs: list[tuple[tuple[Any, ...], str]] = []
    if isinstance(body.get("decoder"), str):
        refs.append((("decoder",), body["decoder"]))
    subs = body.get("subscriptions")
    for i, sub in enumerate(subs if isinstance(subs, list) else []):
        if isinstance(sub, Mapping) and isinstance(sub.get("decoder"), str):
            refs.append((("subscriptions", i, "decoder"), sub["decoder"]))
    sources = body.get("sources")
    for name, source in (sources.items() if isinstance(sources, Mapping) else ()):
        if isinstance(source, Mapping) and isinstance(source.get("decoder"), str):
            refs.append((("sources", name, "decoder"), source["decoder"]))
    return refs


# -- the second pass: what the configuration names in other files ----------------------

Problem = typing.Callable[[tuple[Any, ...], str, "str | None"], ConfigProblem]


def problem_at(file: str, lines: Mapping[tuple[Any, ...], int]) -> Problem:
    """A maker of problems of ``file`` with their line numbers."""
    def make(loc: tuple[Any, ...], message: str, hint: str | None = None) -> ConfigProblem:
        return ConfigProblem(file, _dotted(loc), message, hint, _line_for(lines, loc))
    return make


def _value(source: Any, *path: str) -> Any:
    """``source.a.b`` of a validated document, or ``source["a"]["b"]`` of a raw one."""
    node = source
    for key in path:
        node = node.get(key) if isinstance(node, Mapping) else getattr(node, key, None)
        if node is None:
            return None
    return node


def _strings(value: Any) -> list[str]:
    return [v if isinstance(v, str) else "" for v in value] if isinstance(value, list) else []


def reference_problems(config: Config) -> list[ConfigProblem]:
    """The second validation pass of a valid document (``socd check-config``): every
    file it names must exist and be valid (IoC lists, mapping files, the asset
    inventory, GeoIP databases, the templates folder, allowlist files). All are
    reported at once; loading a document with other problems reports them too."""
    lines: Mapping[tuple[Any, ...], int] = {}
    with contextlib.suppress(OSError, UnicodeDecodeError, yaml.YAMLError):
        node = yaml.compose(Path(config.file).read_text(encoding="utf-8"),
                            Loader=yaml.SafeLoader)
        lines = _line_index(node) if node is not None else {}
    return _reference_problems(config.document, config.config_dir, config.decoders,
                               problem_at(config.file, lines))


def _reference_problems(source: Any, config_dir: str, decoders: Mapping[str, Plugin],
                        make: Problem) -> list[ConfigProblem]:
    """Files named by ``source`` (a validated document or the raw one) that are missing
    or invalid; ``decoders`` are the declared ones (their mapping files are read)."""
    out: list[ConfigProblem] = []
    hint = "paths are relative to the config file's folder"

    def unreadable(loc: tuple[Any, ...], path: str, what: str = "file") -> bool:
        # Missing, or there but not readable by this user (said so, never "no such file").
        problem = read_problem(resolve_path(config_dir, path), what=what)
        if problem is not None:
            out.append(make(loc, problem.message, problem.hint or hint))
        return problem is not None

    for i, path in enumerate(_strings(_value(source, "classification", "ioc_files"))):
        if path:
            unreadable(("classification", "ioc_files", i), path)
    for i, path in enumerate(_strings(_value(source, "allowlist", "files"))):
        if path:
            unreadable(("allowlist", "files", i), path)
    for key in ("assets_file", "geoip_city_db", "geoip_asn_db"):
        path = _value(source, "enrichment", key)
        if isinstance(path, str) and path:
            full = resolve_path(config_dir, path)
            if not unreadable(("enrichment", key), path) and key == "assets_file":
                from socd.enrich import load_inventory

                try:
                    load_inventory(full)
                except ConfigError as exc:
                    out.extend(exc.problems)
    folder = _value(source, "notifications", "templates_dir")
    if (isinstance(folder, str) and folder
            and not unreadable(("notifications", "templates_dir"), folder, "folder")
            and not os.path.isdir(resolve_path(config_dir, folder))):
        out.append(make(("notifications", "templates_dir"),
                        f"not a folder: {resolve_path(config_dir, folder)}", hint))
    for name, plugin in decoders.items():
        ref = getattr(plugin.config, "mapping", None)
        if getattr(plugin.config, "type", None) != "mapping" or not isinstance(ref, str):
            continue
        from socd.decoders.mapping import load_mapping

        try:
            load_mapping(ref, config_dir)
        except ConfigError as exc:
            for p in exc.problems:
                where = f"{p.file}" + (f" {p.path}" if p.path else "")
                out.append(make(("decoders", name, "mapping"), f"mapping {where}: {p.message}",
                                p.hint))
    return out


def _decoder_refs(config: Any) -> list[tuple[tuple[Any, ...], str]]:
    """Every decoder name a collector config refers to, with its key path."""
    refs: list[tuple[tuple[Any, ...], str]] = []
    if isinstance(getattr(config, "decoder", None), str):
        refs.append((("decoder",), config.decoder))
    for i, sub in enumerate(getattr(config, "subscriptions", None) or []):
        if getattr(sub, "decoder", None):
            refs.append((("subscriptions", i, "decoder"), sub.decoder))
    sources = getattr(config, "sources", None)
    if isinstance(sources, dict):  # webhook: a decoder per source
        for name, source in sources.items():
            if getattr(source, "decoder", None):
                refs.append((("sources", name, "decoder"), source.decoder))
    return refs


def _plugins(kind: Kind, section: str, raw: Mapping[str, Any], base: type[PluginConfig],
             problem: typing.Callable[..., None],
             optional: set[str] | None = None, *, unset: _Unset | None = None
             ) -> dict[str, Plugin]:
    """Validate each plugin section; names in ``optional`` (built-in decoders) are
    left out quietly when their module cannot be imported. A section with unset
    ``${VAR}``s is kept, marked (:attr:`Plugin.unresolved`), when nothing else is wrong
    with it."""
    out: dict[str, Plugin] = {}
    for name, body in raw.items():
        loc: tuple[Any, ...] = (section, name)
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}", str(name)):
            problem(loc, f"invalid {kind} name {name!r}",
                    "use letters, digits, '_', '-' or '.'; names become metric labels")
            continue
        if not isinstance(body, Mapping):
            problem(loc, f"a {kind} must be a mapping with a 'type' key")
            continue
        type_ = body.get("type")
        if not isinstance(type_, str):
            problem((*loc, "type"), f"missing 'type'; known {kind} types: "
                    f"{', '.join(known_types(kind))}")
            continue
        try:
            cls = lookup(kind, type_).load()
        except PluginError as exc:
            if optional and name in optional:
                continue
            message = str(exc)
            if "unknown" in message:
                message = unknown_type_message(kind, type_)
            problem((*loc, "type"), message)
            continue
        model: type[BaseModel] = cls.Config
        missing = unset.under(loc) if unset is not None else []
        try:
            config = model.model_validate(dict(body))
        except ValidationError as exc:
            _report(exc, model, loc, problem)
            if not missing or not all(unset is not None and unset.covers((*loc, *e["loc"]))
                                      for e in exc.errors()):
                continue
            # Invalid only because a ${VAR} is unset (`url: ${SLACK_URL}` is no URL): keep
            # it unvalidated; it is never built (instantiate raises its problems).
            config = model.model_construct(**dict(body))
        assert unset is not None or not missing
        unresolved = unset.defer(config, loc, missing) if unset is not None else ()
        out[str(name)] = Plugin(str(name), cls, config, unresolved)
    return out


def _report(exc: ValidationError, model: type[BaseModel], prefix: tuple[Any, ...],
            problem: typing.Callable[..., None]) -> None:
    for err in exc.errors():
        loc = tuple(err["loc"])
        full = (*prefix, *loc)
        kind = err["type"]
        if kind == "extra_forbidden":
            parent = _model_at(model, loc[:-1])
            options = sorted(parent.model_fields) if parent else []
            close = difflib.get_close_matches(str(loc[-1]), options, n=1, cutoff=0.6)
            hint = (f"did you mean {close[0]!r}?" if close else
                    f"valid keys here: {', '.join(options)}" if options else None)
            problem(full, f"unknown key {loc[-1]!r}", hint)
        elif kind == "missing":
            problem(full, "required key is missing")
        else:
            problem(full, f"{err['msg']}{_got(loc, err.get('input'))}")


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class that describes the object at ``loc`` inside ``model``."""
    current: Any = model
    for part in loc:
        if isinstance(current, type) and issubclass(current, BaseModel):
            info = current.model_fields.get(str(part))
            if info is None:
                return None
            current = info.annotation
        else:
            current = _container_item(current)
            if current is None:
                return None
        current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else tp
    return tp


def _container_item(tp: Any) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (list, tuple, set, frozenset) and args:
        return _unwrap(args[0])
    if origin is dict and len(args) == 2:
        return _unwrap(args[1])
    return None


_SECRET_KEY = re.compile(r"pass(word)?|secret|token|api_?key|credential", re.IGNORECASE)


def _got(loc: tuple[Any, ...], value: Any) -> str:
    """`` (got <value>)``, except for secrets and whole sections (which may hold secrets)."""
    if isinstance(value, Mapping | list) or any(_SECRET_KEY.search(str(p)) for p in loc):
        return ""
    return f" (got {_short(value)})"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _substitute(value: Any, env: Mapping[str, str], loc: tuple[Any, ...],
                missing: list[tuple[tuple[Any, ...], str]]) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in string values (never in keys). An
    unset variable without a default stays as written and is added to ``missing``
    with its key path (see :class:`_Unset`)."""
    if isinstance(value, str):
        def repl(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            missing.append((loc, name))
            return m.group(0)
        return _ENV.sub(repl, value) if "${" in value else value
    if isinstance(value, dict):
        return {k: _substitute(v, env, (*loc, k), missing) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, env, (*loc, i), missing) for i, v in enumerate(value)]
    return value


_PLUGIN_SECTIONS = frozenset({"decoders", "collectors", "sinks", "notifiers"})


class UnsetSecret(SecretStr):
    """A secret option whose ``${VAR}`` is not set. Reading it raises the
    :class:`ConfigError` that names the variable, so a command that never uses the
    secret runs without it and one that does fails saying what to set."""

    def __init__(self, problem: ConfigProblem) -> None:
        super().__init__("")
        self.problem = problem

    def get_secret_value(self) -> str:
        raise ConfigError([self.problem])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UnsetSecret) and other.problem == self.problem

    def __hash__(self) -> int:
        return hash(self.problem)

    def __len__(self) -> int:
        return 0


@dataclass(slots=True)
class _Unset:
    """The ``${VAR}``s of one document that are not set, and what they block.

    Two steps, like the rest of validation: loading keeps going when a variable is
    unset, and the variable becomes a problem only where its value is needed. In a
    plugin section it marks the plugin (built only by ``run``/``check-config``, which
    require every variable, or by the command that uses it); in a secret option
    elsewhere (``sharing.misp.api_key``) the secret becomes an :class:`UnsetSecret`.
    Any other value (``state_dir``, a path) is needed by every command, so an unset
    variable there is a problem at once (``fatal``)."""

    file: str
    lines: Mapping[tuple[Any, ...], int]
    found: list[tuple[tuple[Any, ...], str]] = field(default_factory=list)
    fatal: list[ConfigProblem] = field(default_factory=list)
    deferred: list[ConfigProblem] = field(default_factory=list)

    @classmethod
    def substitute(cls, raw: dict[str, Any], env: Mapping[str, str], file: str,
                   lines: Mapping[tuple[Any, ...], int]) -> tuple[dict[str, Any], _Unset]:
        """The document with its variables substituted, and what was left unset."""
        unset = cls(file, lines)
        return _substitute(raw, env, (), unset.found), unset

    def covers(self, loc: tuple[Any, ...]) -> bool:
        """A validation error at ``loc`` is the consequence of an unset variable."""
        return any(tuple(loc[:len(where)]) == where for where, _ in self.found)

    def under(self, prefix: tuple[Any, ...]) -> list[tuple[tuple[Any, ...], str]]:
        return [(loc, name) for loc, name in self.found if loc[:len(prefix)] == prefix]

    def problem(self, loc: tuple[Any, ...], name: str, *, secret: bool) -> ConfigProblem:
        return ConfigProblem(self.file, _dotted(loc), f"environment variable {name} is not set",
                             env_hint(name, loc, secret=secret), _line_for(self.lines, loc))

    def defer(self, config: Any, prefix: tuple[Any, ...],
              missing: list[tuple[tuple[Any, ...], str]]) -> tuple[ConfigProblem, ...]:
        """The problems of a plugin's unset variables; its secrets that need them
        become :class:`UnsetSecret`."""
        out = []
        for loc, name in missing:
            slot = _secret_slot(config, loc[len(prefix):])
            problem = self.problem(loc, name, secret=slot is not None)
            if slot is not None:
                slot(UnsetSecret(problem))
            out.append(problem)
        self.deferred.extend(out)
        return tuple(out)

    def settle(self, doc: DocumentConfig | None) -> None:
        """Sort the unset variables outside plugin sections into deferred secrets and
        fatal problems (all fatal when the document did not validate)."""
        for loc, name in self.found:
            if loc and loc[0] in _PLUGIN_SECTIONS and len(loc) >= 2:
                continue  # the plugin's own (_plugins / defer)
            slot = _secret_slot(doc, loc) if doc is not None else None
            problem = self.problem(loc, name, secret=slot is not None)
            if slot is not None:
                slot(UnsetSecret(problem))
                self.deferred.append(problem)
            else:
                self.fatal.append(problem)


def _secret_slot(root: Any, loc: tuple[Any, ...]) -> typing.Callable[[SecretStr], None] | None:
    """A setter for the secret option at ``loc`` (models are frozen: their ``__dict__``
    is written directly), or None when the value there is no secret."""
    if not loc:
        return None
    parent: Any = root
    for part in loc[:-1]:
        if isinstance(parent, BaseModel):
            parent = getattr(parent, str(part), None)
        elif isinstance(parent, Mapping | list):
            try:
                parent = parent[part]
            except (KeyError, IndexError, TypeError):
                return None
        else:
            return None
    key = loc[-1]
    if isinstance(parent, BaseModel):
        value = getattr(parent, str(key), None)
        info = type(parent).model_fields.get(str(key))
        secret_field = info is not None and "SecretStr" in str(info.annotation)
        if not isinstance(value, SecretStr) and not (secret_field and isinstance(value, str)):
            return None
        return lambda new: parent.__dict__.__setitem__(str(key), new)
    if isinstance(parent, dict | list):
        try:
            value = parent[key]
        except (KeyError, IndexError, TypeError):
            return None
        if not isinstance(value, SecretStr):
            return None
        return lambda new: parent.__setitem__(key, new)
    return None


def env_hint(name: str, loc: tuple[Any, ...] = (), *, secret: bool = False) -> str:
    """Where to set an unset variable. Never a default in the YAML for a secret: that
    would write the secret into a file meant to hold none."""
    from socd import install

    layout = install.detect()
    where = (f"add {name}=... to {layout.env_file} (the unit's EnvironmentFile; the socd "
             f"command reads it too) or export {name}=... for one command"
             if layout.installed else
             f"export {name}=..., or put {name}=... in an environment file and pass it "
             "with --env-file")
    if secret or _SECRET_KEY.search(name) or any(_SECRET_KEY.search(str(p)) for p in loc):
        return where
    return f"{where}; a value that is not secret may have a default: ${{{name}:-value}}"


def _line_index(node: yaml.Node) -> dict[tuple[Any, ...], int]:
    index: dict[tuple[Any, ...], int] = {}

    def walk(n: yaml.Node, loc: tuple[Any, ...]) -> None:
        index[loc] = n.start_mark.line + 1
        if isinstance(n, yaml.MappingNode):
            for key_node, value_node in n.value:
                key = key_node.value
                index[(*loc, key)] = key_node.start_mark.line + 1
                walk(value_node, (*loc, key))
                index[(*loc, key)] = key_node.start_mark.line + 1
        elif isinstance(n, yaml.SequenceNode):
            for i, item in enumerate(n.value):
                walk(item, (*loc, i))

    walk(node, ())
    return index


def _line_for(lines: Mapping[tuple[Any, ...], int], loc: tuple[Any, ...]) -> int | None:
    key = tuple(str(p) if not isinstance(p, int) else p for p in loc)
    while key:
        if key in lines:
            return lines[key]
        key = key[:-1]
    return None
