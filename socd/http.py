"""socd's HTTP listeners, and the daemon's own endpoint (``/metrics``, ``/healthz``, ``/readyz``).

The daemon's endpoints only read; they accept no data and change no state, so they
are served without authentication on loopback by default. Endpoints that accept
data (webhooks, block feeds) authenticate separately.

:class:`HttpListener` is the one way socd serves HTTP (the daemon's endpoint, each
webhook collector, each blocker's EDL feed), because every listener faces clients
that may be hostile and aiohttp alone bounds neither the time a client takes to send
its headers nor the number of connections. Each listener applies its
:class:`~socd.config.HttpLimits`:

* a **header timeout**: the request line and headers must arrive within
  ``header_timeout_secs`` of the connection's opening (or of the first byte of a
  later request on a kept-alive connection), so a client sending a byte at a time
  cannot hold a connection; it is also the TLS handshake timeout;
* an **idle timeout** (aiohttp's keep-alive timeout) between requests, a **body
  timeout** for handlers that read bodies, and a **send timeout**: a client that
  reads nothing of its answer for ``send_timeout_secs`` is cut, and so is a
  connection that was closed but cannot be, its last answer still unsent;
* **connection caps**: ``max_connections`` per listener and
  ``max_connections_per_ip`` per address (an IPv6 client per /64). When the
  listener is full, a new connection closes the oldest connection that has no
  request in progress, so slow or idle connections cannot lock legitimate clients
  out; only when every connection is busy is the newcomer answered 503;
* bounded request line, header field and header count (aiohttp answers 400). A
  request aiohttp cannot parse is the client's doing: it is counted
  (``bad_request``) and logged without a traceback at most every few seconds,
  where aiohttp would log an error with a traceback for each one.

Connections refused or closed for these reasons are counted in
``socd_http_connections_closed_total{listener,reason}``; open connections in
``socd_http_connections{listener}``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, generate_latest

from socd.config import HttpLimits
from socd.metrics import REGISTRY
from socd.netaddr import AddressError, parse_address

log = structlog.get_logger("socd.http")

#: Why socd closed or refused a connection (label values of the metric).
CLOSE_REASONS = ("too_many_connections", "too_many_from_address", "evicted",
                 "header_timeout", "send_timeout", "bad_request")

HTTP_CONNECTIONS = Gauge("socd_http_connections", "Open connections of an HTTP listener.",
                         ["listener"], registry=REGISTRY)
HTTP_CLOSED = Counter("socd_http_connections_closed_total",
                      "Connections an HTTP listener refused or closed to protect itself, "
                      "by reason.", ["listener", "reason"], registry=REGISTRY)

# How often a listener looks for connections past a deadline: the timeouts are
# honoured to within this.
_SWEEP_SECS = 0.25
# Reading the rest of a body that a handler did not read (so that the client sees
# the answer rather than a reset) stops after this, or after body_timeout_secs.
_LINGER_SECS = 5.0
_LOG_EVERY_SECS = 10.0

_HEAD, _BUSY, _IDLE = "head", "busy", "idle"


def make_app(readiness: Callable[[], tuple[bool, dict[str, Any]]],
             before_scrape: Callable[[], None] | None = None) -> web.Application:
    async def metrics(_request: web.Request) -> web.Response:
        if before_scrape is not None:
            before_scrape()
        body = generate_latest(REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_request: web.Request) -> web.Response:
        ready, detail = readiness()
        return web.Response(body=orjson.dumps({"ready": ready, **detail}),
                            status=200 if ready else 503, content_type="application/json")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


def client_key(peer: object) -> str:
    """The key a client is counted under for ``max_connections_per_ip``: its address,
    IPv4-mapped IPv6 as IPv4, and an IPv6 address as its /64 (one host usually holds a
    whole /64, so counting single addresses would not cap it)."""
    if not isinstance(peer, tuple) or not peer:
        return str(peer)
    text = str(peer[0]).split("%", 1)[0]  # a link-local peer's scope id, from the kernel
    try:
        addr = parse_address(text, count=False)
    except AddressError:
        return text
    if addr.version == 6:
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return str(addr)


def _busy_answer() -> bytes:
    body = b"too many connections\n"
    return (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
            b"Retry-After: 1\r\nConnection: close\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n\r\n" + body)


class _Connection(asyncio.Protocol):
    """One connection of a guarded listener, wrapped around aiohttp's request handler.

    The wrapper decides admission before aiohttp sees the connection, and tracks the
    connection's phase (waiting for a request head, busy with a request, idle) and
    its send stalls; :class:`_Guard` closes it when a deadline passes. Everything
    else is passed to aiohttp's handler unchanged.
    """

    __slots__ = ("_guard", "closing_since", "handler", "head_deadline", "key", "paused_since",
                 "state", "transport")

    def __init__(self, guard: _Guard) -> None:
        self._guard = guard
        self.handler: RequestHandler | None = None  # aiohttp's, once admitted
        self.transport: asyncio.Transport | None = None
        self.key = ""
        self.state = _HEAD
        self.head_deadline = 0.0
        self.paused_since: float | None = None
        self.closing_since: float | None = None

    # -- asyncio.Protocol ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.key = client_key(transport.get_extra_info("peername"))
        refusal = self._guard.admit(self)
        if refusal is not None:
            self._guard.count(refusal, self.key)
            transport.write(_busy_answer())
            transport.close()
            return
        self.head_deadline = self._guard.now() + self._guard.limits.header_timeout_secs
        self.handler = self._guard.new_handler()
        self._guard.attach(self)
        self.handler.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        inner = self.handler
        if inner is None:
            return
        if self.state == _IDLE and data:
            # The first byte of the next request on a kept-alive connection.
            self.state = _HEAD
            self.head_deadline = self._guard.now() + self._guard.limits.header_timeout_secs
        inner.data_received(data)

    def eof_received(self) -> None:
        # aiohttp's handler returns None: the transport closes itself on a half-close.
        if self.handler is not None:
            self.handler.eof_received()

    def pause_writing(self) -> None:
        self.paused_since = self._guard.now()
        if self.handler is not None:
            self.handler.pause_writing()

    def resume_writing(self) -> None:
        self.paused_since = None
        if self.handler is not None:
            self.handler.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._guard.release(self)
        inner, self.handler = self.handler, None
        if inner is not None:
            inner.connection_lost(exc)

    # -- phases (from the listener's middleware) ----------------------------------

    def request_started(self) -> None:
        self.state = _BUSY

    def request_finished(self) -> None:
        self.state = _IDLE

    @property
    def evictable(self) -> bool:
        """No request in progress and nothing left to send: closing it loses nothing."""
        transport = self.transport
        if transport is None or self.state == _BUSY:
            return False
        return self.state == _HEAD or transport.get_write_buffer_size() == 0

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class _Guard:
    """Admission, caps and deadlines of one listener's connections."""

    def __init__(self, name: str, limits: HttpLimits) -> None:
        self.name = name
        self.limits = limits
        self.server: web.Server | None = None
        self._connections: dict[_Connection, None] = {}  # in order of arrival
        self._per_key: dict[str, int] = {}
        self._by_handler: dict[RequestHandler, _Connection] = {}
        self._gauge = HTTP_CONNECTIONS.labels(name)
        self._gauge.set(0)
        self._counters = {reason: HTTP_CLOSED.labels(name, reason) for reason in CLOSE_REASONS}
        self._last_log: dict[str, float] = {}
        self._since_log: dict[str, int] = {}
        self.now = asyncio.get_running_loop().time

    def new_handler(self) -> RequestHandler:
        assert self.server is not None
        return self.server()

    def admit(self, conn: _Connection) -> str | None:
        """None when ``conn`` may stay (evicting an idle one if the listener is full),
        else the reason it is refused."""
        limits = self.limits
        if self._per_key.get(conn.key, 0) >= limits.max_connections_per_ip:
            return "too_many_from_address"
        if len(self._connections) >= limits.max_connections:
            # The oldest connection still waiting for a request head goes first (the
            # likeliest to be slow on purpose), then the oldest idle kept-alive one.
            victim = next((c for c in self._connections if c.state == _HEAD), None)
            if victim is None:
                victim = next((c for c in self._connections if c.evictable), None)
            if victim is None:
                return "too_many_connections"
            self.count("evicted", victim.key)
            self.release(victim)
            victim.abort()
        self._connections[conn] = None
        self._per_key[conn.key] = self._per_key.get(conn.key, 0) + 1
        self._gauge.set(len(self._connections))
        return None

    def attach(self, conn: _Connection) -> None:
        assert conn.handler is not None
        self._by_handler[conn.handler] = conn

    def release(self, conn: _Connection) -> None:
        """Forget ``conn`` (closed, or about to be): its slot is free at once."""
        if conn not in self._connections:
            return  # never admitted, or already released (evicted, timed out)
        del self._connections[conn]
        left = self._per_key.get(conn.key, 1) - 1
        if left > 0:
            self._per_key[conn.key] = left
        else:
            self._per_key.pop(conn.key, None)
        if conn.handler is not None:
            self._by_handler.pop(conn.handler, None)
        self._gauge.set(len(self._connections))

    def connection_of(self, handler: RequestHandler) -> _Connection | None:
        return self._by_handler.get(handler)

    def count(self, reason: str, key: str, **detail: str) -> None:
        """Count a refusal or forced close, and log it at most every few seconds."""
        self._counters[reason].inc()
        self._since_log[reason] = self._since_log.get(reason, 0) + 1
        now = time.monotonic()
        if now - self._last_log.get(reason, -_LOG_EVERY_SECS) >= _LOG_EVERY_SECS:
            log.warning("http connection closed to protect the listener", listener=self.name,
                        reason=reason, client=key, since_last_log=self._since_log[reason],
                        **detail)
            self._last_log[reason] = now
            self._since_log[reason] = 0

    def sweep(self) -> None:
        """Close the connections past a deadline."""
        now = self.now()
        limits = self.limits
        for conn in list(self._connections):
            transport = conn.transport
            if transport is None:
                continue
            if transport.is_closing():
                # Closed with unsent data that the client does not read: let it go.
                if conn.closing_since is None:
                    conn.closing_since = now
                elif now - conn.closing_since >= limits.send_timeout_secs:
                    self.count("send_timeout", conn.key)
                    self.release(conn)
                    conn.abort()
            elif conn.state == _HEAD and now >= conn.head_deadline:
                self.count("header_timeout", conn.key)
                self.release(conn)
                conn.abort()
            elif (conn.paused_since is not None
                  and now - conn.paused_since >= limits.send_timeout_secs):
                self.count("send_timeout", conn.key)
                self.release(conn)
                conn.abort()

    def middleware(self) -> Callable[..., Awaitable[web.StreamResponse]]:
        @web.middleware
        async def track(request: web.Request,
                        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
                        ) -> web.StreamResponse:
            conn = self.connection_of(request.protocol)
            if conn is not None:
                conn.request_started()
            try:
                return await handler(request)
            finally:
                if conn is not None:
                    conn.request_finished()

        return track


