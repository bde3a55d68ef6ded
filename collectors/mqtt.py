"""The ``mqtt`` collector: subscribes to an MQTT broker (EDR and IDS alert feeds).

Delivery guarantee: subscriptions use QoS 1 on a persistent session (fixed
client id, ``clean_session: false``) and socd acknowledges a message only once
``emit`` returned, that is once its batch is in the pipeline and, with the
intake journal (:mod:`socd.journal`, on by default), fsync'd to disk. Until then
the broker keeps it, so a broker restart, a network cut, a socd restart or a
crash (SIGKILL, OOM: the journal is replayed at the next start) loses nothing,
and a full pipeline holds acks back, which makes the broker stop sending (its
in-flight window fills): that is how back-pressure reaches the source.

Payloads may be one JSON object, an array or NDJSON; the subscription's
decoder splits them.
"""

from __future__ import annotations

import asyncio
import random
import socket
import ssl
from typing import Any, Literal

import aiomqtt
import structlog
from pydantic import Field, SecretStr, model_validator

from socd import metrics
from socd.config import CollectorConfig, StrictModel, resolve_path
from socd.plugins import Emit, PluginContext, RawRecord
from socd.tls import closing_on_failure

log = structlog.get_logger("socd.collectors.mqtt")


class Subscription(StrictModel):
    topic: str = Field(description="Topic filter; `$share/<group>/<filter>` for shared "
                       "subscriptions across socd instances.")
    decoder: str | None = Field(None, description="Decoder for this topic; defaults to the "
                                "collector's decoder.")
    qos: Literal[0, 1] = 1


class TlsConfig(StrictModel):
    ca_file: str | None = Field(None, description="CA bundle that signed the broker certificate.")
    cert_file: str | None = Field(None, description="Client certificate (mutual TLS).")
    key_file: str | None = Field(None, description="Client private key.")
    verify_hostname: bool = True


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
        tls: TlsConfig | None = None

        @model_validator(mode="after")
        def _has_topics(self) -> MqttCollector.Config:
            if not self.topics and not self.subscriptions:
                raise ValueError("set `topics` or `subscriptions`")
            return self

    def __init__(self, config: Config, ctx: PluginContext) -> None:
        self.name = ctx.name
        self.config = config
        self.ctx = ctx
        self.subscriptions = [
            *(Subscription(topic=t) for t in config.topics), *config.subscriptions]
        self.client_id = config.client_id or f"socd-{socket.gethostname()}-{ctx.name}"
        self._routes = [(_match_filter(s.topic), s.decoder or config.decoder)
                        for s in self.subscriptions]
        self._ready = False
        metrics.init_collector(self.name)

    @property
    def ready(self) -> bool:
        return self._ready

    def _decoder_for(self, topic: aiomqtt.Topic) -> str:
        for pattern, decoder in self._routes:
            if topic.matches(pattern):
                return decoder
        return self.config.decoder

    def _tls_context(self) -> ssl.SSLContext | None:
        tls = self.config.tls
        if tls is None:
            return None
        base = self.ctx.config_dir

        def path(p: str | None) -> str | None:
            return resolve_path(base, p) if p else None

        ctx = ssl.create_default_context(cafile=path(tls.ca_file))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if tls.cert_file:
            ctx.load_cert_chain(path(tls.cert_file), path(tls.key_file))
        ctx.check_hostname = tls.verify_hostname
        # paho drops the socket unclosed when the broker's certificate is refused.
        return closing_on_failure(ctx)

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
            try:
                client = self._client()
                async with client:
                    for sub in self.subscriptions:
                        await client.subscribe(sub.topic, qos=sub.qos)
                    self._set_ready(True)
                    log.info("subscribed", collector=self.name, broker=self._where(),
                             topics=[s.topic for s in self.subscriptions],
                             client_id=self.client_id)
                    delay = self.config.reconnect_min_secs
                    await self._consume(client, emit)
            except aiomqtt.MqttError as exc:
                self._set_ready(False)
                metrics.ERRORS.labels(f"collector/{self.name}", "MqttError").inc()
                log.warning("broker connection lost; reconnecting", collector=self.name,
                            broker=self._where(), error=str(exc), retry_in_secs=round(delay, 2))
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))  # noqa: S311
                delay = min(self.config.reconnect_max_secs, delay * 2)
            except BaseException:
                self._set_ready(False)
                raise

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


def _match_filter(topic: str) -> str:
    """The filter to match incoming topics against (without a `$share/group/` prefix)."""
    if topic.startswith("$share/"):
        parts = topic.split("/", 2)
        return parts[2] if len(parts) == 3 else topic
    return topic
