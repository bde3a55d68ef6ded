"""Packet parsing and the flow table behind the ``sensor`` collector.

Nothing here does I/O: :func:`parse_frame` turns the bytes of one captured
frame into a small tuple, and :class:`FlowTable` aggregates such tuples into
flows and finished ECS events (plain dicts). The clock is whatever the caller
passes (packet timestamps for pcap replay, wall time for live capture), so the
timeouts are testable without sleeping.

Conventions (documented in docs/sources/sensor.md):

* A flow is keyed by (transport, initiator ip, initiator port, responder ip,
  responder port); the initiator is the sender of the first packet seen (a TCP
  SYN-ACK seen first makes its *receiver* the initiator). Packets of the
  reverse direction are matched to the same flow.
* ``bytes`` are IP-layer bytes (IPv4 total length, IPv6 40 + payload length),
  independent of the link layer and of the capture's snap length.
* A flow record covers one *segment* of a flow: long flows emit one record per
  ``active_timeout`` with the counts of that interval only, so summing records
  gives the flow's totals.
* Non-first IPv4 fragments carry no ports and are counted in a flow with
  ports 0; ICMP flows have no ports (type/code feed the Community ID only).
* Every flow record says whether a session came about
  (``network.connection_state``, ``event.outcome``): a TCP flow is
  ``established`` only when the responder's SYN-ACK acknowledged the
  initiator's SYN and the initiator acknowledged the SYN-ACK (sequence numbers
  checked), so a SYN answered by RST, an unanswered SYN or forged one-way
  packets with any flags never look like a session (docs/sources/sensor.md).
"""

from __future__ import annotations

import base64
import hashlib
import socket
import struct
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

# --------------------------------------------------------------------- parsing --

TCP, UDP, ICMP, ICMP6, SCTP = 6, 17, 1, 58, 132
TRANSPORTS = {TCP: "tcp", UDP: "udp", ICMP: "icmp", ICMP6: "ipv6-icmp", SCTP: "sctp",
              47: "gre", 50: "esp", 51: "ah"}

# libpcap link types
DLT_NULL, DLT_EN10MB, DLT_RAW, DLT_LOOP, DLT_LINUX_SLL, DLT_LINUX_SLL2 = 0, 1, 101, 108, 113, 276
DLT_RAW_ALIASES = (12, 14, 101)

FIN, SYN, RST, PSH, ACK, URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
FLAG_NAMES = ((SYN, "SYN"), (ACK, "ACK"), (FIN, "FIN"), (RST, "RST"), (PSH, "PSH"),
              (URG, "URG"))
_IPV6_EXT = frozenset({0, 43, 60})

_U16 = struct.Struct("!H")
_U16x2 = struct.Struct("!HH")
_U32x2 = struct.Struct("!II")

# (ts, proto, src, sport, dst, dport, length, tcp_flags,
#  dns_payload | icmp (type, code) | tcp (seq, ack) | None)
Packet = tuple[float, int, bytes, int, bytes, int, int, int, Any]


def parse_frame(data: bytes, linktype: int, ts: float) -> Packet | None:
    """Summarise one frame, or ``None`` when it is not IP (ARP, LLDP...) or is cut short."""
    try:
        if linktype == DLT_EN10MB:
            etype = _U16.unpack_from(data, 12)[0]
            off = 14
            while etype in (0x8100, 0x88A8, 0x9100):
                etype = _U16.unpack_from(data, off + 2)[0]
                off += 4
        elif linktype in DLT_RAW_ALIASES:
            etype, off = (0x86DD if data[0] >> 4 == 6 else 0x0800), 0
        elif linktype == DLT_LINUX_SLL:
            etype, off = _U16.unpack_from(data, 14)[0], 16
        elif linktype == DLT_LINUX_SLL2:
            etype, off = _U16.unpack_from(data, 0)[0], 20
        elif linktype in (DLT_NULL, DLT_LOOP):
            family = data[0] if data[0] else data[3]
            etype, off = (0x0800 if family == 2 else 0x86DD), 4
        else:
            return None
        return _parse_ip(data, off, etype, ts)
    except (struct.error, IndexError):
        return None


