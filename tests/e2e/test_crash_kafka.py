"""Crash test: a Kafka-fed socd SIGKILLed mid-stream stores every record exactly once.

50,000 server-EDR alerts are produced to a 3-partition topic in parts cut at seeded
places; after each part but the last, socd is SIGKILLed at a seeded moment while it
works through the backlog and started again. The collector commits offsets only past
journaled records, so a restart reads again from the last commit; Elasticsearch
stores each alert once (``_id`` = ``event.hash``, bulk ``create``) and counts the
repeats. The collector is a static group member (``group_instance_id``), so each
restarted socd takes its partitions back at once instead of waiting out the session
of the killed one.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.crash import base_config, kill_and_restart, repeats, replayed_records
from tests.helpers import (
    SocdProcess,
    es_cleanup,
    es_client,
    es_count,
    server_edr_record,
    wait_for,
)
from tests.integration.kafka_util import committed, create_topic, end_offsets, produce

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

EVENTS = 50_000
KILLS = 3
SEED = 18


def test_sigkill_during_a_kafka_stream_loses_and_duplicates_nothing(
        services: dict[str, Any], kafka_bootstrap: str, unique: str, tmp_path: Path) -> None:
    topic = f"socd-crash-{unique}"
    group = f"socd-crash-{unique}"
    create_topic(kafka_bootstrap, topic, 3)
    config = base_config(services["ES_URL"], unique, str(tmp_path / "state"), {
        "edr": {"type": "kafka", "bootstrap_servers": kafka_bootstrap, "topics": [topic],
                "group_id": group, "group_instance_id": f"crash-{unique}",
                "decoder": "server_edr", "batch_max_events": 1000,
                "session_timeout_secs": 10}})
    records = [json.dumps(server_edr_record(i, unique, ("Trung bình", "Cao",
                                                        "Nghiêm trọng")[i % 3]),
                          ensure_ascii=False).encode() for i in range(EVENTS)]
    rng = random.Random(SEED)
    cuts = sorted(rng.sample(range(1, EVENTS), KILLS))
    parts = [records[a:b] for a, b in zip([0, *cuts], [*cuts, EVENTS], strict=True)]
    es = es_client(services)
    index = f"socd-crash-{unique}-*"
    socd = SocdProcess(config, tmp_path)
    try:
        socd.start()
        for number, part in enumerate(parts):
            produce(kafka_bootstrap, topic, part)
            if number == len(parts) - 1:
                break
            time.sleep(rng.uniform(0.2, 1.0))
            kill_and_restart(socd)
        wait_for(lambda: es_count(es, index) >= EVENTS, 180,
                 f"{EVENTS} documents in {index}", interval=1.0)
        wait_for(lambda: committed(kafka_bootstrap, group, topic, 3) ==
                 end_offsets(kafka_bootstrap, topic, 3), 60, "every offset committed")
        count = es_count(es, index)
        print(f"\nkafka crash test: produced {EVENTS}, stored {count}, kills {KILLS}, "
              f"repeated deliveries {repeats(es, index)}, records replayed from the "
              f"journal {replayed_records(socd)}")
        assert count == EVENTS
        assert socd.stop() == 0
    finally:
        socd.kill()
        es_cleanup(es, f"socd-crash-{unique}")
