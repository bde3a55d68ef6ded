"""Decoders: bad input becomes DecodeFailure with a reason, never an exception."""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Any

import orjson
import pytest

from socd.config import DecoderConfig
from socd.config.mappings import load_mapping
from socd.decoders.base import split_json
from socd.decoders.json import JsonDecoder
from socd.decoders.mapping import MappingDecoder
from socd.errors import ConfigError
from socd.plugins import DecodeResult, PluginContext, RawRecord

from .conftest import SAMPLE_DIR


def json_decoder(name: str = "json", **options: Any) -> JsonDecoder:
    return JsonDecoder(JsonDecoder.Config(type="json", **options),
                       PluginContext(name=name, dead_letter=None))


def mapping_decoder(mapping: str, name: str | None = None, config_dir: str = ".",
                    **options: Any) -> MappingDecoder:
    return MappingDecoder(MappingDecoder.Config(type="mapping", mapping=mapping, **options),
                          PluginContext(name=name or mapping, dead_letter=None,
                                        config_dir=config_dir))


def decode(decoder: Any, data: bytes, source: str = "topic/a") -> DecodeResult:
    return decoder.decode(RawRecord(data, decoder.name, "coll", source, 1794788564.0))


def sample_lines(name: str) -> list[bytes]:
    return [line for line in (SAMPLE_DIR / name).read_bytes().splitlines() if line.strip()]


def first_sample(name: str, key: str, value: str) -> bytes:
    for line in sample_lines(name):
        if orjson.loads(line).get(key) == value:
            return line
    raise AssertionError(f"no record with {key}={value!r} in {name}")


# -- framing -------------------------------------------------------------------


def test_split_single_object_array_and_ndjson() -> None:
    assert split_json(b'{"a": 1}') == ([({"a": 1}, None)], [])
    assert split_json(b'[{"a": 1}, {"a": 2}]') == ([({"a": 1}, None), ({"a": 2}, None)], [])
    items, failures = split_json(b'{"a": 1}\n\n{"a": 2}\r\n')
    assert [i[0] for i in items] == [{"a": 1}, {"a": 2}]
    assert items[0][1] == b'{"a": 1}'
    assert failures == []


def test_json_single_object() -> None:
    result = decode(json_decoder(), b'{"message": "xin ch\xc3\xa0o", "event": {"kind": "alert"}}')
    assert result.failures == []
    (event,) = result.events
    assert event["message"] == "xin chào"
    assert event["event"]["kind"] == "alert"
    assert event["socd"]["collector"] == "coll"
    assert event["socd"]["decoder"] == "json"
    assert event["socd"]["source"] == "topic/a"
    assert event["event"]["created"] == "2026-11-16T00:22:44.000Z"
    assert "ingested" in event["event"]
    assert len(event["event"]["hash"]) == 40


def test_json_array() -> None:
    result = decode(json_decoder(), b'[{"message": "a"}, {"message": "b"}, {"message": "c"}]')
    assert [e["message"] for e in result.events] == ["a", "b", "c"]
    assert result.failures == []


def test_json_ndjson_with_one_bad_line() -> None:
    data = b'{"message": "a"}\n{"message": \n{"message": "c"}\n'
    result = decode(json_decoder(), data)
    assert [e["message"] for e in result.events] == ["a", "c"]
    (failure,) = result.failures
    assert failure.reason == "invalid_json"
    assert failure.raw == b'{"message":'
    assert failure.detail