def _parse_ip(data: bytes, off: int, etype: int, ts: float) -> Packet | None:
    if etype == 0x0800:
        vihl = data[off]
        if vihl >> 4 != 4:
            return None
        ihl = (vihl & 0x0F) * 4
        length = _U16.unpack_from(data, off + 2)[0] or len(data) - off
        proto = data[off + 9]
        frag = _U16.unpack_from(data, off + 6)[0] & 0x1FFF
        src = data[off + 12:off + 16]
        dst = data[off + 16:off + 20]
        if len(dst) != 4:
            return None
        l4 = off + ihl
        end = min(len(data), off + length)
        if frag:
            return (ts, proto, src, 0, dst, 0, length, 0, None)
    elif etype == 0x86DD:
        if data[off] >> 4 != 6:
            return None
        length = 40 + _U16.unpack_from(data, off + 4)[0]
        proto = data[off + 6]
        src = data[off + 8:off + 24]
        dst = data[off + 24:off + 40]
        if len(dst) != 16:
            return None
        l4 = off + 40
        end = min(len(data), off + length)
        for _ in range(4):
            if proto in _IPV6_EXT:
                proto, l4 = data[l4], l4 + (data[l4 + 1] + 1) * 8
            elif proto == 44:  # fragment header
                fragoff = _U16.unpack_from(data, l4 + 2)[0] >> 3
                proto, l4 = data[l4], l4 + 8
                if fragoff:
                    return (ts, proto, src, 0, dst, 0, length, 0, None)
            else:
                break
    else:
        return None
    if proto == TCP:
        sport, dport = _U16x2.unpack_from(data, l4)
        flags = data[l4 + 13] & 0x3F
        return (ts, TCP, src, sport, dst, dport, length, flags, _U32x2.unpack_from(data, l4 + 4))
    if proto == UDP:
        sport, dport = _U16x2.unpack_from(data, l4)
        extra = data[l4 + 8:end] if (sport == 53 or dport == 53) else None
        return (ts, UDP, src, sport, dst, dport, length, 0, extra)
    if proto in (ICMP, ICMP6):
        return (ts, proto, src, 0, dst, 0, length, 0, (data[l4], data[l4 + 1]))
    if proto == SCTP:
        sport, dport = _U16x2.unpack_from(data, l4)
        return (ts, SCTP, src, sport, dst, dport, length, 0, None)
    return (ts, proto, src, 0, dst, 0, length, 0, None)


# ------------------------------------------------------------------------- DNS --

DNS_TYPES = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT",
             28: "AAAA", 33: "SRV", 65: "HTTPS", 255: "ANY"}
DNS_RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP",
              5: "REFUSED"}
MAX_DNS_ANSWERS = 32


def _dns_name(msg: bytes, off: int) -> tuple[str, int]:
    """Read a (possibly compressed) name; returns (name, offset after it)."""
    labels: list[str] = []
    end = -1
    for _ in range(128):
        n = msg[off]
        if n == 0:
            off += 1
            break
        if n & 0xC0 == 0xC0:
            if end < 0:
                end = off + 2
            off = ((n & 0x3F) << 8) | msg[off + 1]
            continue
        labels.append(msg[off + 1:off + 1 + n].decode("ascii", "replace"))
        off += 1 + n
    else:
        raise ValueError("DNS name loop")
    return ".".join(labels).lower(), (end if end >= 0 else off)


# Second-level labels under which country-code registries sell names (gov.vn, com.vn,
# co.uk, ...). Without the Public Suffix List, "<name>.<one of these>.<ccTLD>" is taken as
# the registered domain; good enough to group the names one client asks under one domain.
_CC_SECOND_LEVEL = frozenset({"ac", "biz", "co", "com", "edu", "go", "gov", "health",
                              "info", "int", "mil", "name", "ne", "net", "or", "org", "pro"})


