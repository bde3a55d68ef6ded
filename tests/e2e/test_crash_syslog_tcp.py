"""Crash test: syslog over TCP from rsyslog with a disk-assisted queue.

A private rsyslogd (its own config, pid file and work folder under tmp_path, no
system inputs) takes 100,000 RFC 5424 messages from a generator on an ``imtcp``
input and forwards them with ``omfwd`` over TCP (octet counting) to socd, through
a disk-assisted action queue that retries for ever, as docs/runbook.md tells
senders to configure. socd is SIGKILLed at random moments (seeded) and restarted.

Plain TCP syslog has no acknowledgement: rsyslog counts a message as sent once
its kernel took it, so what sits in the socket buffers when socd dies (in
rsyslog's send queue, not yet acknowledged by socd's kernel, and in socd's receive
queue, not yet read) is lost, and rsyslog does not send it again; only a message
whose ``send`` fails stays in its queue. socd reads a connection only as the
intake journal takes what it read (a connection waits for the journal's fsync
before its next read), so socd loses nothing it handed over, and holds at most a
few hundred KiB read ahead of the journal (``SOCD_READ_AHEAD_BYTES``).

To measure the kernel's part, each kill is made with rsyslog paused (SIGSTOP):
``ss`` then reads the bytes queued in both sockets, an upper bound of what the
kill can lose (socd may still read some of it before it dies, nothing is added).
The test prints sent, stored, repeated and lost, and asserts what the design
guarantees: rsyslog discarded nothing, every loss is one contiguous run of
sequence numbers per kill at most, and all lost messages fit in what the socket
queues held at the kills plus socd's read-ahead. With RELP (test_crash_syslog_relp.py)
the loss is 0.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import helpers as es_helpers

from tests.conftest import free_port
from tests.e2e.crash import (
    Gate,
    assert_journal_empties,
    base_config,
    kill_during_stream,
    repeats,
    replayed_records,
)
from tests.helpers import SocdProcess, es_cleanup, es_client, es_count, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

EVENTS = 100_000
KILLS = 6
MIN_KILLS = 5
SEED = 1304
PAD = b"x" * 120
# The shortest message as rsyslog forwards it (octet count, RFC 5424 header, body);
# bytes are turned into messages with it, which overestimates the bound.
MIN_MESSAGE_BYTES = 200
# What socd may hold of one connection before the journal has it: asyncio's stream
# buffer (paused past twice its 64 KiB limit, plus one 256 KiB recv) and one read.
SOCD_READ_AHEAD_BYTES = 2 * 64 * 1024 + 256 * 1024 + 64 * 1024

RSYSLOG_CONF = """
global(workDirectory="{work}" maxMessageSize="8k")
module(load="impstats" interval="1" format="json" log.file="{stats}" log.syslog="off")
module(load="imtcp")
input(type="imtcp" address="127.0.0.1" port="{in_port}" ruleset="forward")
ruleset(name="forward") {{
  action(type="omfwd" name="fwd" target="127.0.0.1" port="{out_port}" protocol="tcp"
         TCP_Framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format"
         queue.type="LinkedList" queue.filename="socd-fwd" queue.size="200000"
         queue.maxDiskSpace="200m" queue.saveOnShutdown="on"
         action.resumeRetryCount="-1" action.resumeInterval="1")
}}
"""


def _rsyslogd() -> str:
    path = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
    assert Path(path).exists(), "rsyslogd is not installed (deploy/dev/apt-packages.txt)"
    return path


class Rsyslog:
    """A private rsyslogd forwarding its ``imtcp`` input to socd."""

    def __init__(self, directory: Path, out_port: int) -> None:
        self.directory = directory
        self.in_port = free_port()
        work = directory / "work"
        work.mkdir(parents=True)
        self.stats_file = directory / "stats"
        self.conf = directory / "rsyslog.conf"
        self.conf.write_text(RSYSLOG_CONF.format(work=work, in_port=self.in_port,
                                                 out_port=out_port, stats=self.stats_file))
        self.out = directory / "rsyslogd.out"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Rsyslog:
        with open(self.out, "wb") as log:
            self.proc = subprocess.Popen(
                [_rsyslogd(), "-n", "-f", str(self.conf), "-i",
                 str(self.directory / "rsyslogd.pid")], stdout=log, stderr=subprocess.STDOUT)

        def up() -> bool:
            assert self.proc is not None
            assert self.proc.poll() is None, self.out.read_text()
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.in_port), timeout=0.5):
                return True
            return False

        wait_for(up, 30, "rsyslogd to listen")
        return self

    def pause(self, paused: bool) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP if paused else signal.SIGCONT)

    def stats(self) -> dict[str, dict[str, Any]]:
        """The latest impstats counters by name (``fwd queue``, ``imtcp(...)``...)."""
        out: dict[str, dict[str, Any]] = {}
        if self.stats_file.exists():
            for line in self.stats_file.read_text().splitlines():
                _, _, doc = line.partition(": ")
                with contextlib.suppress(ValueError):
                    item = json.loads(doc)
                    out[item["name"]] = item
        return out

    def delivered(self) -> bool:
        """The generator's messages all entered rsyslog and its queue is empty."""
        stats = self.stats()
        submitted = sum(v.get("submitted", 0) for k, v in stats.items()
                        if k.startswith("imtcp"))
        return submitted >= EVENTS and all(
            stats.get(q, {}).get("size", 1) == 0 for q in ("fwd queue", "fwd queue[DA]"))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.pause(False)
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Generator:
    """Sends the messages to rsyslog's input, paced so the stream lasts through the
    kills (rsyslog's own queue absorbs socd's downtime)."""

    def __init__(self, port: int, unique: str, gate: Gate) -> None:
        self.port = port
        self.unique = unique
        self.gate = gate
        self.sent = 0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port)) as sock:
            for start in range(0, EVENTS, 500):
                self.gate.wait(start / EVENTS)
                sock.sendall(b"".join(
                    b"<134>1 2026-11-16T01:02:03.000000+07:00 gen-host crashapp 4242 - - "
                    b"crash-%s seq=%06d %s\n" % (self.unique.encode(), i, PAD)
                    for i in range(start, min(EVENTS, start + 500))))
                self.sent = min(EVENTS, start + 500)
                time.sleep(0.02)


