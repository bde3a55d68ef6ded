"""The event model: the FIELDS contract, dotted-path helpers and normalization."""

from __future__ import annotations

import unicodedata

import pytest

from socd import event as ev
from socd.decoders.json import JsonDecoder
from socd.errors import DecodeError
from socd.plugins import PluginContext, RawRecord
from socd.severity import Severity

REQUIRED_FIELDS = [
    "@timestamp", "message", "tags",
    "socd.severity", "socd.severity_label", "socd.vendor_severity", "socd.layer",
    "socd.asset_kind", "socd.unit", "socd.system_level", "socd.collector", "socd.decoder",
    "socd.source", "socd.vendor", "socd.ioc.matched", "socd.ioc.values", "socd.ioc.refs",
    "event.id", "event.kind", "event.category", "event.type", "event.action", "event.outcome",
    "event.module", "event.dataset", "event.severity", "event.created", "event.ingested",
    "event.hash", "event.original",
    "host.name", "host.ip", "host.id", "host.os.full",
    "source.ip", "source.port", "destination.ip", "destination.port",
    "rule.id", "rule.name", "rule.category", "rule.description",
    "observer.type", "observer.vendor", "observer.product",
]


@pytest.mark.parametrize("name", REQUIRED_FIELDS)
def test_fields_registry_has(name: str) -> None:
    assert name in ev.FIELDS_BY_NAME
    assert ev.FIELDS_BY_NAME[name].doc.strip()


def test_fields_registry_is_consistent() -> None:
    names = [f.name for f in ev.FIELDS]
    assert len(names) == len(set(names)), "duplicate field"
    allowed = {"date", "text", "keyword", "long", "byte", "ip", "boolean",
               "flattened", "geo_point", "double", "float", "integer", "short"}
    for field in ev.FIELDS:
        assert field.type in allowed, field
    # No field is both a leaf and an object (the index template could not map it).
    for name in names:
        for other in names:
            assert not other.startswith(name + "."), (name, other)


def test_field_types_that_matter() -> None:
    types = {f.name: f.type for f in ev.FIELDS}
    assert types["@timestamp"] == "date"
    assert types["source.ip"] == types["destination.ip"] == types["host.ip"] == "ip"
    assert types["socd.layer"] == types["socd.system_level"] == "byte"
    assert types["socd.severity"] == "keyword"
    assert ev.FIELDS_BY_NAME["host.ip"].array


def test_get_put_pop() -> None:
    e: ev.Event = {}
    ev.put(e, "source.geo.name", "HN")
    ev.put(e, "source.ip", "10.0.0.1")
    assert e == {"source": {"geo": {"name": "HN"}, "ip": "10.0.0.1"}}
    assert ev.get(e, "source.ip") == "10.0.0.1"
    assert ev.get(e, "source.port", 0) == 0
    assert ev.get(e, "source.ip.x") is None
    assert ev.pop(e, "source.geo.name") == "HN"
    assert ev.pop(e, "nope.x") is None
    ev.put(e, "source.ip.v", 1)  # a scalar in the way is replaced
    assert e["source"]["ip"] == {"v": 1}


def test_unflatten_mixes_dotted_and_nested() -> None:
    obj = {"@timestamp": "x", "source.ip": "1.2.3.4", "source": {"port": 5},
           "event": {"kind": "alert"}, "event.module": "m", "a.b.c": 1}
    assert ev.unflatten(obj) == {
        "@timestamp": "x", "source": {"ip": "1.2.3.4", "port": 5},
        "event": {"kind": "alert", "module": "m"}, "a": {"b": {"c": 1}}}


def test_iter_leaf_paths() -> None:
    e = {"a": {"b": 1, "c": {"d": [1, 2]}}, "e": "x"}
    assert dict(ev.iter_leaf_paths(e)) == {"a.b": 1, "a.c.d": [1, 2], "e": "x"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1794788564, "2026-11-16T00:22:44Z"),
        (1794788564.5, "2026-11-16T00:22:44.500000Z"),
        (1794788564000, "2026-11-16T00:22:44Z"),  # epoch milliseconds
        ("2026-11-16T00:11:43+07:00", "2026-11-16T00:11:43+07:00"),
        ("2026-11-16T00:11:43Z", "2026-11-16T00:11:43+00:00"),
        ("2026-11-16T00:11:43.123Z", "2026-11-16T00:11:43.123000+00:00"),
        (" 2026-11-16 00:11:43 ", "2026-11-16T00:11:43+00:00"),  # no offset: UTC
        ("2026-11-16", "2026-11-16T00:00:00+00:00"),
    ],
)
def test_parse_timestamp(value: object, expected: str) -> None:
    assert ev.parse_timestamp(value) == expected


@pytest.mark.parametrize(
    "value", ["yesterday", "", "16/11/2026 00:11", True, False, [1], {"a": 1},
              float("nan"), float("inf"), 10**20],
)
def test_parse_timestamp_invalid(value: object) -> None:
    with pytest.raises(DecodeError) as info:
        ev.parse_timestamp(value)
    assert info.value.reason == "invalid_field"
    assert "@timestamp" in str(info.value)


