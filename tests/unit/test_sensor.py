"""The network sensor: frame parsing, the flow table, DNS, IoC alerts, pcap replay."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import PcapNgWriter, wrpcap

from socd.collectors.flows import (
    DLT_EN10MB,
    DLT_RAW,
    FlowTable,
    community_id,
    parse_dns,
    parse_frame,
    registered_domain,
)
from socd.collectors.sensor import CaptureError, SensorCollector, check_filter
from socd.decoders.json import JsonDecoder
from socd.plugins import PluginContext, RawRecord
from tests.unit.conftest import sample_value

CLIENT, SERVER = "10.201.0.1", "10.201.0.2"
T0 = 1_763_251_200.0  # 2025-11-16T00:00:00Z


def frame(pkt: Any, ts: float) -> Any:
    parsed = parse_frame(bytes(Ether() / pkt), DLT_EN10MB, ts)
    assert parsed is not None
    return parsed


def feed(table: FlowTable, packets: list[tuple[float, Any]]) -> None:
    for ts, pkt in packets:
        table.add(frame(pkt, ts))


def tcp(src: str, sport: int, dst: str, dport: int, flags: str, payload: bytes = b"",
        seq: int = 0, ack: int = 0) -> Any:
    pkt = IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack)
    return pkt / Raw(payload) if payload else pkt


def ip_len(pkt: Any) -> int:
    return len(bytes(pkt))


def handshake(t: float = T0) -> list[tuple[float, Any]]:
    """A complete HTTP-ish TCP conversation, closed with FIN both ways."""
    c, s = CLIENT, SERVER
    req, resp = b"GET / HTTP/1.1\r\n\r\n", b"HTTP/1.1 200 OK\r\n\r\nhello"
    ci, si = 1000, 5000  # initial sequence numbers
    return [
        (t, tcp(c, 40000, s, 80, "S", seq=ci)),
        (t + 0.001, tcp(s, 80, c, 40000, "SA", seq=si, ack=ci + 1)),
        (t + 0.002, tcp(c, 40000, s, 80, "A", seq=ci + 1, ack=si + 1)),
        (t + 0.003, tcp(c, 40000, s, 80, "PA", req, seq=ci + 1, ack=si + 1)),
        (t + 0.010, tcp(s, 80, c, 40000, "PA", resp, seq=si + 1, ack=ci + 1 + len(req))),
        (t + 0.011, tcp(c, 40000, s, 80, "FA", seq=ci + 1 + len(req), ack=si + 1 + len(resp))),
        (t + 0.012, tcp(s, 80, c, 40000, "FA", seq=si + 1 + len(resp), ack=ci + 2 + len(req))),
        (t + 0.013, tcp(c, 40000, s, 80, "A", seq=ci + 2 + len(req), ack=si + 2 + len(resp))),
    ]


def flows_of(events: list[dict[str, Any]], dataset: str = "socd.sensor.flow") -> list[dict]:
    return [e for e in events if e["event"]["dataset"] == dataset]


# -- parsing ----------------------------------------------------------------------------


def test_parse_frame_tcp_udp_ipv6_and_non_ip() -> None:
    pkt = IP(src=CLIENT, dst=SERVER) / TCP(sport=1234, dport=443, flags="S", seq=7, ack=9)
    ts, proto, src, sport, dst, dport, length, flags, extra = frame(pkt, 5.0)
    assert (ts, proto, sport, dport, length, flags, extra) == (5.0, 6, 1234, 443,
                                                              ip_len(pkt), 0x02, (7, 9))
    assert (socket.inet_ntoa(src), socket.inet_ntoa(dst)) == (CLIENT, SERVER)
    v6 = IPv6(src="fd00::1", dst="fd00::2") / UDP(sport=5000, dport=6000) / Raw(b"abc")
    parsed = frame(v6, 1.0)
    assert parsed[1] == 17
    assert parsed[6] == 40 + 8 + 3
    raw = parse_frame(bytes(pkt), DLT_RAW, 0.0)
    assert raw is not None
    assert raw[1:8] == frame(pkt, 0.0)[1:8]
    assert parse_frame(b"\xff" * 60, DLT_EN10MB, 0.0) is None  # not IP
    assert parse_frame(bytes(Ether() / IP())[:20], DLT_EN10MB, 0.0) is None  # cut short


def test_community_id_matches_the_spec_vectors() -> None:
    a = socket.inet_aton
    assert community_id(6, a("128.232.110.120"), 34855, a("66.35.250.204"), 80) == (
        "1:LQU9qZlK+B5F3KDmev6m5PMibrg=")
    # Direction does not matter.
    assert community_id(6, a("66.35.250.204"), 80, a("128.232.110.120"), 34855) == (
        "1:LQU9qZlK+B5F3KDmev6m5PMibrg=")
    assert community_id(17, a("192.168.1.52"), 54585, a("8.8.8.8"), 53) == (
        "1:d/FP5EW3wiY1vCndhwleRRKHowQ=")
    assert community_id(1, a("192.168.0.89"), 0, a("192.168.0.1"), 0, (8, 0)) == (
        "1:X0snYXpgwiv9TZtqg64sgzUn6Dk=")


# -- flow table ---------------------------------------------------------------------------


def test_bidirectional_counts_and_fin_close() -> None:
    table = FlowTable(close_grace=2.0, observer={"type": "sensor", "hostname": "s1"})
    packets = handshake()
    feed(table, packets)
    assert table.take() == []  # closed, but waiting for the last ACKs
    assert len(table.closing) == 1
    table.sweep(T0 + 1.0)
    assert table.take() == []
    table.sweep(T0 + 0.013 + 2.0)
    [event] = table.take()
    fwd = [p for _, p in packets if p[IP].src == CLIENT]
    rev = [p for _, p in packets if p[IP].src == SERVER]
    assert event["source"] == {"ip": CLIENT, "port": 40000, "packets": len(fwd),
                               "bytes": sum(map(ip_len, fwd))}
    assert event["destination"] == {"ip": SERVER, "port": 80, "packets": len(rev),
                                    "bytes": sum(map(ip_len, rev))}
    assert event["network"]["packets"] == 8
    assert event["network"]["bytes"] == sum(ip_len(p) for _, p in packets)
    assert event["network"]["transport"] == "tcp"
    assert event["network"]["protocol"] == "http"
    assert event["network"]["tcp_flags"] == ["SYN", "ACK", "FIN", "PSH"]
    assert event["network"]["connection_state"] == "established"
    assert event["event"]["outcome"] == "success"
    assert event["network"]["community_id"].startswith("1:")
    assert event["event"]["action"] == "tcp_close"
    assert event["event"]["kind"] == "event"
    assert event["event"]["category"] == ["network"]
    assert event["event"]["type"] == ["connection"]
    assert event["event"]["start"] == event["@timestamp"] == "2025-11-16T00:00:00.000000Z"
    assert event["event"]["end"] == "2025-11-16T00:00:00.013000Z"
    assert event["event"]["duration"] == 13_000_000
    assert event["observer"] == {"type": "sensor", "hostname": "s1"}
    assert event["socd"] == {"asset_kind": "network", "layer": 2}
    assert len(table) == 0


def test_rst_closes_and_a_new_syn_starts_a_new_flow() -> None:
    table = FlowTable(close_grace=5.0)
    feed(table, [(T0, tcp(CLIENT, 40001, SERVER, 22, "S")),
                 (T0 + 0.1, tcp(SERVER, 22, CLIENT, 40001, "RA"))])
    assert table.take() == []
    # Port reuse: the new SYN finishes the closed flow at once.
    feed(table, [(T0 + 1, tcp(CLIENT, 40001, SERVER, 22, "S"))])
    [first] = table.take()
    assert first["event"]["action"] == "tcp_close"
    assert first["network"]["tcp_flags"] == ["SYN", "ACK", "RST"]
    assert (first["source"]["packets"], first["destination"]["packets"]) == (1, 1)
    table.flush_all()
    [second] = table.take()
    assert second["event"]["action"] == "shutdown"
    assert second["source"]["packets"] == 1
    assert second["destination"]["packets"] == 0


def _states(packets: list[tuple[float, Any]]) -> list[tuple[str, str]]:
    table = FlowTable()
    feed(table, packets)
    table.flush_all()
    return [(e["network"]["connection_state"], e["event"]["outcome"])
            for e in flows_of(table.take())]


def _state_of(packets: list[tuple[float, Any]]) -> tuple[str, str]:
    [state] = _states(packets)
    return state


def _attempt(*answer: tuple[str, int, int]) -> list[tuple[float, Any]]:
    """A SYN from CLIENT:41000 (ISN 100) to SERVER:4444 and SERVER's answers."""
    out = [(T0, tcp(CLIENT, 41000, SERVER, 4444, "S", seq=100))]
    out += [(T0 + 0.01 * (i + 1), tcp(SERVER, 4444, CLIENT, 41000, flags, seq=seq, ack=ack))
            for i, (flags, seq, ack) in enumerate(answer)]
    return out


