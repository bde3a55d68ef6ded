"""One event, one incident, one message (issue 14, point 10).

* Every alert one event causes (its own alert and each rule alert) carries the event's
  ``event.hash`` as ``socd.correlation_id``; input cannot set it.
* The default grouping sends the alerts of one event, and of one host within
  ``group_wait``, as one message that names every rule that fired.
* On the embedded sample week, messages per incident go from 1.64 (grouping by rule
  and unit) to 1.0 (scripts/measure_notifications.py, run here on the real data).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest

from socd.app.deadletter import DeadLetter
from socd.config import GroupingConfig, NotificationsConfig, NotifierConfig
from socd.decoders.json import JsonDecoder
from socd.notify.core import NotificationCore
from socd.notify.sender import notification_from_json
from socd.plugins import PluginContext, RawRecord
from tests.unit.test_notify_core import T0, FakeClock, Recorder

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from scripts import measure_notifications as measure  # noqa: E402

SAMPLE = REPO / "socd" / "default" / "sample" / "server-edr.ndjson"


@pytest.fixture(scope="module")
def week(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[float, list[Any]]]:
    """The sample week through the default config's decoders, classifier and rules."""
    return measure.sample_alerts(str(tmp_path_factory.mktemp("state")))


def test_every_alert_of_an_event_carries_its_hash(
        week: list[tuple[float, list[Any]]]) -> None:
    several = 0
    for _, alerts in week:
        own = [a for a in alerts if a["event"].get("dataset") != "socd.rules"]
        ids = {a["socd"]["correlation_id"] for a in alerts}
        assert len(ids) == 1, alerts  # one record, one incident
        [correlation] = ids
        if own:
            assert own[0]["event"]["hash"] == correlation
        for alert in alerts:
            if alert["event"].get("dataset") == "socd.rules":
                assert alert["socd"]["rule"]["trigger_hashes"][-1] == correlation
        several += len(alerts) > 1
    assert several > 1000  # most sample records raise several alerts


def test_input_cannot_set_the_correlation_id(tmp_path: Path) -> None:
    decoder = JsonDecoder(JsonDecoder.Config(type="json"),
                          PluginContext(name="json", dead_letter=DeadLetter(str(tmp_path))))
    record = RawRecord(b'{"event": {"kind": "alert"}, "socd": {"correlation_id": "forged"}}',
                       "json", "test", "test", T0)
    [event] = decoder.decode(record).events
    assert "correlation_id" not in event["socd"]


def _alert(host: str, rule: str, correlation: str, severity: str = "high") -> dict[str, Any]:
    return {
        "@timestamp": "2026-11-16T03:00:00Z",
        "event": {"kind": "alert", "hash": f"{correlation}-{rule}"},
        "rule": {"id": rule, "name": f"Quy tắc {rule}"},
        "host": {"name": host},
        "socd": {"severity": severity, "unit": "Sở Y tế", "layer": 2, "asset_kind": "server",
                 "correlation_id": correlation},
    }


async def test_default_grouping_sends_one_message_per_event(
        tmp_path: Path, dead_letter: DeadLetter) -> None:
    # Only the route, as an operator writes it: the default grouping applies.
    config = NotificationsConfig.model_validate({"routes": [{"name": "all",
                                                             "notifiers": ["chat"]}]})
    assert config.grouping.group_by == ["socd.unit", "host.name"]
    assert config.grouping.group_wait_secs == 10
    core = NotificationCore(config, {"chat": Recorder("chat")},
                            {"chat": NotifierConfig.model_validate({"type": "test"})},
                            path=str(tmp_path / "notify.db"), dead_letter=dead_letter,
                            clock=FakeClock(T0), run_tasks=False)
    await core.start()
    try:
        webshell = [_alert("srv-web-01", r, "e1", "critical")
                    for r in ("edr", "webshell", "escalation", "ioc-file-hash", "not-removed")]
        login = [_alert("srv-mail-01", r, "e2") for r in ("ioc-match", "root-login", "ioc-in")]
        await core.write(webshell + login)
        assert await core.flush_due(T0 + 9.9) == 0
        assert await core.flush_due(T0 + 10) == 2
        assert core.store is not None
        messages = [notification_from_json(core.store.outbox_get(i)[0])  # type: ignore[index]
                    for i in core.senders["chat"].queue]
    finally:
        await core.close()
    by_host = {m.alerts[0]["host"]["name"]: m for m in messages}
    assert by_host["srv-web-01"].total == 5
    assert by_host["srv-mail-01"].total == 3
    text = by_host["srv-web-01"].text
    assert "Quy tắc (5): " in text
    for rule in ("edr", "webshell", "escalation", "ioc-file-hash", "not-removed"):
        assert f"Quy tắc {rule}" in text
    assert by_host["srv-web-01"].title.endswith("(Sở Y tế, srv-web-01)")


def test_sample_week_messages_per_incident(
        week: list[tuple[float, list[Any]]], tmp_path: Path) -> None:
    listed = {"digest_max_alerts": measure.LISTED}
    before = GroupingConfig().model_copy(update={
        **listed, "group_by": ["rule.id", "socd.unit"], "group_wait_secs": 30.0})
    after = GroupingConfig().model_copy(update=listed)
    old = measure.measure(week, asyncio.run(measure.notify(week, before, str(tmp_path / "a"))))
    new = measure.measure(week, asyncio.run(measure.notify(week, after, str(tmp_path / "b"))))
    print(f"messages per incident: before {old['messages_per_incident']} "
          f"({old['messages']} messages), after {new['messages_per_incident']} "
          f"({new['messages']} messages)")
    assert old["messages_per_incident"] > 1.5
    assert old["max_messages_per_incident"] == 5
    assert new["messages_per_incident"] == 1.0
    assert new["incidents_in_several_messages"] == 0
    assert new["incidents_notified"] == old["incidents_notified"]  # nothing lost
