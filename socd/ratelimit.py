"""Rate-limited log lines: one line per key and interval, with the count held back.

A condition that can repeat with every record (late events, a flapping broker
connection, records no sink keeps) must be said, but must not flood the journal:
the first occurrence of a key is logged at once, later ones within the interval
are only counted, and the next line carries that count.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable

_MAX_KEYS = 1024


class LogLimiter:
    """Decides when a keyed condition may be logged again.

    ``allow(key)`` returns ``None`` while the key is quiet (and counts the call),
    else the number of calls held back since its last line (0 the first time).
    The keys are few by design (collector names, rules); past ``max_keys`` the
    table is cleared rather than grown, so a flood of distinct keys costs at most
    one line per key and interval.
    """

    def __init__(self, interval_secs: float, *, max_keys: int = _MAX_KEYS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_secs = interval_secs
        self.max_keys = max_keys
        self._clock = clock
        self._last: dict[Hashable, list[float]] = {}

    def allow(self, key: Hashable, count: int = 1) -> int | None:
        """``count`` new occurrences of ``key``: if a line is due now (the caller logs
        these occurrences), the number held back since the last line; else ``None``
        (they are added to the held-back count)."""
        now = self._clock()
        entry = self._last.get(key)
        if entry is not None and now - entry[0] < self.interval_secs:
            entry[1] += count
            return None
        held = int(entry[1]) if entry is not None else 0
        if entry is None and len(self._last) >= self.max_keys:
            self._last.clear()
        self._last[key] = [now, 0.0]
        return held