def test_connection_state_tells_sessions_from_attempts() -> None:
    assert _state_of(handshake()) == ("established", "success")
    # Refused: the union of the flags (SYN, ACK, RST) looks like a handshake; it is not.
    assert _state_of(_attempt(("RA", 0, 101))) == ("rejected", "failure")
    assert _state_of(_attempt()) == ("no_reply", "failure")
    # A SYN scan's open port: SYN-ACK, then the scanner's RST instead of the ACK.
    scan = [*_attempt(("SA", 9000, 101)),
            (T0 + 0.05, tcp(CLIENT, 41000, SERVER, 4444, "R", seq=101))]
    assert _state_of(scan) == ("half_open", "failure")
    # The handshake completed, then the client reset (nmap connect scan): a session existed.
    connect = [*_attempt(("SA", 9000, 101)),
               (T0 + 0.05, tcp(CLIENT, 41000, SERVER, 4444, "A", seq=101, ack=9001)),
               (T0 + 0.06, tcp(CLIENT, 41000, SERVER, 4444, "RA", seq=101, ack=9001))]
    assert _state_of(connect) == ("established", "success")
    udp_q = IP(src=CLIENT, dst=SERVER) / UDP(sport=5000, dport=161) / Raw(b"q")
    udp_r = IP(src=SERVER, dst=CLIENT) / UDP(sport=161, dport=5000) / Raw(b"r")
    assert _state_of([(T0, udp_q)]) == ("no_reply", "failure")
    assert _state_of([(T0, udp_q), (T0 + 0.1, udp_r)]) == ("established", "success")