def registered_domain(name: str) -> str | None:
    """The domain a name was registered under (``a.b.example.gov.vn`` -> ``example.gov.vn``).

    ``None`` for a bare TLD or suffix and for reverse look-ups (``*.arpa``): a mail server
    resolving the PTR of every peer asks many names under ``in-addr.arpa`` and that is
    no tunnel.
    """
    labels = name.rstrip(".").split(".")
    if len(labels) < 2 or not all(labels) or labels[-1] == "arpa":
        return None
    size = 3 if len(labels[-1]) == 2 and labels[-2] in _CC_SECOND_LEVEL else 2
    if len(labels) < size:
        return None
    return ".".join(labels[-size:])


def parse_dns(msg: bytes) -> dict[str, Any] | None:
    """The fields socd keeps from one DNS message, or ``None`` when it is malformed."""
    try:
        ident, flags, qd, an = struct.unpack_from("!HHHH", msg, 0)
        off = 12
        name, qtype = "", ""
        for i in range(qd):
            qname, off = _dns_name(msg, off)
            t = _U16.unpack_from(msg, off)[0]
            off += 4
            if i == 0:
                name, qtype = qname, DNS_TYPES.get(t, str(t))
        answers: list[dict[str, Any]] = []
        for _ in range(min(an, MAX_DNS_ANSWERS)):
            aname, off = _dns_name(msg, off)
            atype, _cls, ttl, rdlen = struct.unpack_from("!HHIH", msg, off)
            off += 10
            rdata = msg[off:off + rdlen]
            if len(rdata) != rdlen:
                break
            if atype == 1 and rdlen == 4:
                data = socket.inet_ntop(socket.AF_INET, rdata)
            elif atype == 28 and rdlen == 16:
                data = socket.inet_ntop(socket.AF_INET6, rdata)
            elif atype in (2, 5, 12):
                data = _dns_name(msg, off)[0]
            else:
                data = None
            answer: dict[str, Any] = {"name": aname, "type": DNS_TYPES.get(atype, str(atype)),
                                      "ttl": ttl}
            if data is not None:
                answer["data"] = data
            answers.append(answer)
            off += rdlen
    except (struct.error, IndexError, ValueError):
        return None
    return {"id": ident, "response": bool(flags & 0x8000), "rcode": flags & 0x0F,
            "name": name, "qtype": qtype, "answers": answers}


# ---------------------------------------------------------------- Community ID --

_ICMP4_PAIRS = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 10: 9, 9: 10, 17: 18, 18: 17}
_ICMP6_PAIRS = {128: 129, 129: 128, 133: 134, 134: 133, 135: 136, 136: 135, 130: 131,
                131: 130, 144: 145, 145: 144}


def community_id(proto: int, saddr: bytes, sport: int, daddr: bytes, dport: int,
                 icmp: tuple[int, int] | None = None, seed: int = 0) -> str:
    """Community ID v1 (https://github.com/corelight/community-id-spec), base64 form."""
    one_way = False
    if proto in (ICMP, ICMP6) and icmp is not None:
        pairs = _ICMP4_PAIRS if proto == ICMP else _ICMP6_PAIRS
        itype, code = icmp
        sport = itype
        if itype in pairs:
            dport = pairs[itype]
        else:
            dport, one_way = code, True
    if not one_way and not (saddr < daddr or (saddr == daddr and sport < dport)):
        saddr, daddr, sport, dport = daddr, saddr, dport, sport
    data = _U16.pack(seed) + saddr + daddr + bytes((proto, 0))
    if proto in (TCP, UDP, SCTP, ICMP, ICMP6) and (proto not in (ICMP, ICMP6) or icmp):
        data += _U16x2.pack(sport, dport)
    return "1:" + base64.b64encode(hashlib.sha1(data).digest()).decode()  # noqa: S324


