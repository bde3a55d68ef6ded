"""The winlogbeat decoder: ECS passed through, Windows Security events completed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from socd.decoders.winlogbeat import WinlogbeatDecoder
from socd.plugins import DecodeResult, PluginContext, RawRecord

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "winlogbeat"


def decoder(**options: Any) -> WinlogbeatDecoder:
    return WinlogbeatDecoder(WinlogbeatDecoder.Config(type="winlogbeat", **options),
                             PluginContext(name="winlogbeat", dead_letter=None))


def decode(data: bytes, dec: WinlogbeatDecoder | None = None) -> DecodeResult:
    dec = dec or decoder()
    return dec.decode(RawRecord(data, dec.name, "coll", "winlogbeat", 1794788564.0))


def records(name: str) -> list[bytes]:
    return [line for line in (FIXTURES / name).read_bytes().splitlines() if line.strip()]


SECURITY = records("security.ndjson")


def one(line: bytes, dec: WinlogbeatDecoder | None = None) -> dict[str, Any]:
    result = decode(line, dec)
    assert result.failures == [], result.failures
    (event,) = result.events
    return event


def test_4624_logon_success_passes_ecs_through() -> None:
    event = one(SECURITY[0])
    assert event["@timestamp"] == "2026-11-16T01:12:44.123000+00:00"
    assert event["event"]["kind"] == "event"
    assert event["event"]["category"] == ["authentication"]
    assert event["event"]["type"] == ["start"]
    assert event["event"]["outcome"] == "success"
    assert event["event"]["action"] == "logged-in"
    assert event["event"]["code"] == "4624"
    assert event["user"]["name"] == "ketoan01"
    assert event["user"]["domain"] == "STC"
    assert event["source"]["ip"] == "127.0.0.1"
    assert "port" not in event["source"]  # IpPort 0
    assert event["winlog"]["logon"] == {"type": "Interactive", "id": "0x3e7a21c"}
    assert event["process"]["name"] == "svchost.exe"
    assert event["process"]["pid"] == 0x3C4
    assert event["host"]["os"]["build"] == "19045.5131"  # untouched ECS
    assert event["agent"]["type"] == "winlogbeat"
    assert event["socd"]["asset_kind"] == "workstation"
    assert "severity" not in event["socd"]


def test_4625_logon_failure() -> None:
    event = one(SECURITY[1])
    assert event["event"]["outcome"] == "failure"
    assert event["event"]["action"] == "logon-failed"
    assert event["event"]["reason"] == "wrong password"
    assert event["source"] == {"ip": "203.0.113.45", "port": 50122, "domain": "KALI"}
    assert event["user"]["name"] == "administrator"
    assert event["winlog"]["logon"]["type"] == "Network"
    assert "process" not in event  # ProcessName "-"
    assert event["socd"]["asset_kind"] == "server"
    numeric = one(SECURITY[2])  # Winlogbeat 7 style: event_id as a number
    assert numeric["winlog"]["event_id"] == "4625"
    assert numeric["event"]["reason"] == "user name does not exist"
    assert numeric["winlog"]["logon"]["type"] == "RemoteInteractive"


def test_4688_process_creation() -> None:
    event = one(SECURITY[3])
    process = event["process"]
    assert process["executable"].endswith("powershell.exe")
    assert process["name"] == "powershell.exe"
    assert process["pid"] == 0x1A2C
    assert process["command_line"].startswith("powershell.exe -nop -w hidden -enc")
    assert process["parent"] == {
        "executable": "C:\\Program Files\\Microsoft Office\\root\\Office16\\WINWORD.EXE",
        "name": "WINWORD.EXE", "pid": 0x2B10}
    assert event["user"]["name"] == "trangvh"
    assert event["event"]["category"] == ["process"]


def test_4720_account_created_is_a_medium_alert() -> None:
    event = one(SECURITY[4])
    assert event["event"]["kind"] == "alert"
    assert event["event"]["category"] == ["iam"]
    assert event["event"]["type"] == ["user", "creation"]
    assert event["user"]["name"] == "Administrator"
    assert event["user"]["target"] == {"name": "support_tmp", "domain": "TINH"}
    assert event["socd"]["severity"] == "medium"
    assert event["socd"]["severity_label"] == "trung bình"
    assert event["rule"]["id"] == "windows-security-4720"


def test_1102_audit_log_cleared_is_a_high_alert() -> None:
    event = one(SECURITY[5])
    assert event["event"]["kind"] == "alert"
    assert event["event"]["action"] == "audit-log-cleared"
    assert event["socd"]["severity"] == "high"
    assert event["user"]["name"] == "anhk"
    assert event["rule"]["name"] == "Windows security audit log cleared"
    assert event["socd"]["asset_kind"] == "workstation"


def test_4672_and_4740() -> None:
    special = one(SECURITY[6])
    assert special["event"]["category"] == ["iam"]
    assert special["event"]["kind"] == "event"
    assert special["winlog"]["logon"]["id"] == "0x8d2f11"
    lockout = one(SECURITY[7])
    assert lockout["event"]["action"] == "locked-out-user-account"
    assert lockout["user"]["target"] == {"name": "ketoan01"}
    assert lockout["source"]["domain"] == "PC-STC-012"
    assert lockout["event"]["kind"] == "event"


def test_dotted_keys_and_missing_ip() -> None:
    dotted = one(SECURITY[8])
    assert dotted["user"]["name"] == "vanthu02"
    assert dotted["source"] == {"ip": "10.20.3.55", "port": 49811}
    assert dotted["socd"]["asset_kind"] == "workstation"
    anonymous = one(SECURITY[9])
    assert "source" not in anonymous
    assert anonymous["socd"]["asset_kind"] == "server"  # Windows Server 2022


def test_other_channels_pass_through() -> None:
    events = [one(line) for line in records("other-channels.ndjson")]
    sysmon, task, service, bare = events
    assert sysmon["event"]["module"] == "sysmon"
    assert sysmon["process"]["pid"] == 4412
    # event.code 1102 on another channel is not "audit log cleared"
    assert task["event"]["kind"] == "event"
    assert "severity" not in task["socd"]
    assert service["event"]["dataset"] == "windows.system"
    assert bare["event"]["kind"] == "event"
    assert bare["socd"]["asset_kind"] == "workstation"


def test_alert_ids_are_configurable() -> None:
    dec = decoder(alert_event_ids={"4740": "low"})
    assert one(SECURITY[7], dec)["socd"]["severity"] == "low"
    assert one(SECURITY[5], dec)["event"]["kind"] == "event"


def test_decoder_asset_kind_is_kept() -> None:
    line = orjson.loads(SECURITY[0])
    line["socd"] = {"asset_kind": "application"}
    assert one(orjson.dumps(line))["socd"]["asset_kind"] == "application"


def test_bad_records() -> None:
    result = decode((FIXTURES / "bad.ndjson").read_bytes())
    assert len(result.events) == 2
    assert sorted(f.reason for f in result.failures) == [
        "invalid_field", "invalid_field", "invalid_field", "invalid_json"]
    # A host name in IpAddress fails the address gate: the failed logon still counts,
    # without source.ip, and the raw value stays in event_data.
    named = result.events[1]
    assert "source" not in named
    assert named["winlog"]["event_data"]["IpAddress"] == "WORKSTATION-7"
    assert named["event"]["outcome"] == "failure"


@pytest.mark.parametrize("server_os", ["Windows Server 2019 Standard",
                                       "Microsoft Windows Server 2012 R2"])
def test_server_detection(server_os: str) -> None:
    line = orjson.loads(SECURITY[0])
    line["host"]["os"] = {"name": server_os}
    assert one(orjson.dumps(line))["socd"]["asset_kind"] == "server"


# -- properties ----------------------------------------------------------------------------

_VOCAB = ["@timestamp", "event", "code", "kind", "winlog", "event_id", "channel",
          "event_data", "user_data", "TargetUserName", "TargetDomainName", "IpAddress",
          "IpPort", "LogonType", "SubStatus", "Status", "NewProcessName", "NewProcessId",
          "ProcessId", "ProcessName", "CommandLine", "ParentProcessName", "SubjectUserName",
          "SubjectLogonId", "logon", "host", "os", "name", "ip", "socd", "asset_kind",
          "severity", "user", "source", "process", "rule", "event.code", "winlog.event_id",
          "host.os.name", "source.ip"]
_SCALARS = (st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
            | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12)
            | st.sampled_from(["4624", "4625", "4688", "4720", "1102", "4672", "4740",
                               "Security", "0x1a2c", "10.20.3.55", "-", "Windows Server"]))
JSON_VALUES = st.recursive(
    _SCALARS,
    lambda children: (st.lists(children, max_size=3)
                      | st.dictionaries(st.sampled_from(_VOCAB) | st.text(max_size=6),
                                        children, max_size=6)),
    max_leaves=25)
_SECURITY_IDS = st.sampled_from(["4624", "4625", "4688", "4720", "1102", "4672", "4740"])
WINLOG_LIKE = st.fixed_dictionaries(
    {"winlog": st.fixed_dictionaries(
        {"event_id": _SECURITY_IDS | _SCALARS},
        optional={"channel": st.just("Security") | _SCALARS,
                  "event_data": st.dictionaries(st.sampled_from(_VOCAB), JSON_VALUES,
                                                max_size=8) | _SCALARS,
                  "user_data": JSON_VALUES, "logon": JSON_VALUES})},
    optional={key: JSON_VALUES for key in _VOCAB if key != "winlog"})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(obj=WINLOG_LIKE)
def test_arbitrary_winlogbeat_like_objects_never_raise(obj: dict[str, Any]) -> None:
    result = decode(orjson.dumps(obj))
    assert len(result.events) + len(result.failures) == 1
    for event in result.events:
        orjson.dumps(event)


@settings(max_examples=100, deadline=None)
@given(obj=st.dictionaries(st.sampled_from(_VOCAB) | st.text(max_size=8), JSON_VALUES,
                           max_size=8))
def test_arbitrary_objects_never_raise(obj: dict[str, Any]) -> None:
    result = decode(orjson.dumps(obj))
    assert len(result.events) + len(result.failures) == 1


@settings(max_examples=100, deadline=None)
@given(raw=st.binary(max_size=512))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    decode(raw)
