"""Per-notifier send loops: rate limit, timeout, retry with backoff, dead letters.

Each notifier has one :class:`Sender` that takes its outbox rows strictly in
order. A message that fails with a retryable error stays at the head of the
queue and is tried again after an exponential backoff with jitter (capped at
``retry_max_backoff_secs``; a ``retry_after`` from the channel is honoured up
to that cap), so later messages wait and the order is kept. A message the
channel refuses for good, or one that used up ``max_attempts``, is written to
the dead-letter file with its JSON and removed from the queue.

A row is deleted only after the channel accepted it: a crash during a send
means the message is sent again after the restart, with the same
``Notification.id`` so receivers can drop the duplicate.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import fields
from typing import Any, Protocol, TypeVar

import orjson
import structlog

from socd import metrics
from socd.config import NotifierConfig
from socd.errors import NotifyError
from socd.notify.queue import NotifyStore
from socd.plugins import DeadLetterWriter, Notification, Notifier
from socd.retry import backoff

log = structlog.get_logger("socd.notify.sender")

T = TypeVar("T")
START_TIMEOUT_SECS = 30.0


class Clock(Protocol):
    """Wall time and sleeping, injectable so tests control time."""

    def time(self) -> float: ...

    async def sleep(self, secs: float) -> None: ...


class SystemClock:
    def time(self) -> float:
        return time.time()

    async def sleep(self, secs: float) -> None:
        await asyncio.sleep(secs)


Db = Callable[..., Awaitable[Any]]

_NOTIFICATION_FIELDS = frozenset(f.name for f in fields(Notification))


def notification_to_json(n: Notification) -> bytes:
    return orjson.dumps({f: getattr(n, f) for f in _NOTIFICATION_FIELDS}, default=str)


def notification_from_json(data: bytes) -> Notification:
    obj = orjson.loads(data)
    return Notification(**{k: v for k, v in obj.items() if k in _NOTIFICATION_FIELDS})


class TokenBucket:
    """``rate_per_minute`` tokens a minute; bursts up to ten seconds' worth (at least one)."""

    def __init__(self, rate_per_minute: int, clock: Clock) -> None:
        self.rate = rate_per_minute / 60.0
        self.capacity = max(1.0, float(math.ceil(rate_per_minute / 6)))
        self.clock = clock
        self.tokens = self.capacity
        self.updated = clock.time()

    def _refill(self) -> None:
        now = self.clock.time()
        if now > self.updated:
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def wait_time(self) -> float:
        """Seconds until a token is available (0 when one is)."""
        self._refill()
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate

    def take(self) -> None:
        self._refill()
        self.tokens -= 1.0


