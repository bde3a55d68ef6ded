"""Shared pieces of the crash tests (issue 13): socd as a process, SIGKILLed at
seeded random moments and restarted, storing into the real Elasticsearch with the
event hash as ``_id`` (bulk ``create``), so every event is stored once whatever is
delivered twice, and Elasticsearch counts the repeats."""

from __future__ import annotations

import json
import signal
from typing import Any

from tests.conftest import free_port
from tests.helpers import SocdProcess, wait_for


def base_config(es_url: str, unique: str, state: str,
                collectors: dict[str, Any]) -> dict[str, Any]:
    """socd with ``collectors`` -> Elasticsearch (index prefix ``socd-crash-<unique>``)."""
    return {
        "state_dir": state,
        "log": {"level": "info"},
        "http": {"host": "127.0.0.1", "port": free_port()},
        "pipeline": {"drain_timeout_secs": 60},
        # Exact counts: the rule pack's own alerts would add documents.
        "rules": {"paths": []},
        "collectors": collectors,
        "sinks": {"es": {"type": "elasticsearch", "hosts": [es_url],
                         "index_prefix": f"socd-crash-{unique}", "select": "all",
                         "batch_max_events": 2000, "flush_interval_secs": 0.2}},
    }


def repeats(es: Any, index: str) -> int:
    """Deliveries Elasticsearch refused because the ``_id`` was already stored."""
    stats = es.indices.stats(index=index, metric="indexing")
    indexing = stats["_all"]["primaries"]["indexing"]
    return int(indexing.get("index_failed_due_to_version_conflict",
                            indexing.get("index_failed", 0)))


def kill_and_restart(socd: SocdProcess) -> None:
    """SIGKILL (no drain, no flush: what a crash does) and start again."""
    socd.signal(signal.SIGKILL)
    socd.kill()  # waits for the exit
    socd._log.close()
    socd.start()


def replayed_records(socd: SocdProcess) -> int:
    """Raw records the restarts read back from the journal (from socd's log)."""
    return sum(int(e.get("records", 0)) for e in socd.log_events()
               if e.get("event") == "journal replayed")


def journal_detail(socd: SocdProcess) -> dict[str, Any]:
    status, body = socd._get("/readyz")
    assert status == 200, body
    detail: dict[str, Any] = json.loads(body)["journal"]
    return detail


def assert_journal_empties(socd: SocdProcess) -> None:
    """Everything is stored, so the journal empties; /readyz shows its depth."""
    wait_for(lambda: journal_detail(socd)["records"] == 0, 30, "the journal to empty")
    assert journal_detail(socd)["oldest_age_seconds"] == 0.0
