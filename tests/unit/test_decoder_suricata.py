"""The suricata decoder: EVE JSON alert, dns, flow, http, tls and other types."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from socd.decoders.suricata import SuricataDecoder
from socd.event import get
from socd.plugins import DecodeResult, PluginContext, RawRecord

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "suricata"


def decoder(**options: Any) -> SuricataDecoder:
    return SuricataDecoder(SuricataDecoder.Config(type="suricata", **options),
                           PluginContext(name="suricata", dead_letter=None))


def decode(data: bytes, dec: SuricataDecoder | None = None) -> DecodeResult:
    dec = dec or decoder()
    return dec.decode(RawRecord(data, dec.name, "coll", "eve.json", 1794788564.0))


def lines(name: str) -> list[bytes]:
    return [line for line in (FIXTURES / name).read_bytes().splitlines() if line.strip()]


def one(line: bytes, dec: SuricataDecoder | None = None) -> dict[str, Any]:
    result = decode(line, dec)
    assert result.failures == [], result.failures
    (event,) = result.events
    return event


def test_alert_fields_and_severity() -> None:
    event = one(lines("alerts.ndjson")[0])
    assert event["@timestamp"] == "2026-11-16T08:12:44.123456+07:00"
    assert event["event"]["kind"] == "alert"
    assert event["event"]["dataset"] == "suricata.alert"
    assert event["event"]["category"] == ["network", "intrusion_detection"]
    assert event["event"]["type"] == ["allowed"]
    assert event["source"] == {"ip": "203.0.113.45", "port": 51514, "bytes": 206, "packets": 3}
    assert event["destination"] == {"ip": "10.10.20.11", "port": 22, "bytes": 140,
                                    "packets": 2}
    assert event["network"]["transport"] == "tcp"
    assert event["network"]["protocol"] == "ssh"
    assert event["network"]["community_id"] == "1:Nx3Jm9z8Tq3xJ3U0bq5zYVqY3hM="
    assert event["rule"] == {"id": "2001219", "name": "ET SCAN Potential SSH Scan",
                             "category": "Attempted Information Leak", "version": "20"}
    assert event["observer"]["type"] == "ids"
    assert event["observer"]["product"] == "Suricata"
    assert event["observer"]["hostname"] == "ids-dmz-01"
    assert event["socd"]["vendor_severity"] == "2"
    assert event["socd"]["severity"] == "medium"
    assert event["socd"]["severity_label"] == "trung bình"
    assert "vendor" not in event["socd"]


@pytest.mark.parametrize(("index", "severity"), [(0, "medium"), (1, "high"), (2, "low"),
                                                 (5, "low")])
def test_alert_severity_table(index: int, severity: str) -> None:
    assert one(lines("alerts.ndjson")[index])["socd"]["severity"] == severity


def test_alert_without_severity_gets_none_from_the_decoder() -> None:
    event = one(lines("alerts.ndjson")[6])
    assert event["event"]["kind"] == "alert"
    assert "severity" not in event["socd"]  # the classifier's default applies later
    assert event["rule"]["name"] == "SOC-TINH Reverse shell tới cổng 4444"


def test_blocked_alert_and_ipv6() -> None:
    event = one(lines("alerts.ndjson")[2])
    assert event["event"]["type"] == ["denied"]
    assert event["event"]["action"] == "blocked"
    assert event["source"]["ip"] == "2001:db8:c2::7"


def test_alert_with_http_metadata() -> None:
    event = one(lines("alerts.ndjson")[1])
    assert event["url"]["full"] == "http://198.51.100.23/wp-content/plugins/x/?id=8812&k=Q"
    assert event["http"]["request"]["method"] == "POST"
    assert event["user_agent"]["original"].startswith("Mozilla/4.0")


def test_alert_with_old_dns_query_list() -> None:
    event = one(lines("alerts.ndjson")[3])
    assert event["dns"]["question"]["name"] == "paste-bin.to"
    assert event["dns"]["id"] == "40211"


def test_dns_v2_answer() -> None:
    event = one(lines("dns.ndjson")[1])
    assert event["event"]["kind"] == "event"
    assert event["event"]["dataset"] == "suricata.dns"
    dns = event["dns"]
    assert dns["type"] == "answer"
    assert dns["question"] == {"name": "dichvucong.example.gov.vn", "type": "A"}
    assert dns["response_code"] == "NOERROR"
    assert dns["answers"][0] == {"name": "dichvucong.example.gov.vn", "type": "CNAME",
                                 "data": "lb.example.gov.vn", "ttl": 300}
    assert dns["resolved_ip"] == ["10.10.20.30", "10.10.20.31"]
    assert event["network"]["protocol"] == "dns"


def test_dns_grouped_nxdomain_and_v3() -> None:
    grouped = one(lines("dns.ndjson")[2])["dns"]
    assert grouped["resolved_ip"] == ["2001:db8:bad::5"]
    assert {"type": "CNAME", "data": "cdn.mail-gov-vn.example"} in grouped["answers"]
    assert one(lines("dns.ndjson")[3])["dns"]["response_code"] == "NXDOMAIN"
    v3 = one(lines("dns.ndjson")[4])["dns"]
    assert v3["type"] == "query"
    assert v3["question"] == {"name": "kms.activator.example", "type": "TXT"}
    assert one(lines("dns.ndjson")[5])["dns"]["type"] == "answer"


def test_flow_counters() -> None:
    event = one(lines("flow.ndjson")[0])
    assert event["event"]["type"] == ["connection", "end"]
    assert event["event"]["action"] == "flow-closed"
    assert event["source"]["packets"] == 31
    assert event["destination"]["bytes"] == 5032
    assert event["network"]["bytes"] == 4120 + 5032
    assert event["network"]["packets"] == 58
    assert event["event"]["start"] == "2026-11-16T08:12:43.998120+07:00"
    assert event["event"]["end"] == "2026-11-16T08:13:12.441002+07:00"
    icmp = one(lines("flow.ndjson")[2])
    assert icmp["network"]["transport"] == "icmp"
    assert "port" not in icmp["source"]
    failed = one(lines("flow.ndjson")[3])
    assert "protocol" not in failed["network"]  # app_proto "failed" is not a protocol


def test_http_event() -> None:
    event = one(lines("http.ndjson")[0])
    assert event["event"]["category"] == ["network", "web"]
    assert event["url"]["domain"] == "congthongtin.example.gov.vn"
    assert event["url"]["path"] == "/index.php"
    assert event["url"]["query"].startswith("option=com_content")
    assert event["http"]["response"]["status_code"] == 500
    assert event["http"]["response"]["body"]["bytes"] == 2311
    assert event["http"]["version"] == "1.1"
    assert event["user_agent"]["original"].startswith("sqlmap")
    port = one(lines("http.ndjson")[1])
    assert port["url"]["full"] == "http://qlvb.example.gov.vn:8080/qlvb/van-ban/den"
    assert port["http"]["request"]["referrer"] == "http://qlvb.example.gov.vn:8080/qlvb/"
    no_host = one(lines("http.ndjson")[2])
    assert "full" not in no_host["url"]
    assert no_host["url"]["path"] == "/.env"
    assert one(lines("http.ndjson")[3])["http"]["request"]["method"] == "POST"


def test_tls_event() -> None:
    event = one(lines("tls.ndjson")[0])
    tls = event["tls"]
    assert tls["version"] == "1.2"
    assert tls["version_protocol"] == "tls"
    assert tls["client"]["server_name"] == "dichvucong.example.gov.vn"
    assert tls["client"]["ja3"] == "cd08e31494f9531f560d64c695473da9"
    assert tls["server"]["ja3s"] == "f4febc55ea12b31ae17cfb7e614afda8"
    assert tls["server"]["issuer"].endswith("CN=Vi du Public CA G2")
    assert tls["server"]["hash"]["sha1"] == "A1B2C3D4E5F60718293A4B5C6D7E8F90A1B2C3D4"
    assert tls["server"]["not_after"] == "2027-03-01T23:59:59+00:00"
    assert event["destination"]["domain"] == "dichvucong.example.gov.vn"
    assert one(lines("tls.ndjson")[1])["tls"]["version"] == "1.3"
    assert "version" not in one(lines("tls.ndjson")[2]).get("tls", {})


def test_other_types_are_generic_events() -> None:
    events = [one(line) for line in lines("other.ndjson")]
    assert [e["event"]["dataset"] for e in events] == [
        "suricata.anomaly", "suricata.fileinfo", "suricata.ssh", "suricata.stats"]
    assert all(e["event"]["kind"] == "event" for e in events)
    assert events[1]["url"]["original"] == "/dl/hoa-don-dien-tu.zip"
    assert "source" not in events[3]


def test_keep_vendor() -> None:
    line = lines("alerts.ndjson")[0]
    event = one(line, decoder(keep_vendor=True))
    assert event["socd"]["vendor"]["alert"]["signature_id"] == 2001219
    assert event["socd"]["vendor"] == orjson.loads(line)


def test_ndjson_payload_with_bad_lines() -> None:
    result = decode((FIXTURES / "bad.ndjson").read_bytes())
    assert len(result.events) == 1
    reasons = sorted(f.reason for f in result.failures)
    assert reasons == ["invalid_field", "invalid_field", "invalid_json", "missing_field",
                       "missing_field", "missing_field", "not_an_object"]
    details = " ".join(f.detail for f in result.failures)
    assert "event_type" in details
    assert "203.0.113.999" in details


def test_severity_table_can_be_changed() -> None:
    event = one(lines("alerts.ndjson")[0], decoder(severity_table="cef"))
    assert event["socd"]["severity"] == "low"  # 2 on the CEF scale


# -- properties: arbitrary input never raises ---------------------------------------------

_VOCAB = ["timestamp", "event_type", "src_ip", "dest_ip", "src_port", "dest_port", "proto",
          "app_proto", "community_id", "host", "in_iface", "alert", "signature_id",
          "signature", "severity", "category", "action", "rev", "dns", "type", "id", "rrname",
          "rrtype", "rcode", "answers", "grouped", "queries", "query", "rdata", "ttl", "http",
          "hostname", "url", "http_port", "status", "length", "protocol", "http_method",
          "http_user_agent", "tls", "version", "sni", "subject", "issuerdn", "fingerprint",
          "serial", "notbefore", "notafter", "ja3", "ja3s", "hash", "flow", "pkts_toserver",
          "pkts_toclient", "bytes_toserver", "bytes_toclient", "start", "end", "state", "A"]
_EVENT_TYPES = st.sampled_from(["alert", "dns", "flow", "http", "tls", "anomaly", "", "x"])
_SCALARS = (st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
            | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12)
            | st.sampled_from(["2026-11-16T08:12:44.123456+0700", "10.10.20.11", "TCP",
                               "TLS 1.2", "0x1f", "-1", "80"]))
JSON_VALUES = st.recursive(
    _SCALARS,
    lambda children: (st.lists(children, max_size=3)
                      | st.dictionaries(st.sampled_from(_VOCAB) | st.text(max_size=6),
                                        children, max_size=6)),
    max_leaves=25)
EVE_LIKE = st.fixed_dictionaries(
    {"timestamp": st.sampled_from(["2026-11-16T08:12:44.123456+0700"]) | _SCALARS,
     "event_type": _EVENT_TYPES | _SCALARS},
    optional={key: JSON_VALUES for key in _VOCAB if key not in {"timestamp", "event_type"}})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(obj=EVE_LIKE)
def test_arbitrary_eve_like_objects_never_raise(obj: dict[str, Any]) -> None:
    result = decode(orjson.dumps(obj))
    assert len(result.events) + len(result.failures) == 1
    for event in result.events:
        orjson.dumps(event)
        assert get(event, "socd.decoder") == "suricata"


@settings(max_examples=100, deadline=None)
@given(obj=st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=8))
def test_arbitrary_objects_never_raise(obj: dict[str, Any]) -> None:
    result = decode(orjson.dumps(obj))
    assert len(result.events) + len(result.failures) == 1


@settings(max_examples=100, deadline=None)
@given(raw=st.binary(max_size=512))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    decode(raw)


# Real records of Suricata 7.0.10 on the OTRF APT29 day-2 capture of NEWYORK
# (tests/corpus/suricata-otrf-apt29-winrm), shortened.
_ALERT_WITH_MITRE = (
    b'{"timestamp":"2020-05-01T07:11:51.386879+0000","event_type":"alert","src_ip":"10.0.1.5",'
    b'"src_port":61093,"dest_ip":"10.0.0.4","dest_port":5985,"proto":"TCP","alert":{"action":'
    b'"allowed","gid":1,"signature_id":2026850,"rev":4,"signature":"ET USER_AGENTS WinRM User '
    b'Agent Detected - Possible Lateral Movement","category":"Potentially Bad Traffic",'
    b'"severity":2,"metadata":{"mitre_tactic_id":["TA0008"],"mitre_tactic_name":'
    b'["Lateral_Movement"],"mitre_technique_id":["T1021"],"mitre_technique_name":'
    b'["Remote_Services"],"signature_severity":["Minor"]}}}')
_SMB_FILEINFO = (
    b'{"timestamp":"2020-05-01T07:23:58.131200+0000","event_type":"fileinfo","src_ip":'
    b'"10.0.0.4","src_port":445,"dest_ip":"10.0.1.5","dest_port":49669,"proto":"TCP",'
    b'"app_proto":"smb","fileinfo":{"filename":"dmevals.local\\\\Policies\\\\{31B2F340-016D-11D2-'
    b'945F-00C04FB984F9}\\\\gpt.ini","gaps":false,"state":"CLOSED","stored":false,"size":22,'
    b'"tx_id":11}}')


def test_signature_mitre_metadata_becomes_threat() -> None:
    event = one(_ALERT_WITH_MITRE)
    assert event["threat"] == {"framework": "MITRE ATT&CK",
                               "technique": {"id": ["T1021"], "name": ["Remote_Services"]},
                               "tactic": {"name": ["Lateral_Movement"]}}


def test_fileinfo_becomes_file() -> None:
    event = one(_SMB_FILEINFO)
    assert event["file"] == {
        "path": "dmevals.local\\Policies\\{31B2F340-016D-11D2-945F-00C04FB984F9}\\gpt.ini",
        "name": "gpt.ini"}
    record = orjson.loads(_SMB_FILEINFO)
    empty_sha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    record["fileinfo"].update({"filename": "/download/setup.exe",
                               "md5": "D41D8CD98F00B204E9800998ECF8427E",
                               "sha256": empty_sha256, "sha1": "not a hash!"})
    event = one(orjson.dumps(record))
    assert event["file"] == {
        "path": "/download/setup.exe", "name": "setup.exe",
        "hash": {"md5": "d41d8cd98f00b204e9800998ecf8427e",
                 "sha256": empty_sha256}}
