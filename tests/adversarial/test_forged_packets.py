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
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

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
