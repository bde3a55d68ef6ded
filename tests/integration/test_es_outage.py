"""Acceptance test of the spool: Elasticsearch crashes while alerts keep coming.

socd runs as a process (MQTT -> socd -> a private Elasticsearch with
``spool: {enabled: true}``). Three sources publish numbered alerts at a steady
rate; a third of the way through, Elasticsearch is killed (SIGKILL), the middle
third arrives while it is down (and must go to socd's spool), then it is started
again on the same data and the last third follows. Every alert must be stored
exactly once, in the order each source sent it, and the spool must end empty.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from tests.e2e.conftest import daemon_config
from tests.helpers import Publisher, SocdProcess, ecs_alert, es_count, metric, wait_for
from tests.integration.private_es import PrivateElasticsearch

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

SOURCES = ("ids-hue", "ids-phu-bai", "ids-a-luoi")
PER_MESSAGE = 10  # alerts per MQTT message (NDJSON)


@pytest.fixture(scope="module")
def private_es() -> Iterator[PrivateElasticsearch]:
    node = PrivateElasticsearch()
    try:
        node.start()
        yield node
    finally:
        node.close()


@pytest.fixture
def socd_factory(tmp_path: Path) -> Iterator[Callable[[dict[str, Any]], SocdProcess]]:
    started: list[SocdProcess] = []

    def make(config: dict[str, Any]) -> SocdProcess:
        proc = SocdProcess(config, tmp_path)
        started.append(proc)
        return proc

    yield make
    for proc in started:
        proc.kill()
        log = getattr(proc, "_log", None)
        if log is not None:
            log.close()


def outage_config(services: dict[str, Any], unique: str, state: Path,
                  es_url: str) -> dict[str, Any]:
    config = daemon_config(services, unique, state)
    config["collectors"]["mqtt"]["subscriptions"] = [
        {"topic": f"socd-e2e/{unique}/ids", "decoder": "ids"}]
    config["sinks"]["es"].update(
        hosts=[es_url], refresh=False, spool={"enabled": True}, flush_interval_secs=0.2,
        batch_max_events=1000, retry_max_backoff_secs=2.0, request_timeout_secs=10.0,
        # One bulk request at a time, so Elasticsearch's _seq_no shows the order socd
        # wrote in (parallel bulks of one write are indexed in any order).
        bulk_concurrency=1)
    return config


def alert(unique: str, source: str, seq: int) -> dict[str, Any]:
    doc = ecs_alert(seq, f"{unique}-{source}")
    doc["observer"]["name"] = source
    doc["labels"] = {"seq": seq}
    doc["message"] = f"{source} scan {seq} " + "x" * 400  # about 1 KB an alert
    return doc


def publish(services: dict[str, Any], unique: str, first: int, last: int,
            rate_per_source: float) -> None:
    """Publish alerts ``first..last-1`` of every source (one MQTT client each) at a
    steady rate, in parallel; returns when every message is acknowledged (QoS 1)."""
    topic = f"socd-e2e/{unique}/ids"
    errors: list[BaseException] = []

    def run(source: str) -> None:
        try:
            with Publisher(services, client_id=f"pub-{unique}-{source}") as pub:
                started = time.monotonic()
                for start in range(first, last, PER_MESSAGE):
                    payload = b"\n".join(
                        json.dumps(alert(unique, source, seq)).encode()
                        for seq in range(start, min(start + PER_MESSAGE, last))) + b"\n"
                    pub.publish(topic, [payload])
                    due = started + (start + PER_MESSAGE - first) / rate_per_source
                    pause = due - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,), daemon=True) for s in SOURCES]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    if errors:
        raise errors[0]
    assert not any(t.is_alive() for t in threads), "publishers did not finish"


def stored_documents(es: Elasticsearch, index: str) -> list[dict[str, Any]]:
    """Every document, in the order Elasticsearch indexed it (``_seq_no``; one index
    with one shard, checked by the caller)."""
    hits: list[dict[str, Any]] = []
    after: list[Any] | None = None
    while True:
        kwargs: dict[str, Any] = {"search_after": after} if after else {}
        resp = es.search(index=index, size=5000, sort=[{"_seq_no": "asc"}],
                         seq_no_primary_term=True, track_total_hits=False,
                         source_includes=["observer.name", "labels.seq", "event.hash"],
                         **kwargs)
        page = resp["hits"]["hits"]
        if not page:
            return hits
        hits.extend(page)
        after = page[-1]["sort"]


def check_exactly_once_in_order(es: Elasticsearch, index: str, per_source: int) -> None:
    indices = es.indices.get(index=index)
    assert len(indices) == 1, f"expected one daily index, got {list(indices)}"
    settings = next(iter(indices.values()))["settings"]["index"]
    assert settings["number_of_shards"] == "1"
    docs = stored_documents(es, index)
    total = per_source * len(SOURCES)
    hashes = [d["_source"]["event"]["hash"] for d in docs]
    assert len(docs) == total
    assert len(set(hashes)) == total, "duplicate event.hash"
    for source in SOURCES:
        seqs = [d["_source"]["labels"]["seq"] for d in docs
                if d["_source"]["observer"]["name"] == source]
        assert sorted(seqs) == list(range(per_source)), f"{source}: lost or duplicated alerts"
        disorder = [(a, b) for a, b in zip(seqs, seqs[1:], strict=False) if b <= a]
        assert not disorder, f"{source}: stored out of order, e.g. {disorder[:5]}"
    seq_nos = [d["_seq_no"] for d in docs]
    assert seq_nos == sorted(seq_nos)


def spool_events(socd: SocdProcess) -> float:
    return metric(socd.metrics(), "socd_spool_events", sink="es")


def spool_rows(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT coalesce(sum(count), 0) FROM spool").fetchone()[0])
    finally:
        conn.close()


def test_elasticsearch_crash_loses_nothing_and_keeps_order(
        services: dict[str, Any], unique: str, tmp_path: Path,
        private_es: PrivateElasticsearch,
        socd_factory: Callable[[dict[str, Any]], SocdProcess]) -> None:
    if not private_es.running:
        private_es.start()
    per_source = 10_000
    total = per_source * len(SOURCES)
    third = per_source // 3 // PER_MESSAGE * PER_MESSAGE
    rate = 600.0  # alerts/s per source: 1800/s in all
    socd = socd_factory(outage_config(services, unique, tmp_path / "state", private_es.url))
    socd.start()
    es = Elasticsearch(private_es.url, request_timeout=30)
    index = f"socd-e2e-{unique}-*"

    publish(services, unique, 0, third, rate)
    private_es.stop(signal.SIGKILL)
    killed = time.monotonic()
    publish(services, unique, third, 2 * third, rate)
    # Everything since the crash is in the spool (the sink cannot take anything).
    spooled = wait_for(lambda: (n := spool_events(socd)) >= third * len(SOURCES) and n,
                       120, "the middle third in the spool")
    spool_db = tmp_path / "state" / "spool" / "es.db"
    assert spool_rows(spool_db) == spooled
    socd.assert_running()

    private_es.start()  # same data directory
    outage = time.monotonic() - killed
    publish(services, unique, 2 * third, per_source, rate)

    wait_for(lambda: es_count(es, index) >= total, 180, f"{total} documents in {index}")
    wait_for(lambda: spool_events(socd) == 0, 60,
             "an empty spool")
    time.sleep(1.0)  # anything written twice or late would show up now
    stored = es_count(es, index)
    assert stored == total
    check_exactly_once_in_order(es, index, per_source)

    m = socd.metrics()
    written = metric(m, "socd_spool_written_total", sink="es")
    drained = metric(m, "socd_spool_drained_total", sink="es")
    assert written >= third * len(SOURCES)
    assert drained == written
    assert metric(m, "socd_spool_bytes", sink="es") == 0
    assert metric(m, "socd_events_dropped_total") == 0
    assert metric(m, "socd_events_sent_total", sink="es") == total
    assert spool_rows(spool_db) == 0
    assert socd.stop() == 0
    es.close()
    print(f"\nES outage: sent={total} stored={stored} unique_hashes={total} "
          f"through_spool={int(written)} spooled_at_peak={int(spooled)} "
          f"outage_secs={outage:.1f}")


def test_socd_restart_during_outage_delivers_the_spool_exactly_once(
        services: dict[str, Any], unique: str, tmp_path: Path,
        private_es: PrivateElasticsearch,
        socd_factory: Callable[[dict[str, Any]], SocdProcess]) -> None:
    if not private_es.running:
        private_es.start()
    config = outage_config(services, unique, tmp_path / "state", private_es.url)
    socd = socd_factory(config)
    socd.start()
    es = Elasticsearch(private_es.url, request_timeout=30)
    index = f"socd-e2e-{unique}-*"
    sources = len(SOURCES)

    publish(services, unique, 0, 100, 1000.0)
    wait_for(lambda: es_count(es, index) >= 100 * sources, 60, "the first alerts stored")
    private_es.stop(signal.SIGKILL)
    publish(services, unique, 100, 300, 1000.0)
    wait_for(lambda: spool_events(socd) == 200 * sources, 60,
             "the alerts sent during the outage in the spool")

    # SIGTERM while Elasticsearch is down: socd must not wait for it, nor dead-letter.
    assert socd.stop() == 0
    assert "drain did not finish" not in socd.log_text()
    spool_db = tmp_path / "state" / "spool" / "es.db"
    assert spool_rows(spool_db) == 200 * sources
    assert not (tmp_path / "state" / "dead-letter" / "dead-letter.ndjson").exists()

    private_es.start()
    socd2 = socd_factory(config)
    socd2.start()
    publish(services, unique, 300, 400, 1000.0)
    wait_for(lambda: es_count(es, index) >= 400 * sources, 120, "every alert stored")
    wait_for(lambda: spool_events(socd2) == 0, 60,
             "an empty spool")
    time.sleep(1.0)
    assert es_count(es, index) == 400 * sources
    check_exactly_once_in_order(es, index, 400)
    m = socd2.metrics()
    assert metric(m, "socd_spool_drained_total", sink="es") >= 200 * sources
    assert metric(m, "socd_events_dropped_total") == 0
    logs = [e.get("event") for e in socd2.log_events()]
    assert "spool holds events from an earlier run; draining them first" in logs
    assert socd2.stop() == 0
    assert spool_rows(spool_db) == 0
    es.close()
    with contextlib.suppress(FileNotFoundError):
        assert not (tmp_path / "state" / "dead-letter" / "dead-letter.ndjson").exists()
