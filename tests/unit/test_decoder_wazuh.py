"""The wazuh decoder: alerts.json records become ECS alerts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from socd.decoders.wazuh import WazuhDecoder
from socd.plugins import DecodeResult, PluginContext, RawRecord

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "wazuh"


def decoder(**options: Any) -> WazuhDecoder:
    return WazuhDecoder(WazuhDecoder.Config(type="wazuh", **options),
                        PluginContext(name="wazuh", dead_letter=None))


def decode(data: bytes, dec: WazuhDecoder | None = None) -> DecodeResult:
    dec = dec or decoder()
    return dec.decode(RawRecord(data, dec.name, "coll", "alerts.json", 1794788564.0))


ALERTS = [line for line in (FIXTURES / "alerts.ndjson").read_bytes().splitlines() if line]


def one(line: bytes, dec: WazuhDecoder | None = None) -> dict[str, Any]:
    result = decode(line, dec)
    assert result.failures == [], result.failures
    (event,) = result.events
    return event


def test_sshd_brute_force() -> None:
    event = one(ALERTS[0])
    assert event["@timestamp"] == "2026-11-16T08:12:44.512000+07:00"
    assert event["event"]["kind"] == "alert"
    assert event["event"]["module"] == "wazuh"
    assert event["event"]["id"] == "1794791564.4481203"
    assert event["event"]["severity"] == 10
    assert event["socd"]["vendor_severity"] == "10"
    assert event["socd"]["severity"] == "high"
    assert event["rule"] == {"ruleset": "wazuh", "id": "5712", "category":
                             "authentication_failures", "name": "sshd: brute force trying to "
                             "get access to the system. Non existent user."}
    assert event["tags"] == ["syslog", "sshd", "authentication_failures"]
    assert event["threat"] == {"framework": "MITRE ATT&CK",
                               "technique": {"id": ["T1110"], "name": ["Brute Force"]},
                               "tactic": {"name": ["Credential Access"]}}
    assert event["agent"] == {"id": "003", "name": "srv-dvc-01"}
    assert event["host"] == {"id": "003", "name": "srv-dvc-01", "ip": ["10.10.20.11"]}
    assert event["observer"]["name"] == "wazuh-ttth-01"
    assert event["source"] == {"ip": "203.0.113.45", "port": 51514,
                               "user": {"name": "oracle"}}
    assert event["user"] == {"name": "oracle"}
    assert event["event"]["provider"] == "sshd"
    assert event["log"]["file"]["path"] == "/var/log/auth.log"
    assert event["message"].endswith("Invalid user oracle from 203.0.113.45 port 51514")
    assert event["event"]["original"] == event["message"]
    assert event["event"]["category"] == ["authentication"]
    assert event["event"]["outcome"] == "failure"


@pytest.mark.parametrize(("index", "level", "severity"), [
    (0, 10, "high"), (1, 3, "low"), (2, 7, "medium"), (3, 12, "critical"), (4, 15, "critical"),
    (5, 5, "medium"), (6, 0, "low"), (7, 8, "high")])
def test_levels_map_through_the_wazuh_table(index: int, level: int, severity: str) -> None:
    event = one(ALERTS[index])
    assert event["event"]["severity"] == level
    assert event["socd"]["severity"] == severity


def test_success_dstuser_and_tactics() -> None:
    event = one(ALERTS[1])
    assert event["user"] == {"name": "quantri"}
    assert event["event"]["outcome"] == "success"
    assert len(event["threat"]["tactic"]["name"]) == 4


def test_syscheck() -> None:
    event = one(ALERTS[2])
    assert event["file"]["path"] == "/var/www/congthongtin/index.php"
    assert event["file"]["hash"]["sha256"].startswith("5e8848")
    assert event["event"]["action"] == "modified"
    assert event["event"]["type"] == ["change"]


def test_web_alert_and_manager_agent() -> None:
    web = one(ALERTS[3])
    assert web["url"] == {"original": "/upload/shell.php"}
    assert web["source"]["ip"] == "198.51.100.61"
    assert "network" not in web  # data.protocol POST is an HTTP method, not a protocol
    assert web["threat"]["technique"]["id"] == ["T1190", "T1505.003"]
    manager = one(ALERTS[4])
    assert manager["host"] == {"id": "000", "name": "wazuh-ttth-01"}
    assert "tags" in manager


def test_windows_eventchannel() -> None:
    event = one(ALERTS[5])
    assert event["winlog"]["event_id"] == "4625"
    assert event["event"]["code"] == "4625"
    assert event["user"] == {"name": "ketoan01"}
    assert event["source"]["ip"] == "10.20.2.77"


def test_string_level_and_sudo_users() -> None:
    event = one(ALERTS[7])
    assert event["event"]["severity"] == 8
    assert event["user"] == {"name": "root"}
    assert event["source"]["user"] == {"name": "nguyenvana"}


def test_bad_records() -> None:
    result = decode((FIXTURES / "bad.ndjson").read_bytes())
    # An address the gate refuses is left out; the alert itself is kept (rule 4).
    assert [e["rule"]["id"] for e in result.events] == ["5710", "4"]
    assert "source" not in result.events[1]
    assert sorted(f.reason for f in result.failures) == [
        "invalid_field", "invalid_field", "invalid_json", "missing_field", "missing_field"]
    assert any("0-15" in f.detail for f in result.failures)


# Real alerts of the AIT-LDS v1.1 testbed (tests/corpus/wazuh-ait-lds-insect), shortened.
_SNORT_FASTLOG = (
    b'{"timestamp":"2020-03-04T14:25:40.904317+0000","rule":{"level":8,"description":'
    b'"First time this IDS alert is generated.","id":"20100","groups":["ids","fts"]},'
    b'"agent":{"id":"000","name":"user-0"},"id":"1588002283.9768911","full_log":'
    b'"03/04/2020-14:25:40.904317  [**] [1:2100498:7] GPL ATTACK_RESPONSE id check returned '
    b'root [**] [Classification: Potentially Bad Traffic] [Priority: 2] {TCP} '
    b'192.168.10.21:55970 -> 192.168.10.18:9988","decoder":{"parent":"snort","name":"snort"},'
    b'"data":{"srcip":"192.168.10.21","dstip":"192.168.10.18:9988","id":"1:2100498:7"}}')
_EVE_IN_DATA = (
    b'{"timestamp":"2020-03-04T13:56:40.993961+0000","rule":{"level":3,"description":'
    b'"Suricata: Alert - ET WEB_SERVER ColdFusion administrator access","id":"86601",'
    b'"groups":["ids","suricata"]},"agent":{"id":"000","name":"user-0"},"decoder":'
    b'{"name":"json"},"data":{"event_type":"alert","src_ip":"192.168.10.18","src_port":'
    b'"41410","dest_ip":"192.168.10.21","dest_port":"80","proto":"TCP","alert":{"signature":'
    b'"ET WEB_SERVER ColdFusion administrator access","severity":"1"}}}')
_DOVECOT = (
    b'{"timestamp":"2020-03-04T14:14:37.000000+0000","rule":{"level":10,"description":'
    b'"Dovecot brute force attack (multiple auth failures).","id":"9751","groups":["dovecot",'
    b'"authentication_failures"]},"agent":{"id":"000","name":"user-0"},"decoder":{"parent":'
    b'"dovecot","name":"dovecot"},"data":{"srcip":"127.0.0.1","srcuser":"<violet>",'
    b'"dstip":"127.0.0.1"}}')


def test_snort_dstip_with_port_is_split() -> None:
    """Wazuh's snort decoder writes dstip as ADDRESS:PORT; such alerts were refused whole
    (75 of the 497 real alerts of the AIT-LDS insect data set)."""
    event = one(_SNORT_FASTLOG)
    assert event["source"] == {"ip": "192.168.10.21"}
    assert event["destination"] == {"ip": "192.168.10.18", "port": 9988}


def test_suricata_eve_relayed_by_wazuh_keeps_its_addresses() -> None:
    event = one(_EVE_IN_DATA)
    assert event["source"] == {"ip": "192.168.10.18", "port": 41410}
    assert event["destination"] == {"ip": "192.168.10.21", "port": 80}
    assert event["network"] == {"transport": "tcp"}


def test_angle_brackets_around_a_user_name_are_dropped() -> None:
    event = one(_DOVECOT)
    assert event["user"] == {"name": "violet"}
    assert event["source"]["user"] == {"name": "violet"}


@pytest.mark.parametrize(("value", "expected"), [
    ("192.0.2.1:80", ("192.0.2.1", 80)),
    ("[2001:db8::1]:443", ("2001:db8::1", 443)),
    ("2001:db8::80", ("2001:db8::80", None)),
    ("::ffff:192.0.2.7", ("192.0.2.7", None)),
    ("192.0.2.1:99999", ("192.0.2.1", None)),
    ("not-an-ip", (None, None)),
    ("fe80::1%eth0", (None, None)),
])
def test_address_forms(value: str, expected: tuple[str | None, int | None]) -> None:
    from socd.decoders.wazuh import _address

    assert _address(value) == expected


def test_keep_vendor_and_original() -> None:
    event = one(ALERTS[0], decoder(keep_vendor=True, keep_original=True))
    assert event["socd"]["vendor"]["rule"]["id"] == "5712"
    assert orjson.loads(event["event"]["original"])["id"] == "1794791564.4481203"


# -- properties ----------------------------------------------------------------------------

_VOCAB = ["timestamp", "@timestamp", "rule", "level", "id", "description", "groups", "mitre",
          "tactic", "technique", "agent", "name", "ip", "manager", "full_log", "decoder",
          "data", "srcip", "srcport", "dstip", "dstport", "srcuser", "dstuser", "protocol",
          "url", "action", "win", "system", "eventdata", "eventID", "targetUserName",
          "ipAddress", "syscheck", "path", "event", "sha256_after", "location"]
_SCALARS = (st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
            | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12)
            | st.sampled_from(["2026-11-16T08:12:44.512+0700", "10.10.20.11", "7", "any"]))
JSON_VALUES = st.recursive(
    _SCALARS,
    lambda children: (st.lists(children, max_size=3)
                      | st.dictionaries(st.sampled_from(_VOCAB) | st.text(max_size=6),
                                        children, max_size=6)),
    max_leaves=25)
WAZUH_LIKE = st.fixed_dictionaries(
    {"timestamp": st.just("2026-11-16T08:12:44.512+0700") | _SCALARS,
     "rule": st.dictionaries(st.sampled_from(_VOCAB), JSON_VALUES, max_size=6) | _SCALARS},
    optional={key: JSON_VALUES for key in _VOCAB if key not in {"timestamp", "rule"}})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(obj=WAZUH_LIKE)
def test_arbitrary_wazuh_like_objects_never_raise(obj: dict[str, Any]) -> None:
    result = decode(orjson.dumps(obj))
    assert len(result.events) + len(result.failures) == 1
    for event in result.events:
        orjson.dumps(event)


@settings(max_examples=100, deadline=None)
@given(obj=st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=8))
def test_arbitrary_objects_never_raise(obj: dict[str, Any]) -> None:
    result = decode(orjson.dumps(obj))
    assert len(result.events) + len(result.failures) == 1


@settings(max_examples=100, deadline=None)
@given(raw=st.binary(max_size=512))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    decode(raw)
