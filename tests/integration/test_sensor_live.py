"""The sensor collector capturing live on a veth pair between two network namespaces.

Namespace A holds the sensor (it captures on its veth end) and a TCP server;
namespace B sends traffic to it: a real TCP connection, UDP datagrams and a
DNS query/answer pair built with scapy. Addresses are 10.201.<n>.1/.2, only
inside the namespaces this test creates (and deletes, also stale ones).

Run as a module, this file is the helper that runs the collector inside a
namespace: ``python -m tests.integration.test_sensor_live <iface> <out.ndjson>``
writes one event a line to ``out`` and a ``<out>.ready`` marker, and flushes
and exits on SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.adversarial.netns import delete_stale, owned_tag

REPO = Path(__file__).resolve().parents[2]
PYTHON = str(REPO / ".venv" / "bin" / "python")

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"`{name}` is missing: install it (see deploy/dev/apt-packages.txt)",
                    pytrace=False)
    return path


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_tool("ip"), *args], capture_output=True, text=True, timeout=30,
                          check=check)


@pytest.fixture
def netns() -> Iterator[dict[str, str]]:
    if os.geteuid() != 0:
        pytest.fail("the sensor namespace test needs root (ip netns)", pytrace=False)
    delete_stale("sds")
    owner, net = owned_tag("sds")
    env = {"a": f"{owner}a", "b": f"{owner}b", "va": f"{owner}va", "vb": f"{owner}vb",
           "ip_a": f"10.201.{net}.1", "ip_b": f"10.201.{net}.2"}
    try:
        _ip("netns", "add", env["a"])
        _ip("netns", "add", env["b"])
        _ip("link", "add", env["va"], "netns", env["a"], "type", "veth", "peer", "name",
            env["vb"], "netns", env["b"])
        for side in ("a", "b"):
            ns, dev, addr = env[side], env[f"v{side}"], env[f"ip_{side}"]
            _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            # No offloads: the sensor must see the packets as sent, not merged (GRO/TSO).
            if shutil.which("ethtool"):
                subprocess.run(["ip", "netns", "exec", ns, "ethtool", "-K", dev, "gro", "off",
                                "tso", "off", "gso", "off"], capture_output=True, check=False)
        link = _ip("-n", env["a"], "-j", "link", "show", env["va"]).stdout
        env["mac_a"] = json.loads(link)[0]["address"]
        yield env
    finally:
        _ip("netns", "delete", env["a"], check=False)
        _ip("netns", "delete", env["b"], check=False)


def _in_ns(ns: str, code: str, **kwargs: Any) -> subprocess.Popen[str]:
    return subprocess.Popen([_tool("ip"), "netns", "exec", ns, PYTHON, "-c",
                             textwrap.dedent(code)], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def _run_in_ns(ns: str, code: str) -> str:
    proc = _in_ns(ns, code)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return out


def _wait_for(path: Path, proc: subprocess.Popen[str], within: float = 30) -> None:
    deadline = time.monotonic() + within
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"helper exited: {proc.communicate()[1]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear")
        time.sleep(0.05)


def test_live_capture_between_namespaces(netns: dict[str, str], tmp_path: Path) -> None:
    a, b, ip_a, ip_b = netns["a"], netns["b"], netns["ip_a"], netns["ip_b"]
    out = tmp_path / "events.ndjson"
    sensor = subprocess.Popen(
        [_tool("ip"), "netns", "exec", a, PYTHON, "-m", "tests.integration.test_sensor_live",
         netns["va"], str(out)], cwd=REPO, text=True, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)
    server = None
    try:
        _wait_for(Path(f"{out}.ready"), sensor)
        server = _in_ns(a, f"""
            import socket
            s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("{ip_a}", 8080)); s.listen(1); print("listening", flush=True)
            c, _ = s.accept(); data = c.recv(100); c.sendall(b"world!" + data); c.close()
        """)
        assert server.stdout is not None
        assert server.stdout.readline().strip() == "listening"
        # The client counts its own packets with an independent scapy capture on its end.
        sent = json.loads(_run_in_ns(b, f"""
            import json, socket, time
            from scapy.all import AsyncSniffer, Ether, IP, UDP, DNS, DNSQR, DNSRR, Raw, sendp
            sniffer = AsyncSniffer(iface="{netns['vb']}", store=True,
                                   lfilter=lambda p: p.haslayer("TCP"))
            sniffer.start(); time.sleep(0.5)
            c = socket.create_connection(("{ip_a}", 8080), timeout=10)
            c.sendall(b"hello"); assert c.recv(100) == b"world!hello"; c.close()
            time.sleep(1.0); tcp = sniffer.stop()
            fwd = [len(p[IP]) for p in tcp if p[IP].src == "{ip_b}"]
            rev = [len(p[IP]) for p in tcp if p[IP].src == "{ip_a}"]
            eth = Ether(dst="{netns['mac_a']}")
            udp = [eth / IP(src="{ip_b}", dst="{ip_a}") / UDP(sport=40000, dport=9999)
                   / Raw(b"x" * n) for n in (100, 200, 300)]
            q = eth / IP(src="{ip_b}", dst="{ip_a}") / UDP(sport=35353, dport=53) / DNS(
                id=4242, rd=1, qd=DNSQR(qname="c2.example.vn", qtype="A"))
            r = eth / IP(src="{ip_a}", dst="{ip_b}") / UDP(sport=53, dport=35353) / DNS(
                id=4242, qr=1, qd=DNSQR(qname="c2.example.vn", qtype="A"),
                an=[DNSRR(rrname="c2.example.vn", type="A", rdata="198.51.100.66", ttl=5)])
            for p in udp: sendp(p, iface="{netns['vb']}", verbose=False)
            sendp(q, iface="{netns['vb']}", verbose=False)
            sendp(r, iface="{netns['vb']}", verbose=False)
            print(json.dumps({{"fwd": fwd, "rev": rev, "udp": [len(p[IP]) for p in udp],
                              "q": len(q[IP]), "r": len(r[IP])}}))
        """).strip().splitlines()[-1])
        server.communicate(timeout=30)
        time.sleep(1.0)  # let the capture thread hand over the last packets
    finally:
        sensor.send_signal(signal.SIGTERM)
        _, err = sensor.communicate(timeout=60)
        if server is not None:
            if server.poll() is None:
                server.kill()
            server.communicate()
    assert sensor.returncode == 0, err
    events = [json.loads(line) for line in out.read_text().splitlines()]
    flows = [e for e in events if e["event"]["dataset"] == "socd.sensor.flow"]

    def flow(transport: str, port: int) -> dict[str, Any]:
        found = [e for e in flows if e["network"]["transport"] == transport
                 and e["destination"].get("port") == port]
        assert len(found) == 1, (transport, port, flows)
        return found[0]

    tcp = flow("tcp", 8080)
    assert tcp["source"] == {"ip": ip_b, "port": tcp["source"]["port"],
                             "packets": len(sent["fwd"]), "bytes": sum(sent["fwd"])}
    assert tcp["destination"] == {"ip": ip_a, "port": 8080, "packets": len(sent["rev"]),
                                  "bytes": sum(sent["rev"])}
    assert {"SYN", "ACK", "FIN", "PSH"} <= set(tcp["network"]["tcp_flags"])
    assert tcp["event"]["action"] == "tcp_close"
    assert tcp["observer"]["ingress"]["interface"]["name"] == netns["va"]

    udp = flow("udp", 9999)
    assert udp["source"] == {"ip": ip_b, "port": 40000, "packets": 3, "bytes": sum(sent["udp"])}
    assert udp["destination"]["packets"] == 0

    dns_flow = flow("udp", 53)
    assert dns_flow["source"] == {"ip": ip_b, "port": 35353, "packets": 1, "bytes": sent["q"]}
    assert dns_flow["destination"] == {"ip": ip_a, "port": 53, "packets": 1, "bytes": sent["r"]}
    assert dns_flow["network"]["protocol"] == "dns"
    [dns] = [e for e in events if e["event"]["dataset"] == "socd.sensor.dns"]
    assert dns["dns"]["question"] == {"name": "c2.example.vn", "type": "A",
                                      "registered_domain": "example.vn"}
    assert dns["dns"]["resolved_ip"] == ["198.51.100.66"]
    assert dns["source"]["ip"] == ip_b


def test_capture_without_cap_net_raw_is_a_clear_error(tmp_path: Path) -> None:
    setpriv = _tool("setpriv")
    result = subprocess.run(
        [setpriv, "--inh-caps=-all", "--bounding-set=-all", PYTHON, "-m",
         "tests.integration.test_sensor_live", "lo", str(tmp_path / "out.ndjson")],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    assert "CAP_NET_RAW" in result.stderr
    assert "AmbientCapabilities=CAP_NET_RAW" in result.stderr


# -- the helper run inside a namespace ---------------------------------------------------------


async def _helper(interface: str, out: str) -> int:
    from socd.collectors.sensor import CaptureError, SensorCollector
    from socd.plugins import PluginContext

    config = SensorCollector.Config.model_validate({
        "type": "sensor", "interface": interface, "idle_timeout_secs": 30,
        "tcp_close_grace_secs": 0.5, "bpf_filter": "ip"})
    collector = SensorCollector(config, PluginContext(name="sensor-it", dead_letter=None))
    fh = open(out, "ab")  # noqa: ASYNC230, SIM115 - tiny synchronous appends

    async def emit(records: Any, ack: Any = None) -> None:
        for record in records:
            fh.write(record.data + b"\n")
        fh.flush()

    task = asyncio.create_task(collector.run(emit))
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    while not collector.ready and not task.done():
        await asyncio.sleep(0.02)
    if not task.done():
        Path(f"{out}.ready").touch()  # noqa: ASYNC240 - once, at start
    try:
        await task
    except asyncio.CancelledError:
        pass
    except CaptureError as exc:
        print(f"capture error: {exc}", file=sys.stderr)
        return 2
    finally:
        fh.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(_helper(sys.argv[1], sys.argv[2])))
