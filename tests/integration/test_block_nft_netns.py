"""nftables blocking for real, in two network namespaces joined by a veth pair.

Namespace A runs socd's blocker (the CLI and the sink, via ``ip netns exec``:
nft works on the namespace it runs in); namespace B connects to a TCP listener
in A. Blocking B's address must make the connection fail, an allowlisted
address must never be added, a 2 s TTL must lift itself, and the start-up
resync must restore blocks after the table was deleted. These tests FAIL (never
skip) when ``ip`` or ``nft`` is missing or namespaces cannot be created.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.adversarial.netns import delete_stale, owned_tag

pytestmark = pytest.mark.integration

PY = sys.executable
PORT = 18080


def _need(cmd: str, package: str) -> str:
    path = shutil.which(cmd) or (f"/usr/sbin/{cmd}" if os.path.exists(f"/usr/sbin/{cmd}")
                                 else None)
    if path is None:
        pytest.fail(f"`{cmd}` not found: install the Debian package `{package}` "
                    "(listed in deploy/dev/apt-packages.txt; `bash scripts/services.sh up` "
                    "installs it)", pytrace=False)
    return path


def sh(*argv: str, check: bool = True, timeout: float = 60,
       input_: str | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=timeout,
                          input=input_)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


@dataclass
class Pair:
    a: str
    b: str
    addr_a: str
    addr_b: str
    addr_allowed: str  # a second address of B, allowlisted
    table: str
    workdir: Path

    def in_a(self, *argv: str, check: bool = True, timeout: float = 60
             ) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", self.a, *argv, check=check, timeout=timeout)

    def socd(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.in_a(PY, "-m", "socd", "block", *args, "-c", str(self.config),
                         check=check)

    @property
    def config(self) -> Path:
        return self.workdir / "socd.yaml"

    def connects(self, src: str | None = None, dst: str | None = None,
                 from_ns: str | None = None) -> bool:
        """A TCP connection from B (bound to ``src``) to A's listener succeeds."""
        code = textwrap.dedent(f"""
            import socket, sys
            s = socket.socket()
            s.settimeout(1.0)
            if {src!r}:
                s.bind(({src!r}, 0))
            try:
                s.connect(({dst or self.addr_a!r}, {PORT}))
            except OSError:
                sys.exit(1)
            sys.exit(0)
        """)
        ns = from_ns or self.b
        return sh("ip", "netns", "exec", ns, PY, "-c", code, check=False).returncode == 0

    def elements(self) -> str:
        return self.in_a("nft", "list", "set", "inet", self.table, "blocked4").stdout


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    _need("ip", "iproute2")
    _need("nft", "nftables")
    delete_stale("sdb")
    owner, net = owned_tag("sdb")
    p = Pair(a=f"{owner}a", b=f"{owner}b", addr_a=f"10.202.{net}.1",
             addr_b=f"10.202.{net}.6", addr_allowed=f"10.202.{net}.3",
             table=f"socdt{owner[3:]}",
             workdir=tmp_path)
    listener: subprocess.Popen[bytes] | None = None
    try:
        sh("ip", "netns", "add", p.a)
        sh("ip", "netns", "add", p.b)
        sh("ip", "link", "add", p.a, "type", "veth", "peer", "name", p.b)
        sh("ip", "link", "set", p.a, "netns", p.a)
        sh("ip", "link", "set", p.b, "netns", p.b)
        sh("ip", "-n", p.a, "addr", "add", f"{p.addr_a}/24", "dev", p.a)
        sh("ip", "-n", p.b, "addr", "add", f"{p.addr_b}/24", "dev", p.b)
        sh("ip", "-n", p.b, "addr", "add", f"{p.addr_allowed}/24", "dev", p.b)
        for ns in (p.a, p.b):
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "link", "set", ns, "up")
        server = textwrap.dedent(f"""
            import socket
            s = socket.create_server(("0.0.0.0", {PORT}))
            while True:
                c, _ = s.accept()
                c.close()
        """)
        listener = subprocess.Popen(["ip", "netns", "exec", p.a, PY, "-c", server])
        p.config.write_text(yaml.safe_dump({
            "state_dir": str(tmp_path / "state"),
            "sinks": {"block": {
                "type": "blocker", "backend": "nftables", "table": p.table,
                "default_ttl": "1h", "allowlist_cidrs": [f"{p.addr_allowed}/32"],
                "block_ioc_hits": True, "expiry_interval_secs": 0.5,
            }},
        }))
        deadline = time.monotonic() + 10
        while not p.connects():
            if time.monotonic() > deadline:
                raise AssertionError("the veth pair does not carry TCP before any block")
            time.sleep(0.1)
        yield p
    finally:
        if listener is not None:
            listener.kill()
            listener.wait()
        for ns in (p.a, p.b):
            sh("ip", "netns", "delete", ns, check=False)


