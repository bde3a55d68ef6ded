"""Private network namespaces for the adversarial tests: real nft, real sockets.

:func:`ns_pair` creates two namespaces, A and B, joined by a veth pair. socd runs
inside A (``ip netns exec``), so its nftables table, its listeners and its
loopback are A's; the attacker sends from B. Nothing touches the host's own
network. A missing ``ip`` or ``nft`` makes the test FAIL (never skip).

:class:`NetnsSocd` is :class:`tests.helpers.SocdProcess` started inside A; its
HTTP checks (``/readyz``, ``/metrics``) run inside A as well.
"""

from __future__ import annotations

import contextlib
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
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import SocdProcess, parse_metrics

PY = sys.executable
TCP_PORT = 18081  # the listener in A that B connects to (is B blocked?)



def need(cmd: str, package: str) -> str:
    """The path of ``cmd``; the test fails (never skips) when it is missing."""
    path = shutil.which(cmd) or (f"/usr/sbin/{cmd}" if os.path.exists(f"/usr/sbin/{cmd}")
                                 else None)
    if path is None:
        pytest.fail(f"`{cmd}` not found: install the Debian package `{package}` "
                    "(deploy/dev/apt-packages.txt)", pytrace=False)
    return path


def sh(*argv: str, check: bool = True, timeout: float = 60,
       input_: str | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=timeout,
                          input=input_)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


_HTTP_GET = textwrap.dedent("""
    import sys, urllib.error, urllib.request
    req = urllib.request.Request(sys.argv[1], headers=dict(h.split(": ", 1) for h in sys.argv[2:]))
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            status, body = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    except OSError:
        status, body = 0, b""
    sys.stdout.write(str(status) + "\\n")
    sys.stdout.flush()
    sys.stdout.buffer.write(body)
""")


