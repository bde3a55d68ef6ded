"""File collector (tail mode) throughput, from the file into the rules queue (one process).

A file of N ECS JSON lines is written first; the collector then follows it from
the beginning, and the time until every line has been read, batched, decoded by
the `json` decoder and acknowledged is measured (the decoded events are discarded).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from socd.app.deadletter import DeadLetter
from socd.collectors.file import _ACTIVE, FileCollector
from socd.decoders.json import JsonDecoder
from socd.plugins import Ack, PluginContext, RawRecord
from tests.helpers import ecs_alert

TARGET = 50_000


async def _run(tmp: Path, expected: int) -> tuple[float, int]:
    dead = DeadLetter(str(tmp / "dead-letter"))
    decoder = JsonDecoder(JsonDecoder.Config(type="json"), PluginContext(name="json",
                                                                          dead_letter=dead))
    config = FileCollector.Config.model_validate({
        "type": "file", "mode": "tail", "paths": ["*.log"], "decoder": "json",
        "poll_interval_secs": 0.01})
    collector = FileCollector(config, PluginContext(name="bench_file", dead_letter=dead,
                                                    config_dir=str(tmp),
                                                    state_dir=str(tmp / "state")))
    events = 0
    done = asyncio.Event()

    async def emit(records: list[RawRecord], ack: Ack | None = None) -> None:
        nonlocal events
        for record in records:
            events += len(decoder.decode(record).events)
        if ack is not None:
            ack.done()
        if events >= expected:
            done.set()

    t0 = time.perf_counter()
    task = asyncio.create_task(collector.run(emit))
    await asyncio.wait_for(done.wait(), 600)
    elapsed = time.perf_counter() - t0
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    _ACTIVE.pop(collector.checkpoint_path, None)
    dead.close()
    return elapsed, events


def file_tail(lines: int = 200_000) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="socd-bench-file-") as tmpdir:
        tmp = Path(tmpdir)
        with open(tmp / "app.log", "wb") as fh:
            for i in range(lines):
                fh.write(orjson.dumps(ecs_alert(i, "bench")) + b"\n")
        size = os.path.getsize(tmp / "app.log")
        elapsed, events = asyncio.run(_run(tmp, lines))
    return {"benchmark": "file_tail", "events": events, "seconds": round(elapsed, 3),
            "events_per_sec": round(events / elapsed), "target": TARGET,
            "mb_per_sec": round(size / elapsed / 1e6, 1)}


BENCHMARKS = {"file_tail": file_tail}

if __name__ == "__main__":
    print(file_tail())
