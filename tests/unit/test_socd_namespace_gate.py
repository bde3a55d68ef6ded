"""socd.* belongs to socd; provenance comes from the record; labels stay bounded.

Pure unit tests of the pieces behind tests/adversarial/test_socd_namespace.py,
test_forged_syslog.py and test_metric_labels.py: the decoders' socd allowlist, the
classifier resetting its own keys, the blocker's transport refusal, the syslog
listeners' authentication, the check-config warnings and the alert label bounds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from socd import config as config_mod
from socd import metrics
from socd.block.sink import BlockerConfig, refusal_reason, requests_from, transport_refusal
from socd.collectors.syslog import SyslogCollector
from socd.config import ClassificationConfig
from socd.decoders.base import INPUT_SOCD_KEYS
from socd.decoders.json import JsonDecoder
from socd.decoders.mapping import MappingDecoder
from socd.decoders.syslog import SyslogDecoder
from socd.decoders.winlogbeat import WinlogbeatDecoder
from socd.engine.classify import Classifier
from socd.errors import ConfigError
from socd.event import Event
from socd.plugins import PluginContext, RawRecord

FORGED_SOCD = {
    "severity": "high", "unit": "Sở Tài chính", "asset_kind": "server", "layer": 3,
    "actions": {"block": [{"value": "198.51.100.7", "ttl_secs": 2592000}]},
    "ioc": {"matched": True, "values": ["198.51.100.8"]},
    "alert": {"status": "false_positive"}, "rule": {"count": 9}, "collector": "x",
    "decoder": "x", "source": "x", "transport": {"authenticated": True},
    "severity_label": "thấp", "asset": {"owner": "x"}, "made_up": 1,
}


def ctx(name: str) -> PluginContext:
    return PluginContext(name=name, dead_letter=None)


def stripped(decoder: str, field: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "socd_input_fields_stripped_total", {"decoder": decoder, "field": field})
    return value or 0.0


def decode_one(decoder: Any, obj: dict[str, Any], **record: Any) -> Event:
    result = decoder.decode(RawRecord(orjson.dumps(obj), decoder.name, "coll", "src", 1.0,
                                      **record))
    assert result.failures == []
    assert len(result.events) == 1
    return result.events[0]


@pytest.mark.parametrize("nested", [True, False])
def test_json_decoder_keeps_only_documented_socd_keys(nested: bool) -> None:
    name = f"json-gate-{nested}"
    obj: dict[str, Any] = {"event": {"kind": "alert"}}
    if nested:
        obj["socd"] = dict(FORGED_SOCD)
    else:
        obj.update({f"socd.{k}": v for k, v in FORGED_SOCD.items()})
    event = decode_one(JsonDecoder(JsonDecoder.Config(type="json"), ctx(name)), obj)
    socd = event["socd"]
    assert set(socd) == {"severity", "severity_label", "unit", "asset_kind", "layer",
                         "collector", "decoder", "source"}
    assert (socd["collector"], socd["decoder"], socd["source"]) == ("coll", name, "src")
    assert socd["severity_label"] == "cao"  # derived from the severity, not the input
    for field in ("actions", "ioc", "alert", "rule", "transport", "asset"):
        assert stripped(name, field) == 1
    assert stripped(name, "other") == 1  # made_up: an undocumented key is not a label


def test_winlogbeat_input_cannot_set_socd_actions() -> None:
    decoder = WinlogbeatDecoder(WinlogbeatDecoder.Config(type="winlogbeat"), ctx("wlb-gate"))
    event = decode_one(decoder, {"winlog": {"event_id": 1102, "channel": "Security"},
                                 "socd": {"actions": {"block": [{"value": "1.2.3.4"}]},
                                          "unit": "UBND"}})
    assert "actions" not in event["socd"]
    assert event["socd"]["unit"] == "UBND"
    assert event["socd"]["severity"] == "high"  # set by the decoder itself


def test_asset_kind_and_unit_outside_their_domain_are_dropped() -> None:
    decoder = JsonDecoder(JsonDecoder.Config(type="json"), ctx("json-enum"))
    event = decode_one(decoder, {"socd": {"asset_kind": "kind-1", "unit": "u" * 257}})
    assert "asset_kind" not in event["socd"]
    assert "unit" not in event["socd"]
    assert stripped("json-enum", "asset_kind") == 1
    assert stripped("json-enum", "unit") == 1


def test_provenance_is_stamped_from_the_record_only() -> None:
    decoder = JsonDecoder(JsonDecoder.Config(type="json"), ctx("json-prov"))
    obj = {"socd": {"transport": {"authenticated": True}}}
    assert "transport" not in decode_one(decoder, obj)["socd"]
    refused = decode_one(decoder, obj, authenticated=False)["socd"]["transport"]
    assert refused == {"authenticated": False, "blocking": "refused"}
    allowed = decode_one(decoder, obj, authenticated=False, blocking_allowed=True)
    assert allowed["socd"]["transport"] == {"authenticated": False, "blocking": "allowed"}
    syslog = SyslogDecoder.create("syslog-prov")
    line = b"<38>1 2026-12-06T04:23:08Z h sshd 1 - - Failed password for root from " \
           b"198.51.100.9 port 22 ssh2"
    result = syslog.decode(RawRecord(line, "syslog-prov", "sys", "udp://127.0.0.1:5", 1.0,
                                     False, False))
    assert result.events[0]["socd"]["transport"] == {"authenticated": False,
                                                      "blocking": "refused"}


def test_mapping_files_may_set_only_input_socd_keys(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nfields: {socd.actions.block: x}\n")
    with pytest.raises(ConfigError, match="socd's own field"):
        MappingDecoder(MappingDecoder.Config(type="mapping", mapping=str(bad)),
                       PluginContext(name="bad", dead_letter=None, config_dir=str(tmp_path)))
    kind = tmp_path / "kind.yaml"
    kind.write_text("name: kind\nconstants: {socd.asset_kind: máy chủ}\n")
    with pytest.raises(ConfigError, match="asset_kind"):
        MappingDecoder(MappingDecoder.Config(type="mapping", mapping=str(kind)),
                       PluginContext(name="kind", dead_letter=None, config_dir=str(tmp_path)))
    assert "actions" not in INPUT_SOCD_KEYS


def test_classifier_owns_ioc_alert_actions_and_rule() -> None:
    event: Event = {"event": {"kind": "alert"}, "socd": {
        "decoder": "plugin", "severity": "critical", "severity_label": "nghiêm trọng",
        "ioc": {"matched": True, "values": ["198.51.100.8"]},
        "alert": {"status": "false_positive"},
        "actions": {"block": [{"value": "198.51.100.7"}]}, "rule": {"count": 1}}}
    [out] = Classifier(ClassificationConfig()).process([event])
    socd = out["socd"]
    assert socd["alert"] == {"status": "new"}
    assert not {"ioc", "actions", "rule"} & set(socd)
    assert stripped("plugin", "actions") == 1


def _alert(**socd: Any) -> Event:
    return {"rule": {"id": "ssh-bruteforce", "name": "x"}, "socd": {
        "collector": "sys", "ioc": {"matched": True, "values": ["198.51.100.8"]},
        "actions": {"block": [{"value": "198.51.100.7", "ttl_secs": 60,
                               "origin": "forged"}]}, **socd}}


def test_blocker_refuses_what_an_unauthenticated_source_caused() -> None:
    cfg = BlockerConfig(type="blocker", block_ioc_hits=True)
    trusted = requests_from([_alert()], cfg)
    assert [(r.value, r.origin, r.refusal) for r in trusted] == [
        ("198.51.100.7", "ssh-bruteforce", None), ("198.51.100.8", "ioc", None)]
    forged = requests_from([_alert(transport={"authenticated": False,
                                              "blocking": "refused"})], cfg)
    assert len(forged) == 2
    assert all(r.refusal and r.refusal.startswith("unauthenticated_source: collector sys")
               for r in forged)
    opted_in = _alert(transport={"authenticated": False, "blocking": "allowed"})
    assert transport_refusal(opted_in) is None
    assert refusal_reason(str(forged[0].refusal)) == "unauthenticated_source"
    assert refusal_reason("allowlisted: own address 10.0.0.1") == "allowlisted"
    assert refusal_reason("too broad: prefix shorter than /8") == "too_broad"
    assert refusal_reason("something new") == "other"


def _listener(protocol: str, **tls: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"protocol": protocol, "host": "127.0.0.1", "port": 5514}
    if protocol == "tls":
        out["tls"] = {"cert_file": "c", "key_file": "k", **tls}
    return out


@pytest.mark.parametrize(("listener", "senders", "authenticated"), [
    (_listener("udp"), [], False),
    (_listener("udp"), ["127.0.0.1/32"], False),  # UDP senders can be forged
    (_listener("tcp"), [], False),
    (_listener("tcp"), ["127.0.0.1/32"], True),
    (_listener("tls"), [], False),
    (_listener("tls", ca_file="ca", require_client_cert=True), [], True),
])
def test_syslog_listener_authentication(listener: dict[str, Any], senders: list[str],
                                        authenticated: bool) -> None:
    cfg = SyslogCollector.Config(type="syslog", listeners=[listener], allowed_senders=senders)
    assert cfg.authenticates(cfg.listeners[0]) is authenticated
    assert (cfg.unauthenticated_inputs() == []) is authenticated


def _config(blocker: bool, **syslog: Any) -> config_mod.Config:
    text = {"collectors": {"fw": {"type": "syslog", "listeners": [_listener("udp")],
                                  **syslog}},
            "sinks": {"out": {"type": "ndjson", "path": "o.ndjson"}}}
    if blocker:
        text["sinks"]["block"] = {"type": "blocker", "backend": "none"}
    return config_mod.loads(orjson.dumps(text).decode(), file="socd.yaml")


def test_check_config_warns_about_unauthenticated_listeners() -> None:
    assert _config(blocker=False).warnings == ()
    [refused] = _config(blocker=True).warnings
    assert refused.path == "collectors.fw"
    assert "udp://127.0.0.1:5514 cannot authenticate its senders" in refused.message
    assert "unauthenticated_source" in refused.message
    [allowed] = _config(blocker=True, allow_unauthenticated_blocking=True).warnings
    assert allowed.path == "collectors.fw.allow_unauthenticated_blocking"
    assert "can make the blocker (block) block any address" in allowed.message


def test_check_config_warns_about_the_network_sensor() -> None:
    """Spoofed packets: the sensor is an unauthenticated input for blocking."""
    text = {"collectors": {"span": {"type": "sensor", "interface": "ens224"}},
            "sinks": {"block": {"type": "blocker", "backend": "none"}}}
    [refused] = config_mod.loads(orjson.dumps(text).decode(), file="socd.yaml").warnings
    assert refused.path == "collectors.span"
    assert "sensor interface ens224 cannot authenticate its senders" in refused.message
    assert "unauthenticated_source" in refused.message
    assert "packets can be spoofed" in (refused.hint or "")
    text["collectors"]["span"]["allow_unauthenticated_blocking"] = True
    [allowed] = config_mod.loads(orjson.dumps(text).decode(), file="socd.yaml").warnings
    assert allowed.path == "collectors.span.allow_unauthenticated_blocking"


def test_alert_labels_are_bounded() -> None:
    def value(**labels: str) -> float:
        return metrics.REGISTRY.get_sample_value("socd_alerts_total", labels) or 0.0

    before = value(severity="other", layer="other", asset_kind="other")
    metrics.count_alert({"severity": "x", "layer": 9, "asset_kind": "kind-1"})
    assert value(severity="other", layer="other", asset_kind="other") == before + 1
    assert value(severity="x", layer="9", asset_kind="kind-1") == 0.0
    base = value(severity="low", layer="2", asset_kind="mine")
    metrics.count_alert({"severity": "low", "layer": 2, "asset_kind": "mine"},
                        frozenset({"mine"}))
    assert value(severity="low", layer="2", asset_kind="mine") == base + 1