def test_json_dotted_keys_are_nested() -> None:
    result = decode(json_decoder(), b'{"source.ip": "10.0.0.1", "source": {"port": "22"}}')
    (event,) = result.events
    assert event["source"] == {"ip": "10.0.0.1", "port": 22}


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"{not json", "invalid_json"),
        (b"", "invalid_json"),
        (b'{"message": "\xff\xfe"}', "invalid_utf8"),
        (b"\x00\x01\x02binary\xff", "invalid_utf8"),
        (b"42", "not_an_object"),
        (b'"text"', "not_an_object"),
        (b"null", "not_an_object"),
        (b"[1, 2]", "not_an_object"),
        (b'{"source": {"ip": "not-an-ip"}}', "invalid_field"),
        (b'{"source": {"port": "ssh"}}', "invalid_field"),
        ('{"@timestamp": "hôm qua"}'.encode(), "invalid_field"),
        (b'{"@timestamp": true}', "invalid_field"),
        (b'{"event": "alert"}', "invalid_field"),
        (b'{"socd": 5}', "invalid_field"),
        (b'{"socd": {"severity": "severe"}}', "invalid_field"),
        (b'{"socd": {"layer": 7}}', "invalid_field"),
    ],
)
def test_json_bad_input_becomes_failures(data: bytes, reason: str) -> None:
    result = decode(json_decoder(), data)
    assert result.events == []
    assert result.failures, data
    assert {f.reason for f in result.failures} == {reason}
    for failure in result.failures:
        assert isinstance(failure.raw, bytes)
        assert failure.detail


def test_json_invalid_utf8_line_in_ndjson_keeps_exact_bytes() -> None:
    bad = b'{"message": "\xc3\x28"}'
    result = decode(json_decoder(), b'{"message": "ok"}\n' + bad + b"\n")
    assert len(result.events) == 1
    (failure,) = result.failures
    assert failure.reason == "invalid_utf8"
    assert failure.raw == bad


def test_json_mixed_array_keeps_good_objects() -> None:
    result = decode(json_decoder(), b'[{"message": "a"}, 3, {"source": {"ip": "x"}}]')
    assert [e["message"] for e in result.events] == ["a"]
    assert sorted(f.reason for f in result.failures) == ["invalid_field", "not_an_object"]


def test_json_severity_table_maps_vendor_severity() -> None:
    decoder = json_decoder(severity_table="suricata")
    result = decode(decoder, b'[{"socd": {"vendor_severity": 1}}, {"socd": {"vendor_severity": 3}},'
                             b' {"socd": {"vendor_severity": 9}}]')
    a, b, c = result.events
    assert (a["socd"]["severity"], a["socd"]["severity_label"]) == ("high", "cao")
    assert a["socd"]["vendor_severity"] == "1"
    assert (b["socd"]["severity"], b["socd"]["severity_label"]) == ("low", "thấp")
    assert "severity" not in c["socd"]
    assert c["socd"]["vendor_severity"] == "9"


def test_json_explicit_severity_wins_and_gets_label() -> None:
    result = decode(json_decoder(severity_table="suricata"),
                    b'{"socd": {"severity": "critical", "vendor_severity": 3}}')
    (event,) = result.events
    assert event["socd"]["severity"] == "critical"
    assert event["socd"]["severity_label"] == "nghiêm trọng"


def test_json_keep_original() -> None:
    data = b'{"message": "a"}\n{"message": "b"}'
    events = decode(json_decoder(keep_original=True), data).events
    assert [e["event"]["original"] for e in events] == ['{"message": "a"}', '{"message": "b"}']
    assert "original" not in decode(json_decoder(), data).events[0]["event"]


def test_ids_sample_decodes_with_suricata_table() -> None:
    decoder = json_decoder("ids_ecs", severity_table="suricata")
    data = b"\n".join(sample_lines("ids.ndjson"))
    result = decode(decoder, data)
    assert result.failures == []
    assert len(result.events) == len(sample_lines("ids.ndjson"))
    for event in result.events:
        expected = {"1": "high", "2": "medium", "3": "low"}[event["socd"]["vendor_severity"]]
        assert event["socd"]["severity"] == expected


def test_syslog_sample_decodes_with_json() -> None:
    data = b"\n".join(sample_lines("syslog.ndjson"))
    result = decode(json_decoder(), data)
    assert result.failures == []
    assert len(result.events) == len(sample_lines("syslog.ndjson"))


