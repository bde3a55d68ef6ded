"""The zone assumed for timestamps that carry none, per collector and per sender
(issue 14, point 2: a UTC server's RFC 3164 lines read as +07:00 look 7 hours old)."""

from __future__ import annotations

from datetime import datetime

import pytest

from socd import config as config_mod
from socd.app.components import build_decoders
from socd.decoders.cef import CefDecoder
from socd.decoders.syslog import SyslogDecoder
from socd.plugins import PluginContext, RawRecord, ZoneAware
from socd.tz import parse_zone
from socd.zones import SenderZones, collector_zones

# 2024-06-15 12:00:00 +07:00: RFC 3164 dates are resolved against a fixed "now".
RECEIVED = datetime.fromisoformat("2024-06-15T12:00:00+07:00").timestamp()
LINE = b"<38>Jun 15 04:59:00 web01 sshd[7]: Failed password for root from 203.0.113.5 port 2 ssh2"


def stamp(decoder: SyslogDecoder | CefDecoder, line: bytes = LINE, collector: str = "fw",
          source: str = "udp://10.20.1.5:51514") -> str:
    result = decoder.decode(RawRecord(line, "syslog", collector, source, RECEIVED))
    assert not result.failures, result.failures
    return str(result.events[0]["@timestamp"])


def test_default_zone_is_asia_ho_chi_minh() -> None:
    dec = SyslogDecoder.create("syslog")
    assert SyslogDecoder.Config(type="syslog").timezone == "Asia/Ho_Chi_Minh"
    assert CefDecoder.Config(type="cef").timezone == "Asia/Ho_Chi_Minh"
    assert stamp(dec) == "2024-06-15T04:59:00+07:00"


@pytest.mark.parametrize(("text", "offset_hours"), [
    ("+07:00", 7), ("-0330", -3.5), ("UTC", 0), ("z", 0), ("Asia/Ho_Chi_Minh", 7),
])
def test_parse_zone(text: str, offset_hours: float) -> None:
    offset = parse_zone(text).utcoffset(datetime(2024, 6, 15))
    assert offset is not None
    assert offset.total_seconds() == offset_hours * 3600


@pytest.mark.parametrize("text", ["Mars/Olympus", "+25:00", "7", ""])
def test_parse_zone_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="unknown time zone|offset out of range"):
        parse_zone(text)


def test_sender_zones_by_address_longest_prefix_first() -> None:
    zones = SenderZones.from_config("UTC", {"10.0.0.0/8": "+05:30", "10.20.1.5": "-03:00",
                                            "2001:db8::/32": "+01:00", "Web01": "+09:00"})
    assert zones.for_source("udp://10.20.1.5:514") == parse_zone("-03:00")
    assert zones.for_source("tcp://10.9.9.9:601") == parse_zone("+05:30")
    assert zones.for_source("tls://[2001:db8::7]:6514") == parse_zone("+01:00")
    assert zones.for_source("udp://192.0.2.1:514") == parse_zone("UTC")
    assert zones.for_source("/var/log/auth.log") == parse_zone("UTC")
    assert zones.for_host("WEB01.") == parse_zone("+09:00")
    assert zones.for_host("web02") is None
    assert zones.for_host(None) is None


def test_decoder_reads_each_collector_and_sender_in_its_zone() -> None:
    dec = SyslogDecoder.create("syslog")
    assert isinstance(dec, ZoneAware)
    dec.assume_zones({"fw": SenderZones.from_config("UTC", {"10.30.0.0/16": "+05:30",
                                                            "db01": "-03:00"})})
    assert stamp(dec) == "2024-06-15T04:59:00+00:00"                 # the collector's zone
    assert stamp(dec, source="udp://10.30.0.9:514") == "2024-06-15T04:59:00+05:30"
    assert stamp(dec, LINE.replace(b"web01", b"DB01")) == "2024-06-15T04:59:00-03:00"
    assert stamp(dec, collector="other") == "2024-06-15T04:59:00+07:00"  # the decoder's
    # A zone in the message wins over any assumption.
    line = b"<38>1 2024-06-15T04:59:00.5+02:00 web01 sshd 7 - - Failed password"
    assert stamp(dec, line) == "2024-06-15T04:59:00.500000+02:00"


def test_cef_decoder_honours_the_zones() -> None:
    dec = CefDecoder(CefDecoder.Config(type="cef"), PluginContext(name="cef", dead_letter=None))
    assert isinstance(dec, ZoneAware)
    line = (b"<134>Jun 15 04:59:00 fw01 CEF:0|Fortinet|FortiGate|7.0|1|deny|5|"
            b"src=203.0.113.5 dst=10.0.0.1")
    assert stamp(dec, line).endswith("+07:00")
    dec.assume_zones({"fw": SenderZones.from_config("UTC", {})})
    assert stamp(dec, line) == "2024-06-15T04:59:00+00:00"


def test_build_decoders_gives_each_zone_aware_decoder_its_collectors(tmp_path) -> None:
    cfg = config_mod.loads(f"""
state_dir: {tmp_path}
collectors:
  fw:
    type: syslog
    listeners: [{{protocol: udp, port: 5514}}]
    timezone: UTC
    sender_timezones: {{10.30.0.0/16: "+05:30"}}
  lan:
    type: syslog
    listeners: [{{protocol: udp, port: 5515}}]
  auth_log:
    type: file
    paths: [auth.log]
    decoder: syslog
    timezone: "-03:00"
sinks:
  out: {{type: ndjson, path: out.ndjson}}
""")
    assert sorted(collector_zones(cfg.collectors, "syslog")) == ["auth_log", "fw"]
    assert collector_zones(cfg.collectors, "cef") == {}
    decoders = build_decoders(cfg, None)  # type: ignore[arg-type]
    syslog = decoders["syslog"]
    assert isinstance(syslog, SyslogDecoder)
    assert stamp(syslog) == "2024-06-15T04:59:00+00:00"
    assert stamp(syslog, source="udp://10.30.1.1:514") == "2024-06-15T04:59:00+05:30"
    assert stamp(syslog, collector="lan") == "2024-06-15T04:59:00+07:00"
    assert stamp(syslog, collector="auth_log", source="auth.log") == "2024-06-15T04:59:00-03:00"
