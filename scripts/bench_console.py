#!/usr/bin/env python3
"""Benchmark: the analyst console over 1,000,000 alerts (issue 19).

The alerts are derived from the bundled sample week decoded and classified by the
real pipeline (``tests/e2e/console_data.py``: every shape, field size and severity
mix of real traffic, 16 agencies, 90 days, the four lifecycle statuses). They are
written once into an embedded SQLite store (``AlertStore.insert``, 50,000 per
transaction) and into Elasticsearch (the real sink's bulk writes), and both are kept
in a cache between runs: the SQLite file under ``$SOCD_BENCH_CACHE`` (default
``~/.cache/socd/bench``; each run works on a copy, since the bulk action changes
it), the Elasticsearch indices under the prefix ``socd-bench-console-<n>`` (the
bulk action is undone after the run). Building them is timed and reported.

Then socd runs as a process with the console on a loopback TLS listener (a CA made
with openssl; the client verifies it), users made with ``socd console``, and a real
HTTP client signed in through the login form measures:

* ``console_store`` (the store alone): ``queue_p95_ms``, the first page of the
  queue filtered by severity and unit (60 requests, every severity and unit);
  ``detail_p95_ms``, an alert's page (60 alerts); ``bulk_ack_selected``, 1,000
  ticked alerts acknowledged in one form;
  ``bulk_ack_filter``, "all that match" (critical, one agency, new: about 1,200
  alerts) acknowledged in one action: a page shows at most 200 rows, so this is how
  an analyst acknowledges 1,000. The store copy is checked after.
* ``console_elasticsearch`` (the indices only): the same queue and alert pages.
* ``console_bulk_store_es`` (the store and the indices as a second sink, as in
  production): the same bulk acknowledgements, which update the store and then
  Elasticsearch; both are checked after and the indices put back.

Times are wall times of whole requests on a kept-alive connection (an upper bound
of the server's time). Targets: p95 <= 200 ms; 1,000 alerts or more acknowledged
in one action in <= 2 s.

Options: ``--alerts N`` (default 1,000,000), ``--only NAME``, ``--rebuild`` (ignore
the cache).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from socd.alerting.elasticsearch import ElasticsearchSink  # noqa: E402
from socd.alerts.store import AlertStore  # noqa: E402
from socd.app.deadletter import DeadLetter  # noqa: E402
from socd.plugins import PluginContext  # noqa: E402
from tests.e2e.console_data import UNITS, varied_alerts  # noqa: E402
from tests.e2e.console_harness import (  # noqa: E402
    Console,
    HttpClient,
    console_config,
    start_console,
)
from tests.helpers import es_client  # noqa: E402

SERVICES = Path(os.environ.get("SOCD_SERVICES_DIR", "/tmp/socd-services")) / "services.json"
TARGET_P95_MS, TARGET_BULK_SECS = 200.0, 2.0
DATA_VERSION = 1  # bump when console_data's alerts change: the caches are rebuilt
CHUNK = 50_000
DAYS = 90
REQUESTS = 60
BULK = 1000
SEVERITIES = ("critical", "high", "medium", "low")
# The console's routes (socd/console/views).
QUEUE = "/alerts"
DETAIL = "/alerts/{id}"
BULK_ACTION = "/alerts/bulk"


def _services() -> dict[str, Any]:
    if not SERVICES.exists():
        sys.exit(f"bench: {SERVICES} missing; run `make services` first")
    data: dict[str, Any] = json.loads(SERVICES.read_text())
    return data


def cache_dir() -> Path:
    """Where the built store is kept between runs (it takes a minute or two to make)."""
    base = os.environ.get("SOCD_BENCH_CACHE") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "socd" / "bench")
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _start() -> datetime:
    """The alerts span the 90 days before the day the cache is built (midnight UTC), so
    a console that shows recent alerts first has them."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=DAYS)


def _chunks(n: int, start: datetime) -> Iterator[list[dict[str, Any]]]:
    alerts = varied_alerts(n, start=start, days=DAYS, run=f"console-v{DATA_VERSION}")
    while True:
        chunk = [a for _, a in zip(range(CHUNK), alerts, strict=False)]
        if not chunk:
            return
        yield chunk