def _stored_seqs(es: Any, index: str) -> list[int]:
    pattern = re.compile(r"seq=(\d+)")
    seqs = []
    for hit in es_helpers.scan(es, index=index, _source=["message"], size=5000):
        found = pattern.search(hit["_source"].get("message", ""))
        assert found, hit
        seqs.append(int(found.group(1)))
    return sorted(seqs)


def _runs(missing: list[int]) -> list[tuple[int, int]]:
    """Contiguous runs ``(first, last)`` of the missing sequence numbers."""
    runs: list[tuple[int, int]] = []
    for seq in missing:
        if runs and seq == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], seq)
        else:
            runs.append((seq, seq))
    return runs


def _queued_bytes(port: int) -> int:
    """Bytes in the kernel queues of the connections to ``port`` (both ends): what
    socd has not read yet and what rsyslog sent that socd's kernel has not taken."""
    out = subprocess.run(["ss", "-tnH", "state", "established", f"( sport = :{port} or "
                          f"dport = :{port} )"], capture_output=True, text=True, check=True)
    total = 0
    for line in out.stdout.splitlines():
        recv_q, send_q = line.split()[:2]
        total += int(recv_q) + int(send_q)
    return total


def _kill_with_sender_paused(socd: SocdProcess, rsyslog: Rsyslog, port: int) -> int:
    """SIGKILL socd while rsyslog is paused; returns what the socket queues held."""
    rsyslog.pause(True)
    try:
        queued = _queued_bytes(port)
        socd.signal(signal.SIGKILL)
        socd.kill()
    finally:
        rsyslog.pause(False)
    socd._log.close()
    socd.start()
    return queued


def test_sigkill_while_rsyslog_forwards_over_tcp(services: dict[str, Any], unique: str,
                                                 tmp_path: Path) -> None:
    assert shutil.which("ss"), "ss is not installed (iproute2)"
    port = free_port()
    config = base_config(services["ES_URL"], unique, str(tmp_path / "state"), {
        "syslog": {"type": "syslog", "decoder": "syslog",
                   "listeners": [{"protocol": "tcp", "host": "127.0.0.1", "port": port}]}})
    es = es_client(services)
    index = f"socd-crash-{unique}-*"
    socd = SocdProcess(config, tmp_path)
    rsyslog = Rsyslog(tmp_path / "rsyslog", port)
    try:
        socd.start()
        rsyslog.start()
        gate = Gate()
        generator = Generator(rsyslog.in_port, unique, gate)
        generator.thread.start()
        queued: list[int] = []
        kills = kill_during_stream(
            gate, KILLS, SEED, lambda: queued.append(_kill_with_sender_paused(socd, rsyslog, port)),
            (0.5, 1.5))
        generator.thread.join(120)
        assert generator.sent == EVENTS, "the generator did not finish"
        assert kills >= MIN_KILLS, f"only {kills} kills happened while the stream flowed"

        # rsyslog empties its queue; then Elasticsearch has all it will get.
        wait_for(rsyslog.delivered, 150, "rsyslog to forward its whole queue", interval=1.0)
        counts = [es_count(es, index)]

        def settled() -> bool:
            time.sleep(1.0)
            counts.append(es_count(es, index))
            return len(counts) >= 3 and counts[-1] == counts[-3]

        wait_for(settled, 60, "the count to settle")
        assert_journal_empties(socd)
        stored = es_count(es, index)  # refreshed: the scan sees every document
        seqs = _stored_seqs(es, index)
        missing = sorted(set(range(EVENTS)) - set(seqs))
        runs = _runs(missing)
        bound = sum(q + SOCD_READ_AHEAD_BYTES for q in queued) // MIN_MESSAGE_BYTES
        stats = rsyslog.stats()
        print(f"\nsyslog TCP crash test: sent {EVENTS}, stored {len(seqs)}, "
              f"lost {len(missing)} in {len(runs)} runs {runs}, repeated deliveries "
              f"{repeats(es, index)} (records replayed from the journal: "
              f"{replayed_records(socd)}), kills {kills}, bytes in the socket queues at "
              f"the kills {queued}, loss bound {bound} messages; rsyslog: "
              f"{stats.get('fwd')}")
        assert len(set(seqs)) == len(seqs) == stored
        for name in ("fwd queue", "fwd queue[DA]"):
            assert stats[name]["discarded.full"] == stats[name]["discarded.nf"] == 0
        assert len(runs) <= kills, "losses scattered beyond one run per kill"
        assert len(missing) <= bound, "lost more than the socket queues held at the kills"
        assert socd.stop() == 0
    finally:
        rsyslog.stop()
        socd.kill()
        if socd.proc is not None:
            socd._log.close()
        es_cleanup(es, f"socd-crash-{unique}")
        es.close()
