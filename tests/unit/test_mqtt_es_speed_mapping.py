"""The mapping decoder's compiled convert() (issue 17, MQTT -> Elasticsearch CPU): the
generated function answers exactly as the interpreted loop (same event, same key order,
same refusals) for every mapping it is made for, falls back to the loop for mappings
it cannot reproduce, and the timestamp and severity shortcuts answer as the long way."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from socd.decoders.mapping import MappingDecoder
from socd.errors import DecodeError
from socd.plugins import PluginContext, RawRecord
from socd.tz import parse_iso
from tests.unit.test_decoder_typed_plan import DEEP_MAPPING, FORMAT_MAPPING, HOSTILE, RECORDS

# Parents in the constants (two and three levels), lists and objects as constants, a
# field into socd, dotted timestamp and severity sources, numbers as severities.
NESTED_MAPPING = """\
name: nested
timestamp: {field: meta.ts}
fields: {host.os.full: os, host.name: hostname, host.ip: host_ip, socd.unit: unit,
         process.parent.name: process.parent, process.name: process.name, tags: tags,
         file.hash.sha256: file.sha256, observer.hostname: sensor, "@timestamp": time,
         rule.name: threat_name, network.direction: direction}
severity: {field: meta.sev, table: {cao: high, "3": critical, "1-2": low}, default: low}
constants: {host.os.family: linux, host.type: server, event.category: [malware, file],
            labels: {team: soc, ids: [1, 2.5, true, null]}, observer.vendor: VSEC,
            socd.layer: 3, event.kind: alert}
