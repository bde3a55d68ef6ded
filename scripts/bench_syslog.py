"""Syslog throughput, from the socket into the rules queue (one socd process).

A sender in a separate process replays pre-built messages (a mix of sshd, sudo,
RFC 5424 with structured data, CEF and plain lines) to a ``SyslogCollector``
running in this process; its ``emit`` decodes every record with the ``syslog``
decoder, as the pipeline's decode stage would, and discards the events. The
clock runs from the first record received to the last one decoded.

UDP has no back-pressure: the sender keeps at most ``WINDOW`` datagrams ahead of
the decoder (a shared counter) so the benchmark measures the receiver, not the
kernel's drop rate. Whatever is still lost (kernel drops, ``udp_overflow``) is
reported as ``dropped`` and excluded from ``lines``.

    .venv/bin/python -c "import scripts.bench_syslog as b; print(b.BENCHMARKS['syslog_udp']())"
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import socket
import tempfile
import time
from typing import Any

from socd.app.deadletter import DeadLetter
from socd.collectors.syslog import SyslogCollector
from socd.decoders.syslog import SyslogDecoder
from socd.plugins import PluginContext, RawRecord

TARGET = 30_000
WINDOW = 3000

SAMPLES = [
    "<38>Mar  5 09:12:01 web01 sshd[2231]: Failed password for invalid user admin{i} from "
    "203.0.113.{b} port {p} ssh2",
    "<38>Mar  5 09:13:10 web01 sshd[2301]: Accepted publickey for deploy from 10.10.20.{b} "
    "port {p} ssh2: ED25519 SHA256:Qm9vZm9vZm9vZm9vZm9vZm9vZm9vZm9v",
    "<86>Mar  5 09:15:01 web01 sudo:    alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; "
    "COMMAND=/usr/bin/apt update {i}",
    "<165>1 2024-03-05T09:12:01.003+07:00 app01.example.vn webapp 4242 LOGIN "
    '[soc@32473 unit="STTTT" seq="{i}"] user login ok for user{b}',
    "<134>Mar  5 09:12:01 pa-fw01 CEF:0|Palo Alto Networks|PAN-OS|10.1.0|threat|THREAT|8|"
    "src=198.51.100.{b} dst=10.10.20.11 spt={p} dpt=445 proto=TCP act=reset-both "
    "cs1Label=Rule cs1=Block-SMB",
    "<30>Mar  5 09:20:00 db01 systemd[1]: Started Session {i} of user root.",
    "<14>Mar  5 09:20:01 sw-core-01 kernel: [12345.678] eth0: link up, {b} Mbps",
]


def messages(n: int) -> list[bytes]:
    return [SAMPLES[i % len(SAMPLES)].format(i=i, b=i % 250 + 1, p=1024 + i % 60000).encode()
            for i in range(n)]


def _udp_sender(port: int, n: int, processed: Any, start: Any) -> None:
    data = messages(n)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect(("127.0.0.1", port))
    start.wait()
    send = sock.send
    i = 0
    while i < n:
        ahead = i - processed.value
        if ahead >= WINDOW:
            time.sleep(0.0002)
            continue
        for _ in range(min(WINDOW - ahead, n - i, 256)):
            try:
                send(data[i])
            except (BlockingIOError, ConnectionRefusedError):
                break
            i += 1
    sock.close()


def _tcp_sender(port: int, n: int, processed: Any, start: Any) -> None:
    payload = b"".join(m + b"\n" for m in messages(n))
    start.wait()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(payload)


async def _run(protocol: str, n: int) -> dict[str, Any]:
    tmp = tempfile.mkdtemp(prefix="socd-bench-syslog-")
    dead = DeadLetter(tmp)
    decoder = SyslogDecoder.create("syslog")
    config = SyslogCollector.Config.model_validate({
        "type": "syslog", "listeners": [{"protocol": protocol, "host": "127.0.0.1", "port": 0}],
        "batch_max_events": 1000, "udp_buffer_records": 100_000})
    collector = SyslogCollector(config, PluginContext(name=f"bench-{protocol}",
                                                      dead_letter=dead))
    ctx = mp.get_context("spawn")
    processed = ctx.Value("q", 0, lock=False)
    start = ctx.Event()
    counts = {"records": 0, "events": 0, "failures": 0}
    first = 0.0
    last = 0.0
    done = asyncio.Event()

    async def emit(records: list[RawRecord], ack: Any = None) -> None:
        nonlocal first, last
        if not first:
            first = time.perf_counter()
        decode = decoder.decode
        events = failures = 0
        for record in records:
            result = decode(record)
            events += len(result.events)
            failures += len(result.failures)
        counts["records"] += len(records)
        counts["events"] += events
        counts["failures"] += failures
        processed.value = counts["records"]
        last = time.perf_counter()
        if counts["records"] >= n:
            done.set()
        await asyncio.sleep(0)

    task = asyncio.create_task(collector.run(emit))
    while not collector.ready:  # noqa: ASYNC110 - the collector exposes a flag
        await asyncio.sleep(0.01)
    port = collector.addresses[0][2]
    target = _udp_sender if protocol == "udp" else _tcp_sender
    proc = ctx.Process(target=target, args=(port, n, processed, start), daemon=True)
    proc.start()
    await asyncio.sleep(1.0)  # let the spawned sender build its messages
    start.set()
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, proc.join, 120)
    # The sender is done; wait until nothing more arrives.
    seen = -1
    while counts["records"] != seen and not done.is_set():
        seen = counts["records"]
        with _suppress_timeout():
            await asyncio.wait_for(done.wait(), 1.0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    dead.close()
    seconds = max(last - first, 1e-9)
    lines = counts["records"]
    return {"benchmark": f"syslog_{protocol}", "lines": lines, "events": counts["events"],
            "decode_failures": counts["failures"], "dropped": n - lines,
            "seconds": round(seconds, 3), "events_per_sec": round(lines / seconds),
            "target": TARGET}


class _suppress_timeout:
    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, *_: Any) -> bool:
        return exc_type is TimeoutError


def bench_udp(n: int = 300_000) -> dict[str, Any]:
    return asyncio.run(_run("udp", n))


def bench_tcp(n: int = 300_000) -> dict[str, Any]:
    return asyncio.run(_run("tcp", n))


BENCHMARKS = {"syslog_udp": bench_udp, "syslog_tcp": bench_tcp}

if __name__ == "__main__":
    for name, fn in BENCHMARKS.items():
        print(name, fn())