def test_normalize_fills_missing_timestamp() -> None:
    e = ev.normalize({"message": "x"})
    assert e["@timestamp"].endswith("Z")
    assert ev.parse_timestamp(e["@timestamp"])


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [("source.port", "443", 443), ("destination.port", 80.0, 80), ("process.pid", " 42 ", 42),
     ("event.severity", "-1", -1), ("socd.layer", "3", 3), ("source.bytes", 10, 10)],
)
def test_normalize_coerces_integers(path: str, value: object, expected: int) -> None:
    e: ev.Event = {}
    ev.put(e, path, value)
    ev.normalize(e)
    got = ev.get(e, path)
    assert got == expected
    assert type(got) is int


@pytest.mark.parametrize("value", ["http", "4.5", 4.5, "", "1e3", True, [1], "--5", "²"])
def test_normalize_rejects_non_integers(value: object) -> None:
    with pytest.raises(DecodeError) as info:
        ev.normalize({"source": {"port": value}})
    assert info.value.reason == "invalid_field"
    assert "source.port" in str(info.value)


@pytest.mark.parametrize("ip", ["10.0.0.1", "2001:db8::1", "::1", "255.255.255.255"])
def test_normalize_accepts_ips(ip: str) -> None:
    e = ev.normalize({"source": {"ip": ip}, "destination": {"ip": ip}, "host": {"ip": [ip]}})
    assert e["source"]["ip"] == ip


@pytest.mark.parametrize(
    ("path", "value"),
    [("source.ip", "not-an-ip"), ("source.ip", "10.0.0.256"), ("destination.ip", 167772161),
     ("host.ip", ["10.0.0.1", "x"]), ("source.ip", "10.0.0.0/8"), ("source.ip", "")],
)
def test_normalize_rejects_bad_ips(path: str, value: object) -> None:
    e: ev.Event = {}
    ev.put(e, path, value)
    with pytest.raises(DecodeError) as info:
        ev.normalize(e)
    assert info.value.reason == "invalid_field"
    assert path in str(info.value)


@pytest.mark.parametrize(("key", "value"), [("layer", 5), ("layer", 0), ("system_level", 6),
                                           ("system_level", "cao")])
def test_normalize_checks_socd_ranges(key: str, value: object) -> None:
    with pytest.raises(DecodeError):
        ev.normalize({"socd": {key: value}})


def test_normalize_unit_to_nfc() -> None:
    nfd = unicodedata.normalize("NFD", "Sở Giáo dục và Đào tạo")
    e = ev.normalize({"socd": {"unit": nfd, "layer": 4, "system_level": 3}})
    assert e["socd"]["unit"] == unicodedata.normalize("NFC", nfd)
    assert unicodedata.is_normalized("NFC", e["socd"]["unit"])


def test_set_severity_sets_code_and_label() -> None:
    e: ev.Event = {}
    ev.set_severity(e, Severity.CRITICAL)
    assert e["socd"] == {"severity": "critical", "severity_label": "nghiêm trọng"}


def test_dumps_keeps_vietnamese_text() -> None:
    data = ev.dumps({"socd": {"severity_label": "nghiêm trọng"}})
    assert "nghiêm trọng".encode() in data


def test_fingerprint_is_stable_and_separates_parts() -> None:
    assert ev.fingerprint("a", b"b") == ev.fingerprint(b"a", "b")
    assert ev.fingerprint("ab", "c") != ev.fingerprint("a", "bc")
    assert len(ev.fingerprint("x")) == 40


def _decoder(name: str = "json") -> JsonDecoder:
    return JsonDecoder(JsonDecoder.Config(type="json"), PluginContext(name=name, dead_letter=None))


def test_event_hash_is_deterministic() -> None:
    data = b'{"message": "x", "source": {"ip": "10.0.0.1"}}'
    a = _decoder().decode(RawRecord(data, "json", "c1", received=1.0)).events[0]
    b = _decoder().decode(RawRecord(data, "json", "c2", received=2.0)).events[0]
    assert a["event"]["hash"] == b["event"]["hash"]
    other = _decoder().decode(RawRecord(data + b" ", "json", "c1")).events[0]
    assert other["event"]["hash"] != a["event"]["hash"]
    renamed = _decoder("json2").decode(RawRecord(data, "json2", "c1")).events[0]
    assert renamed["event"]["hash"] != a["event"]["hash"]


def test_event_hash_differs_by_index_in_payload() -> None:
    data = b'[{"message": "same"}, {"message": "same"}]'
    events = _decoder().decode(RawRecord(data, "json", "c")).events
    assert len(events) == 2
    assert events[0]["event"]["hash"] != events[1]["event"]["hash"]
    again = _decoder().decode(RawRecord(data, "json", "c")).events
    assert [e["event"]["hash"] for e in again] == [e["event"]["hash"] for e in events]
