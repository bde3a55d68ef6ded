"""Which consumed offsets may be committed: those of records already stored.

A consumer commits the offset after a record only once the record is journaled (or,
without the intake journal, stored by every sink). Batches can finish out of order
(acknowledgements come from the sinks), so :class:`OffsetLedger` keeps them in
consume order and releases a batch's offsets only once it and every older batch are
done: the committed offset of a partition never passes a record that is not stored.
That makes delivery at-least-once: after a crash or a rebalance the next owner reads
again from the last commit, and what was stored after it is delivered twice.

The ledger is used from the event loop (acknowledgements) and from the consumer's
thread (commits, rebalance callbacks), hence the lock.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Mapping

TopicPartition = tuple[str, int]


class Batch:
    """Offsets (next record to read, per partition) of one consumed batch, and how many
    parts of it are still to be stored."""

    __slots__ = ("offsets", "remaining")

    def __init__(self, offsets: Mapping[TopicPartition, int], parts: int) -> None:
        self.offsets = dict(offsets)
        self.remaining = parts


class OffsetLedger:
    """Consumed batches in order, and the offsets that are ready to commit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: deque[Batch] = deque()
        self._ready: dict[TopicPartition, int] = {}

    def add(self, offsets: Mapping[TopicPartition, int], parts: int = 1) -> Batch:
        """Record a consumed batch handed on in ``parts`` pieces (0: nothing to store,
        e.g. all dead-lettered: it is done at once)."""
        batch = Batch(offsets, parts)
        with self._lock:
            self._pending.append(batch)
            self._release()
        return batch

    def done(self, batch: Batch) -> None:
        """One part of ``batch`` is stored."""
        with self._lock:
            batch.remaining -= 1
            self._release()

    def _release(self) -> None:
        while self._pending and self._pending[0].remaining <= 0:
            for tp, offset in self._pending.popleft().offsets.items():
                if offset > self._ready.get(tp, -1):
                    self._ready[tp] = offset

    def take(self, partitions: Iterable[TopicPartition] | None = None,
             ) -> dict[TopicPartition, int]:
        """The ready offsets (of ``partitions`` only, when given), removed from the
        ledger: the caller commits them."""
        with self._lock:
            if partitions is None:
                ready, self._ready = self._ready, {}
                return ready
            return {tp: self._ready.pop(tp) for tp in set(partitions) if tp in self._ready}

    def drop(self, partitions: Iterable[TopicPartition]) -> None:
        """Forget ``partitions`` (revoked or lost): their offsets must not be committed by
        this member any more; the new owner reads again from the last commit."""
        gone = set(partitions)
        with self._lock:
            for tp in gone:
                self._ready.pop(tp, None)
            for batch in self._pending:
                for tp in gone:
                    batch.offsets.pop(tp, None)

    @property
    def pending(self) -> int:
        """Batches handed on and not yet stored."""
        with self._lock:
            return len(self._pending)
