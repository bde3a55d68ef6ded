"""Crash test: syslog over RELP from rsyslog (``omrelp``) with a disk-assisted queue.

The same private rsyslogd as test_crash_syslog_tcp.py (its own config, pid file and
work folder under tmp_path, no system inputs) takes 100,000 RFC 5424 messages on an
``imtcp`` input and forwards them with ``omrelp`` to socd's ``protocol: relp``
listener, through a disk-assisted action queue that retries for ever, as
docs/sources/syslog.md tells senders to configure. socd is SIGKILLed at seeded
random moments while the stream flows and restarted.

RELP answers each message only once socd's intake journal has it on disk, and
omrelp sends again every message left unanswered when the connection breaks: so
nothing is lost (unlike plain TCP, where the socket buffers are lost), and what
was answered but not yet stored is replayed from the journal. Repeats (answered
frames sent again, journal replays) are stored once, Elasticsearch ``_id`` being
the event hash; the test prints their count.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port
from tests.e2e.crash import (
    Gate,
    assert_journal_empties,
    base_config,
    kill_and_restart,
    kill_during_stream,
    repeats,
    replayed_records,
)
from tests.e2e.test_crash_syslog_tcp import (
    EVENTS,
    PAD,
    Generator,
    Rsyslog,
    _runs,
    _stored_seqs,
)
from tests.helpers import SocdProcess, es_cleanup, es_client, es_count, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

KILLS = 6
MIN_KILLS = 5
SEED = 1313

RSYSLOG_RELP_CONF = """
global(workDirectory="{work}" maxMessageSize="8k")
module(load="impstats" interval="1" format="json" log.file="{stats}" log.syslog="off")
module(load="imtcp")
module(load="omrelp")
input(type="imtcp" address="127.0.0.1" port="{in_port}" ruleset="forward")
ruleset(name="forward") {{
  action(type="omrelp" name="fwd" target="127.0.0.1" port="{out_port}"
         template="RSYSLOG_SyslogProtocol23Format"
         queue.type="LinkedList" queue.filename="socd-fwd" queue.size="200000"
         queue.maxDiskSpace="200m" queue.saveOnShutdown="on"
         action.resumeRetryCount="-1" action.resumeInterval="1")
}}
"""


class SlowGenerator(Generator):
    """The TCP test's messages, paced to last about 20 s so that every kill lands
    while the stream flows (the kills and restarts take about 2 s each)."""

    def run(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port)) as sock:
            for start in range(0, EVENTS, 500):
                self.gate.wait(start / EVENTS)
                sock.sendall(b"".join(
                    b"<134>1 2026-11-16T01:02:03.000000+07:00 gen-host crashapp 4242 - - "
                    b"crash-%s seq=%06d %s\n" % (self.unique.encode(), i, PAD)
                    for i in range(start, min(EVENTS, start + 500))))
                self.sent = min(EVENTS, start + 500)
                time.sleep(0.1)


class RelpRsyslog(Rsyslog):
    """The test_crash_syslog_tcp rsyslogd, forwarding with ``omrelp``."""

    def __init__(self, directory: Path, out_port: int) -> None:
        super().__init__(directory, out_port)
        self.conf.write_text(RSYSLOG_RELP_CONF.format(
            work=directory / "work", in_port=self.in_port, out_port=out_port,
            stats=self.stats_file))


def test_sigkill_while_rsyslog_forwards_over_relp(services: dict[str, Any], unique: str,
                                                  tmp_path: Path) -> None:
    assert list(Path("/usr/lib").glob("**/rsyslog/omrelp.so")), \
        "rsyslog-relp is not installed (deploy/dev/apt-packages.txt)"
    port = free_port()
    config = base_config(services["ES_URL"], unique, str(tmp_path / "state"), {
        "syslog": {"type": "syslog", "decoder": "syslog",
                   "listeners": [{"protocol": "relp", "host": "127.0.0.1", "port": port}]}})
    es = es_client(services)
    index = f"socd-crash-{unique}-*"
    socd = SocdProcess(config, tmp_path)
    rsyslog = RelpRsyslog(tmp_path / "rsyslog", port)
    try:
        socd.start()
        rsyslog.start()
        gate = Gate()
        generator = SlowGenerator(rsyslog.in_port, unique, gate)
        generator.thread.start()
        kills = kill_during_stream(gate, KILLS, SEED, lambda: kill_and_restart(socd),
                                   (0.5, 1.5))
        generator.thread.join(120)
        assert generator.sent == EVENTS, "the generator did not finish"
        assert kills >= MIN_KILLS, f"only {kills} kills happened while the stream flowed"

        wait_for(rsyslog.delivered, 150, "rsyslog to forward its whole queue", interval=1.0)
        wait_for(lambda: es_count(es, index) >= EVENTS, 60, "every message to be stored",
                 interval=1.0)
        assert_journal_empties(socd)
        stored = es_count(es, index)
        seqs = _stored_seqs(es, index)
        missing = sorted(set(range(EVENTS)) - set(seqs))
        stats = rsyslog.stats()
        print(f"\nsyslog RELP crash test: sent {EVENTS}, stored {len(seqs)}, lost "
              f"{len(missing)} {_runs(missing)[:10]}, repeated deliveries "
              f"{repeats(es, index)} (records replayed from the journal: "
              f"{replayed_records(socd)}), kills {kills}; rsyslog: {stats.get('fwd')}")
        assert missing == []
        assert len(set(seqs)) == len(seqs) == stored == EVENTS
        for name in ("fwd queue", "fwd queue[DA]"):
            assert stats[name]["discarded.full"] == stats[name]["discarded.nf"] == 0
        assert socd.stop() == 0
    finally:
        rsyslog.stop()
        socd.kill()
        if socd.proc is not None:
            socd._log.close()
        es_cleanup(es, f"socd-crash-{unique}")
        es.close()