class _ServerLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp's server log for one listener. A request that cannot be parsed (bad
    request line, header or chunked body: aiohttp answers 400 and closes) is counted
    and logged by the guard; anything else, a handler's bug above all, reaches
    aiohttp's logger unchanged."""

    def __init__(self, guard: _Guard) -> None:
        super().__init__(logging.getLogger("aiohttp.server"), {})
        self._guard = guard

    def exception(self, msg: object, *args: object, exc_info: Any = True,
                  **kwargs: Any) -> None:
        exc = exc_info if isinstance(exc_info, BaseException) else sys.exc_info()[1]
        if isinstance(exc, HttpProcessingError):
            self._guard.count("bad_request", str(args[0]) if args else "",
                              detail=str(exc.message)[:200])
            return
        super().exception(msg, *args, exc_info=exc_info, **kwargs)

    def debug(self, msg: object, *args: object, **kwargs: Any) -> None:
        # aiohttp logs a bad method in a connection's first request (not HTTP at all:
        # TLS or a port scan) at debug level; it is a bad request all the same.
        exc = kwargs.get("exc_info")
        if isinstance(exc, HttpProcessingError):
            self._guard.count("bad_request", str(args[0]) if args else "",
                              detail=str(exc.message)[:200])
            return
        super().debug(msg, *args, **kwargs)