def test_forged_packets_make_no_session() -> None:
    # A SYN-ACK that does not acknowledge the SYN, an ACK that does not acknowledge the
    # SYN-ACK: numbers a blind forger guesses wrong.
    bad_synack = _attempt(("SA", 9000, 555))
    assert _state_of(bad_synack)[0] == "no_reply"
    bad_ack = [*_attempt(("SA", 9000, 101)),
               (T0 + 0.05, tcp(CLIENT, 41000, SERVER, 4444, "A", seq=101, ack=1234))]
    assert _state_of(bad_ack)[0] == "half_open"
    # One-way packets with any flags, from one side only, never become a session.
    for flags in ("SAPFU", "A", "PA", "FPU", "SA", "SR", "SAR", ""):
        one_way = [(T0 + i, tcp(CLIENT, 42000, SERVER, 4444, flags, b"x", seq=7, ack=8))
                   for i in range(3)]
        for state, outcome in _states(one_way):  # a RST ends a flow: maybe several
            assert state in {"no_reply", "half_open", "rejected"}, (flags, state)
            assert outcome == "failure"
    # Forged ACKs answered only by the target's RSTs (an ACK scan): rejected.
    ack_scan = [(T0, tcp(CLIENT, 42001, SERVER, 4444, "A", seq=7, ack=8)),
                (T0 + 0.01, tcp(SERVER, 4444, CLIENT, 42001, "R", seq=8))]
    assert _state_of(ack_scan)[0] == "rejected"


def test_a_running_session_is_midstream_and_the_state_outlives_records() -> None:
    # Seen without its handshake (sensor started late, idle timeout, dropped SYN-ACK).
    talk = [(T0, tcp(CLIENT, 43000, SERVER, 4444, "PA", b"id\n", seq=50, ack=70)),
            (T0 + 0.1, tcp(SERVER, 4444, CLIENT, 43000, "PA", b"uid=0\n", seq=70, ack=53))]
    assert _state_of(talk) == ("midstream", "success")
    # A long session's later records keep the state proven by its first packets.
    table = FlowTable(idle_timeout=300.0, active_timeout=60.0)
    feed(table, handshake()[:5])  # open, request, response; no FIN
    for i in range(1, 4):
        table.add(frame(tcp(CLIENT, 40000, SERVER, 80, "PA", b"k", seq=2000 + i, ack=6000),
                        T0 + 50 * i))
        table.sweep()
    table.flush_all()
    records = flows_of(table.take())
    assert len(records) >= 2
    assert {r["network"]["connection_state"] for r in records} == {"established"}


