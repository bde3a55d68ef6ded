"""The syslog_cef sink's formatting: CEF header and extension escaping, severities,
syslog headers, framing; and a round trip through socd's own `cef` decoder."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from socd import __version__
from socd.alerting.cef import SyslogCefSink, cef_line, escape_header, escape_value
from socd.decoders.cef import CefDecoder
from socd.decoders.cefformat import parse_cef
from socd.event import Event, fingerprint, normalize, set_severity
from socd.plugins import PluginContext, RawRecord
from socd.severity import Severity

SHA256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
NOW = datetime(2026, 11, 23, 8, 30, 15, 123000, tzinfo=UTC)


def alert(severity: Severity = Severity.HIGH, **extra: Any) -> Event:
    event: Event = {
        "@timestamp": "2026-11-23T15:30:00.250+07:00",
        "event": {"kind": "alert", "hash": fingerprint("cef", "1")},
        "host": {"name": "srv-web01"},
        "source": {"ip": "203.0.113.9", "port": 40001},
        "destination": {"ip": "10.10.20.11", "port": 22, "domain": "web01.bentre.gov.vn"},
        "user": {"name": "nguyễn văn a"},
        "file": {"hash": {"sha256": SHA256}},
        "rule": {"id": "R|1\\x", "name": "Dò quét SSH | brute=force"},
        "socd": {"layer": 2, "asset_kind": "server", "unit": "Sở Y tế",
                 "ioc": {"matched": True, "values": ["203.0.113.9"], "refs": ["1298/CATTT"]}},
        "message": "Đăng nhập thất bại a=b\\c\nline 2 | pipe",
        **extra,
    }
    set_severity(event, severity)
    return normalize(event)


def sink(**options: Any) -> SyslogCefSink:
    config = SyslogCefSink.Config.model_validate({"type": "syslog_cef", "host": "siem",
                                                  "hostname": "socd01", **options})
    return SyslogCefSink(config, PluginContext(name="cef", dead_letter=None))


def test_escaping() -> None:
    assert escape_header("a|b\\c") == "a\\|b\\\\c"
    assert escape_header("two\nlines") == "two lines"
    assert escape_value("k=v \\ x\r\ny\nz\r") == "k\\=v \\\\ x\\ny\\nz"
    assert escape_value("a|b") == "a|b"  # pipes need no escape in the extension


def test_cef_line_fields() -> None:
    line = cef_line(alert())
    header, _, ext = line.partition("|rt=")
    assert header == (f"CEF:0|socd|socd|{__version__}|R\\|1\\\\x|Dò quét SSH \\| brute=force|8")
    assert "\n" not in line
    parsed = parse_cef(line)
    assert parsed is not None
    assert parsed["signature_id"] == "R|1\\x"
    assert parsed["name"] == "Dò quét SSH | brute=force"
    assert parsed["severity"] == "8"
    e = parsed["extension"]
    assert e["rt"] == "1795422600250"
    assert (e["src"], e["spt"], e["dst"], e["dpt"]) == ("203.0.113.9", "40001", "10.10.20.11",
                                                        "22")
    assert e["shost"] == "srv-web01"
    assert e["dhost"] == "web01.bentre.gov.vn"
    assert e["suser"] == "nguyễn văn a"
    assert e["fileHash"].startswith("9f86d08")
    assert (e["cs1Label"], e["cs1"]) == ("unit", "Sở Y tế")
    assert (e["cs2Label"], e["cs2"]) == ("layer", "2")
    assert (e["cs3Label"], e["cs3"]) == ("ioc", "203.0.113.9")
    assert (e["cs4Label"], e["cs4"]) == ("severity", "cao")
    assert e["externalId"] == alert()["event"]["hash"]
    assert e["msg"] == "Đăng nhập thất bại a=b\\c\nline 2 | pipe"


@pytest.mark.parametrize(("severity", "cef", "pri"), [
    (Severity.LOW, "3", 165), (Severity.MEDIUM, "5", 164), (Severity.HIGH, "8", 163),
    (Severity.CRITICAL, "10", 162)])
def test_severity_mapping(severity: Severity, cef: str, pri: int) -> None:
    s = sink()
    message = s.message(alert(severity), NOW).decode()
    assert message.startswith(f"<{pri}>1 2026-11-23T08:30:15.123Z socd01 socd ")
    assert parse_cef(message[message.index("CEF:"):])["severity"] == cef  # type: ignore[index]


def test_optional_fields_are_left_out() -> None:
    event = normalize({"@timestamp": "2026-11-23T01:00:00Z",
                       "event": {"kind": "alert", "hash": "h1"}, "socd": {}})
    line = cef_line(event)
    assert line == f"CEF:0|socd|socd|{__version__}|alert|socd alert|5|rt=1795395600000 " \
        "externalId=h1"


def test_headers_and_framing() -> None:
    s = sink(header="rfc3164", facility="security", app_name="socd-fw")
    message = s.message(alert(Severity.CRITICAL), NOW)
    local = NOW.astimezone()
    assert message.decode().startswith(f"<106>{local:%b} {local.day:2d} {local:%H:%M:%S} "
                                       "socd01 socd-fw: CEF:0|")
    assert s.frame(b"abc") == b"3 abc"
    assert s.frame("é".encode()) == b"2 \xc3\xa9"  # octets, not characters
    assert sink(framing="newline").frame(b"a\nb") == b"a b\n"


def test_config_checks() -> None:
    with pytest.raises(ValueError, match="unknown facility"):
        sink(facility="local9")
    with pytest.raises(ValueError, match="need protocol: tls"):
        sink(ca_file="ca.pem")
    with pytest.raises(ValueError, match="go together"):
        sink(protocol="tls", cert_file="c.pem")
    assert sink(protocol="tls").port == 6514
    assert sink(protocol="udp").port == 514


@pytest.mark.parametrize("header", ["rfc5424", "rfc3164"])
def test_round_trip_through_the_cef_decoder(header: str) -> None:
    decoder = CefDecoder(CefDecoder.Config(type="cef"), PluginContext(name="cef",
                                                                      dead_letter=None))
    original = alert()
    data = sink(header=header).message(original, NOW)
    result = decoder.decode(RawRecord(data, "cef", "test"))
    assert not result.failures, result.failures
    (event,) = result.events
    assert event["source"]["ip"] == "203.0.113.9"
    assert event["source"]["port"] == 40001
    assert event["destination"]["ip"] == "10.10.20.11"
    assert event["destination"]["port"] == 22
    assert event["destination"]["domain"] == "web01.bentre.gov.vn"
    assert event["source"]["domain"] == "srv-web01"
    assert event["user"]["name"] == "nguyễn văn a"
    assert event["file"]["hash"]["sha256"] == original["file"]["hash"]["sha256"]
    assert event["rule"]["id"] == "R|1\\x"
    assert event["rule"]["name"] == "Dò quét SSH | brute=force"
    assert event["event"]["id"] == original["event"]["hash"]
    assert event["message"] == original["message"]
    assert event["socd"]["vendor_severity"] == "8"
    assert event["socd"]["vendor"]["cef_labels"] == {
        "unit": "Sở Y tế", "layer": "2", "ioc": "203.0.113.9", "severity": "cao",
        "asset_kind": "server"}
    ts = datetime.fromisoformat(event["@timestamp"].replace("Z", "+00:00"))
    assert ts == datetime(2026, 11, 23, 8, 30, 0, 250000, tzinfo=UTC)