# ------------------------------------------------------------------ flow table --

PROTOCOL_PORTS = {53: "dns", 80: "http", 8080: "http", 443: "tls", 8443: "tls", 853: "tls",
                  22: "ssh", 25: "smtp", 587: "smtp", 465: "smtp", 123: "ntp", 3389: "rdp",
                  445: "smb", 161: "snmp", 514: "syslog", 1883: "mqtt", 8883: "mqtt"}
MAX_PENDING_DNS = 64


_ISO_SECONDS: dict[int, str] = {}


def iso(ts: float) -> str:
    """RFC 3339 UTC text with microseconds (the per-second prefix is cached)."""
    micros = round(ts * 1_000_000)
    second, fraction = divmod(micros, 1_000_000)
    prefix = _ISO_SECONDS.get(second)
    if prefix is None:
        if len(_ISO_SECONDS) >= 4096:
            _ISO_SECONDS.clear()
        prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _ISO_SECONDS[second] = prefix
    return f"{prefix}.{fraction:06d}Z"


def ip_text(addr: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET if len(addr) == 4 else socket.AF_INET6, addr)


def _ns(seconds: float) -> int:
    return round(seconds * 1_000_000) * 1000


def flag_names(flags: int) -> list[str]:
    return [name for bit, name in FLAG_NAMES if flags & bit]


# -- connection state ------------------------------------------------------------------
#
# What the packets prove about a session, kept per flow across its records (bits of
# Flow.conn). A TCP session is established only by a handshake whose sequence numbers
# agree: the SYN-ACK acknowledges the initiator's SYN (ISN + 1) and the initiator's next
# ACK acknowledges the SYN-ACK. Flags alone prove nothing: the union of the flags of a
# refused attempt (SYN, then RST-ACK) already holds SYN and ACK, and one forged packet can
# carry every flag.
C_SYN = 0x01       # the initiator sent a SYN (without ACK)
C_SYNACK = 0x02    # the responder answered with a SYN-ACK acknowledging it
C_ESTAB = 0x04     # the initiator acknowledged the SYN-ACK: handshake complete
C_REFUSED = 0x08   # the responder sent a RST before the handshake completed
C_FWD = 0x10       # the initiator sent a packet without SYN or RST
C_REV = 0x20       # the responder sent a packet without SYN or RST (a reply, for UDP...)

SESSION_STATES = frozenset({"established", "midstream"})


def connection_state(proto: int, conn: int) -> str:
    """The flow's ``network.connection_state``.

    ``established``: TCP handshake seen (or, for other transports, a reply seen);
    ``midstream``: no valid handshake seen, but both sides sent packets other than SYN
    and RST (a session already running when the sensor first saw it, e.g. after an idle
    timeout, or whose handshake the mirror port dropped);
    ``half_open``: the responder accepted (SYN-ACK) but the initiator never completed
    (a SYN scan's open port); ``rejected``: the responder answered with RST;
    ``no_reply``: nothing came back.
    """
    if proto != TCP:
        return "established" if conn & C_REV else "no_reply"
    both_ways = conn & (C_FWD | C_REV) == C_FWD | C_REV
    if conn & C_ESTAB or (conn & C_SYNACK and both_ways):
        return "established"
    if both_ways:
        return "midstream"
    if conn & C_SYNACK:
        return "half_open"
    return "rejected" if conn & C_REFUSED else "no_reply"


