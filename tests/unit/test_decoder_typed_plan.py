"""A decoder's typed-field plan (issue 17): ``normalize`` checks only the typed fields a
decoder can write, and skips parsing the ``@timestamp`` text the decoder formatted
itself, with the answers of the full walk: same events, same refusals, same messages."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from socd.decoders.base import FINISH_PATHS
from socd.decoders.json import JsonDecoder
from socd.decoders.mapping import MappingDecoder
from socd.errors import DecodeError
from socd.event import (
    FIELDS,
    Event,
    iter_leaf_paths,
    normalize,
    parse_timestamp,
    put,
    typed_fields_at,
)
from socd.plugins import DecodeResult, PluginContext, RawRecord

SAMPLES = Path(__file__).resolve().parents[2] / "socd" / "default" / "sample"

# Every kind of value an input may put where an integer or an address belongs.
HOSTILE: list[Any] = [
    "::ffff:10.0.0.1", "10.0.0.01", "fe80::1%eth0", " 10.0.0.1", "2001:DB8::1", "x", "",
    None, True, 5, 5.0, 5.5, " 5", "-5", "--5", "²", 1e20, [], ["10.0.0.1", "::ffff:1.2.3.4"],
    ["bad"], {}, {"pid": "7", "ip": "::ffff:1.2.3.4"}, {"a": {"port": "x"}},
    "2026-11-16T00:11:43+07:00", "2026-11-16 00:11:43", "16/11/2026 00:11:43", 1794788564,
    1794788564123, 1e30, "2026-11-16T00:11:43.5-23:59", "0001-01-01T00:00:00"]

# A vendor format reaching deep: whole objects copied into ECS objects, fields under a
# typed leaf, a field into @timestamp, a typed constant.
DEEP_MAPPING = """\
name: deep
timestamp: {field: ts}
fields: {user.name: process.owner.name, user.domain: a.b.c, host.name: hostname,
         destination.ip: ip, process: process, source: peer,
         event.severity: level, process.parent.pid.x: ppid, "@timestamp": time,
         socd.layer: layer}
