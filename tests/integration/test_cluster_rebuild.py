"""A worker's state rebuild on assignment, with a window still open (issue 18).

Real Kafka (the `make services` broker), the intake's publishing sink and two workers in
one process: worker A counts 3 of 5 failures of a threshold rule (the window is open,
no alert) and leaves the group; worker B takes the partition over, replays those 3 with
alerts muted to rebuild the state, and the next 2 failures complete the threshold: one
alert, with the id one RuleEngine gives for the same 5 events.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from socd.app.cluster_worker import state_size
from socd.event import Event
from tests.cluster_support import WorkerRig, one_process, threshold_rules, until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

RULES = threshold_rules("k2-rebuild-bruteforce")


def _event(i: int) -> Event:
    return {"@timestamp": f"2026-11-20T08:00:{i:02d}+07:00",
            "event": {"outcome": "failure", "hash": f"k2-rebuild-{i}",
                      "created": "2026-11-20T01:00:00Z"},
            "source": {"ip": "203.0.113.77"}, "user": {"name": f"u{i}"},
            "socd": {"collector": "test", "asset_kind": "server"}}


async def test_rebuild_with_an_open_window_completes_the_threshold(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    rig = WorkerRig(kafka_bootstrap, tmp_path, RULES, "k2rb", partitions=3)
    assert rig.topic.name == f"{rig.prefix}.events.by.source.ip"
    sink = rig.sink()
    await sink.start()
    alerts = rig.alerts
    events = [_event(i) for i in range(5)]
    try:
        await sink.write(events[:3])
        first = rig.worker()
        await first.start()
        await until(lambda: first.events_processed == 3, "worker A to count 3 failures")
        [state] = [s for s in first.parts.values() if s.engine.max_time > 0]
        assert state_size(state.engine) == 1
        assert alerts == []
        await first.stop(10.0)  # commits, leaves the group

        await sink.write(events[3:])
        second = rig.worker()
        await second.start()
        await until(lambda: bool(alerts), "worker B to raise the threshold alert")
        [taken] = [s for s in second.parts.values() if s.replayed]
        assert taken.replayed == 3
        assert taken.live_from == 3
        assert not taken.rebuilding
        assert second.events_processed == 2
        await second.stop(10.0)
    finally:
        await sink.close()
        rig.close()
    single = one_process(rig.rules, events)
    assert [a["event"]["hash"] for a in alerts] == [a["event"]["hash"] for a in single]
    assert alerts[0]["socd"]["alert"] == {"status": "new"}
    assert alerts[0]["socd"]["rule"]["count"] == 5


def test_topics_are_created_and_a_wrong_partition_count_refused(kafka_bootstrap: str,
                                                                 tmp_path: Path) -> None:
    """The partition count is fixed at creation: start-up creates the missing topics
    with cluster.partitions and refuses an existing one with another count."""
    from confluent_kafka.admin import AdminClient

    from socd import config as config_mod
    from socd.app.cluster_kafka import client_settings, ensure_topics
    from socd.errors import ConfigError

    prefix = f"k2tp{uuid.uuid4().hex[:8]}"
    path = tmp_path / "socd.yaml"
    path.write_text(f"state_dir: {tmp_path}/state\ncluster:\n  kafka: {{bootstrap_servers: "
                    f"['{kafka_bootstrap}']}}\n  topic_prefix: {prefix}\n  partitions: 3\n")
    cfg = config_mod.load(str(path))
    cluster = cfg.document.cluster
    assert cluster is not None
    settings = client_settings(cfg, cluster)
    names = [f"{prefix}.events.by.a", f"{prefix}.events.by.b"]
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap, "log_level": 0})
    try:
        assert sorted(ensure_topics(cfg, cluster, settings, names)) == names
        # The controller answered the creation; a broker's metadata cache may show the
        # topics a moment later (seen once, with the broker just started): poll it.
        deadline = time.monotonic() + 30
        found = admin.list_topics(timeout=10).topics
        while not all(n in found for n in names) and time.monotonic() < deadline:
            time.sleep(0.1)
            found = admin.list_topics(timeout=10).topics
        assert [len(found[n].partitions) for n in names] == [3, 3]
        assert ensure_topics(cfg, cluster, settings, names) == []  # there, right count
        other = cluster.model_copy(update={"partitions": 4})
        with pytest.raises(ConfigError) as info:
            ensure_topics(cfg, other, settings, names)
        problem = info.value.problems[0]
        assert problem.path == "cluster.partitions"
        assert "4 partitions configured" in problem.message
    finally:
        admin.delete_topics(names)
