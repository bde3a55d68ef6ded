"""The strict base of every config model, and what each kind of plugin's config shares.

Every model of the configuration derives from :class:`StrictModel` (unknown keys are
errors, values immutable): the document's sections (:mod:`socd.config.document` and
the feature sections beside it) and each plugin's ``Config`` class, which derives from
the base of its kind here (:class:`CollectorConfig`, :class:`DecoderConfig`,
:class:`SinkConfig`, :class:`NotifierConfig`).
"""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from socd.config.located import Loc, strings_at
from socd.severity import BUILTIN_TABLES
from socd.tz import ZoneOrOffset

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
    # Where this collector's config names decoders, as key paths: "[*]" stands for each
    # item of a list, "{*}" for each value of a mapping (mqtt adds ("subscriptions",
    # "[*]", "decoder")). check-config checks every name; socd.zones gives the zones of
    # this collector to each decoder named.
    decoder_fields: ClassVar[tuple[tuple[str, ...], ...]] = (("decoder",),)

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

    def decoder_refs(self) -> list[tuple[Loc, str]]:
        """Every decoder name this config refers to (:attr:`decoder_fields`), with its
        key path. The collector's own ``decoder`` always names one; an empty per-input
        one (a topic's, a source's) means the collector's own."""
        return [(loc, ref) for loc, ref in strings_at(self, self.decoder_fields)
                if ref or len(loc) == 1]

    def default_decoder_users(self) -> list[str]:
        """What this collector reads with its own ``decoder`` rather than a per-input
        one, in words for the ``check-config`` warning about an unset ``decoder``;
        empty when every input names its own. A collector with per-input decoders
        overrides this."""
        return ["its records"]

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

