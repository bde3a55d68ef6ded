"""The IoC store: matching against ipaddress (property tests), persistence, reload, expiry."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from socd.config import ClassificationConfig
from socd.engine.classify import Classifier
from socd.event import Event
from socd.ioc.normalize import normalize
from socd.ioc.store import Entry, IocDatabase, IocStore, build_index

from .conftest import sample_value


def _v4_net() -> st.SearchStrategy[ipaddress.IPv4Network]:
    return st.builds(lambda a, p: ipaddress.ip_network((a, p), strict=False),
                     st.integers(0, 2**32 - 1), st.integers(8, 32))


def _v6_net() -> st.SearchStrategy[ipaddress.IPv6Network]:
    return st.builds(lambda a, p: ipaddress.ip_network((a, p), strict=False),
                     st.integers(0, 2**128 - 1), st.integers(16, 128))


def _static(nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> list[Entry]:
    return [Entry("ip", normalize(str(n), "ip")[1], "prop", f"r{i}") for i, n in enumerate(nets)]


def _near(nets: list, extra: list[int], bits: int) -> list[int]:
    """Addresses at and around the networks' edges, plus random ones."""
    out = list(extra)
    for n in nets:
        for x in (int(n.network_address), int(n.broadcast_address)):
            out += [x, max(0, x - 1), min(2**bits - 1, x + 1)]
    return out


@settings(max_examples=150, deadline=None)
@given(st.lists(_v4_net(), max_size=25), st.lists(st.integers(0, 2**32 - 1), max_size=30))
def test_ipv4_matching_equals_ipaddress(nets: list, addrs: list[int]) -> None:
    store = IocStore(None, static=_static(nets))
    queries = _near(nets, addrs, 32)
    for x in queries:
        addr = ipaddress.IPv4Address(x)
        expected = any(addr in n for n in nets)
        assert store.lookup("ip", str(addr)) is expected, (addr, nets)
        assert (store.match_ip(str(addr)) is not None) is expected
    assert store.lookup_many_ipv4(queries) == [
        any(ipaddress.IPv4Address(x) in n for n in nets) for x in queries]


@settings(max_examples=100, deadline=None)
@given(st.lists(_v6_net(), max_size=20), st.lists(st.integers(0, 2**128 - 1), max_size=20))
def test_ipv6_matching_equals_ipaddress(nets: list, addrs: list[int]) -> None:
    store = IocStore(None, static=_static(nets))
    for x in _near(nets, addrs, 128):
        addr = ipaddress.IPv6Address(x)
        expected = any(addr in n for n in nets)
        if addr.ipv4_mapped is not None:
            continue  # looked up as IPv4
        assert store.lookup("ip", str(addr)) is expected, (addr, nets)


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_v4_net(), min_size=1, max_size=15), st.lists(st.integers(0, 2**32 - 1),
                                                                max_size=20))
def test_database_index_equals_ipaddress(tmp_path: Path, nets: list, addrs: list[int]) -> None:
    path = tmp_path / "ioc.db"
    path.unlink(missing_ok=True)
    store = IocStore(str(path))
    store.import_entries(_static(nets))
    for x in _near(nets, addrs, 32):
        addr = ipaddress.IPv4Address(x)
        assert store.lookup("ip", str(addr)) is any(addr in n for n in nets)
    store.close()


def test_best_entry_highest_confidence_then_newest(tmp_path: Path) -> None:
    store = IocStore(str(tmp_path / "ioc.db"))
    store.import_entries([Entry("ip", "10.0.0.0/8", "feed-a", "A", 40),
                          Entry("ip", "10.1.2.3", "feed-b", "B", 90),
                          Entry("ip", "10.1.2.3", "feed-c", "C", 60)])
    assert store.match_ip("10.1.2.3") == "B"
    assert store.match_ip("10.9.9.9") == "A"
    store.db.upsert([Entry("ip", "10.1.2.3", "feed-d", "D", 90)], now=2**40)  # newer, same conf
    store.reload()
    assert store.match_ip("10.1.2.3") == "D"
    found = store.entries_for("ip", "10.1.2.3")
    assert [e.source for e in found][:2] == ["feed-d", "feed-b"]
    assert {e.source for e in found} == {"feed-a", "feed-b", "feed-c", "feed-d"}


