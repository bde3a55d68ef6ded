#!/usr/bin/env python3
"""Sink spool benchmark; prints one JSON object per result.

* ``spool_write_drain``: 200,000 decoded IDS alerts (about 1 KB of JSON each) are
  appended to a fresh spool file in chunks of 1,000 (one durable transaction each,
  WAL + ``synchronous=FULL``), then drained with ``peek`` + ``remove``. Then the
  same through a :class:`~socd.app.pipeline.SinkRunner` with the spool enabled and an
  in-memory sink: first the sink fails (every chunk goes to the spool), then it
  works (the drainer empties the spool into it). Reported: events/s of each step
  and the bytes on disk at the peak. Target: >= 20,000 alerts/s each way.

Options: ``--events N`` (default 200,000).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from scripts.benchlib import standalone  # noqa: E402
from socd.app.deadletter import DeadLetter  # noqa: E402
from socd.app.pipeline import EventBatch, SinkRunner  # noqa: E402
from socd.app.spool import Spool  # noqa: E402
from socd.config import SinkConfig  # noqa: E402
from socd.decoders.json import JsonDecoder  # noqa: E402
from socd.errors import SinkError  # noqa: E402
from socd.event import Event  # noqa: E402
from socd.plugins import PluginContext, RawRecord  # noqa: E402
from tests.helpers import ecs_alert  # noqa: E402

TARGET = 20_000
CHUNK = 1000


def _alerts(dead_letter: DeadLetter, count: int = CHUNK) -> list[Event]:
    """Realistic decoded alerts: the IDS test alerts through the real json decoder."""
    decoder = JsonDecoder(JsonDecoder.Config.model_validate({"type": "json",
                                                            "severity_table": "suricata"}),
                          PluginContext(name="ids", dead_letter=dead_letter))
    events: list[Event] = []
    for i in range(count):
        raw = ecs_alert(i, "bench")
        raw["observer"]["name"] = "ids-hue"
        raw["message"] = f"ET SCAN Potential SSH Scan from 203.0.113.9 to 10.10.20.11 #{i} " * 6
        result = decoder.decode(RawRecord(orjson.dumps(raw), "ids", "mqtt", "bench/ids"))
        events.extend(result.events)
    return events


def _disk(path: str) -> int:
    return sum(os.path.getsize(p) for p in (path, path + "-wal", path + "-shm")
               if os.path.exists(p))


class _MemorySink:
    """Counts what it stores. The first write fails (so the runner starts spooling);
    later ones wait for ``up`` (so the drainer does not spin on retries meanwhile)."""

    def __init__(self) -> None:
        self.name = "memory"
        self.up = asyncio.Event()
        self.writes = 0
        self.stored = 0

    async def start(self) -> None:
        pass

    async def healthcheck(self) -> None:
        pass

    async def write(self, events: Sequence[Event]) -> None:
        self.writes += 1
        if self.writes == 1:
            raise SinkError("down")
        await self.up.wait()
        self.stored += len(events)

    async def close(self) -> None:
        pass


async def _until(predicate: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 600
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError("benchmark step did not finish")
        await asyncio.sleep(0.001)


async def _spool_alone(folder: str, chunk: list[Event], total: int) -> dict[str, Any]:
    spool = Spool(os.path.join(folder, "spool.db"), name="bench", max_bytes=1 << 40)
    await spool.open()
    t0 = time.perf_counter()
    for _ in range(total // CHUNK):
        await spool.append(chunk)
    append_secs = time.perf_counter() - t0
    peak_disk, spool_bytes = _disk(spool.path), spool.bytes
    t0 = time.perf_counter()
    drained = 0
    while True:
        seq_ids, events = await spool.peek(CHUNK)
        if not seq_ids:
            break
        drained += len(events)
        await spool.remove(seq_ids)
    drain_secs = time.perf_counter() - t0
    empty_disk = _disk(spool.path)
    await spool.close()
    assert drained == total, (drained, total)
    return {"append_secs": append_secs, "drain_secs": drain_secs, "peak_disk": peak_disk,
            "spool_bytes": spool_bytes, "empty_disk": empty_disk}


async def _through_runner(folder: str, chunk: list[Event], total: int,
                          dead_letter: DeadLetter) -> dict[str, Any]:
    sink = _MemorySink()
    config = SinkConfig.model_validate({
        "type": "memory", "select": "all", "batch_max_events": CHUNK,
        "flush_interval_secs": 0.05, "queue_max_batches": 8, "retry_max_backoff_secs": 0.05,
        "spool": {"enabled": True}})
    runner = SinkRunner("bench", sink, config, dead_letter, state_dir=folder)
    runner.start()
    t0 = time.perf_counter()
    for _ in range(total // CHUNK):
        await runner.put(EventBatch(chunk, None, time.time()))
    await _until(lambda: runner.spool is not None and runner.spool.events == total)
    in_secs = time.perf_counter() - t0
    sink.up.set()
    t0 = time.perf_counter()
    await _until(lambda: runner.spool is not None and runner.spool.events == 0)
    drain_secs = time.perf_counter() - t0
    assert sink.stored == total, (sink.stored, total)
    await runner.stop()
    await runner.wait()
    return {"in_secs": in_secs, "drain_secs": drain_secs}


def bench_write_drain(events: int = 200_000) -> dict[str, Any]:
    total = events // CHUNK * CHUNK
    folder = tempfile.mkdtemp(prefix="socd-bench-spool-")
    try:
        dead_letter = DeadLetter(os.path.join(folder, "dead-letter"))
        chunk = _alerts(dead_letter)
        event_bytes = len(Spool.encode(chunk)) / len(chunk)
        alone = asyncio.run(_spool_alone(folder, chunk, total))
        runner = asyncio.run(_through_runner(folder, chunk, total, dead_letter))
        dead_letter.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    rates = {
        "append_events_per_sec": total / alone["append_secs"],
        "drain_events_per_sec": total / alone["drain_secs"],
        "runner_spool_events_per_sec": total / runner["in_secs"],
        "runner_drain_events_per_sec": total / runner["drain_secs"],
    }
    return {
        "name": "spool_write_drain", "events": total, "chunk_events": CHUNK,
        "avg_event_bytes": round(event_bytes),
        **{k: round(v) for k, v in rates.items()},
        "spool_bytes": alone["spool_bytes"],
        "disk_bytes_at_peak": alone["peak_disk"],
        "disk_bytes_when_empty": alone["empty_disk"],
        "targets": {"events_per_sec_each_way": TARGET},
        "meets_target": min(rates.values()) >= TARGET,
    }


BENCHMARKS: dict[str, Callable[..., dict[str, Any]]] = {
    "spool_write_drain": bench_write_drain,
}


def main() -> int:
    return standalone(__doc__ or "", BENCHMARKS, "events", 200_000)


if __name__ == "__main__":
    sys.exit(main())
