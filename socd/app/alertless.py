"""Records that become no alert, from a source whose events no sink keeps.

With ``select: alerts`` on every sink (the default), a plain event (event.kind:
event) is kept nowhere: that is right for syslog lines that only feed threshold
rules, and a silent loss for an EDR whose alerts are read by the wrong decoder
(a collector without ``decoder:`` reads ECS JSON: 3 alerts received, 0 stored, no
word). So the pipeline counts, per collector, its alerts and the events no sink
selects, and a collector whose records have become only plain events for
``pipeline.warn_alertless_after_secs`` is named in a warning (then at most hourly,
until its first alert), with the decoder that read them and what to change.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog
from prometheus_client import Counter

from socd.event import Event
from socd.metrics import REGISTRY

log = structlog.get_logger("socd.pipeline")

COLLECTOR_ALERTS = Counter(
    "socd_collector_alerts_total",
    "Alerts from a collector's records: the alerts its decoder produced and the rule "
    "alerts raised on its events.",
    ["collector"],
    registry=REGISTRY,
)
EVENTS_UNSELECTED = Counter(
    "socd_collector_events_unselected_total",
    "A collector's events that are not alerts while every sink stores alerts only "
    "(select: alerts): kept by no sink. Expected for plain syslog lines that only feed "
    "rules; from an alert source (EDR, IDS) it means a wrong or missing decoder.",
    ["collector"],
    registry=REGISTRY,
)

REPEAT_SECS = 3600.0
_MAX_DECODERS = 8


@dataclass(slots=True)
class _Source:
    alerted: bool = False
    unselected: int = 0          # since the last warning
    first: float | None = None   # monotonic time of the first of them
    warned: float | None = None  # monotonic time of the last warning
    decoders: set[str] = field(default_factory=set)
    timer: asyncio.TimerHandle | None = None


class AlertlessWatch:
    """Per collector: counts alerts and unselected events, and warns about a source
    that produces events but never an alert while no sink keeps events.

    The check runs on a timer, not on the next batch: three EDR records and then
    silence must still be said."""

    def __init__(self, warn_after_secs: float, repeat_secs: float = REPEAT_SECS) -> None:
        self.warn_after_secs = warn_after_secs
        self.repeat_secs = repeat_secs
        self._sources: dict[str, _Source] = {}

    def observe(self, collector: str, decoder: str, events: Sequence[Event],
                alerts_only: bool) -> None:
        """One processed batch of ``collector`` (decoded by ``decoder``); ``alerts_only``:
        every sink selects alerts, so the plain events of this batch are kept nowhere."""
        alerts = 0
        for event in events:
            if event["event"].get("kind") == "alert":
                alerts += 1
        source = self._sources.get(collector)
        if source is None:
            if len(self._sources) >= 1024:  # collectors come from the config: a few
                return
            source = self._sources[collector] = _Source()
        if alerts:
            COLLECTOR_ALERTS.labels(collector).inc(alerts)
            self._alerted(source)
        plain = len(events) - alerts
        if not plain or not alerts_only:
            return
        EVENTS_UNSELECTED.labels(collector).inc(plain)
        if source.alerted or not self.warn_after_secs:
            return
        now = time.monotonic()
        if source.first is None:
            source.first = now
        source.unselected += plain
        if len(source.decoders) < _MAX_DECODERS:
            source.decoders.add(decoder)
        if source.timer is None:
            due = (source.first + self.warn_after_secs if source.warned is None
                   else source.warned + self.repeat_secs)
            source.timer = asyncio.get_running_loop().call_later(
                max(0.0, due - now), self._check, collector)

    def close(self) -> None:
        """Cancel the pending checks (the pipeline is closing)."""
        for source in self._sources.values():
            if source.timer is not None:
                source.timer.cancel()
                source.timer = None

    @staticmethod
    def _alerted(source: _Source) -> None:
        source.alerted = True
        source.unselected = 0
        if source.timer is not None:
            source.timer.cancel()
            source.timer = None

    def _check(self, collector: str) -> None:
        source = self._sources[collector]
        source.timer = None
        if source.alerted or not source.unselected:
            return
        since = time.monotonic() - (source.warned if source.warned is not None
                                    else source.first or 0.0)
        decoders = sorted(source.decoders)
        log.warning(
            "records of a collector become no alert and no sink keeps plain events",
            collector=collector, events=source.unselected, within_secs=round(since),
            decoders=decoders,
            hint=(f"every sink has select: alerts, so these events are stored nowhere. If "
                  f"collector {collector!r} sends alerts (an EDR, an IDS), its decoder "
                  f"{', '.join(decoders)} reads them as plain events: set `decoder:` to the "
                  f"vendor's (server_edr, workstation_edr, suricata, wazuh, winlogbeat, cef "
                  f"or one under decoders:). If they are plain events (syslog lines that "
                  f"feed rules), this is expected: keep them with `select: all` on a sink "
                  f"if you want them (docs/runbook.md section 10)"))
        source.unselected = 0
        source.warned = time.monotonic()
