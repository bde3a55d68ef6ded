"""Classification: severity, layer and asset kind for alerts; IoC matches; alert metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from socd.config import ClassificationConfig
from socd.decoders.json import JsonDecoder
from socd.decoders.mapping import MappingDecoder
from socd.engine.classify import Classifier
from socd.event import Event
from socd.ioc.importers import load_text_lists
from socd.ioc.store import Entry, IocStore
from socd.plugins import PluginContext, RawRecord
from socd.severity import Severity

from .conftest import DEFAULT_DIR, SAMPLE_DIR, sample_value

IOC_TEXT = """\
# Source reference: công văn 941/CATTT-NCSC, ngày 2026-11-10
203.0.113.7        # scanner
198.51.100.0/24    # botnet
2001:db8:bad::/48
evil.example       # C&C
44d88612fea8a8f36de82e1278abb02f
# ref: 12/BC-STTTT
192.0.2.99
"""


def decoded(data: bytes, *, mapping: str | None = None, table: str | None = None) -> list[Event]:
    ctx = PluginContext(name=mapping or "json", dead_letter=None)
    decoder: Any
    if mapping:
        decoder = MappingDecoder(MappingDecoder.Config(type="mapping", mapping=mapping), ctx)
    else:
        decoder = JsonDecoder(JsonDecoder.Config(type="json", severity_table=table), ctx)
    result = decoder.decode(RawRecord(data, decoder.name, "c"))
    assert result.failures == []
    return result.events


@pytest.fixture
def ioc_file(tmp_path: Path) -> Path:
    path = tmp_path / "ioc.txt"
    path.write_text(IOC_TEXT, encoding="utf-8")
    return path


@pytest.fixture
def classifier(ioc_file: Path) -> Classifier:
    return Classifier.from_files(ClassificationConfig(), [str(ioc_file)])


def test_ioc_file_parsing(ioc_file: Path) -> None:
    entries, _ = load_text_lists([str(ioc_file)])
    iocs = IocStore(None, static=entries)
    assert len(iocs) == 6
    assert _refs(entries, "ip") == {"203.0.113.7": "941/CATTT-NCSC", "192.0.2.99": "12/BC-STTTT"}
    assert _refs(entries, "domain") == {"evil.example": "941/CATTT-NCSC"}
    assert "44d88612fea8a8f36de82e1278abb02f" in _refs(entries, "hash")
    assert iocs.match_ip("198.51.100.200") == "941/CATTT-NCSC"
    assert iocs.match_ip("2001:db8:bad::1") == "941/CATTT-NCSC"
    assert iocs.match_ip("198.51.101.1") is None
    assert iocs.match_ip("not an ip") is None


def _refs(entries: list[Entry], kind: str) -> dict[str, str]:
    """Single values (no networks) of one kind and their references."""
    return {e.value: e.ref for e in entries if e.kind == kind and "/" not in e.value}


def test_shipped_ioc_sample_loads() -> None:
    c = Classifier.from_files(ClassificationConfig(), [str(DEFAULT_DIR / "ioc" / "ioc-sample.txt")])
    assert len(c.iocs) > 200
    assert c.iocs.match_ip("77.90.185.20") is not None


@pytest.mark.parametrize(
    ("vendor", "table", "expected"),
    [(1, "suricata", "high"), (3, "suricata", "low"), (13, "wazuh", "critical"),
     (5, "wazuh", "medium"), ("Very-High", "cef", "critical"), ("Nghiêm trọng", "vietnamese",
                                                                "critical")],
)
def test_vendor_severity_to_socd_severity(vendor: object, table: str, expected: str,
                                          classifier: Classifier) -> None:
    data = orjson.dumps({"event": {"kind": "alert"}, "socd": {"vendor_severity": vendor}})
    (event,) = classifier.process(decoded(data, table=table))
    assert event["socd"]["severity"] == expected
    assert event["socd"]["severity_label"] == Severity(expected).label
    assert event["socd"]["vendor_severity"] == str(vendor)


def test_alert_without_mappable_severity_gets_defaults(uid: str) -> None:
    cfg = ClassificationConfig(default_alert_severity=Severity.HIGH, default_layer=3,
                               default_asset_kind=uid)
    (event,) = Classifier(cfg).process(
        decoded(b'{"event": {"kind": "alert"}, "socd": {"vendor_severity": "??"}}',
                table="sigma"))
    assert event["socd"]["severity"] == "high"
    assert event["socd"]["severity_label"] == "cao"
    assert event["socd"]["layer"] == 3
    assert event["socd"]["asset_kind"] == uid


def test_plain_event_is_not_made_an_alert(classifier: Classifier) -> None:
    (event,) = classifier.process(decoded(b'{"event": {"kind": "event"}, '
                                          b'"source": {"ip": "10.1.1.1"}}'))
    assert event["event"]["kind"] == "event"
    assert "severity" not in event["socd"]
    assert event["socd"]["asset_kind"] == "unknown"
    assert "ioc" not in event["socd"]


@pytest.mark.parametrize("ip", ["203.0.113.7", "198.51.100.17", "2001:db8:bad::42"])
def test_ioc_ip_turns_event_into_high_alert(ip: str, classifier: Classifier) -> None:
    data = orjson.dumps({"event": {"kind": "event"}, "source": {"ip": ip}, "message": "conn"})
    (event,) = classifier.process(decoded(data))
    assert event["event"]["kind"] == "alert"
    assert event["socd"]["severity"] == "high"
    assert event["socd"]["severity_label"] == "cao"
    # Vietnamese, as every rule name socd gives (it was the English "IoC match").
    assert event["rule"] == {"name": "Trùng khớp chỉ dấu IoC", "id": "socd-ioc-match"}
    assert event["socd"]["ioc"] == {"matched": True, "values": [ip], "refs": ["941/CATTT-NCSC"]}
    assert "ioc" in event["tags"]


def test_ioc_match_keeps_vendor_alert_severity_and_rule(classifier: Classifier) -> None:
    data = (b'{"event": {"kind": "alert"}, "destination": {"ip": "192.0.2.99"},'
            b' "rule": {"name": "ET X"}, "socd": {"severity": "critical"}, "tags": ["ioc"]}')
    (event,) = classifier.process(decoded(data))
    assert event["socd"]["severity"] == "critical"
    assert event["rule"] == {"name": "ET X"}
    assert event["socd"]["ioc"]["refs"] == ["12/BC-STTTT"]
    assert event["tags"] == ["ioc"]


def test_ioc_domain_and_hash(classifier: Classifier) -> None:
    data = (b'[{"dns": {"question": {"name": "EVIL.example."}}},'
            b' {"file": {"hash": {"md5": "44D88612FEA8A8F36DE82E1278ABB02F"}}}]')
    before_domain = sample_value("socd_ioc_hits_total", kind="domain")
    before_hash = sample_value("socd_ioc_hits_total", kind="hash")
    events = classifier.process(decoded(data))
    assert all(e["socd"]["ioc"]["matched"] for e in events)
    assert all(e["event"]["kind"] == "alert" for e in events)
    assert sample_value("socd_ioc_hits_total", kind="domain") == before_domain + 1
    assert sample_value("socd_ioc_hits_total", kind="hash") == before_hash + 1


def test_alerts_total_counted_by_severity_layer_asset_kind(uid: str) -> None:
    cfg = ClassificationConfig(default_asset_kind=uid, default_layer=4)
    data = (b'[{"event": {"kind": "alert"}, "socd": {"severity": "low"}},'
            b' {"event": {"kind": "alert"}, "socd": {"severity": "low"}},'
            b' {"event": {"kind": "alert"}, "socd": {"severity": "critical", "layer": 1}},'
            b' {"event": {"kind": "event"}}]')
    Classifier(cfg).process(decoded(data))
    assert sample_value("socd_alerts_total", severity="low", layer="4", asset_kind=uid) == 2
    assert sample_value("socd_alerts_total", severity="critical", layer="1",
                        asset_kind=uid) == 1
    assert sample_value("socd_alerts_total", severity="medium", layer="4", asset_kind=uid) == 0


def test_ioc_alert_is_counted(classifier: Classifier) -> None:
    before = sample_value("socd_alerts_total", severity="high", layer="2", asset_kind="unknown")
    classifier.process(decoded(b'{"source": {"ip": "203.0.113.7"}}'))
    after = sample_value("socd_alerts_total", severity="high", layer="2", asset_kind="unknown")
    assert after == before + 1


def test_edr_alert_counted_with_its_asset_kind(classifier: Classifier) -> None:
    line = (SAMPLE_DIR / "server-edr.ndjson").read_bytes().splitlines()[0]
    events = decoded(line, mapping="server_edr")
    sev = events[0]["socd"]["severity"]
    before = sample_value("socd_alerts_total", severity=sev, layer="2", asset_kind="server")
    classifier.process(events)
    assert sample_value("socd_alerts_total", severity=sev, layer="2",
                        asset_kind="server") == before + 1
