"""What a worker read lately in one partition, to skip an intake's republished batch
(issue 18).

An intake that crashes after Kafka confirmed a batch and before its journal released it
publishes that batch again at restart (and its sink runner writes a batch again after a
partial failure). Kafka's idempotent producer deduplicates only its own retries within
one producer session, so the worker reads those events twice, and a plain count
threshold could count them twice.

``event.hash`` alone cannot tell a republication from a source that sent the same bytes
twice (two identical syslog lines in one second): one process counts both, so must the
cluster. The intake therefore marks each message with the id of the intake *run* that
published it (header ``socd-publish``, random per start: the sink runner merges and
splits batches into writes as it likes, so a per-write id would split identical records
of one run), and an event is a repeat when its ``event.hash`` and ``event.created`` (the
receive time, kept by the journal) were already read *from another run*. Copies are
counted per run: the n-th copy of an event from a run is a repeat only when some run
already brought n copies, so a run that died after publishing the first of two identical
records, and the next run that publishes both again from the journal, count two, as one
process does. A write retried within one run (a partial failure, the spool) is not
deduplicated: librdkafka retries inside a write until ``message.timeout.ms``, so this
takes an outage longer than that with part of a write delivered (docs/scaling.md).

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
# Writes remembered per event: a real event is republished by a handful of writes at most;
# forged headers could name thousands (the oldest is then forgotten).
MAX_WRITES_PER_EVENT = 8


class _Copies:
    """How many copies of one event were counted, and how many each write brought."""

    __slots__ = ("counted", "writes")

    def __init__(self, publish: bytes | None) -> None:
        self.counted = 1
        self.writes: dict[bytes | None, int] = {publish: 1}

    def repeated(self, publish: bytes | None) -> bool:
        """Whether this copy (the next one of ``publish``'s write) was counted already."""
        writes = self.writes
        copy = writes.get(publish, 0) + 1
        if copy == 1 and len(writes) >= MAX_WRITES_PER_EVENT:
            del writes[next(iter(writes))]
        writes[publish] = copy
        if copy > self.counted:
            self.counted = copy
            return False
        return True


class SeenEvents:
    """Events (hash, created) seen within ``window_ms`` of the newest message time, with
    the write that published each, oldest forgotten first; at most ``limit``."""

    __slots__ = ("_by_key", "_order", "limit", "newest_ms", "window_ms")

    def __init__(self, window_ms: int, limit: int = MAX_SEEN_PER_PARTITION) -> None:
        self.window_ms = window_ms
        self.limit = limit
        self.newest_ms = 0
        self._order: deque[tuple[int, str]] = deque()
        self._by_key: dict[str, _Copies] = {}

    def __len__(self) -> int:
        return len(self._by_key)

    def repeated(self, hash_: object, created: object, publish: bytes | None,
                 at_ms: int) -> bool:
        """True if this event was read within the window from another run; else
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
        entry = by_key.get(key)
        if entry is None:
            by_key[key] = _Copies(publish)
            self._order.append((at_ms, key))
            if len(self._order) > self.limit:
                del by_key[self._order.popleft()[1]]
            return False
        return entry.repeated(publish)

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
