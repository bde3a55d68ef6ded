"""Unit tests of the syslog and CEF decoders and of the collector's TCP framer."""

from __future__ import annotations

import copy
import io
from contextlib import redirect_stdout
from datetime import datetime
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from socd import cli
from socd.collectors.syslog import Framer, SyslogCollector
from socd.decoders.cef import CefDecoder
from socd.decoders.cefformat import (
    parse_cef,
    parse_extension,
    parse_leef,
    split_header,
    unescape,
)
from socd.decoders.syslog import MAX_REPEATS, SyslogDecoder, parse_structured_data
from socd.event import FIELDS_BY_NAME, iter_leaf_paths, normalize
from socd.plugins import DecodeResult, PluginContext, RawRecord
from tests.unit.conftest import sample_value

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SYSLOG_FIXTURES = sorted(p for p in (FIXTURES / "syslog").glob("*.log") if "bad" not in p.name)
CEF_FIXTURE = FIXTURES / "cef" / "firewalls.cef"
# 2024-06-15 12:00:00 +07:00, so RFC 3164 dates are resolved against a fixed "now".
RECEIVED = datetime.fromisoformat("2024-06-15T12:00:00+07:00").timestamp()
FAILURE_REASONS = {"invalid_syslog", "invalid_utf8", "invalid_cef", "invalid_field"}


def decoder(**options: object) -> SyslogDecoder:
    return SyslogDecoder(SyslogDecoder.Config(type="syslog", **options),  # type: ignore[arg-type]
                         PluginContext(name="syslog", dead_letter=None))


def cef_decoder() -> CefDecoder:
    return CefDecoder(CefDecoder.Config(type="cef"), PluginContext(name="cef", dead_letter=None))


def one(line: bytes | str, dec: SyslogDecoder | CefDecoder | None = None,
        source: str = "udp://192.0.2.10:51514") -> dict:
    data = line.encode() if isinstance(line, str) else line
    result = (dec or decoder()).decode(RawRecord(data, "syslog", "sys", source, RECEIVED))
    assert not result.failures, result.failures
    assert len(result.events) == 1
    return result.events[0]


def failure(line: bytes, dec: SyslogDecoder | CefDecoder | None = None) -> str:
    result = (dec or decoder()).decode(RawRecord(line, "syslog", "sys", "", RECEIVED))
    assert not result.events
    assert len(result.failures) == 1
    assert result.failures[0].raw == line
    return result.failures[0].reason


# -- RFC 3164 ---------------------------------------------------------------------------

def test_rfc3164_rfc_example() -> None:
    ev = one("<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8")
    assert ev["@timestamp"] == "2023-10-11T22:14:15+07:00"  # October is after June: last year
    assert ev["log"]["syslog"]["priority"] == 34
    assert ev["log"]["syslog"]["facility"] == {"code": 4, "name": "auth"}
    assert ev["log"]["syslog"]["severity"] == {"code": 2, "name": "critical"}
    assert ev["host"]["hostname"] == "mymachine"
    assert ev["process"] == {"name": "su"}
    assert ev["message"] == "'su root' failed for lonvick on /dev/pts/8"
    assert ev["event"]["kind"] == "event"
    assert ev["socd"]["vendor_severity"] == "2"
    assert ev["socd"]["severity"] == "high"
    assert ev["socd"]["source"] == "udp://192.0.2.10:51514"
    assert ev["log"]["source"]["address"] == "192.0.2.10:51514"


def test_rfc3164_current_year_and_pid() -> None:
    ev = one("<30>Jun  5 09:20:00 db01 systemd[1]: Started Daily apt download activities.")
    assert ev["@timestamp"] == "2024-06-05T09:20:00+07:00"
    assert ev["process"] == {"name": "systemd", "pid": 1}
    assert ev["log"]["syslog"]["procid"] == "1"
    assert ev["socd"]["severity"] == "low"


def test_rfc3164_tomorrow_is_still_this_year() -> None:
    # A sender whose clock runs a few hours ahead must not be moved a year back.
    ev = one("<13>Jun 16 01:00:00 host app: ahead")
    assert ev["@timestamp"].startswith("2024-06-16")


def test_rfc3164_no_hostname_and_no_pri() -> None:
    ev = one("<13>Mar  5 09:21:00 cron[991]: (root) CMD (run-parts /etc/cron.hourly)")
    assert "host" not in ev
    assert ev["process"] == {"name": "cron", "pid": 991}
    ev = one("Oct 11 22:14:15 nopri-host app: message without a PRI")
    assert ev["log"]["syslog"]["priority"] == 13
    assert "syslog_no_pri" in ev["tags"]
    assert ev["host"]["hostname"] == "nopri-host"