# -- mapping decoder with the shipped mappings -----------------------------------


@pytest.mark.parametrize(
    ("vendor", "severity", "label"),
    [("Trung bình", "medium", "trung bình"), ("Cao", "high", "cao"),
     ("Nghiêm trọng", "critical", "nghiêm trọng")],
)
def test_server_edr_sample(vendor: str, severity: str, label: str) -> None:
    line = first_sample("server-edr.ndjson", "severity", vendor)
    record = orjson.loads(line)
    result = decode(mapping_decoder("server_edr"), line)
    assert result.failures == []
    (event,) = result.events
    socd = event["socd"]
    assert socd["severity"] == severity
    assert socd["severity_label"] == label
    assert socd["vendor_severity"] == vendor
    assert socd["asset_kind"] == "server"
    assert socd["layer"] == 2
    assert socd["vendor"] == record
    assert event["event"]["kind"] == "alert"
    assert event["event"]["module"] == "server_edr"
    assert event["event"]["id"] == record["alert_id"]
    assert event["@timestamp"] == record["detected_at"]
    assert event["host"]["name"] == record["hostname"]
    assert event["observer"]["product"] == "Server Guard"
    assert isinstance(event["process"]["pid"], int)


def test_server_edr_remote_peer_in_destination() -> None:
    line = first_sample("server-edr.ndjson", "direction", "inbound")
    record = orjson.loads(line)
    (event,) = decode(mapping_decoder("server_edr"), line).events
    assert event["destination"] == {"ip": record["remote_ip"], "port": record["remote_port"]}
    assert event["network"]["direction"] == "inbound"


@pytest.mark.parametrize(
    ("vendor", "severity", "label"),
    [("Thấp", "low", "thấp"), ("Trung bình", "medium", "trung bình"), ("Cao", "high", "cao")],
)
def test_workstation_edr_sample(vendor: str, severity: str, label: str) -> None:
    line = first_sample("workstation-edr.ndjson", "ThreatLevel", vendor)
    record = orjson.loads(line)
    result = decode(mapping_decoder("workstation_edr"), line)
    assert result.failures == []
    (event,) = result.events
    socd = event["socd"]
    assert (socd["severity"], socd["severity_label"], socd["vendor_severity"]) == (
        severity, label, vendor)
    assert socd["asset_kind"] == "workstation"
    assert socd["unit"] == unicodedata.normalize("NFC", record["Department"])
    assert event["file"]["hash"]["sha256"] == record["Hash"]["SHA256"]
    assert event["user"]["name"] == record["UserName"]
    assert event["event"]["module"] == "workstation_edr"


@pytest.mark.parametrize(("mapping", "sample", "kinds"), [
    ("server_edr", "server-edr.ndjson", {"medium", "high", "critical"}),
    ("workstation_edr", "workstation-edr.ndjson", {"low", "medium", "high"}),
])
def test_whole_sample_file_decodes(mapping: str, sample: str, kinds: set[str]) -> None:
    lines = sample_lines(sample)
    result = decode(mapping_decoder(mapping), b"\n".join(lines))
    assert result.failures == []
    assert len(result.events) == len(lines)
    assert {e["socd"]["severity"] for e in result.events} == kinds
    hashes = {e["event"]["hash"] for e in result.events}
    assert len(hashes) == len(lines)


def test_vendor_severity_matching_ignores_case_and_diacritics() -> None:
    decoder = mapping_decoder("server_edr")
    base = orjson.loads(first_sample("server-edr.ndjson", "severity", "Cao"))
    for written, expected in [("NGHIEM TRONG", "critical"), ("nghiêm trọng", "critical"),
                              ("trung binh", "medium"), ("không rõ", "medium")]:
        (event,) = decode(decoder, orjson.dumps({**base, "severity": written})).events
        assert event["socd"]["severity"] == expected, written
        assert event["socd"]["vendor_severity"] == written


