"""Hostile messages on a repartition topic reach a cluster worker (issue 18).

Only socd's intake writes these topics, but a topic is an input like any other: a
misconfigured producer, a replayed dump or an attacker with write access can put
anything there. Between five valid failures (a threshold of five: one alert) the topic
holds invalid JSON, invalid UTF-8, JSON that is not an object, objects without the
event model's sections, an empty and a null value, JSON nested past the parser's depth,
and well-formed events with hostile field types. The worker must dead-letter each
malformed message once with its raw bytes and a counted reason, run the hostile but
well-formed events through the rules without raising, raise the one alert, commit past
everything (nothing is read again) and keep running. Real Kafka, worker in-process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from socd.app import deadletter
from socd.app.cluster_worker import STAGE
from tests.cluster_support import WorkerRig, threshold_rules, until
from tests.unit.conftest import sample_value

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

RULES = threshold_rules("k2-adversarial-threshold")

MALFORMED = [
    b"{not json",
    b'{"event": {"outcome": "failure"}, "socd": {}, "x": "\xff\xfe"}',
    b"[1, 2, 3]",
    b'"a string"',
    b'{"event": {"outcome": "failure"}}',  # no socd section
    b'{"event": "failure", "socd": {}}',
    b"",
    b"[" * 2000 + b"]" * 2000,
]


def _valid(i: int) -> dict[str, Any]:
    return {"@timestamp": f"2026-11-20T08:00:0{i}Z", "source": {"ip": "198.51.100.9"},
            "event": {"outcome": "failure", "hash": f"adv-valid-{i}"},
            "socd": {"collector": "adv"}}


HOSTILE_BUT_WELL_FORMED = [
    {"@timestamp": "9" * 10_000, "source": {"ip": {"nested": ["x"] * 1000}},
     "event": {"outcome": ["failure", {"a": 1}]}, "socd": {"collector": "adv"}},
    {"@timestamp": -1e308, "source": {"ip": None}, "event": {"outcome": "failure"},
     "socd": {"collector": ["not", "a", "name"]}},
    {"@timestamp": True, "source": "flat", "event": {"outcome": "failure", "hash": 7},
     "socd": {"transport": {"authenticated": "yes"}}},
]


async def test_hostile_messages_are_dead_lettered_and_passed(kafka_bootstrap: str,
                                                             tmp_path: Path) -> None:
    from confluent_kafka import Consumer, Producer, TopicPartition

    rig = WorkerRig(kafka_bootstrap, tmp_path, RULES, "k2adv")
    topic = rig.topic.name
    values = [orjson.dumps(_valid(0)), *MALFORMED[:4], orjson.dumps(_valid(1)),
              *MALFORMED[4:], *(orjson.dumps(e) for e in HOSTILE_BUT_WELL_FORMED),
              *(orjson.dumps(_valid(i)) for i in range(2, 5))]
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "log_level": 0})
    for value in values:
        producer.produce(topic, value, b"k")
    producer.produce(topic, None, b"null value")  # a tombstone
    assert producer.flush(30) == 0
    malformed = len(MALFORMED) + 1

    before = sample_value("socd_events_dropped_total", stage=STAGE, reason="invalid_message")
    worker = rig.worker()
    await worker.start()
    try:
        await until(lambda: worker.events_processed >= len(values) + 1 - malformed,
                    "the worker to get through the topic")
    finally:
        await worker.stop(10.0)
        check = Consumer({"bootstrap.servers": kafka_bootstrap, "log_level": 0,
                          "group.id": rig.group})
        [done] = check.committed([TopicPartition(topic, 0)], timeout=10)
        check.close()
        rig.close()
    assert done.offset == len(values) + 1  # committed past everything
    assert [a["rule"]["id"] for a in rig.alerts] == ["k2-adversarial-threshold"]
    assert sample_value("socd_events_dropped_total", stage=STAGE,
                        reason="invalid_message") - before == malformed
    entries = deadletter.read(rig.dead.path)
    assert [e["reason"] for e in entries] == ["invalid_message"] * malformed
    assert [e["raw"] for e in entries] == [*MALFORMED, b""]
    assert all(e["source"].startswith(f"{topic}[0]@") for e in entries)