def test_rfc3164_timezone_option() -> None:
    ev = one("<13>Jun  5 09:20:00 h a: x", decoder(timezone="UTC"))
    assert ev["@timestamp"] == "2024-06-05T09:20:00+00:00"
    ev = one("<13>Jun  5 09:20:00 h a: x", decoder(timezone="Asia/Ho_Chi_Minh"))
    assert ev["@timestamp"] == "2024-06-05T09:20:00+07:00"
    with pytest.raises(ValueError, match="unknown time zone"):
        decoder(timezone="Mars/Olympus")


def test_rfc3164_iso_timestamp_and_feb_29() -> None:
    ev = one("<13>2024-10-11T22:14:15.123456+07:00 app01 myapp[77]: hi")
    assert ev["@timestamp"] == "2024-10-11T22:14:15.123456+07:00"
    assert ev["host"]["hostname"] == "app01"
    ev = one("<13>Feb 30 10:00:00 h a: impossible date")
    assert "syslog_bad_timestamp" in ev["tags"]


def test_cisco_quirks() -> None:
    ev = one("<189>123: *Mar  1 18:46:11.123: %SYS-5-CONFIG_I: Configured from console")
    assert ev["@timestamp"] == "2024-03-01T18:46:11.123000+07:00"
    assert ev["event"]["code"] == "%SYS-5-CONFIG_I"
    ev = one("<187>45: Mar  1 2023 18:47:00 UTC: %LINK-3-UPDOWN: Interface Gi0/1, changed")
    assert ev["@timestamp"] == "2023-03-01T18:47:00+00:00"
    assert ev["socd"]["severity"] == "medium"


def test_fortigate_kv() -> None:
    ev = one('<185>date=2024-10-11 time=22:15:00 devname="FGT60E" logid="0419016384" '
             'type="utm" subtype="ips" srcip=203.0.113.50 dstip=10.1.1.20 srcport=44321 '
             'dstport=80 proto=6 action="dropped" attack="Bash.Shellshock" crlevel="critical"')
    assert ev["@timestamp"] == "2024-10-11T22:15:00+07:00"
    assert ev["event"]["kind"] == "alert"
    assert ev["socd"]["severity"] == "critical"
    assert ev["source"] == {"ip": "203.0.113.50", "port": 44321}
    assert ev["network"]["transport"] == "tcp"
    assert ev["rule"]["name"] == "Bash.Shellshock"
    assert ev["observer"]["vendor"] == "Fortinet"


# -- RFC 5424 ---------------------------------------------------------------------------

def test_rfc5424_structured_data_and_bom() -> None:
    ev = one('<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 '
             '[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"]'
             '[examplePriority@32473 class="high"] \ufeffAn application event log entry')
    syslog = ev["log"]["syslog"]
    assert ev["@timestamp"] == "2003-10-11T22:14:15.003000+00:00"
    assert syslog["version"] == 1
    assert syslog["msgid"] == "ID47"
    assert syslog["structured_data"] == {
        "exampleSDID@32473": {"iut": "3", "eventSource": "Application", "eventID": "1011"},
        "examplePriority@32473": {"class": "high"}}
    assert ev["message"] == "An application event log entry"
    assert ev["process"] == {"name": "evntslog"}


def test_rfc5424_nil_values_and_escapes() -> None:
    ev = one("<14>1 - - - - - - all nil")
    assert "host" not in ev
    assert "process" not in ev
    assert ev["message"] == "all nil"
    assert ev["@timestamp"].startswith("2024-06-15T05:00:00")  # the receive time
    ev = one(r'<13>1 2024-03-05T09:15:01+07:00 h app 42 - [x@1 p="C:\\T\]b" q="say \"hi\""] m')
    assert ev["log"]["syslog"]["structured_data"] == {"x@1": {"p": "C:\\T]b", "q": 'say "hi"'}}
    assert ev["process"] == {"name": "app", "pid": 42}


def test_rfc5424_bad_structured_data_keeps_event() -> None:
    ev = one('<13>1 2024-03-05T09:15:01+07:00 h app - - [broken p="x" msg')
    assert "syslog_bad_structured_data" in ev["tags"]


def test_structured_data_parser() -> None:
    assert parse_structured_data("- rest") == (None, "rest")
    assert parse_structured_data('[a b="1"][c] m') == ({"a": {"b": "1"}, "c": {}}, "m")
    for bad in ("[a", '[a b="1"', "x", '[a b=1]'):
        with pytest.raises(ValueError):
            parse_structured_data(bad)


# -- sshd / sudo ------------------------------------------------------------------------

