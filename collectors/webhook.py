"""The ``webhook`` collector: an HTTP(S) endpoint that vendors POST JSON batches to.

``POST <path>/<source>`` with ``Authorization: Bearer <token>``; each source has
its own token (and optionally its own decoder). Bodies may be one JSON object,
a JSON array, or NDJSON (``Content-Type: application/json`` or
``application/x-ndjson``), optionally gzip-compressed (``Content-Encoding:
gzip``).

Framing: the collector splits the body into one record per NDJSON line or per
array element (an object is one record), so the pipeline counts records, and
the decoder dead-letters a bad record on its own with its own bytes.

A request is all or nothing:

* ``202 {"accepted": n}`` only once all ``n`` records are in the pipeline and,
  with the intake journal (the default), fsync'd in it: a crash after the 202
  loses nothing (``tests/e2e/test_crash_webhook.py``). A client that got no answer
  (a crash, a timeout) sends the batch again; the repeat is stored once by the
  Elasticsearch and SQLite sinks (deterministic event ids);
* ``429`` + ``Retry-After`` when the pipeline stayed full, or the journal could
  not write (disk full), for ``queue_wait_secs``; nothing was queued, the client
  retries;
* ``503`` + ``Retry-After`` when socd is stopping; or when the journal did not
  confirm the batch within ``JOURNAL_WAIT_SECS`` (it is queued, not
  acknowledged: the client sends it again, which may store it twice);
* ``400`` when the body is empty, or is not UTF-8, or not a single JSON value
  in it parses (neither a JSON document nor any NDJSON line). Such a body
  (except an empty one) is dead-lettered whole with its raw bytes
  (stage ``collect``), so a misconfigured sender is visible in
  ``socd_events_dropped_total``. A body with *some* bad NDJSON lines is
  accepted: the decoder dead-letters each bad line;
* ``400 trailing_data`` when bytes follow the end of the gzip stream (a second
  member, or anything else): the stream must end where the body ends;
  ``400 incomplete_body`` when the client hangs up or breaks the chunked encoding
  before the end of the body (an answer nobody may read, counted);
* ``401`` for an unknown source or a wrong token (same body for both; tokens
  are compared in constant time and never logged); ``408`` when the body does not
  arrive within ``limits.body_timeout_secs``; ``413`` when the body exceeds
  ``max_body_bytes``, counted both as sent on the wire and after decompression,
  while it is read (nothing beyond the limit is ever held); ``415`` for another
  content type or content encoding.

The listener itself (header and idle timeouts, connection caps) is socd's shared
one, :class:`socd.http.HttpListener`, configured by ``limits``.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import time
import zlib
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import orjson
import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError
from prometheus_client import Counter
from pydantic import Field, SecretStr, field_validator

from socd import metrics
from socd.config import CollectorConfig, HttpLimits, StrictModel
from socd.config.tls import TlsServerConfig
from socd.errors import JournalError
from socd.http import HttpListener
from socd.plugins import Emit, PluginContext, RawRecord, intake_of

log = structlog.get_logger("socd.collectors.webhook")

# How long a queued batch may wait for the journal's fsync before the request is
# answered 503 (normally milliseconds; longer only while the disk is failing).
JOURNAL_WAIT_SECS = 10.0

JSON_TYPES = frozenset({"application/json"})
NDJSON_TYPES = frozenset({"application/x-ndjson", "application/ndjson",
                          "application/jsonlines", "application/jsonl"})


REQUESTS = Counter("socd_webhook_requests_total",
                   "Webhook requests answered, by collector and HTTP status.",
                   ["collector", "code"], registry=metrics.REGISTRY)


class Source(StrictModel):
    token: SecretStr = Field(description="Bearer token of this source; write `${ENV_VAR}`, "
                             "never the token itself. At least 16 characters.")
    decoder: str | None = Field(None, description="Decoder for this source's records; "
                                "defaults to the collector's decoder.")

    @field_validator("token")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 16:
            raise ValueError("the token must have at least 16 characters")
        return value


GZIP_ENCODINGS = frozenset({"gzip", "x-gzip"})


class BodyError(Exception):
    """A request body that cannot be accepted: HTTP status and a reason code."""

    def __init__(self, status: int, reason: str, message: str,
                 raw: bytes | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.raw = raw


def content_encoding(header: str) -> str | None:
    """``gzip`` or None (identity) for a ``Content-Encoding`` header; BodyError 415 for
    anything else, stacked encodings included (``gzip, gzip`` would multiply a bomb)."""
    codings = [c.strip().lower() for c in header.split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if not codings:
        return None
    if len(codings) == 1 and codings[0] in GZIP_ENCODINGS:
        return "gzip"
    raise BodyError(415, "unsupported_encoding",
                    f"Content-Encoding {header.strip()[:32]!r} is not supported; use gzip")


class BodyReader:
    """Collects a request body chunk by chunk, never holding more than ``limit`` bytes.

    What arrives on the wire counts against ``limit`` (a long stream is refused
    while it is still arriving, whatever it inflates to), and so does what inflating
    a gzip body produces (a bomb stops at the limit: zlib is asked for at most the
    room left). A gzip body must end exactly where its stream ends: a second member
    or any byte after the end is refused (400 ``trailing_data``), never skipped
    and kept in memory. Errors are :class:`BodyError`; those answered 400 carry the
    raw bytes read so far (at most ``limit``) for the dead-letter file.
    """

    def __init__(self, limit: int, encoding: str | None) -> None:
        self.limit = limit
        self.sent = 0  # bytes on the wire
        self.size = 0  # bytes of body after inflating
        self._raw: list[bytes] = []
        self._out: list[bytes] = []
        self._gunzip = zlib.decompressobj(16 + zlib.MAX_WBITS) if encoding == "gzip" else None

    def feed(self, chunk: bytes) -> None:
        self.sent += len(chunk)
        if self.sent > self.limit:
            raise BodyError(413, "too_large", f"more than {self.limit} bytes sent")
        if self._gunzip is None:
            self.size = self.sent
            self._out.append(chunk)
            return
        self._raw.append(chunk)
        self._inflate(self._gunzip, chunk)

    def _inflate(self, gunzip: Any, data: bytes) -> None:
        while data:
            if gunzip.eof:
                raise BodyError(400, "trailing_data", "bytes follow the end of the gzip "
                                "stream (a second member or trailing data)", raw=self.raw)
            try:
                piece = gunzip.decompress(data, self.limit + 1 - self.size)
            except zlib.error as exc:
                raise BodyError(400, "invalid_gzip", f"cannot gunzip the body: {exc}",
                                raw=self.raw) from None
            self.size += len(piece)
            if self.size > self.limit:
                raise BodyError(413, "too_large",
                                f"body larger than {self.limit} bytes once gunzipped")
            self._out.append(piece)
            data = gunzip.unconsumed_tail or gunzip.unused_data

    @property
    def raw(self) -> bytes:
        """The bytes as sent so far."""
        return b"".join(self._raw if self._gunzip is not None else self._out)

    def finish(self) -> bytes:
        """The whole body; BodyError 400 when a gzip stream stopped before its end."""
        if self._gunzip is not None and self.sent and not self._gunzip.eof:
            raise BodyError(400, "invalid_gzip", "the gzip stream is truncated", raw=self.raw)
        return b"".join(self._out)


def split_body(body: bytes, content_type: str) -> list[bytes]:
    """The records in a request body (one per NDJSON line or array element).

    Raises :class:`BodyError` (400) when the body is empty, not UTF-8, or holds
    no JSON value at all. NDJSON lines that do not parse are kept: the decoder
    dead-letters them one by one.
    """
    if not body.strip():
        raise BodyError(400, "empty_body", "the body is empty")
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyError(400, "invalid_utf8", f"the body is not UTF-8 ({exc.reason} at byte "
                        f"{exc.start})", raw=body) from None
    if content_type not in NDJSON_TYPES:
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            if b"\n" not in body.strip():
                raise BodyError(400, "invalid_json", f"the body is not JSON: {exc}",
                                raw=body) from None
        else:
            if isinstance(value, list):
                return [orjson.dumps(item) for item in value]
            return [body.strip()]
    lines = [line for line in (raw.strip() for raw in body.split(b"\n")) if line]
    for line in lines:
        try:
            orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        return lines
    raise BodyError(400, "invalid_json", "no line of the body is JSON", raw=body)


class WebhookCollector:
    """Receives JSON/NDJSON batches over HTTP(S), one bearer token per source."""

    class Config(CollectorConfig):
        type: Literal["webhook"]
        host: str = Field("127.0.0.1", description="Listen address; `0.0.0.0` for all.")
        port: int = Field(8088, ge=0, le=65535, description="0 picks a free port (tests).")
        path: str = Field("/ingest", pattern=r"^/[A-Za-z0-9_./-]*$",
                          description="URL prefix; sources POST to `<path>/<source>`.")
        sources: dict[str, Source] = Field(
            min_length=1, description="Source name -> token (and decoder). The name is the "
            "last URL segment and the records' `source`.")
        max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024,
                                    description="Larger bodies get 413, counted as sent "
                                    "and after gzip decompression, while they are read.")
        queue_wait_secs: float = Field(2.0, ge=0, le=60, description="How long a request "
                                       "waits for room in a full pipeline before 429.")
        retry_after_secs: int = Field(5, ge=1, le=3600,
                                      description="`Retry-After` of 429 and 503 answers.")
        tls: TlsServerConfig | None = None
        limits: HttpLimits = Field(HttpLimits(), description="Timeouts, connection caps "
                                   "and header sizes of the listener (as `http.limits`).")

        decoder_fields: ClassVar[tuple[tuple[str, ...], ...]] = (
            ("decoder",), ("sources", "{*}", "decoder"))

        def default_decoder_users(self) -> list[str]:
            return [f"the records of source {name!r}"
                    for name, source in self.sources.items() if not source.decoder]

    def __init__(self, config: Config, ctx: PluginContext) -> None:
        self.name = ctx.name
        self.config = config
        self.ctx = ctx
        self.prefix = config.path.rstrip("/") or ""
        self._tokens: dict[str, bytes] = {
            name: src.token.get_secret_value().encode() for name, src in config.sources.items()}
        self._decoders = {name: src.decoder or config.decoder
                          for name, src in config.sources.items()}
        # Compared against when the source is unknown, so both failures cost the same.
        self._dummy = secrets.token_bytes(32)
        self._ready = False
        self._stopping = False
        self._emit: Emit | None = None
        self._last_auth_log = 0.0
        self.port = config.port
        metrics.init_collector(self.name)
        for code in ("202", "400", "401", "408", "413", "415", "429", "503"):
            REQUESTS.labels(self.name, code)

    @property
    def ready(self) -> bool:
        return self._ready

    # -- server ---------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.config.max_body_bytes + 1)
        app.router.add_post(self.prefix + "/{source}", self.handle)
        return app

    async def run(self, emit: Emit) -> None:
        self._emit = emit
        self._stopping = False
        # auto_decompress off: gzip is inflated here (BodyReader), bounded by
        # max_body_bytes, and a corrupt stream can be dead-lettered as it was sent.
        tls = self.config.tls
        listener = HttpListener(self.app(), name=f"webhook/{self.name}",
                                host=self.config.host, port=self.config.port,
                                limits=self.config.limits,
                                ssl_context=tls.context(self.ctx.config_dir) if tls else None,
                                auto_decompress=False, shutdown_timeout=5.0)
        await listener.start()
        try:
            self.port = listener.port
            self._set_ready(True)
            log.info("webhook listening", collector=self.name,
                     url=f"{'https' if self.config.tls else 'http'}://{self.config.host}:"
                     f"{self.port}{self.prefix}/<source>", sources=sorted(self._tokens))
            await asyncio.Event().wait()  # until cancelled
        finally:
            # In-flight requests waiting for room answer 503; the rest finish.
            self._stopping = True
            self._set_ready(False)
            await listener.stop()

    def _set_ready(self, ready: bool) -> None:
        self._ready = ready
        metrics.COMPONENT_UP.labels("collector", self.name).set(1 if ready else 0)

    # -- requests ---------------------------------------------------------------

    def _authorized(self, source: str, header: str) -> bool:
        scheme, _, token = header.partition(" ")
        given = token.strip().encode() if scheme.lower() == "bearer" else b""
        expected = self._tokens.get(source)
        ok = hmac.compare_digest(given, expected if expected is not None else self._dummy)
        return ok and expected is not None

    def _answer(self, status: int, body: Mapping[str, Any],
                headers: Mapping[str, str] | None = None) -> web.Response:
        REQUESTS.labels(self.name, str(status)).inc()
        return web.Response(status=status, body=orjson.dumps(body),
                            content_type="application/json", headers=headers)

    async def handle(self, request: web.Request) -> web.Response:
        source = request.match_info["source"]
        if not self._authorized(source, request.headers.get("Authorization", "")):
            now = time.monotonic()
            if now - self._last_auth_log >= 10:  # a flood of bad tokens must not flood the log
                self._last_auth_log = now
                log.warning("webhook request refused: unknown source or bad token",
                            collector=self.name, source=source[:64], peer=request.remote)
            return self._answer(401, {"error": "unauthorized"},
                                {"WWW-Authenticate": 'Bearer realm="socd"'})
        if self._stopping:
            return self._unavailable()
        content_type = request.content_type
        if (content_type not in JSON_TYPES and content_type not in NDJSON_TYPES
                and "Content-Type" in request.headers):
            return self._answer(415, {"error": "unsupported_media_type", "detail":
                                      "use application/json or application/x-ndjson"})
        limit = self.config.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            return _closing(self._too_large())
        try:
            body = await self._read(request, limit)
            items = split_body(body, content_type)
        except BodyError as exc:
            if exc.raw is not None:
                metrics.EVENTS_RECEIVED.labels(self.name).inc()
                self.ctx.dead_letter.write(stage="collect", reason=exc.reason, raw=exc.raw,
                                           collector=self.name, source=source, detail=str(exc))
            # The rest of the body is not read: the connection cannot carry another request.
            if exc.status == 413:
                return _closing(self._too_large())
            return _closing(self._answer(exc.status, {"error": exc.reason, "detail": str(exc)}))
        now = time.time()
        decoder = self._decoders[source]
        name = self.name
        records = [RawRecord(item, decoder, name, source, now) for item in items]
        queued = await self._submit(records)
        if queued == "stopping":
            return self._unavailable()
        if queued == "full":
            return self._answer(429, {"error": "pipeline_full", "detail":
                                      f"not queued; retry after {self.config.retry_after_secs} s"},
                                {"Retry-After": str(self.config.retry_after_secs)})
        if queued == "not_durable":
            return self._answer(503, {"error": "journal_unavailable", "detail":
                                      "not acknowledged: the intake journal did not store the "
                                      "batch in time; send it again"},
                                {"Retry-After": str(self.config.retry_after_secs)})
        return self._answer(202, {"accepted": len(records)})

    async def _read(self, request: web.Request, limit: int) -> bytes:
        """The body (gunzipped when sent with ``Content-Encoding: gzip``), read within
        ``limits.body_timeout_secs`` (408) and bounded by :class:`BodyReader`."""
        reader = BodyReader(limit, content_encoding(request.headers.get("Content-Encoding", "")))
        timeout = self.config.limits.body_timeout_secs
        try:
            async with asyncio.timeout(timeout):
                while chunk := await request.content.read(256 * 1024):
                    reader.feed(chunk)
        except TimeoutError:
            raise BodyError(408, "body_timeout", f"the body did not arrive within "
                            f"{timeout:g} s") from None
        except (ConnectionError, RequestPayloadError) as exc:
            # The client hung up, or sent a malformed chunked body: its doing, not an
            # error of socd (a traceback per request would let anyone flood the log).
            raise BodyError(400, "incomplete_body", f"the body ended early: "
                            f"{str(exc) or type(exc).__name__}") from None
        return reader.finish()

    async def _submit(self, records: list[RawRecord]) -> str:
        """Queue the batch and wait until it is durable: ``ok`` (answer 202),
        ``full`` (no room within ``queue_wait_secs``: 429), ``stopping`` (503) or
        ``not_durable`` (queued, but the journal did not confirm it: 503)."""
        emit = self._emit
        assert emit is not None
        pipeline = intake_of(emit)
        wait = self.config.queue_wait_secs
        if pipeline is None:
            # A plain emit coroutine (tests, benchmarks): bounded by a timeout.
            try:
                await asyncio.wait_for(emit(records, None), wait or 0.001)
            except TimeoutError:
                return "full"
            return "ok"
        deadline = time.monotonic() + wait
        delay = 0.005
        while (durable := pipeline.try_submit_durable(records, None)) is None:
            if self._stopping:
                return "stopping"
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return "full"
            await asyncio.sleep(min(delay, remaining))
            delay = min(0.1, delay * 2)
        try:
            # Shielded: giving up waiting must not cancel the journal's own future.
            await asyncio.wait_for(asyncio.shield(durable), JOURNAL_WAIT_SECS)
        except TimeoutError:
            log.warning("webhook batch not confirmed by the journal in time; answered 503",
                        collector=self.name, records=len(records),
                        wait_secs=JOURNAL_WAIT_SECS)
            return "not_durable"
        except JournalError:
            return "stopping"  # the journal closed before the batch was on disk
        return "ok"

    def _too_large(self) -> web.Response:
        limit = self.config.max_body_bytes
        return self._answer(413, {"error": "too_large",
                                  "detail": f"the body exceeds max_body_bytes ({limit})"})

    def _unavailable(self) -> web.Response:
        return self._answer(503, {"error": "stopping", "detail": "socd is stopping"},
                            {"Retry-After": str(self.config.retry_after_secs)})


def _closing(response: web.Response) -> web.Response:
    response.force_close()
    return response


__all__ = ["BodyError", "BodyReader", "WebhookCollector", "content_encoding", "split_body"]
