"""Finding 8: forged syslog cannot make socd block an address on its own.

A real ``socd run`` in a private network namespace, with the shipped rule pack, two
syslog collectors and a blocker sink writing real nftables sets in that namespace:

* ``sys``: a UDP and a TCP listener, ``allowed_senders: [127.0.0.1/32]``. UDP senders
  can be forged, so the list does not authenticate them; a TCP peer on the list is
  authenticated (the handshake proves the address).
* ``sys_optin``: a UDP listener whose operator opted in
  (``allow_unauthenticated_blocking: true``).

Five sshd failure lines naming one address make ``ssh-bruteforce`` fire on each path.
Over UDP the rule fires but nothing is enforced: the refusal is audited with the reason
``unauthenticated_source`` and counted. Over the allowed TCP peer and over the opted-in
UDP collector the address lands in the nftables set. ``socd check-config`` warns about
both UDP listeners.

A rule alert is as unauthenticated as the weakest event it counted: four forged UDP
lines and a fifth from an authenticated TCP peer (two collectors, one threshold) raise
the alert, but its block is refused. The tests FAIL (never skip) when ``ip`` or ``nft``
is missing.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from tests.helpers import metric, parse_metrics, wait_for

pytestmark = pytest.mark.timeout(240)

PY = sys.executable
STALE = re.compile(r"^socdf[0-9a-f]{4}$")
HTTP, UDP, TCP, UDP_OPTIN = 9797, 5514, 5515, 5516
VICTIM_UDP, VICTIM_TCP, VICTIM_OPTIN = "198.51.100.99", "198.51.100.98", "198.51.100.97"


def _need(cmd: str, package: str) -> None:
    if shutil.which(cmd) is None and not os.path.exists(f"/usr/sbin/{cmd}"):
        pytest.fail(f"`{cmd}` not found: install the Debian package `{package}`",
                    pytrace=False)


def sh(*argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


@dataclass
class Site:
    ns: str
    table: str
    workdir: Path

    @property
    def config(self) -> Path:
        return self.workdir / "socd.yaml"

    @property
    def log(self) -> Path:
        return self.workdir / "socd.log"

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", self.ns, *argv, check=check)

    def py(self, code: str) -> subprocess.CompletedProcess[str]:
        return self.run(PY, "-c", textwrap.dedent(code))

    def log_events(self) -> list[dict[str, object]]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def logged(self, message: str, **fields: str) -> list[dict[str, object]]:
        return [e for e in self.log_events() if e.get("event") == message
                and all(str(e.get(k, "")).startswith(v) for k, v in fields.items())]

    def elements(self) -> str:
        return self.run("nft", "list", "set", "inet", self.table, "blocked4").stdout


def _delete_stale() -> None:
    for line in sh("ip", "netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if STALE.match(name):
            sh("ip", "netns", "delete", name, check=False)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    _need("ip", "iproute2")
    _need("nft", "nftables")
    _delete_stale()
    tag = secrets.token_hex(2)
    s = Site(ns=f"socdf{tag}", table=f"socdf{tag}", workdir=tmp_path)
    sh("ip", "netns", "add", s.ns)
    try:
        sh("ip", "-n", s.ns, "link", "set", "lo", "up")
        yield s
    finally:
        sh("ip", "netns", "delete", s.ns, check=False)


def _config(site: Site) -> dict[str, object]:
    return {
        "state_dir": str(site.workdir / "state"),
        "log": {"format": "json"},
        "http": {"host": "127.0.0.1", "port": HTTP},
        "collectors": {
            "sys": {"type": "syslog", "allowed_senders": ["127.0.0.1/32"],
                    "flush_interval_secs": 0.05,
                    "listeners": [{"protocol": "udp", "host": "127.0.0.1", "port": UDP},
                                  {"protocol": "tcp", "host": "127.0.0.1", "port": TCP}]},
            "sys_optin": {"type": "syslog", "allow_unauthenticated_blocking": True,
                          "listeners": [{"protocol": "udp", "host": "127.0.0.1",
                                         "port": UDP_OPTIN}]},
        },
        "sinks": {
            "alerts": {"type": "ndjson", "path": "alerts.ndjson", "flush_interval_secs": 0.1},
            "block": {"type": "blocker", "backend": "nftables", "table": site.table,
                      "path": "blocks.db"},
        },
    }


def _lines(victim: str, count: int = 5, first_pid: int = 1000) -> list[str]:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return [f"<38>1 {now} srv-dvc-01 sshd {first_pid + i} - - Failed password for root "
            f"from {victim} port 4022 ssh2" for i in range(count)]


def _send_udp(site: Site, port: int, victim: str, count: int = 5) -> None:
    site.py(f"""
        import socket
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for line in {_lines(victim, count)!r}:
            s.sendto(line.encode(), ("127.0.0.1", {port}))
    """)


def _send_tcp(site: Site, victim: str, port: int = TCP, count: int = 5,
              first_pid: int = 1000) -> None:
    site.py(f"""
        import socket
        with socket.create_connection(("127.0.0.1", {port})) as s:
            s.sendall("".join(line + "\\n"
                              for line in {_lines(victim, count, first_pid)!r}).encode())
    """)


def _metrics(site: Site) -> dict[str, float]:
    out = site.py(f"""
        import urllib.request
        print(urllib.request.urlopen("http://127.0.0.1:{HTTP}/metrics", timeout=5)
              .read().decode())
    """).stdout
    return parse_metrics(out)


def _start(site: Site) -> subprocess.Popen[bytes]:
    """``socd run`` inside the namespace, once ``/readyz`` answers 200."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("NOTIFY_SOCKET", None)
    with open(site.log, "ab") as log:
        proc = subprocess.Popen(["ip", "netns", "exec", site.ns, PY, "-m", "socd", "run",
                                 "-c", str(site.config)], stdout=log, stderr=subprocess.STDOUT,
                                cwd=site.workdir, env=env)
    try:
        site.py(f"""
            import time, urllib.request
            deadline = time.monotonic() + 60
            while True:
                try:
                    if urllib.request.urlopen("http://127.0.0.1:{HTTP}/readyz",
                                              timeout=2).status == 200:
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                time.sleep(0.2)
        """)
    except BaseException:
        proc.terminate()
        proc.wait(60)
        raise
    return proc


