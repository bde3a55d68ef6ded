"""Crash test: a tailed log file loses no line across SIGKILLs and rotations.

A writer appends 100,000 server-EDR alerts (one JSON object per line) to
``app.log`` and rotates it by rename every 10,000 lines (``app.log`` ->
``app.log.<n>``, then a new ``app.log``), as logrotate does without
copytruncate, while socd (the ``file`` collector in tail mode, paths
``app.log*``) is SIGKILLed at random moments (seeded) and restarted. Every line
must end up in Elasticsearch once (``_id`` = event hash); the test prints how
many deliveries were repeats.

The checkpoint of a file moves once the lines before it are in the intake journal
(not when the sinks have them): after a crash, the journal replays what it holds
and the collector reads on from its checkpoint, so only the lines read since the
last checkpoint write (``checkpoint_interval_secs``) are read twice.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.crash import (
    Gate,
    assert_journal_empties,
    base_config,
    kill_and_restart,
    kill_during_stream,
    repeats,
    replayed_records,
)
from tests.helpers import SocdProcess, es_cleanup, es_client, es_count, server_edr_record, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

EVENTS = 100_000
PER_WRITE = 250
WRITE_PAUSE_SECS = 0.035
ROTATE_EVERY = 10_000
KILLS = 6
MIN_KILLS = 5
SEED = 1303


class Writer:
    """Appends the lines in writes of ``PER_WRITE`` and rotates by rename."""

    def __init__(self, directory: Path, lines: list[bytes], gate: Gate) -> None:
        self.directory = directory
        self.lines = lines
        self.gate = gate
        self.rotations = 0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        path = self.directory / "app.log"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        try:
            for start in range(0, len(self.lines), PER_WRITE):
                self.gate.wait(start / len(self.lines))
                if start and start % ROTATE_EVERY == 0:
                    os.close(fd)
                    self.rotations += 1
                    os.rename(path, self.directory / f"app.log.{self.rotations}")
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
                os.write(fd, b"".join(line + b"\n" for line in
                                      self.lines[start:start + PER_WRITE]))
                time.sleep(WRITE_PAUSE_SECS)
        finally:
            os.close(fd)


def test_sigkill_while_a_rotating_file_is_tailed_loses_no_line(
        services: dict[str, Any], unique: str, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    config = base_config(services["ES_URL"], unique, str(tmp_path / "state"), {
        "app": {"type": "file", "mode": "tail", "paths": [str(logs / "app.log*")],
                "decoder": "server_edr", "scan_interval_secs": 0.5,
                "poll_interval_secs": 0.1}})
    es = es_client(services)
    index = f"socd-crash-{unique}-*"
    socd = SocdProcess(config, tmp_path)
    try:
        socd.start()
        gate = Gate()
        writer = Writer(logs, [json.dumps(server_edr_record(i, unique), ensure_ascii=False)
                               .encode() for i in range(EVENTS)], gate)
        writer.thread.start()
        kills = kill_during_stream(gate, KILLS, SEED, lambda: kill_and_restart(socd),
                                   (0.2, 1.2))
        writer.thread.join(120)
        assert not writer.thread.is_alive(), "the writer did not finish"
        assert kills >= MIN_KILLS, f"only {kills} kills happened while the file was written"

        def stored() -> int:
            return es_count(es, index)

        try:
            wait_for(lambda: stored() >= EVENTS, 120, f"{EVENTS} documents in {index}",
                     interval=1.0)
        finally:
            count = stored()
            print(f"\nfile tail crash test: sent {EVENTS}, stored {count}, "
                  f"lost {EVENTS - count}, repeated deliveries {repeats(es, index)} "
                  f"(records replayed from the journal: {replayed_records(socd)}), "
                  f"kills {kills}, rotations {writer.rotations}")
        assert count == EVENTS
        assert writer.rotations == EVENTS // ROTATE_EVERY - 1
        assert_journal_empties(socd)
        assert socd.stop() == 0
        assert not list((tmp_path / "state" / "journal").glob("*.seg"))
    finally:
        socd.kill()
        if socd.proc is not None:
            socd._log.close()
        es_cleanup(es, f"socd-crash-{unique}")
        es.close()