def _track_tcp(flow: Flow, forward: bool, flags: int, numbers: tuple[int, int] | None) -> None:
    """Advance the handshake bits of ``flow`` with one TCP segment.

    ``numbers`` is (seq, ack) of the segment; without them (a caller that parsed no
    header) only the flags are checked.
    """
    conn = flow.conn
    seq, ack = numbers if numbers is not None else (-1, -1)
    if forward:
        if flags & (SYN | ACK) == SYN:
            conn |= C_SYN
            flow.isn = seq
        elif not flags & (SYN | RST):
            conn |= C_FWD
            if (conn & (C_SYNACK | C_ESTAB) == C_SYNACK and flags & ACK
                    and (numbers is None or ack == (flow.rsn + 1) & 0xFFFFFFFF)):
                conn |= C_ESTAB
    elif flags & (SYN | ACK) == SYN | ACK:
        if numbers is None or not conn & C_SYN or ack == (flow.isn + 1) & 0xFFFFFFFF:
            conn |= C_SYNACK
            flow.rsn = seq
    elif flags & RST:
        if not conn & C_ESTAB:
            conn |= C_REFUSED
    elif not flags & SYN:
        conn |= C_REV
    flow.conn = conn


class Flow:
    """One flow (oriented initiator -> responder) and the counts of its current segment."""

    __slots__ = (
        "alerted",
        "closed",
        "conn",
        "dns",
        "dport",
        "dst",
        "fin",
        "first",
        "flags",
        "fwd_bytes",
        "fwd_packets",
        "icmp",
        "isn",
        "last",
        "proto",
        "rev_bytes",
        "rev_packets",
        "rsn",
        "seg_start",
        "sport",
        "src",
    )

    def __init__(self, proto: int, src: bytes, sport: int, dst: bytes, dport: int,
                 ts: float, icmp: tuple[int, int] | None) -> None:
        self.proto, self.src, self.sport, self.dst, self.dport = proto, src, sport, dst, dport
        self.first = self.last = self.seg_start = ts
        self.fwd_packets = self.fwd_bytes = self.rev_packets = self.rev_bytes = 0
        self.flags = 0
        self.fin = 0  # bit 1: initiator sent FIN, bit 2: responder sent FIN
        self.closed = False
        self.icmp = icmp
        self.dns: dict[int, tuple[float, dict[str, Any], bool]] | None = None
        self.alerted = False
        self.conn = 0  # C_* bits: what the packets prove about a session (all records)
        self.isn = self.rsn = 0  # initiator's and responder's initial sequence numbers