def sqlite_dataset(n: int, *, rebuild: bool = False) -> tuple[Path, dict[str, Any]]:
    """The cached store of ``n`` alerts (built when missing) and how it was built."""
    path = cache_dir() / f"console-{n}-v{DATA_VERSION}.db"
    meta_path = path.with_suffix(".json")
    if path.exists() and meta_path.exists() and not rebuild:
        meta: dict[str, Any] = json.loads(meta_path.read_text())
        # A newer socd migrates the file (its indexes) once, here, not in a timed run.
        t0 = time.perf_counter()
        AlertStore(str(path)).close()
        return path, {**meta, "cached": True, "open_seconds": round(time.perf_counter() - t0, 1)}
    tmp = path.with_suffix(".building")
    for stale in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
        stale.unlink(missing_ok=True)
    store = AlertStore(str(tmp))
    start = _start()
    t0 = time.perf_counter()
    written = 0
    for chunk in _chunks(n, start):
        written += store.insert(chunk)
    seconds = time.perf_counter() - t0
    store.close()
    meta = {"alerts": written, "start": start.isoformat(), "days": DAYS,
            "build_seconds": round(seconds, 1), "bytes": tmp.stat().st_size}
    os.replace(tmp, path)
    meta_path.write_text(json.dumps(meta))
    return path, {**meta, "cached": False}


def es_prefix(n: int) -> str:
    return f"socd-bench-console-{n}-v{DATA_VERSION}"


def es_dataset(services: dict[str, Any], n: int, *, rebuild: bool = False,
               ) -> tuple[str, dict[str, Any]]:
    """The Elasticsearch indices of ``n`` alerts (bulk-indexed by the real sink when
    missing or incomplete) and how long indexing took."""
    prefix = es_prefix(n)
    es = es_client(services)
    try:
        if not rebuild and es.indices.exists(index=f"{prefix}-*"):
            es.indices.refresh(index=f"{prefix}-*")
            count = int(es.count(index=f"{prefix}-*")["count"])
            if count == n:
                return prefix, {"alerts": count, "cached": True}
        with contextlib.suppress(Exception):
            es.indices.delete(index=f"{prefix}-*", allow_no_indices=True)
        seconds = asyncio.run(_index(services, prefix, n))
        t0 = time.perf_counter()
        es.indices.refresh(index=f"{prefix}-*")
        refresh = time.perf_counter() - t0
        count = int(es.count(index=f"{prefix}-*")["count"])
    finally:
        es.close()
    return prefix, {"alerts": count, "cached": False, "index_seconds": round(seconds, 1),
                    "refresh_seconds": round(refresh, 1),
                    "docs_per_sec": round(count / seconds) if seconds else None}


async def _index(services: dict[str, Any], prefix: str, n: int) -> float:
    with tempfile.TemporaryDirectory(prefix="socd-bench-console-") as tmp:
        dead = DeadLetter(tmp)
        config = ElasticsearchSink.Config(type="elasticsearch", hosts=[services["ES_URL"]],
                                          index_prefix=prefix, retention_days=0,
                                          request_timeout_secs=120)
        sink = ElasticsearchSink(config, PluginContext(name="es", dead_letter=dead,
                                                       state_dir=tmp))
        await sink.start()
        seconds = 0.0
        try:
            # Building the alerts is not indexing: only the writes are timed.
            for chunk in _chunks(n, _start()):
                for i in range(0, len(chunk), 2000):
                    t0 = time.perf_counter()
                    await sink.write(chunk[i:i + 2000])
                    seconds += time.perf_counter() - t0
        finally:
            await sink.close()
            dead.close()
    return seconds


def bench_console_datasets(alerts: int = 1_000_000, rebuild: bool = False) -> dict[str, Any]:
    """Only the datasets: how long the store and the indices take to build."""
    _, store_meta = sqlite_dataset(alerts, rebuild=rebuild)
    _, es_meta = es_dataset(_services(), alerts, rebuild=rebuild)
    return {"benchmark": "console_datasets", "alerts": alerts, "sqlite": store_meta,
            "elasticsearch": es_meta, "meets_target": True}


