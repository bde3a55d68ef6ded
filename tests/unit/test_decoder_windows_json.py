"""The windows_json decoder: flat NXLog-style Windows events, completed as Winlogbeat's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from socd.decoders.windows_json import MAX_VALUE_CHARS, TRUNCATED_TAG, WindowsJsonDecoder
from socd.decoders.winlogbeat import WinlogbeatDecoder
from socd.plugins import DecodeResult, PluginContext, RawRecord, ZoneAware
from socd.zones import SenderZones

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "windows_json"


def decoder(**options: Any) -> WindowsJsonDecoder:
    return WindowsJsonDecoder(WindowsJsonDecoder.Config(type="windows_json", **options),
                              PluginContext(name="windows_json", dead_letter=None))


def decode(data: bytes, dec: WindowsJsonDecoder | None = None) -> DecodeResult:
    dec = dec or decoder()
    return dec.decode(RawRecord(data, dec.name, "coll", "nxlog", 1794788564.0))


def one(obj: dict[str, Any] | bytes, dec: WindowsJsonDecoder | None = None) -> dict[str, Any]:
    result = decode(obj if isinstance(obj, bytes) else orjson.dumps(obj), dec)
    assert result.failures == [], result.failures
    (event,) = result.events
    return event


OTRF = [line for line in (FIXTURES / "otrf.ndjson").read_bytes().splitlines() if line.strip()]
(SPRAY_4625, NTLM_4776, RC4_4769, NET_4624, TASK_4698, USER_4720, GROUP_4728, SYSMON_1,
 PROC_4688, CLEAR_1102, CLEAR_104, SVC_7045, SVC_4697, SHARE_5145) = OTRF


def test_nxlog_envelope() -> None:
    event = one(NET_4624)
    assert event["@timestamp"] == "2020-12-19T07:00:22.238000+00:00"  # @timestamp wins
    assert event["event"]["code"] == event["winlog"]["event_id"] == "4624"
    assert event["event"]["module"] == "windows"
    assert event["event"]["dataset"] == "windows.security"
    assert event["event"]["provider"] == "Microsoft-Windows-Security-Auditing"
    assert event["host"] == {"name": "WORKSTATION6.theshire.local",
                             "hostname": "WORKSTATION6.theshire.local"}
    assert event["winlog"]["channel"] == "Security"
    assert event["winlog"]["computer_name"] == "WORKSTATION6.theshire.local"
    data = event["winlog"]["event_data"]
    assert data["TargetUserName"] == "pgustavo"
    assert not {"Hostname", "Message", "EventID", "@timestamp"} & set(data)
    assert event["message"].startswith("An account was successfully logged on.")
    assert event["socd"]["decoder"] == "windows_json"
    assert event["event"]["kind"] == "event"


def test_4624_network_logon_like_winlogbeat() -> None:
    event = one(NET_4624)
    assert event["event"]["category"] == ["authentication"]
    assert event["event"]["outcome"] == "success"
    assert event["user"]["name"] == "pgustavo"
    assert event["source"]["ip"] == "172.18.39.5"
    assert event["winlog"]["logon"] == {"type": "Network", "id": "0xead4335"}


def test_same_fields_as_winlogbeat() -> None:
    """The rules read one shape: a record shipped by Winlogbeat with the same event data
    gives the same ECS fields."""
    flat = orjson.loads(NET_4624)
    data = {k: v for k, v in flat.items() if k[0].isupper() and k not in (
        "EventID", "Channel", "Hostname", "SourceName", "Message", "TimeCreated", "Keywords",
        "Task", "Level", "ProviderGuid")}
    wlb = WinlogbeatDecoder(WinlogbeatDecoder.Config(type="winlogbeat"),
                            PluginContext(name="winlogbeat", dead_letter=None))
    shipped = wlb.decode(RawRecord(orjson.dumps({
        "@timestamp": flat["@timestamp"], "host": {"name": flat["Hostname"]},
        "winlog": {"event_id": 4624, "channel": "Security", "event_data": data}}),
        "winlogbeat", "coll", "wlb", 1794788564.0)).events[0]
    event = one(NET_4624)
    for key in ("user", "source", "process"):
        assert event.get(key) == shipped.get(key), key
    assert event["winlog"]["logon"] == shipped["winlog"]["logon"]
    for key in ("category", "type", "outcome", "action"):
        assert event["event"][key] == shipped["event"][key]


def test_spray_failures() -> None:
    local = one(SPRAY_4625)
    assert local["event"]["outcome"] == "failure"
    assert local["event"]["reason"] == "wrong password"
    assert "ip" not in local.get("source", {})  # IpAddress "-"
    assert local["source"]["domain"] == "WORKSTATION5"
    ntlm = one(NTLM_4776)
    assert ntlm["event"]["action"] == "ntlm-credential-validation"
    assert ntlm["event"]["outcome"] == "failure"
    assert ntlm["event"]["reason"] == "wrong password"
    assert ntlm["user"]["name"] == "lrodriguez"
    assert ntlm["source"] == {"domain": "WORKSTATION5"}


def test_kerberos_service_ticket() -> None:
    event = one(RC4_4769)
    assert event["event"]["action"] == "kerberos-service-ticket-requested"
    assert event["event"]["outcome"] == "success"
    assert event["user"] == {"name": "pgustavo", "domain": "THESHIRE.LOCAL"}
    assert event["source"]["ip"] == "172.18.39.5"  # ::ffff:172.18.39.5
    assert event["winlog"]["event_data"]["TicketEncryptionType"] == "0x17"


def test_scheduled_task_in_the_logon_session() -> None:
    event = one(TASK_4698)
    assert event["event"]["action"] == "scheduled-task-created"
    assert event["user"]["name"] == "pgustavo"
    assert event["winlog"]["logon"]["id"] == one(NET_4624)["winlog"]["logon"]["id"]


def test_account_and_group() -> None:
    created = one(USER_4720)
    assert created["user"]["name"] == "pgustavo"
    assert created["user"]["target"] == {"name": "backdoor", "domain": "WORKSTATION6"}
    assert created["event"]["kind"] == "event"  # the rule raises the alert, not the decoder
    group = one(GROUP_4728)
    assert group["event"]["action"] == "added-member-to-group"
    assert group["group"] == {"name": "None", "domain": "WORKSTATION6",
                              "id": "S-1-5-21-1969843730-2406867588-1543852148-513"}
    assert group["user"]["target"] == {"id": "S-1-5-21-1969843730-2406867588-1543852148-1000"}


def test_process_from_sysmon_and_4688() -> None:
    sysmon = one(SYSMON_1)
    assert sysmon["event"]["module"] == "sysmon"
    assert sysmon["event"]["dataset"] == "windows.microsoft-windows-sysmon_operational"
    assert sysmon["process"]["name"] == "net.exe"
    assert sysmon["process"]["pid"] == 7768
    assert sysmon["process"]["parent"]["name"] == "WmiPrvSE.exe"
    assert sysmon["user"] == {"name": "pgustavo", "domain": "THESHIRE"}
    security = one(PROC_4688)
    assert security["process"]["name"] == "net.exe"
    assert security["process"]["pid"] == 7768  # NewProcessId 0x1e58
    assert security["process"]["command_line"] == sysmon["process"]["command_line"]


def test_logs_cleared() -> None:
    security = one(CLEAR_1102)
    assert security["@timestamp"] == "2020-10-19T03:30:41.104000+00:00"  # TimeCreated, UTC
    assert security["event"]["action"] == "audit-log-cleared"
    # No UserData fields in the record: the subject comes from the rendered message.
    assert security["user"] == {"name": "wardog", "domain": "WORKSTATION5",
                                "id": "S-1-5-21-3940915590-64593676-1414006259-500"}
    system = one(CLEAR_104)
    assert system["event"]["action"] == "log-cleared"
    assert system["winlog"]["channel"] == "System"


def test_services_and_shares() -> None:
    system = one(SVC_7045)
    assert system["event"]["action"] == "service-installed"
    assert system["winlog"]["event_data"]["ServiceName"] == "PSEXESVC"
    security = one(SVC_4697)
    assert security["user"]["name"] == "wardog"
    assert security["winlog"]["logon"]["id"] == "0xc61d9"
    share = one(SHARE_5145)
    assert share["event"]["action"] == "network-share-object-access-checked"
    assert share["source"] == {"ip": "fe80::90e:17af:263c:5209", "port": 58391}


def test_event_time_in_the_decoder_zone() -> None:
    record = {"EventTime": "2026-11-16 08:05:43", "EventID": 4624, "Channel": "Security"}
    assert one(record)["@timestamp"] == "2026-11-16T08:05:43+07:00"
    assert one(record, decoder(timezone="UTC"))["@timestamp"] == "2026-11-16T08:05:43+00:00"
    with_offset = dict(record, EventTime="2026-11-16T08:05:43-04:00")
    assert one(with_offset)["@timestamp"] == "2026-11-16T08:05:43-04:00"
    received = {"EventReceivedTime": "2026-11-16 08:05:45", "EventID": 4624}
    assert one(received)["@timestamp"] == "2026-11-16T08:05:45+07:00"


def test_collector_zones_take_precedence() -> None:
    """A collector's timezone / sender_timezones (by Hostname or sender address) decide the
    zone of EventTime, as for syslog (the decoder is ZoneAware)."""
    dec = decoder()
    assert isinstance(dec, ZoneAware)
    dec.assume_zones({"coll": SenderZones.from_config(
        "UTC", {"PC-STC-012": "+03:00", "10.20.0.0/16": "-04:00"})})
    record = {"EventTime": "2026-11-16 08:05:43", "EventID": 4624}

    def stamp(obj: dict[str, Any], collector: str = "coll", source: str = "nxlog") -> str:
        raw = RawRecord(orjson.dumps(obj), dec.name, collector, source, 1794788564.0)
        return str(dec.decode(raw).events[0]["@timestamp"])

    assert stamp(record) == "2026-11-16T08:05:43+00:00"
    assert stamp(dict(record, Hostname="pc-stc-012")) == "2026-11-16T08:05:43+03:00"
    assert stamp(record, source="tcp://10.20.5.37:51514") == "2026-11-16T08:05:43-04:00"
    assert stamp(record, collector="other") == "2026-11-16T08:05:43+07:00"


def test_alert_ids_are_opt_in() -> None:
    assert one(CLEAR_1102)["event"]["kind"] == "event"
    marked = one(CLEAR_1102, decoder(alert_event_ids={"1102": "high"}))
    assert marked["event"]["kind"] == "alert"
    assert marked["rule"]["id"] == "windows-security-1102"
    assert marked["socd"]["severity"] == "high"
    assert marked["socd"]["severity_label"] == "cao"
    # 1102 of another channel (TaskScheduler has one) is not the audit log cleared.
    other = one({"EventID": 1102, "Channel": "Microsoft-Windows-TaskScheduler/Operational"},
                decoder(alert_event_ids={"1102": "high"}))
    assert other["event"]["kind"] == "event"
    assert "action" not in other["event"]


def test_event_types_and_levels() -> None:
    event = one({"EventID": 4656, "Channel": "Security", "EventType": "AUDIT_FAILURE",
                 "Severity": "ERROR", "RecordNumber": 4242, "Keywords": -1})
    assert event["event"]["outcome"] == "failure"
    assert event["log"]["level"] == "error"
    assert event["winlog"]["record_id"] == "4242"
    assert event["winlog"]["event_data"] == {}


def test_unmapped_events_keep_their_data_as_text() -> None:
    event = one({"EventID": "5156", "Channel": "Security", "SourcePort": 5353, "Flag": True,
                 "Ratio": 0.5, "Nested": {"a": 1}, "List": [1], "Empty": None})
    assert event["winlog"]["event_data"] == {"SourcePort": "5353", "Flag": "true",
                                             "Ratio": "0.5"}
    assert "category" not in event["event"]


def test_bad_records() -> None:
    result = decode((FIXTURES / "bad.ndjson").read_bytes())
    (named,) = result.events
    assert "source" not in named or "ip" not in named["source"]
    assert named["winlog"]["event_data"]["IpAddress"] == "WORKSTATION-7"
    assert named["event"]["outcome"] == "failure"
    assert sorted(f.reason for f in result.failures) == [
        "invalid_field", "invalid_field", "invalid_field", "invalid_field", "invalid_json",
        "missing_field", "not_an_object"]


@pytest.mark.parametrize("value", ["", "-", "null", None])
def test_no_address(value: str | None) -> None:
    event = one({"EventID": 4625, "Channel": "Security", "TargetUserName": "a",
                 "IpAddress": value})
    assert "ip" not in event.get("source", {})


def test_truncated_values_are_tagged() -> None:
    event = one({"EventID": 4688, "Channel": "Security", "NewProcessName": "C:\\x.exe",
                 "CommandLine": "a" * (MAX_VALUE_CHARS + 10)})
    assert len(event["process"]["command_line"]) == MAX_VALUE_CHARS
    assert event["tags"] == [TRUNCATED_TAG]


# -- properties ----------------------------------------------------------------------------

_KEYS = ["EventID", "Channel", "Hostname", "EventTime", "TimeCreated", "@timestamp",
         "TargetUserName", "IpAddress", "IpPort", "LogonType", "Status", "SubStatus",
         "Workstation", "SubjectLogonId", "TargetLogonId", "MemberName", "Message", "Image",
         "ParentImage", "ProcessId", "User", "ServiceName", "socd", "socd.severity"]
_SCALARS = (st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
            | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12)
            | st.sampled_from(["4624", "4625", "4776", "4769", "1102", "104", "7045", "1",
                               "Security", "System", "Microsoft-Windows-Sysmon/Operational",
                               "::ffff:10.0.0.1", "fe80::1%12", "-", "0x1a2c", "0x0",
                               "CN=a\\,b,DC=x", "2026-11-16 08:05:43", "a@REALM"]))
_VALUES = st.recursive(_SCALARS, lambda c: st.lists(c, max_size=3)
                       | st.dictionaries(st.text(max_size=5), c, max_size=3), max_leaves=10)
RECORDS = st.fixed_dictionaries(
    {"EventID": st.sampled_from([4624, 4625, 4648, 4672, 4688, 4697, 4698, 4720, 4728, 4740,
                                 4768, 4769, 4771, 4776, 5140, 5145, 1102, 104, 7045, 1])
     | _SCALARS},
    optional={"Channel": st.sampled_from(["Security", "System", "security",
                                          "Microsoft-Windows-Sysmon/Operational"]) | _SCALARS,
              **{key: _VALUES for key in _KEYS if key not in ("EventID", "Channel")}})


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(obj=RECORDS)
def test_arbitrary_records_never_raise(obj: dict[str, Any]) -> None:
    result = decode(orjson.dumps(obj))
    assert len(result.events) + len(result.failures) == 1
    for event in result.events:
        orjson.dumps(event)
        assert set(event["socd"]) <= {"collector", "decoder", "source", "severity",
                                      "severity_label"}


@settings(max_examples=100, deadline=None)
@given(raw=st.binary(max_size=512))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    decode(raw)
