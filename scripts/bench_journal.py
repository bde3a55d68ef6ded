#!/usr/bin/env python3
"""Intake journal benchmarks; prints one JSON object per result.

* ``journal_append``: server-EDR records appended with :meth:`Journal.append`, each
  append waiting until its batch is fsync'd (group commit), as the MQTT collector
  does. Two shapes: MQTT-like (a record holds 100 NDJSON events, batches of 20
  records, about 1 MB) and one event per record (batches of 100 records); one and
  8 concurrent producers; ``fsync_interval_ms`` 0, 2 (the default), 10 and 50.
  Reported: events/s, MB/s and fsyncs. Targets, at the default settings with one
  producer (a collector waits for each of its batches): >= 50,000 events/s for the
  MQTT-like shape and >= 15,000 for one event per record, so that the journal is
  not what limits MQTT -> Elasticsearch (about 10,000 events/s on the test machine).
* ``journal_recovery``: a journal left with 100,000 unreleased events (one event
  per record, batches of 100, as a crash would leave it) is opened and replayed
  through a real :class:`~socd.app.pipeline.Pipeline` (server-EDR mapping decoder,
  classification without the rule pack) into an in-memory sink. Reported: the
  scan time and the time until the sink has every event. Target: <= 30 s.
* ``mqtt_to_elasticsearch_journal``: ``mqtt_to_elasticsearch_batched`` of
  scripts/bench.py (socd as a process, 100 events per MQTT message), run with
  the journal off and on, alternately, twice each, in the same run. Reported: the
  best events/s of each and the cost. Target (issue 13): cost <= 15 %.

Options: ``--events N`` (default 100,000).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from scripts.benchlib import standalone  # noqa: E402
from socd import config as config_mod  # noqa: E402
from socd.app.components import build_decoders  # noqa: E402
from socd.app.deadletter import DeadLetter  # noqa: E402
from socd.app.journal import JOURNAL_FSYNC_SECONDS, Journal  # noqa: E402
from socd.config import ClassificationConfig  # noqa: E402
from socd.event import Event  # noqa: E402
from socd.plugins import RawRecord  # noqa: E402
from tests.helpers import server_edr_record  # noqa: E402

APPEND_TARGETS = {"mqtt_like": 50_000, "one_event_per_record": 15_000}
RECOVERY_TARGET_SECS = 30.0
COST_TARGET = 0.15


def _records(events: int, per_record: int) -> list[RawRecord]:
    lines = [json.dumps(server_edr_record(i, "bench"), ensure_ascii=False).encode()
             for i in range(events)]
    return [RawRecord(b"\n".join(lines[i:i + per_record]), "server_edr", "mqtt",
                      "socd-bench/edr") for i in range(0, events, per_record)]


def _fsyncs() -> float:
    for metric in JOURNAL_FSYNC_SECONDS.collect():
        for sample in metric.samples:
            if sample.name.endswith("_count"):
                return sample.value
    return 0.0


async def _append_run(folder: str, batches: list[list[RawRecord]], producers: int,
                      interval_ms: float) -> tuple[float, float]:
    journal = Journal(folder, fsync_interval_ms=interval_ms)
    await journal.open()
    fsyncs = _fsyncs()
    shares = [batches[i::producers] for i in range(producers)]

    async def produce(share: list[list[RawRecord]]) -> None:
        for batch in share:
            journal.release(await journal.append(batch))

    started = time.perf_counter()
    await asyncio.gather(*(produce(s) for s in shares))
    elapsed = time.perf_counter() - started
    await journal.close()
    return elapsed, _fsyncs() - fsyncs


def bench_append(events: int = 100_000) -> list[dict[str, Any]]:
    results = []
    shapes = {"mqtt_like": (100, 20), "one_event_per_record": (1, 100)}
    for shape, (per_record, per_batch) in shapes.items():
        records = _records(events, per_record)
        batches = [records[i:i + per_batch] for i in range(0, len(records), per_batch)]
        size = sum(len(r.data) for r in records)
        for producers in (1, 8):
            for interval in (0, 2, 10, 50):
                folder = tempfile.mkdtemp(prefix="socd-bench-journal-")
                try:
                    elapsed, fsyncs = asyncio.run(_append_run(folder, batches, producers,
                                                              interval))
                finally:
                    shutil.rmtree(folder, ignore_errors=True)
                default = interval == 2
                rate = events / elapsed
                result: dict[str, Any] = {
                    "name": "journal_append", "shape": shape, "events": events,
                    "events_per_record": per_record, "records_per_batch": per_batch,
                    "producers": producers, "fsync_interval_ms": interval,
                    "events_per_sec": round(rate), "mb_per_sec": round(size / elapsed / 1e6, 1),
                    "fsyncs": int(fsyncs), "batches_per_fsync": round(len(batches) / fsyncs, 1)
                    if fsyncs else None,
                }
                if default and producers == 1:
                    result["target_events_per_sec"] = APPEND_TARGETS[shape]
                    result["meets_target"] = rate >= APPEND_TARGETS[shape]
                else:
                    result["meets_target"] = True
                results.append(result)
    return results


class _CountingSink:
    """Counts what it stores; signals when it has ``expected`` events."""

    name = "memory"

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.stored = 0
        self.done = asyncio.Event()

    async def start(self) -> None:
        pass

    async def healthcheck(self) -> None:
        pass

    async def write(self, events: Sequence[Event]) -> None:
        self.stored += len(events)
        if self.stored >= self.expected:
            self.done.set()

    async def close(self) -> None:
        pass


async def _leave_journal(folder: str, records: list[RawRecord], per_batch: int) -> None:
    journal = Journal(folder)
    await journal.open()
    for i in range(0, len(records), per_batch):
        await journal.append(records[i:i + per_batch])
    journal.freeze()  # as if socd crashed: nothing was stored
    await journal.close()


async def _recover(folder: str, events: int) -> dict[str, Any]:
    from socd.app.pipeline import Pipeline, SinkRunner
    from socd.config import SinkConfig
    from socd.engine.classify import Classifier

    dead_letter = DeadLetter(os.path.join(folder, "dead-letter"))
    decoders = build_decoders(config_mod.load(), dead_letter)
    sink = _CountingSink(events)
    runner = SinkRunner("memory", sink, SinkConfig.model_validate(
        {"type": "memory", "select": "all", "batch_max_events": 2000,
         "flush_interval_secs": 0.05}), dead_letter)
    journal = Journal(os.path.join(folder, "journal"))
    classifier = Classifier(ClassificationConfig.model_validate({}))
    pipeline = Pipeline(decoders, classifier, [runner], dead_letter, journal=journal)
    pipeline.start()
    started = time.perf_counter()
    await pipeline.recover()
    submitted = time.perf_counter() - started
    await asyncio.wait_for(sink.done.wait(), 600)
    elapsed = time.perf_counter() - started
    scan = journal.scan
    await pipeline.close(30)
    dead_letter.close()
    return {"scan": scan, "submitted_secs": submitted, "elapsed_secs": elapsed,
            "stored": sink.stored}


def bench_recovery(events: int = 100_000) -> dict[str, Any]:
    folder = tempfile.mkdtemp(prefix="socd-bench-journal-")
    try:
        records = _records(events, 1)
        asyncio.run(_leave_journal(os.path.join(folder, "journal"), records, 100))
        disk = sum(p.stat().st_size for p in Path(folder, "journal").glob("*.seg"))
        t0 = time.perf_counter()
        scan = asyncio.run(_scan_only(os.path.join(folder, "journal")))
        scan_secs = time.perf_counter() - t0
        result = asyncio.run(_recover(folder, events))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "name": "journal_recovery", "events": events, "journal_bytes": disk,
        "batches": scan.entries, "scan_and_read_secs": round(scan_secs, 3),
        "replay_submitted_secs": round(result["submitted_secs"], 3),
        "replay_to_sink_secs": round(result["elapsed_secs"], 3),
        "events_per_sec": round(events / result["elapsed_secs"]),
        "stored": result["stored"], "target_secs": RECOVERY_TARGET_SECS,
        "meets_target": result["elapsed_secs"] <= RECOVERY_TARGET_SECS
        and result["stored"] == events,
    }


async def _scan_only(folder: str) -> Any:
    """Open and read every frame back (no pipeline), then leave the files as they are."""
    journal = Journal(folder)
    scan = await journal.open()
    count = 0
    async for _seq, records in journal.replay():
        count += len(records)
    journal.freeze()
    await journal.close()
    assert count == scan.records, (count, scan.records)
    return scan


def bench_mqtt_to_es(events: int = 100_000) -> dict[str, Any]:
    """scripts/bench.py's MQTT -> Elasticsearch run, journal off and on."""
    import scripts.bench as bench

    original: Callable[..., dict[str, Any]] = bench._config
    runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    services = bench._services()
    try:
        for mode in ("off", "on", "off", "on"):
            def config(services: dict[str, Any], run: str, state: Path,
                       _mode: str = mode) -> dict[str, Any]:
                cfg = original(services, run, state)
                cfg["journal"] = {"enabled": _mode == "on"}
                return cfg

            bench._config = config
            runs[mode].append(bench.mqtt_to_es(services, f"mqtt_to_es_journal_{mode}",
                                               events, 100))
    finally:
        bench._config = original
    best = {mode: max(r["events_per_sec"] for r in results) for mode, results in runs.items()}
    cost = 1 - best["on"] / best["off"]
    exact = all(r["lost_or_duplicated"] == 0 for results in runs.values() for r in results)
    return {
        "name": "mqtt_to_elasticsearch_journal", "events": events,
        "events_per_mqtt_message": 100,
        "events_per_sec_journal_off": [r["events_per_sec"] for r in runs["off"]],
        "events_per_sec_journal_on": [r["events_per_sec"] for r in runs["on"]],
        "peak_rss_mb_off": max(r["socd_peak_rss_mb"] for r in runs["off"]),
        "peak_rss_mb_on": max(r["socd_peak_rss_mb"] for r in runs["on"]),
        "journal_cost": round(cost, 3), "target_cost": COST_TARGET,
        "exact_counts": exact, "meets_target": cost <= COST_TARGET and exact,
        "cpus": os.cpu_count(),
    }


BENCHMARKS: dict[str, Callable[..., Any]] = {
    "journal_append": bench_append,
    "journal_recovery": bench_recovery,
    "mqtt_to_elasticsearch_journal": bench_mqtt_to_es,
}


def main() -> int:
    return _standalone()


def _standalone() -> int:
    # journal_append returns a list; benchlib prints one object per benchmark.
    wrapped: dict[str, Callable[[int], dict[str, Any]]] = {}
    for name, fn in BENCHMARKS.items():
        def run(size: int, _fn: Callable[..., Any] = fn) -> dict[str, Any]:
            result = _fn(size)
            if isinstance(result, list):
                for item in result[:-1]:
                    print(json.dumps(item, ensure_ascii=False), flush=True)
                merged: dict[str, Any] = result[-1]
                merged["meets_target"] = all(r["meets_target"] for r in result)
                return merged
            return dict(result)
        wrapped[name] = run
    return standalone(__doc__ or "", wrapped, "events", 100_000)


if __name__ == "__main__":
    sys.exit(main())
