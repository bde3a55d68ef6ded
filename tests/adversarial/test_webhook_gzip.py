"""Finding 6: the webhook's gzip path must bound what it reads, inflates and keeps.

A real ``socd run`` with a webhook collector (``max_body_bytes`` 1 MiB) is sent, over a
raw socket with chunked transfer encoding (no Content-Length to refuse up front):

* a small valid gzip member followed by a 200 MiB tail: refused with 400 while the tail is
  still being sent, and socd's peak resident memory (``VmHWM``) hardly moves;
* a second gzip member, or a few bytes of trailing garbage: 400;
* a gzip bomb (200 MiB of zeros in ~200 KiB): 413, memory bounded;
* a valid gzip stream padded with empty deflate blocks, so that it inflates to a few
  bytes but is 64 MiB on the wire: 413 before the whole body is sent.

Before the fix the tail was buffered (202 and ~540 MB more memory) and the padded stream
was accepted whole.
"""

from __future__ import annotations

import gzip
import os
import socket
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from socd.app import deadletter
from tests.conftest import free_port
from tests.helpers import SocdProcess, ecs_alert, metric

pytestmark = [pytest.mark.timeout(120)]

TOKEN = "adv-webhook-token-0123456789abcdef"
LIMIT = 1024 * 1024
MIB = 1024 * 1024
# Peak memory may grow by this much at most while the hostile bodies are handled (the
# limit is 1 MiB; before the fix the 200 MiB tail alone added ~540 MB).
RSS_BOUND = 64 * MIB


def vm_hwm(pid: int) -> int:
    """Peak resident set size of ``pid`` in bytes (``VmHWM`` of /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM in /proc/{pid}/status")


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return orjson.loads(self.body)


def read_response(sock: socket.socket) -> Response:
    """One HTTP/1.1 response with a Content-Length body, read from ``sock``."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before a response (got {buf[:200]!r})")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in
               (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return Response(status, headers, rest[:length])


class ChunkedUpload:
    """A POST whose body is streamed in chunks by a thread while the test reads the answer.

    ``sent`` is how many body bytes were written so far; the sender stops at the end of
    ``chunks``, when :meth:`stop` is called, or when socd closes the connection.
    """

    def __init__(self, port: int, chunks: Iterator[bytes], *, encoding: str = "gzip") -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.sock.sendall(
            b"POST /ingest/ids HTTP/1.1\r\nHost: socd\r\n"
            + f"Authorization: Bearer {TOKEN}\r\n".encode()
            + b"Content-Type: application/json\r\n"
            + f"Content-Encoding: {encoding}\r\n".encode()
            + b"Transfer-Encoding: chunked\r\n\r\n")
        self.chunks = chunks
        self.sent = 0
        self.finished = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._send, daemon=True)
        self._thread.start()

    def _send(self) -> None:
        try:
            for chunk in self.chunks:
                if self._stop.is_set():
                    return
                self.sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.sent += len(chunk)
            self.sock.sendall(b"0\r\n\r\n")
            self.finished = True
        except OSError:
            return  # socd closed the connection: what a refused upload looks like

    def response(self) -> Response:
        return read_response(self.sock)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        self.sock.close()


def post(port: int, body: bytes, *, encoding: str = "gzip") -> Response:
    """A plain POST with a Content-Length."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(
            b"POST /ingest/ids HTTP/1.1\r\nHost: socd\r\nConnection: close\r\n"
            + f"Authorization: Bearer {TOKEN}\r\n".encode()
            + b"Content-Type: application/json\r\n"
            + f"Content-Encoding: {encoding}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body)
        return read_response(sock)


def repeated(block: bytes, total: int, first: bytes = b"") -> Iterator[bytes]:
    """``first``, then ``block`` repeated until ``total`` bytes were produced."""
    if first:
        yield first
    sent = len(first)
    while sent < total:
        piece = block[:total - sent]
        yield piece
        sent += len(piece)


def padded_gzip(payload: bytes, wire_bytes: int) -> Iterator[bytes]:
    """A valid gzip stream that inflates to ``payload`` but is ``wire_bytes`` long: empty
    stored deflate blocks (5 bytes each, no output) between the data and the trailer."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    head = comp.compress(payload) + comp.flush(zlib.Z_SYNC_FLUSH)
    tail = comp.flush()
    blocks = (wire_bytes - len(head) - len(tail)) // 5  # whole blocks only
    yield head
    for start in range(0, blocks, 50_000):
        yield b"\x00\x00\x00\xff\xff" * min(50_000, blocks - start)
    yield tail