@pytest.mark.parametrize(("message", "action", "outcome", "user", "ip", "port"), [
    ("sshd[1]: Failed password for invalid user admin from 203.0.113.5 port 51234 ssh2",
     "ssh_login", "failure", "admin", "203.0.113.5", 51234),
    ("sshd[1]: Failed password for root from 2001:db8::5 port 22 ssh2",
     "ssh_login", "failure", "root", "2001:db8::5", 22),
    ("sshd[1]: Accepted publickey for deploy from 10.10.20.5 port 53122 ssh2: ED25519 SHA256:x",
     "ssh_login", "success", "deploy", "10.10.20.5", 53122),
    ("sshd[1]: Accepted password for nguyenvana from 10.10.20.6 port 53200 ssh2",
     "ssh_login", "success", "nguyenvana", "10.10.20.6", 53200),
    ("sshd[1]: Invalid user oracle from 198.51.100.23 port 40022",
     "ssh_invalid_user", "failure", "oracle", "198.51.100.23", 40022),
    ("sshd[1]: Invalid user oracle from 198.51.100.23",
     "ssh_invalid_user", "failure", "oracle", "198.51.100.23", None),
    ("sshd[1]: Connection closed by authenticating user root 203.0.113.9 port 60001 [preauth]",
     "ssh_preauth_closed", "failure", "root", "203.0.113.9", 60001),
    ("sshd[1]: error: maximum authentication attempts exceeded for invalid user support from "
     "95.152.57.58 port 53679 ssh2 [preauth]", "ssh_max_auth_tries", "failure", "support",
     "95.152.57.58", 53679),
    ("sudo:    alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/apt update",
     "sudo", "success", "alice", None, None),
    ("sudo: bob : 3 incorrect password attempts ; TTY=pts/1 ; PWD=/home/bob ; USER=root ; "
     "COMMAND=/bin/bash", "sudo", "failure", "bob", None, None),
    ("sudo: pam_unix(sudo:auth): authentication failure; logname=bob uid=1001 euid=0 "
     "tty=/dev/pts/1 ruser=bob rhost=  user=bob", "sudo_pam_failure", "failure", "bob", None,
     None),
    ("su[500]: pam_unix(su-l:auth): authentication failure; logname=alice uid=1000 euid=0 "
     "tty=pts/0 ruser=alice rhost=  user=root", "su-l_auth", "failure", "root", None, None),
])
def test_auth_messages(message: str, action: str, outcome: str, user: str, ip: str | None,
                       port: int | None) -> None:
    ev = one(f"<38>Mar  5 09:12:01 web01 {message}")
    assert ev["event"]["category"] == ["authentication"]
    assert ev["event"]["action"] == action
    assert ev["event"]["outcome"] == outcome
    assert ev["event"]["kind"] == "event"
    assert ev["user"]["name"] == user
    assert ev.get("source", {}).get("ip") == ip
    assert ev.get("source", {}).get("port") == port


def test_sudo_command_line() -> None:
    ev = one("<86>Mar  5 09:15:01 web01 sudo:    alice : TTY=pts/0 ; PWD=/home/alice ; "
             "USER=root ; COMMAND=/usr/bin/apt update")
    assert ev["process"]["command_line"] == "/usr/bin/apt update"
    assert ev["socd"]["vendor"]["sudo"]["target_user"] == "root"


# -- PAM "authentication failure" lines (issue 15: real logs raised nothing) --------------

LEGACY = ("Jun 14 15:16:01 combo sshd(pam_unix)[19939]: authentication failure; logname= "
          "uid=0 euid=0 tty=NODEVssh ruser= rhost=218.188.2.4 ")


def test_pam_legacy_tag_is_a_counted_ssh_failure() -> None:
    # loghub Linux_2k: Linux-PAM < 0.99.2 logged under "sshd(pam_unix)[pid]", to the auth
    # facility; sshd's own "Failed password" went to authpriv (another file).
    ev = one(LEGACY)
    assert ev["process"] == {"name": "sshd", "pid": 19939}
    assert ev["log"]["syslog"]["appname"] == "sshd(pam_unix)"
    assert (ev["event"]["action"], ev["event"]["outcome"]) == ("ssh_login", "failure")
    assert ev["event"]["category"] == ["authentication"]
    assert ev["source"] == {"ip": "218.188.2.4"}
    assert "user" not in ev  # "check pass; user unknown": PAM names no account
    named = one("Jun 15 02:04:59 combo sshd(pam_unix)[20882]: authentication failure; "
                "logname= uid=0 euid=0 tty=NODEVssh ruser= rhost=220-135-151-1.Hinet-IP."
                "hinet.net  user=root")
    assert named["source"] == {"domain": "220-135-151-1.hinet-ip.hinet.net"}
    assert named["user"] == {"name": "root"}
    other = one("Jun 15 02:04:59 combo sshd(pam_unix)[20882]: check pass; user unknown")
    assert other["process"]["name"] == "sshd"
    assert "action" not in other["event"]


