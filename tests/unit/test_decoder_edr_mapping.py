"""The shipped EDR mappings on their fixtures, and "a new vendor needs YAML, not code"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from socd import config as config_mod
from socd.app.components import build_decoders
from socd.decoders.mapping import MappingDecoder
from socd.plugins import DecodeResult, PluginContext, RawRecord

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "edr"


def mapping_decoder(mapping: str, config_dir: str = ".") -> MappingDecoder:
    return MappingDecoder(MappingDecoder.Config(type="mapping", mapping=mapping),
                          PluginContext(name=mapping, dead_letter=None, config_dir=config_dir))


def decode(dec: Any, data: bytes) -> DecodeResult:
    return dec.decode(RawRecord(data, dec.name, "coll", "edr", 1794788564.0))


def records(name: str) -> list[bytes]:
    return [line for line in (FIXTURES / name).read_bytes().splitlines() if line.strip()]


def decode_all(mapping: str, name: str) -> list[dict[str, Any]]:
    dec = mapping_decoder(mapping)
    events = []
    for line in records(name):
        result = decode(dec, line)
        assert result.failures == [], (line, result.failures)
        events.extend(result.events)
    return events


def test_server_edr_every_severity_and_action() -> None:
    events = decode_all("server_edr", "server_edr.ndjson")
    got = [(e["socd"].get("vendor_severity"), e["socd"]["severity"]) for e in events]
    assert got == [
        ("Trung bình", "medium"), ("Cao", "high"), ("Nghiêm trọng", "critical"),
        ("Nghiem trong", "critical"), ("High", "high"), ("Critical", "critical"),
        ("medium", "medium"), ("CAO", "high"), (None, "medium"), ("Khẩn cấp", "medium")]
    assert {e["event"]["action"] for e in events} == {"detected", "quarantined", "blocked",
                                                      "killed"}
    assert all(e["event"]["kind"] == "alert" for e in events)
    assert all(e["socd"]["asset_kind"] == "server" for e in events)
    labels = {e["socd"]["severity"]: e["socd"]["severity_label"] for e in events}
    assert labels["critical"] == "nghiêm trọng"


def test_server_edr_fields_and_missing_optional_ones() -> None:
    events = decode_all("server_edr", "server_edr.ndjson")
    first = events[0]
    assert first["@timestamp"] == "2026-11-17T08:02:11+07:00"
    assert first["host"] == {"name": "srv-dvc-01", "ip": "10.10.20.11", "os": {
        "full": "Ubuntu 22.04"}}
    assert first["destination"] == {"ip": "203.0.113.45", "port": 51514}
    assert first["network"]["direction"] == "inbound"
    assert events[1]["file"]["hash"]["md5"] == "acbd18db4cc2f85cedef654fccc4a4d8"
    sparse = events[7]  # hostname, severity, threat name and action only
    assert "ip" not in sparse["host"]
    assert "message" not in sparse
    assert "destination" not in events[8]  # empty remote_ip and null remote_port


def test_workstation_edr_every_severity_and_action() -> None:
    events = decode_all("workstation_edr", "workstation_edr.ndjson")
    got = [e["socd"]["severity"] for e in events]
    assert got == ["low", "medium", "high", "low", "medium", "high", "low", "medium",
                   "medium"]
    assert {e["event"]["action"] for e in events} == {"Cleaned", "Quarantined", "Blocked",
                                                      "Detected"}
    assert events[0]["socd"]["unit"] == "Sở Tài chính"
    assert events[3]["socd"]["unit"] == "So Noi vu"  # kept as sent; the inventory may fix it
    assert events[1]["destination"]["ip"] == "198.51.100.23"
    assert events[7]["@timestamp"] == "2026-11-17T09:20:00+07:00"  # offset assumed
    assert "ip" not in events[8].get("host", {})
    assert all(e["socd"]["asset_kind"] == "workstation" for e in events)


@pytest.mark.parametrize(("mapping", "name", "reasons"), [
    ("server_edr", "server_edr_bad.ndjson",
     ["invalid_field", "invalid_field", "invalid_field", "invalid_json", "missing_field"]),
    ("workstation_edr", "workstation_edr_bad.ndjson",
     ["invalid_field", "invalid_field", "missing_field", "not_an_object"]),
])
def test_bad_records(mapping: str, name: str, reasons: list[str]) -> None:
    dec = mapping_decoder(mapping)
    events, failures = [], []
    for line in records(name):
        result = decode(dec, line)
        events.extend(result.events)
        failures.extend(f.reason for f in result.failures)
    assert len(events) == 1
    assert sorted(set(failures)) == sorted(set(reasons))
    assert len(failures) >= len(reasons)


NEW_VENDOR_YAML = """\
# A made-up vendor, written by an analyst: no code change needed.
name: acme_xdr
description: ACME XDR (fictional) - nested JSON, English severities 1-4, dd/mm/yyyy times.
timestamp: {field: meta.when, format: "%d/%m/%Y %H:%M:%S", timezone: "+07:00"}
fields:
  event.id: meta.uuid
  host.name: endpoint.fqdn
  host.ip: endpoint.addr
  rule.name: verdict.title
  file.hash.sha256: verdict.sha256
  event.action: response