def test_registered_domain_groups_names_under_the_domain_that_was_bought() -> None:
    assert registered_domain("a.b.example.gov.vn") == "example.gov.vn"
    assert registered_domain("dichvucong.gov.vn") == "dichvucong.gov.vn"
    assert registered_domain("x9fa0.pirate.sea") == "pirate.sea"
    assert registered_domain("www.bbc.co.uk") == "bbc.co.uk"
    assert registered_domain("www.google.com.") == "google.com"
    for name in ("gov.vn", "com", "", "a..b", "4.3.2.1.in-addr.arpa"):
        assert registered_domain(name) is None, name


def test_syn_ack_seen_first_makes_its_receiver_the_initiator() -> None:
    table = FlowTable()
    feed(table, [(T0, tcp(SERVER, 443, CLIENT, 50000, "SA")),
                 (T0 + 0.01, tcp(CLIENT, 50000, SERVER, 443, "A"))])
    table.flush_all()
    [event] = table.take()
    assert event["source"]["ip"] == CLIENT
    assert event["destination"]["port"] == 443
    assert (event["source"]["packets"], event["destination"]["packets"]) == (1, 1)
    assert event["network"]["protocol"] == "tls"


def test_idle_timeout_with_an_injected_clock() -> None:
    table = FlowTable(idle_timeout=30.0)
    udp = IP(src=CLIENT, dst=SERVER) / UDP(sport=5000, dport=514) / Raw(b"x" * 10)
    feed(table, [(T0, udp), (T0 + 5, udp)])
    table.sweep(T0 + 34.9)
    assert table.take() == []
    table.sweep(T0 + 35.0)
    [event] = table.take()
    assert event["event"]["action"] == "idle_timeout"
    assert event["source"]["packets"] == 2
    assert event["network"]["bytes"] == 2 * ip_len(udp)
    assert event["event"]["duration"] == 5_000_000_000
    assert len(table) == 0


def test_active_timeout_splits_long_flows_into_intervals() -> None:
    table = FlowTable(idle_timeout=30.0, active_timeout=60.0)
    pkt = IP(src=CLIENT, dst=SERVER) / UDP(sport=6000, dport=1883) / Raw(b"m" * 50)
    for i in range(31):  # one packet every 5 s for 150 s
        table.add(frame(pkt, T0 + 5 * i))
        table.sweep()
    events = table.take()
    assert [e["event"]["action"] for e in events] == ["active_timeout", "active_timeout"]
    assert [e["source"]["packets"] for e in events] == [12, 12]
    assert events[0]["event"]["start"] == "2025-11-16T00:00:00.000000Z"
    assert events[1]["event"]["start"] == "2025-11-16T00:01:00.000000Z"
    table.sweep(T0 + 150 + 30)
    [last] = table.take()
    assert last["event"]["action"] == "idle_timeout"
    assert sum(e["source"]["packets"] for e in [*events, last]) == 31
    # A quiet long flow is reported by the periodic scan even without new packets.
    slow = FlowTable(idle_timeout=300.0, active_timeout=60.0)
    slow.add(frame(pkt, T0))
    slow.sweep(T0 + 61)
    [report] = slow.take()
    assert report["event"]["action"] == "active_timeout"
    assert len(slow) == 1


def test_dns_transactions_become_their_own_events() -> None:
    table = FlowTable()
    q = IP(src=CLIENT, dst=SERVER) / UDP(sport=33333, dport=53) / DNS(
        id=0x1234, rd=1, qd=DNSQR(qname="www.example.vn", qtype="A"))
    r = IP(src=SERVER, dst=CLIENT) / UDP(sport=53, dport=33333) / DNS(
        id=0x1234, qr=1, rd=1, ra=1, qd=DNSQR(qname="www.example.vn", qtype="A"),
        an=[DNSRR(rrname="www.example.vn", type="CNAME", rdata="edge.example.vn", ttl=60),
            DNSRR(rrname="edge.example.vn", type="A", rdata="203.0.113.5", ttl=30)])
    lost = IP(src=CLIENT, dst=SERVER) / UDP(sport=33333, dport=53) / DNS(
        id=7, qd=DNSQR(qname="nx.example.vn", qtype="AAAA"))
    feed(table, [(T0, q), (T0 + 0.02, r), (T0 + 1, lost)])
    [answer] = table.take()
    assert answer["event"]["dataset"] == "socd.sensor.dns"
    assert answer["source"] == {"ip": CLIENT, "port": 33333}
    assert answer["destination"] == {"ip": SERVER, "port": 53}
    assert answer["dns"] == {
        "id": str(0x1234), "type": "answer",
        "question": {"name": "www.example.vn", "type": "A", "registered_domain": "example.vn"},
        "response_code": "NOERROR",
        "answers": [
            {"name": "www.example.vn", "type": "CNAME", "ttl": 60, "data": "edge.example.vn"},
            {"name": "edge.example.vn", "type": "A", "ttl": 30, "data": "203.0.113.5"}],
        "resolved_ip": ["203.0.113.5"]}
    assert answer["event"]["duration"] == 20_000_000
    assert answer["event"]["outcome"] == "success"
    table.flush_all()
    events = table.take()
    [unanswered] = flows_of(events, "socd.sensor.dns")
    assert unanswered["dns"]["type"] == "query"
    assert unanswered["dns"]["question"] == {"name": "nx.example.vn", "type": "AAAA",
                                             "registered_domain": "example.vn"}
    [flow] = flows_of(events)
    assert flow["network"]["protocol"] == "dns"
    assert (flow["source"]["packets"], flow["destination"]["packets"]) == (2, 1)


