"""The Kafka scale-out row of the Grafana dashboard returns data from a real cluster.

socd runs with the role `all` (intake and worker in one process) on the real Kafka of
`make services`, and a second process with the role `worker` joins and then leaves
the consumer group: two rebalances, and state rebuilt by both processes. A `kafka`
sink exports the produce-error counter. The real Prometheus scrapes both; each query
of the row (deploy/grafana/socd-dashboard.json) is run as a range query over the
traffic and must return a number, as in tests/e2e/test_grafana_panels.py.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import daemon_config
from tests.e2e.test_grafana_panels import _grafana_expr, _has_number, _prom
from tests.helpers import Publisher, SocdProcess, wait_for
from tests.unit.test_grafana_dashboard import KAFKA_ROW, row_panels

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


SCAN_RULE = """\
rules:
  - id: e2e-scan-burst
    title: {vi: "Quét nhiều lần từ một địa chỉ", en: "Repeated scans from one address"}
    severity: high
    match:
      all:
        - {field: event.kind, equals: alert}
    threshold: {count: 3, window: 10m, group_by: [source.ip]}
"""


def _scan(i: int, unique: str) -> bytes:
    """An IDS alert of now from one of 16 addresses (so every partition gets keys)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return json.dumps({
        "@timestamp": stamp, "message": f"scan {i}",
        "event": {"kind": "alert", "id": f"{unique}-{i}", "module": "suricata"},
        "source": {"ip": f"203.0.113.{i % 16 + 1}", "port": 40000 + i},
        "destination": {"ip": "10.10.20.11", "port": 22},
        "socd": {"vendor_severity": 2}}).encode()


def _register_targets(services: dict[str, Any], unique: str, ports: list[int]) -> Path:
    """One Prometheus file_sd target file with every port (prometheus_target takes one)."""
    targets = Path(services["PROMETHEUS_TARGETS_DIR"])
    tmp, path = targets / f".{unique}.tmp", targets / f"{unique}.json"
    tmp.write_text(json.dumps([{"targets": [f"127.0.0.1:{p}" for p in ports],
                                "labels": {"test": unique}}]))
    os.replace(tmp, path)
    return path


def _scraped(services: dict[str, Any], expr: str) -> bool:
    """Whether Prometheus answers ``expr`` with a non-empty vector."""
    body = _prom(services, "/api/v1/query", query=expr)
    return body.get("status") == "success" and bool(body["data"]["result"])


def _metric(proc: SocdProcess, prefix: str) -> float:
    """The sum of ``prefix``'s series; 0 while /metrics does not answer yet."""
    proc.assert_running()
    try:
        metrics = proc.metrics()
    except AssertionError:  # not listening yet
        return 0.0
    return sum(v for k, v in metrics.items() if k.startswith(prefix))


def test_kafka_row_panels_return_data(services, kafka_services, unique, tmp_path: Path):
    """Every panel of the Kafka scale-out row returns data from a real cluster: socd
    with the role `all` (intake and worker) on the real Kafka, a second process with
    the role `worker` that joins and leaves (two rebalances, state rebuilt by both),
    scraped by the real Prometheus; a `kafka` sink exports the produce-error counter."""
    from confluent_kafka.admin import AdminClient, NewTopic

    bootstrap = str(kafka_services["KAFKA_BOOTSTRAP"])
    prefix = f"socd-e2e-{unique}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(f"{prefix}.alerts", num_partitions=1,
                                  replication_factor=1)])[f"{prefix}.alerts"].result(30)
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "scan.yaml").write_text(SCAN_RULE)
    mqtt_topic = f"socd-e2e/{unique}/ids"

    def config(role: str, name: str) -> dict[str, Any]:
        cfg = daemon_config(services, unique, tmp_path / name / "state")
        cfg["rules"] = {"paths": [str(tmp_path / "rules")]}
        cfg["collectors"]["mqtt"]["subscriptions"] = [{"topic": mqtt_topic,
                                                       "decoder": "json"}]
        cfg["sinks"] = {"out": {"type": "kafka", "bootstrap_servers": [bootstrap],
                                "topic": f"{prefix}.alerts", "select": "alerts"}}
        cfg["cluster"] = {"kafka": {"bootstrap_servers": [bootstrap]}, "role": role,
                          "topic_prefix": prefix, "partitions": 4}
        (tmp_path / name).mkdir()
        return cfg

    both = SocdProcess(config("all", "both"), tmp_path / "both")
    worker = SocdProcess(config("worker", "worker"), tmp_path / "worker")
    target = _register_targets(services, unique, [both.http_port, worker.http_port])
    instances = f"127.0.0.1:({both.http_port}|{worker.http_port})"
    sent = 0
    try:
        start = time.time()
        both.start()
        wait_for(lambda: _scraped(services, f'socd_cluster_partitions_assigned'
                                  f'{{instance="127.0.0.1:{both.http_port}"}} == 4'),
                 60, "Prometheus to scrape the first process with its 4 partitions")
        with Publisher(services) as pub:
            def publish_rounds(rounds: int) -> None:
                nonlocal sent
                for _ in range(rounds):
                    pub.publish(mqtt_topic, [b"\n".join(_scan(sent + i, unique)
                                                        for i in range(32))])
                    sent += 32
                    time.sleep(1)  # a stream over time (rates), not a synchronisation

            publish_rounds(6)
            # A worker joins: partitions move to it, it rebuilds their state.
            worker.start(wait_ready=False)
            wait_for(lambda: _metric(worker, "socd_cluster_partitions_assigned") > 0, 90,
                     "the second worker to be assigned partitions")
            publish_rounds(6)
            # ... and leaves: its partitions come back and are rebuilt while scraped.
            rebuilt = _metric(both, "socd_cluster_rebuilds_total")
            assert worker.stop() == 0
            wait_for(lambda: _metric(both, "socd_cluster_rebuilds_total") > rebuilt, 60,
                     "the first process to take the partitions back")
            publish_rounds(4)
        wait_for(lambda: _scraped(services, f'socd_cluster_rebuilds_total'
                                  f'{{instance="127.0.0.1:{both.http_port}"}} > {rebuilt}'),
                 60, "Prometheus to scrape the rebuilds after the worker left")

        failures: list[str] = []
        row = row_panels(KAFKA_ROW)
        assert len(row) >= 8
        for panel in row:
            for query in panel["targets"]:
                expr = _grafana_expr(query["expr"], instances)
                body = _prom(services, "/api/v1/query_range", query=expr,
                             start=f"{start:.3f}", end=f"{time.time():.3f}", step="2")
                if body.get("status") != "success":
                    failures.append(f"{panel['title']}: {expr}: {body.get('error')}")
                elif not _has_number(body["data"]["result"]):
                    failures.append(f"{panel['title']}: {expr}: no data")
        assert not failures, "Kafka panels without data:\n" + "\n".join(failures)
        assert both.stop() == 0
    finally:
        both.kill()
        worker.kill()
        target.unlink(missing_ok=True)
        topics = [t for t in admin.list_topics(timeout=30).topics if t.startswith(prefix)]
        if topics:
            for future in admin.delete_topics(topics, operation_timeout=30).values():
                future.result()
