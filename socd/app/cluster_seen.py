"""What a worker read lately in one partition, to skip an intake's republished batch
(issue 18).

An intake that crashes after Kafka confirmed a batch and before its journal released it
publishes that batch again at restart (and its sink runner writes a batch again after a
partial failure). Kafka's idempotent producer deduplicates only its own retries within
one producer session, so the worker reads those events twice, and a plain count
threshold could count them twice.

``event.hash`` alone cannot tell a republication from a source that sent the same bytes
twice (two identical syslog lines in one second): one process counts both, so must the
cluster. The intake therefore marks each message with the id of the write that
published it (header ``socd-publish``, random per write), and an event is a repeat when
its ``event.hash`` and ``event.created`` (the receive time, kept by the journal) were
already read *from another write*. Identical records of one batch share a write and
are all counted; a republished batch comes from a new write and is skipped.

Each owned partition remembers the events of the partition's longest window (the span
a rebuild replays, so the muted replay after an assignment refills it), bounded in
size. Time is the Kafka message timestamp (the publication time): every message has
one, and a republished batch follows its original.
"""

from __future__ import annotations

from collections import deque

# At most this many events per partition (about 300 bytes each: 10 MB at the cap): a
# republished batch follows its original within seconds, so the newest ones matter.
MAX_SEEN_PER_PARTITION = 32_768
PUBLISH_HEADER = "socd-publish"
# The topics are an input like any other: what is kept per event is bounded (socd's
# hashes have 32 characters, its times about 24, its write ids 8 bytes). A longer hash
# is not compared at all; a longer time or write id is cut (only forged events merge).
MAX_HASH_CHARS = 128
MAX_CREATED_CHARS = 64
MAX_PUBLISH_BYTES = 16


class SeenEvents:
    """Events (hash, created) seen within ``window_ms`` of the newest message time, with
    the write that published each, oldest forgotten first; at most ``limit``."""

    __slots__ = ("_by_key", "_order", "limit", "newest_ms", "window_ms")

    def __init__(self, window_ms: int, limit: int = MAX_SEEN_PER_PARTITION) -> None:
        self.window_ms = window_ms
        self.limit = limit
        self.newest_ms = 0
        self._order: deque[tuple[int, str]] = deque()
        self._by_key: dict[str, bytes | None] = {}

    def __len__(self) -> int:
        return len(self._by_key)

    def repeated(self, hash_: object, created: object, publish: bytes | None,
                 at_ms: int) -> bool:
        """True if this event was read within the window from another write; else
        remember it. Without a text hash of socd's size nothing is compared (never a
        repeat); ``publish`` is at most MAX_PUBLISH_BYTES (:func:`publish_id`)."""
        if type(hash_) is not str or len(hash_) > MAX_HASH_CHARS:
            return False
        if at_ms > self.newest_ms:
            self.newest_ms = at_ms
            self._expire(at_ms - self.window_ms)
        when = created[:MAX_CREATED_CHARS] if type(created) is str else ""
        key = f"{hash_}|{when}"
        by_key = self._by_key
        if key in by_key:
            return by_key[key] != publish
        by_key[key] = publish
        self._order.append((at_ms, key))
        if len(self._order) > self.limit:
            del by_key[self._order.popleft()[1]]
        return False

    def _expire(self, before_ms: int) -> None:
        order = self._order
        while order and order[0][0] < before_ms:
            del self._by_key[order.popleft()[1]]


def publish_id(headers: list[tuple[str, bytes]] | None) -> bytes | None:
    """The ``socd-publish`` header of a message (None from a publisher without it),
    at most MAX_PUBLISH_BYTES of it."""
    if headers:
        for name, value in headers:
            if name == PUBLISH_HEADER:
                return value[:MAX_PUBLISH_BYTES] if type(value) is bytes else None
    return None