def test_parse_dns_rejects_garbage() -> None:
    assert parse_dns(b"\x00\x01") is None
    # A name pointer loop is malformed, not an endless loop.
    looped = struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 0) + b"\xc0\x0c"
    assert parse_dns(looped) is None


def test_max_flows_bounds_memory_under_a_flood(uid: str) -> None:
    """One million packets with random tuples: the table never exceeds max_flows."""
    evicted: list[int] = []
    table = FlowTable(max_flows=5_000, on_evict=evicted.append)
    rng = random.Random(7)
    dst = socket.inet_aton(SERVER)
    total = 1_000_000
    emitted_packets = 0
    bound = 0
    for i in range(total):
        table.add((T0 + i * 1e-6, 17, rng.getrandbits(32).to_bytes(4, "big"),
                   rng.getrandbits(16), dst, 53, 60, 0, None))
        if i % 4096 == 0:
            bound = max(bound, len(table))
            emitted_packets += sum(e["network"]["packets"] for e in table.take())
    bound = max(bound, len(table))
    assert bound <= 5_000
    assert len(table) == 5_000
    assert table.evicted == len(evicted) == total - 5_000
    table.flush_all()
    emitted_packets += sum(e["network"]["packets"] for e in table.take())
    assert emitted_packets == total


def test_evictions_are_counted_in_the_collector_metric(tmp_path: Path, uid: str) -> None:
    collector = _collector(tmp_path, uid, pcap_files=["none.pcap"], max_flows=2)
    table = collector.new_table()
    for port in range(10):
        table.add(frame(IP(src=CLIENT, dst=SERVER) / UDP(sport=port + 1, dport=9), T0))
    assert len(table) == 2
    assert sample_value("socd_sensor_flows_evicted_total", collector=uid) == 8


def test_ioc_alert_once_per_flow() -> None:
    refs = {"198.51.100.66": "941/CATTT-NCSC"}
    table = FlowTable(ioc_lookup=refs.get)
    bad = "198.51.100.66"
    flood = [(T0 + i * 0.001, IP(src=CLIENT, dst=bad) / UDP(sport=4444, dport=8443))
             for i in range(1000)]
    feed(table, flood)
    alerts = [e for e in table.take() if e["event"]["kind"] == "alert"]
    assert len(alerts) == 1
    [alert] = alerts
    assert alert["event"]["dataset"] == "socd.sensor.ioc"
    assert alert["rule"]["reference"] == "941/CATTT-NCSC"
    assert alert["rule"]["id"] == "socd-sensor-ioc-ip"
    assert alert["source"] == {"ip": CLIENT, "port": 4444}
    assert alert["destination"] == {"ip": bad, "port": 8443}
    assert alert["socd"]["ioc"] == {"matched": True, "values": [bad], "refs": ["941/CATTT-NCSC"]}
    assert alert["socd"]["severity"] == "high"
    # Another flow with the same address is another alert; the reverse direction is not.
    feed(table, [(T0 + 2, IP(src=bad, dst=CLIENT) / UDP(sport=8443, dport=4444)),
                 (T0 + 2, IP(src=CLIENT, dst=bad) / UDP(sport=4445, dport=8443))])
    assert len(table.take()) == 1


