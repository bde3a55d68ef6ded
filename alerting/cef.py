"""The ``syslog_cef`` sink: alerts as CEF over syslog to an upstream SIEM.

Each alert becomes one ``CEF:0`` message (ArcSight Common Event Format)::

    CEF:0|socd|socd|<version>|<rule.id>|<rule.name>|<0-10>|src=... dst=... rt=... externalId=...

in a syslog frame (RFC 5424 by default, RFC 3164 on request) sent over UDP, TCP
or TLS. TCP and TLS use RFC 5425/6587 octet counting (``<length> <message>``) by
default, newline framing on request. The CEF severity follows the SOC severity
(low 3, medium 5, high 8, critical 10) and so does the syslog severity (notice,
warning, error, critical). The extension keys are in docs/sharing.md.

Escaping follows the CEF specification: ``\\`` and ``|`` in header fields,
``\\``, ``=`` and line breaks (as ``\\n``/``\\r``) in extension values, so socd's
own ``cef`` decoder (and any CEF parser) reads back the same values.

Delivery: syslog has no acknowledgement, so ``write`` returns once the batch was
handed to the kernel (TCP/TLS: written and drained; UDP: sent). A connection or
send failure raises a retryable :class:`~socd.errors.SinkError`: the pipeline
retries (and spools when configured) and the sink reconnects, so delivery is at
least once; after a reconnect a part of the failed batch may be sent twice (the
SIEM deduplicates on ``externalId`` = ``event.hash``). UDP may lose messages
silently, as UDP syslog always does; prefer TCP or TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import structlog
from pydantic import Field, field_validator, model_validator

from socd import __version__
from socd.config import SinkConfig
from socd.config.tls import client_context_for
from socd.errors import HealthCheckError, SinkError
from socd.event import Event, get
from socd.plugins import PluginContext
from socd.tz import iso_or_none

log = structlog.get_logger("socd.alerting.cef")

CEF_SEVERITY = {"low": 3, "medium": 5, "high": 8, "critical": 10}
# SOC severity -> syslog severity (RFC 5424 numbers): notice, warning, error, critical.
SYSLOG_SEVERITY = {"low": 5, "medium": 4, "high": 3, "critical": 2}
FACILITIES = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6,
    "news": 7, "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11, "ntp": 12, "security": 13,
    "console": 14, "solaris-cron": 15, **{f"local{i}": 16 + i for i in range(8)},
}
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def escape_header(value: Any) -> str:
    """A CEF header field: ``\\`` and ``|`` escaped, line breaks become spaces."""
    text = str(value)
    text = text.replace("\\", "\\\\").replace("|", "\\|")
    return " ".join(text.splitlines()) if ("\n" in text or "\r" in text) else text


def escape_value(value: Any) -> str:
    """A CEF extension value: ``\\``, ``=`` escaped, line breaks written ``\\n``/``\\r``."""
    text = str(value).strip()
    return (text.replace("\\", "\\\\").replace("=", "\\=")
            .replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\r"))


def _first(event: Event, *paths: str) -> Any:
    for path in paths:
        value = get(event, path)
        if value not in (None, "", []):
            return value
    return None


def _epoch_ms(ts: Any) -> int | None:
    dt = iso_or_none(ts)
    return None if dt is None else int(dt.timestamp() * 1000)


def cef_line(event: Event, *, max_msg_chars: int = 1024) -> str:
    """The ``CEF:0|...`` text of one alert (no syslog header)."""
    severity = str(get(event, "socd.severity") or "")
    signature = _first(event, "rule.id", "event.code", "rule.name") or "alert"
    name = _first(event, "rule.name", "message", "rule.description") or "socd alert"
    header = "|".join(escape_header(x) for x in (
        "CEF:0", "socd", "socd", __version__, signature, name,
        CEF_SEVERITY.get(severity, 5)))
    ioc = get(event, "socd.ioc.values")
    msg = _first(event, "message", "rule.description")
    if isinstance(msg, str) and len(msg) > max_msg_chars:
        msg = msg[:max_msg_chars - 1] + "…"
    pairs: list[tuple[str, Any]] = [
        ("rt", _epoch_ms(event.get("@timestamp"))),
        ("src", get(event, "source.ip")),
        ("spt", get(event, "source.port")),
        ("shost", _first(event, "source.domain", "host.name")),
        ("dst", get(event, "destination.ip")),
        ("dpt", get(event, "destination.port")),
        ("dhost", get(event, "destination.domain")),
        ("suser", get(event, "user.name")),
        ("fileHash", _first(event, "file.hash.sha256", "file.hash.sha1", "file.hash.md5")),
        ("fname", get(event, "file.name")),
        ("cs1Label", "unit"), ("cs1", get(event, "socd.unit")),
        ("cs2Label", "layer"), ("cs2", get(event, "socd.layer")),
        ("cs3Label", "ioc"), ("cs3", ",".join(map(str, ioc)) if isinstance(ioc, list) else ioc),
        ("cs4Label", "severity"), ("cs4", get(event, "socd.severity_label")),
        ("cs5Label", "asset_kind"), ("cs5", get(event, "socd.asset_kind")),
        ("externalId", get(event, "event.hash")),
        ("msg", msg),
    ]
    present = {k for k, v in pairs if v not in (None, "") and not k.endswith("Label")}
    ext = " ".join(
        f"{key}={escape_value(value)}" for key, value in pairs
        if value not in (None, "") and (not key.endswith("Label") or key[:-5] in present))
    return f"{header}|{ext}"


class SyslogCefSink:
    """Forwards alerts as CEF over syslog (UDP, TCP or TLS) to an upstream SIEM."""

    class Config(SinkConfig):
        type: Literal["syslog_cef"]
        host: str = Field(min_length=1, description="The SIEM's syslog receiver.")
        port: int | None = Field(None, ge=1, le=65535, description="Its port (default 514; "
                                 "6514 for tls).")
        protocol: Literal["udp", "tcp", "tls"] = Field(
            "tcp", description="Transport. TCP and TLS keep one connection and reconnect "
            "after a failure; UDP may lose messages.")
        framing: Literal["octet-counting", "newline"] = Field(
            "octet-counting", description="TCP/TLS framing: RFC 5425/6587 octet counting "
            "(`<length> <message>`) or one message a line (legacy receivers).")
        header: Literal["rfc5424", "rfc3164"] = Field(
            "rfc5424", description="Syslog header format.")
        facility: str = Field("local4", description="Syslog facility name (local0-local7, "
                              "security, auth...).")
        app_name: str = Field("socd", min_length=1, max_length=48,
                              description="APP-NAME (RFC 5424) or TAG (RFC 3164).")
        hostname: str | None = Field(None, description="HOSTNAME in the header (default: "
                                     "this machine's name).")
        ca_file: str | None = Field(None, description="TLS: CA bundle (PEM) for the SIEM's "
                                    "certificate, relative to the config file's folder "
                                    "(default: the system CAs).")
        cert_file: str | None = Field(None, description="TLS: client certificate (PEM).")
        key_file: str | None = Field(None, description="TLS: its private key (PEM).")
        verify: bool = Field(True, description="TLS: verify the SIEM's certificate and name.")
        server_name: str | None = Field(None, description="TLS: name expected in the "
                                        "certificate (default: host).")
        connect_timeout_secs: float = Field(10.0, gt=0, le=300,
                                            description="Timeout of a connect and a send.")
        max_msg_chars: int = Field(1024, ge=64, le=65536, description="`msg` values are cut "
                                   "to this many characters (UDP datagrams stay small).")

        @field_validator("facility")
        @classmethod
        def _facility(cls, value: str) -> str:
            if value not in FACILITIES:
                raise ValueError(f"unknown facility {value!r}; use one of "
                                 f"{', '.join(FACILITIES)}")
            return value

        @model_validator(mode="after")
        def _tls_files(self) -> SyslogCefSink.Config:
            if (self.cert_file is None) != (self.key_file is None):
                raise ValueError("cert_file and key_file go together")
            if self.protocol != "tls" and (self.ca_file or self.cert_file):
                raise ValueError("ca_file/cert_file/key_file need protocol: tls")
            return self

    def __init__(self, config: Config, ctx: PluginContext) -> None:
        self.name = ctx.name
        self.config = config
        self._config_dir = ctx.config_dir
        self.port = config.port or (6514 if config.protocol == "tls" else 514)
        self.hostname = (config.hostname or socket.gethostname() or "-").replace(" ", "_")
        self._facility = FACILITIES[config.facility]
        self._writer: asyncio.StreamWriter | None = None
        self._reader: asyncio.StreamReader | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._lock = asyncio.Lock()

    # -- framing ----------------------------------------------------------------------------

    def message(self, event: Event, now: datetime | None = None) -> bytes:
        """One syslog message (header + CEF), without transport framing."""
        severity = SYSLOG_SEVERITY.get(str(get(event, "socd.severity") or ""), 4)
        pri = self._facility * 8 + severity
        now = now or datetime.now(UTC)
        body = cef_line(event, max_msg_chars=self.config.max_msg_chars)
        if self.config.header == "rfc5424":
            ts = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + \
                f"{now.microsecond // 1000:03d}Z"
            head = (f"<{pri}>1 {ts} {self.hostname[:255]} {self.config.app_name} "
                    f"{os.getpid()} CEF -")
        else:
            local = now.astimezone()
            ts = f"{_MONTHS[local.month - 1]} {local.day:2d} {local:%H:%M:%S}"
            head = f"<{pri}>{ts} {self.hostname} {self.config.app_name}:"
        return f"{head} {body}".encode()

    def frame(self, message: bytes) -> bytes:
        if self.config.framing == "octet-counting":
            return str(len(message)).encode() + b" " + message
        return message.replace(b"\n", b" ") + b"\n"

    # -- connections ------------------------------------------------------------------------

    def _ssl_context(self) -> ssl.SSLContext:
        cfg = self.config  # cert_file and key_file come together (the config checks)
        return client_context_for(self._config_dir, ca_file=cfg.ca_file,
                                  cert_file=cfg.cert_file, key_file=cfg.key_file,
                                  verify=cfg.verify)

    async def _connect(self) -> None:
        cfg = self.config
        timeout = cfg.connect_timeout_secs
        if cfg.protocol == "udp":
            loop = asyncio.get_running_loop()
            transport, _ = await asyncio.wait_for(loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, remote_addr=(cfg.host, self.port)), timeout)
            self._udp = transport
            return
        kwargs: dict[str, Any] = {}
        if cfg.protocol == "tls":
            kwargs = {"ssl": self._ssl_context(),
                      "server_hostname": cfg.server_name or cfg.host}
        self._reader, self._writer = await asyncio.wait_for(
            asyncio.open_connection(cfg.host, self.port, **kwargs), timeout)
        log.info("syslog_cef connected", sink=self.name, host=cfg.host, port=self.port,
                 protocol=cfg.protocol)

    def _connected(self) -> bool:
        if self.config.protocol == "udp":
            return self._udp is not None and not self._udp.is_closing()
        return (self._writer is not None and self._reader is not None
                and not self._writer.is_closing() and not self._reader.at_eof())

    async def _drop(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 2)

    # -- the Sink protocol ------------------------------------------------------------------

    async def start(self) -> None:
        # Connect lazily: a SIEM that is down must not stop socd from starting; the
        # first write fails, and the pipeline retries and spools.
        return None

    async def healthcheck(self) -> None:
        try:
            await self._connect()
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            raise HealthCheckError(f"{self.config.protocol}://{self.config.host}:{self.port}: "
                                   f"{type(exc).__name__}: {exc}") from exc
        finally:
            await self._drop()

    async def write(self, events: Sequence[Event]) -> None:
        if not events:
            return
        now = datetime.now(UTC)
        messages = [self.message(e, now) for e in events]
        async with self._lock:
            try:
                if not self._connected():
                    await self._drop()
                    await self._connect()
                if self._udp is not None:
                    for m in messages:
                        self._udp.sendto(m)
                    return
                assert self._writer is not None
                self._writer.write(b"".join(self.frame(m) for m in messages))
                await asyncio.wait_for(self._writer.drain(), self.config.connect_timeout_secs)
            except (OSError, TimeoutError, ssl.SSLError, ConnectionError) as exc:
                await self._drop()
                raise SinkError(f"syslog_cef {self.config.protocol}://{self.config.host}:"
                                f"{self.port}: {type(exc).__name__}: {exc}",
                                retryable=True) from exc

    async def close(self) -> None:
        async with self._lock:
            await self._drop()
