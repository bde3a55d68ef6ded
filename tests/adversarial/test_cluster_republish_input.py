"""Hostile ``socd-publish`` headers, hashes and times reach a cluster worker (issue 18).

The worker remembers, per partition, the events it read and the intake write that
published each (socd/app/cluster_seen.py), from what the topic holds: a forger with
write access controls the header and the event's fields. Real Kafka, worker
in-process: messages with a 1 MiB write id, 1,000 headers, a header without a value,
a 1 MiB `event.hash`, hashes and times of other types, and a 1 MiB time. The worker
must run them all without raising, keep at most a bounded size per event (the hash of
socd's size, 64 characters of time, 16 bytes of write id), skip exactly the forged
republications of a valid event, and raise the threshold alerts one process raises
for the events given once.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from socd.app.cluster_seen import (
    MAX_CREATED_CHARS,
    MAX_HASH_CHARS,
    MAX_PUBLISH_BYTES,
    PUBLISH_HEADER,
)
from tests.cluster_support import WorkerRig, one_process, threshold_rules, until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

RULES = threshold_rules("k4-adversarial-republish")
MIB = 1024 * 1024


def _event(hash_: Any, created: Any = "2026-11-20T01:00:00.000Z", ip: str = "198.51.100.7",
           i: int = 0) -> bytes:
    return orjson.dumps({"@timestamp": f"2026-11-20T08:00:{i:02d}Z", "source": {"ip": ip},
                         "event": {"outcome": "failure", "hash": hash_, "created": created},
                         "socd": {"collector": "adv"}})


def _messages() -> tuple[list[tuple[bytes, list[tuple[str, bytes | None]]]], int]:
    """(value, headers) pairs and how many of them are republications to skip."""
    valid = [_event(f"adv-{i:028d}", i=i) for i in range(5)]
    first: list[tuple[str, bytes | None]] = [(PUBLISH_HEADER, b"A" * MIB)]
    out = [(v, first) for v in valid[:3]]
    # a forged republication of the first three: another write id (after its first 16
    # bytes), many other headers; skipped, so the count stays 3
    many: list[tuple[str, bytes | None]] = [(f"h{n}", b"x") for n in range(1000)]
    out += [(v, [*many, (PUBLISH_HEADER, b"B" * MIB)]) for v in valid[:3]]
    skipped = 3
    hostile_ip = "203.0.113.66"  # another key: its 5 failures are all counted
    out += [
        (_event("h" * MIB, ip=hostile_ip), [(PUBLISH_HEADER, b"C")]),
        (_event("h" * MIB, ip=hostile_ip), [(PUBLISH_HEADER, b"D")]),  # not compared
        (_event({"a": 1}, ip=hostile_ip), [(PUBLISH_HEADER, None)]),
        (_event(["x"], created={"t": 1}, ip=hostile_ip), []),
        (_event("adv-created", created="9" * MIB, ip=hostile_ip), [(PUBLISH_HEADER, None)]),
    ]
    out += [(v, [(PUBLISH_HEADER, b"E")]) for v in valid[3:]]
    return out, skipped


async def test_hostile_republish_marks_are_bounded_and_passed(kafka_bootstrap: str,
                                                               tmp_path: Path) -> None:
    from confluent_kafka import Producer

    rig = WorkerRig(kafka_bootstrap, tmp_path, RULES, "k4adv")
    messages, skipped = _messages()
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "log_level": 0,
                         "message.max.bytes": 8 * MIB})
    for value, headers in messages:
        producer.produce(rig.topic.name, value, b"k", headers=headers)
    assert producer.flush(30) == 0

    worker = rig.worker()
    await worker.start()
    try:
        await until(lambda: worker.events_processed + worker.duplicates_skipped
                    == len(messages), "the worker to get through the topic")
        [state] = worker.parts.values()
        kept = state.seen._by_key  # noqa: SLF001 - the memory under test
        assert len(kept) == 5 + 1  # the valid events and the long time cut to 64
        assert max(len(k) for k in kept) <= MAX_HASH_CHARS + 1 + MAX_CREATED_CHARS
        assert all(w is None or len(w) <= MAX_PUBLISH_BYTES
                   for v in kept.values() for w in v.writes)
        assert sum(sys.getsizeof(k) for k in kept) < 64 * 1024
    finally:
        await worker.stop(10.0)
        rig.close()
    assert worker.duplicates_skipped == skipped
    # one process, given each event once (the forged republication left out)
    once = [orjson.loads(v) for n, (v, _) in enumerate(messages) if not 3 <= n < 3 + skipped]
    expected = one_process(rig.rules, once)
    assert len(expected) == 2  # the valid address and the hostile one (5 failures each)
    assert sorted(a["event"]["hash"] for a in rig.alerts) == \
        sorted(a["event"]["hash"] for a in expected)