def test_events_decode_with_the_json_decoder(uid: str) -> None:
    table = FlowTable(ioc_lookup={SERVER: "ref-1"}.get)
    feed(table, handshake())
    table.flush_all()
    events = table.take()
    decoder = JsonDecoder(JsonDecoder.Config(type="json"),
                          PluginContext(name="json", dead_letter=None))
    for event in events:
        result = decoder.decode(RawRecord(orjson.dumps(event), "json", uid))
        assert not result.failures, result.failures
        [decoded] = result.events
        assert decoded["@timestamp"].startswith("2025-11-16T00:00:00")
        if decoded["event"]["kind"] == "event":
            # The session state survives the decoder (an ECS-side field, not socd.*).
            assert decoded["network"]["connection_state"] == "established"
    assert {e["event"]["kind"] for e in events} == {"event", "alert"}


# -- properties ---------------------------------------------------------------------------

_packet = st.tuples(
    st.floats(0, 500, allow_nan=False),
    st.sampled_from([6, 17, 1]),
    st.sampled_from([b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02", b"\x0a\x00\x00\x03"]),
    st.integers(0, 3),
    st.sampled_from([b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02"]),
    st.integers(0, 3),
    st.integers(20, 1500),
    st.integers(0, 0x3F),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(packets=st.lists(_packet, max_size=200), max_flows=st.integers(1, 8),
       sweeps=st.lists(st.floats(0, 700, allow_nan=False), max_size=5))
def test_totals_are_preserved(packets: list[tuple], max_flows: int,
                              sweeps: list[float]) -> None:
    table = FlowTable(idle_timeout=20, active_timeout=45, max_flows=max_flows,
                      close_grace=1, ioc_lookup={"10.0.0.3": "x"}.get)
    packets = sorted(packets)
    sweep_at = sorted(sweeps)
    events: list[dict[str, Any]] = []
    for ts, proto, src, sport, dst, dport, length, flags in packets:
        while sweep_at and sweep_at[0] <= ts:
            table.sweep(sweep_at.pop(0))
        extra = (8, 0) if proto == 1 else None
        table.add((ts, proto, src, sport, dst, dport, length, flags, extra))
        assert len(table) <= max_flows
        events.extend(table.take())
    table.flush_all()
    events.extend(table.take())
    flows = flows_of(events)
    assert sum(e["network"]["packets"] for e in flows) == len(packets)
    assert sum(e["network"]["bytes"] for e in flows) == sum(p[6] for p in packets)
    assert sum(e["source"]["bytes"] + e["destination"]["bytes"] for e in flows) == sum(
        p[6] for p in packets)
    for e in flows:
        assert e["event"]["duration"] >= 0
        orjson.dumps(e)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200), linktype=st.sampled_from([0, 1, 101, 113, 276, 999]))
def test_parse_frame_never_raises(data: bytes, linktype: int) -> None:
    parse_frame(data, linktype, 0.0)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300))
def test_parse_dns_never_raises(data: bytes) -> None:
    parse_dns(data)


# -- the collector: config, pcap replay ------------------------------------------------------


def _collector(tmp_path: Path, uid: str, **options: Any) -> SensorCollector:
    config = SensorCollector.Config.model_validate({"type": "sensor", **options})
    return SensorCollector(config, PluginContext(name=uid, dead_letter=None,
                                                 config_dir=str(tmp_path)))


class Sink:
    def __init__(self) -> None:
        self.records: list[RawRecord] = []
        self.batches: list[int] = []

    async def emit(self, records: list[RawRecord], ack: Any = None) -> None:
        self.records.extend(records)
        self.batches.append(len(records))

    @property
    def events(self) -> list[dict[str, Any]]:
        return [orjson.loads(r.data) for r in self.records]


def test_config_needs_exactly_one_source() -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        SensorCollector.Config.model_validate({"type": "sensor"})
    with pytest.raises(ValidationError, match="exactly one"):
        SensorCollector.Config.model_validate(
            {"type": "sensor", "interface": "eth1", "pcap_files": ["a.pcap"]})
    with pytest.raises(ValidationError):
        SensorCollector.Config.model_validate({"type": "sensor", "interface": "eth1",
                                               "max_flow": 5})


def test_bad_bpf_filter_is_a_clear_error() -> None:
    check_filter("tcp port 80 and not host 10.0.0.1")
    with pytest.raises(CaptureError, match="invalid bpf_filter 'tcp prot 80'"):
        check_filter("tcp prot 80")


def _conversation() -> list[Any]:
    pkts = []
    for ts, p in handshake():
        e = Ether() / p
        e.time = ts
        pkts.append(e)
    for i in range(3):
        u = Ether() / IP(src=CLIENT, dst="10.201.0.9") / UDP(sport=7000, dport=9999) / Raw(
            b"u" * (10 + i))
        u.time = T0 + 0.5 + i * 0.25
        pkts.append(u)
    icmp = Ether() / IP(src=CLIENT, dst=SERVER) / ICMP(type=8)
    icmp.time = T0 + 2
    pkts.append(icmp)
    return pkts


def _expected_udp() -> dict[str, Any]:
    sizes = [20 + 8 + 10 + i for i in range(3)]
    return {"ip": CLIENT, "port": 7000, "packets": 3, "bytes": sum(sizes)}


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
async def test_pcap_replay_gives_exact_flow_events(tmp_path: Path, uid: str, fmt: str) -> None:
    pkts = _conversation()
    path = tmp_path / f"capture.{fmt}"
    if fmt == "pcap":
        wrpcap(str(path), pkts)
    else:
        with PcapNgWriter(str(path)) as writer:
            for p in pkts:
                writer.write(p)
    collector = _collector(tmp_path, uid, pcap_files=["*." + fmt], batch_max_events=2)
    sink = Sink()
    await collector.run(sink.emit)
    assert collector.packets == 12
    assert max(sink.batches) <= 2
    events = sink.events
    flows = sorted(flows_of(events), key=lambda e: e["network"]["transport"])
    assert [e["network"]["transport"] for e in flows] == ["icmp", "tcp", "udp"]
    icmp, tcp_flow, udp = flows
    assert tcp_flow["event"]["action"] == "tcp_close"
    assert tcp_flow["source"]["packets"] == 5
    assert tcp_flow["destination"]["packets"] == 3
    assert tcp_flow["network"]["bytes"] == sum(ip_len(p[IP]) for p in pkts[:8])
    assert tcp_flow["event"]["start"] == "2025-11-16T00:00:00.000000Z"
    assert udp["source"] == _expected_udp()
    assert udp["destination"] == {"ip": "10.201.0.9", "port": 9999, "packets": 0, "bytes": 0}
    assert udp["event"]["action"] == "end_of_capture"
    assert udp["event"]["start"] == "2025-11-16T00:00:00.500000Z"
    assert udp["event"]["duration"] == 500_000_000
    assert "port" not in icmp["source"]
    assert icmp["network"]["community_id"] == community_id(
        1, socket.inet_aton(CLIENT), 0, socket.inet_aton(SERVER), 0, (8, 0))
    assert sample_value("socd_events_received_total", collector=uid) == len(events)
    assert collector.ready


async def test_pcap_replay_applies_the_bpf_filter(tmp_path: Path, uid: str) -> None:
    wrpcap(str(tmp_path / "a.pcap"), _conversation())
    collector = _collector(tmp_path, uid, pcap_files=["a.pcap"], bpf_filter="udp")
    sink = Sink()
    await collector.run(sink.emit)
    [udp] = sink.events
    assert udp["source"] == _expected_udp()
    bad = _collector(tmp_path, uid + "b", pcap_files=["a.pcap"], bpf_filter="udp prot 1")
    with pytest.raises(CaptureError, match="invalid bpf_filter"):
        await bad.run(Sink().emit)


@pytest.mark.parametrize("opted_in", [False, True])
async def test_sensor_records_are_unauthenticated_for_blocking(tmp_path: Path, uid: str,
                                                              opted_in: bool) -> None:
    """Packets and their source addresses can be spoofed: what the sensor emits is
    marked unauthenticated, so the blocker refuses the blocks it causes unless the
    operator opted in (docs/blocking.md)."""
    wrpcap(str(tmp_path / "a.pcap"), _conversation())
    collector = _collector(tmp_path, uid, pcap_files=["a.pcap"],
                           allow_unauthenticated_blocking=opted_in)
    assert collector.config.unauthenticated_inputs() == ["pcap files a.pcap"]
    assert collector.config.allows_unauthenticated_blocking() is opted_in
    sink = Sink()
    await collector.run(sink.emit)
    assert sink.records
    assert {(r.authenticated, r.blocking_allowed) for r in sink.records} == {(False, opted_in)}
    decoder = JsonDecoder(JsonDecoder.Config(type="json"),
                          PluginContext(name="json", dead_letter=None))
    [decoded] = decoder.decode(sink.records[0]).events
    assert decoded["socd"]["transport"] == {
        "authenticated": False, "blocking": "allowed" if opted_in else "refused"}
    live = SensorCollector.Config(type="sensor", interface="ens224")
    assert live.unauthenticated_inputs() == ["sensor interface ens224"]


async def test_ioc_files_are_loaded_and_the_hook_can_be_replaced(tmp_path: Path,
                                                                 uid: str) -> None:
    (tmp_path / "ioc.txt").write_text("# công văn: 941/CATTT-NCSC\n10.201.0.9\n",
                                      encoding="utf-8")
    wrpcap(str(tmp_path / "a.pcap"), _conversation())
    collector = _collector(tmp_path, uid, pcap_files=["a.pcap"], ioc_files=["ioc.txt"])
    assert collector.ioc_lookup is not None
    assert collector.ioc_lookup("10.201.0.9") == "941/CATTT-NCSC"
    sink = Sink()
    await collector.run(sink.emit)
    alerts = [e for e in sink.events if e["event"]["kind"] == "alert"]
    assert [a["destination"]["ip"] for a in alerts] == ["10.201.0.9"]
    assert alerts[0]["rule"]["reference"] == "941/CATTT-NCSC"
    # The daemon shares its own IoC store through the hook.
    other = _collector(tmp_path, uid + "x", pcap_files=["a.pcap"])
    other.ioc_lookup = {SERVER: "shared-store"}.get
    sink = Sink()
    await other.run(sink.emit)
    alerts = [e for e in sink.events if e["event"]["kind"] == "alert"]
    assert len(alerts) == 2  # the TCP flow and the ICMP flow both talk to SERVER
    assert {a["rule"]["reference"] for a in alerts} == {"shared-store"}


# -- the live path with a fake capture socket -------------------------------------------------


class FakeRaw:
    """Stands in for the AF_PACKET socket: frames written to a socketpair."""

    def __init__(self) -> None:
        self.reader, self.writer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)

    def fileno(self) -> int:
        return self.reader.fileno()

    def recvfrom(self, size: int) -> tuple[bytes, tuple]:
        return self.reader.recv(size), ("veth0", 0x0800, 0, 1, b"")

    def send(self, pkt: Any) -> None:
        self.writer.send(bytes(Ether() / pkt))

    def close(self) -> None:
        self.reader.close()
        self.writer.close()