@dataclass
class NsPair:
    a: str
    b: str
    addr_a: str
    addr_b: str
    addr_b2: str  # a second address of B
    workdir: Path

    def in_a(self, *argv: str, check: bool = True, timeout: float = 60,
             input_: str | None = None) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", self.a, *argv, check=check, timeout=timeout,
                  input_=input_)

    def in_b(self, *argv: str, check: bool = True, timeout: float = 60
             ) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", self.b, *argv, check=check, timeout=timeout)

    def http_get(self, url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
        """GET ``url`` from inside A (socd's loopback is A's)."""
        hdrs = [f"{k}: {v}" for k, v in (headers or {}).items()]
        out = self.in_a(PY, "-c", _HTTP_GET, url, *hdrs, check=False).stdout
        status, _, body = out.partition("\n")
        return int(status or 0), body

    def udp_send(self, port: int, payloads: list[bytes]) -> None:
        """Datagrams from B to A's address (the attacker's view)."""
        code = textwrap.dedent(f"""
            import json, socket, sys, time
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            for p in json.loads(sys.stdin.read()):
                s.sendto(p.encode("latin-1"), ({self.addr_a!r}, {port}))
                time.sleep(0.005)
        """)
        sh("ip", "netns", "exec", self.b, PY, "-c", code,
           input_=json.dumps([p.decode("latin-1") for p in payloads]))

    def connects(self, src: str) -> bool:
        """A TCP connection from B (bound to ``src``) to A's listener succeeds."""
        code = textwrap.dedent(f"""
            import socket, sys
            s = socket.socket()
            s.settimeout(1.0)
            s.bind(({src!r}, 0))
            try:
                s.connect(({self.addr_a!r}, {TCP_PORT}))
            except OSError:
                sys.exit(1)
            sys.exit(0)
        """)
        return sh("ip", "netns", "exec", self.b, PY, "-c", code,
                  check=False).returncode == 0

    def nft_table(self, table: str) -> str:
        return self.in_a("nft", "list", "table", "inet", table).stdout

    def nft_set(self, table: str, name: str) -> str:
        return self.in_a("nft", "list", "set", "inet", table, name).stdout


def owned_tag(prefix: str) -> tuple[str, int]:
    """A name stem for namespaces and veth interfaces: ``prefix``, this test process's
    pid in hex, 4 random hex digits (at most 3 + 6 + 4 characters: with a two-letter
    suffix still within an interface name's 15); and a number 1-250 from the random
    part for a /24. :func:`delete_stale` of another test run going on at the same time
    leaves these alone while this process lives."""
    tag = secrets.token_hex(2)
    return f"{prefix}{os.getpid():x}{tag}", int(tag, 16) % 250 + 1


def delete_stale(prefix: str) -> None:
    """Delete the namespaces :func:`owned_tag` named whose test process is gone (a run
    killed before its clean-up)."""
    stale = re.compile(rf"^{re.escape(prefix)}([0-9a-f]{{1,6}})[0-9a-f]{{4}}[a-z]+$")
    for line in sh("ip", "netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = stale.match(name)
        if m is not None and not Path(f"/proc/{int(m.group(1), 16)}").exists():
            sh("ip", "netns", "delete", name, check=False)


@contextlib.contextmanager
def ns_pair(workdir: Path) -> Iterator[NsPair]:
    """Namespaces A and B on a veth pair, with a TCP listener in A on :data:`TCP_PORT`."""
    need("ip", "iproute2")
    need("nft", "nftables")
    delete_stale("sdg")
    owner, net = owned_tag("sdg")
    p = NsPair(a=f"{owner}a", b=f"{owner}b", addr_a=f"10.204.{net}.1",
               addr_b=f"10.204.{net}.6", addr_b2=f"10.204.{net}.7", workdir=workdir)
    listener: subprocess.Popen[bytes] | None = None
    try:
        sh("ip", "netns", "add", p.a)
        sh("ip", "netns", "add", p.b)
        sh("ip", "link", "add", p.a, "type", "veth", "peer", "name", p.b)
        sh("ip", "link", "set", p.a, "netns", p.a)
        sh("ip", "link", "set", p.b, "netns", p.b)
        sh("ip", "-n", p.a, "addr", "add", f"{p.addr_a}/24", "dev", p.a)
        sh("ip", "-n", p.b, "addr", "add", f"{p.addr_b}/24", "dev", p.b)
        sh("ip", "-n", p.b, "addr", "add", f"{p.addr_b2}/24", "dev", p.b)
        for ns in (p.a, p.b):
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "link", "set", ns, "up")
        server = textwrap.dedent(f"""
            import socket
            s = socket.create_server(("0.0.0.0", {TCP_PORT}))
            while True:
                c, _ = s.accept()
                c.close()
        """)
        listener = subprocess.Popen(["ip", "netns", "exec", p.a, PY, "-c", server])
        deadline = time.monotonic() + 10
        while not p.connects(p.addr_b):
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


class NetnsSocd(SocdProcess):
    """``socd run`` inside namespace A of ``pair``."""

    def __init__(self, config: dict[str, Any], pair: NsPair) -> None:
        super().__init__(config, pair.workdir)
        self.pair = pair

    def start(self, *, wait_ready: bool = True) -> NetnsSocd:
        from tests.helpers import wait_for

        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("NOTIFY_SOCKET", None)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed by stop()
        # `ip netns exec` execs the command: the pid is socd's own, signals reach it.
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.pair.a, PY, "-m", "socd", "run",
             "-c", str(self.config_path)],
            stdout=self._log, stderr=subprocess.STDOUT, cwd=self.workdir, env=env)
        if wait_ready:
            wait_for(self.ready, 60, "socd /readyz in the namespace", interval=0.5)
        return self

    def _get(self, path: str) -> tuple[int, str]:
        return self.pair.http_get(self.url + path)

    def metrics(self) -> dict[str, float]:
        status, text = self._get("/metrics")
        assert status == 200, f"/metrics returned {status}"
        return parse_metrics(text)