def test_forged_syslog_blocks_only_where_authenticated_or_opted_in(site: Site) -> None:
    site.config.write_text(yaml.safe_dump(_config(site), sort_keys=False))
    checked = sh(PY, "-m", "socd", "check-config", "-c", str(site.config), check=False)
    assert checked.returncode == 0, checked.stderr
    warnings = [line for line in checked.stderr.splitlines() if "warning" in line]
    assert any("collectors.sys" in w and "udp://127.0.0.1:5514" in w
               and "unauthenticated_source" in w for w in warnings), checked.stderr
    assert any("collectors.sys_optin" in w and "allow_unauthenticated_blocking" in w
               for w in warnings), checked.stderr
    assert not any("tcp://" in w for w in warnings), checked.stderr

    proc = _start(site)
    try:
        _send_udp(site, UDP, VICTIM_UDP)
        _send_tcp(site, VICTIM_TCP)
        _send_udp(site, UDP_OPTIN, VICTIM_OPTIN)
        wait_for(lambda: site.logged("block refused", value=VICTIM_UDP), 60,
                 "the forged UDP block refused")
        wait_for(lambda: VICTIM_TCP in site.elements() and VICTIM_OPTIN in site.elements(),
                 60, "the TCP and opted-in blocks in the nftables set")
        time.sleep(0.5)  # the forged decision would have been pushed with the others
        assert proc.poll() is None, site.log.read_text()[-4000:]
        metrics = _metrics(site)
        audit = site.run(PY, "-m", "socd", "block", "audit", "-c", str(site.config)).stdout
        elements = site.elements()
    finally:
        proc.terminate()
        proc.wait(60)

    assert VICTIM_UDP not in elements
    refused = site.logged("block refused", value=VICTIM_UDP)
    assert str(refused[0]["why"]).startswith("unauthenticated_source"), refused
    audit_lines = [line for line in audit.splitlines() if VICTIM_UDP in line]
    assert audit_lines, audit
    assert all("refuse" in line for line in audit_lines), audit
    assert any("unauthenticated_source" in line for line in audit_lines), audit
    assert metric(metrics, "socd_block_refused_total", reason="unauthenticated_source") == 1
    assert metric(metrics, "socd_block_decisions_total", action="add") == 2

    alerts = [json.loads(line) for line in
              (site.workdir / "state" / "alerts.ndjson").read_text().splitlines()]
    fired = {a["source"]["ip"]: a for a in alerts if a["rule"]["id"] == "ssh-bruteforce"}
    assert set(fired) == {VICTIM_UDP, VICTIM_TCP, VICTIM_OPTIN}
    assert fired[VICTIM_UDP]["socd"]["transport"] == {"authenticated": False,
                                                       "blocking": "refused",
                                                       "collector": "sys"}
    assert fired[VICTIM_OPTIN]["socd"]["transport"] == {"authenticated": False,
                                                         "blocking": "allowed",
                                                         "collector": "sys_optin"}
    assert "transport" not in fired[VICTIM_TCP]["socd"]


