"""The ``syslog`` collector: a syslog server on UDP, TCP, TLS (RFC 5426/6587/5425) and RELP.

Each listener is one socket. TCP and TLS streams are split into messages by
RFC 6587 octet counting (``123 <34>1 ...``) or by newlines; ``framing: auto``
picks per connection from the first byte (a digit means octet counting).

Back-pressure and crashes: a TCP/TLS connection reads nothing more until what
it read is handed over, that is (with the intake journal, the default) fsync'd
in the journal; a slow pipeline or a full journal therefore stops the reads and
the sender's TCP window closes. What was journaled is never lost in a crash.
Plain TCP has no acknowledgement, though: a sender counts a message as sent once
its kernel took it, so what sits in the socket buffers when socd dies is lost (the
receive buffer is ``tcp_receive_buffer_bytes``; the sender's own send buffer
adds to it, and so does what asyncio read ahead of the journal, ``_STREAM_LIMIT``;
see docs/sources/syslog.md). RELP (``protocol: relp``, collectors/relp.py) closes
that gap: each message is answered only once it is journaled, and the sender
sends again what was not answered. UDP cannot push back: the
socket is drained into a bounded buffer (``udp_buffer_records``) and datagrams
that do not fit are dead-lettered with reason ``udp_overflow`` (counted in
``socd_events_dropped_total``). Datagrams the kernel drops before socd reads
them (socket buffer full) are only visible in ``/proc/net/udp``/``netstat -su``.

Every record's ``source`` is the peer, ``udp://10.0.0.1:51514`` style. Records
from a listener that cannot authenticate its senders (UDP; TCP/TLS without client
certificates or ``allowed_senders``) are marked unauthenticated: block decisions
they cause are refused unless ``allow_unauthenticated_blocking`` is set.
Dead-letter reasons (stage ``collect``): ``oversize``, ``sender_not_allowed``,
``udp_overflow``, ``truncated_frame``, ``framing_error``, ``shutdown``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from typing import Literal

import structlog
from pydantic import Field, field_validator, model_validator

from socd import metrics, netaddr
from socd.config import CollectorConfig, StrictModel
from socd.config.tls import TlsListenerConfig
from socd.errors import ListenError, SocdError
from socd.http import client_key
from socd.plugins import Emit, PluginContext, RawRecord

from . import relp

log = structlog.get_logger("socd.collectors.syslog")

_STREAM_LIMIT = 64 * 1024  # asyncio's read-ahead per TCP/TLS connection (pauses past 2x)

Drop = tuple[str, bytes, str]  # (reason, raw, detail)
_WS = b" \t\r\n\x00"


class Listener(StrictModel):
    protocol: Literal["udp", "tcp", "tls", "relp"]
    host: str = Field("0.0.0.0", description="Address to bind (`::` for IPv6).")  # noqa: S104
    port: int = Field(514, ge=0, le=65535, description="0 picks a free port (tests).")
    framing: Literal["auto", "octet_counting", "newline"] = Field(
        "auto", description="TCP/TLS only: RFC 6587 octet counting, newline, or `auto` "
        "(per connection: a first byte that is a digit means octet counting).")
    tls: TlsListenerConfig | None = Field(None, description="Required with `tls`; optional "
                                    "with `relp` (RELP over TLS).")

    @model_validator(mode="after")
    def _tls_only_for_tls(self) -> Listener:
        if self.protocol == "tls" and self.tls is None:
            raise ValueError("a tls listener needs `tls: {cert_file, key_file}`")
        if self.protocol not in ("tls", "relp") and self.tls is not None:
            raise ValueError(f"`tls` is only valid with protocol tls or relp, not "
                             f"{self.protocol}")
        return self


class Framer:
    """Splits a TCP byte stream into syslog messages (RFC 6587).

    :meth:`feed` returns complete frames and drops ``(reason, raw, detail)``;
    :meth:`finish` handles what is left when the connection closes.
    """

    __slots__ = ("discarding", "max_bytes", "mode", "pending", "skip")

    def __init__(self, framing: str = "auto", max_bytes: int = 64 * 1024) -> None:
        self.mode: str | None = None if framing == "auto" else framing
        self.max_bytes = max_bytes
        self.pending = b""
        self.skip = 0  # octet counting: bytes of an oversize frame still to discard
        self.discarding = False  # newline: inside an oversize line

    def feed(self, data: bytes) -> tuple[list[bytes], list[Drop]]:
        frames: list[bytes] = []
        drops: list[Drop] = []
        buf = self.pending + data if self.pending else data
        self.pending = b""
        if self.mode is None:
            start = buf.lstrip(_WS)
            if not start:
                return frames, drops
            self.mode = "octet_counting" if 48 <= start[0] <= 57 else "newline"
        if self.mode == "octet_counting":
            rest = self._octets(buf, frames, drops)
            if rest is None:
                return frames, drops
            buf = rest
        self._lines(buf, frames, drops)
        return frames, drops

    def _octets(self, buf: bytes, frames: list[bytes], drops: list[Drop]) -> bytes | None:
        """Consume octet-counted frames; returns the rest to read as newline-framed
        (after a framing error) or ``None``."""
        pos = 0
        n = len(buf)
        max_bytes = self.max_bytes
        while pos < n:
            if self.skip:
                take = min(self.skip, n - pos)
                self.skip -= take
                pos += take
                continue
            while pos < n and buf[pos] in _WS:
                pos += 1
            if pos >= n:
                break
            space = buf.find(b" ", pos, pos + 11)
            if space < 0:
                if n - pos > 10 or not buf[pos:].isdigit():
                    return self._framing_error(buf, pos, drops)
                break
            digits = buf[pos:space]
            if not digits.isdigit():
                return self._framing_error(buf, pos, drops)
            length = int(digits)
            start = space + 1
            if length > max_bytes:
                avail = min(n - start, length, max_bytes)
                drops.append(("oversize", buf[start:start + avail],
                              f"octet-counted frame of {length} bytes > {max_bytes}"))
                self.skip = length - (n - start) if n - start < length else 0
                pos = start + min(n - start, length)
                continue
            if n - start < length:
                break
            frames.append(buf[start:start + length])
            pos = start + length
        self.pending = buf[pos:] if pos < n else b""
        return None

    def _framing_error(self, buf: bytes, pos: int, drops: list[Drop]) -> bytes:
        """Bad octet count: dead-letter up to the next newline and fall back to
        newline framing (as rsyslog does)."""
        self.mode = "newline"
        end = buf.find(b"\n", pos)
        if end < 0:
            end = len(buf)
        drops.append(("framing_error", buf[pos:min(end, pos + self.max_bytes)],
                      "invalid octet count; switching this connection to newline framing"))
        return buf[end + 1:] if end < len(buf) else b""

    def _lines(self, buf: bytes, frames: list[bytes], drops: list[Drop]) -> None:
        max_bytes = self.max_bytes
        if self.discarding:
            end = buf.find(b"\n")
            if end < 0:
                return
            self.discarding = False
            buf = buf[end + 1:]
        parts = buf.split(b"\n")
        rest = parts.pop()
        for part in parts:
            if len(part) > max_bytes:
                drops.append(("oversize", part[:max_bytes],
                              f"line of {len(part)} bytes > {max_bytes}"))
                continue
            if part.endswith(b"\r"):
                part = part[:-1]
            if part.strip(_WS):
                frames.append(part)
        if len(rest) > max_bytes:
            drops.append(("oversize", rest[:max_bytes],
                          f"line longer than {max_bytes} bytes; skipped to the next newline"))
            self.discarding = True
            rest = b""
        self.pending = rest

    def finish(self) -> tuple[list[bytes], list[Drop]]:
        """The connection closed: the last unterminated line is a message; a partial
        octet-counted frame is dead-lettered."""
        rest, self.pending = self.pending, b""
        if self.discarding or not rest.strip(_WS):
            return [], []
        if self.mode == "octet_counting":
            return [], [("truncated_frame", rest, "connection closed inside an octet-counted "
                         "frame")]
        if self.skip:
            return [], []
        return [rest.rstrip(b"\r")], []


class _Allowlist:
    def __init__(self, entries: list[str]) -> None:
        self.networks = [netaddr.parse_network(e, count=False) for e in entries]
        self._cache: dict[str, bool] = {}

    def __call__(self, ip: str) -> bool:
        if not self.networks:
            return True
        hit = self._cache.get(ip)
        if hit is None:
            # The peer address comes from the kernel: a link-local peer carries its
            # interface as a zone id, which says nothing about who sent the message.
            try:
                addr = netaddr.parse_address(ip.split("%", 1)[0], count=False)
            except netaddr.AddressError:
                hit = False
            else:
                hit = any(addr in net for net in self.networks)
            if len(self._cache) > 65536:
                self._cache.clear()
            self._cache[ip] = hit
        return hit


def _peer(scheme: str, addr: object) -> tuple[str, str]:
    if isinstance(addr, tuple) and len(addr) >= 2:
        ip, port = str(addr[0]), addr[1]
        if ip.startswith("::ffff:") and "." in ip:
            ip = ip[7:]
        host = f"[{ip}]" if ":" in ip else ip
        return ip, f"{scheme}://{host}:{port}"
    return "", f"{scheme}://{addr}"


class SyslogCollector:
    """Syslog server: UDP, TCP (octet counting or newline framing), TLS and RELP listeners."""

    class Config(CollectorConfig):
        type: Literal["syslog"]
        decoder: str = Field("syslog", description="Decoder for the messages (`syslog`, "
                             "`cef`, or one you declare).")
        listeners: list[Listener] = Field(min_length=1)
        max_message_bytes: int = Field(64 * 1024, ge=480, le=16 * 1024 * 1024,
                                       description="Longer messages are dead-lettered "
                                       "(`oversize`).")
        allowed_senders: list[str] = Field(default_factory=list, description="IPs or CIDRs "
                                           "allowed to send; empty allows everyone.")
        flush_interval_secs: float = Field(0.05, gt=0, le=10, description="Longest wait "
                                           "before a partial TCP batch is handed over.")
        udp_buffer_records: int = Field(50_000, ge=100, le=10_000_000, description="UDP "
                                        "datagrams buffered while the pipeline is busy; more "
                                        "are dead-lettered (`udp_overflow`).")
        udp_receive_buffer_bytes: int = Field(8 * 1024 * 1024, ge=65536,
                                              description="SO_RCVBUF of UDP sockets (capped "
                                              "by net.core.rmem_max).")
        tcp_receive_buffer_bytes: int = Field(
            256 * 1024, ge=0, le=64 * 1024 * 1024, description="SO_RCVBUF of TCP/TLS "
            "connections (the kernel doubles it and caps it at net.core.rmem_max; 0 "
            "leaves it to the kernel's autotuning, up to net.ipv4.tcp_rmem). Plain TCP "
            "has no acknowledgement: what waits in this buffer when socd crashes is lost, "
            "so it bounds that loss. Larger helps only over long round trips.")
        max_connections: int = Field(1000, ge=1, description="Concurrent TCP/TLS "
                                     "connections per listener; more are refused.")
        max_connections_per_ip: int = Field(128, ge=1, description="Concurrent TCP/TLS "
                                            "connections from one address (IPv6: one /64); "
                                            "more are refused.")
        idle_timeout_secs: float = Field(3600.0, gt=0, le=7 * 86400, description="A TCP/TLS "
                                         "connection that sends nothing for this long is "
                                         "closed (rsyslog and syslog-ng reconnect when they "
                                         "next send). RELP: also the longest a frame may "
                                         "take to arrive and an answer to be taken.")
        relp_window_frames: int = Field(128, ge=1, le=65536, description="RELP: messages "
                                        "a session may have unanswered (rsyslog's window is "
                                        "128); past it socd stops reading that connection "
                                        "until the journal has taken them.")
        allow_unauthenticated_blocking: bool = Field(
            False, description="Enforce block decisions caused by messages from listeners "
            "that cannot authenticate their senders (UDP; TCP/TLS without client "
            "certificates or `allowed_senders`). Off: such decisions are audited as "
            "refused (`unauthenticated_source`). On: anyone who can send to the listener "
            "(UDP senders can be forged) can have any address that is not allowlisted "
            "blocked.")

        def authenticates(self, listener: Listener) -> bool:
            """Whether ``listener`` proves who sent a message: a TLS client certificate,
            or a TCP peer on ``allowed_senders`` (the handshake proves the address). A
            UDP source address can be forged, so UDP never does."""
            if listener.protocol == "udp":
                return False
            if listener.tls is not None and listener.tls.require_client_cert:
                return True
            return bool(self.allowed_senders)

        def unauthenticated_inputs(self) -> list[str]:
            return [f"{lst.protocol}://{lst.host}:{lst.port}" for lst in self.listeners
                    if not self.authenticates(lst)]

        def allows_unauthenticated_blocking(self) -> bool:
            return self.allow_unauthenticated_blocking

        @field_validator("allowed_senders")
        @classmethod
        def _networks(cls, value: list[str]) -> list[str]:
            for entry in value:
                try:
                    netaddr.parse_network(entry, count=False)
                except netaddr.AddressError as exc:
                    raise ValueError(f"{entry!r} is not an IP address or CIDR "
                                     f"({exc.reason.replace('_', ' ')})") from None
            return value

    def __init__(self, config: Config, ctx: PluginContext) -> None:
        self.name = ctx.name
        self.config = config
        self.ctx = ctx
        self.allowed = _Allowlist(config.allowed_senders)
        self.addresses: list[tuple[str, str, int]] = []
        self.connections = 0
        self._per_ip: dict[str, int] = {}
        self._last_refusal_log = -60.0
        self._ready = False
        self._servers: list[asyncio.Server] = []
        self._conn_tasks: set[asyncio.Task[None]] = set()
        self._udp_socks: list[socket.socket] = []
        self._udp_buf: list[RawRecord] = []
        self._udp_wakeup = asyncio.Event()
        self._batch: list[RawRecord] = []
        self._batch_bytes = 0
        # Resolved once the shared batch is handed over (journaled): the connections
        # whose frames are in it wait for it before reading more.
        self._batch_done: asyncio.Future[None] | None = None
        self._pending = asyncio.Event()
        self._source_cache: dict[object, tuple[str, str]] = {}
        self._received = metrics.EVENTS_RECEIVED.labels(self.name)
        metrics.init_collector(self.name)

    @property
    def ready(self) -> bool:
        return self._ready

    # -- lifecycle -----------------------------------------------------------------------

    async def run(self, emit: Emit) -> None:
        self._emit = emit
        loop = asyncio.get_running_loop()
        tasks: list[asyncio.Task[None]] = []
        try:
            for listener in self.config.listeners:
                await self._listen(loop, listener)
            tasks.append(asyncio.create_task(self._flusher(), name=f"syslog/{self.name}/flush"))
            if self._udp_socks:
                tasks.append(asyncio.create_task(self._udp_pump(),
                                                 name=f"syslog/{self.name}/udp"))
            self._set_ready(True)
            log.info("syslog listening", collector=self.name,
                     listeners=[f"{p}://{h}:{port}" for p, h, port in self.addresses])
            await asyncio.gather(*tasks)
        finally:
            self._set_ready(False)
            for task in tasks:
                task.cancel()
            for server in self._servers:
                server.close()
            conns = list(self._conn_tasks)
            for conn in conns:
                conn.cancel()
            if conns:
                # Let them run their cleanup (a last unterminated line joins the batch).
                await asyncio.wait(conns, timeout=2)
            for sock in self._udp_socks:
                with contextlib.suppress(Exception):
                    loop.remove_reader(sock.fileno())
                sock.close()
            self._servers = []
            self._udp_socks = []
            leftover = self._udp_buf + self._batch
            self._udp_buf, self._batch, self._batch_bytes = [], [], 0
            if self._batch_done is not None:
                self._batch_done.cancel()
                self._batch_done = None
            for record in leftover:
                self.ctx.dead_letter.write(stage="collect", reason="shutdown", raw=record.data,
                                           collector=self.name, source=record.source,
                                           detail="buffered in the collector at shutdown")

    async def _listen(self, loop: asyncio.AbstractEventLoop, listener: Listener) -> None:
        where = f"{listener.protocol}://{listener.host}:{listener.port}"
        try:
            if listener.protocol == "udp":
                family = socket.AF_INET6 if ":" in listener.host else socket.AF_INET
                sock = socket.socket(family, socket.SOCK_DGRAM)
                try:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF,
                                        self.config.udp_receive_buffer_bytes)
                    sock.setblocking(False)
                    sock.bind((listener.host, listener.port))
                except BaseException:
                    sock.close()
                    raise
                self._udp_socks.append(sock)
                loop.add_reader(sock.fileno(), self._udp_ready, sock)
                port = sock.getsockname()[1]
            else:
                ssl_ctx = (listener.tls.context(self.ctx.config_dir)
                           if listener.tls is not None else None)

                async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                                 listener: Listener = listener) -> None:
                    task = asyncio.current_task()
                    assert task is not None
                    self._conn_tasks.add(task)
                    try:
                        await self._connection(reader, writer, listener)
                    except asyncio.CancelledError:
                        pass  # the collector is stopping; asyncio would log it as an error
                    finally:
                        self._conn_tasks.discard(task)

                # A small stream buffer: what asyncio reads ahead of the journal is lost
                # in a crash (it pauses the socket past twice the limit).
                server = await asyncio.start_server(
                    handle, listener.host, listener.port, ssl=ssl_ctx, reuse_address=True,
                    limit=_STREAM_LIMIT, ssl_handshake_timeout=10 if ssl_ctx else None)
                self._servers.append(server)
                self._set_receive_buffer(server)
                port = server.sockets[0].getsockname()[1]
        except OSError as exc:
            # asyncio's bind error reads "error while attempting to bind on address
            # (...): address already in use"; the log line already names the collector,
            # so the error is the one the docs promise and people search for:
            # "cannot listen on tcp://...: Address already in use", with the fix.
            raise ListenError(where, exc,
                              key=f"collectors.{self.name}.listeners[].port") from exc
        except ssl.SSLError as exc:
            raise SocdError(f"syslog collector {self.name!r}: TLS setup for {where} failed: "
                            f"{exc}") from exc
        self.addresses.append((listener.protocol, listener.host, port))

    def _set_receive_buffer(self, server: asyncio.Server) -> None:
        """SO_RCVBUF on the listening sockets: accepted connections inherit it (and the
        window it allows), so it is set before any connection arrives."""
        size = self.config.tcp_receive_buffer_bytes
        if not size:
            return
        for sock in server.sockets:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
            except OSError as exc:
                log.warning("cannot set the TCP receive buffer; the kernel's default "
                            "applies", collector=self.name, bytes=size, error=str(exc))

    def _set_ready(self, ready: bool) -> None:
        self._ready = ready
        metrics.COMPONENT_UP.labels("collector", self.name).set(1 if ready else 0)

    def _drop(self, reason: str, raw: bytes, source: str, detail: str = "",
              count: bool = True) -> None:
        if count:
            self._received.inc()
        self.ctx.dead_letter.write(stage="collect", reason=reason, raw=raw,
                                   collector=self.name, source=source, detail=detail)

    # -- UDP -----------------------------------------------------------------------------

    def _udp_ready(self, sock: socket.socket) -> None:
        """Drain the socket (many datagrams per wake-up, unlike asyncio's transport)."""
        buf = self._udp_buf
        limit = self.config.udp_buffer_records
        max_bytes = self.config.max_message_bytes
        decoder = self.config.decoder
        name = self.name
        cache = self._source_cache
        allowed = self.allowed
        blocking = self.config.allow_unauthenticated_blocking
        now = time.time()
        added = False
        recv = sock.recvfrom
        for _ in range(1024):
            try:
                data, addr = recv(65535)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # ICMP errors surface here on some systems
                log.debug("udp receive error", collector=name, error=str(exc))
                break
            peer = cache.get(addr)
            if peer is None:
                peer = _peer("udp", addr)
                if len(cache) > 10_000:
                    cache.clear()
                cache[addr] = peer
            if not allowed(peer[0]):
                self._drop("sender_not_allowed", data, peer[1])
                continue
            if len(data) > max_bytes:
                self._drop("oversize", data[:max_bytes], peer[1],
                           f"datagram of {len(data)} bytes > {max_bytes}")
                continue
            if not data.strip(_WS):
                continue
            if len(buf) >= limit:
                self._drop("udp_overflow", data, peer[1],
                           f"{limit} datagrams already buffered (pipeline busy)")
                continue
            buf.append(RawRecord(data, decoder, name, peer[1], now, False, blocking))
            added = True
        if added:
            self._udp_wakeup.set()

    async def _udp_pump(self) -> None:
        emit = self._emit
        max_events = self.config.batch_max_events
        max_bytes = self.config.batch_max_bytes
        while True:
            await self._udp_wakeup.wait()
            self._udp_wakeup.clear()
            while self._udp_buf:
                buf = self._udp_buf
                take = min(len(buf), max_events)
                size = 0
                for i in range(take):
                    size += len(buf[i].data)
                    if size >= max_bytes:
                        take = i + 1
                        break
                batch = buf[:take]
                del buf[:take]
                await emit(batch, None)

    # -- TCP / TLS -----------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                          listener: Listener) -> None:
        ip, source = _peer(listener.protocol, writer.get_extra_info("peername"))
        if not self.allowed(ip):
            self._drop("sender_not_allowed", b"", source, "connection closed at accept",
                       count=False)
            writer.close()
            return
        key = client_key(writer.get_extra_info("peername"))
        refusal = ("too_many_connections"
                   if self.connections >= self.config.max_connections * len(self._servers)
                   else "too_many_from_address"
                   if self._per_ip.get(key, 0) >= self.config.max_connections_per_ip
                   else None)
        if refusal is not None:
            self._refuse(refusal, source)
            writer.close()
            return
        self.connections += 1
        self._per_ip[key] = self._per_ip.get(key, 0) + 1
        framer = Framer(listener.framing, self.config.max_message_bytes)
        authenticated = self.config.authenticates(listener)
        try:
            if listener.protocol == "relp":
                await self._relp_session(reader, writer, source, authenticated)
                return
            while True:
                try:
                    async with asyncio.timeout(self.config.idle_timeout_secs):
                        data = await reader.read(65536)
                except TimeoutError:
                    log.info("idle syslog connection closed", collector=self.name,
                             source=source, idle_secs=self.config.idle_timeout_secs)
                    break
                if not data:
                    break
                frames, drops = framer.feed(data)
                for reason, raw, detail in drops:
                    self._drop(reason, raw, source, detail)
                if frames:
                    # Read on only once these frames are journaled: socd never holds
                    # more than one read per connection that a crash could lose.
                    await self._add(frames, source, authenticated)
        except (ConnectionError, ssl.SSLError, OSError) as exc:
            log.info("syslog connection ended with an error", collector=self.name,
                     source=source, error=str(exc) or type(exc).__name__)
        finally:
            self.connections -= 1
            left = self._per_ip.get(key, 1) - 1
            if left > 0:
                self._per_ip[key] = left
            else:
                self._per_ip.pop(key, None)
            frames, drops = framer.finish()
            for reason, raw, detail in drops:
                self._drop(reason, raw, source, detail)
            if frames:
                self._append(frames, source, authenticated)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _relp_session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                            source: str, authenticated: bool) -> None:
        """Serve one RELP connection: messages join the shared batch, and each is
        answered once the batch is handed over (journaled)."""

        def drop(reason: str, raw: bytes, detail: str) -> None:
            self._drop(reason, raw, source, detail)

        def count(reason: str) -> None:
            metrics.ERRORS.labels(f"collector/{self.name}", reason).inc()

        await relp.RelpSession(
            reader, writer, source=source, drop=drop, count=count,
            submit=lambda frames: self._append(frames, source, authenticated),
            max_data=self.config.max_message_bytes, window=self.config.relp_window_frames,
            idle_timeout=self.config.idle_timeout_secs).run()

    def _refuse(self, reason: str, source: str) -> None:
        """Count a refused connection; log at most once a minute (a flood of
        connections must not flood the log)."""
        metrics.ERRORS.labels(f"collector/{self.name}", reason).inc()
        now = time.monotonic()
        if now - self._last_refusal_log >= 60:
            self._last_refusal_log = now
            log.warning("syslog connection refused", collector=self.name, source=source,
                        reason=reason, max_connections=self.config.max_connections,
                        max_connections_per_ip=self.config.max_connections_per_ip)

    def _append(self, frames: list[bytes], source: str,
                authenticated: bool) -> asyncio.Future[None]:
        """Add frames to the shared batch; returns the future of its hand-over."""
        now = time.time()
        decoder = self.config.decoder
        name = self.name
        batch = self._batch
        blocking = self.config.allow_unauthenticated_blocking
        for frame in frames:
            batch.append(RawRecord(frame, decoder, name, source, now, authenticated, blocking))
            self._batch_bytes += len(frame)
        if self._batch_done is None:
            self._batch_done = asyncio.get_running_loop().create_future()
        self._pending.set()
        return self._batch_done

    async def _add(self, frames: list[bytes], source: str, authenticated: bool) -> None:
        """Add frames to the shared batch and wait until the batch is handed over
        (``emit`` returned: with the journal, it is on disk)."""
        await self._append(frames, source, authenticated)

    def _full(self) -> bool:
        return (len(self._batch) >= self.config.batch_max_events
                or self._batch_bytes >= self.config.batch_max_bytes)

    async def _flush(self) -> None:
        batch, done = self._batch, self._batch_done
        if not batch:
            return
        self._batch, self._batch_done = [], None
        self._batch_bytes = 0
        limit = self.config.batch_max_events
        try:
            for start in range(0, len(batch), limit):
                await self._emit(batch[start:start + limit], None)
        except BaseException:
            # Stopping (cancelled, or the journal closed first): the connections
            # waiting for it stop too, and their senders were told nothing.
            if done is not None:
                done.cancel()
            raise
        if done is not None and not done.done():
            done.set_result(None)

    async def _flusher(self) -> None:
        """Hand the shared batch over as soon as the connections that had data ready
        have added theirs (each waits for the hand-over before reading again), but
        gather at most ``flush_interval_secs`` and at most a full batch."""
        interval = self.config.flush_interval_secs
        loop = asyncio.get_running_loop()
        while True:
            await self._pending.wait()
            deadline = loop.time() + interval
            size = -1
            while len(self._batch) != size and not self._full() and loop.time() < deadline:
                size = len(self._batch)
                await asyncio.sleep(0)
            self._pending.clear()
            await self._flush()
