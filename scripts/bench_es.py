#!/usr/bin/env python3
"""Elasticsearch sink benchmark; prints one JSON object per result.

* ``es_sink``: 200,000 realistic alerts (server-EDR records through the real
  decoder and classifier, ~45 fields and ~1.4 KB each, every one with its own
  ``event.hash``) are built first; then :meth:`ElasticsearchSink.write` is driven
  in chunks (default 2,000 events, the size a pipeline batch has) with
  ``--in-flight`` writes at a time (default 1: what the pipeline does today)
  into a fresh index prefix on the shared Elasticsearch of ``make services``.
  Measured: documents/s (wall), this process's CPU (``time.process_time``:
  serialization, the HTTP client, response handling) as a share of one core,
  and Elasticsearch's CPU over the same interval (``/proc/<pid>/stat``). The
  document count in Elasticsearch must equal the number written. The indices and
  templates are deleted at the end. Targets: >= 20,000 documents/s with the
  sink's own CPU <= 50 % of one core.

Options: ``--events N``, ``--chunk N``, ``--in-flight N``, ``--bulk-concurrency N``
(the sink option; default its default), ``--profile FILE`` (cProfile of the timed
writes; the top functions by cumulative time go to stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from socd.alerting.elasticsearch import ElasticsearchSink  # noqa: E402
from socd.app.deadletter import DeadLetter  # noqa: E402
from socd.plugins import PluginContext  # noqa: E402
from tests.helpers import SEVERITIES_VI, es_client, es_count, server_edr_record  # noqa: E402

SERVICES = Path(os.environ.get("SOCD_SERVICES_DIR", "/tmp/socd-services")) / "services.json"
TARGET_DOCS_PER_SEC = 20_000
TARGET_CPU_PERCENT = 50.0


def _services() -> dict[str, Any]:
    if not SERVICES.exists():
        sys.exit(f"bench: {SERVICES} missing; run `make services` first")
    data: dict[str, Any] = json.loads(SERVICES.read_text())
    return data


def build_alerts(n: int, run: str) -> list[dict[str, Any]]:
    """``n`` alerts as the pipeline hands them to sinks (decoded and classified)."""
    from socd import config as config_mod
    from socd.app.components import build_classifier, build_decoders
    from socd.plugins import RawRecord

    cfg = config_mod.load()
    with tempfile.TemporaryDirectory(prefix="socd-bench-") as tmp:
        dead = DeadLetter(tmp)
        decoder = build_decoders(cfg, dead)["server_edr"]
        classifier = build_classifier(cfg)
        # The shipped rules add their own alerts (escalations) to the vendor alerts.
        events: dict[str, dict[str, Any]] = {}
        start = 0
        while len(events) < n:
            batch = []
            for i in range(start, start + 5000):
                raw = json.dumps(server_edr_record(i, run, SEVERITIES_VI[i % 3]),
                                 ensure_ascii=False).encode()
                batch.extend(decoder.decode(RawRecord(raw, "server_edr", "bench")).events)
            start += 5000
            for event in classifier.process(batch):
                events.setdefault(event["event"]["hash"], event)
        dead.close()
    return list(events.values())[:n]


def _es_pid(es: Any) -> int | None:
    try:
        info = es.nodes.info(node_id="_local", filter_path="nodes.*.process.id")
        return int(next(iter(info["nodes"].values()))["process"]["id"])
    except Exception:  # ES CPU is an optional figure
        return None


def _proc_cpu_secs(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # utime and stime are fields 14 and 15 of stat(5); [0] here is field 3.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _drive(sink: ElasticsearchSink, events: list[dict[str, Any]], chunk: int,
                 in_flight: int) -> None:
    chunks = [events[i:i + chunk] for i in range(0, len(events), chunk)]
    if in_flight <= 1:
        for part in chunks:
            await sink.write(part)
        return
    queue: asyncio.Queue[list[dict[str, Any]]] = asyncio.Queue()
    for part in chunks:
        queue.put_nowait(part)

    async def worker() -> None:
        while not queue.empty():
            await sink.write(queue.get_nowait())

    await asyncio.gather(*(worker() for _ in range(in_flight)))


def bench_es_sink(events: int = 200_000, chunk: int = 2000, in_flight: int = 1,
                  profile: str | None = None, bulk_concurrency: int | None = None,
                  ) -> dict[str, Any]:
    services = _services()
    run = uuid.uuid4().hex[:8]
    prefix = f"socd-bench-es-{run}"
    t0 = time.perf_counter()
    alerts = build_alerts(events, run)
    build_secs = time.perf_counter() - t0
    doc_bytes = sum(len(json.dumps(a, ensure_ascii=False).encode()) for a in alerts[:1000])
    es = es_client(services)
    es_pid = _es_pid(es)
    tmp = tempfile.mkdtemp(prefix="socd-bench-es-")
    dead = DeadLetter(tmp)
    options: dict[str, Any] = {"retention_days": 0}
    if bulk_concurrency is not None:
        options["bulk_concurrency"] = bulk_concurrency
    config = ElasticsearchSink.Config(type="elasticsearch", hosts=[services["ES_URL"]],
                                      index_prefix=prefix, **options)
    sink = ElasticsearchSink(config, PluginContext(name="es", dead_letter=dead))
    profiler = cProfile.Profile() if profile else None

    async def main() -> tuple[float, float, float | None]:
        await sink.start()
        es_cpu0 = _proc_cpu_secs(es_pid)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        if profiler:
            profiler.enable()
        await _drive(sink, alerts, chunk, in_flight)
        if profiler:
            profiler.disable()
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        es_cpu1 = _proc_cpu_secs(es_pid)
        await sink.close()
        es_cpu = es_cpu1 - es_cpu0 if es_cpu0 is not None and es_cpu1 is not None else None
        return wall, cpu, es_cpu

    try:
        wall, cpu, es_cpu = asyncio.run(main())
        stored = es_count(es, f"{prefix}-*")
        indices = sorted(es.indices.get(index=f"{prefix}-*"))
    finally:
        es.indices.delete(index=f"{prefix}-*", allow_no_indices=True)
        for name in (prefix, f"{prefix}-mappings", f"{prefix}-settings",
                     f"{prefix}-deadletter"):
            if es.indices.exists_index_template(name=name):
                es.indices.delete_index_template(name=name)
            if es.cluster.exists_component_template(name=name):
                es.cluster.delete_component_template(name=name)
        es.close()
        dead.close()
    if profiler and profile:
        profiler.dump_stats(profile)
        pstats.Stats(profile, stream=sys.stderr).sort_stats("cumulative").print_stats(30)
    rate = events / wall
    cpu_pct = 100 * cpu / wall
    return {
        "name": "es_sink", "events": events, "chunk_events": chunk, "in_flight": in_flight,
        "bulk_concurrency": getattr(config, "bulk_concurrency", None),
        "avg_doc_bytes": round(doc_bytes / min(1000, len(alerts))),
        "build_seconds": round(build_secs, 1),
        "seconds": round(wall, 3), "docs_per_sec": round(rate),
        "sink_cpu_seconds": round(cpu, 3), "sink_cpu_percent_of_one_core": round(cpu_pct, 1),
        "sink_cpu_us_per_doc": round(1e6 * cpu / events, 2),
        "elasticsearch_cpu_percent": round(100 * es_cpu / wall, 1) if es_cpu else None,
        "documents_in_elasticsearch": stored, "lost_or_duplicated": stored - events,
        "indices": [i.removeprefix(prefix) for i in indices],
        "elasticsearch": services.get("ES_VERSION"), "cpus": os.cpu_count(),
        "targets": {"docs_per_sec": TARGET_DOCS_PER_SEC,
                    "sink_cpu_percent_of_one_core": TARGET_CPU_PERCENT},
        "meets_target": rate >= TARGET_DOCS_PER_SEC and cpu_pct <= TARGET_CPU_PERCENT
        and stored == events,
    }


BENCHMARKS: dict[str, Callable[..., dict[str, Any]]] = {"es_sink": bench_es_sink}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--chunk", type=int, default=2000)
    parser.add_argument("--in-flight", type=int, default=1)
    parser.add_argument("--bulk-concurrency", type=int)
    parser.add_argument("--profile")
    args = parser.parse_args()
    result = bench_es_sink(args.events, args.chunk, args.in_flight, args.profile,
                           args.bulk_concurrency)
    print(json.dumps(result, ensure_ascii=False), flush=True)
    return 0 if result["meets_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