class FlowTable:
    """Aggregates packet summaries into flows; finished records accumulate in :attr:`out`.

    ``ioc_lookup(ip) -> reference | None`` is asked once per new flow for both
    addresses; a hit appends one ``alert`` event right away (so at most one alert
    per address and flow, however many packets follow).
    """

    def __init__(self, *, idle_timeout: float = 30.0, active_timeout: float = 60.0,
                 max_flows: int = 100_000, close_grace: float = 2.0,
                 observer: dict[str, Any] | None = None,
                 ioc_lookup: Callable[[str], str | None] | None = None,
                 on_evict: Callable[[int], None] | None = None) -> None:
        self.idle_timeout = idle_timeout
        self.active_timeout = active_timeout
        self.max_flows = max_flows
        self.close_grace = close_grace
        self.observer = observer or {"type": "sensor"}
        self.ioc_lookup = ioc_lookup
        self.on_evict = on_evict
        self.flows: OrderedDict[tuple[int, bytes, int, bytes, int], Flow] = OrderedDict()
        self.closing: dict[tuple[int, bytes, int, bytes, int], Flow] = {}
        self.out: list[dict[str, Any]] = []
        self.now = 0.0
        self.evicted = 0
        self._next_scan = 0.0

    def __len__(self) -> int:
        return len(self.flows)

    # -- intake ------------------------------------------------------------------------

    def add(self, pkt: Packet) -> None:
        """Account one packet (its timestamp also advances the clock)."""
        ts, proto, src, sport, dst, dport, length, flags, extra = pkt
        self.now = max(self.now, ts)
        flows = self.flows
        key = (proto, src, sport, dst, dport)
        flow = flows.get(key)
        forward = True
        if flow is None:
            rkey = (proto, dst, dport, src, sport)
            flow = flows.get(rkey)
            if flow is not None:
                key, forward = rkey, False
        if flow is not None:
            if (flow.closed and flags & SYN and not flags & ACK) or (
                    ts - flow.seg_start >= self.active_timeout):
                # A new connection on a closed 4-tuple, or a long flow's interval is over.
                self._finish(key, flow, "tcp_close" if flow.closed else "active_timeout",
                             keep=not flow.closed)
                if flow.closed:
                    flow = None
                    key, forward = (proto, src, sport, dst, dport), True
            else:
                flows.move_to_end(key)
        if flow is None:
            if len(flows) >= self.max_flows:
                self._evict()
            if proto == TCP and flags & (SYN | ACK) == SYN | ACK:
                # Mid-handshake start: the SYN-ACK's receiver opened the connection.
                key, forward = (proto, dst, dport, src, sport), False
                flow = Flow(proto, dst, dport, src, sport, ts, None)
            else:
                flow = Flow(proto, src, sport, dst, dport, ts,
                            extra if proto in (ICMP, ICMP6) else None)
            flows[key] = flow
            if self.ioc_lookup is not None:
                self._check_ioc(flow, ts)
        if not (flow.fwd_packets or flow.rev_packets):
            flow.first = ts  # first packet of a new segment (after an active-timeout record)
        if forward:
            flow.fwd_packets += 1
            flow.fwd_bytes += length
        else:
            flow.rev_packets += 1
            flow.rev_bytes += length
        flow.last = max(flow.last, ts)
        if proto == TCP:
            self._tcp(key, flow, forward, flags, extra)
        else:
            if not forward:
                flow.conn |= C_REV
            if extra is not None and proto == UDP:
                self._dns(flow, forward, ts, extra)

    def _tcp(self, key: tuple[int, bytes, int, bytes, int], flow: Flow, forward: bool,
             flags: int, numbers: tuple[int, int] | None) -> None:
        """TCP flags, the handshake and closing (FIN both ways, or RST) of one segment."""
        flow.flags |= flags
        _track_tcp(flow, forward, flags, numbers)
        if flags & (FIN | RST) and not flow.closed:
            if flags & FIN:
                flow.fin |= 1 if forward else 2
            if flags & RST or flow.fin == 3:
                flow.closed = True
                self.closing[key] = flow

    def sweep(self, now: float | None = None) -> None:
        """Finish flows that are idle, closed for ``close_grace`` or past ``active_timeout``."""
        if now is not None and now > self.now:
            self.now = now
        now = self.now
        flows = self.flows
        idle_before = now - self.idle_timeout
        while flows:
            key, flow = next(iter(flows.items()))
            if flow.last > idle_before:
                break
            self._finish(key, flow, "idle_timeout")
        if self.closing:
            for key, flow in list(self.closing.items()):
                if now - flow.last >= self.close_grace:
                    self._finish(key, flow, "tcp_close")
        if now >= self._next_scan:
            # Flows with no recent packet are not checked on arrival; scan them now and then.
            self._next_scan = now + max(0.5, min(self.active_timeout, self.idle_timeout) / 4)
            for key, flow in list(flows.items()):
                if now - flow.seg_start >= self.active_timeout and (
                        flow.fwd_packets or flow.rev_packets):
                    self._finish(key, flow, "active_timeout", keep=True)

    def flush_all(self, reason: str = "shutdown", limit: int | None = None) -> None:
        """Finish every flow (stop, end of a pcap replay), or the ``limit`` oldest."""
        flows = self.flows
        count = len(flows) if limit is None else min(limit, len(flows))
        for _ in range(count):
            key, flow = next(iter(flows.items()))
            self._finish(key, flow, "tcp_close" if flow.closed else reason)

    def take(self) -> list[dict[str, Any]]:
        out, self.out = self.out, []
        return out

    # -- internals ---------------------------------------------------------------------

    def _evict(self) -> None:
        key, flow = next(iter(self.flows.items()))
        self._finish(key, flow, "evicted")
        self.evicted += 1
        if self.on_evict is not None:
            self.on_evict(1)

    def _finish(self, key: tuple[int, bytes, int, bytes, int], flow: Flow, reason: str, *,
                keep: bool = False) -> None:
        if flow.fwd_packets or flow.rev_packets:
            self.out.append(self._flow_event(flow, reason))
        if keep:
            flow.seg_start = self.now
            flow.first = flow.last = self.now
            flow.fwd_packets = flow.fwd_bytes = flow.rev_packets = flow.rev_bytes = 0
            return
        if flow.dns:
            for ts, query, client_is_src in flow.dns.values():
                self.out.append(self._dns_event(flow, client_is_src, ts, query, None, None))
            flow.dns = None
        self.flows.pop(key, None)
        self.closing.pop(key, None)

    def _flow_event(self, flow: Flow, reason: str) -> dict[str, Any]:
        proto = flow.proto
        transport = TRANSPORTS.get(proto, str(proto))
        packets = flow.fwd_packets + flow.rev_packets
        nbytes = flow.fwd_bytes + flow.rev_bytes
        source: dict[str, Any] = {"ip": ip_text(flow.src), "bytes": flow.fwd_bytes,
                                  "packets": flow.fwd_packets}
        dest: dict[str, Any] = {"ip": ip_text(flow.dst), "bytes": flow.rev_bytes,
                                "packets": flow.rev_packets}
        network: dict[str, Any] = {
            "transport": transport, "iana_number": str(proto),
            "type": "ipv4" if len(flow.src) == 4 else "ipv6",
            "bytes": nbytes, "packets": packets,
            "community_id": community_id(proto, flow.src, flow.sport, flow.dst, flow.dport,
                                         flow.icmp),
        }
        if proto in (TCP, UDP, SCTP):
            source["port"] = flow.sport
            dest["port"] = flow.dport
            app = PROTOCOL_PORTS.get(flow.dport) or PROTOCOL_PORTS.get(flow.sport)
            if app:
                network["protocol"] = app
        if proto == TCP:
            network["tcp_flags"] = flag_names(flow.flags)
        state = connection_state(proto, flow.conn)
        network["connection_state"] = state
        start = flow.first
        end = flow.last
        start_text = iso(start)
        return {
            "@timestamp": start_text,
            "message": f"{transport} flow {source['ip']}:{flow.sport} -> "
                       f"{dest['ip']}:{flow.dport} {packets} packets {nbytes} bytes",
            "event": {"kind": "event", "category": ["network"], "type": ["connection"],
                      "dataset": "socd.sensor.flow", "module": "socd_sensor", "action": reason,
                      "outcome": "success" if state in SESSION_STATES else "failure",
                      "start": start_text, "end": iso(end), "duration": _ns(end - start)},
            "source": source, "destination": dest, "network": network,
            "observer": self.observer,
            "socd": {"asset_kind": "network", "layer": 2},
        }

    def _dns(self, flow: Flow, forward: bool, ts: float, payload: bytes) -> None:
        msg = parse_dns(payload)
        if msg is None:
            return
        ident = msg["id"]
        # The client is the side that sent the query (normally the flow's initiator).
        client_is_src = forward != msg["response"]
        if not msg["response"]:
            if flow.dns is None:
                flow.dns = {}
            elif len(flow.dns) >= MAX_PENDING_DNS:
                old = next(iter(flow.dns))
                qts, query, qsrc = flow.dns.pop(old)
                self.out.append(self._dns_event(flow, qsrc, qts, query, None, None))
            flow.dns[ident] = (ts, msg, client_is_src)
            return
        pending = flow.dns.pop(ident, None) if flow.dns else None
        qts, query = (pending[0], pending[1]) if pending is not None else (ts, msg)
        self.out.append(self._dns_event(flow, client_is_src, qts, query, msg, ts))

    def _dns_event(self, flow: Flow, client_is_src: bool, qts: float, query: dict[str, Any],
                   answer: dict[str, Any] | None, ats: float | None) -> dict[str, Any]:
        client, cport, server, sport = ((flow.src, flow.sport, flow.dst, flow.dport)
                                        if client_is_src else
                                        (flow.dst, flow.dport, flow.src, flow.sport))
        question: dict[str, Any] = {"name": query["name"], "type": query["qtype"]}
        domain = registered_domain(query["name"])
        if domain is not None:
            question["registered_domain"] = domain
        dns: dict[str, Any] = {"id": str(query["id"]),
                               "type": "answer" if answer else "query",
                               "question": question}
        event: dict[str, Any] = {"kind": "event", "category": ["network"],
                                 "type": ["protocol"], "dataset": "socd.sensor.dns",
                                 "module": "socd_sensor", "start": iso(qts)}
        if answer is not None and ats is not None:
            dns["response_code"] = DNS_RCODES.get(answer["rcode"], str(answer["rcode"]))
            if answer["answers"]:
                dns["answers"] = answer["answers"]
                resolved = [a["data"] for a in answer["answers"]
                            if a["type"] in ("A", "AAAA") and "data" in a]
                if resolved:
                    dns["resolved_ip"] = resolved
            event["end"] = iso(ats)
            event["duration"] = _ns(ats - qts)
            event["outcome"] = "success" if answer["rcode"] == 0 else "failure"
        return {
            "@timestamp": iso(qts),
            "message": f"dns {query['qtype']} {query['name']}"
                       + (f" {dns['response_code']}" if answer else " (no answer)"),
            "event": event,
            "source": {"ip": ip_text(client), "port": cport},
            "destination": {"ip": ip_text(server), "port": sport},
            "network": {"transport": "udp", "protocol": "dns", "iana_number": "17",
                        "community_id": community_id(UDP, flow.src, flow.sport, flow.dst,
                                                     flow.dport)},
            "dns": dns,
            "observer": self.observer,
            "socd": {"asset_kind": "network", "layer": 2},
        }

    def _check_ioc(self, flow: Flow, ts: float) -> None:
        lookup = self.ioc_lookup
        assert lookup is not None
        for addr, _port, role in ((flow.src, flow.sport, "source"),
                                 (flow.dst, flow.dport, "destination")):
            ip = ip_text(addr)
            ref = lookup(ip)
            if ref is None:
                continue
            self.out.append(self._ioc_alert(flow, ts, ip, role, ref))

    def _ioc_alert(self, flow: Flow, ts: float, ip: str, role: str, ref: str) -> dict[str, Any]:
        transport = TRANSPORTS.get(flow.proto, str(flow.proto))
        source: dict[str, Any] = {"ip": ip_text(flow.src)}
        dest: dict[str, Any] = {"ip": ip_text(flow.dst)}
        if flow.proto in (TCP, UDP, SCTP):
            source["port"] = flow.sport
            dest["port"] = flow.dport
        flow.alerted = True
        return {
            "@timestamp": iso(ts),
            "message": f"traffic with IoC address {ip} ({role}), reference {ref}",
            "event": {"kind": "alert", "category": ["network", "threat"],
                      "type": ["connection", "indicator"], "dataset": "socd.sensor.ioc",
                      "module": "socd_sensor", "action": "ioc_ip_seen"},
            "rule": {"id": "socd-sensor-ioc-ip", "name": "Traffic with an IoC address",
                     "ruleset": "socd-sensor", "reference": ref},
            "source": source, "destination": dest,
            "network": {"transport": transport, "iana_number": str(flow.proto),
                        "community_id": community_id(flow.proto, flow.src, flow.sport,
                                                     flow.dst, flow.dport, flow.icmp)},
            "observer": self.observer,
            "tags": ["ioc"],
            "socd": {"asset_kind": "network", "layer": 2, "severity": "high",
                     "ioc": {"matched": True, "values": [ip], "refs": [ref]}},
        }
