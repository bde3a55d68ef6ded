"""The notification core: alerts in (as a sink), messages out (to notifiers).

The daemon feeds alerts to :class:`NotificationCore` through a normal
:class:`~socd.app.pipeline.SinkRunner`, so batching, back-pressure and
acknowledgement work as for any sink. Inside:

1. ``write`` routes each alert, drops an alert it already took (same ``event.hash``:
   a redelivery) and repeats (dedup within
   ``repeat_interval_secs``), holds alerts in quiet hours and stores the
   accepted ones as *pending* in the SQLite queue, in one transaction, before it
   returns: once ``write`` returned, the input may be acknowledged.
2. A flusher turns each group's pending alerts into one message when the group
   is due (``group_wait_secs`` after its first alert, then at most every
   ``group_interval_secs``; held alerts at the end of the quiet period) and
   writes one outbox row per notifier while deleting the pending rows, in one
   transaction.
3. One :class:`~socd.notify.sender.Sender` per notifier sends its outbox rows in
   order, rate-limited, with retries.

Every alert is counted once in ``socd_notification_alerts_total`` with the
outcome of its best route: ``routed`` if any route took it for sending,
else ``deferred_quiet`` if held for quiet hours, else ``deduplicated``; alerts
no route matches are ``unrouted``.

Shutdown sends nothing early: pending groups and unsent messages stay in the
file and are picked up by the next start (or by the new core after a reload).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import orjson
import structlog

from socd import metrics
from socd.config import NotificationsConfig, NotifierConfig, SinkConfig
from socd.errors import HealthCheckError, SinkError
from socd.event import Event
from socd.notify.queue import Batch, NotifyStore, PendingRow
from socd.notify.quiet import QuietHours
from socd.notify.render import Renderer
from socd.notify.routing import Route, Router, severity_of, severity_rank
from socd.notify.sender import Clock, Sender, SystemClock, notification_to_json
from socd.plugins import DeadLetterWriter, Notification, Notifier
from socd.severity import Severity

log = structlog.get_logger("socd.notify")

T = TypeVar("T")
RUNNER_NAME = "notifications"
GID_SEP = "\x1f"
MAX_WAIT_SECS = 60.0  # the flusher re-checks at least this often (clock jumps, GC)
_SEVERITIES = list(Severity)


def runner_config() -> SinkConfig:
    """How the daemon's SinkRunner batches alerts into the core."""
    return SinkConfig.model_validate({
        "type": "notifications", "select": "alerts", "batch_max_events": 1000,
        "flush_interval_secs": 0.5, "retry_max_backoff_secs": 30.0})


@dataclass(slots=True)
class Group:
    """In-memory state of one (route, group key); mirrors the ``groups`` table."""

    gid: str
    route: str
    group_key: str
    values: dict[str, str]
    notifiers: tuple[str, ...]
    last_flush: float | None = None
    repeated: int = 0
    ready: int = 0
    first_ready: float | None = None
    held: dict[float, int] = field(default_factory=dict)

    def due(self, wait: float, interval: float) -> float | None:
        """When this group's next message is due (None: nothing pending)."""
        due: float | None = None
        if self.ready and self.first_ready is not None:
            due = self.first_ready + wait
            if self.last_flush is not None:
                due = max(due, self.last_flush + interval)
        if self.held:
            release = min(self.held)
            due = release if due is None else min(due, release)
        return due


@dataclass(slots=True)
class _Plan:
    pending: list[PendingRow] = field(default_factory=list)
    dedup: dict[bytes, float] = field(default_factory=dict)
    groups: dict[str, list[Any]] = field(default_factory=dict)  # gid -> GroupRow fields
    ready: dict[str, tuple[int, float]] = field(default_factory=dict)  # gid -> (n, first)
    held: dict[str, Counter[float]] = field(default_factory=dict)
    outcomes: Counter[str] = field(default_factory=Counter)
    seen: list[str] = field(default_factory=list)  # event.hash of every alert taken


# Alert ids (event.hash) remembered to drop a repeated delivery of the same alert: a
# journal replay after a crash, or a batch a Kafka worker processes again itself (a
# repeat raised by another worker, after a crash, is not known here: docs/scaling.md,
# Delivery semantics). Bounded: the oldest are forgotten first.
SEEN_MAX = 65_536