"""
# No constants in socd, the vendor record not kept; no timestamp.
BARE_MAPPING = """\
name: bare
fields: {source.ip: ip, source.port: port, message: msg, socd.unit: kind}
severity: {field: sev, table: {high: high}}
keep_vendor: false
"""
# The vendor record kept without a severity; top-level constants only.
VENDOR_ONLY = """\
name: vendor_only
timestamp: {field: ts, format: "%Y-%m-%d %H:%M:%S"}
fields: {destination.ip: ip, user.name: user}
constants: {message: fixed, tags: [edr]}
"""
MAPPINGS = {"deep.yaml": DEEP_MAPPING, "fmt.yaml": FORMAT_MAPPING,
            "nested.yaml": NESTED_MAPPING, "bare.yaml": BARE_MAPPING,
            "vendor_only.yaml": VENDOR_ONLY}
# What only the interpreted loop does alike: an object written at or above a field's
# parent (so that a later field finds it replaced), constants that are not plain JSON.
FALLBACK = {
    "deep.yaml": None,  # "process" and "process.parent.pid.x"
    "leaf_above.yaml": "name: x\nfields: {host.os: a, host.os.full: b}\n",
    "constant_above.yaml": "name: x\nfields: {host.os.full: b}\nconstants: {host.os: linux}\n",
    "date.yaml": "name: x\nfields: {host.name: b}\nconstants: {labels.day: 2026-11-16}\n",
    "nan.yaml": "name: x\nfields: {host.name: b}\nconstants: {labels.n: .nan}\n",
}


def _decoder(mapping: str, tmp_path: Path) -> MappingDecoder:
    for name, text in {**FALLBACK, **MAPPINGS}.items():
        if text is not None:
            (tmp_path / name).write_text(text, encoding="utf-8")
    return MappingDecoder(MappingDecoder.Config(type="mapping", mapping=mapping),
                          PluginContext(name="edr", dead_letter=None, config_dir=str(tmp_path)))


def _answer(convert: Any, obj: Any) -> object:
    try:
        return orjson.dumps(convert(obj))  # the bytes: key order counts
    except DecodeError as exc:
        return (exc.reason, exc.detail)


def _records() -> list[Any]:
    extra = [{"meta": {"ts": "2026-11-16T00:11:43+07:00", "sev": sev}, "os": "Ubuntu",
              "hostname": "h", "host_ip": "10.0.0.1", "unit": "UBND", "tags": ["a"],
              "process": {"parent": "bash", "name": "curl"}, "file": {"sha256": "ab"},
              "sensor": "s1", "time": "t", "ip": "10.0.0.9", "port": 22, "msg": "m",
              "kind": "server", "sev": sev, "ts": "2026-11-16 00:11:43", "user": "u"}
             for sev in ("Cao", "cao", 3, 1.5, "3", True, None, [], "x" * 300)]
    out = [orjson.loads(data) for data in RECORDS] + extra
    for record in extra[:2]:
        for key in list(record):
            for value in HOSTILE:
                variant = copy.deepcopy(record)
                variant[key] = value
                out.append(variant)
        out.append({})
    return out


RECORDS_ALL = _records()


@pytest.mark.parametrize("mapping", ["server_edr", "workstation_edr", *sorted(MAPPINGS)])
def test_the_compiled_convert_answers_as_the_loop(mapping: str, tmp_path: Path) -> None:
    compiled, loop = _decoder(mapping, tmp_path), _decoder(mapping, tmp_path)
    if mapping in FALLBACK:
        assert "convert" not in vars(compiled)
        return
    assert "convert" in vars(compiled)  # the generated function, not the method
    for obj in RECORDS_ALL:
        loop._times.clear()
        got = _answer(compiled.convert, copy.deepcopy(obj))
        assert got == _answer(lambda o: MappingDecoder.convert(loop, o), copy.deepcopy(obj))
        if not isinstance(got, tuple) and compiled.spec.timestamp is not None:
            # The @timestamp text normalize() trusts is the one the event holds.
            stamp = orjson.loads(got)["@timestamp"]
            assert not isinstance(stamp, str) or stamp == compiled._own_timestamp


@pytest.mark.parametrize("mapping", sorted(FALLBACK))
def test_mappings_the_generator_does_not_reproduce_keep_the_loop(
        mapping: str, tmp_path: Path) -> None:
    dec = _decoder(mapping, tmp_path)
    assert "convert" not in vars(dec)
    record = {"b": "x", "a": "y", "ts": "2026-11-16T00:11:43+07:00"}
    assert dec.convert(dict(record)) == MappingDecoder.convert(dec, dict(record))


def test_nothing_of_the_mapping_becomes_source_text(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys, source paths and constants reach the generated function as namespace
    names: a mapping full of quotes and code compiles to text that holds none of it."""
    hostile = 'x"]; import os; os.system("id") #'
    (tmp_path / "evil.yaml").write_text(
        "name: evil\n"
        f"fields: {{'labels.{hostile}': '{hostile}', 'a{hostile}.b': 'c.{hostile}'}}\n"
        f"constants: {{'labels.k{hostile}': '{hostile}'}}\n"
        f"timestamp: {{field: '{hostile}'}}\n"
        f"severity: {{field: 'z.{hostile}', table: {{cao: high}}}}\n", encoding="utf-8")
    texts: list[str] = []
    real_compile = compile

    def spy(source: Any, *args: Any, **kwargs: Any) -> Any:
        texts.append(source)
        return real_compile(source, *args, **kwargs)

    monkeypatch.setattr("builtins.compile", spy)
    dec = MappingDecoder(MappingDecoder.Config(type="mapping", mapping="evil.yaml"),
                         PluginContext(name="edr", dead_letter=None, config_dir=str(tmp_path)))
    monkeypatch.undo()
    assert "convert" in vars(dec)
    generated = [t for t in texts if isinstance(t, str) and "def convert" in t]
    assert generated
    assert all("system" not in t and "import" not in t and "#" not in t for t in generated)
    stamp = "2026-11-16T00:11:43+07:00"
    for record in ({hostile: stamp}, {"x\"]; import os; os": {"system(\"id\") #": stamp},
                                      "c": {hostile: "v"}, "z": {hostile: "Cao"}}):
        got = _answer(dec.convert, copy.deepcopy(record))
        assert got == _answer(lambda o: MappingDecoder.convert(dec, o), copy.deepcopy(record))
        assert record is not None


def test_severity_codes_are_remembered_for_short_texts_only(tmp_path: Path) -> None:
    dec = _decoder("server_edr", tmp_path)
    for i in range(1000):
        dec.convert({"detected_at": "2026-11-16T00:11:43+07:00", "severity": f"Cao {i}"})
        assert len(dec._severity_codes) <= 256
    long_text = "cao" + " " * 100
    event = dec.convert({"detected_at": "2026-11-16T00:11:43+07:00", "severity": long_text})
    assert event["socd"]["severity"] == "high"
    assert long_text not in dec._severity_codes