class Sender:
    """Sends one notifier's outbox rows in order (see the module docstring)."""

    def __init__(self, name: str, notifier: Notifier, config: NotifierConfig, db: Db,
                 store: NotifyStore, dead_letter: DeadLetterWriter, clock: Clock) -> None:
        self.name = name
        self.notifier = notifier
        self.config = config
        self.db = db
        self.store = store
        self.dead_letter = dead_letter
        self.clock = clock
        self.queue: deque[int] = deque()
        self.bucket = TokenBucket(config.rate_limit_per_minute, clock)
        self.started = False
        self.up: bool | None = None
        self._throttled: set[int] = set()
        self._wake = asyncio.Event()
        metrics.init_notifier(name)

    def enqueue(self, row_ids: list[int]) -> None:
        self.queue.extend(row_ids)
        metrics.NOTIFY_QUEUE.labels(self.name).set(len(self.queue))
        self._wake.set()

    async def run(self) -> None:
        await self._start_notifier(check=True)
        while True:
            if not self.queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            await self.step()

    async def _start_notifier(self, *, check: bool = False) -> bool:
        if not self.started:
            try:
                await asyncio.wait_for(self.notifier.start(), START_TIMEOUT_SECS)
            except Exception as exc:
                log.warning("notifier failed to start; will retry before the next send",
                            notifier=self.name, error=f"{type(exc).__name__}: {exc}")
                self._set_up(False)
                return False
            self.started = True
        if check:
            try:
                await asyncio.wait_for(self.notifier.healthcheck(), self.config.timeout_secs)
            except Exception as exc:
                log.warning("notifier health check failed at start; sends will retry",
                            notifier=self.name, error=f"{type(exc).__name__}: {exc}")
            else:
                self._set_up(True)
        return True

    async def step(self) -> None:
        """Try the message at the head of the queue once (or wait for the rate limit)."""
        row_id = self.queue[0]
        wait = self.bucket.wait_time()
        if wait > 0:
            if row_id not in self._throttled:
                self._throttled.add(row_id)
                metrics.NOTIFICATIONS_THROTTLED.labels(self.name).inc()
            await self.clock.sleep(wait)
            return
        row = await self.db(self.store.outbox_get, row_id)
        if row is None:  # already gone (cannot happen in one process; be safe)
            self._pop(row_id)
            return
        payload, attempts = row
        self.bucket.take()
        error: str | None
        try:
            notification = notification_from_json(payload)
        except Exception as exc:
            error, retryable, retry_after = f"unreadable queued message: {exc}", False, None
        else:
            error, retryable, retry_after = await self._send(notification)
        if error is None:
            await self.db(self.store.outbox_delete, row_id)
            self._pop(row_id)
            metrics.NOTIFICATIONS_SENT.labels(self.name).inc()
            if notification.total > 1:
                metrics.NOTIFICATIONS_GROUPED.labels(self.name).inc(notification.total - 1)
            self._set_up(True)
            return
        attempts += 1
        self._set_up(False)
        limit = self.config.max_attempts
        if not retryable or (limit and attempts >= limit):
            detail = f"attempts={attempts}: {error}"
            if not retryable:
                self.dead_letter.write(stage=f"notify/{self.name}", reason="rejected",
                                       raw=payload, detail=detail)
            else:
                self.dead_letter.write(stage=f"notify/{self.name}", reason="max_attempts",
                                       raw=payload, detail=detail)
            metrics.NOTIFICATIONS_FAILED.labels(self.name, "dead_letter").inc()
            await self.db(self.store.outbox_delete, row_id)
            self._pop(row_id)
            return
        metrics.NOTIFICATIONS_FAILED.labels(self.name, "retry").inc()
        await self.db(self.store.outbox_attempts, row_id, attempts)
        # 1 s after the first failure, doubling, with jitter; at least Retry-After.
        delay = backoff(attempts, self.config.retry_max_backoff_secs, retry_after)
        log.warning("notification not sent; retrying", notifier=self.name, error=error,
                    attempt=attempts, retry_in_secs=round(delay, 2), queued=len(self.queue))
        await self.clock.sleep(delay)

    async def _send(self, notification: Notification) -> tuple[str | None, bool, float | None]:
        """Send once: (error or None, retryable, retry_after)."""
        if not self.started and not await self._start_notifier():
            return "notifier not started", True, None
        try:
            await asyncio.wait_for(self.notifier.send(notification), self.config.timeout_secs)
        except NotifyError as exc:
            return str(exc) or type(exc).__name__, exc.retryable, exc.retry_after
        except TimeoutError:
            return f"timed out after {self.config.timeout_secs}s", True, None
        except Exception as exc:
            log.exception("notifier raised unexpectedly; retrying", notifier=self.name)
            metrics.ERRORS.labels(f"notify/{self.name}", type(exc).__name__).inc()
            return f"{type(exc).__name__}: {exc}", True, None
        return None, True, None

    def _pop(self, row_id: int) -> None:
        if self.queue and self.queue[0] == row_id:
            self.queue.popleft()
        self._throttled.discard(row_id)
        metrics.NOTIFY_QUEUE.labels(self.name).set(len(self.queue))

    def _set_up(self, up: bool) -> None:
        if up != self.up:
            self.up = up
            metrics.COMPONENT_UP.labels("notifier", self.name).set(1 if up else 0)

    async def close(self) -> None:
        if self.started:
            try:
                await asyncio.wait_for(self.notifier.close(), 10)
            except Exception as exc:
                log.warning("notifier close failed", notifier=self.name, error=str(exc))
            self.started = False