@pytest.mark.parametrize(("message", "action", "service", "source"), [
    # OpenSSH under PAM: sshd logs "Failed password" for the same attempt (not counted)
    ("sshd[24227]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 "
     "tty=ssh ruser= rhost=5.36.59.76.dynamic-dsl-ip.omantel.net.om  user=root",
     "ssh_pam_failure", "sshd", {"domain": "5.36.59.76.dynamic-dsl-ip.omantel.net.om"}),
    ("sshd[24227]: PAM 5 more authentication failures; logname= uid=0 euid=0 tty=ssh "
     "ruser= rhost=202.109.143.106  user=root", "ssh_pam_failure", "sshd",
     {"ip": "202.109.143.106"}),
    ("sshd[9]: pam_sss(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh "
     "ruser= rhost=198.51.100.7 user=ketoan", "ssh_pam_failure", "sshd", {"ip": "198.51.100.7"}),
    ("sudo: PAM 2 more authentication failures; logname=bob uid=1001 euid=0 tty=/dev/pts/1 "
     "ruser=bob rhost=  user=bob", "sudo_pam_failure", "sudo", None),
    # services that log their failures only through PAM
    ("pure-ftpd: (pam_unix) authentication failure; logname= uid=0 euid=0 tty=pure-ftpd "
     "ruser=sample-user rhost=192.168.1.1 ", "pure-ftpd_auth", "pure-ftpd",
     {"ip": "192.168.1.1"}),
    ("vsftpd: pam_unix: authentication failure; logname= uid=0 euid=0 tty=ftp ruser=an8767 "
     "rhost=ftp.example.org", "vsftpd_auth", "vsftpd", {"domain": "ftp.example.org"}),
    ("login[2421]: pam_unix(login:auth): authentication failure; logname=LOGIN uid=0 euid=0 "
     "tty=tty1 ruser= rhost=  user=root", "login_auth", "login", None),
    ("gdm(pam_unix)[2803]: authentication failure; logname= uid=0 euid=0 tty=:0 ruser= rhost= ",
     "gdm_auth", "gdm", None),
])
def test_pam_failure_forms(message: str, action: str, service: str,
                           source: dict | None) -> None:
    ev = one(f"<86>Jun 14 15:16:01 srv {message}")
    assert (ev["event"]["action"], ev["event"]["outcome"]) == (action, "failure")
    assert ev["socd"]["vendor"]["pam"]["service"] == service
    assert ev.get("source") == source


def test_pam_summary_keeps_its_count() -> None:
    ev = one("<86>Dec 10 07:13:56 LabSZ sshd[24227]: PAM 5 more authentication failures; "
             "logname= uid=0 euid=0 tty=ssh ruser= rhost=5.36.59.76  user=root")
    assert ev["socd"]["vendor"]["pam"]["more_failures"] == 5


def test_pam_user_name_cannot_choose_the_source() -> None:
    # user= is the name the client typed and the last field: it may hold " rhost=".
    ev = one("<86>Jul 19 18:11:52 srv2 sshd[1]: pam_unix(sshd:auth): authentication failure; "
             "logname= uid=0 euid=0 tty=ssh ruser= rhost=192.0.2.2 user=test rhost=10.0.0.1")
    assert ev["source"] == {"ip": "192.0.2.2"}
    assert ev["user"] == {"name": "test rhost=10.0.0.1"}
    # a ruser= with a space makes the layout ambiguous: no address at all
    ev = one("<86>Jul 19 18:11:50 srv2 vsftpd: pam_unix(vsftpd:auth): authentication failure; "
             "logname= uid=0 euid=0 tty=ftp ruser=test rhost=192.0.2.151 rhost=10.0.0.1")
    assert "source" not in ev
    assert "pam_fields_unparsed" in ev["tags"]
    assert ev["event"]["action"] == "vsftpd_auth"


@pytest.mark.parametrize(("rhost", "source", "refused"), [
    ("::ffff:203.0.113.9", {"ip": "203.0.113.9"}, None),
    ("2001:db8:bad::99%x", None, "scope_id"),
    ("1.2.3.4.5", None, "syntax"),
    ("linux323b", None, None),  # one label: not a name socd can use
    ("host.example.", {"domain": "host.example"}, None),
])
def test_pam_rhost_through_the_address_gate(rhost: str, source: dict | None,
                                             refused: str | None) -> None:
    before = sample_value("socd_addresses_refused_total", reason=refused) if refused else 0
    ev = one("<86>Jun 14 15:16:01 srv sshd(pam_unix)[1]: authentication failure; logname= "
             f"uid=0 euid=0 tty=NODEVssh ruser= rhost={rhost}  user=root")
    assert ev.get("source") == source
    if refused:
        assert sample_value("socd_addresses_refused_total", reason=refused) == before + 1


def _decode_all(line: str) -> DecodeResult:
    result = decoder().decode(RawRecord(line.encode(), "syslog", "sys", "", RECEIVED))
    assert not result.failures
    return result


