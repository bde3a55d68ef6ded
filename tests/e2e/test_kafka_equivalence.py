"""Partitioned correlation on Kafka gives the alerts of one process (issue 18).

The data set (tests/e2e/cluster_data.py): ~18,000 real sshd lines from many sources on
several hosts plus 300 server-EDR alerts, so the brute-force threshold, the spraying
distinct count, the success-after-bruteforce sequence and the EDR rules' suppress and
escalate windows all fire. It goes through:

(a) one socd process (the embedded path, no Kafka): the expected SET of alert ids;
(b) a real Kafka (the `make services` broker), an intake process and 3 worker processes
    in one consumer group; one worker is SIGKILLed while it works and a 4th joins
    mid-stream (the input arrives in three parts, one intake run each).

Every alert id of (a) must be in Elasticsearch for (b) and nothing else, each document
once (``_id`` = event.hash, written with ``create``: a batch processed again after the
kill is refused by id, and counted as a version conflict). A second test restarts a
private broker in the middle of the stream (the intake and the worker keep running).
Which partitions move, and whether they hold data then, is Kafka's choice: the state
rebuild itself is checked deterministically in tests/integration/test_cluster_rebuild.py.

Determinism: the test waits for states, never for time: the intake runs exit once their
input is confirmed by Kafka; the workers are done when the group's committed offsets
reach the topics' ends (a worker commits only once a batch's alerts are stored).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster_support import delete_topics
from tests.conftest import free_port
from tests.e2e.cluster_data import edr_records, sshd_lines
from tests.e2e.kafka_broker import PrivateKafka
from tests.helpers import SocdProcess, es_cleanup, es_client, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

PARTITIONS = 6
PARTS = 3
# Wider than the data's spread in time: the collectors of one process interleave their
# batches, and no event may be left out as late in one run and not in the other.
RULES = {"max_out_of_order_secs": 86400}


def _write_parts(directory: Path) -> list[tuple[Path, Path]]:
    """The data set in PARTS consecutive slices (an sshd file and an EDR file each)."""
    sshd, edr = sshd_lines(), edr_records()
    out = []
    directory.mkdir(parents=True, exist_ok=True)
    for k in range(PARTS):
        a = directory / f"sshd-{k}.log"
        b = directory / f"edr-{k}.ndjson"
        a.write_text("\n".join(sshd[k * len(sshd) // PARTS:(k + 1) * len(sshd) // PARTS])
                     + "\n")
        b.write_text("\n".join(edr[k * len(edr) // PARTS:(k + 1) * len(edr) // PARTS]) + "\n")
        out.append((a, b))
    return out


def _config(state: Path, es_url: str, index: str, *, files: list[Path] | None = None,
            cluster: dict[str, Any] | None = None, tail: bool = False) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "state_dir": str(state),
        "log": {"level": "info"},
        "http": {"host": "127.0.0.1", "port": free_port()},
        "rules": RULES,
        "sinks": {"es": {"type": "elasticsearch", "hosts": [es_url], "index_prefix": index,
                         "flush_interval_secs": 0.1}},
    }
    if files is not None:
        mode = {"mode": "tail", "poll_interval_secs": 0.1} if tail else {}
        cfg["collectors"] = {
            "sshd": {"type": "file", "paths": [str(p) for p in files if p.suffix == ".log"],
                     "decoder": "syslog", **mode},
            "edr": {"type": "file", "paths": [str(p) for p in files if p.suffix == ".ndjson"],
                    "decoder": "server_edr", **mode}}
        cfg["exit_when_done"] = not tail
    if cluster is not None:
        cfg["cluster"] = cluster
    return cfg


def _cluster(bootstrap: str, prefix: str, role: str) -> dict[str, Any]:
    return {"kafka": {"bootstrap_servers": [bootstrap]}, "role": role,
            "topic_prefix": prefix, "partitions": PARTITIONS, "session_timeout_ms": 6000}


def _es_ids(es: Any, index: str) -> list[str]:
    es.indices.refresh(index=f"{index}-*", allow_no_indices=True)
    resp = es.search(index=f"{index}-*", size=10_000, source=False,
                     query={"match_all": {}}, allow_no_indices=True)
    return [hit["_id"] for hit in resp["hits"]["hits"]]


def _run_once(proc: SocdProcess, timeout: float = 120) -> None:
    """Start a one-shot socd (exit_when_done) and wait for its clean exit."""
    proc.start(wait_ready=False)
    assert proc.proc is not None
    rc = proc.proc.wait(timeout)
    proc.kill()
    assert rc == 0, proc.log_tail()


def _group_done(bootstrap: str, prefix: str) -> bool:
    """Whether the workers' group has committed every message of every topic (False
    while the broker cannot say: it restarts, or elects the group's coordinator)."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{prefix}.workers",
                         "enable.auto.commit": False, "log_level": 0})
    try:
        topics = [t for t in consumer.list_topics(timeout=10).topics
                  if t.startswith(f"{prefix}.events.by.")]
        parts = [TopicPartition(t, p) for t in topics for p in range(PARTITIONS)]
        committed = consumer.committed(parts, timeout=10)
        for tp in committed:
            _, high = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition),
                                                     timeout=10)
            if high > 0 and tp.offset < high:
                return False
        return bool(topics)
    except KafkaException:
        return False
    finally:
        consumer.close()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, Path]]:
    return _write_parts(tmp_path_factory.mktemp("cluster-data"))


