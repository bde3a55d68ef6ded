"""Finding 7: slow and idle clients must not stall socd's HTTP listeners.

A real ``socd run`` with its three HTTP listeners (``/metrics``, the webhook collector and
the EDL feed of a blocker sink) is attacked over real loopback sockets, from source
addresses 127.0.0.2 and up (the legitimate client stays on 127.0.0.1):

* 300 connections that send nothing or a header a byte at a time: a webhook POST, an EDL
  GET and ``/metrics`` still answer at once, and every slow connection is closed when the
  header timeout (10 s by default) has passed;
* one address opening more connections than ``max_connections_per_ip``: the extras get 503
  at once;
* a full listener: a new connection closes the oldest one that has not sent a request;
* a body sent too slowly: 408 after ``body_timeout_secs``;
* a client that never reads its answers: cut after ``send_timeout_secs``.

Before the fix no listener had a header timeout (aiohttp's keep-alive default is 3630 s)
nor any cap.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import free_port
from tests.helpers import SocdProcess, ecs_alert, metric, wait_for

pytestmark = [pytest.mark.timeout(120)]

TOKEN = "adv-slow-webhook-token-0123456789"
EDL_TOKEN = "adv-slow-edl-token-0123456789abcd"
HEADER_TIMEOUT = 10.0  # the documented default


def connect(port: int, source: str) -> socket.socket:
    """A TCP connection to 127.0.0.1:port from the loopback address ``source``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.settimeout(5)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


def closed_by_peer(sock: socket.socket) -> bool:
    """True once socd closed (or reset) the connection; never blocks."""
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True


def pending(sock: socket.socket) -> bytes:
    """What socd has sent on ``sock`` so far (b"" when nothing); never blocks."""
    try:
        return sock.recv(65536)
    except OSError:
        return b""


def first_bytes(sock: socket.socket, within: float) -> bytes:
    """What socd sent on ``sock`` within ``within`` seconds (b"" when nothing)."""
    sock.settimeout(within)
    try:
        return sock.recv(65536)
    except TimeoutError:
        return b""
    except OSError:
        return b""
    finally:
        sock.setblocking(False)


def timed_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, float]:
    started = time.monotonic()
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    return status, time.monotonic() - started


def timed_post(port: int) -> tuple[int, float]:
    started = time.monotonic()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/ingest/ids", data=orjson.dumps(ecs_alert(1, "slow")),
        method="POST", headers={"Authorization": f"Bearer {TOKEN}",
                                "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    return status, time.monotonic() - started


class Site:
    def __init__(self, socd: SocdProcess, webhook: int, edl: int) -> None:
        self.socd = socd
        self.webhook = webhook
        self.edl = edl
        self.metrics = socd.http_port

    def legit_requests_answer_quickly(self) -> None:
        answers = {
            "webhook": timed_post(self.webhook),
            "edl": timed_get(f"http://127.0.0.1:{self.edl}/edl/ipv4.txt",
                             {"Authorization": f"Bearer {EDL_TOKEN}"}),
            "metrics": timed_get(f"http://127.0.0.1:{self.metrics}/metrics"),
        }
        assert {k: status for k, (status, _) in answers.items()} == {
            "webhook": 202, "edl": 200, "metrics": 200}
        slow = {k: took for k, (_, took) in answers.items() if took >= 2}
        assert not slow, f"answers took too long: {slow}"

    def closed(self, reason: str, listener: str | None = None) -> float:
        labels = {"reason": reason, **({"listener": listener} if listener else {})}
        return metric(self.socd.metrics(), "socd_http_connections_closed_total", **labels)


def start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
          webhook_limits: dict[str, Any] | None = None,
          http_limits: dict[str, Any] | None = None) -> Site:
    monkeypatch.setenv("SOCD_ADV_WEBHOOK_TOKEN", TOKEN)
    monkeypatch.setenv("SOCD_ADV_EDL_TOKEN", EDL_TOKEN)
    webhook, edl = free_port(), free_port()
    config = {
        "state_dir": str(tmp_path / "state"),
        "rules": {"paths": []},
        "log": {"format": "json"},
        "http": {"host": "127.0.0.1", "port": free_port(),
                 **({"limits": http_limits} if http_limits else {})},
        "collectors": {"hook": {
            "type": "webhook", "port": webhook,
            "sources": {"ids": {"token": "${SOCD_ADV_WEBHOOK_TOKEN}"}},
            **({"limits": webhook_limits} if webhook_limits else {})}},
        "sinks": {
            "out": {"type": "ndjson", "path": "out.ndjson", "select": "all"},
            "block": {"type": "blocker", "backend": "none", "select": "alerts",
                      "edl": {"host": "127.0.0.1", "port": edl,
                              "token": "${SOCD_ADV_EDL_TOKEN}"}},
        },
    }
    return Site(SocdProcess(config, tmp_path).start(), webhook, edl)


@pytest.fixture
def cleanup() -> Iterator[list[Any]]:
    """Sockets and socd processes to close at the end, whatever happens."""
    things: list[Any] = []
    yield things
    for thing in reversed(things):
        if isinstance(thing, socket.socket):
            thing.close()
        else:
            assert thing.stop(30) == 0