severity: {field: sev, table: {cao: high}}
constants: {event.kind: alert, socd.asset_kind: server, network.bytes: 10}
"""
FORMAT_MAPPING = """\
name: fmt
timestamp: {field: ts, format: "%d/%m/%Y %H:%M:%S%z", timezone: "-03:30"}
fields: {host.ip: addrs, source.port: port}
keep_vendor: false
"""

_TYPED_PATHS = [f.name for f in FIELDS if f.type in {"long", "byte", "ip"}]
_PATHS = sorted({*_TYPED_PATHS, *(p.rsplit(".", 1)[0] for p in _TYPED_PATHS if "." in p),
                 *(f"{p}.x" for p in _TYPED_PATHS[::3]), "process.name", "labels.x",
                 "source.geo.city_name", "socd.unit", "event"})


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
       st.timedeltas(min_value=timedelta(hours=-23, minutes=-59, seconds=-59),
                     max_value=timedelta(hours=23, minutes=59, seconds=59)))
def test_a_formatted_time_parses_to_itself(when: datetime, offset: timedelta) -> None:
    """The premise of own_timestamp: what the mapping decoder formats (isoformat of an
    aware time, any offset strptime's %z accepts) is what normalize would make of it."""
    text = when.replace(tzinfo=timezone(offset)).isoformat()
    assert parse_timestamp(text) == text


def test_only_the_very_text_the_decoder_formatted_is_trusted() -> None:
    """An equal text from elsewhere (the input) is parsed: trust is by identity."""
    own = "2026-11-16T00:11:43+07:00"
    assert normalize({"@timestamp": own}, own_timestamp=own)["@timestamp"] is own
    forged = "".join(["2026-11-16T00:11:43", "Z"])
    event = normalize({"@timestamp": forged}, own_timestamp="2026-11-16T00:11:43Z")
    assert event["@timestamp"] == "2026-11-16T00:11:43+00:00"


def _normalized(event: Event, **kwargs: Any) -> object:
    try:
        return normalize(event, **kwargs)
    except DecodeError as exc:
        return (exc.reason, exc.detail)


@given(st.lists(st.tuples(st.sampled_from(_PATHS), st.sampled_from(HOSTILE)), max_size=8))
def test_the_plan_of_the_written_paths_finds_what_the_full_walk_finds(
        writes: list[tuple[str, Any]]) -> None:
    event: Event = {"@timestamp": "2026-11-16T00:11:43+07:00"}
    for path, value in writes:
        put(event, path, copy.deepcopy(value))
    plan = typed_fields_at(path for path, _ in writes)
    assert _normalized(copy.deepcopy(event), typed=plan) == _normalized(event)


def test_the_plan_keeps_only_branches_a_path_reaches() -> None:
    assert typed_fields_at(["host.name", "event.kind", "tags"]) == ()
    assert typed_fields_at(["process.pid"]) == ((("process",), (("pid", "int", "process.pid"),)),)
    assert typed_fields_at(["process.pid.x"]) == typed_fields_at(["process.pid"])
    assert typed_fields_at(["process", "destination.ip", "source"]) == (
        (("source",), (("port", "int", "source.port"), ("bytes", "int", "source.bytes"),
                       ("packets", "int", "source.packets"))),
        (("source", "as"), (("number", "int", "source.as.number"),)),
        (("source",), (("ip", "ip", "source.ip"),)),  # the walk's order: ints first
        (("destination",), (("ip", "ip", "destination.ip"),)),
        (("process",), (("pid", "int", "process.pid"),)),
        (("process", "parent"), (("pid", "int", "process.parent.pid"),)))


def _decoder(mapping: str, tmp_path: Path) -> MappingDecoder:
    (tmp_path / "deep.yaml").write_text(DEEP_MAPPING, encoding="utf-8")
    (tmp_path / "fmt.yaml").write_text(FORMAT_MAPPING, encoding="utf-8")
    return MappingDecoder(MappingDecoder.Config(type="mapping", mapping=mapping),
                          PluginContext(name="edr", dead_letter=None, config_dir=str(tmp_path)))


def _records() -> list[bytes]:
    """Sample EDR records, each with every one of its keys (and a few more) set to each
    hostile value in turn."""
    base = [orjson.loads(line) for name in ("server-edr.ndjson", "workstation-edr.ndjson")
            for line in (SAMPLES / name).read_bytes().splitlines()[:2]]
    base.append({"ts": "16/11/2026 00:11:43+0700", "hostname": "h", "ip": "10.0.0.1",
                 "process": {"pid": 1}, "peer": {"ip": "10.0.0.2", "port": 22}, "level": 3,
                 "ppid": 1, "layer": 2, "addrs": ["10.0.0.3"], "port": 80, "sev": "cao"})
    out = []
    for record in base:
        keys = [(k,) for k in record] + [(k, sub) for k, v in record.items()
                                         if isinstance(v, dict) for sub in v]
        for key in [*keys, ("time",), ("socd",), ("process", "parent")]:
            for value in HOSTILE:
                variant = copy.deepcopy(record)
                node = variant
                for part in key[:-1]:
                    node = node.setdefault(part, {})
                node[key[-1]] = value
                out.append(orjson.dumps(variant))
    return out


RECORDS = _records()


def _decode(dec: Any, data: bytes, authenticated: bool = True) -> DecodeResult:
    return dec.decode(RawRecord(data, dec.name, "coll", "src", 1794788564.0,
                                authenticated=authenticated))


def _outcome(result: DecodeResult) -> list[object]:
    """Events (without their ingested time, a clock reading) and refusals."""
    for event in result.events:
        del event["event"]["ingested"]
    return [*result.events, *((f.reason, f.raw, f.detail) for f in result.failures)]


def test_mapping_decoders_answer_as_with_the_full_walk(tmp_path: Path) -> None:
    for mapping in ("server_edr", "workstation_edr", "deep.yaml", "fmt.yaml"):
        planned, full = _decoder(mapping, tmp_path), _decoder(mapping, tmp_path)
        full._typed = None  # the full walk and a parse of every @timestamp
        for data in RECORDS:
            full._times.clear()  # and no text from the timestamp cache
            assert _outcome(_decode(planned, data)) == _outcome(_decode(full, data)), data


def test_sources_one_two_and_more_parts_deep(tmp_path: Path) -> None:
    dec = _decoder("deep.yaml", tmp_path)
    ts = '"ts": "2026-11-16T00:11:43+07:00"'
    [event] = _decode(dec, b'{%s, "hostname": "h", "process": {"owner": {"name": "u"}}, '
                           b'"a": {"b": {"c": "d"}}}' % ts.encode()).events
    assert event["user"] == {"name": "u", "domain": "d"}
    assert event["host"] == {"name": "h"}
    for other in (b'"process": {"owner": "u"}, "a": {"b": 1}', b'"process": 1, "a": []',
                  b'"process": {"owner": {"name": ""}}, "a": {"b": {"c": null}}'):
        [event] = _decode(dec, b'{%s, %s}' % (ts.encode(), other)).events
        assert "user" not in event


def test_the_timestamp_cache_is_bounded(tmp_path: Path) -> None:
    dec = _decoder("server_edr", tmp_path)
    padded = " " * 100 + "2026-11-16T00:11:43+07:00"
    line = orjson.dumps({"alert_id": "1", "detected_at": padded})
    [event] = _decode(dec, line).events
    assert event["@timestamp"] == "2026-11-16T00:11:43+07:00"
    assert padded not in dec._times  # a long text is no cache key
    start = datetime(2026, 11, 16, tzinfo=timezone(timedelta(hours=7)))
    for i in range(5000):
        dec._timestamp((start + timedelta(seconds=i)).isoformat())
        assert len(dec._times) <= 4096


def test_mapping_decoders_write_only_the_paths_they_declare(tmp_path: Path) -> None:
    """The plan is sound only if every path of an event lies at or under a declared one."""
    for mapping in ("server_edr", "workstation_edr", "deep.yaml", "fmt.yaml"):
        dec = _decoder(mapping, tmp_path)
        dec.keep_original = True
        declared = dec.written_paths
        assert declared is not None
        for data in RECORDS[::7]:
            for event in _decode(dec, data, authenticated=False).events:
                for path, _ in iter_leaf_paths(event):
                    parts = path.split(".")
                    assert any(".".join(parts[:n]) in declared
                               for n in range(1, len(parts) + 1)), (mapping, path)


class _Recording(JsonDecoder):
    """The JSON decoder, keeping the leaf paths of each event before finish()."""

    converted: list[set[str]]

    def convert(self, obj: dict[str, Any]) -> Event:
        event = super().convert(obj)
        self.converted.append({path for path, _ in iter_leaf_paths(event)})
        return event


def test_finish_writes_only_finish_paths() -> None:
    dec = _Recording(JsonDecoder.Config(type="json", keep_original=True,
                                        severity_table="suricata"),
                     PluginContext(name="ecs", dead_letter=None))
    for data in (b'{"message": "a"}', b'{"socd": {"severity": "high", "unit": "x"}}',
                 b'{"socd": {"vendor_severity": 1, "source": "forged"}}'):
        dec.converted = []
        [event] = _decode(dec, data, authenticated=False).events
        added = {path for path, _ in iter_leaf_paths(event)} - dec.converted[0]
        assert added
        assert all(any(path == p or path.startswith(p + ".") for p in FINISH_PATHS)
                   for path in added), added
