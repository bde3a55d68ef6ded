"""The ``sensor`` collector: a network sensor on a SPAN/mirror port, or pcap replay.

Live capture (``interface``) reads frames from a Linux ``AF_PACKET`` socket
(scapy's ``conf.L2listen``) in a thread; the kernel applies ``bpf_filter``.
The thread parses each frame into a small tuple and hands chunks of them to
the event loop through a bounded queue. When the loop falls behind (the
pipeline is full and ``emit`` waits), the queue fills and further packets are
dropped: they are counted in ``socd_events_dropped_total{stage="collect",
reason="capture_overflow"}`` and a warning is logged at most every 10 seconds.
Packets are not dead-lettered: at capture rates that would be heavier than
the capture itself.

Offline replay (``pcap_files``) reads pcap and pcapng files with scapy's
``RawPcapReader`` (all files in order, one flow table, packet timestamps as
the clock), applies ``bpf_filter`` with libpcap's ``pcap_offline_filter`` and
finishes when the files are done, after flushing every flow.

Flows (see :mod:`socd.collectors.flows`) are emitted as ECS JSON records for
the ``json`` decoder: ``socd.sensor.flow`` per flow segment, ``socd.sensor.dns``
per DNS transaction, and ``socd.sensor.ioc`` alerts when an address is on an
IoC list (checked once per new flow, so at most once per address and flow).

**IoC hook**: :attr:`SensorCollector.ioc_lookup` is a plain attribute holding
``Callable[[str], str | None]``: it gets an IP address as text and returns
the IoC reference (e.g. the official letter ``941/CATTT-NCSC``) or ``None``.
It is set from ``ioc_files`` at construction (a memory-only
:class:`~socd.ioc.store.IocStore` of those lists); without them the daemon gives
it its own store's ``match_ip`` through :meth:`SensorCollector.use_ioc_lookup`
(the :class:`~socd.plugins.IocAware` capability), and the next new flow uses the
new function. ``None`` disables the check.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import glob
import os
import queue
import select
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Literal

import orjson
import structlog
from prometheus_client import Counter
from pydantic import Field, model_validator

from socd import metrics
from socd.config import CollectorConfig, resolve_path
from socd.errors import SocdError
from socd.ioc.importers import load_text_lists
from socd.ioc.store import IocStore
from socd.plugins import Emit, PluginContext, RawRecord

from .flows import DLT_EN10MB, DLT_RAW, FlowTable, Packet, parse_frame

log = structlog.get_logger("socd.collectors.sensor")

FLOWS_EVICTED = Counter(
    "socd_sensor_flows_evicted_total", "Flows of the network sensor finished early because the "
    "flow table was full (max_flows); each is still emitted, with event.action=evicted.",
    ["collector"], registry=metrics.REGISTRY)

CAP_NET_RAW_HINT = (
    "live capture needs the CAP_NET_RAW capability: run socd with "
    "`AmbientCapabilities=CAP_NET_RAW` (and CapabilityBoundingSet including it) in a "
    "systemd drop-in (systemctl edit socd), or `setcap cap_net_raw+ep` on the interpreter")

_CHUNK = 512  # packets handed from the capture thread to the loop at once
_READ_CHUNK = 2048  # packets read from a pcap file between yields to the loop
_ARPHRD_NONE = 0xFFFE


class CaptureError(SocdError):
    """Capture cannot start: missing capability, unknown interface, bad filter."""


class SensorCollector:
    """Aggregates captured packets into flow, DNS and IoC events (ECS JSON)."""

    class Config(CollectorConfig):
        # The sensor writes socd's own ECS JSON: the default `json` decoder is its decoder.
        default_decoder_fits = True

        type: Literal["sensor"]
        interface: str | None = Field(None, description="Capture live on this interface "
                                      "(a SPAN/mirror port); needs CAP_NET_RAW.")
        pcap_files: list[str] = Field(default_factory=list, description="Replay these pcap/"
                                      "pcapng files (globs, relative to the config file's "
                                      "folder) once and finish.")
        bpf_filter: str | None = Field(None, description="libpcap filter expression "
                                       "(`not port 22`); checked at start.")
        idle_timeout_secs: float = Field(30.0, gt=0, le=86400,
                                         description="A flow without packets for this long "
                                         "is finished and emitted.")
        active_timeout_secs: float = Field(60.0, gt=0, le=86400,
                                           description="A long flow emits a record every "
                                           "interval (counts of that interval).")
        tcp_close_grace_secs: float = Field(2.0, ge=0, le=300,
                                            description="After FIN both ways or RST, wait "
                                            "this long for the last ACKs, then emit.")
        max_flows: int = Field(100_000, ge=1, le=10_000_000,
                               description="Flow table bound; when full the least recently "
                               "active flow is emitted early (counted as evicted).")
        ioc_files: list[str] = Field(default_factory=list, description="IoC lists (IPs, "
                                     "CIDRs) checked against every new flow's addresses.")
        snaplen: int = Field(262144, ge=64, le=262144,
                             description="Bytes kept of each frame (headers and DNS need "
                             "only a few hundred).")
        promisc: bool = Field(True, description="Put the interface in promiscuous mode.")
        capture_queue_packets: int = Field(65536, ge=_CHUNK, le=10_000_000,
                                           description="Packets buffered between the "
                                           "capture thread and the flow table.")
        allow_unauthenticated_blocking: bool = Field(
            False, description="Enforce block decisions caused by this sensor's events. "
            "Off: they are audited as refused (`unauthenticated_source`), since packets and "
            "their source addresses can be spoofed. On: anyone who can put packets on the "
            "mirrored network (a SYN scan with forged sources) can have any address that is "
            "not allowlisted blocked.")

        def unauthenticated_inputs(self) -> list[str]:
            # Captured or replayed, a packet's source address proves nothing.
            if self.interface:
                return [f"sensor interface {self.interface}"]
            return ["pcap files " + ", ".join(self.pcap_files)]

        def allows_unauthenticated_blocking(self) -> bool:
            return self.allow_unauthenticated_blocking

        def unauthenticated_hint(self) -> str:
            return ("packets can be spoofed: let rules on authenticated sources (EDR, "
                    "syslog over TCP/TLS from allowed senders) decide blocks")

        @model_validator(mode="after")
        def _one_source(self) -> SensorCollector.Config:
            if bool(self.interface) == bool(self.pcap_files):
                raise ValueError("set exactly one of `interface` (live capture) or "
                                 "`pcap_files` (replay)")
            return self

    def __init__(self, config: Config, ctx: PluginContext) -> None:
        self.name = ctx.name
        self.config = config
        self.ctx = ctx
        self._ready = False
        self.clock: Callable[[], float] = time.time
        self.ioc_lookup: Callable[[str], str | None] | None = None
        if config.ioc_files:
            entries, _ = load_text_lists(resolve_path(ctx.config_dir, path)
                                         for path in config.ioc_files)
            self.ioc_lookup = IocStore(None, static=entries, gauges=False).match_ip
        self.packets = 0
        self.dropped = 0
        metrics.init_collector(self.name)
        FLOWS_EVICTED.labels(self.name)
        metrics.EVENTS_DROPPED.labels("collect", "capture_overflow")

    @property
    def ready(self) -> bool:
        return self._ready

    def use_ioc_lookup(self, lookup: Callable[[str], str | None]) -> None:
        """The daemon's IoC store (:class:`~socd.plugins.IocAware`), always hooked so
        that entries imported later are seen too; the sensor's own ``ioc_files``, when
        it has some, take precedence."""
        if not self.config.ioc_files:
            self.ioc_lookup = lookup

    def new_table(self) -> FlowTable:
        cfg = self.config
        observer: dict[str, Any] = {"type": "sensor", "hostname": socket.gethostname(),
                                    "name": self.name}
        if cfg.interface:
            observer["ingress"] = {"interface": {"name": cfg.interface}}
        evicted = FLOWS_EVICTED.labels(self.name)
        return FlowTable(idle_timeout=cfg.idle_timeout_secs,
                          active_timeout=cfg.active_timeout_secs, max_flows=cfg.max_flows,
                          close_grace=cfg.tcp_close_grace_secs, observer=observer,
                          ioc_lookup=self.ioc_lookup, on_evict=evicted.inc)

    def files(self) -> list[str]:
        found: list[str] = []
        for pattern in self.config.pcap_files:
            full = resolve_path(self.ctx.config_dir, pattern)
            matches = sorted(glob.glob(full)) if glob.has_magic(full) else [full]
            found.extend(m for m in matches if os.path.isfile(m))
        return found

    async def run(self, emit: Emit) -> None:
        if self.config.interface:
            await self._run_live(emit)
        else:
            await self._run_offline(emit)

    # -- output ------------------------------------------------------------------------

    async def _emit(self, emit: Emit, table: FlowTable) -> None:
        # Pick up a hook the daemon set after start-up.
        table.ioc_lookup = self.ioc_lookup
        events = table.take()
        if not events:
            return
        limit = self.config.batch_max_events
        limit_bytes = self.config.batch_max_bytes
        now = time.time()
        batch: list[RawRecord] = []
        size = 0
        decoder = self.config.decoder
        received = metrics.EVENTS_RECEIVED.labels(self.name)
        # Spoofable packets: the decoder marks the events unauthenticated, and the blocker
        # refuses what they cause unless the operator opted in (docs/blocking.md).
        blocking = self.config.allow_unauthenticated_blocking
        for event in events:
            data = orjson.dumps(event)
            batch.append(RawRecord(data, decoder, self.name, "sensor", now,
                                   authenticated=False, blocking_allowed=blocking))
            size += len(data)
            if len(batch) >= limit or size >= limit_bytes:
                received.inc(len(batch))
                await emit(batch, None)
                batch, size = [], 0
        if batch:
            received.inc(len(batch))
            await emit(batch, None)

    async def _finish(self, emit: Emit, table: FlowTable, reason: str) -> None:
        # In slices, so that a full table never becomes one huge list of events.
        while len(table):
            table.flush_all(reason, limit=self.config.batch_max_events)
            await self._emit(emit, table)
        await self._emit(emit, table)

    # -- offline -----------------------------------------------------------------------

    async def _run_offline(self, emit: Emit) -> None:
        files = self.files()
        if not files:
            log.warning("no pcap file matches the configured paths", collector=self.name,
                        paths=self.config.pcap_files)
        table = self.new_table()
        self._set_ready(True)
        try:
            for path in files:
                await self._replay(path, table, emit)
        except asyncio.CancelledError:
            await self._finish(emit, table, "shutdown")
            raise
        await self._finish(emit, table, "end_of_capture")
        log.info("pcap files replayed", collector=self.name, files=len(files),
                 packets=self.packets, flows_evicted=table.evicted)

    async def _replay(self, path: str, table: FlowTable, emit: Emit) -> None:
        from scapy.error import Scapy_Exception
        from scapy.utils import RawPcapReader

        try:
            reader: Any = RawPcapReader(path)
        except (Scapy_Exception, OSError) as exc:
            raise CaptureError(f"cannot read {path}: {exc}") from exc
        try:
            linktype = int(getattr(reader, "linktype", DLT_EN10MB))
            match = _offline_filter(self.config.bpf_filter, linktype)
            add = table.add
            count = 0
            nano = bool(getattr(reader, "nano", False))
            for data, meta in reader:
                ts = _timestamp(meta, nano)
                if match is not None and not match(data, getattr(meta, "wirelen", None)
                                                   or len(data)):
                    continue
                pkt = parse_frame(data, int(getattr(meta, "linktype", None) or linktype), ts)
                count += 1
                if pkt is not None:
                    add(pkt)
                if count % _READ_CHUNK == 0:
                    table.sweep()
                    await self._emit(emit, table)
                    await asyncio.sleep(0)
            table.sweep()
            await self._emit(emit, table)
            self.packets += count
        finally:
            reader.close()

    # -- live --------------------------------------------------------------------------

    def open_socket(self) -> Any:
        """Open the capture socket (raises :class:`CaptureError` with the cause)."""
        from scapy.config import conf
        from scapy.error import Scapy_Exception

        cfg = self.config
        try:
            return conf.L2listen(iface=cfg.interface, promisc=cfg.promisc,
                                 filter=cfg.bpf_filter or None)
        except PermissionError as exc:
            raise CaptureError(f"cannot capture on {cfg.interface!r}: {exc}; "
                               f"{CAP_NET_RAW_HINT}") from exc
        except (Scapy_Exception, ImportError) as exc:
            raise CaptureError(f"cannot apply bpf_filter {cfg.bpf_filter!r} on "
                               f"{cfg.interface!r}: {exc}") from exc
        except OSError as exc:
            if exc.errno in (1, 13):
                raise CaptureError(f"cannot capture on {cfg.interface!r}: {exc}; "
                                   f"{CAP_NET_RAW_HINT}") from exc
            raise CaptureError(f"cannot capture on {cfg.interface!r}: {exc}") from exc

    async def _run_live(self, emit: Emit) -> None:
        cfg = self.config
        if cfg.bpf_filter:
            _compile(cfg.bpf_filter, DLT_EN10MB)  # a clear error before touching the socket
        sock = self.open_socket()
        loop = asyncio.get_running_loop()
        chunks: queue.Queue[list[Packet]] = queue.Queue(
            max(1, cfg.capture_queue_packets // _CHUNK))
        wake = asyncio.Event()
        stop = threading.Event()
        thread = threading.Thread(target=self._capture, name=f"sensor/{self.name}",
                                  args=(sock, chunks, loop, wake, stop), daemon=True)
        table = self.new_table()
        thread.start()
        self._set_ready(True)
        log.info("capturing", collector=self.name, interface=cfg.interface,
                 bpf_filter=cfg.bpf_filter, promisc=cfg.promisc)
        try:
            while True:
                wake.clear()
                got = False
                while True:
                    try:
                        chunk = chunks.get_nowait()
                    except queue.Empty:
                        break
                    got = True
                    add = table.add
                    for pkt in chunk:
                        add(pkt)
                    self.packets += len(chunk)
                    await self._emit(emit, table)
                table.sweep(self.clock())
                await self._emit(emit, table)
                if not thread.is_alive():
                    raise CaptureError(f"capture on {cfg.interface!r} stopped")
                if not got:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), 0.5)
        except asyncio.CancelledError:
            stop.set()
            await asyncio.to_thread(thread.join, 2)
            while not chunks.empty():
                for pkt in chunks.get_nowait():
                    table.add(pkt)
            await self._finish(emit, table, "shutdown")
            raise
        finally:
            stop.set()
            self._set_ready(False)
            with contextlib.suppress(OSError):
                sock.close()

    def _capture(self, sock: Any, chunks: queue.Queue[list[Packet]],
                 loop: asyncio.AbstractEventLoop, wake: asyncio.Event,
                 stop: threading.Event) -> None:
        """The capture thread: read frames, parse, hand chunks to the loop."""
        raw: socket.socket = sock.ins
        snaplen = self.config.snaplen
        clock = self.clock
        overflow = metrics.EVENTS_DROPPED.labels("collect", "capture_overflow")
        chunk: list[Packet] = []
        flush_at = time.monotonic() + 0.05
        warned = 0.0
        dropped_since = 0
        while not stop.is_set():
            ready, _, _ = select.select([raw], [], [], 0.05)
            if ready:
                try:
                    data, addr = raw.recvfrom(snaplen)
                except BlockingIOError:
                    continue
                except OSError:
                    if stop.is_set():
                        break
                    raise
                linktype = DLT_RAW if addr[3] == _ARPHRD_NONE else DLT_EN10MB
                pkt = parse_frame(data, linktype, clock())
                if pkt is not None:
                    chunk.append(pkt)
            now = time.monotonic()
            if chunk and (len(chunk) >= _CHUNK or now >= flush_at):
                try:
                    chunks.put_nowait(chunk)
                    loop.call_soon_threadsafe(wake.set)
                except queue.Full:
                    self.dropped += len(chunk)
                    dropped_since += len(chunk)
                    overflow.inc(len(chunk))
                    if now - warned >= 10:
                        log.warning("capture queue full; packets dropped", collector=self.name,
                                    dropped=dropped_since, reason="capture_overflow")
                        warned, dropped_since = now, 0
                except RuntimeError:  # the loop is closed
                    break
                chunk = []
            if now >= flush_at:
                flush_at = now + 0.05
        if chunk:
            with contextlib.suppress(queue.Full):
                chunks.put_nowait(chunk)

    def _set_ready(self, ready: bool) -> None:
        self._ready = ready
        metrics.COMPONENT_UP.labels("collector", self.name).set(1 if ready else 0)


def _timestamp(meta: Any, nano: bool) -> float:
    """Seconds since the epoch from RawPcapReader metadata (pcap or pcapng)."""
    if hasattr(meta, "sec"):
        return float(meta.sec) + float(meta.usec) / (1e9 if nano else 1e6)
    resolution = getattr(meta, "tsresol", 1_000_000) or 1_000_000
    return float((meta.tshigh << 32) | meta.tslow) / float(resolution)


def _compile(expression: str, linktype: int) -> Any:
    """The compiled BPF program; a bad expression is a :class:`CaptureError`."""
    try:
        from scapy.arch.common import compile_filter
        from scapy.error import Scapy_Exception
    except ImportError as exc:  # pragma: no cover - scapy is a dependency
        raise CaptureError(f"cannot compile bpf_filter: {exc}") from exc
    try:
        return compile_filter(expression, linktype=linktype)
    except ImportError as exc:
        raise CaptureError(f"bpf_filter needs libpcap (Debian: libpcap0.8): {exc}") from exc
    except Scapy_Exception as exc:
        raise CaptureError(f"invalid bpf_filter {expression!r}: {exc}") from exc


def check_filter(expression: str) -> None:
    """Raise :class:`CaptureError` when ``expression`` is not a valid libpcap filter."""
    _compile(expression, DLT_EN10MB)


def _offline_filter(expression: str | None,
                    linktype: int) -> Callable[[bytes, int], bool] | None:
    """A matcher running the compiled filter through libpcap's ``pcap_offline_filter``."""
    if not expression:
        return None
    program = _compile(expression, linktype)
    from scapy.libs import winpcapy

    lib = winpcapy._lib
    offline = lib.pcap_offline_filter
    offline.restype = ctypes.c_int
    header = winpcapy.pcap_pkthdr()
    program_ref = ctypes.byref(program)
    header_ref = ctypes.byref(header)

    def match(data: bytes, wirelen: int) -> bool:
        header.caplen = len(data)
        header.len = wirelen
        return bool(offline(program_ref, header_ref, data))

    return match


def flow_events(records: Iterable[RawRecord]) -> list[dict[str, Any]]:
    """The events inside emitted records (for tests and the benchmark)."""
    return [orjson.loads(r.data) for r in records]