def test_domains_hashes_and_wildcards() -> None:
    store = IocStore(None, static=[
        Entry("domain", "evil.example", "s", "R1"), Entry("domain", "*.wild.example", "s", "R2"),
        Entry("domain", normalize("Bộcôngan-giả.example", "domain")[1], "s", "R3"),
        Entry("hash", "44d88612fea8a8f36de82e1278abb02f", "s", "R4")])
    assert store.match_ref("domain", "EVIL.example.") == "R1"
    assert not store.lookup("domain", "www.evil.example")  # exact unless *.
    assert store.match_ref("domain", "a.b.wild.example") == "R2"
    assert not store.lookup("domain", "wild.example")
    assert store.match_ref("domain", "bộcôngan-giả.example") == "R3"
    assert store.match_ref("hash", "44D88612FEA8A8F36DE82E1278ABB02F") == "R4"
    assert not store.lookup("hash", "0" * 32)


def test_persistence_round_trip_and_upsert(tmp_path: Path) -> None:
    path = str(tmp_path / "ioc.db")
    store = IocStore(path)
    entries = [Entry("ip", "203.0.113.9", "ncsc", "1298/CATTT-NCSC", 80, first_seen=1000,
                     last_seen=2000, tags=("c2",)),
               Entry("ip", "2001:db8:bad::/48", "ncsc", "1298/CATTT-NCSC", 80),
               Entry("domain", "*.wild.example", "ncsc", "1298/CATTT-NCSC"),
               Entry("hash", "d41d8cd98f00b204e9800998ecf8427e", "ncsc", "941/CATTT-NCSC")]
    result = store.import_entries(entries)
    assert (result.inserted, result.updated) == (4, 0)
    again = store.import_entries([Entry("ip", "203.0.113.9", "ncsc", "1298/CATTT-NCSC", 80,
                                        first_seen=500, last_seen=1500)])
    assert (again.inserted, again.updated) == (0, 1)
    store.close()

    reopened = IocStore(path, create=False)
    assert len(reopened) == 4
    (e,) = reopened.entries_for("ip", "203.0.113.9")
    assert (e.first_seen, e.last_seen, e.tags, e.ref, e.confidence) == (
        500, 2000, (), "1298/CATTT-NCSC", 80)
    assert reopened.match_ip("2001:db8:bad:1::5") == "1298/CATTT-NCSC"
    assert reopened.lookup("domain", "x.wild.example")
    assert reopened.lookup("hash", "d41d8cd98f00b204e9800998ecf8427e")
    assert [x.value for x in reopened.entries_for("ip", "2001:db8:bad::1")] == [
        "2001:db8:bad::/48"]


def test_reload_swaps_a_new_index(tmp_path: Path) -> None:
    path = str(tmp_path / "ioc.db")
    daemon = IocStore(path, refresh_secs=0)
    old = daemon.index
    assert not daemon.lookup("ip", "198.51.100.1")
    other = IocDatabase(path)  # another process: `socd ioc import`
    other.upsert([Entry("ip", "198.51.100.0/24", "cli", "X")])
    assert daemon.maybe_refresh(background=True)
    daemon.wait_reload(10)
    assert daemon.index is not old
    assert old.counts()["ip"] == 0  # the old snapshot never changes
    assert daemon.match_ip("198.51.100.1") == "X"
    assert not daemon.maybe_refresh()  # nothing changed since
    other.close()
    daemon.close()


def test_daemon_store_opens_database_created_later(tmp_path: Path) -> None:
    path = tmp_path / "ioc.db"
    daemon = IocStore(str(path), create=False, refresh_secs=0)
    assert daemon.db is None
    assert not path.exists()
    IocDatabase(str(path)).upsert([Entry("ip", "192.0.2.1", "cli", "Y")])
    daemon.maybe_refresh(background=False)
    assert daemon.match_ip("192.0.2.1") == "Y"


