"""Fixtures for end-to-end tests: socd as a process against the real services."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port
from tests.helpers import SocdProcess, es_cleanup, es_client


def daemon_config(services: dict[str, Any], unique: str, state: Path,
                  **overrides: Any) -> dict[str, Any]:
    """MQTT (server EDR + IDS topics) -> Elasticsearch, on a free HTTP port."""
    config: dict[str, Any] = {
        "state_dir": str(state),
        "http": {"host": "127.0.0.1", "port": free_port()},
        "pipeline": {"drain_timeout_secs": 60},
        # Exact document counts: the shipped rules' own alerts are tested by
        # test_rule_alerts_reach_elasticsearch, which turns them back on.
        "rules": {"paths": []},
        "decoders": {"ids": {"type": "json", "severity_table": "suricata"}},
        "collectors": {
            "mqtt": {
                "type": "mqtt",
                "host": services["MQTT_HOST"],
                "port": int(services["MQTT_PORT"]),
                "client_id": f"socd-e2e-{unique}",
                "max_message_bytes": 1024 * 1024,
                "subscriptions": [
                    {"topic": f"socd-e2e/{unique}/server", "decoder": "server_edr"},
                    {"topic": f"socd-e2e/{unique}/ids", "decoder": "ids"},
                ],
            },
        },
        "sinks": {
            "es": {
                "type": "elasticsearch",
                "hosts": [services["ES_URL"]],
                "index_prefix": f"socd-e2e-{unique}",
                "select": "all",
                "flush_interval_secs": 0.2,
            },
        },
    }
    config.update(overrides)
    return config


@pytest.fixture
def socd_process(tmp_path: Path, services: dict[str, Any],
                 unique: str) -> Iterator[Callable[..., SocdProcess]]:
    """Factory: ``socd_process(config=None)`` starts socd and stops it after the test."""
    started: list[SocdProcess] = []

    def make(config: dict[str, Any] | None = None, *, start: bool = True) -> SocdProcess:
        cfg = config or daemon_config(services, unique, tmp_path / "state")
        proc = SocdProcess(cfg, tmp_path)
        started.append(proc)
        if start:
            proc.start()
        return proc

    yield make
    for proc in started:
        proc.kill()
    es = es_client(services)
    with contextlib.suppress(Exception):
        es_cleanup(es, f"socd-e2e-{unique}")
    es.close()


@pytest.fixture
def prometheus_target(services: dict[str, Any], unique: str) -> Iterator[Callable[[int], str]]:
    """Register a socd HTTP port with the real Prometheus; returns the `test` label."""
    targets = Path(services["PROMETHEUS_TARGETS_DIR"])
    path = targets / f"{unique}.json"

    def register(port: int) -> str:
        tmp = targets / f".{unique}.tmp"  # not *.json: Prometheus must never read half a file
        tmp.write_text(json.dumps([{"targets": [f"127.0.0.1:{port}"],
                                    "labels": {"test": unique}}]))
        os.replace(tmp, path)
        return unique

    yield register
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