def _parse_time_long_way(dec: MappingDecoder, value: str) -> object:
    """_parse_time as it was before its shortcut (ISO 8601, no format)."""
    try:
        parsed = parse_iso(value.strip(), naive=None)
    except ValueError:
        return ("invalid_field", f"timestamp {value[:64]!r} does not match ISO 8601")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dec._tz)
    return parsed.isoformat()


def _parse_time(dec: MappingDecoder, value: str) -> object:
    try:
        return dec._parse_time(value)
    except DecodeError as exc:
        return (exc.reason, exc.detail)


_DIGITS = st.sampled_from("0123456789")


@given(st.lists(st.one_of(_DIGITS, st.sampled_from("٣²+-:TZ .")), min_size=25, max_size=25),
       st.sampled_from(["+", "-"]))
@settings(max_examples=1000)
def test_the_rfc3339_shortcut_answers_as_the_parse(chars: list[str], sign: str) -> None:
    dec = _DEC
    shaped = list("2026-11-16T00:11:43+07:00")
    for i, c in enumerate(chars):
        if shaped[i].isdigit():
            shaped[i] = c  # digits, and now and then something else where a digit goes
    shaped[19] = sign
    for text in ("".join(shaped), "".join(chars)):
        assert _parse_time(dec, text) == _parse_time_long_way(dec, text)


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
       st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59))
def test_the_shortcut_on_real_times(when: datetime, minutes: int) -> None:
    text = when.replace(microsecond=0, tzinfo=timezone(timedelta(minutes=minutes))).isoformat()
    for value in (text, text.replace("+00:00", "-00:00"), text.replace("T", " "),
                  text[:-6], text + " "):
        assert _parse_time(_DEC, value) == _parse_time_long_way(_DEC, value)


def test_the_minutes_found_valid_answer_as_the_parse() -> None:
    """A text of a minute found valid before is valid exactly when its seconds are."""
    dec = _make_dec()
    seconds = [f"{i:02d}" for i in range(100)] + ["6x", "x0", "٣٣", "5 ", " 5", "+0", "-1"]
    for minute in ("2026-11-16T23:59", "2026-02-28T00:00", "2024-02-29T12:30", "2026-11-16T24:00",
                   "2026-02-29T00:00", "9999-12-31T23:59", "0001-01-01T00:00"):
        for offset in ("+07:00", "-00:00", "+00:00", "-23:59", "+24:00", "+07:60"):
            for second in ["00", *seconds]:  # the first one makes the minute known
                text = f"{minute}:{second}{offset}"
                expected = _parse_time_long_way(dec, text)
                assert _parse_time(dec, text) == expected, text
                assert _timestamp(dec, text) == expected, text
                if isinstance(expected, str):
                    assert dec._own_timestamp == expected
    assert len(dec._minutes) <= 4096


def _timestamp(dec: MappingDecoder, value: str) -> object:
    try:
        return dec._timestamp(value)
    except DecodeError as exc:
        return (exc.reason, exc.detail)


def _make_dec() -> MappingDecoder:
    return MappingDecoder(MappingDecoder.Config(type="mapping", mapping="server_edr"),
                          PluginContext(name="edr", dead_letter=None, config_dir="."))


_DEC = _make_dec()


def test_a_whole_payload_decodes_as_with_the_loop(tmp_path: Path) -> None:
    """decode() of NDJSON payloads: the compiled and the interpreted decoder give the
    same events (the ingested time, a clock reading, aside)."""
    compiled, loop = _decoder("server_edr", tmp_path), _decoder("server_edr", tmp_path)
    loop.convert = lambda obj: MappingDecoder.convert(loop, obj)  # type: ignore[method-assign]
    lines = [orjson.dumps(obj) for obj in RECORDS_ALL if isinstance(obj, dict)]
    for start in range(0, len(lines), 7):
        data = b"\n".join(lines[start:start + 7]) + b"\n"
        results = []
        for dec in (compiled, loop):
            result = dec.decode(RawRecord(data, "edr", "coll", "src", 1794788564.0))
            for event in result.events:
                del event["event"]["ingested"]
            results.append(([orjson.dumps(e) for e in result.events],
                            [(f.reason, f.raw, f.detail) for f in result.failures]))
        assert results[0] == results[1]