def test_block_drops_packets_and_never_adds_allowlisted(pair: Pair) -> None:
    assert pair.connects(src=pair.addr_b)
    out = pair.socd("add", pair.addr_b, "--ttl", "1h", "--reason", "C&C", "--ref",
                    "941/CATTT-NCSC")
    assert "add:" in out.stdout, out
    assert pair.addr_b in pair.elements()
    assert not pair.connects(src=pair.addr_b), "blocked source still connects"
    assert "daddr @blocked4" in pair.in_a("nft", "list", "table", "inet", pair.table).stdout

    refused = pair.socd("add", pair.addr_allowed, "--reason", "oops", check=False)
    assert refused.returncode == 1
    assert "allowlisted" in refused.stderr
    assert pair.addr_allowed not in pair.elements()
    assert pair.connects(src=pair.addr_allowed), "allowlisted address must pass"

    audit = pair.socd("audit").stdout
    assert "refuse" in audit
    assert "941/CATTT-NCSC" in audit

    pair.socd("remove", pair.addr_b)
    assert pair.addr_b not in pair.elements()
    assert pair.connects(src=pair.addr_b)


def test_short_ttl_lifts_itself(pair: Pair) -> None:
    pair.socd("add", pair.addr_b, "--ttl", "2s", "--reason", "short")
    assert not pair.connects(src=pair.addr_b)
    deadline = time.monotonic() + 10
    while not pair.connects(src=pair.addr_b):
        if time.monotonic() > deadline:
            raise AssertionError("a 2 s block was not lifted by the kernel")
        time.sleep(0.2)
    pair.socd("sync")  # marks the decision expired (audited)
    listing = pair.socd("list", "--all").stdout
    assert "expired" in listing
    assert "expire" in pair.socd("audit").stdout


SINK_SCRIPT = """
import asyncio, json, sys
from socd import config as config_mod
from socd.block.sink import BlockerSink
from socd.plugins import PluginContext

async def main():
    cfg = config_mod.load(sys.argv[1])
    plugin = cfg.sinks["block"]
    sink = BlockerSink(plugin.config, PluginContext("block", None, cfg.config_dir,
                                                    cfg.state_dir))
    await sink.start()
    await sink.healthcheck()
    alerts = json.loads(open(sys.argv[2]).read())
    if alerts:
        await sink.write(alerts)
    await asyncio.sleep(float(sys.argv[3]))
    await sink.close()

asyncio.run(main())
"""


def _alert(value: str, *, ioc: bool = False) -> dict[str, object]:
    alert: dict[str, object] = {
        "@timestamp": "2026-11-16T01:00:00Z",
        "event": {"kind": "alert", "hash": secrets.token_hex(8)},
        "rule": {"id": "r-ssh-brute", "name": "SSH brute force"},
        "socd": {},
        "host": {"ip": "10.202.0.250"},
    }
    if ioc:
        alert["socd"] = {"ioc": {"matched": True, "values": [value],
                                 "refs": ["941/CATTT-NCSC"]}}
    else:
        alert["socd"] = {"actions": {"block": [{"value": value, "ttl_secs": 3600,
                                                "reason": "brute force"}]}}
    return alert


def _run_sink(pair: Pair, alerts: list[dict[str, object]], linger: float = 0.0) -> None:
    script = pair.workdir / "sink.py"
    script.write_text(SINK_SCRIPT)
    data = pair.workdir / "alerts.json"
    data.write_text(json.dumps(alerts))
    pair.in_a(PY, str(script), str(pair.config), str(data), str(linger))


def test_sink_blocks_rule_and_ioc_hits_and_resyncs_at_start(pair: Pair) -> None:
    _run_sink(pair, [_alert(pair.addr_b), _alert(pair.addr_allowed, ioc=True)])
    assert pair.addr_b in pair.elements()
    assert pair.addr_allowed not in pair.elements()
    assert not pair.connects(src=pair.addr_b)
    assert pair.connects(src=pair.addr_allowed)

    # Someone deletes the table: traffic passes again...
    pair.in_a("nft", "delete", "table", "inet", pair.table)
    assert pair.connects(src=pair.addr_b)
    # ... until socd starts: the start-up resync restores every active block.
    _run_sink(pair, [])
    assert pair.addr_b in pair.elements()
    assert not pair.connects(src=pair.addr_b)
    pair.in_a("nft", "delete", "table", "inet", pair.table)


def test_overlapping_networks_are_pushed_exactly(pair: Pair) -> None:
    net = pair.addr_b.rsplit(".", 1)[0]
    refused = pair.socd("add", f"{net}.0/28", "--reason", "covers A", check=False)
    assert refused.returncode == 1
    assert "own address" in refused.stderr
    pair.socd("add", f"{net}.4/30", "--ttl", "2s", "--reason", "net")
    pair.socd("add", pair.addr_b, "--ttl", "1h", "--reason", "host")
    elements = pair.elements()
    assert pair.addr_b in elements
    assert "interval overlaps" not in elements
    time.sleep(3)
    # The /28 expired in the kernel; the longer-lived host block inside it stays.
    assert not pair.connects(src=pair.addr_b)
    assert pair.connects(src=pair.addr_allowed)
    pair.in_a("nft", "delete", "table", "inet", pair.table)