class HttpListener:
    """Serves an aiohttp application on one address with socd's limits.

    ``port`` is the bound port once :meth:`start` returned (``0`` asks for a free
    one). ``auto_decompress=False`` leaves ``Content-Encoding`` to the handler.
    """

    def __init__(self, app: web.Application, *, name: str, host: str, port: int,
                 limits: HttpLimits | None = None, ssl_context: ssl.SSLContext | None = None,
                 auto_decompress: bool = True, shutdown_timeout: float = 5.0) -> None:
        self.app = app
        self.name = name
        self.host = host
        self.port = port
        self.limits = limits or HttpLimits()
        self.ssl_context = ssl_context
        self._auto_decompress = auto_decompress
        self._shutdown_timeout = shutdown_timeout
        self._runner: web.AppRunner | None = None
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        limits = self.limits
        guard = _Guard(self.name, limits)
        self.app.middlewares.append(guard.middleware())
        runner = web.AppRunner(
            self.app, access_log=None, shutdown_timeout=self._shutdown_timeout,
            auto_decompress=self._auto_decompress, logger=_ServerLog(guard),
            keepalive_timeout=limits.idle_timeout_secs,
            lingering_time=min(_LINGER_SECS, limits.body_timeout_secs),
            max_line_size=limits.max_request_line_bytes,
            max_field_size=limits.max_header_field_bytes,
            max_headers=limits.max_headers)
        await runner.setup()
        self._runner = runner
        guard.server = runner.server
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(
                lambda: _Connection(guard), self.host, self.port, ssl=self.ssl_context,
                ssl_handshake_timeout=limits.header_timeout_secs if self.ssl_context else None,
                reuse_address=True, backlog=min(limits.max_connections, 4096))
        except BaseException:
            await self.stop()
            raise
        if self.port == 0 and self._server.sockets:
            self.port = self._server.sockets[0].getsockname()[1]
        self._sweeper = asyncio.create_task(self._sweep(guard), name=f"http/{self.name}/sweep")

    @staticmethod
    async def _sweep(guard: _Guard) -> None:
        while True:
            await asyncio.sleep(_SWEEP_SECS)
            guard.sweep()

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        if self._server is not None:
            self._server.close()  # no new connections; the runner closes the open ones
            self._server = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

