"""Hostile records on a Kafka topic: a real ``socd run`` with the ``kafka`` collector.

The topic holds, between valid alerts: values over ``max_message_bytes``, a huge key
with a small value, a flood of headers, a record with many small headers (under the
limit: delivered), invalid JSON, invalid UTF-8, an empty value and a null value. socd
must store every valid alert, dead-letter each hostile record once with its raw bytes
and a counted reason, commit past all of them (nothing is read again for ever) and
keep running.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.helpers import SocdProcess, metric, wait_for
from tests.integration.kafka_util import committed, create_topic, end_offsets, produce

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

LIMIT = 64 * 1024


def _alert(i: int) -> bytes:
    return json.dumps({"event": {"kind": "alert", "id": f"adv-{i}"}, "n": i,
                       "message": f"valid {i}"}).encode()


def _produce_hostile(bootstrap: str, topic: str) -> None:
    produce(bootstrap, topic, [_alert(i) for i in range(20)])
    produce(bootstrap, topic, [b"{" + b'"a":"' + b"x" * (LIMIT + 10) + b'"}'] * 3)  # oversize
    produce(bootstrap, topic, [_alert(100)], keys=[b"k" * (LIMIT + 1)])  # huge key
    produce(bootstrap, topic, [_alert(101)],  # a header flood, past the limit in total
            headers=[(f"h{i}", b"v" * 64) for i in range(2000)])
    produce(bootstrap, topic, [_alert(102)],  # many small headers under the limit
            headers=[(f"h{i}", b"v") for i in range(200)])
    produce(bootstrap, topic, [b"{not json", b'{"a": [1, 2', b"\x00\x01\x02"])
    produce(bootstrap, topic, [b'\xff\xfe{"a": 1}', b'{"message": "\xc3\x28"}'])
    produce(bootstrap, topic, [b""])
    produce(bootstrap, topic, [_alert(i) for i in range(20, 40)])


def test_hostile_records_are_dead_lettered_and_socd_keeps_going(
        kafka_bootstrap: str, unique: str, tmp_path: Path) -> None:
    topic = f"adv-{unique}"
    create_topic(kafka_bootstrap, topic, 1)
    _produce_hostile(kafka_bootstrap, topic)
    state = tmp_path / "state"
    config = {
        "state_dir": str(state), "log": {"format": "json"},
        "http": {"host": "127.0.0.1", "port": free_port()}, "rules": {"paths": []},
        "collectors": {"k": {"type": "kafka", "bootstrap_servers": kafka_bootstrap,
                             "group_id": f"socd-adv-{unique}", "topics": [topic],
                             "max_message_bytes": LIMIT}},
        "sinks": {"out": {"type": "ndjson", "path": "out.ndjson", "select": "all"}},
    }
    out = state / "out.ndjson"

    def stored() -> list[int]:
        if not out.exists():
            return []
        return [json.loads(line).get("n") for line in out.read_text().splitlines()
                if line.endswith("}")]

    socd = SocdProcess(config, tmp_path)
    try:
        socd.start()
        expected = [*range(40), 102]
        wait_for(lambda: sorted(n for n in stored() if n is not None) == expected, 90,
                 "the valid alerts stored")
        wait_for(lambda: committed(kafka_bootstrap, f"socd-adv-{unique}", topic, 1) ==
                 end_offsets(kafka_bootstrap, topic, 1), 60, "every record committed")
        socd.assert_running()
        counts = socd.metrics()
        assert socd.stop() == 0
    finally:
        socd.kill()

    dead = [json.loads(line) for line in (state / "dead-letter" / "dead-letter.ndjson").read_text()
            .splitlines()]
    reasons = Counter((d["stage"], d["reason"]) for d in dead)
    assert reasons[("collect", "oversize")] == 5  # 3 values, the key, the header flood
    oversize = [d for d in dead if d["reason"] == "oversize"]
    assert all(d["raw_bytes"] > 0 and base64.b64decode(d["raw_b64"]) for d in oversize)
    decode = sum(n for (stage, _), n in reasons.items() if stage == "decode")
    assert decode >= 5  # invalid JSON (3) and invalid UTF-8 (2), each counted
    assert metric(counts, "socd_events_dropped_total", stage="collect",
                  reason="oversize") == 5
    assert metric(counts, "socd_events_dropped_total", stage="decode") == decode