@pytest.fixture(scope="module")
def expected(data: list[tuple[Path, Path]], services: dict[str, Any],
             tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """(a): the alert ids one socd process stores for the data set."""
    es = es_client(services)
    index = f"socd-k2-single-{tmp_path_factory.mktemp('x').name[-6:].lower()}"
    work = tmp_path_factory.mktemp("single")
    files = [p for pair in data for p in pair]
    try:
        _run_once(SocdProcess(_config(work / "state", services["ES_URL"], index,
                                      files=files), work))
        ids = _es_ids(es, index)
    finally:
        es_cleanup(es, index)
    assert len(ids) == len(set(ids))
    assert len(ids) > 500  # thresholds, distinct counts, sequences and suppressions fired
    return set(ids)


@pytest.fixture
def procs() -> Iterator[list[SocdProcess]]:
    started: list[SocdProcess] = []
    yield started
    for proc in started:
        proc.kill()


def _worker(tmp: Path, name: str, es_url: str, index: str, cluster: dict[str, Any],
            procs: list[SocdProcess], files: list[Path] | None = None) -> SocdProcess:
    """A worker process; with ``files``, its config names collectors as the intake's does
    (one file for every role): a worker must not run them, nor wait for them to be ready."""
    work = tmp / name
    work.mkdir()
    proc = SocdProcess(_config(work / "state", es_url, index, files=files, cluster=cluster),
                       work)
    procs.append(proc)
    return proc.start()


def _intake_drained(proc: SocdProcess) -> bool:
    """Whether the intake's sinks are up with nothing left in their spools."""
    metrics = proc.metrics()
    spooled = [v for k, v in metrics.items() if k.startswith("socd_spool_events{")]
    sinks_up = [v for k, v in metrics.items()
                if k.startswith("socd_component_up{") and 'kind="sink"' in k]
    return bool(sinks_up) and all(v == 1 for v in sinks_up) and all(v == 0 for v in spooled)


def _processed(proc: SocdProcess) -> float:
    return sum(v for k, v in proc.metrics().items()
               if k.startswith("socd_cluster_events_processed_total{"))


def test_intake_and_workers_store_the_alerts_of_one_process(
        data: list[tuple[Path, Path]], expected: set[str], services: dict[str, Any],
        kafka_bootstrap: str, unique: str, tmp_path: Path, procs: list[SocdProcess]) -> None:
    es = es_client(services)
    index = f"socd-k2-cluster-{unique}"
    prefix = f"k2eq{unique}"
    es_url = services["ES_URL"]
    try:
        workers = [_worker(tmp_path, f"worker-{i}", es_url, index,
                           _cluster(kafka_bootstrap, prefix, "worker"), procs,
                           files=list(data[0]))
                   for i in range(3)]

        def intake(k: int) -> None:
            work = tmp_path / f"intake-{k}"
            work.mkdir()
            _run_once(SocdProcess(_config(work / "state", es_url, index, files=list(data[k]),
                                          cluster=_cluster(kafka_bootstrap, prefix, "intake")),
                                  work))

        intake(0)
        # SIGKILL a worker while it works: what it processed and did not commit is
        # processed again by the partitions' next owners (same ids).
        victim = wait_for(lambda: next((w for w in workers if _processed(w) > 0), None), 120,
                          "a worker processing the first part")
        victim.signal(signal.SIGKILL)
        assert victim.proc is not None
        victim.proc.wait(30)
        intake(1)
        _worker(tmp_path, "worker-3", es_url, index,
                _cluster(kafka_bootstrap, prefix, "worker"), procs)
        intake(2)
        wait_for(lambda: _group_done(kafka_bootstrap, prefix), 180,
                 "the workers' group to commit every message")
        ids = _es_ids(es, index)
        got = set(ids)
        assert len(ids) == len(got), "an alert stored twice"
        assert got - expected == set(), "alerts one process does not raise"
        assert expected - got == set(), "alerts missed"
    finally:
        es_cleanup(es, index)
        for proc in procs:
            proc.kill()
        delete_topics(kafka_bootstrap, prefix)


def test_broker_restart_mid_stream_loses_nothing(
        data: list[tuple[Path, Path]], expected: set[str], services: dict[str, Any],
        unique: str, tmp_path: Path, procs: list[SocdProcess]) -> None:
    es = es_client(services)
    index = f"socd-k2-restart-{unique}"
    prefix = f"k2rs{unique}"
    es_url = services["ES_URL"]
    broker = PrivateKafka(tmp_path / "kafka").start()
    try:
        live = tmp_path / "live"
        live.mkdir()
        sshd, edr = live / "sshd.log", live / "edr.ndjson"
        sshd.write_bytes(data[0][0].read_bytes())
        edr.write_bytes(data[0][1].read_bytes())
        worker = _worker(tmp_path, "worker", es_url, index,
                         _cluster(broker.bootstrap, prefix, "worker"), procs)
        work = tmp_path / "intake"
        work.mkdir()
        intake = SocdProcess(_config(work / "state", es_url, index, files=[sshd, edr],
                                     cluster=_cluster(broker.bootstrap, prefix, "intake"),
                                     tail=True), work)
        procs.append(intake)
        intake.start()
        wait_for(lambda: _group_done(broker.bootstrap, prefix) and _processed(worker) > 0,
                 120, "the first part processed")
        broker.stop()
        for k in (1, 2):  # the rest arrives while the broker is away, then after
            with sshd.open("ab") as out:
                out.write(data[k][0].read_bytes())
            with edr.open("ab") as out:
                out.write(data[k][1].read_bytes())
            if k == 1:
                lines = sum(p.read_bytes().count(b"\n") for p in (sshd, edr))
                wait_for(lambda n=lines: sum(
                    v for key, v in intake.metrics().items()
                    if key.startswith("socd_events_received_total{")) >= n, 60,
                    "the intake reading the second part")
                broker.start()
        # The intake spooled what Kafka could not take and drains it with backoff after
        # the restart: the group may look done before the spool is published.
        wait_for(lambda: _intake_drained(intake), 180, "the intake's spool published")
        wait_for(lambda: _processed(worker) > 0 and _group_done(broker.bootstrap, prefix),
                 180, "every message committed after the restart")
        wait_for(lambda: set(_es_ids(es, index)) >= expected, 60,
                 f"every alert stored ({len(expected)} expected)")
        ids = _es_ids(es, index)
        assert len(ids) == len(set(ids))
        assert set(ids) == expected
        intake.stop()
        worker.stop()
    finally:
        broker.stop(signal.SIGKILL)
        es_cleanup(es, index)
