"""The ``mqtt`` notifier: publishes the notification JSON to an MQTT broker (aiomqtt).

For dashboards, sirens and other machines on the SOC's broker. The payload is
the same JSON as the ``webhook`` notifier's
(:func:`~socd.alerting.notifiers.common.notification_body`). The topic may
contain ``{severity}`` (the code: ``low``...``critical``) and ``{route}``; a
``/``, ``+`` or ``#`` in a route name becomes ``_`` so it cannot change the
topic's levels.

One connection per notifier, opened by ``start`` (or by the first send when the
broker was down then). ``send`` returns once the broker acknowledged the
message (PUBACK for QoS 1, PUBCOMP for QoS 2); with QoS 0 once it is written to
the socket. A lost connection makes ``send`` raise a retryable
:class:`~socd.errors.NotifyError`; the next attempt reconnects. A retry after a
lost PUBACK may deliver the message twice: receivers deduplicate by ``id``.
The health check opens a separate connection (client id ``<client_id>-check``)
and publishes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import string
from typing import Literal

import aiomqtt
import structlog
from pydantic import Field, SecretStr, field_validator

from socd.config import NotifierConfig
from socd.config.tls import TlsClientConfig
from socd.errors import HealthCheckError, NotifyError
from socd.plugins import Notification, PluginContext

from .common import dumps, notification_body, severity_of

log = structlog.get_logger("socd.alerting.notifiers.mqtt")

PLACEHOLDERS = frozenset({"severity", "route"})
_TOPIC_UNSAFE = str.maketrans({"/": "_", "+": "_", "#": "_", "\x00": "_"})


def topic_placeholders(template: str) -> set[str]:
    """The ``{name}`` placeholders of a topic template (raises ValueError when malformed)."""
    names = set()
    for _, field, spec, conversion in string.Formatter().parse(template):
        if field is None:
            continue
        if spec or conversion or not field:
            raise ValueError("placeholders are plain `{severity}` or `{route}`")
        names.add(field)
    return names


def expand_topic(template: str, *, severity: str, route: str) -> str:
    """The topic for one notification; placeholder values cannot add topic levels."""
    safe_route = route.translate(_TOPIC_UNSAFE) or "_"
    return template.format(severity=severity.translate(_TOPIC_UNSAFE) or "_",
                           route=safe_route)


class MqttNotifier:
    """Publishes each notification to one MQTT topic."""

    class Config(NotifierConfig):
        type: Literal["mqtt"]
        host: str = Field("127.0.0.1", min_length=1, description="Broker host.")
        port: int = Field(1883, ge=1, le=65535, description="Broker port (8883 for TLS).")
        topic: str = Field("socd/notifications/{severity}", min_length=1,
                           description="Topic to publish to; may contain `{severity}` "
                           "(code) and `{route}`.")
        qos: Literal[0, 1, 2] = Field(1, description="QoS of the messages; 1 waits for "
                                      "the broker's PUBACK.")
        retain: bool = Field(False, description="Publish as retained messages.")
        username: str | None = Field(None, description="Broker user.")
        password: SecretStr | None = Field(None, description="Broker password.")
        client_id: str | None = Field(None, description="Client id; default "
                                      "`socd-notify-<hostname>-<notifier name>`.")
        keepalive_secs: int = Field(60, ge=5, le=3600, description="MQTT keepalive.")
        tls: TlsClientConfig | None = Field(None, description="Connect with TLS.")

        @field_validator("topic")
        @classmethod
        def _valid_topic(cls, value: str) -> str:
            unknown = topic_placeholders(value) - PLACEHOLDERS
            if unknown:
                raise ValueError(f"unknown placeholder(s) {sorted(unknown)}; "
                                 "use {severity} and {route}")
            if "+" in value or "#" in value:
                raise ValueError("a topic to publish to cannot contain `+` or `#`")
            return value

    def __init__(self, config: Config, ctx: PluginContext) -> None:
        self.name = ctx.name
        self.config = config
        self.ctx = ctx
        self.what = f"mqtt {ctx.name}"
        self.client_id = config.client_id or f"socd-notify-{socket.gethostname()}-{ctx.name}"
        self._client: aiomqtt.Client | None = None
        self._lock = asyncio.Lock()

    def _make_client(self, client_id: str) -> aiomqtt.Client:
        cfg = self.config
        return aiomqtt.Client(
            cfg.host, cfg.port,
            username=cfg.username,
            password=cfg.password.get_secret_value() if cfg.password else None,
            identifier=client_id,
            clean_session=True,  # publish only: nothing to keep between sessions
            keepalive=cfg.keepalive_secs,
            timeout=cfg.timeout_secs,
            tls_context=cfg.tls.context(self.ctx.config_dir) if cfg.tls else None,
        )

    def _where(self) -> str:
        return f"{self.config.host}:{self.config.port}"

    async def _connect(self) -> aiomqtt.Client:
        async with self._lock:
            client = self._client
            if client is not None and not _lost(client):
                return client
            await self._drop()
            client = self._make_client(self.client_id)
            try:
                await client.__aenter__()
            except aiomqtt.MqttError as exc:
                raise NotifyError(f"{self.what}: cannot connect to {self._where()}: {exc}",
                                  retryable=True) from None
            self._client = client
            log.info("connected to broker", notifier=self.name, broker=self._where())
            return client

    async def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(aiomqtt.MqttError, OSError):
                await client.__aexit__(None, None, None)
            _consume_disconnect(client)

    async def start(self) -> None:
        try:
            await self._connect()
        except NotifyError as exc:
            # The broker may come up after socd; sends retry and connect first.
            log.warning("broker not reachable at start; will retry", notifier=self.name,
                        error=str(exc))

    async def healthcheck(self) -> None:
        client = self._make_client(f"{self.client_id}-check")
        try:
            await client.__aenter__()
        except aiomqtt.MqttError as exc:
            raise HealthCheckError(f"{self.what}: cannot connect to {self._where()}: "
                                   f"{exc}") from None
        with contextlib.suppress(aiomqtt.MqttError, OSError):
            await client.__aexit__(None, None, None)

    async def send(self, notification: Notification) -> None:
        cfg = self.config
        topic = expand_topic(cfg.topic, severity=severity_of(notification).value,
                             route=notification.route)
        payload = dumps(notification_body(notification))
        # One loop pass first: a connection the broker already closed is noticed
        # (and replaced) here instead of racing the publish against the disconnect.
        await asyncio.sleep(0)
        client = await self._connect()
        try:
            await _publish(client, topic, payload, qos=cfg.qos, retain=cfg.retain,
                           ack_timeout_secs=cfg.timeout_secs)
        except aiomqtt.MqttError as exc:
            async with self._lock:
                if self._client is client:
                    await self._drop()
            raise NotifyError(f"{self.what}: publish to {topic} failed: {exc}",
                              retryable=True) from None

    async def close(self) -> None:
        async with self._lock:
            await self._drop()


async def _publish(client: aiomqtt.Client, topic: str, payload: bytes, *, qos: int,
                   retain: bool, ack_timeout_secs: float) -> None:
    """Publish and wait for the acknowledgement, or fail as soon as the connection drops.

    aiomqtt leaves a QoS 1/2 publish waiting for its timeout when the connection
    is lost meanwhile; racing it against the client's disconnect future fails fast.
    """
    publish = asyncio.ensure_future(
        client.publish(topic, payload, qos=qos, retain=retain, timeout=ack_timeout_secs))
    disconnected = getattr(client, "_disconnected", None)
    if not isinstance(disconnected, asyncio.Future):
        await publish
        return
    try:
        await asyncio.wait({publish, disconnected}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        publish.cancel()
        raise
    if publish.done():
        publish.result()
        return
    publish.cancel()
    with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
        await publish
    raise aiomqtt.MqttError("connection lost before the broker acknowledged the message")


def _lost(client: aiomqtt.Client) -> bool:
    """Whether the broker connection of ``client`` has gone away.

    aiomqtt has no public flag; its ``_disconnected`` future completes when the
    connection drops and the paho client it wraps says so even earlier. Should
    both attributes change, the next publish fails and we reconnect then.
    """
    disconnected = getattr(client, "_disconnected", None)
    if disconnected is not None and disconnected.done():
        return True
    paho = getattr(client, "_client", None)  # the wrapped paho client knows first
    return paho is not None and not paho.is_connected()


def _consume_disconnect(client: aiomqtt.Client) -> None:
    """Mark the disconnect error as seen (asyncio logs unretrieved future errors)."""
    disconnected = getattr(client, "_disconnected", None)
    if disconnected is not None and disconnected.done() and not disconnected.cancelled():
        disconnected.exception()
