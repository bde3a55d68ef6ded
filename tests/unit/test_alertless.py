"""A source whose records never become alerts while no sink keeps events is counted
and named (issue 14, point 1: 3 EDR alerts decoded as plain events, 0 stored, no word)."""

from __future__ import annotations

import asyncio
from typing import Any

from structlog.testing import capture_logs

from socd.app.alertless import AlertlessWatch
from tests.unit.conftest import sample_value


def events(n: int, kind: str = "event") -> list[dict[str, Any]]:
    return [{"event": {"kind": kind}} for _ in range(n)]


def lines(logs: list[dict[str, Any]], collector: str) -> list[dict[str, Any]]:
    return [e for e in logs if e.get("collector") == collector]


async def test_three_plain_records_then_silence_are_named(uid: str) -> None:
    watch = AlertlessWatch(warn_after_secs=0.05)
    with capture_logs() as logs:
        watch.observe(uid, "json", events(3), alerts_only=True)
        await asyncio.sleep(0.2)
    [line] = lines(logs, uid)
    assert line["log_level"] == "warning"
    assert line["event"] == "records of a collector become no alert and no sink keeps plain " \
                            "events"
    assert line["events"] == 3
    assert line["decoders"] == ["json"]
    assert f"collector {uid!r} sends alerts" in line["hint"]
    assert "set `decoder:`" in line["hint"]
    assert sample_value("socd_collector_events_unselected_total", collector=uid) == 3
    assert sample_value("socd_collector_alerts_total", collector=uid) == 0
    watch.close()


async def test_a_source_that_raises_alerts_is_not_named(uid: str) -> None:
    watch = AlertlessWatch(warn_after_secs=0.05)
    with capture_logs() as logs:
        watch.observe(uid, "syslog", events(10), alerts_only=True)
        watch.observe(uid, "syslog", [*events(5), *events(1, "alert")], alerts_only=True)
        await asyncio.sleep(0.2)
        watch.observe(uid, "syslog", events(10), alerts_only=True)
        await asyncio.sleep(0.2)
    assert lines(logs, uid) == []
    assert sample_value("socd_collector_alerts_total", collector=uid) == 1
    assert sample_value("socd_collector_events_unselected_total", collector=uid) == 25
    watch.close()


async def test_with_a_sink_that_keeps_events_nothing_is_lost(uid: str) -> None:
    watch = AlertlessWatch(warn_after_secs=0.05)
    with capture_logs() as logs:
        watch.observe(uid, "json", events(3), alerts_only=False)
        await asyncio.sleep(0.2)
    assert lines(logs, uid) == []
    assert sample_value("socd_collector_events_unselected_total", collector=uid) == 0
    watch.close()


async def test_the_warning_repeats_at_most_every_repeat_interval(uid: str) -> None:
    watch = AlertlessWatch(warn_after_secs=0.05, repeat_secs=0.3)
    with capture_logs() as logs:
        watch.observe(uid, "json", events(1), alerts_only=True)
        await asyncio.sleep(0.1)
        for _ in range(5):
            watch.observe(uid, "json", events(2), alerts_only=True)
        await asyncio.sleep(0.1)
        assert len(lines(logs, uid)) == 1
        await asyncio.sleep(0.3)
    first, second = lines(logs, uid)
    assert (first["events"], second["events"]) == (1, 10)
    watch.close()


async def test_zero_turns_the_warning_off_but_not_the_count(uid: str) -> None:
    watch = AlertlessWatch(warn_after_secs=0)
    with capture_logs() as logs:
        watch.observe(uid, "json", events(4), alerts_only=True)
        await asyncio.sleep(0.05)
    assert lines(logs, uid) == []
    assert sample_value("socd_collector_events_unselected_total", collector=uid) == 4


async def test_close_cancels_the_pending_check(uid: str) -> None:
    watch = AlertlessWatch(warn_after_secs=0.05)
    with capture_logs() as logs:
        watch.observe(uid, "json", events(2), alerts_only=True)
        watch.close()
        await asyncio.sleep(0.15)
    assert lines(logs, uid) == []
