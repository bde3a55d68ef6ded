#!/usr/bin/env python3
"""socd benchmarks against the real services; prints one JSON object per result.

Run with ``make bench`` (starts Mosquitto and Elasticsearch first). Scenarios:

* ``mqtt_to_elasticsearch_batched``: server-EDR alerts published to Mosquitto as
  NDJSON payloads of 100 records (QoS 1), through socd (a separate process) into
  Elasticsearch. Events/s is measured from the first publish until socd reports
  every event stored, then the document count is checked in Elasticsearch.
  ``socd_cpu_us_per_event`` is socd's own CPU (user + system, /proc/<pid>/stat) over
  the same interval per event: Mosquitto and Elasticsearch share the cores, so
  throughput alone says little about socd's cost.
* ``mqtt_to_elasticsearch_single``: the same with one alert per MQTT message (how
  most EDR consoles forward), which is bound by per-message costs.
* ``decode_classify``: the decode + classify stages alone (classification includes
  the shipped rule pack), in this process, on the bundled server-EDR sample: the
  CPU ceiling of the pipeline.

Options: ``--events N`` scales the batched scenario; ``--only NAME`` runs one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.conftest import free_port  # noqa: E402
from tests.helpers import (  # noqa: E402
    Publisher,
    SocdProcess,
    es_cleanup,
    es_client,
    es_count,
    metric,
    server_edr_record,
    wait_for,
)

SERVICES = Path(os.environ.get("SOCD_SERVICES_DIR", "/tmp/socd-services")) / "services.json"


def _services() -> dict[str, Any]:
    if not SERVICES.exists():
        sys.exit(f"bench: {SERVICES} missing; run `make services` first")
    data: dict[str, Any] = json.loads(SERVICES.read_text())
    return data


def _config(services: dict[str, Any], run: str, state: Path) -> dict[str, Any]:
    return {
        "state_dir": str(state),
        "log": {"level": "warning"},
        "http": {"host": "127.0.0.1", "port": free_port()},
        # Transport only: the rule pack's own alerts would add documents and make the
        # exact count (lost or duplicated) meaningless. decode_classify measures rules.
        "rules": {"paths": []},
        "collectors": {"mqtt": {
            "type": "mqtt", "host": services["MQTT_HOST"], "port": int(services["MQTT_PORT"]),
            "client_id": f"socd-bench-{run}", "decoder": "server_edr",
            "topics": [f"socd-bench/{run}"]}},
        "sinks": {"es": {"type": "elasticsearch", "hosts": [services["ES_URL"]],
                         "index_prefix": f"socd-bench-{run}", "select": "all",
                         "batch_max_events": 2000, "flush_interval_secs": 0.5}},
    }


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _cpu_secs(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (all threads), from
    /proc/<pid>/stat: socd's own share of the run, apart from Mosquitto's and ES's."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of proc(5); [0] here is field 3.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def mqtt_to_es(services: dict[str, Any], name: str, events: int,
               per_message: int) -> dict[str, Any]:
    run = uuid.uuid4().hex[:8]
    with tempfile.TemporaryDirectory(prefix="socd-bench-") as tmp:
        socd = SocdProcess(_config(services, run, Path(tmp) / "state"), Path(tmp)).start()
        es = es_client(services)
        try:
            records = [json.dumps(server_edr_record(i, run, ("Trung bình", "Cao",
                                                             "Nghiêm trọng")[i % 3]),
                                  ensure_ascii=False).encode() for i in range(events)]
            payloads = [b"\n".join(records[i:i + per_message]) + b"\n"
                        for i in range(0, events, per_message)] if per_message > 1 else records
            publish_secs: list[float] = []

            def publish() -> None:
                t = time.perf_counter()
                with Publisher(services) as pub:
                    pub.publish(f"socd-bench/{run}", payloads)
                publish_secs.append(time.perf_counter() - t)

            pid = socd.proc.pid  # type: ignore[union-attr]
            cpu0 = _cpu_secs(pid)
            start = time.perf_counter()
            thread = threading.Thread(target=publish)
            thread.start()
            try:
                # Every poll makes socd render /metrics (about 2 ms of its CPU): 20 polls a
                # second were a tenth of the socd_cpu_us_per_event measured; 4 a second
                # end the run within 0.25 s of the last event stored (1 % of it).
                wait_for(lambda: metric(socd.metrics(), "socd_events_sent_total", sink="es")
                         >= events, 600, f"{events} events stored", interval=0.25)
            except AssertionError:
                print(socd.log_tail(), file=sys.stderr)
                raise
            elapsed = time.perf_counter() - start
            cpu = _cpu_secs(pid) - cpu0
            thread.join()
            stored = es_count(es, f"socd-bench-{run}-*")
            m = socd.metrics()
            rss = _peak_rss_mb(socd.proc.pid)  # type: ignore[union-attr]
            rc = socd.stop()
        finally:
            socd.kill()
            es_cleanup(es, f"socd-bench-{run}")
            es.close()
    return {
        "benchmark": name,
        "events": events,
        "events_per_mqtt_message": per_message,
        "mqtt_messages": len(payloads),
        "seconds": round(elapsed, 3),
        "events_per_sec": round(events / elapsed),
        "publish_seconds": round(publish_secs[0], 3) if publish_secs else None,
        "documents_in_elasticsearch": stored,
        "lost_or_duplicated": stored - events,
        "dropped": metric(m, "socd_events_dropped_total"),
        "socd_cpu_seconds": round(cpu, 3),
        "socd_cpu_us_per_event": round(1e6 * cpu / events, 1),
        "socd_peak_rss_mb": round(rss, 1),
        "socd_exit_code": rc,
        "elasticsearch": services.get("ES_VERSION"),
        "cpus": os.cpu_count(),
    }


def decode_classify(rounds: int = 20) -> dict[str, Any]:
    from socd import config as config_mod
    from socd.app.components import build_classifier, build_decoders
    from socd.app.deadletter import DeadLetter
    from socd.plugins import RawRecord

    with tempfile.TemporaryDirectory(prefix="socd-bench-") as tmp:
        cfg = config_mod.load()
        dead = DeadLetter(tmp)
        decoder = build_decoders(cfg, dead)["server_edr"]
        classifier = build_classifier(cfg)
        sample = (REPO / "socd/default/sample/server-edr.ndjson").read_bytes().splitlines()
        records = [RawRecord(line, "server_edr", "bench", "") for line in sample if line]
        n = 0
        start = time.perf_counter()
        for _ in range(rounds):
            events = []
            for rec in records:
                events.extend(decoder.decode(rec).events)
            classifier.process(events)
            n += len(events)
        elapsed = time.perf_counter() - start
    return {"benchmark": "decode_classify", "decoder": "server_edr (mapping)",
            "rules": len(getattr(classifier.rules, "rules", []) or []), "events": n,
            "seconds": round(elapsed, 3), "events_per_sec": round(n / elapsed)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--single-events", type=int, default=30_000)
    parser.add_argument("--only")
    args = parser.parse_args()
    benches = {
        "decode_classify": decode_classify,
        "mqtt_to_elasticsearch_batched": lambda: mqtt_to_es(
            _services(), "mqtt_to_elasticsearch_batched", args.events, 100),
        "mqtt_to_elasticsearch_single": lambda: mqtt_to_es(
            _services(), "mqtt_to_elasticsearch_single", args.single_events, 1),
    }
    # Collector benchmarks live beside this file as scripts/bench_<area>.py, each with
    # BENCHMARKS = {"name": callable returning a result dict (or a list of them)}.
    import importlib

    for path in sorted(Path(__file__).parent.glob("bench_*.py")):
        module = importlib.import_module(f"scripts.{path.stem}")
        benches.update(module.BENCHMARKS)
    for name, bench in benches.items():
        if args.only and name != args.only:
            continue
        result = bench()
        for item in result if isinstance(result, list) else [result]:
            print(json.dumps(item, ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
