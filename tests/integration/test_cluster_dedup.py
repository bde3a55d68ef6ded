"""An intake's republished batch is not counted twice by a worker (issue 18).

An intake that crashes after Kafka confirmed a batch and before its journal released it
publishes the batch again at restart, from a new producer session (Kafka's idempotence
does not span sessions). Real Kafka (the `make services` broker): the same events are
published twice by two publishing sinks; the worker skips the second copies by
``event.hash`` and raises exactly the alerts one RuleEngine raises for the events once,
with the same ids. A second worker that takes the partition over refills its memory of
hashes from the muted rebuild replay and skips a third copy too.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from socd.event import Event
from tests.cluster_support import WorkerRig, one_process, threshold_rules, until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

RULES = threshold_rules("k4-dedup-bruteforce")


def _events() -> list[Event]:
    """5 failures of one address (one alert, a second one if counted twice); 4 of
    another and one of them twice, the same bytes in one batch (one process counts 5:
    one alert, none if identical events were skipped); 7 of a third (one alert)."""
    out: list[Event] = []
    for ip, n in (("203.0.113.5", 5), ("203.0.113.4", 4), ("203.0.113.7", 7)):
        out.extend({"@timestamp": f"2026-11-20T08:00:{i:02d}+07:00",
                    "event": {"outcome": "failure", "hash": f"k4-{ip}-{i}",
                              "created": "2026-11-20T01:00:00Z"},
                    "source": {"ip": ip}, "user": {"name": f"u{i}"},
                    "socd": {"collector": "test", "asset_kind": "server"}}
                   for i in range(n))
        if n == 4:
            out.append(out[-1])
    return out


async def test_a_republished_batch_raises_each_alert_once(kafka_bootstrap: str,
                                                          tmp_path: Path) -> None:
    rig = WorkerRig(kafka_bootstrap, tmp_path, RULES, "k4dd", partitions=2)

    async def publish(events: list[Event]) -> None:
        """One producer session, as an intake run (a restart is a new one)."""
        sink = rig.sink()
        await sink.start()
        try:
            await sink.write([dict(e) for e in events])
        finally:
            await sink.close()

    events = _events()
    total = len(events)
    try:
        await publish(events)
        await publish(events)  # the intake's journal replays the batch after a crash
        first = rig.worker()
        await first.start()
        await until(lambda: first.events_processed + first.duplicates_skipped == 2 * total,
                    "worker A to read both copies")
        assert first.events_processed == total
        assert first.duplicates_skipped == total
        await first.stop(10.0)  # commits, leaves the group
        raised = [a["event"]["hash"] for a in rig.alerts]

        await publish(events)  # once more, read by the next owner after its rebuild
        second = rig.worker()
        await second.start()
        await until(lambda: second.duplicates_skipped == total,
                    "worker B to skip the third copy")
        assert second.events_processed == 0
        assert sum(s.replayed for s in second.parts.values()) == total
        await second.stop(10.0)
    finally:
        rig.close()
    once = one_process(rig.rules, events)
    assert sorted(raised) == sorted(a["event"]["hash"] for a in once)
    assert len(raised) == 3
    assert [a["event"]["hash"] for a in rig.alerts] == raised  # nothing more from worker B