severity:
  field: verdict.risk
  table: {"1": low, "2": medium, "3": high, "4": critical, severe: critical}
  default: medium
constants:
  event.kind: alert
  event.module: acme_xdr
  observer.vendor: ACME
  socd.asset_kind: server
keep_vendor: false
"""

NEW_VENDOR_RECORDS = [
    {"meta": {"uuid": "a-1", "when": "17/11/2026 14:05:02"},
     "endpoint": {"fqdn": "srv-dvc-01.tinh.local", "addr": "10.10.20.11"},
     "verdict": {"title": "Cobalt Strike beacon", "risk": 4,
                 "sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
     "response": "isolated"},
    {"meta": {"uuid": "a-2", "when": "17/11/2026 14:06:00"},
     "endpoint": {"fqdn": "srv-mail-01"}, "verdict": {"title": "Adware", "risk": "1"}},
    {"meta": {"uuid": "a-3", "when": "17/11/2026 14:07:00"},
     "endpoint": {"fqdn": "srv-web-02"}, "verdict": {"title": "Webshell", "risk": "SEVERE"}},
    {"meta": {"uuid": "a-4", "when": "2026-11-17T14:08:00"}, "endpoint": {"fqdn": "x"}},
]


def test_a_new_vendor_needs_yaml_not_code(tmp_path: Path, isolated_env: Path) -> None:
    (tmp_path / "mappings").mkdir()
    (tmp_path / "mappings" / "acme_xdr.yaml").write_text(NEW_VENDOR_YAML, encoding="utf-8")
    config_file = tmp_path / "socd.yaml"
    config_file.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        "decoders:\n"
        "  acme:\n"
        "    type: mapping\n"
        "    mapping: mappings/acme_xdr.yaml\n", encoding="utf-8")
    cfg = config_mod.load(config_file)
    decoders = build_decoders(cfg, dead_letter=None)  # type: ignore[arg-type]
    acme = decoders["acme"]
    payload = b"\n".join(orjson.dumps(r) for r in NEW_VENDOR_RECORDS)
    result = decode(acme, payload)
    assert [f.reason for f in result.failures] == ["invalid_field"]  # a-4: wrong time format
    first, second, third = result.events
    assert first["@timestamp"] == "2026-11-17T14:05:02+07:00"
    assert first["event"]["id"] == "a-1"
    assert first["event"]["action"] == "isolated"
    assert first["host"] == {"name": "srv-dvc-01.tinh.local", "ip": "10.10.20.11"}
    assert first["rule"]["name"] == "Cobalt Strike beacon"
    assert first["socd"]["severity"] == "critical"
    assert first["socd"]["decoder"] == "acme"
    assert first["socd"]["asset_kind"] == "server"
    assert "vendor" not in first["socd"]
    assert second["socd"]["severity"] == "low"
    assert third["socd"]["severity"] == "critical"  # "SEVERE" folded to "severe"


def test_a_new_vendor_replays_from_the_command_line(
        tmp_path: Path, isolated_env: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    from socd import cli

    (tmp_path / "acme_xdr.yaml").write_text(NEW_VENDOR_YAML, encoding="utf-8")
    config_file = tmp_path / "socd.yaml"
    config_file.write_text("decoders:\n  acme: {type: mapping, mapping: acme_xdr.yaml}\n",
                           encoding="utf-8")
    data = tmp_path / "acme.ndjson"
    data.write_bytes(b"\n".join(orjson.dumps(r) for r in NEW_VENDOR_RECORDS[:3]) + b"\n")
    code = cli.main(["replay", "-c", str(config_file), "--format", "acme", str(data)])
    out, err = capsysbinary.readouterr()
    assert code == 0, err
    events = [orjson.loads(line) for line in out.splitlines()]
    assert [e["socd"]["severity"] for e in events] == ["critical", "low", "critical"]


# -- properties ----------------------------------------------------------------------------

_SCALARS = (st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
            | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12))
JSON_VALUES = st.recursive(
    _SCALARS, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c,
                                                                   max_size=4), max_leaves=15)


@pytest.mark.parametrize("name", ["server_edr", "workstation_edr"])
def test_mutated_fixture_records_never_raise(name: str) -> None:
    dec = mapping_decoder(name)
    base = [orjson.loads(line) for line in records(f"{name}.ndjson")]

    @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(index=st.integers(0, len(base) - 1), data=st.data())
    def check(index: int, data: st.DataObject) -> None:
        record = dict(base[index])
        key = data.draw(st.sampled_from(sorted(record)))
        record[key] = data.draw(JSON_VALUES)
        result = decode(dec, orjson.dumps(record))
        assert len(result.events) + len(result.failures) == 1

    check()
