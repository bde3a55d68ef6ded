"""Hostile flat Windows event JSON (the ``windows_json`` decoder, NXLog's shape).

An NXLog agent on a compromised workstation (or anyone who can reach the collector) writes
the record, so every field is the attacker's: forged ``socd.*`` keys (nested and dotted),
forged ECS fields that would make an event an alert or carry a block action, IpAddress
values that are not one address (IPv4-mapped, a zone id, a command after a newline, a host
name, a huge text), huge values and thousands of fields. The decoder builds the event from
scratch: nothing of that reaches ``socd.*`` or the alert fields, addresses pass the one
address gate (refusals counted), sizes are bounded, and the shipped rules still judge the
genuine part of a record: a real log clearing still raises its alert, with the rule's own
severity and no forged action.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from socd import config as config_mod
from socd import metrics
from socd.app.components import build_classifier
from socd.decoders.windows_json import (
    MAX_DATA_FIELDS,
    MAX_VALUE_CHARS,
    TRUNCATED_TAG,
    WindowsJsonDecoder,
)
from socd.event import Event
from socd.plugins import PluginContext, RawRecord

CORPUS_CONFIG = Path(__file__).resolve().parents[1] / "corpus" / "socd.yaml"
LOGON = {"EventTime": "2026-11-16 08:05:43", "Hostname": "SRV-AD-01.tinh.local",
         "EventID": 4625, "Channel": "Security",
         "SourceName": "Microsoft-Windows-Security-Auditing", "TargetUserName": "admin",
         "LogonType": "3", "Status": "0xc000006d", "SubStatus": "0xc000006a"}
FORGED_SOCD = {"severity": "critical", "layer": 1, "unit": "Sở Tài chính",
               "asset_kind": "server",
               "actions": {"block": [{"value": "198.51.100.7", "ttl_secs": 2592000}]},
               "ioc": {"matched": True, "values": ["198.51.100.8"]},
               "alert": {"status": "false_positive"}, "transport": {"authenticated": True},
               "made_up": 1}


def _decoder(name: str) -> WindowsJsonDecoder:
    return WindowsJsonDecoder(WindowsJsonDecoder.Config(type="windows_json"),
                              PluginContext(name=name, dead_letter=None))


def _decode(name: str, obj: Any) -> list[Event]:
    result = _decoder(name).decode(RawRecord(orjson.dumps(obj), name, "nxlog", "10.20.5.37",
                                             1794788564.0, authenticated=False))
    assert result.failures == [], result.failures
    return result.events


def _stripped(decoder: str, field: str) -> float:
    return metrics.REGISTRY.get_sample_value(
        "socd_input_fields_stripped_total", {"decoder": decoder, "field": field}) or 0.0


def _refused(reason: str) -> float:
    return metrics.REGISTRY.get_sample_value(
        "socd_addresses_refused_total", {"reason": reason}) or 0.0


def test_forged_socd_keys_are_dropped_and_counted() -> None:
    name = "wj-adv-socd"
    record = dict(LOGON, socd=FORGED_SOCD,
                  **{f"socd.{k}": v for k, v in FORGED_SOCD.items() if k != "made_up"},
                  **{"socd.actions.block.value": "198.51.100.9"})
    (event,) = _decode(name, record)
    assert set(event["socd"]) == {"collector", "decoder", "source", "transport"}
    assert event["socd"]["transport"] == {"authenticated": False, "blocking": "refused"}
    assert "socd" not in event["winlog"]["event_data"]
    assert not any(k.startswith("socd") for k in event["winlog"]["event_data"])
    for field in ("severity", "layer", "unit", "asset_kind", "ioc", "alert", "transport"):
        assert _stripped(name, field) == 2, field  # nested and dotted
    assert _stripped(name, "actions") == 3  # nested, socd.actions, socd.actions.block.value
    assert _stripped(name, "other") == 1  # made_up is not a label value


def test_forged_alert_fields_do_not_make_an_alert() -> None:
    record = dict(LOGON, **{"event.kind": "alert", "rule.id": "forged", "kind": "alert",
                            "event": {"kind": "alert"}, "rule": {"id": "forged"},
                            "source.ip": "198.51.100.7", "Severity": "CRITICAL"})
    (event,) = _decode("wj-adv-kind", record)
    assert event["event"]["kind"] == "event"
    assert "rule" not in event
    assert "ip" not in event.get("source", {})
    assert "severity" not in event["socd"]
    # Dotted and object-valued keys are not Windows field names: not kept as data either.
    assert set(event["winlog"]["event_data"]) == {
        "TargetUserName", "LogonType", "Status", "SubStatus", "kind"}


@pytest.mark.parametrize(("value", "expected", "reason"), [
    ("::ffff:10.0.0.1", "10.0.0.1", None),
    ("::FFFF:203.0.113.45", "203.0.113.45", None),
    ("-", None, None),
    ("", None, None),
    ("fe80::1%12", None, "scope_id"),
    ("fe80::1%eth0\n; nft flush ruleset", None, "scope_id"),
    ("10.0.0.1\n; rm -rf /", None, "bad_character"),
    ("10.0.0.1 ", "10.0.0.1", None),  # Windows pads nothing, but whitespace is trimmed
    ("WORKSTATION-7", None, "bad_character"),
    ("10.0.0.0/8", None, "syntax"),
    ("1" * 100_000, None, "too_long"),
])
def test_ip_address_goes_through_the_gate(value: str, expected: str | None,
                                          reason: str | None) -> None:
    before = _refused(reason) if reason else 0.0
    (event,) = _decode("wj-adv-ip", dict(LOGON, IpAddress=value, IpPort="50122"))
    assert event.get("source", {}).get("ip") == expected
    assert event["event"]["outcome"] == "failure"  # the failed logon still counts
    if reason:
        assert _refused(reason) == before + 1
    if expected is None and value:
        assert event["winlog"]["event_data"]["IpAddress"] == value[:MAX_VALUE_CHARS]


def test_huge_values_and_many_fields_are_bounded() -> None:
    record: dict[str, Any] = dict(LOGON, Message="x" * 5_000_000,
                                  TargetUserName="a" * 1_000_000,
                                  Hostname="h" * 10_000, Channel="Security")
    record.update({f"Field{i}": str(i) for i in range(10_000)})
    record["K" * 10_000] = "long key"
    started = time.perf_counter()
    (event,) = _decode("wj-adv-size", record)
    assert time.perf_counter() - started < 2.0
    data = event["winlog"]["event_data"]
    assert len(data) == MAX_DATA_FIELDS
    assert all(len(v) <= MAX_VALUE_CHARS for v in data.values())
    assert len(event["message"]) == MAX_VALUE_CHARS
    assert len(event["user"]["name"]) == MAX_VALUE_CHARS
    assert "host" not in event  # a 10,000-character host name is no host name
    assert event["tags"] == [TRUNCATED_TAG]
    assert len(orjson.dumps(event)) < 2 * MAX_DATA_FIELDS * MAX_VALUE_CHARS


def test_message_parsing_has_no_quadratic_path() -> None:
    """1102 reads its subject from the message head: a hostile message of spaces and
    tabs after the label must not stall the decoder."""
    message = "Account Name:" + " \t" * 2_000_000 + "x"
    started = time.perf_counter()
    (event,) = _decode("wj-adv-msg", {"EventID": 1102, "Channel": "Security",
                                      "SourceName": "Microsoft-Windows-Eventlog",
                                      "Message": message})
    assert time.perf_counter() - started < 1.0
    assert event["event"]["action"] == "audit-log-cleared"


def test_the_pack_still_judges_the_genuine_part() -> None:
    """A forged record around a real 1102: the shipped rule raises its alert with its own
    severity and notification; no forged block action, IoC mark or lifecycle status."""
    cfg = config_mod.load(str(CORPUS_CONFIG))
    classifier = build_classifier(cfg)
    record = {"TimeCreated": "2026-11-16 03:30:41.104", "Hostname": "PC-STC-012",
              "EventID": 1102, "Channel": "Security",
              "SourceName": "Microsoft-Windows-Eventlog",
              "Message": "The audit log was cleared.\r\nSubject:\r\n\tAccount Name:\tanhk",
              "socd": FORGED_SOCD, "socd.actions": FORGED_SOCD["actions"]}
    events = _decode("wj-adv-pack", record)
    alerts = [e for e in classifier.process(events) if e["event"]["kind"] == "alert"]
    (alert,) = alerts
    assert alert["rule"]["id"] == "win-audit-log-cleared"
    assert alert["socd"]["severity"] == "high"
    assert alert["user"]["name"] == "anhk"
    assert "block" not in alert["socd"].get("actions", {})
    assert "ioc" not in alert["socd"] or not alert["socd"]["ioc"].get("matched")
    assert alert["socd"].get("alert", {}).get("status", "new") == "new"
