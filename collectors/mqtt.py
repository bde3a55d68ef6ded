"""The ``mqtt`` collector: subscribes to an MQTT broker (EDR and IDS alert feeds).

Delivery guarantee: subscriptions use QoS 1 on a persistent session (fixed
client id, ``clean_session: false``) and socd acknowledges a message only once
``emit`` returned, that is once its batch is in the pipeline and, with the
intake journal (:mod:`socd.app.journal`, on by default), fsync'd to disk. Until then
the broker keeps it, so a broker restart, a network cut, a socd restart or a
crash (SIGKILL, OOM: the journal is replayed at the next start) loses nothing,
and a full pipeline holds acks back, which makes the broker stop sending (its
in-flight window fills): that is how back-pressure reaches the source.

Payloads may be one JSON object, an array or NDJSON; the subscription's
decoder splits them.

A broker keeps one connection per client id: when a second client connects with
the same id (a second socd instance, a copied config), it closes the older one,
which reconnects and closes the other, about once a second, and the messages are
split between them. :class:`SessionFlaps` tells that pattern (connections lost
again and again shortly after they were made, or MQTT 5's "session taken over")
from a broker restart and says what to change; the reconnect delay is reset only
after a connection that lasted, so two such instances slow down instead of
thrashing.
"""

from __future__ import annotations

import asyncio
import random
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import aiomqtt
import structlog
from pydantic import Field, SecretStr, model_validator

from socd import metrics
from socd.config import CollectorConfig, StrictModel
from socd.config.tls import TlsClientConfig
from socd.plugins import Emit, PluginContext, RawRecord
from socd.ratelimit import LogLimiter

log = structlog.get_logger("socd.collectors.mqtt")

# MQTT 5 DISCONNECT reason 0x8E: another client connected with the same client id.
SESSION_TAKEN_OVER = 0x8E
# Topic names whose decoder is remembered (see MqttCollector._decoder_for), and the
# longest name remembered (a topic name may be 64 KiB: 1,024 of them would be 64 MiB).
_TOPICS_REMEMBERED = 1024
_TOPIC_CHARS_REMEMBERED = 256


class SessionFlaps:
    """Tells a client id shared by two clients from ordinary connection losses.

    A broker restart or a network cut loses a connection that had lasted, or fails
    to reconnect at all; a shared client id makes every connection end shortly after
    it was made, again and again. ``lost`` records one lost connection and answers
    whether the losses now look like that (``count`` connections that lasted less
    than ``short_secs`` within ``window_secs``, or a "session taken over" reason).
    """

    def __init__(self, *, short_secs: float = 10.0, window_secs: float = 300.0,
                 count: int = 3, clock: Callable[[], float] = time.monotonic) -> None:
        self.short_secs = short_secs
        self.window_secs = window_secs
        self.count = count
        self._clock = clock
        self._short: deque[float] = deque()

    def lost(self, lasted_secs: float, *, taken_over: bool = False) -> bool:
        now = self._clock()
        if lasted_secs < self.short_secs:
            self._short.append(now)
        while self._short and now - self._short[0] > self.window_secs:
            self._short.popleft()
        return taken_over or len(self._short) >= self.count

    @property
    def recent(self) -> int:
        """Short-lived connections within the window."""
        return len(self._short)


class Subscription(StrictModel):
    topic: str = Field(description="Topic filter; `$share/<group>/<filter>` for shared "
                       "subscriptions across socd instances.")
    decoder: str | None = Field(None, description="Decoder for this topic; defaults to the "
                                "collector's decoder.")
    qos: Literal[0, 1] = 1