def test_mapping_missing_timestamp_and_bad_values_fail_cleanly() -> None:
    decoder = mapping_decoder("server_edr")
    base = orjson.loads(first_sample("server-edr.ndjson", "severity", "Cao"))
    no_ts = {k: v for k, v in base.items() if k != "detected_at"}
    bad_ts = {**base, "detected_at": "16/11/2026"}
    bad_ip = {**base, "remote_ip": "10.0.0.999"}
    bad_pid = {**base, "process": {**base["process"], "pid": "bash"}}
    data = b"\n".join(orjson.dumps(o) for o in (no_ts, bad_ts, bad_ip, bad_pid, base))
    result = decode(decoder, data)
    assert len(result.events) == 1
    assert [f.reason for f in result.failures] == [
        "missing_field", "invalid_field", "invalid_field", "invalid_field"]
    assert result.failures[0].raw == orjson.dumps(no_ts)


def test_custom_mapping_file_with_strptime_format(tmp_path: Path) -> None:
    (tmp_path / "acme.yaml").write_text(
        "name: acme\n"
        "timestamp: {field: when, format: '%d/%m/%Y %H:%M:%S', timezone: '+07:00'}\n"
        "fields: {source.ip: src.addr, rule.name: sig}\n"
        "severity: {field: lvl, table: {'1-3': low, '4-6': high, khẩn: critical}}\n"
        "constants: {event.kind: alert, socd.asset_kind: network}\n"
        "keep_vendor: false\n")
    decoder = mapping_decoder("acme.yaml", name="acme", config_dir=str(tmp_path))
    data = (b'{"when": "16/11/2026 08:00:00", "src": {"addr": "10.0.0.1"}, "sig": "x", "lvl": 5}'
            b'\n{"when": "16/11/2026 08:00:01", "lvl": "KHAN"}'
            b'\n{"when": "2026-11-16T08:00:00", "lvl": 1}')
    result = decode(decoder, data)
    a, b = result.events
    assert a["@timestamp"] == "2026-11-16T08:00:00+07:00"
    assert a["source"]["ip"] == "10.0.0.1"
    assert a["socd"]["severity"] == "high"
    assert "vendor" not in a["socd"]
    assert b["socd"]["severity"] == "critical"
    assert "source" not in b
    (failure,) = result.failures
    assert failure.reason == "invalid_field"
    assert "%d/%m/%Y" in failure.detail


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("name: x\nfeilds: {}\n", "did you mean 'fields'?"),
        ("name: x\nseverity: {field: s, table: {a: severe}}\n", "severity.table.a"),
        ("fields: {}\n", "required key is missing"),
        ("name: x\ntimestamp: {field: t, timezone: Asia/Ho_Chi_Minh}\n", "timestamp.timezone"),
        ("name: x\ntimestamp: {field: t, timezone: '+25:00'}\n", "timestamp.timezone"),
        ("name: [x\n", "invalid YAML"),
        ("- just\n- a list\n", "valid dictionary"),
    ],
)
def test_bad_mapping_file_is_a_config_error(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError) as info:
        load_mapping(str(path), str(tmp_path))
    assert str(path) in str(info.value)
    assert expected in str(info.value)


def test_unknown_shipped_mapping_name() -> None:
    with pytest.raises(ConfigError, match="cannot read mapping") as info:
        mapping_decoder("no_such_mapping")
    assert "server_edr, workstation_edr" in str(info.value)


def test_shipped_mappings_validate() -> None:
    for name in ("server_edr", "workstation_edr"):
        path, spec = load_mapping(name, ".")
        assert spec.name == name
        assert path.endswith(f"default/mappings/{name}.yaml")
        assert spec.constants["socd.asset_kind"] in {"server", "workstation"}


def test_decoder_config_base_has_common_options() -> None:
    assert {"type", "severity_table", "keep_original"} <= set(DecoderConfig.model_fields)
