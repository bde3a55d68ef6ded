"""The document: :class:`DocumentConfig`, the top level of the YAML file, and the
sections of the daemon itself (log, http, pipeline, journal, dead letters,
classification, enrichment, rules, IoC matching, allowlist).

The feature sections are models beside this one (:mod:`socd.config.notifications`,
:mod:`~socd.config.incidents`, :mod:`~socd.config.sharing`,
:mod:`~socd.config.reports`); the plugin sections (decoders, collectors, sinks,
notifiers) are checked against each plugin's own ``Config`` once its ``type`` is known
(:mod:`socd.config.loader`).
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import Field, field_validator

from socd.config.cluster import ClusterConfig
from socd.config.console import ConsoleConfig
from socd.config.documents import DocumentsConfig
from socd.config.incidents import IncidentsConfig
from socd.config.models import HttpLimits, StrictModel
from socd.config.notifications import NotificationsConfig
from socd.config.reports import ReportsConfig
from socd.config.sharing import SharingConfig
from socd.severity import Severity


class LogConfig(StrictModel):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = Field(
        "auto", description="`auto`: console on a terminal, JSON lines otherwise (journald).")


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
    """The durable intake journal (socd.app.journal, docs/architecture.md): a batch is
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
    documents: DocumentsConfig = Field(
        default_factory=DocumentsConfig, description="The official layout (Decree "
        "30/2020/NĐ-CP) of the reports and incident documents: issuing body, number, place "
        "and date, recipients, signer, font (docs/reports.md).")
    console: ConsoleConfig = Field(default_factory=ConsoleConfig, description="The analyst "
                                   "console (docs/console.md).")
    cluster: ClusterConfig | None = Field(None, description="Partitioned correlation on "
                                          "Kafka (docs/scaling.md); absent: one process.")
