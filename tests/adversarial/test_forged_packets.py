"""Spoofed packets seen by the network sensor cannot make socd block an address.

A SYN scan is trivially sent with a forged source address; a sensor that counted as an
authenticated source for blocking would let anyone on the mirrored network block any
address that is not allowlisted. A real ``socd run`` in a private network namespace,
with the shipped rule pack and a blocker sink writing real nftables sets there, replays
two captures of a 30-port SYN scan from a forged (documentation) address:

* ``lan``: a sensor with the defaults. ``net-port-scan`` fires, the block is audited as
  refused (``unauthenticated_source``) and the address never reaches the set;
* ``lan_optin``: a sensor whose operator set ``allow_unauthenticated_blocking: true``:
  the address is blocked (the set-up can block, so the refusal above is meaningful).

``socd check-config`` warns about both. The test FAILS (never skips) when ``ip`` or
``nft`` is missing.

Forged packets cannot fake a session either: one-way packets with any TCP flags, and
answers whose sequence numbers do not match, replayed through the sensor and the shipped
pack, raise no reverse-shell alert against the internal address they pretend to come
from, while a real handshake does; a forged scan "from" an internal address raises the
internal-scan alert without any block action (own infrastructure is never blocked).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import wrpcap

from socd import config as config_mod
from socd.app.components import build_classifier
from socd.collectors.sensor import SensorCollector
from socd.decoders.json import JsonDecoder
from socd.plugins import PluginContext
from tests.adversarial.test_forged_syslog import (  # noqa: F401 - `site` is a fixture
    HTTP,
    PY,
    Site,
    _metrics,
    _start,
    sh,
    site,
)
from tests.helpers import metric, wait_for

pytestmark = pytest.mark.timeout(240)

FORGED, FORGED_OPTIN = "198.51.100.77", "198.51.100.78"
TARGET = "203.0.113.10"


def _scan(path: Path, source: str) -> None:
    """A capture of a SYN scan of 30 ports, nothing answering, timed now."""
    start = datetime.now(UTC).timestamp()
    packets = []
    for i in range(30):
        pkt = Ether() / IP(src=source, dst=TARGET) / TCP(sport=40000 + i, dport=1000 + i,
                                                         flags="S")
        pkt.time = start + i * 0.01
        packets.append(pkt)
    wrpcap(str(path), packets)


def _config(where: Site) -> dict[str, object]:
    return {
        "state_dir": str(where.workdir / "state"),
        "log": {"format": "json"},
        "http": {"host": "127.0.0.1", "port": HTTP},
        "collectors": {
            "lan": {"type": "sensor", "pcap_files": ["scan.pcap"]},
            "lan_optin": {"type": "sensor", "pcap_files": ["scan-optin.pcap"],
                          "allow_unauthenticated_blocking": True},
        },
        "sinks": {
            "alerts": {"type": "ndjson", "path": "alerts.ndjson", "flush_interval_secs": 0.1},
            "block": {"type": "blocker", "backend": "nftables", "table": where.table,
                      "path": "blocks.db"},
        },
    }


def test_a_spoofed_scan_seen_by_the_sensor_blocks_nothing(site: Site) -> None:  # noqa: F811
    _scan(site.workdir / "scan.pcap", FORGED)
    _scan(site.workdir / "scan-optin.pcap", FORGED_OPTIN)
    site.config.write_text(yaml.safe_dump(_config(site), sort_keys=False))
    checked = sh(PY, "-m", "socd", "check-config", "-c", str(site.config), check=False)
    assert checked.returncode == 0, checked.stderr
    warnings = [line for line in checked.stderr.splitlines() if "warning" in line]
    assert any("collectors.lan:" in w and "unauthenticated_source" in w
               for w in warnings), checked.stderr
    assert any("collectors.lan_optin" in w and "allow_unauthenticated_blocking" in w
               for w in warnings), checked.stderr

    proc = _start(site)
    try:
        wait_for(lambda: site.logged("block refused", value=FORGED)
                 or FORGED in site.elements(), 60, "the blocker's decision on the scan")
        wait_for(lambda: FORGED_OPTIN in site.elements(), 60,
                 "the opted-in sensor's block in the nftables set")
        time.sleep(0.5)  # a block of FORGED would have been pushed with the other
        assert proc.poll() is None, site.log.read_text()[-4000:]
        metrics = _metrics(site)
        audit = site.run(PY, "-m", "socd", "block", "audit", "-c", str(site.config)).stdout
        elements = site.elements()
    finally:
        proc.terminate()
        proc.wait(60)

    assert FORGED not in elements
    refused = site.logged("block refused", value=FORGED)
    assert str(refused[0]["why"]).startswith("unauthenticated_source: collector lan "), refused
    audit_lines = [line for line in audit.splitlines() if FORGED in line]
    assert audit_lines, audit
    assert all("refuse" in line for line in audit_lines), audit
    assert metric(metrics, "socd_block_refused_total", reason="unauthenticated_source") == 1
    assert metric(metrics, "socd_block_decisions_total", action="add") == 1


# -- forged sessions ---------------------------------------------------------------------

SERVER_IN, SHELL_OUT = "10.10.20.45", "198.51.100.99"


def _at(pkt: Any, ts: float) -> Any:
    frame = Ether() / pkt
    frame.time = ts
    return frame


def _forgeries(start: float) -> list[Any]:
    """Packets a forger on the mirrored network can send "from" SERVER_IN to :4444."""
    out: list[Any] = []
    for flags in range(64):  # one-way, every flag combination, with data
        out.append(_at(IP(src=SERVER_IN, dst=SHELL_OUT) / TCP(
            sport=20000 + flags, dport=4444, flags=flags, seq=1, ack=1) / Raw(b"id\n"),
            start + flags * 0.01))
    # A SYN, an "answer" whose ack does not acknowledge it, then data one way only.
    t = start + 1
    out += [_at(IP(src=SERVER_IN, dst=SHELL_OUT) / TCP(sport=21000, dport=4444, flags="S",
                                                       seq=100), t),
            _at(IP(src=SHELL_OUT, dst=SERVER_IN) / TCP(sport=4444, dport=21000, flags="SA",
                                                       seq=900, ack=555), t + 0.01),
            _at(IP(src=SERVER_IN, dst=SHELL_OUT) / TCP(sport=21000, dport=4444, flags="PA",
                                                       seq=101, ack=901) / Raw(b"x"), t + 0.02)]
    # The real thing, refused: SYN answered by RST-ACK.
    out += [_at(IP(src=SERVER_IN, dst=SHELL_OUT) / TCP(sport=21001, dport=31337, flags="S",
                                                       seq=300), t + 0.1),
            _at(IP(src=SHELL_OUT, dst=SERVER_IN) / TCP(sport=31337, dport=21001, flags="RA",
                                                       seq=0, ack=301), t + 0.11)]
    # A spoofed SYN scan "from" another internal address.
    out += [_at(IP(src="10.10.20.60", dst="10.10.20.1") / TCP(sport=22000 + i, dport=1000 + i,
                                                             flags="S"), t + 0.2 + i * 0.01)
            for i in range(30)]
    return out


def _handshake(start: float) -> list[Any]:
    """A genuine session from 10.10.20.46 to :4444 (the control: it must alert)."""
    c, s = "10.10.20.46", SHELL_OUT
    return [_at(IP(src=c, dst=s) / TCP(sport=23000, dport=4444, flags="S", seq=10), start),
            _at(IP(src=s, dst=c) / TCP(sport=4444, dport=23000, flags="SA", seq=70, ack=11),
                start + 0.01),
            _at(IP(src=c, dst=s) / TCP(sport=23000, dport=4444, flags="A", seq=11, ack=71),
                start + 0.02),
            _at(IP(src=s, dst=c) / TCP(sport=4444, dport=23000, flags="PA", seq=71, ack=11)
                / Raw(b"whoami\n"), start + 0.03)]


def _pack_alerts(tmp_path: Path, packets: list[Any]) -> list[dict[str, Any]]:
    """Replay ``packets`` through the sensor, the json decoder and the shipped pack."""
    wrpcap(str(tmp_path / "forged.pcap"), packets)
    (tmp_path / "socd.yaml").write_text("rules:\n  paths: [builtin]\nioc:\n  enabled: false\n")
    classifier = build_classifier(config_mod.load(str(tmp_path / "socd.yaml")))
    collector = SensorCollector(SensorCollector.Config.model_validate(
        {"type": "sensor", "pcap_files": ["forged.pcap"]}),
        PluginContext(name="forged", dead_letter=None, config_dir=str(tmp_path)))
    decoder = JsonDecoder(JsonDecoder.Config(type="json"),
                          PluginContext(name="json", dead_letter=None))
    records: list[Any] = []

    async def emit(batch: Any, ack: Any = None) -> None:
        records.extend(batch)

    asyncio.run(collector.run(emit))
    events = [e for r in records for e in decoder.decode(r).events]
    return [e for e in classifier.process(events) if e["event"].get("kind") == "alert"]


def test_forged_packets_fake_no_session_and_block_no_internal_address(tmp_path: Path) -> None:
    start = datetime.now(UTC).timestamp() - 60
    alerts = _pack_alerts(tmp_path, [*_forgeries(start), *_handshake(start + 5)])
    shells = [a for a in alerts if a["rule"]["id"] == "net-reverse-shell-port"]
    assert [a["source"]["ip"] for a in shells] == ["10.10.20.46"], shells
    [scan] = [a for a in alerts if a["rule"]["id"] == "net-internal-port-scan"]
    assert scan["source"]["ip"] == "10.10.20.60"
    assert not [a for a in alerts if a["socd"].get("actions", {}).get("block")], alerts