def test_message_repeated_failures_count_as_many_attempts() -> None:
    # rsyslog folded 5 more identical "Failed password" lines: 5 attempts (OpenSSH_2k).
    result = _decode_all("<38>Dec 10 07:13:56 LabSZ sshd[24227]: message repeated 5 times: "
                         "[ Failed password for root from 5.36.59.76 port 42393 ssh2]")
    assert len(result.events) == 5
    assert len({e["event"]["hash"] for e in result.events}) == 5
    for ev in result.events:
        assert (ev["event"]["action"], ev["event"]["outcome"]) == ("ssh_login", "failure")
        assert ev["source"] == {"ip": "5.36.59.76", "port": 42393}
        assert ev["socd"]["vendor"]["sshd"]["repeated"] == 5
        ev["event"].pop("hash")
    assert all(ev == result.events[0] for ev in result.events)
    assert result.events[0] is not result.events[1]


def test_message_repeated_bounds() -> None:
    forged = _decode_all("<38>Dec 10 07:13:56 h sshd[1]: message repeated 999999999 times: "
                         "[ Failed password for root from 192.0.2.1 port 1 ssh2]")
    assert len(forged.events) == MAX_REPEATS
    assert forged.events[0]["socd"]["vendor"]["sshd"]["repeated"] == 999999999
    accepted = _decode_all("<38>Dec 10 07:13:56 h sshd[1]: message repeated 2 times: "
                           "[ Accepted publickey for deploy from 10.0.0.5 port 1 ssh2]")
    assert len(accepted.events) == 1  # only failures are counted by thresholds
    other = _decode_all("<38>Dec 10 07:13:56 h sshd[1]: message repeated 3 times: "
                        "[ Connection closed by 192.0.2.1 port 1 [preauth]]")
    assert len(other.events) == 1


def test_parse_payloads_off() -> None:
    ev = one("<38>Mar  5 09:12:01 web01 sshd[1]: Failed password for root from 192.0.2.1 "
             "port 1 ssh2", decoder(parse_payloads=False))
    assert "user" not in ev
    assert "category" not in ev["event"]


# -- CEF / LEEF -------------------------------------------------------------------------

def test_cef_header_escapes() -> None:
    cef = parse_cef(r"CEF:0|Vendor\|Inc|Prod\\uct|1.0|sig\|1|Name \| pipe|High|"
                    r"msg=line1\nline2 eq\=sign back\\slash src=10.0.0.2")
    assert cef is not None
    assert cef["device_vendor"] == "Vendor|Inc"
    assert cef["device_product"] == "Prod\\uct"
    assert cef["signature_id"] == "sig|1"
    assert cef["name"] == "Name | pipe"
    assert cef["severity"] == "High"
    assert cef["extension"] == {"msg": "line1\nline2 eq=sign back\\slash", "src": "10.0.0.2"}


def test_cef_extension_values_with_spaces() -> None:
    assert parse_extension("a=1 b=two words  c=x\\=y d=") == {
        "a": "1", "b": "two words", "c": "x=y", "d": ""}
    assert parse_extension("") == {}
    assert unescape(r"a\\b\=c\|d\ne") == "a\\b=c|d\ne"


def test_cef_event_fields() -> None:
    ev = one("<134>Oct 11 22:14:15 pa-fw01 CEF:0|Palo Alto Networks|PAN-OS|9.1.0|url|URL|1|"
             "rt=Oct 11 2023 15:14:15 GMT src=10.20.30.40 dst=93.184.216.34 spt=51515 dpt=80 "
             "proto=6 act=alert suser=corp\\\\nguyen request=http://x.example/ "
             "cs1Label=Rule cs1=Allow-Web in=100 out=2000 msg=visited a site")
    assert ev["event"]["kind"] == "alert"
    assert ev["event"]["dataset"] == "cef"
    assert ev["@timestamp"] == "2023-10-11T15:14:15+00:00"
    assert ev["source"] == {"ip": "10.20.30.40", "port": 51515, "bytes": 100}
    assert ev["destination"] == {"ip": "93.184.216.34", "port": 80, "bytes": 2000}
    assert ev["network"]["transport"] == "tcp"
    assert ev["event"]["action"] == "alert"
    assert ev["user"]["name"] == "corp\\nguyen"
    assert ev["url"]["original"] == "http://x.example/"
    assert ev["message"] == "visited a site"
    assert ev["rule"] == {"id": "url", "name": "URL"}
    assert ev["observer"]["vendor"] == "Palo Alto Networks"
    assert ev["socd"]["vendor"]["cef_labels"] == {"Rule": "Allow-Web"}
    assert ev["socd"]["vendor"]["cef"]["cs1"] == "Allow-Web"
    assert ev["socd"]["vendor_severity"] == "1"
    assert ev["socd"]["severity"] == "low"
    assert ev["host"]["hostname"] == "pa-fw01"


