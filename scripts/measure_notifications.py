#!/usr/bin/env python3
"""Messages per incident on the sample week; prints one JSON object.

The embedded default's sample week (``socd/default/config.yaml`` and
``socd/default/sample/``: 2,100 records of a server EDR, a workstation EDR, an IDS and
syslog) goes through the real decoders, classification and rules engine in time
order, one record at a time, as a live week would arrive. Every alert is handed to
the real :class:`~socd.notify.core.NotificationCore` at its event time (a simulated
clock: ``group_wait``, ``group_interval`` and ``repeat_interval`` act on the week's
own timeline, not on how fast this script runs), with one catch-all route to a
notifier that records what it would send and the default ``notifications.grouping``
(``digest_max_alerts`` raised so a message lists every alert it stands for: that
option changes only what a message lists, never how many messages go out).

An **incident** is one triggering event with every alert it caused: the alert the
event is (an EDR alert, an IoC match) and the alerts rules raised from it. Its key is
``socd.correlation_id``; alerts stored without it (socd before that field) fall back
to ``event.hash`` for an event's own alert and to the last of
``socd.rule.trigger_hashes`` for a rule alert, which is the same event.

Printed: alerts, incidents, messages, ``messages_per_incident`` (mean number of
distinct messages that carry an incident's alerts, over incidents with at least one
alert sent; 1.0 is the goal), the same over incidents of two alerts or more, the
largest, and how many incidents took more than one message. Options override the
grouping to compare settings, e.g. the defaults before socd.correlation_id::

    .venv/bin/python scripts/measure_notifications.py \\
        --group-by rule.id socd.unit --group-wait-secs 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from socd import config as socd_config  # noqa: E402
from socd import log  # noqa: E402
from socd.app.components import build_classifier, build_decoders, dead_letter_for  # noqa: E402
from socd.app.deadletter import DeadLetter  # noqa: E402
from socd.config import GroupingConfig, NotificationsConfig, NotifierConfig  # noqa: E402
from socd.engine.engine import event_time  # noqa: E402
from socd.event import Event  # noqa: E402
from socd.notify.core import NotificationCore  # noqa: E402
from socd.notify.sender import notification_from_json  # noqa: E402
from socd.plugins import RawRecord  # noqa: E402

NOTIFIER = "recorder"
LISTED = 1000  # digest_max_alerts of the measurement: every alert of a message is listed


class SimClock:
    """The notification core's clock, moved by this script to each event's time."""

    def __init__(self) -> None:
        self.now = 0.0

    def time(self) -> float:
        return self.now

    async def sleep(self, secs: float) -> None:
        self.now += secs
        await asyncio.sleep(0)


class Recorder:
    """A notifier that sends nothing (messages are read from the outbox)."""

    async def start(self) -> None: ...

    async def healthcheck(self) -> None: ...

    async def send(self, notification: Any) -> None: ...

    async def close(self) -> None: ...


def incident_of(alert: Event) -> str:
    """The key of the triggering event an alert belongs to (see the module docstring)."""
    socd = alert.get("socd") or {}
    correlation = socd.get("correlation_id")
    if isinstance(correlation, str) and correlation:
        return correlation
    rule = socd.get("rule")
    if alert["event"].get("dataset") == "socd.rules" and isinstance(rule, dict) \
            and rule.get("trigger_hashes"):
        return str(rule["trigger_hashes"][-1])
    return str(alert["event"].get("hash", ""))


def sample_alerts(state_dir: str) -> list[tuple[float, list[Event]]]:
    """(event time, alerts) per sample record that raised any, in time order."""
    default = socd_config.default_config_path()
    text = Path(default).read_text(encoding="utf-8")
    # The embedded default names no state_dir; this keeps the IoC store and the dead
    # letters of the run in a folder of its own.
    cfg = socd_config.loads(f"{text}\nstate_dir: {json.dumps(state_dir)}\n", file=default)
    dead_letter = dead_letter_for(cfg)
    decoders = build_decoders(cfg, dead_letter)
    classifier = build_classifier(cfg)
    events: list[Event] = []
    for name, plugin in cfg.collectors.items():
        decoder = decoders[plugin.config.decoder]
        for path in plugin.config.paths:
            full = cfg.resolve(path)
            with open(full, "rb") as fh:
                for line in fh:
                    if line.strip():
                        record = RawRecord(line.rstrip(b"\r\n"), decoder.name, name, full, 0.0)
                        events.extend(decoder.decode(record).events)
    events.sort(key=lambda e: event_time(e.get("@timestamp")) or 0.0)
    out: list[tuple[float, list[Event]]] = []
    for event in events:
        when = event_time(event.get("@timestamp")) or 0.0
        alerts = [a for a in classifier.process([event]) if a["event"].get("kind") == "alert"]
        if alerts:
            out.append((when, alerts))
    return out


async def notify(batches: list[tuple[float, list[Event]]], grouping: GroupingConfig,
                 workdir: str) -> list[Any]:
    """The messages the core queues for ``batches`` with one catch-all route."""
    os.makedirs(workdir, exist_ok=True)
    config = NotificationsConfig.model_validate({
        "grouping": grouping.model_dump(),
        "routes": [{"name": "all", "notifiers": [NOTIFIER]}]})
    clock = SimClock()
    core = NotificationCore(
        config, {NOTIFIER: Recorder()},  # type: ignore[dict-item]
        {NOTIFIER: NotifierConfig.model_validate({"type": "webhook"})},
        path=os.path.join(workdir, "notify.db"),
        dead_letter=DeadLetter(os.path.join(workdir, "dead-letter")), clock=clock,
        run_tasks=False)
    await core.start()
    assert core.store is not None
    sender = core.senders[NOTIFIER]

    async def flush_until(when: float) -> None:
        while (due := core.next_due()) is not None and due <= when:
            clock.now = max(clock.now, due)
            await core.flush_due(due)

    try:
        for when, alerts in batches:
            await flush_until(when)
            clock.now = max(clock.now, when)
            await core.write(alerts)
        await flush_until(float("inf"))
        messages = []
        for row_id in sender.queue:
            row = core.store.outbox_get(row_id)
            assert row is not None
            messages.append(notification_from_json(row[0]))
        return messages
    finally:
        await core.close()


def measure(batches: list[tuple[float, list[Event]]], messages: list[Any]) -> dict[str, Any]:
    size: dict[str, int] = defaultdict(int)
    for _, alerts in batches:
        for alert in alerts:
            size[incident_of(alert)] += 1
    carried: dict[str, set[int]] = defaultdict(set)
    for index, message in enumerate(messages):
        for alert in message.alerts:
            carried[incident_of(alert)].add(index)
    counts = {key: len(found) for key, found in carried.items()}
    multi = [n for key, n in counts.items() if size[key] > 1]
    return {
        "alerts": sum(size.values()),
        "incidents": len(size),
        "incidents_notified": len(counts),
        "messages": len(messages),
        "messages_per_incident": round(sum(counts.values()) / len(counts), 3) if counts else 0,
        "messages_per_multi_alert_incident": round(sum(multi) / len(multi), 3) if multi else 0,
        "max_messages_per_incident": max(counts.values(), default=0),
        "incidents_in_several_messages": sum(1 for n in counts.values() if n > 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--group-by", nargs="+", help="grouping.group_by to measure")
    parser.add_argument("--group-wait-secs", type=float, help="grouping.group_wait_secs")
    parser.add_argument("--group-interval-secs", type=float,
                        help="grouping.group_interval_secs")
    args = parser.parse_args()
    log.setup("error")
    grouping = GroupingConfig()
    overrides: dict[str, Any] = {"digest_max_alerts": LISTED}
    if args.group_by:
        overrides["group_by"] = args.group_by
    if args.group_wait_secs is not None:
        overrides["group_wait_secs"] = args.group_wait_secs
    if args.group_interval_secs is not None:
        overrides["group_interval_secs"] = args.group_interval_secs
    grouping = grouping.model_copy(update=overrides)
    with tempfile.TemporaryDirectory(prefix="socd-measure-") as workdir:
        batches = sample_alerts(workdir)
        messages = asyncio.run(notify(batches, grouping, workdir))
    result = measure(batches, messages)
    result["grouping"] = {k: v for k, v in grouping.model_dump().items()
                          if k != "digest_max_alerts"}
    print(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