VICTIM_MIXED = "198.51.100.96"


def _mixed_config(site: Site) -> dict[str, object]:
    """Two collectors feeding one ``ssh-bruteforce`` threshold: UDP (no opt-in) and TCP
    from an allowed sender (authenticated)."""
    return {
        "state_dir": str(site.workdir / "state"),
        "log": {"format": "json"},
        "http": {"host": "127.0.0.1", "port": HTTP},
        "collectors": {
            "udp_fw": {"type": "syslog", "flush_interval_secs": 0.05,
                       "listeners": [{"protocol": "udp", "host": "127.0.0.1", "port": UDP}]},
            "tcp_srv": {"type": "syslog", "allowed_senders": ["127.0.0.1/32"],
                        "flush_interval_secs": 0.05,
                        "listeners": [{"protocol": "tcp", "host": "127.0.0.1", "port": TCP}]},
        },
        "sinks": {
            "alerts": {"type": "ndjson", "path": "alerts.ndjson", "flush_interval_secs": 0.1},
            "events": {"type": "ndjson", "path": "events.ndjson", "select": "all",
                       "flush_interval_secs": 0.05},
            "block": {"type": "blocker", "backend": "nftables", "table": site.table,
                      "path": "blocks.db"},
        },
    }


def test_forged_lines_taint_a_threshold_completed_by_an_authenticated_one(site: Site) -> None:
    """Four forged UDP lines and one line from the authenticated TCP peer complete the
    threshold: the alert is raised, but it is as unauthenticated as its weakest event,
    so its block is audited as refused, never enforced."""
    site.config.write_text(yaml.safe_dump(_mixed_config(site), sort_keys=False))
    proc = _start(site)
    try:
        _send_udp(site, UDP, VICTIM_MIXED, count=4)
        # The four forged events are in the rule's state once a sink has stored them.
        wait_for(lambda: metric(_metrics(site), "socd_events_sent_total", sink="events") >= 4,
                 60, "the four UDP events stored")
        _send_tcp(site, VICTIM_MIXED, port=TCP, count=1, first_pid=2000)
        wait_for(lambda: site.logged("block refused", value=VICTIM_MIXED)
                 or VICTIM_MIXED in site.elements(), 60, "the blocker's decision")
        assert proc.poll() is None, site.log.read_text()[-4000:]
        metrics = _metrics(site)
        audit = site.run(PY, "-m", "socd", "block", "audit", "-c", str(site.config)).stdout
        elements = site.elements()
    finally:
        proc.terminate()
        proc.wait(60)

    assert VICTIM_MIXED not in elements
    refused = site.logged("block refused", value=VICTIM_MIXED)
    assert str(refused[0]["why"]).startswith("unauthenticated_source"), refused
    assert "udp_fw" in str(refused[0]["why"]), refused
    audit_lines = [line for line in audit.splitlines() if VICTIM_MIXED in line]
    assert audit_lines, audit
    assert all("refuse" in line for line in audit_lines), audit
    assert metric(metrics, "socd_block_refused_total", reason="unauthenticated_source") == 1
    assert metric(metrics, "socd_block_decisions_total", action="add") == 0

    alerts = [json.loads(line) for line in
              (site.workdir / "state" / "alerts.ndjson").read_text().splitlines()]
    fired = [a for a in alerts if a.get("rule", {}).get("id") == "ssh-bruteforce"]
    assert len(fired) == 1, fired
    assert fired[0]["source"]["ip"] == VICTIM_MIXED
    assert fired[0]["socd"]["collector"] == "tcp_srv"  # the event that completed it
    assert fired[0]["socd"]["transport"] == {"authenticated": False, "blocking": "refused",
                                             "collector": "udp_fw"}