class MqttCollector:
    """Receives alerts published to MQTT topics."""

    class Config(CollectorConfig):
        type: Literal["mqtt"]
        host: str = "127.0.0.1"
        port: int = Field(1883, ge=1, le=65535)
        username: str | None = None
        password: SecretStr | None = None
        client_id: str | None = Field(None, description="Fixed id for the persistent session; "
                                      "default `socd-<hostname>-<collector name>`.")
        clean_session: bool = Field(False, description="Keep false so the broker queues "
                                    "messages while socd is down.")
        topics: list[str] = Field(default_factory=list,
                                  description="Shorthand: topics decoded by `decoder`, QoS 1.")
        subscriptions: list[Subscription] = Field(default_factory=list)
        keepalive_secs: int = Field(60, ge=5, le=3600)
        max_message_bytes: int = Field(1024 * 1024, ge=1024,
                                       description="Larger payloads are dead-lettered.")
        reconnect_min_secs: float = Field(0.5, gt=0)
        reconnect_max_secs: float = Field(30.0, gt=0)
        tls: TlsClientConfig | None = None

        decoder_fields: ClassVar[tuple[tuple[str, ...], ...]] = (
            ("decoder",), ("subscriptions", "[*]", "decoder"))

        @model_validator(mode="after")
        def _has_topics(self) -> MqttCollector.Config:
            if not self.topics and not self.subscriptions:
                raise ValueError("set `topics` or `subscriptions`")
            return self

        def default_decoder_users(self) -> list[str]:
            users = ["the records of its `topics`"] if self.topics else []
            return users + [f"the records of topic {sub.topic!r}"
                            for sub in self.subscriptions if not sub.decoder]

    def __init__(self, config: Config, ctx: PluginContext) -> None:
        self.name = ctx.name
        self.config = config
        self.ctx = ctx
        self.subscriptions = [
            *(Subscription(topic=t) for t in config.topics), *config.subscriptions]
        self.client_id = config.client_id or f"socd-{socket.gethostname()}-{ctx.name}"
        self._routes = [(_match_filter(s.topic), s.decoder or config.decoder)
                        for s in self.subscriptions]
        self._topic_decoders: dict[str, str] = {}
        self._ready = False
        self._flaps = SessionFlaps()
        self._flap_log = LogLimiter(60.0)
        metrics.init_collector(self.name)
        metrics.COLLECTOR_RECONNECTS.labels(self.name)

    @property
    def ready(self) -> bool:
        return self._ready

    def _decoder_for(self, topic: aiomqtt.Topic) -> str:
        """The decoder of the first subscription whose filter matches ``topic``,
        remembered per topic name: matching filters costs more than decoding a small
        message. Topic names come from publishers, so the memory is bounded."""
        name = topic.value
        decoder = self._topic_decoders.get(name)
        if decoder is None:
            decoder = next((d for pattern, d in self._routes if topic.matches(pattern)),
                           self.config.decoder)
            if len(name) <= _TOPIC_CHARS_REMEMBERED:
                if len(self._topic_decoders) >= _TOPICS_REMEMBERED:
                    self._topic_decoders.clear()
                self._topic_decoders[name] = decoder
        return decoder

    def _tls_context(self) -> ssl.SSLContext | None:
        tls = self.config.tls
        return None if tls is None else tls.context(self.ctx.config_dir)

    def _client(self) -> aiomqtt.Client:
        cfg = self.config
        client = aiomqtt.Client(
            cfg.host, cfg.port,
            username=cfg.username,
            password=cfg.password.get_secret_value() if cfg.password else None,
            identifier=self.client_id,
            clean_session=cfg.clean_session,
            keepalive=cfg.keepalive_secs,
            tls_context=self._tls_context(),
        )
        # aiomqtt has no manual-ack switch; paho (which it wraps) does. Acks are
        # sent only after the pipeline has taken the message (see module doc).
        client._client.manual_ack_set(True)
        return client

    async def run(self, emit: Emit) -> None:
        delay = self.config.reconnect_min_secs
        while True:
            connected_at: float | None = None
            try:
                client = self._client()
                async with client:
                    connected_at = time.monotonic()
                    for sub in self.subscriptions:
                        await client.subscribe(sub.topic, qos=sub.qos)
                    self._set_ready(True)
                    log.info("subscribed", collector=self.name, broker=self._where(),
                             topics=[s.topic for s in self.subscriptions],
                             client_id=self.client_id)
                    await self._consume(client, emit)
            except aiomqtt.MqttError as exc:
                self._set_ready(False)
                metrics.ERRORS.labels(f"collector/{self.name}", "MqttError").inc()
                metrics.COLLECTOR_RECONNECTS.labels(self.name).inc()
                lasted = None if connected_at is None else time.monotonic() - connected_at
                if lasted is not None:
                    if lasted >= self._flaps.short_secs:
                        delay = self.config.reconnect_min_secs  # it had been working
                    self._session_lost(lasted, exc)
                log.warning("broker connection lost; reconnecting", collector=self.name,
                            broker=self._where(), error=_describe(exc),
                            **({"connected_secs": round(lasted, 1)} if lasted is not None
                               else {}),
                            retry_in_secs=round(delay, 2))
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))  # noqa: S311
                delay = min(self.config.reconnect_max_secs, delay * 2)
            except BaseException:
                self._set_ready(False)
                raise

    def _session_lost(self, lasted: float, exc: aiomqtt.MqttError) -> None:
        """Say so when the broker keeps closing our connections because another client
        uses the same client id: the two take turns and split the messages."""
        taken_over = _reason_code(exc) == SESSION_TAKEN_OVER
        if not self._flaps.lost(lasted, taken_over=taken_over):
            return
        held = self._flap_log.allow(self.client_id)
        if held is None:
            return
        log.error(
            "MQTT session taken over again and again: another client uses the same client id",
            collector=self.name, broker=self._where(), client_id=self.client_id,
            short_connections=self._flaps.recent, window_secs=self._flaps.window_secs,
            reason="session taken over (MQTT 5 reason 0x8E)" if taken_over else
            "the broker closed each connection shortly after it was made",
            hint=(f"a broker keeps one connection per client id and closes the older one "
                  f"when another client connects with {self.client_id!r}: two socd "
                  f"instances (or this config copied to another host) take turns and "
                  f"each gets part of the messages. Give every instance its own "
                  f"`client_id` (the default socd-<hostname>-<collector> differs per host "
                  f"name); with $share subscriptions each replica still needs its own id "
                  f"(docs/sources/mqtt.md)"))

    async def _consume(self, client: aiomqtt.Client, emit: Emit) -> None:
        paho: Any = client._client
        limit = self.config.batch_max_events
        limit_bytes = self.config.batch_max_bytes
        max_bytes = self.config.max_message_bytes
        size = 0
        batch: list[RawRecord] = []
        acks: list[tuple[int, int]] = []
        messages = client.messages
        async for message in messages:
            payload = message.payload
            data = payload if isinstance(payload, bytes) else str(payload).encode()
            topic = str(message.topic)
            if len(data) > max_bytes:
                metrics.EVENTS_RECEIVED.labels(self.name).inc()
                self.ctx.dead_letter.write(stage="collect", reason="oversize", raw=data,
                                           collector=self.name, source=topic,
                                           detail=f"{len(data)} bytes > {max_bytes}")
            else:
                batch.append(RawRecord(data, self._decoder_for(message.topic), self.name,
                                       topic))
                size += len(data)
            acks.append((message.mid, message.qos))
            if len(batch) >= limit or size >= limit_bytes or len(messages) == 0:
                await emit(batch, None)
                for mid, qos in acks:
                    paho.ack(mid, qos)
                batch = []
                acks = []
                size = 0

    def _set_ready(self, ready: bool) -> None:
        self._ready = ready
        metrics.COMPONENT_UP.labels("collector", self.name).set(1 if ready else 0)

    def _where(self) -> str:
        return f"{self.config.host}:{self.config.port}"


def _reason_code(exc: BaseException) -> int | None:
    """The MQTT reason code behind an aiomqtt error (its own or its cause's)."""
    for err in (exc, exc.__cause__):
        rc = getattr(err, "rc", None)
        if rc is not None:
            value = getattr(rc, "value", rc)
            return value if isinstance(value, int) else None
    return None


def _describe(exc: BaseException) -> str:
    """The error with its cause (the broker's reason, the socket error): aiomqtt's own
    text, 'Disconnected during message iteration', says nothing."""
    cause = exc.__cause__
    return f"{exc}: {cause}" if cause is not None and str(cause) else str(exc)


def _match_filter(topic: str) -> str:
    """The filter to match incoming topics against (without a `$share/group/` prefix)."""
    if topic.startswith("$share/"):
        parts = topic.split("/", 2)
        return parts[2] if len(parts) == 3 else topic
    return topic
