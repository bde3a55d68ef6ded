"""Firewall payloads of the syslog decoder: netfilter kernel lines and pf filterlog.

The lines are real ones from the CrowdSec hub's test logs (MIT; the corpus cases
tests/corpus/crowdsec-hub-*), kept whole here so the decoder's reading of them is pinned.
"""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

import pytest

from socd.decoders.firewall import apply_filterlog, apply_netfilter
from socd.decoders.syslog import SyslogDecoder
from socd.event import FIELDS_BY_NAME, iter_leaf_paths, normalize
from socd.plugins import PluginContext, RawRecord

RECEIVED = datetime.fromisoformat("2025-10-31T12:00:00+07:00").timestamp()

IPTABLES = ("Sep 30 10:09:23 scw-d95986 kernel: [19955416.516358] IN=ens2 OUT= "
            "MAC=de:1c:88:64:10:19:5e:e1:a4:3b:cf:f0:08:00 SRC=62.34.17.168 DST=10.73.140.49 "
            "LEN=44 TOS=0x00 PREC=0x00 TTL=43 ID=25313 PROTO=TCP SPT=52220 DPT=80 WINDOW=1024 "
            "RES=0x00 SYN URGP=0")
UFW_AUDIT = ("Oct 30 10:09:23 vm-1 kernel: [UFW AUDIT] IN=lo OUT= "
             "MAC=00:00:00:00:00:00:00:00:00:00:00:00:08:00 SRC=127.0.0.1 DST=127.0.0.53 LEN=104 "
             "TOS=0x00 PREC=0x00 TTL=64 ID=16820 DF PROTO=TCP SPT=50616 DPT=53 ")
IPTABLES_DROP = ("Sep 27 20:56:38 ubuntu-focal kernel: [  203.842973] IPTABLES-DROP: IN=lo OUT= "
                 "MAC=00:00:00:00:00:00:00:00:00:00:00:00:08:00 SRC=127.0.0.1 DST=127.0.0.53 "
                 "LEN=76 TOS=0x00 PREC=0x00 TTL=64 ID=25029 DF PROTO=UDP SPT=49007 DPT=53 LEN=56 ")
PF_BLOCK = ("Sep 30 14:35:50 pfSense filterlog: 53,,,1000102631,em0,match,block,in,4,0x0,,64,"
            "892,0,none,6,tcp,44,10.0.2.2,10.0.2.15,59576,22,0,S,17536001,,65535,,mss")
OPNSENSE_PASS = ('<134>1 2022-09-06T18:37:34+02:00 opnsense filterlog 69805 - [meta '
                 'sequenceId="2633354"] 103,,,40b9591224d055de2beec8b74ea486b1,re0,match,pass,'
                 'in,4,0x0,,116,11172,0,none,17,udp,48,68.41.165.77,10.0.0.200,64752,51918,28')
PFSENSE_V6 = ("<134>1 2025-11-06T11:42:14.270789+00:00 firewall.lan filterlog 92653 - - 621,,,"
              "1644355515,vtnet0.10,match,block,in,6,0x00,0x07c63,64,TCP,6,44,"
              "fdfd:ace:ace:10:d8:cdbf:f6f8:6d69,fdfd:ace:ace:5::6,65382,443,0,S,1927530165,,0,,"
              "mss;nop;wscale;nop;nop;TS;sackOK;eol")


def decode(line: str) -> dict[str, Any]:
    dec = SyslogDecoder(SyslogDecoder.Config(type="syslog"),
                        PluginContext(name="syslog", dead_letter=None))
    result = dec.decode(RawRecord(line.encode(), "syslog", "coll", "file", RECEIVED))
    assert result.failures == []
    (event,) = result.events
    return event


def test_iptables_log_without_prefix() -> None:
    event = decode(IPTABLES)
    assert event["event"]["category"] == ["network"]
    assert event["event"]["type"] == ["connection"]
    assert event["event"]["action"] == "log"
    assert event["event"]["module"] == "netfilter"
    assert event["observer"] == {"type": "firewall", "product": "netfilter",
                                 "ingress": {"interface": {"name": "ens2"}}}
    assert event["source"] == {"ip": "62.34.17.168", "port": 52220}
    assert event["destination"] == {"ip": "10.73.140.49", "port": 80}
    assert event["network"] == {"transport": "tcp"}
    assert event["socd"]["vendor"]["netfilter"]["flags"] == ["SYN"]
    assert "rule" not in event


