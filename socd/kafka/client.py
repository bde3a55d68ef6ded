"""Client settings of every Kafka client socd makes, and their librdkafka form.

One pydantic model (:class:`KafkaClientConfig`) holds what connects a client to a
cluster: the bootstrap servers, TLS and SASL (PLAIN, SCRAM-SHA-256/512). The
collector and the sink inherit it (its keys sit beside theirs in the config), the
partitioned-correlation roles nest it. :func:`librdkafka_settings` turns it into
the ``str -> str`` dict confluent-kafka takes; the delivery settings that make
socd's guarantees (manual commits, idempotence) are added by the plugins and may
not be overridden.

Secrets: ``sasl.password`` is a :class:`~pydantic.SecretStr` (``${ENV}`` in the
config file, substituted by the loader), shown as ``**********`` in any repr; the
settings dict holds it in clear, so it is never logged: :func:`redacted` is the
form to log.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from socd.config.models import StrictModel
from socd.config.paths import resolve_path

SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]

# librdkafka keys whose values are secrets (never logged).
_SECRET_KEYS = frozenset({"sasl.password", "ssl.key.password", "ssl.key.pem"})
_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):([0-9]{1,5})$")

# Settings socd decides itself: a `librdkafka:` pass-through entry may not change them,
# since the at-least-once and no-duplicate guarantees rest on them.
RESERVED_SETTINGS = frozenset({
    "bootstrap.servers", "security.protocol", "sasl.mechanism", "sasl.mechanisms",
    "sasl.username", "sasl.password", "enable.auto.commit", "enable.auto.offset.store",
    "enable.idempotence", "acks", "request.required.acks", "group.id",
    "partition.assignment.strategy", "isolation.level", "transactional.id",
    "group.instance.id",
    "on_commit", "error_cb", "stats_cb", "logger", "throttle_cb", "oauth_cb",
})


class KafkaTls(StrictModel):
    """TLS to the brokers (security.protocol SSL or SASL_SSL)."""

    ca_file: str | None = Field(None, description="CA bundle (PEM) that signed the brokers' "
                                "certificates, relative to the config file's folder; default: "
                                "the system store.")
    cert_file: str | None = Field(None, description="Client certificate (PEM) for mutual TLS.")
    key_file: str | None = Field(None, description="Client private key (PEM, unencrypted).")
    verify: bool = Field(True, description="Check the brokers' certificates and that they "
                         "name the host. Turn off only for a lab broker.")

    @model_validator(mode="after")
    def _pair(self) -> KafkaTls:
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("set both `cert_file` and `key_file` (mutual TLS) or neither")
        return self


class KafkaSasl(StrictModel):
    """SASL login (security.protocol SASL_PLAINTEXT, or SASL_SSL with `tls`)."""

    mechanism: SaslMechanism = Field("SCRAM-SHA-512", description="`PLAIN`, `SCRAM-SHA-256` "
                                     "or `SCRAM-SHA-512`. PLAIN sends the password as it is: "
                                     "use it only with `tls`.")
    username: str = Field(min_length=1, description="SASL user name.")
    password: SecretStr = Field(description="SASL password; write `${ENV_VAR}` and keep it "
                                "out of the file.")


class KafkaClientConfig(StrictModel):
    """How a Kafka client reaches the cluster (shared by the collector, the sink and the
    partitioned-correlation roles)."""

    bootstrap_servers: list[str] = Field(
        min_length=1, description="Brokers to start from, `host:port` each (a comma-separated "
        "string is accepted too); the client learns the rest of the cluster from them.")
    client_id: str | None = Field(None, description="client.id the brokers log and quota "
                                  "by; default `socd-<plugin name>`.")
    tls: KafkaTls | None = Field(None, description="TLS to the brokers; unset: plaintext.")
    sasl: KafkaSasl | None = Field(None, description="SASL login; unset: none.")
    socket_timeout_secs: float = Field(30.0, ge=1, le=300, description="Timeout of one "
                                       "network request to a broker.")
    connect_timeout_secs: float = Field(10.0, ge=1, le=300, description="Timeout of "
                                        "establishing one broker connection (TCP, TLS, SASL).")
    librdkafka: dict[str, str] = Field(
        default_factory=dict, description="Further librdkafka settings (`fetch.min.bytes`, "
        "`linger.ms`, `compression.type`...) passed as they are. The connection, commit, "
        "idempotence and assignment settings socd relies on cannot be overridden here.")

    @field_validator("bootstrap_servers", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("bootstrap_servers")
    @classmethod
    def _host_port(cls, value: list[str]) -> list[str]:
        for server in value:
            match = _HOST_PORT.match(server)
            if match is None or not 0 < int(match.group(2)) < 65536:
                raise ValueError(f"{server!r} is not `host:port`")
        return value

    @field_validator("librdkafka")
    @classmethod
    def _not_reserved(cls, value: dict[str, str]) -> dict[str, str]:
        taken = sorted(k for k in value if k in RESERVED_SETTINGS or k.startswith(("ssl.",
                                                                                   "sasl.")))
        if taken:
            raise ValueError(f"{', '.join(taken)} cannot be set here: socd sets it (TLS and "
                             "SASL under `tls:`/`sasl:`; commits, acks and idempotence are "
                             "part of socd's delivery guarantee)")
        return value

    @property
    def security_protocol(self) -> str:
        """PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."""
        if self.sasl is not None:
            return "SASL_SSL" if self.tls is not None else "SASL_PLAINTEXT"
        return "SSL" if self.tls is not None else "PLAINTEXT"


def librdkafka_settings(cfg: KafkaClientConfig, *, client_id: str,
                        config_dir: str = ".") -> dict[str, str]:
    """The librdkafka settings of ``cfg``: connection, TLS, SASL, timeouts, and the
    ``librdkafka:`` pass-through entries. ``client_id`` applies when ``cfg`` sets none;
    TLS file names are resolved against ``config_dir`` (the config file's folder).
    The result holds the SASL password in clear: log :func:`redacted` instead."""
    out = dict(cfg.librdkafka)
    out.update({
        "bootstrap.servers": ",".join(cfg.bootstrap_servers),
        "client.id": cfg.client_id or client_id,
        "security.protocol": cfg.security_protocol,
        "socket.timeout.ms": str(int(cfg.socket_timeout_secs * 1000)),
        "socket.connection.setup.timeout.ms": str(int(cfg.connect_timeout_secs * 1000)),
    })
    if cfg.tls is not None:
        out.update(_tls_settings(cfg.tls, config_dir))
    if cfg.sasl is not None:
        out.update({
            "sasl.mechanism": cfg.sasl.mechanism,
            "sasl.username": cfg.sasl.username,
            "sasl.password": cfg.sasl.password.get_secret_value(),
        })
    return out


def consumer_settings(cfg: KafkaClientConfig, *, group_id: str, client_id: str,
                      config_dir: str = ".", auto_offset_reset: str = "earliest",
                      session_timeout_secs: float = 45.0,
                      max_poll_interval_secs: float = 300.0,
                      instance_id: str | None = None) -> dict[str, str]:
    """Settings of a consumer-group member that commits by hand: auto commit and auto
    offset store off (an offset is committed only once its record is stored or
    journaled), cooperative-sticky assignment (a rebalance moves only the partitions
    that change owner; the others keep flowing), committed reads only. ``instance_id``
    makes the member static (group.instance.id): a restart within the session timeout
    gets its partitions back without a rebalance."""
    out = librdkafka_settings(cfg, client_id=client_id, config_dir=config_dir)
    out.update({
        "group.id": group_id,
        "enable.auto.commit": "false",
        "enable.auto.offset.store": "false",
        "auto.offset.reset": auto_offset_reset,
        "partition.assignment.strategy": "cooperative-sticky",
        "isolation.level": "read_committed",
        "session.timeout.ms": str(int(session_timeout_secs * 1000)),
        "max.poll.interval.ms": str(int(max_poll_interval_secs * 1000)),
        "enable.partition.eof": "false",
    })
    if instance_id:
        out["group.instance.id"] = instance_id
    return out


def producer_settings(cfg: KafkaClientConfig, *, client_id: str, config_dir: str = ".",
                      delivery_timeout_secs: float = 30.0,
                      max_message_bytes: int = 1024 * 1024) -> dict[str, str]:
    """Settings of an idempotent producer: ``acks=all`` and ``enable.idempotence`` (the
    broker drops a retried duplicate within a producer session and keeps each
    partition's order), a bounded delivery time after which a record's delivery report
    says it failed (the caller then retries the batch or spools it)."""
    out = librdkafka_settings(cfg, client_id=client_id, config_dir=config_dir)
    out.setdefault("linger.ms", "5")
    out.update({
        "enable.idempotence": "true",
        "acks": "all",
        "message.timeout.ms": str(int(delivery_timeout_secs * 1000)),
        "message.max.bytes": str(max_message_bytes),
    })
    return out


def _tls_settings(tls: KafkaTls, config_dir: str) -> dict[str, str]:
    out = {
        "enable.ssl.certificate.verification": "true" if tls.verify else "false",
        "ssl.endpoint.identification.algorithm": "https" if tls.verify else "none",
    }
    for key, path in (("ssl.ca.location", tls.ca_file),
                      ("ssl.certificate.location", tls.cert_file),
                      ("ssl.key.location", tls.key_file)):
        if path:
            out[key] = resolve_path(config_dir, path)
    return out


def redacted(settings: Mapping[str, object]) -> dict[str, object]:
    """``settings`` fit for a log line: secret values replaced by ``***``."""
    return {k: ("***" if k in _SECRET_KEYS else v) for k, v in settings.items()}


def librdkafka_logger(name: str) -> logging.Logger:
    """The stdlib logger librdkafka's own log lines go to (``logger`` setting), rather
    than to stderr where they would bypass socd's JSON log."""
    return logging.getLogger(f"socd.kafka.librdkafka.{name}")
