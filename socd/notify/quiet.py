"""Quiet hours: a daily local-time window in which only urgent alerts are sent.

The window is ``[start, end)`` in ``timezone``; when ``end`` is earlier than
``start`` it spans midnight (22:00-06:30). Alerts held during the window are
released at its end, so every quiet night ends with one digest per group.
Times are computed with :mod:`zoneinfo`, so a zone with daylight saving time
gets the right wall-clock end.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from socd.config import QuietHoursConfig


def _hhmm(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


class QuietHours:
    """Answers "is this instant quiet, and when does that quiet period end?"."""

    def __init__(self, config: QuietHoursConfig) -> None:
        self.config = config
        self.zone = ZoneInfo(config.timezone)
        self.start = _hhmm(config.start)
        self.end = _hhmm(config.end)
        self.override = frozenset(s.value for s in config.override_severities)

    def release_at(self, now: float) -> float | None:
        """End of the quiet period ``now`` is in (Unix time), or None when not quiet."""
        if self.start == self.end:
            return None  # an empty window
        local = datetime.fromtimestamp(now, self.zone)
        clock = local.time().replace(tzinfo=None)
        day = local.date()
        if self.start < self.end:  # same day, e.g. 12:00-13:30
            if not self.start <= clock < self.end:
                return None
            end_day = day
        elif clock >= self.start:  # spans midnight, evening part
            end_day = day + timedelta(days=1)
        elif clock < self.end:  # spans midnight, morning part
            end_day = day
        else:
            return None
        end = datetime.combine(end_day, self.end, tzinfo=self.zone)
        return end.timestamp()

    def holds(self, severity: str, now: float) -> float | None:
        """When an alert of ``severity`` arriving at ``now`` may be sent, if it is held."""
        if severity in self.override:
            return None
        return self.release_at(now)