@pytest.mark.parametrize(("line", "action", "product", "name"), [
    (UFW_AUDIT, "log", "UFW", "UFW AUDIT"),
    (IPTABLES_DROP, "deny", "netfilter", "IPTABLES-DROP"),
    (UFW_AUDIT.replace("UFW AUDIT", "UFW BLOCK"), "deny", "UFW", "UFW BLOCK"),
    (UFW_AUDIT.replace("UFW AUDIT", "UFW ALLOW"), "allow", "UFW", "UFW ALLOW"),
])
def test_the_prefix_gives_the_verdict(line: str, action: str, product: str, name: str) -> None:
    event = decode(line)
    assert event["event"]["action"] == action
    assert event["observer"]["product"] == product
    assert event["rule"] == {"name": name}


def test_pfsense_block() -> None:
    event = decode(PF_BLOCK)
    assert event["event"]["action"] == "deny"
    assert event["event"]["type"] == ["connection", "denied"]
    assert event["event"]["module"] == "pf"
    assert event["source"] == {"ip": "10.0.2.2", "port": 59576}
    assert event["destination"] == {"ip": "10.0.2.15", "port": 22}
    assert event["network"] == {"transport": "tcp", "direction": "ingress"}
    assert event["rule"] == {"id": "1000102631", "name": "pf rule 53"}


def test_opnsense_rfc5424_pass_and_pfsense_ipv6() -> None:
    passed = decode(OPNSENSE_PASS)
    assert passed["event"]["action"] == "allow"
    assert passed["source"] == {"ip": "68.41.165.77", "port": 64752}
    assert passed["network"]["transport"] == "udp"
    v6 = decode(PFSENSE_V6)
    assert v6["source"] == {"ip": "fdfd:ace:ace:10:d8:cdbf:f6f8:6d69", "port": 65382}
    assert v6["destination"] == {"ip": "fdfd:ace:ace:5::6", "port": 443}
    assert v6["@timestamp"].startswith("2025-11-06T11:42:14")


@pytest.mark.parametrize("line", [IPTABLES, UFW_AUDIT, IPTABLES_DROP, PF_BLOCK, OPNSENSE_PASS,
                                  PFSENSE_V6])
def test_events_are_normalized_and_declared(line: str) -> None:
    """The syslog decoder skips normalize(): these events must need nothing from it."""
    event = decode(line)
    again = normalize(copy.deepcopy(event))
    assert datetime.fromisoformat(again.pop("@timestamp")) == datetime.fromisoformat(
        event.pop("@timestamp"))
    assert again == event
    for field, _ in iter_leaf_paths(event):
        assert field in FIELDS_BY_NAME or field.startswith(("socd.vendor.", "log.syslog.")), field


@pytest.mark.parametrize("message", [
    "IN=eth0 OUT= SRC=not-an-ip DST=10.0.0.1 PROTO=TCP SPT=1 DPT=2",
    "IN=eth0 OUT= SRC=10.0.0.1%eth0 DST=10.0.0.1 PROTO=TCP",
    "LOGIN=admin SRC=10.0.0.1 DST=10.0.0.2",
    "no firewall here",
])
def test_netfilter_refuses_what_is_not_one(message: str) -> None:
    event: dict[str, Any] = {"event": {"kind": "event"}}
    assert apply_netfilter(event, message) is False
    assert event == {"event": {"kind": "event"}}


@pytest.mark.parametrize("message", [
    "53,,,1000102631,em0,match,block,in,4",
    "53,,,1,em0,match,block,in,5,0x0,,64,892,0,none,6,tcp,44,10.0.2.2,10.0.2.15",
    "53,,,1,em0,match,block,in,4,0x0,,64,892,0,none,6,tcp,44,10.0.2.2,bad,1,2",
])
def test_filterlog_refuses_what_does_not_read(message: str) -> None:
    assert apply_filterlog({"event": {}}, message) is False


def test_ports_out_of_range_are_left_out() -> None:
    event: dict[str, Any] = {"event": {}}
    assert apply_netfilter(event, "IN=eth0 OUT= SRC=192.0.2.1 DST=192.0.2.2 PROTO=UDP "
                                  "SPT=99999 DPT=53")
    assert event["source"] == {"ip": "192.0.2.1"}
    assert event["destination"] == {"ip": "192.0.2.2", "port": 53}