@pytest.mark.parametrize(("severity", "expected"), [
    ("0", "low"), ("3", "low"), ("5", "medium"), ("7", "high"), ("8", "high"),
    ("9", "critical"), ("10", "critical"), ("Low", "low"), ("Medium", "medium"),
    ("High", "high"), ("Very-High", "critical"), ("Unknown", "low")])
def test_cef_severity_table(severity: str, expected: str) -> None:
    ev = one(f"CEF:0|V|P|1|s|n|{severity}|src=10.0.0.1", cef_decoder())
    assert ev["socd"]["severity"] == expected


def test_cef_device_severity_fallback() -> None:
    ev = one("CEF:0|V|P|1|s|n||deviceSeverity=9 src=10.0.0.1", cef_decoder())
    assert ev["socd"]["vendor_severity"] == "9"
    assert ev["socd"]["severity"] == "critical"


def test_cef_invalid_values_stay_in_vendor() -> None:
    ev = one("CEF:0|V|P|1|s|n|5|src=not-an-ip spt=99999 dpt=abc", cef_decoder())
    assert "source" not in ev
    assert "destination" not in ev
    assert ev["socd"]["vendor"]["cef"]["src"] == "not-an-ip"


def test_cef_decoder_requires_cef() -> None:
    assert failure(b"<13>Oct 11 22:14:15 h app: plain text", cef_decoder()) == "invalid_cef"
    assert failure(b"CEF:x|broken", cef_decoder()) == "invalid_cef"
    assert failure(b"\xff\xfe\x00garbage", cef_decoder()) == "invalid_utf8"


def test_cef_fixture_file() -> None:
    dec = cef_decoder()
    lines = [line for line in CEF_FIXTURE.read_bytes().splitlines() if line.strip()]
    events = [one(line, dec) for line in lines]
    assert all(e["event"]["kind"] == "alert" for e in events)
    by_vendor = {e["observer"]["vendor"]: e for e in events}
    pa = by_vendor["Palo Alto Networks"]
    assert pa["socd"]["severity"] == "critical"
    assert pa["socd"]["vendor"]["cef_labels"]["Rule"] == "Block-SMB"
    forti = by_vendor["Fortinet"]
    assert forti["source"]["bytes"] == 5120
    assert forti["socd"]["vendor"]["cef"]["FTNTFGTlogid"] == "0000000013"
    assert forti["network"]["protocol"] == "https"
    escaped = by_vendor["Vendor|Inc"]
    assert escaped["message"] == "line1\nline2 eq=sign back\\slash"
    assert escaped["url"]["original"] == "http://example.com/a?b=c&d=e"
    assert by_vendor["Snort"]["host"]["hostname"] == "ids01"


def test_leef_versions() -> None:
    leef = parse_leef("LEEF:1.0|Microsoft|MSExchange|4.0|15345|src=192.0.2.0\tdst=172.50.123.1"
                      "\tsev=5\tusrName=joe")
    assert leef is not None
    assert leef["attributes"]["usrName"] == "joe"
    leef = parse_leef("LEEF:2.0|Lancope|StealthWatch|1.0|41|^|src=10.0.1.8^dst=10.0.0.5^sev=5")
    assert leef is not None
    assert leef["attributes"] == {"src": "10.0.1.8", "dst": "10.0.0.5",
                                                        "sev": "5"}
    leef = parse_leef("LEEF:2.0|V|P|1|e|0x7c|src=10.0.1.9|dst=10.0.0.6")
    assert leef is not None
    assert leef["attributes"] == {"src": "10.0.1.9", "dst": "10.0.0.6"}
    assert parse_leef("LEEF:3.0|x") is None
    ev = one("<13>Oct 11 22:14:16 sw LEEF:2.0|Lancope|StealthWatch|1.0|41|^|src=10.0.1.8^"
             "dst=10.0.0.5^sev=8^srcPort=81^usrName=bob")
    assert ev["source"] == {"ip": "10.0.1.8", "port": 81}
    assert ev["user"]["name"] == "bob"
    assert ev["socd"]["vendor"]["leef"]["sev"] == "8"
    assert ev["socd"]["severity"] == "high"
    assert ev["event"]["code"] == "41"


def test_split_header() -> None:
    assert split_header("a|b|c", 2) == ["a", "b", "c"]
    assert split_header(r"a\|b|c|d", 2) == ["a|b", "c", "d"]
    assert split_header("a|b", 2) is None


# -- failures ---------------------------------------------------------------------------

def test_failure_reasons() -> None:
    assert failure(b"") == "invalid_syslog"
    assert failure(b"   \r\n") == "invalid_syslog"
    assert failure(b"\x00\x01\x02\x03 binary") == "invalid_syslog"
    assert failure(b"\xff\xfe\xfd\x80 binary") == "invalid_utf8"