def _sample_ids(db: Path, count: int, *, status: str | None = None) -> list[str]:
    """``count`` alert ids spread over the store (with ``status``, if given): the same
    in Elasticsearch, whose documents are the same alerts."""
    store = AlertStore(str(db), readonly=True)
    try:
        total = store.count()
        step = max(1, total // (count * 3))
        where = "rowid % ? = 0" + (" AND status = ?" if status else "")
        params: list[Any] = [step, *([status] if status else [])]
        rows = store.query(f"SELECT id FROM alerts WHERE {where} LIMIT ?",
                           [*params, count])
    finally:
        store.close()
    return [str(r[0]) for r in rows]


def _p95(samples: list[float]) -> float:
    """The nearest-rank 95th percentile."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def _timed(client: HttpClient, path: str, expect: str | None = None) -> float:
    t0 = time.perf_counter()
    status, text = client.get(path)
    elapsed = time.perf_counter() - t0
    if status != 200 or (expect is not None and expect not in text):
        raise AssertionError(f"GET {path} answered {status}: {text[:500]}")
    return elapsed * 1000


def _reads(client: HttpClient, db: Path) -> dict[str, Any]:
    """p95 of the filtered first page of the queue and of an alert's page."""
    queue = [_timed(client, f"{QUEUE}?" + urllib.parse.urlencode(
        {"severity": SEVERITIES[i % 4], "unit": UNITS[i % len(UNITS)]}))
        for i in range(REQUESTS)]
    detail = [_timed(client, DETAIL.format(id=alert_id), alert_id)
              for alert_id in _sample_ids(db, REQUESTS)]
    return {"queue_p95_ms": round(_p95(queue), 1),
            "queue_median_ms": round(sorted(queue)[len(queue) // 2], 1),
            "detail_p95_ms": round(_p95(detail), 1),
            "detail_median_ms": round(sorted(detail)[len(detail) // 2], 1),
            "requests_each": REQUESTS}


def _bulk(client: HttpClient, fields: list[tuple[str, str]]) -> tuple[int, float, int]:
    """One bulk action: (HTTP status, seconds, alerts changed as the answer says)."""
    t0 = time.perf_counter()
    status, headers, _ = client.post_form(BULK_ACTION, fields)
    seconds = time.perf_counter() - t0
    notice = urllib.parse.parse_qs(urllib.parse.urlsplit(headers.get("location", "")).query)
    return status, seconds, int(notice.get("n", ["0"])[0])


def _bulk_acks(client: HttpClient, db: Path) -> dict[str, Any]:
    """Acknowledging 1,000 alerts in one action, two ways: 1,000 ticked ids in the form
    (``scope=selected``) and "all that match" the queue's filters (``scope=filter``: a
    page shows at most 200 rows, so this is how an analyst reaches 1,000)."""
    ticked = _sample_ids(db, BULK, status="new")
    status, seconds, changed = _bulk(client, [("action", "ack"), ("scope", "selected"),
                                              *[("id", i) for i in ticked]])
    out: dict[str, Any] = {"bulk_ack_selected": {
        "alerts": len(ticked), "http_status": status, "changed": changed,
        "seconds": round(seconds, 3)}}
    # critical + one agency + new: about 1,200 of the million.
    filters = {"severity": "critical", "unit": UNITS[0], "status": "new"}
    status, seconds, changed = _bulk(client, [
        ("action", "ack"), ("scope", "filter"),
        *[(f"f_{k}", v) for k, v in filters.items()]])
    out["bulk_ack_filter"] = {"filters": filters, "http_status": status, "changed": changed,
                              "seconds": round(seconds, 3)}
    return out


def _bulk_ok(result: dict[str, Any]) -> bool:
    """The target: 1,000 alerts or more acknowledged in one action within 2 s."""
    return any(r["http_status"] in (302, 303) and r["changed"] >= BULK
               and r["seconds"] <= TARGET_BULK_SECS
               for r in (result["bulk_ack_selected"], result["bulk_ack_filter"]))


def _reads_ok(result: dict[str, Any]) -> bool:
    return (result["queue_p95_ms"] <= TARGET_P95_MS
            and result["detail_p95_ms"] <= TARGET_P95_MS)


def _signed_in(console: Console) -> HttpClient:
    client = HttpClient(console)
    client.sign_in("analyst")
    return client


def _store_run(alerts: int, rebuild: bool, *, with_es: bool) -> dict[str, Any]:
    """socd over a copy of the cached store (and, ``with_es``, the cached indices as a
    second sink: a bulk action then updates the store and Elasticsearch, as in
    production; the indices are put back afterwards)."""
    services = _services()
    db, meta = sqlite_dataset(alerts, rebuild=rebuild)
    prefix = es_dataset(services, alerts, rebuild=rebuild)[0] if with_es else ""
    with tempfile.TemporaryDirectory(prefix="socd-bench-console-") as tmp:
        work = Path(tmp)
        (work / "state").mkdir()
        copy = work / "state" / "alerts.db"
        shutil.copyfile(db, copy)
        sinks = {"store": {"type": "sqlite", "select": "alerts", "path": "alerts.db"},
                 **(_es_sink(services, prefix) if with_es else {})}
        console = start_console(work, console_config(work, sinks=sinks, log=_QUIET))
        try:
            client = _signed_in(console)
            result = {} if with_es else _reads(client, db)
            result.update(_bulk_acks(client, db))
            client.close()
        finally:
            console.stop()
            changed = _changed_ids(copy)
            restored = _es_restore(services, prefix, changed) if with_es else None
    result.update({"alerts": meta["alerts"], "dataset": meta,
                   "acknowledged_in_store": len(changed),
                   "acknowledged_in_elasticsearch": restored,
                   "targets": {"p95_ms": TARGET_P95_MS, "bulk_seconds": TARGET_BULK_SECS,
                               "bulk_alerts": BULK},
                   "cpus": os.cpu_count()})
    return result


def bench_console_store(alerts: int = 1_000_000, rebuild: bool = False) -> dict[str, Any]:
    """The console over the embedded store alone: pages and bulk acknowledgements."""
    result = {"benchmark": "console_store", **_store_run(alerts, rebuild, with_es=False)}
    result["meets_target"] = _reads_ok(result) and _bulk_ok(result)
    return result


def bench_console_bulk_store_es(alerts: int = 1_000_000, rebuild: bool = False,
                                ) -> dict[str, Any]:
    """Bulk acknowledgements with the store and an Elasticsearch sink: the store is the
    lifecycle's record, then the documents are brought to its state."""
    result = {"benchmark": "console_bulk_store_es",
              **_store_run(alerts, rebuild, with_es=True)}
    result["meets_target"] = _bulk_ok(result)
    return result


def bench_console_elasticsearch(alerts: int = 1_000_000, rebuild: bool = False,
                                ) -> dict[str, Any]:
    """The console reading Elasticsearch (the cached indices, no store): the queue and
    an alert's page. Bulk actions write the store first (the lifecycle's record), so
    they are measured by ``console_store``, Elasticsearch update included."""
    services = _services()
    db, _ = sqlite_dataset(alerts, rebuild=rebuild)
    prefix, meta = es_dataset(services, alerts, rebuild=rebuild)
    with tempfile.TemporaryDirectory(prefix="socd-bench-console-") as tmp:
        work = Path(tmp)
        config = console_config(work, sinks=_es_sink(services, prefix), log=_QUIET)
        console = start_console(work, config)
        try:
            client = _signed_in(console)
            result = _reads(client, db)
            client.close()
        finally:
            console.stop()
    result.update({"benchmark": "console_elasticsearch", "alerts": meta["alerts"],
                   "dataset": meta, "elasticsearch": services.get("ES_VERSION"),
                   "targets": {"p95_ms": TARGET_P95_MS}, "cpus": os.cpu_count()})
    result["meets_target"] = _reads_ok(result)
    return result


_QUIET = {"level": "warning", "format": "json"}


def _es_sink(services: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {"es": {"type": "elasticsearch", "hosts": [services["ES_URL"]],
                   "index_prefix": prefix, "retention_days": 0}}


def _changed_ids(db: Path) -> list[str]:
    """The alerts the run acknowledged (all were ``new`` before)."""
    store = AlertStore(str(db), readonly=True)
    try:
        rows = store.query("SELECT alert_id FROM alert_history WHERE \"by\" = 'analyst'")
    finally:
        store.close()
    return sorted({str(r[0]) for r in rows})


def _es_restore(services: dict[str, Any], prefix: str, ids: list[str]) -> int:
    """How many of ``ids`` Elasticsearch has acknowledged; then every alert the bench's
    analyst changed is put back to ``new``, so the cached indices stay the dataset."""
    es = es_client(services)
    index = f"{prefix}-*"
    # A partial document (the image has no scripting either): null leaves a field out.
    reset = {"socd": {"alert": {"status": "new", "updated": None, "updated_by": None,
                                "assignee": None, "note": None}}}
    changed_by_bench = {"term": {"socd.alert.updated_by": "analyst"}}
    try:
        es.indices.refresh(index=index)
        acked = 0
        for i in range(0, len(ids), 1000):
            query = {"bool": {"filter": [{"ids": {"values": ids[i:i + 1000]}},
                                         {"term": {"socd.alert.status": "acknowledged"}}]}}
            acked += int(es.count(index=index, query=query)["count"])
        while True:
            # The search image has no reindex module (no _update_by_query): bulk updates.
            hits = es.search(index=index, query=changed_by_bench, size=2000,
                             source=False)["hits"]["hits"]
            if not hits:
                break
            body: list[dict[str, Any]] = []
            for hit in hits:
                body += [{"update": {"_index": hit["_index"], "_id": hit["_id"]}},
                         {"doc": reset}]
            answer = es.bulk(operations=body, refresh=True)
            if answer["errors"]:
                failed = next(i for i in answer["items"] if i["update"].get("error"))
                raise RuntimeError(f"resetting the bench's changes failed: {failed}")
    finally:
        es.close()
    return acked


BENCHMARKS: dict[str, Callable[..., dict[str, Any]]] = {
    "console_store": bench_console_store,
    "console_elasticsearch": bench_console_elasticsearch,
    "console_bulk_store_es": bench_console_bulk_store_es,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=1_000_000)
    parser.add_argument("--only", choices=["console_datasets", *BENCHMARKS])
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args()
    ok = True
    benches: dict[str, Callable[..., dict[str, Any]]] = {
        "console_datasets": bench_console_datasets, **BENCHMARKS}
    for name, fn in benches.items():
        if args.only and name != args.only:
            continue
        if not args.only and name == "console_datasets":
            continue
        result = fn(args.alerts, rebuild=args.rebuild)
        ok = ok and bool(result["meets_target"])
        print(json.dumps(result, ensure_ascii=False), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