def _alert_id(event: Event) -> str | None:
    ev = event.get("event")
    digest = ev.get("hash") if type(ev) is dict else None
    return digest if type(digest) is str and digest else None


class NotificationCore:
    """Routes, groups, deduplicates and queues alerts for the notifiers.

    Implements the :class:`~socd.plugins.Sink` protocol. ``clock`` is injectable
    so tests control time; :meth:`flush_due` can be called directly.
    """

    def __init__(self, config: NotificationsConfig, notifiers: Mapping[str, Notifier],
                 notifier_configs: Mapping[str, NotifierConfig], *, path: str,
                 dead_letter: DeadLetterWriter, templates_dir: str | None = None,
                 clock: Clock | None = None, run_tasks: bool = True,
                 console_url: str | None = None) -> None:
        self.name = RUNNER_NAME
        self.config = config
        self.path = path
        self.dead_letter = dead_letter
        self.clock: Clock = clock or SystemClock()
        self.run_tasks = run_tasks
        self.router = Router(config.routes, config.grouping)
        self.quiet = QuietHours(config.quiet_hours) if config.quiet_hours else None
        self.templates_dir = templates_dir
        self.console_url = console_url  # console.base_url: messages link to the alert
        self.renderer = Renderer(config.language, templates_dir, console_url)
        self.notifiers = dict(notifiers)
        self.notifier_configs = dict(notifier_configs)
        self.groups: dict[str, Group] = {}
        self.dedup: dict[bytes, float] = {}
        self.seen: OrderedDict[str, None] = OrderedDict()
        self.senders: dict[str, Sender] = {}
        self.store: NotifyStore | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._may_start = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self._last_gc = 0.0

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Open the queue, reload pending groups and the outbox, start the tasks."""
        self._may_start.set()
        async with self._lock:
            if self._closed:
                raise SinkError("notification core closed")
            if self.store is not None:
                return
            await self._open()

    async def _open(self) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="socd-notify-db")
        try:
            store = await self._db(NotifyStore, self.path)
        except Exception as exc:
            raise SinkError(f"notification queue {self.path}: {exc}") from exc
        try:
            snapshot = await self._db(store.load)
        except Exception as exc:
            await self._db(store.close)
            raise SinkError(f"notification queue {self.path}: {exc}") from exc
        self.store = store
        now = self.clock.time()
        for stored in snapshot.groups:
            self.groups[stored.gid] = Group(
                stored.gid, stored.route, stored.group_key, orjson.loads(stored.group_values),
                tuple(orjson.loads(stored.notifiers)), stored.last_flush, stored.repeated,
                stored.ready, stored.first_ready, dict(stored.held))
        self.dedup = {k: v for k, v in snapshot.dedup.items() if v > now}
        for name, notifier in self.notifiers.items():
            self.senders[name] = Sender(name, notifier, self.notifier_configs[name], self._db,
                                        store, self.dead_letter, self.clock)
        orphans: Counter[str] = Counter()
        by_notifier: dict[str, list[int]] = {}
        for row_id, name in snapshot.outbox:
            if name in self.senders:
                by_notifier.setdefault(name, []).append(row_id)
            else:
                orphans[name] += 1
        for name, ids in by_notifier.items():
            self.senders[name].enqueue(ids)
        if orphans:
            log.warning("queued messages for notifiers no longer configured are kept until "
                        "they are configured again", messages=dict(orphans), path=self.path)
        pending = sum(g.ready + sum(g.held.values()) for g in self.groups.values())
        log.info("notification queue open", path=self.path, pending_alerts=pending,
                 groups=len(self.groups), queued_messages=len(snapshot.outbox),
                 notifiers=list(self.senders), routes=[r.name for r in self.router.routes])
        if self.run_tasks:
            self._tasks.append(asyncio.create_task(self._flush_loop(), name="notify/flusher"))
            for name, sender in self.senders.items():
                self._tasks.append(asyncio.create_task(sender.run(), name=f"notify/{name}"))

    async def healthcheck(self) -> None:
        try:
            if self.store is None:
                store = await asyncio.to_thread(NotifyStore, self.path)
                await asyncio.to_thread(store.close)
            else:
                await self._db(self.store.ping)
        except Exception as exc:
            raise HealthCheckError(f"notification queue {self.path}: {exc}") from exc

    async def close(self) -> None:
        """Stop the tasks and notifiers; pending alerts and queued messages stay on disk."""
        if self._closed:
            return
        self._closed = True
        self._may_start.set()  # a write still waiting for start() fails instead of hanging
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for sender in self.senders.values():
            await sender.close()
        async with self._lock:
            if self.store is not None:
                await self._db(self.store.close)
                self.store = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def reload_templates(self) -> None:
        """Re-read the template files (SIGHUP when nothing else changed)."""
        self.renderer = Renderer(self.config.language, self.templates_dir, self.console_url)

    async def _db(self, fn: Callable[..., T], *args: Any) -> T:
        assert self._executor is not None
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, partial(fn, *args))

    # -- intake ----------------------------------------------------------------------

    async def write(self, events: Sequence[Event]) -> None:
        """Route and persist ``events``; returns once the accepted ones are on disk."""
        if self.store is None:
            await self._may_start.wait()  # a reload starts this core once the old one closed
            async with self._lock:
                if self.store is None:
                    if self._closed:
                        raise SinkError("notification core closed")
                    await self._open()
        async with self._lock:
            store = self.store
            if store is None:
                raise SinkError("notification core closed")
            now = self.clock.time()
            plan = self._plan(events, now)
            if plan.pending or plan.dedup or plan.groups:
                try:
                    await self._db(store.accept, plan.pending, list(plan.dedup.items()),
                                   [tuple(g) for g in plan.groups.values()])
                except Exception as exc:
                    raise SinkError(f"notification queue write failed: {exc}") from exc
            self._apply(plan)
        for outcome, count in plan.outcomes.items():
            metrics.NOTIFY_ALERTS.labels(outcome).inc(count)
        if plan.ready or plan.held:
            self._wake.set()

    def _plan(self, events: Sequence[Event], now: float) -> _Plan:
        plan = _Plan()
        quiet = self.quiet
        routes_for = self.router.routes_for
        dedup, new_dedup = self.dedup, plan.dedup
        seen, batch_seen = self.seen, set[str]()
        for event in events:
            digest = _alert_id(event)
            if digest is not None:
                if digest in seen or digest in batch_seen:
                    plan.outcomes["deduplicated"] += 1  # the same alert delivered again
                    continue
                batch_seen.add(digest)
                plan.seen.append(digest)
            routes = routes_for(event)
            if not routes:
                plan.outcomes["unrouted"] += 1
                continue
            blob = self._serialize(event)
            if blob is None:
                plan.outcomes["unrouted"] += 1  # dead-lettered as unserializable
                continue
            severity = severity_of(event)
            rank = severity_rank(severity)
            taken = held_any = False
            for route in routes:
                keyer = route.keyer
                group_key = keyer.group_key(event)
                gid = route.name + GID_SEP + group_key
                group = plan.groups.get(gid)
                if group is None:
                    group = plan.groups[gid] = self._group_row(gid, route, group_key, event)
                repeat = route.grouping.repeat_interval_secs
                if repeat > 0:
                    key = keyer.dedup_key(route.name, event)
                    expires = new_dedup.get(key) or dedup.get(key)
                    if expires is not None and expires > now:
                        group[5] += 1
                        continue
                    new_dedup[key] = now + repeat
                hold = quiet.holds(severity, now) if quiet is not None and route.quiet_hours \
                    else None
                plan.pending.append((gid, hold or 0.0, now, rank, blob))
                if hold:
                    plan.held.setdefault(gid, Counter())[hold] += 1
                    held_any = True
                else:
                    count, first = plan.ready.get(gid, (0, now))
                    plan.ready[gid] = (count + 1, first)
                    taken = True
            plan.outcomes["routed" if taken else "deferred_quiet" if held_any
                          else "deduplicated"] += 1
        return plan

    def _serialize(self, event: Event) -> bytes | None:
        try:
            return orjson.dumps(event, default=str, option=orjson.OPT_NON_STR_KEYS)
        except (TypeError, orjson.JSONEncodeError) as exc:
            # Nested too deep for JSON, say: one bad alert must not block the others.
            self.dead_letter.write(stage="notify", reason="unserializable",
                                   raw=repr(event)[:100_000].encode(), detail=str(exc))
            return None

    def _group_row(self, gid: str, route: Route, group_key: str, event: Event) -> list[Any]:
        existing = self.groups.get(gid)
        values = existing.values if existing else route.keyer.group_values(event)
        return [gid, route.name, group_key, orjson.dumps(values),
                orjson.dumps(list(route.notifiers)), 0]

    def _apply(self, plan: _Plan) -> None:
        """Mirror a committed plan in memory."""
        self.dedup.update(plan.dedup)
        seen = self.seen
        for digest in plan.seen:
            seen[digest] = None
        while len(seen) > SEEN_MAX:
            seen.popitem(last=False)
        for gid, row in plan.groups.items():
            group = self.groups.get(gid)
            if group is None:
                group = self.groups[gid] = Group(gid, row[1], row[2], orjson.loads(row[3]),
                                                 tuple(orjson.loads(row[4])))
            else:
                group.notifiers = tuple(orjson.loads(row[4]))
            group.repeated += row[5]
            ready = plan.ready.get(gid)
            if ready is not None:
                if not group.ready:
                    group.first_ready = ready[1]
                group.ready += ready[0]
            for release, count in plan.held.get(gid, {}).items():
                group.held[release] = group.held.get(release, 0) + count

    # -- flushing --------------------------------------------------------------------

    def _grouping(self, group: Group) -> tuple[float, float, int]:
        route = self.router.by_name.get(group.route)
        grouping = route.grouping if route is not None else self.config.grouping
        return (grouping.group_wait_secs, grouping.group_interval_secs,
                grouping.digest_max_alerts)

    def next_due(self) -> float | None:
        due: float | None = None
        for group in self.groups.values():
            wait, interval, _ = self._grouping(group)
            when = group.due(wait, interval)
            if when is not None and (due is None or when < due):
                due = when
        return due

    async def flush_due(self, now: float | None = None) -> int:
        """Turn every group due at ``now`` into outbox rows; returns the messages queued."""
        async with self._lock:
            store = self.store
            if store is None:
                return 0
            now = self.clock.time() if now is None else now
            due: list[tuple[Group, int]] = []
            for group in self.groups.values():
                wait, interval, limit = self._grouping(group)
                when = group.due(wait, interval)
                if when is not None and when <= now:
                    due.append((group, limit))
            if not due:
                return 0
            jobs = [(g.gid, g.route, g.group_key, g.values, g.repeated,
                     self._targets(g), limit) for g, limit in due]
            renderer = self.renderer
            result = await self._db(self._flush_sync, store, renderer, jobs, now)
            queued: dict[str, list[int]] = {}
            for (group, _), sent in zip(due, result, strict=True):
                group.ready = 0
                group.first_ready = None
                group.held = {t: c for t, c in group.held.items() if t > now}
                group.last_flush = now
                group.repeated = 0
                for name, row_id in sent:
                    queued.setdefault(name, []).append(row_id)
            for name, row_ids in queued.items():
                self.senders[name].enqueue(row_ids)
            return sum(len(ids) for ids in queued.values())

    def _targets(self, group: Group) -> tuple[str, ...]:
        route = self.router.by_name.get(group.route)
        names = route.notifiers if route is not None else group.notifiers
        return tuple(n for n in names if n in self.senders)

    def _flush_sync(self, store: NotifyStore, renderer: Renderer,
                    jobs: list[tuple[str, str, str, dict[str, str], int, tuple[str, ...], int]],
                    now: float) -> list[list[tuple[str, int]]]:
        """Render and queue the due groups in one transaction (runs on the DB thread)."""
        taken: list[tuple[str, float, int]] = []
        outbox: list[tuple[str, bytes]] = []
        owners: list[int] = []
        for index, (gid, route, group_key, values, repeated, targets, limit) in enumerate(jobs):
            batch = store.take(gid, now, limit)
            if batch is None:
                continue
            if not targets:
                # The route and its notifiers are gone (reload): keep the alerts visible.
                for raw in store.drop_pending(gid, now):
                    self.dead_letter.write(stage="notify", reason="no_notifier", raw=raw,
                                           detail=f"route {route!r} has no configured notifier")
                continue
            notification = self._notification(renderer, batch, gid, route, group_key, values,
                                               repeated, now)
            payload = notification_to_json(notification)
            taken.append((gid, now, batch.max_id))
            for name in targets:
                outbox.append((name, payload))
                owners.append(index)
        ids = store.flush(taken, outbox, now) if taken else []
        result: list[list[tuple[str, int]]] = [[] for _ in jobs]
        for index, (name, _), row_id in zip(owners, outbox, ids, strict=True):
            result[index].append((name, row_id))
        return result

    @staticmethod
    def _notification(renderer: Renderer, batch: Batch, gid: str, route: str, group_key: str,
                      values: dict[str, str], repeated: int, now: float) -> Notification:
        events = [orjson.loads(raw) for raw in batch.events]
        try:
            title, text, html = renderer.render(events, total=batch.total, route=route,
                                                group=values, group_key=group_key,
                                                repeated=repeated, after_quiet=batch.held)
        except Exception as exc:  # a bug or odd data: never keep a group from going out
            log.exception("notification rendering failed; sending a plain message",
                          route=route, group_key=group_key)
            title = f"[socd] {batch.total} alert(s) — {group_key or route}"
            text = f"{title}\n(rendering failed: {type(exc).__name__})"
            html = None
        hashes = [str((e.get("event") or {}).get("hash", "")) for e in events]
        digest = hashlib.sha256("\x1f".join(
            [gid, hashes[0], hashes[-1], str(batch.total), str(batch.max_id)]).encode())
        severity = _SEVERITIES[max(0, min(batch.severity, len(_SEVERITIES) - 1))]
        return Notification(id=digest.hexdigest()[:32], route=route, group_key=group_key,
                            severity=severity.label, title=title, text=text, html=html,
                            alerts=events, total=batch.total, created=now)

    async def _flush_loop(self) -> None:
        while True:
            # Cleared before looking at the groups: a write that lands while this loop
            # is busy sets it again, and the wait below returns at once.
            self._wake.clear()
            now = self.clock.time()
            if now - self._last_gc >= MAX_WAIT_SECS:
                await self._gc(now)
            due = self.next_due()
            if due is not None and due <= now:
                try:
                    await self.flush_due(now)
                except Exception:
                    # Disk full, a locked file...: keep everything pending and try again.
                    log.exception("notification flush failed; retrying", path=self.path)
                    metrics.ERRORS.labels("notify", "flush_error").inc()
                    await self.clock.sleep(5.0)
                continue
            timeout = MAX_WAIT_SECS if due is None else min(MAX_WAIT_SECS, due - now)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.01, timeout))

    async def _gc(self, now: float) -> None:
        """Forget expired dedup keys and groups idle for longer than their intervals."""
        self._last_gc = now
        async with self._lock:
            if self.store is None:
                return
            idle = []
            for group in self.groups.values():
                if group.ready or group.held:
                    continue
                route = self.router.by_name.get(group.route)
                grouping = route.grouping if route is not None else self.config.grouping
                keep = max(grouping.group_interval_secs, grouping.repeat_interval_secs)
                if (group.last_flush or 0.0) + keep <= now:
                    idle.append(group.gid)
            try:
                await self._db(self.store.gc, now, idle)
            except Exception as exc:
                log.warning("notification queue cleanup failed", error=str(exc))
                return
            for gid in idle:
                self.groups.pop(gid, None)
            self.dedup = {k: v for k, v in self.dedup.items() if v > now}


def queue_path(state_dir: str, config: NotificationsConfig) -> str:
    expanded = os.path.expanduser(config.queue_path)
    return expanded if os.path.isabs(expanded) else os.path.join(state_dir, expanded)
