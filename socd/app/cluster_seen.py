"""The event.hash values a worker saw lately in one partition (issue 18).

An intake that crashes after Kafka confirmed a batch and before its journal released it
publishes that batch again at restart. Kafka's idempotent producer deduplicates retries
within one producer session only, so the worker reads those events twice, and a plain
count threshold could count them twice. Each owned partition therefore remembers the
``event.hash`` of the events it ran within the partition's longest window (the span a
rebuild replays, so the muted replay after an assignment refills it), bounded in size;
an event whose hash is remembered is skipped.

Time is the Kafka message timestamp (the intake's publication time): every message has
one, and a republished batch comes after the original, so it is compared with what was
seen before it.
"""

from __future__ import annotations

from collections import deque

# At most this many hashes per partition (about 170 bytes each): a republished batch
# follows its original closely, so the newest ones are those that matter.
MAX_SEEN_PER_PARTITION = 50_000


class SeenHashes:
    """Hashes seen within ``window_ms`` of the newest message time, oldest forgotten
    first; at most ``limit`` of them."""

    __slots__ = ("_order", "_set", "limit", "newest_ms", "window_ms")

    def __init__(self, window_ms: int, limit: int = MAX_SEEN_PER_PARTITION) -> None:
        self.window_ms = window_ms
        self.limit = limit
        self.newest_ms = 0
        self._order: deque[tuple[int, str]] = deque()
        self._set: set[str] = set()

    def __len__(self) -> int:
        return len(self._set)

    def repeated(self, value: object, at_ms: int) -> bool:
        """True if ``value`` (an event.hash) was seen within the window before; else
        remember it. A missing or non-text hash is never a repeat (nothing to compare)."""
        if type(value) is not str:
            return False
        if at_ms > self.newest_ms:
            self.newest_ms = at_ms
            self._expire(at_ms - self.window_ms)
        if value in self._set:
            return True
        self._set.add(value)
        self._order.append((at_ms, value))
        if len(self._order) > self.limit:
            self._set.discard(self._order.popleft()[1])
        return False

    def _expire(self, before_ms: int) -> None:
        order = self._order
        while order and order[0][0] < before_ms:
            self._set.discard(order.popleft()[1])
