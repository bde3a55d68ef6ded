"""The file collector's tail mode in a real socd process: a writer appends and rotates
(rename and copytruncate) while socd is restarted; every line must be stored once."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import free_port
from tests.helpers import SocdProcess, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

# Appends `total` JSON lines to app.log, renaming it to app.log.<n> (and starting a
# new app.log) every `every` lines, like logrotate's default `create` mode.
WRITER = r"""
import json, os, sys, time
path, start, total, every, rate = sys.argv[1], *map(int, sys.argv[2:6])
fh = open(path, "ab")
for i in range(start, start + total):
    fh.write(json.dumps({"message": f"line {i}", "seq": i}).encode() + b"\n")
    if (i + 1) % 50 == 0:
        fh.flush()
        time.sleep(50 / rate)
    if (i + 1) % every == 0:
        fh.flush()
        os.rename(path, f"{path}.{i + 1}")
        fh.write(b"")  # the old descriptor stays valid; a late line would land there
        fh.close()
        fh = open(path, "ab")
fh.close()
"""


def config(tmp_path: Path) -> dict[str, Any]:
    return {
        "state_dir": str(tmp_path / "state"),
        "log": {"format": "json"},
        "http": {"host": "127.0.0.1", "port": free_port()},
        "pipeline": {"drain_timeout_secs": 30},
        "collectors": {"tail": {
            "type": "file", "mode": "tail", "paths": ["logs/app.log"], "decoder": "json",
            "poll_interval_secs": 0.05, "scan_interval_secs": 0.2, "rotate_wait_secs": 1,
            "batch_max_events": 200}},
        "sinks": {"out": {"type": "ndjson", "path": "out.ndjson", "select": "all",
                          "flush_interval_secs": 0.1}},
    }


def stored(out: Path) -> list[int]:
    if not out.exists():
        return []
    seqs = []
    for line in out.read_bytes().splitlines():
        seqs.append(orjson.loads(line)["seq"])
    return seqs


def test_every_line_stored_once_across_rotations_and_a_restart(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "app.log"
    out = tmp_path / "state" / "out.ndjson"
    socd = SocdProcess(config(tmp_path), tmp_path)
    socd.start()
    total, every = 24000, 8000
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(log), "0", str(total),
                               str(every), "3000"])
    try:
        wait_for(lambda: len(stored(out)) >= 3000, 60, "3000 lines stored")
        assert socd.stop() == 0  # SIGTERM: drain, checkpoint
        time.sleep(1)  # the writer goes on (and may rotate) while socd is stopped
        socd.start()
        assert writer.wait(120) == 0
        wait_for(lambda: len(stored(out)) >= total, 120, f"{total} lines stored")

        # copytruncate: copy, then truncate in place; the writer keeps appending.
        more = 3000
        shutil.copy(log, logs / "app.log.copy")
        with open(log, "r+b") as fh:
            fh.truncate(0)
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(log), str(total),
                                   str(more), str(10**9), "3000"])
        assert writer.wait(120) == 0
        wait_for(lambda: len(stored(out)) >= total + more, 120, "the lines after truncation")
        time.sleep(1)  # anything duplicated would show up by now
    finally:
        if writer.poll() is None:
            writer.kill()
        assert socd.stop() == 0
    seqs = stored(out)
    dupes = [s for s, n in Counter(seqs).items() if n > 1]
    assert not dupes, f"{len(dupes)} lines stored twice, e.g. {dupes[:5]}"
    assert sorted(seqs) == list(range(total + more))
    checkpoint = orjson.loads((tmp_path / "state" / "checkpoints" / "tail.json").read_bytes())
    assert [f["path"] for f in checkpoint["files"]] == [str(log)]
    assert checkpoint["files"][0]["offset"] == log.stat().st_size