def test_legacy_encoding_with_header_is_kept() -> None:
    ev = one(b"<13>Oct 11 22:14:15 h app: Ng\xe0y h\xf4m nay")
    assert "invalid_utf8" in ev["tags"]
    assert "\ufffd" in ev["message"]


def test_fixture_files_decode_without_failures() -> None:
    dec = decoder()
    for path in SYSLOG_FIXTURES:
        for line in path.read_bytes().splitlines():
            if line.strip():
                ev = one(line, dec)
                orjson.dumps(ev)  # serializable
                for field, _ in iter_leaf_paths(ev):
                    top = field.split(".")
                    # Every field is declared, or lives in a flattened namespace.
                    assert field in FIELDS_BY_NAME or any(
                        ".".join(top[:i]) in FIELDS_BY_NAME
                        and FIELDS_BY_NAME[".".join(top[:i])].type == "flattened"
                        for i in range(1, len(top))), field


def test_events_are_already_normalized() -> None:
    """The decoder skips normalize() for speed: normalize() must have nothing to fix."""
    dec = decoder()
    lines = [line for path in [*SYSLOG_FIXTURES, CEF_FIXTURE]
             for line in path.read_bytes().splitlines() if line.strip()]
    for line in lines:
        ev = one(line, dec)
        again = normalize(copy.deepcopy(ev))
        assert datetime.fromisoformat(again.pop("@timestamp")) == datetime.fromisoformat(
            ev.pop("@timestamp").replace("Z", "+00:00"))
        assert again == ev


# -- properties -------------------------------------------------------------------------

def _check(result: DecodeResult) -> None:
    assert len(result.events) + len(result.failures) == 1
    for f in result.failures:
        assert f.reason in FAILURE_REASONS
    for e in result.events:
        orjson.dumps(e)
        normalize(copy.deepcopy(e))  # never rejected by the event model


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_property_syslog_arbitrary_bytes(data: bytes) -> None:
    _check(decoder().decode(RawRecord(data, "syslog", "c", "", RECEIVED)))
    _check(cef_decoder().decode(RawRecord(data, "cef", "c", "", RECEIVED)))


_HEADERISH = st.sampled_from([
    "<13>", "<34>Oct 11 22:14:15 ", "<165>1 2003-10-11T22:14:15.003Z h a p m ", "CEF:0|",
    "LEEF:2.0|", "LEEF:1.0|", "sshd[1]: ", "sudo: ", "date=2024-01-01 time=00:00:00 ",
    "devname=", "[", "]", "=", "\\", "|", " ", '"', "%A-1-B: ", "\t", "^", "0x7c"])


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(_HEADERISH, st.text(max_size=12)), max_size=14))
def test_property_syslog_structured_garbage(parts: list[str]) -> None:
    data = "".join(parts).encode("utf-8", "surrogatepass")
    _check(decoder().decode(RawRecord(data, "syslog", "c", "", RECEIVED)))
    _check(cef_decoder().decode(RawRecord(data, "cef", "c", "", RECEIVED)))


_KEYS = st.from_regex(r"[A-Za-z][A-Za-z0-9]{0,8}", fullmatch=True)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_KEYS, st.text(alphabet=st.characters(
    blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=20), max_size=8),
    st.lists(st.text(max_size=10), min_size=6, max_size=6))
def test_property_cef_round_trip(ext: dict[str, str], header: list[str]) -> None:
    def esc_h(v: str) -> str:
        return v.replace("\\", "\\\\").replace("|", "\\|")

    def esc_v(v: str) -> str:
        return v.replace("\\", "\\\\").replace("=", "\\=")

    # Values may not end in spaces (they separate pairs) nor start with them.
    ext = {k: v.strip() for k, v in ext.items()}
    header = [h.replace("\r", "").replace("\n", "") for h in header]
    head = "|".join(esc_h(h) for h in header[:5]) + "|5"
    text = f"CEF:0|{head}|" + " ".join(f"{k}={esc_v(v)}" for k, v in ext.items())
    cef = parse_cef(text)
    assert cef is not None
    assert [cef["device_vendor"], cef["device_product"], cef["device_version"],
            cef["signature_id"], cef["name"]] == header[:5]
    # Unescaped '=' after a space inside a value is ambiguous in CEF: compare only the
    # values whose text cannot look like a key.
    simple = {k: v for k, v in ext.items() if not any(
        tok and "=" in tok for tok in v.split())}
    if len(simple) == len(ext):
        assert cef["extension"] == ext


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=300), max_size=20),
       st.lists(st.integers(min_value=1, max_value=400), min_size=1, max_size=30))