class Trickler:
    """Sends one more byte of a never-ending request head on each socket every 0.5 s."""

    HEAD = b"GET /edl/ipv4.txt HTTP/1.1\r\nHost: socd\r\nX-Slow: " + b"a" * 4096

    def __init__(self, socks: list[socket.socket]) -> None:
        self.socks = socks
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        pos = 0
        while not self._stop.wait(0.5):
            for sock in self.socks:
                with contextlib.suppress(OSError):
                    sock.send(self.HEAD[pos:pos + 1])
            pos += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def test_slow_connections_do_not_stall_the_listeners(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cleanup: list[Any]) -> None:
    site = start(tmp_path, monkeypatch)
    cleanup.append(site.socd)
    site.legit_requests_answer_quickly()

    idle: list[socket.socket] = []
    trickling: list[socket.socket] = []
    opened = time.monotonic()
    for i in range(300):
        port = (site.webhook, site.edl, site.metrics)[i % 3]
        sock = connect(port, f"127.0.0.{2 + i % 10}")
        cleanup.append(sock)
        (idle if i % 2 else trickling).append(sock)
    trickler = Trickler(trickling)
    try:
        for _ in range(3):
            site.legit_requests_answer_quickly()
            time.sleep(1)
        slow = idle + trickling
        assert time.monotonic() - opened < HEADER_TIMEOUT
        wait_for(lambda: all(closed_by_peer(s) for s in slow),
                 opened + HEADER_TIMEOUT + 5 - time.monotonic(),
                 "socd to close every slow connection after the header timeout")
    finally:
        trickler.stop()
    assert time.monotonic() - opened >= HEADER_TIMEOUT - 1  # closed by the timeout
    assert site.closed("header_timeout") >= 300
    site.legit_requests_answer_quickly()
    site.socd.assert_running()


def test_one_address_cannot_take_every_connection(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cleanup: list[Any]) -> None:
    site = start(tmp_path, monkeypatch, webhook_limits={
        "max_connections": 40, "max_connections_per_ip": 10})
    cleanup.append(site.socd)
    socks = [connect(site.webhook, "127.0.0.20") for _ in range(12)]
    cleanup.extend(socks)
    time.sleep(1)  # the refusals are written at once
    answers = [pending(s) for s in socks]
    refused = [a for a in answers if a]
    assert len(refused) == 2, answers
    assert all(a.startswith(b"HTTP/1.1 503 ") for a in refused)
    assert site.closed("too_many_from_address", "webhook/hook") == 2

    # Fill the listener from three more addresses (10 + 30 = 40 = max_connections).
    others = [connect(site.webhook, f"127.0.0.{21 + i % 3}") for i in range(30)]
    cleanup.extend(others)
    assert not any(closed_by_peer(s) for s in others)
    # A new client still gets through: the oldest connection without a request goes.
    site.legit_requests_answer_quickly()
    assert site.closed("evicted", "webhook/hook") >= 1
    oldest = [s for s, a in zip(socks, answers, strict=True) if not a][0]
    wait_for(lambda: closed_by_peer(oldest), 5, "the oldest idle connection to be closed")
    site.socd.assert_running()


def test_slow_body_gets_408(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                            cleanup: list[Any]) -> None:
    site = start(tmp_path, monkeypatch, webhook_limits={"body_timeout_secs": 2})
    cleanup.append(site.socd)
    sock = connect(site.webhook, "127.0.0.30")
    cleanup.append(sock)
    sock.setblocking(True)
    sock.sendall(b"POST /ingest/ids HTTP/1.1\r\nHost: socd\r\n"
                 + f"Authorization: Bearer {TOKEN}\r\n".encode()
                 + b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"a\":")
    started = time.monotonic()
    answer = first_bytes(sock, 6)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert 1.5 <= time.monotonic() - started < 5
    assert b'"body_timeout"' in answer
    site.legit_requests_answer_quickly()


def test_client_that_never_reads_is_cut(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        cleanup: list[Any]) -> None:
    site = start(tmp_path, monkeypatch, http_limits={"send_timeout_secs": 2})
    cleanup.append(site.socd)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    cleanup.append(sock)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.bind(("127.0.0.31", 0))
    sock.connect(("127.0.0.1", site.metrics))
    # Many pipelined scrapes, and never a byte read: socd's send buffer fills up.
    sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: socd\r\n\r\n" * 2000)
    wait_for(lambda: site.closed("send_timeout", "metrics") == 1, 10,
             "socd to cut the connection that does not read")
    site.legit_requests_answer_quickly()
    site.socd.assert_running()


def test_syslog_tcp_idle_and_per_address_caps(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cleanup: list[Any]) -> None:
    syslog = free_port()
    config = {
        "state_dir": str(tmp_path / "state"),
        "rules": {"paths": []},
        "log": {"format": "json"},
        "http": {"host": "127.0.0.1", "port": free_port()},
        "collectors": {"syslog": {
            "type": "syslog", "idle_timeout_secs": 2, "max_connections_per_ip": 5,
            "listeners": [{"protocol": "tcp", "host": "127.0.0.1", "port": syslog}]}},
        "sinks": {"out": {"type": "ndjson", "path": "out.ndjson", "select": "all"}},
    }
    socd = SocdProcess(config, tmp_path).start()
    cleanup.append(socd)
    socks = [connect(syslog, "127.0.0.40") for _ in range(7)]
    cleanup.extend(socks)
    time.sleep(1)
    refused = [s for s in socks if closed_by_peer(s)]
    assert len(refused) == 2
    assert metric(socd.metrics(), "socd_errors_total", component="collector/syslog",
                  error_type="too_many_from_address") == 2
    # Another address is not affected; a sender that keeps talking stays connected.
    talker = connect(syslog, "127.0.0.41")
    cleanup.append(talker)
    opened = time.monotonic()
    while time.monotonic() - opened < 3:
        talker.send(b"<13>Dec  6 10:00:00 host app: still here\n")
        time.sleep(0.5)
    idle = [s for s in socks if s not in refused]
    wait_for(lambda: all(closed_by_peer(s) for s in idle), 3,
             "socd to close the idle syslog connections")
    assert not closed_by_peer(talker)
    socd.assert_running()
