"""Crash test: nothing socd acknowledged to the MQTT broker is ever lost.

100,000 server-EDR alerts are published over MQTT (QoS 1, messages of 100 events)
to a private Mosquitto while socd is SIGKILLed at random moments (seeded) and
restarted each time. Every alert must end up in Elasticsearch exactly once (the
``_id`` is the event hash, written with the ``create`` operation, so a repeated
delivery is refused with a version conflict and counted by Elasticsearch): the
test asserts 100,000 documents and prints how many deliveries were repeats.

Without the intake journal (issue 13) this lost thousands of events per kill: a
message was PUBACKed once queued in memory, and a SIGKILL took the queue with it.
"""

from __future__ import annotations

import json
import random
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port
from tests.helpers import (
    Publisher,
    SocdProcess,
    es_cleanup,
    es_client,
    es_count,
    server_edr_record,
    wait_for,
)
from tests.integration.private_broker import PrivateBroker

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

EVENTS = 100_000
PER_MESSAGE = 100
KILLS = 6
MIN_KILLS = 5  # the minimum
SEED = 13


def _config(broker: PrivateBroker, es_url: str, unique: str, state: Path) -> dict[str, Any]:
    return {
        "state_dir": str(state),
        "log": {"level": "info"},
        "http": {"host": "127.0.0.1", "port": free_port()},
        "pipeline": {"drain_timeout_secs": 60},
        # Exact counts: the rule pack's own alerts would add documents.
        "rules": {"paths": []},
        "collectors": {"edr": {
            "type": "mqtt", "host": "127.0.0.1", "port": broker.port,
            "client_id": f"socd-crash-{unique}", "decoder": "server_edr",
            "topics": [f"socd-crash/{unique}"], "max_message_bytes": 1024 * 1024}},
        "sinks": {"es": {"type": "elasticsearch", "hosts": [es_url],
                         "index_prefix": f"socd-crash-{unique}", "select": "all",
                         "batch_max_events": 2000, "flush_interval_secs": 0.2}},
    }


def _payloads(unique: str) -> list[bytes]:
    records = [json.dumps(server_edr_record(i, unique, ("Trung bình", "Cao",
                                                        "Nghiêm trọng")[i % 3]),
                          ensure_ascii=False).encode() for i in range(EVENTS)]
    return [b"\n".join(records[i:i + PER_MESSAGE]) + b"\n"
            for i in range(0, EVENTS, PER_MESSAGE)]


def _repeats(es: Any, index: str) -> int:
    """Deliveries Elasticsearch refused because the ``_id`` was already stored."""
    stats = es.indices.stats(index=index, metric="indexing")
    indexing = stats["_all"]["primaries"]["indexing"]
    return int(indexing.get("index_failed_due_to_version_conflict",
                            indexing.get("index_failed", 0)))


def _restart(socd: SocdProcess) -> None:
    socd.kill()
    socd._log.close()
    socd.start()


def test_sigkill_during_an_mqtt_stream_loses_nothing(services: dict[str, Any], unique: str,
                                                     tmp_path: Path) -> None:
    broker = PrivateBroker(tmp_path / "broker").start()
    es = es_client(services)
    index = f"socd-crash-{unique}-*"
    socd = SocdProcess(_config(broker, services["ES_URL"], unique, tmp_path / "state"),
                       tmp_path)
    try:
        socd.start()  # creates the persistent session before anything is published
        payloads = _payloads(unique)
        # The kills are tied to the stream, not to the clock (a timed schedule let a fast
        # socd store everything before the fifth kill): the messages are published in
        # KILLS + 1 parts cut at seeded places, and after each part but the last, socd is
        # killed at a seeded moment while it works through the broker's backlog, then
        # restarted. Publishing is faster than socd stores, so each kill lands mid-stream.
        rng = random.Random(SEED)
        cuts = sorted(rng.sample(range(1, len(payloads)), KILLS))
        parts = [payloads[a:b] for a, b in zip([0, *cuts], [*cuts, len(payloads)], strict=True)]
        published = 0
        kills = 0
        with Publisher(broker.services(), client_id=f"pub-{unique}") as pub:
            for number, part in enumerate(parts):
                published += pub.publish(f"socd-crash/{unique}", part)
                if number == len(parts) - 1:
                    break
                time.sleep(rng.uniform(0.2, 1.2))
                socd.signal(signal.SIGKILL)
                kills += 1
                _restart(socd)
        assert published == len(payloads), "the publisher did not finish"
        assert kills >= MIN_KILLS

        def stored() -> int:
            return es_count(es, index)

        try:
            wait_for(lambda: stored() >= EVENTS, 150, f"{EVENTS} documents in {index}",
                     interval=1.0)
        except AssertionError:
            count = stored()
            print(f"\ncrash test: sent {EVENTS}, stored {count}, lost {EVENTS - count}, "
                  f"kills {kills}")
            raise
        count = stored()
        repeats = _repeats(es, index)
        replayed = sum(int(e.get("records", 0)) for e in socd.log_events()
                       if e.get("event") == "journal replayed")
        print(f"\ncrash test: sent {EVENTS}, stored {count}, lost {EVENTS - count}, "
              f"repeated deliveries {repeats} (MQTT messages replayed from the journal: "
              f"{replayed}), "
              f"kills {kills}")
        assert count == EVENTS

        # Everything is stored, so the journal empties; /readyz shows its depth.
        def journal() -> dict[str, Any]:
            status, body = socd._get("/readyz")
            assert status == 200, body
            detail: dict[str, Any] = json.loads(body)["journal"]
            return detail

        wait_for(lambda: journal()["records"] == 0, 30, "the journal to empty")
        assert journal()["oldest_age_seconds"] == 0.0
        assert socd.stop() == 0
        assert not list((tmp_path / "state" / "journal").glob("*.seg"))
    finally:
        socd.kill()
        if socd.proc is not None:
            socd._log.close()
        broker.stop()
        es_cleanup(es, f"socd-crash-{unique}")
        es.close()
