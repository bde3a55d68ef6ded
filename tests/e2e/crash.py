"""Shared pieces of the crash tests (issue 13): socd as a process, SIGKILLed at
seeded random moments and restarted, storing into the real Elasticsearch with the
event hash as ``_id`` (bulk ``create``), so every event is stored once whatever is
delivered twice, and Elasticsearch counts the repeats."""

from __future__ import annotations

import json
import random
import signal
import threading
import time
from collections.abc import Callable
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


class Gate:
    """Ties the kills to the stream's progress instead of the clock.

    A producer calls :meth:`wait` with how far it has got (0 to 1) before each
    write; it may go on only up to the share the test has opened. A timed kill
    schedule was flaky: a fast socd could store everything before the fifth kill,
    a slow machine could kill after the stream ended."""

    def __init__(self) -> None:
        self._open = 0.0
        self._cond = threading.Condition()

    def open_to(self, share: float) -> None:
        with self._cond:
            self._open = share
            self._cond.notify_all()

    def wait(self, done: float, timeout: float = 300.0) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: done < self._open or self._open >= 1.0,
                                       timeout):
                raise TimeoutError("the test never opened the gate")


def kill_during_stream(gate: Gate, kills: int, seed: int,
                       kill: Callable[[], object], pause: tuple[float, float]) -> int:
    """Open the stream in ``kills + 1`` seeded parts; after each part but the last,
    wait a seeded moment (the producer and socd are busy with that part) and
    ``kill`` (SIGKILL and restart). Returns the number of kills: always ``kills``."""
    rng = random.Random(seed)
    cuts = sorted(rng.uniform(0.05, 0.95) for _ in range(kills))
    for share in cuts:
        gate.open_to(share)
        time.sleep(rng.uniform(*pause))
        kill()
    gate.open_to(1.0)
    return kills