def test_property_octet_counting_splits_exactly(messages: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(b"%d %s" % (len(m), m) for m in messages)
    framer = Framer("octet_counting", max_bytes=1000)
    frames: list[bytes] = []
    pos = 0
    i = 0
    while pos < len(stream):
        step = cuts[i % len(cuts)]
        got, drops = framer.feed(stream[pos:pos + step])
        assert not drops
        frames.extend(got)
        pos += step
        i += 1
    got, drops = framer.finish()
    assert not drops
    assert not got
    assert frames == messages


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=200).map(lambda b: b.replace(b"\n", b"")), max_size=20),
       st.integers(min_value=1, max_value=64))
def test_property_newline_framing(lines: list[bytes], step: int) -> None:
    stream = b"".join(line + b"\n" for line in lines)
    framer = Framer("newline", max_bytes=150)
    frames: list[bytes] = []
    drops: list = []
    for pos in range(0, len(stream), step):
        got, dropped = framer.feed(stream[pos:pos + step])
        frames.extend(got)
        drops.extend(dropped)
    got, dropped = framer.finish()
    frames.extend(got)
    drops.extend(dropped)
    expected = [ln.rstrip(b"\r") for ln in lines
                if len(ln) <= 150 and ln.rstrip(b"\r").strip(b" \t\r\n\x00")]
    assert frames == expected
    assert len(drops) == sum(1 for ln in lines if len(ln) > 150)
    assert all(reason == "oversize" and len(raw) <= 150 for reason, raw, _ in drops)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000), st.sampled_from(["auto", "octet_counting", "newline"]),
       st.integers(min_value=1, max_value=700))
def test_property_framer_never_raises(data: bytes, mode: str, step: int) -> None:
    framer = Framer(mode, max_bytes=480)
    for pos in range(0, len(data), step):
        frames, drops = framer.feed(data[pos:pos + step])
        assert all(len(f) <= 480 for f in frames)
        assert all(len(raw) <= 480 for _, raw, _ in drops)
    framer.finish()


def test_framer_cases() -> None:
    f = Framer("auto", max_bytes=10)
    assert f.feed(b"5 hello3 abc") == ([b"hello", b"abc"], [])
    assert f.feed(b"12 0123456789ab4 tail") == ([b"tail"], [
        ("oversize", b"0123456789", "octet-counted frame of 12 bytes > 10")])
    assert f.feed(b"7 abc") == ([], [])
    assert f.finish()[1][0][0] == "truncated_frame"
    f = Framer("auto", max_bytes=10)
    assert f.feed(b"<13>a\r\n<13>b\n<13>c")[0] == [b"<13>a", b"<13>b"]
    assert f.finish() == ([b"<13>c"], [])
    f = Framer("octet_counting", max_bytes=100)
    frames, drops = f.feed(b"5 hellox junk line\n<13>next\n")
    assert frames == [b"hello", b"<13>next"]
    assert drops[0][0] == "framing_error"
    f = Framer("newline", max_bytes=10)
    frames, drops = f.feed(b"0123456789ABCDEF")
    assert drops[0][0] == "oversize"
    assert not frames
    assert f.feed(b"still-long\nok\n") == ([b"ok"], [])


def test_collector_config_validation() -> None:
    cfg = SyslogCollector.Config(type="syslog", listeners=[{"protocol": "udp"}])
    assert cfg.decoder == "syslog"
    with pytest.raises(ValueError, match="tls listener"):
        SyslogCollector.Config(type="syslog", listeners=[{"protocol": "tls"}])
    with pytest.raises(ValueError, match="not an IP"):
        SyslogCollector.Config(type="syslog", listeners=[{"protocol": "udp"}],
                               allowed_senders=["10.0.0.0/8", "nope"])


# -- socd replay ------------------------------------------------------------------------

@pytest.mark.parametrize(("fmt", "path", "count"), [
    ("syslog", FIXTURES / "syslog" / "rfc3164.log", 22),
    ("syslog", FIXTURES / "syslog" / "rfc5424.log", 9),
    ("syslog", FIXTURES / "syslog" / "payloads.log", 5),
    ("cef", CEF_FIXTURE, 6)])
def test_replay_cli(fmt: str, path: Path, count: int, isolated_env: Path) -> None:
    out = io.BytesIO()

    class Stdout(io.TextIOWrapper):
        pass

    wrapper = io.TextIOWrapper(out, encoding="utf-8")
    with redirect_stdout(wrapper):
        code = cli.main(["replay", "--format", fmt, str(path)])
        wrapper.flush()
    assert code == 0
    events = [orjson.loads(line) for line in out.getvalue().splitlines()]
    # Alerts of the shipped rules (event.dataset socd.rules) come on top of the decoded events.
    events = [e for e in events if e.get("event", {}).get("dataset") != "socd.rules"]
    assert len(events) == count
    assert all(e["socd"]["decoder"] == fmt for e in events)
    if fmt == "cef":
        assert all(e["event"]["kind"] == "alert" for e in events)
