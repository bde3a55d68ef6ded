"""Rate-limited log lines: one line per key and interval, with the count held back.

A condition that can repeat with every record (late events, a flapping broker
connection, records no sink keeps) must be said, but must not flood the journal:
the first occurrence of a key is logged at once, later ones within the interval
are only counted, and the next line carries that count.

:class:`KeyedRateLimiter` is the other kind of limit: events per key and sliding
window (the console's sign-in attempts per client address).
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


class KeyedRateLimiter:
    """At most ``limit`` events per key within ``window_secs`` (a sliding window).

    For the console's sign-in attempts per client address: ``hit(key)`` records one
    attempt and says whether it is within the limit. Each key keeps at most ``limit``
    times; past ``max_keys`` keys the oldest key is forgotten (a flood of addresses costs
    bounded memory, and forgetting an address errs towards letting it try again).
    """

    def __init__(self, limit: int, window_secs: float, *, max_keys: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window_secs = window_secs
        self.max_keys = max_keys
        self._clock = clock
        self._hits: dict[Hashable, list[float]] = {}

    def hit(self, key: Hashable) -> bool:
        """Record one event of ``key``; False when it is over the limit (then it is not
        recorded: a client that keeps trying is not locked out for longer)."""
        now = self._clock()
        times = self._hits.pop(key, [])
        times = [t for t in times if now - t < self.window_secs]
        allowed = len(times) < self.limit
        if allowed:
            times.append(now)
        if len(self._hits) >= self.max_keys:
            del self._hits[next(iter(self._hits))]
        self._hits[key] = times  # re-inserted: the dict stays in order of last use
        return allowed

    def retry_after(self, key: Hashable) -> float:
        """Seconds until ``key`` may try again (0 when it may now)."""
        times = self._hits.get(key)
        if not times or len(times) < self.limit:
            return 0.0
        return max(0.0, times[0] + self.window_secs - self._clock())