def test_expired_entries_never_match(tmp_path: Path) -> None:
    now = [1_000_000.0]
    store = IocStore(str(tmp_path / "ioc.db"), clock=lambda: now[0], refresh_secs=3600)
    store.import_entries([Entry("ip", "192.0.2.0/24", "s", "soon", 50, expires=1_000_100),
                          Entry("ip", "192.0.2.7", "s", "later", 10, expires=1_000_500),
                          Entry("domain", "gone.example", "s", "d", expires=1_000_100)])
    assert store.match_ip("192.0.2.7") == "soon"  # higher confidence
    now[0] = 1_000_200.0  # past the first expiry, before any reload
    assert store.match_ip("192.0.2.7") == "later"
    assert not store.lookup("ip", "192.0.2.8")
    assert store.lookup_many_ipv4([0xC0000207, 0xC0000208]) == [True, False]
    assert not store.lookup("domain", "gone.example")
    now[0] = 1_000_600.0
    assert not store.lookup("ip", "192.0.2.7")
    assert store.expire() == 3
    assert store.db is not None
    assert store.db.count() == 0
    assert store.db.query("SELECT count(*) FROM attrs")[0][0] == 0


def test_min_confidence_and_gauge(tmp_path: Path) -> None:
    path = str(tmp_path / "ioc.db")
    IocStore(path).import_entries([Entry("ip", "192.0.2.1", "s", "lo", 20),
                                   Entry("ip", "192.0.2.2", "s", "hi", 80),
                                   Entry("hash", "a" * 64, "s", "h", 80)])
    store = IocStore(path, min_confidence=50)
    assert not store.lookup("ip", "192.0.2.1")
    assert store.lookup("ip", "192.0.2.2")
    assert sample_value("socd_ioc_entries", kind="ip") == 1
    assert sample_value("socd_ioc_entries", kind="hash") == 1
    assert build_index(path).counts() == {"ip": 2, "domain": 0, "hash": 1}


def test_lookup_many_with_inet_aton(tmp_path: Path) -> None:
    store = IocStore(None, static=_static([ipaddress.ip_network("0.0.0.0/30"),
                                           ipaddress.ip_network("255.255.255.255/32")]))
    ips = ["0.0.0.0", "0.0.0.3", "0.0.0.4", "255.255.255.255", "255.255.255.254"]
    ints = [int.from_bytes(socket.inet_aton(ip), "big") for ip in ips]
    assert store.lookup_many_ipv4(ints) == [True, True, False, True, False]
    assert store.lookup("ip", "::ffff:0.0.0.1")
    assert not store.lookup("ip", "not an address")


def _event(**fields: object) -> Event:
    base: dict = {"@timestamp": "2026-11-10T00:00:00Z", "event": {"kind": "event"},
                  "socd": {}}
    base.update(fields)
    return orjson.loads(orjson.dumps(base))


def test_classifier_uses_the_database(tmp_path: Path) -> None:
    path = tmp_path / "ioc.db"
    ioc_file = tmp_path / "list.txt"
    ioc_file.write_text("# ref: 941/CATTT-NCSC\n192.0.2.44\n", encoding="utf-8")
    classifier = Classifier.from_files(ClassificationConfig(), [str(ioc_file)],
                                       db_path=str(path), refresh_secs=0)
    IocStore(str(path)).import_entries([
        Entry("ip", "203.0.113.0/24", "ncsc", "1298/CATTT-NCSC", 90),
        Entry("domain", "c2.bad.example", "ncsc", "1298/CATTT-NCSC")])
    classifier.process([])  # the daemon looks for imports once per batch
    classifier.iocs.wait_reload(10)
    events = classifier.process([
        _event(source={"ip": "203.0.113.5"}, destination={"ip": "192.0.2.44"}),
        _event(dns={"question": {"name": "C2.bad.example."}}),
        _event(source={"ip": "198.51.100.1"})])
    assert events[0]["socd"]["ioc"] == {"matched": True,
                                        "values": ["203.0.113.5", "192.0.2.44"],
                                        "refs": ["1298/CATTT-NCSC", "941/CATTT-NCSC"]}
    assert events[0]["rule"]["id"] == "socd-ioc-match"
    assert events[1]["socd"]["ioc"]["refs"] == ["1298/CATTT-NCSC"]
    assert "ioc" not in events[2]["socd"]
    assert classifier.iocs.match_ip("203.0.113.200") == "1298/CATTT-NCSC"
    assert classifier.iocs.index.has_ips