def bomb(inflated: int) -> bytes:
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(MIB)
    parts = [comp.compress(zeros) for _ in range(inflated // MIB)]
    return b"".join(parts) + comp.flush()


@pytest.fixture
def socd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[SocdProcess, int]]:
    monkeypatch.setenv("SOCD_ADV_WEBHOOK_TOKEN", TOKEN)
    port = free_port()
    config = {
        "state_dir": str(tmp_path / "state"),
        "rules": {"paths": []},
        "log": {"format": "json"},
        "http": {"host": "127.0.0.1", "port": free_port()},
        "collectors": {"hook": {
            "type": "webhook", "port": port, "max_body_bytes": LIMIT,
            "sources": {"ids": {"token": "${SOCD_ADV_WEBHOOK_TOKEN}"}}}},
        "sinks": {"out": {"type": "ndjson", "path": "out.ndjson", "select": "all",
                          "flush_interval_secs": 0.1}},
    }
    proc = SocdProcess(config, tmp_path).start()
    try:
        yield proc, port
    finally:
        assert proc.stop(30) == 0


def one_event() -> bytes:
    return orjson.dumps(ecs_alert(1, "gzip"))


def test_tail_after_the_gzip_stream_is_refused_early_and_not_buffered(
        socd: tuple[SocdProcess, int], tmp_path: Path) -> None:
    proc, port = socd
    assert post(port, gzip.compress(one_event())).status == 202  # warm-up: a valid body
    assert proc.proc is not None
    before = vm_hwm(proc.proc.pid)

    total = 200 * MIB
    upload = ChunkedUpload(port, repeated(os.urandom(256 * 1024), total,
                                          first=gzip.compress(one_event())))
    try:
        answer = upload.response()
        sent_at_answer = upload.sent
    finally:
        upload.stop()
    assert answer.status == 400, answer.body
    assert answer.json()["error"] == "trailing_data"
    assert sent_at_answer < total, "socd answered only after the whole 200 MiB tail"
    grown = vm_hwm(proc.proc.pid) - before
    assert grown < RSS_BOUND, f"peak memory grew by {grown / MIB:.0f} MiB"

    # A second member, or a little garbage, after a complete stream: refused too.
    for body in (gzip.compress(one_event()) * 2, gzip.compress(one_event()) + b"junk\n"):
        answer = post(port, body)
        assert (answer.status, answer.json()["error"]) == (400, "trailing_data")

    proc.assert_running()
    metrics = proc.metrics()
    assert metric(metrics, "socd_webhook_requests_total", collector="hook", code="400") == 3
    assert metric(metrics, "socd_events_dropped_total", stage="collect",
                  reason="trailing_data") == 3
    dead = deadletter.read(str(tmp_path / "state" / "dead-letter" / "dead-letter.ndjson"))
    kept = [e for e in dead if e["reason"] == "trailing_data"]
    assert len(kept) == 3
    assert all(len(e["raw"]) <= LIMIT for e in kept)  # never more than the limit kept


def test_gzip_bomb_is_refused_with_bounded_memory(socd: tuple[SocdProcess, int]) -> None:
    proc, port = socd
    assert post(port, gzip.compress(one_event())).status == 202
    assert proc.proc is not None
    before = vm_hwm(proc.proc.pid)
    payload = bomb(200 * MIB)
    assert len(payload) < LIMIT  # small on the wire: only inflating reveals it
    answer = post(port, payload)
    assert (answer.status, answer.json()["error"]) == (413, "too_large")
    # The same bomb streamed without a Content-Length.
    upload = ChunkedUpload(port, repeated(payload, len(payload)))
    try:
        answer = upload.response()
    finally:
        upload.stop()
    assert (answer.status, answer.json()["error"]) == (413, "too_large")
    grown = vm_hwm(proc.proc.pid) - before
    assert grown < RSS_BOUND, f"peak memory grew by {grown / MIB:.0f} MiB"
    proc.assert_running()


def test_wire_bytes_over_the_limit_are_refused_before_the_body_ends(
        socd: tuple[SocdProcess, int]) -> None:
    proc, port = socd
    assert proc.proc is not None
    before = vm_hwm(proc.proc.pid)
    total = 64 * MIB
    upload = ChunkedUpload(port, padded_gzip(one_event(), total))
    try:
        started = time.monotonic()
        answer = upload.response()
        sent_at_answer = upload.sent
        elapsed = time.monotonic() - started
    finally:
        upload.stop()
    assert (answer.status, answer.json()["error"]) == (413, "too_large")
    assert not upload.finished, "socd read the whole 64 MiB body before answering"
    assert sent_at_answer < total
    assert elapsed < 10
    grown = vm_hwm(proc.proc.pid) - before
    assert grown < RSS_BOUND, f"peak memory grew by {grown / MIB:.0f} MiB"
    # The same stream below the limit is a valid body.
    small = b"".join(padded_gzip(one_event(), LIMIT // 2))
    assert post(port, small).status == 202
    proc.assert_running()