class FakeSocket:
    def __init__(self) -> None:
        self.ins = FakeRaw()

    def close(self) -> None:
        self.ins.close()


async def _wait(predicate: Any, within: float = 10) -> None:
    async with asyncio.timeout(within):
        while not predicate():
            await asyncio.sleep(0.02)


async def test_live_capture_flushes_everything_when_cancelled(tmp_path: Path, uid: str,
                                                              monkeypatch) -> None:
    fake = FakeSocket()
    collector = _collector(tmp_path, uid, interface="veth0")
    monkeypatch.setattr(collector, "open_socket", lambda: fake)
    sink = Sink()
    task = asyncio.create_task(collector.run(sink.emit))
    await _wait(lambda: collector.ready)
    for _ts, pkt in handshake():
        fake.ins.send(pkt)
    fake.ins.send(IP(src=CLIENT, dst=SERVER) / UDP(sport=1, dport=2) / Raw(b"z"))
    await _wait(lambda: collector.packets == 9)
    assert sink.records == []
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    flows = flows_of(sink.events)
    assert sorted(e["network"]["packets"] for e in flows) == [1, 8]
    assert {e["event"]["action"] for e in flows} == {"tcp_close", "shutdown"}
    assert not collector.ready


async def test_live_capture_overflow_is_counted(tmp_path: Path, uid: str, monkeypatch) -> None:
    fake = FakeSocket()
    collector = _collector(tmp_path, uid, interface="veth0", capture_queue_packets=512)
    collector.ioc_lookup = lambda ip: "ref"  # every new flow alerts at once
    monkeypatch.setattr(collector, "open_socket", lambda: fake)
    blocked = asyncio.Event()

    async def stuck_emit(records: list[RawRecord], ack: Any = None) -> None:
        blocked.set()
        await asyncio.Event().wait()  # the pipeline never takes anything

    before = sample_value("socd_events_dropped_total", stage="collect",
                          reason="capture_overflow")
    task = asyncio.create_task(collector.run(stuck_emit))
    await _wait(lambda: collector.ready)
    pkt = IP(src=CLIENT, dst=SERVER) / UDP(sport=1, dport=2)
    for _ in range(3000):
        fake.ins.send(pkt)
    await _wait(blocked.is_set)
    await _wait(lambda: collector.dropped > 0)
    after = sample_value("socd_events_dropped_total", stage="collect",
                         reason="capture_overflow")
    assert after - before == collector.dropped
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, TimeoutError):
        async with asyncio.timeout(1):
            await task
