"""The syslog decoder's fast path (issue 17) gives the general parser's events, byte for byte.

``SyslogDecoder._parse_fast`` reads the common RFC 3164 line (sshd, PAM and plain
messages) without the general path's chain of checks; a line it does not read goes to
``parse()``. Every decode here runs twice, with the fast path and without it (``_fast``
off), and the serialised results (key order included) must be equal.
"""

from __future__ import annotations

import time

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from socd.decoders.syslog import SyslogDecoder
from socd.plugins import RawRecord

RECEIVED = 1780000000.5

MESSAGES = [
    "Failed password for root from 1.2.3.4 port 22 ssh2",
    "Failed password for invalid user x y from 1.2.3.4 port 99999 ssh2",
    "Failed publickey for a from ::ffff:1.2.3.4 port 1 ssh2",
    "Failed none for invalid user  from fe80::1%eth0 port 5 ssh2",
    "Failed password for root from 1.2.3.4 port \u0661\u0662 ssh2",
    "Accepted password for bob from 10.0.0.1 port 5 ssh2",
    "Accepted gssapi-with-mic for bob from 10.0.0.300 port 5 ssh2",
    "Invalid user admin from 1.2.3.4",
    "Invalid user admin from 1.2.3.4 port 22",
    "Invalid user  from 1.2.3.4 port 22  ",
    "Connection closed by authenticating user root 1.2.3.4 port 22 [preauth]",
    "Connection closed by invalid user x 1.2.3.4 port 22 [preauth]",
    "error: maximum authentication attempts exceeded for invalid user x from 1.2.3.4 port 2",
    "maximum authentication attempts exceeded for root from 1.2.3.4 port 2 ssh2",
    "message repeated 3 times: [ Failed password for root from 1.2.3.4 port 22 ssh2]",
    "message repeated 2 times: [ Accepted password for root from 1.2.3.4 port 22 ssh2]",
    "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= "
    "rhost=1.2.3.4  user=root",
    "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= "
    "rhost=host.example.com",
    "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= "
    "rhost=fe80::1%x",
    "pam_unix(sshd:auth): authentication failure; logname=a uid=0 euid=0 tty=ssh ruser=b "
    "rhost= ",
    "pam_unix(su:auth): authentication failure; logname=a uid=1 euid=0 tty=pts/0 ruser=a "
    "rhost=  user=root",
    "PAM 5 more authentication failures; logname= uid=0 euid=0 tty=ssh ruser= "
    "rhost=1.2.3.4  user=root",
    "(pam_unix) authentication failure; logname= uid=0 euid=0 tty=NODEVssh ruser= rhost=1.2.3.4",
    "pam_unix: authentication failure; not the layout",
    "authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=1.2.3.4\nuser=x",
    "pam_unix(sshd:auth): check pass; user unknown",
    "Received disconnect from 1.2.3.4: 11: Bye Bye [preauth]",
    "  alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/bin/ls",
    "CEF:0|V|P|1|100|name|5|src=1.2.3.4 dst=5.6.7.8",
    "LEEF:1.0|V|P|1|ev|src=1.2.3.4",
    "%ASA-6-302013: Built",
    "IN=eth0 OUT= MAC= SRC=1.2.3.4 DST=5.6.7.8 LEN=60 PROTO=TCP SPT=1 DPT=22",
    "date=2024-01-01 time=01:02:03 devname=fw1 logid=1 type=utm subtype=ips srcip=1.2.3.4",
    "",
    "   ",
    "Failed ",
    "ctrl \x01 char",
]
PROGRAMS = ["sshd[24200]", "sshd", "sshd-session[1]", "sudo", "su[3]", "filterlog[2]", "CEF",
            "CRON[99]", "sshd[1234567890]"]
HEADERS = ["", "<38>", "<13>", "<0>", "<191>", "<192>", "<038>", "<\u0661\u0663>", "<1"]
STAMPS = ["Jun  1 06:55:46", "Dec 31 23:59:59", "Feb 29 12:00:00", "Jun 31 10:00:00",
          "Jun 01 06:55:60", "Jan  1 00:00:00"]
HOSTS = ["LabSZ", "UTC1", "GMTx", "h.example.com"]


def _decoders() -> tuple[SyslogDecoder, SyslogDecoder]:
    fast = SyslogDecoder.create("syslog")
    slow = SyslogDecoder.create("syslog")
    slow._fast = False  # noqa: SLF001 - the general path only
    return fast, slow


def _result(decoder: SyslogDecoder, record: RawRecord) -> bytes:
    result = decoder.decode(record)
    failures = [(f.reason, f.raw, f.detail) for f in result.failures]
    return orjson.dumps([result.events, [(r, raw.hex(), d) for r, raw, d in failures]])


def _same(fast: SyslogDecoder, slow: SyslogDecoder, data: bytes, received: float = RECEIVED,
          source: str = "udp://10.0.0.1:514") -> None:
    record = RawRecord(data, "syslog", "c", source, received, False, True)
    assert _result(fast, record) == _result(slow, record), data


@pytest.fixture(autouse=True)
def _frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "time", lambda: RECEIVED + 0.25)


def test_fast_path_reads_the_common_sshd_lines() -> None:
    fast, _ = _decoders()
    for message in MESSAGES[:14]:
        line = f"Jun  1 06:55:46 LabSZ sshd[24200]: {message}".encode()
        assert fast._parse_fast(line, RECEIVED) is not None, line  # noqa: SLF001


def test_fast_path_gives_the_general_events() -> None:
    fast, slow = _decoders()
    for header in HEADERS:
        for stamp in STAMPS:
            for host in HOSTS:
                for program in PROGRAMS:
                    for message in MESSAGES:
                        line = f"{header}{stamp} {host} {program}: {message}"
                        _same(fast, slow, line.encode())
    # Trailing bytes parse() strips, a BOM, control characters, Latin-1, several seconds
    # and minutes (the stamp caches), the sources decode() reads an address from.
    base = b"Jun  1 06:55:46 LabSZ sshd[1]: Failed password for root from 1.2.3.4 port 22 ssh2"
    for data in (base + b"\r\n", base + b"\x00", b"\xef\xbb\xbf" + base, base + b"\xff",
                 base.replace(b"root", b"ro\x01ot"), b"<38>" + base.replace(b"root", b"r\x01")):
        _same(fast, slow, data)
    for i in range(200):
        line = f"Jun  1 06:{i % 60:02d}:{i * 7 % 61:02d} LabSZ sshd[{i}]: {MESSAGES[i % 14]}"
        _same(fast, slow, line.encode(), RECEIVED + i * 13.7, ("", "x", "tcp://[::1]:6")[i % 3])


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(HEADERS), st.sampled_from(STAMPS), st.sampled_from(HOSTS),
       st.sampled_from(PROGRAMS), st.sampled_from(MESSAGES), st.text(max_size=12),
       st.integers(min_value=0, max_value=120))
def test_property_fast_path_equivalence(header: str, stamp: str, host: str, program: str,
                                        message: str, noise: str, cut: int) -> None:
    fast, slow = _decoders()
    line = f"{header}{stamp} {host} {program}: {message}"
    cut = min(cut, len(line))
    for text in (line, line[:cut] + noise + line[cut:], line + noise):
        _same(fast, slow, text.encode("utf-8", "surrogatepass"))
