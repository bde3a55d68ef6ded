"""Scheduled reports in the daemon: weekly on Monday 07:00, monthly on the 1st, ...

:class:`ReportsConfig` is the ``reports:`` section of the config. When it is enabled,
:class:`ReportScheduler` wakes at each schedule's due time (local time of
``timezone``), builds the report of the period that just ended (the last full
week/month/half-year before the due time), writes every configured format to
``<state_dir>/<out_dir>/<slug>.<format>`` (atomically: temporary file, then rename)
and sends one notification per configured notifier: the title is the report's title,
the text its summary and the HTML body the HTML report itself (e-mail notifiers send
it as the message).

Guarantees:

* A report is generated once per period: the slugs already generated are kept in
  ``<out_dir>/.generated.json``; a restart does not send it again.
* A due time missed while the daemon was down is caught up at start if it is at most
  ``catch_up_hours`` old (default 24 h); older ones are skipped (logged).
* Building and rendering run in a worker thread: the event loop (and so the pipeline)
  never waits for matplotlib or WeasyPrint.
* A failed format (WeasyPrint missing, say) is logged and counted; the other formats
  are still written and sent. A failed notifier is retried three times, then logged.
* Time comes from an injectable :class:`Clock`, so tests run the schedule with a fake
  clock and no sleeping.

Metrics: ``socd_reports_total{kind,result}`` (result ``ok``, ``failed``,
``notify_failed``) and ``socd_report_last_success_timestamp_seconds{kind}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Protocol

import structlog
from prometheus_client import Counter, Gauge

from socd import metrics
from socd.config.reports import ReportsConfig, ScheduleConfig, parse_at
from socd.filemode import open_private
from socd.plugins import Notifier, NotifierFactory
from socd.reports.periods import Kind, Period, default_period
from socd.reports.vn import local_zone

if TYPE_CHECKING:
    from socd.config import Config
    from socd.reports.data import AlertBackend, ReportData
    from socd.reports.sources import SideSources

log = structlog.get_logger("socd.reports.schedule")

REPORTS = Counter("socd_reports_total", "Scheduled reports by kind and result (ok, failed, "
                  "notify_failed).", ["kind", "result"], registry=metrics.REGISTRY)
REPORT_LAST_SUCCESS = Gauge("socd_report_last_success_timestamp_seconds",
                            "When a scheduled report of this kind was last generated.",
                            ["kind"], registry=metrics.REGISTRY)

def _occurrences(kind: str, at: str | None, around: datetime, zone: tzinfo) -> list[datetime]:
    """Due times near ``around`` (a few before and after), local and aware."""
    day, hour, minute = parse_at(kind, at)
    local = around.astimezone(zone)
    out: list[datetime] = []
    if kind == "weekly":
        monday = (local - timedelta(days=local.weekday())).date()
        for w in range(-2, 3):
            d = monday + timedelta(days=7 * w + day)
            out.append(datetime(d.year, d.month, d.day, hour, minute, tzinfo=zone))
    else:
        months = (1, 7) if kind == "semiannual" else tuple(range(1, 13))
        for year in (local.year - 1, local.year, local.year + 1):
            for month in months:
                out.append(datetime(year, month, day, hour, minute, tzinfo=zone))
    return sorted(out)


def next_due(kind: str, at: str | None, after: datetime, zone: tzinfo) -> datetime:
    """The first due time strictly after ``after``."""
    return next(t for t in _occurrences(kind, at, after, zone) if t > after)


def last_due(kind: str, at: str | None, now: datetime, zone: tzinfo) -> datetime:
    """The latest due time at or before ``now``."""
    return [t for t in _occurrences(kind, at, now, zone) if t <= now][-1]


_MIME = {"pdf": "application/pdf",
         "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
         "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document"}


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@dataclass(slots=True)
class Generated:
    """One scheduled run: the files written and what failed."""

    kind: str
    slug: str
    title: str
    files: dict[str, str] = field(default_factory=dict)  # format -> path
    failed: dict[str, str] = field(default_factory=dict)  # format or notifier -> error
    sent: list[str] = field(default_factory=list)  # notifiers that accepted it


class ReportScheduler:
    """Runs the schedules of a :class:`ReportsConfig` until cancelled."""

    SEND_ATTEMPTS = 3
    MAX_SLEEP = 3600.0  # wake at least hourly: the wall clock may jump (suspend, NTP)

    def __init__(self, config: ReportsConfig, *, state_dir: str,
                 backend_factory: Callable[[], AlertBackend], sides: SideSources | None = None,
                 notifiers: Mapping[str, Notifier] | None = None, clock: Clock | None = None,
                 render: Callable[[ReportData, str], bytes] | None = None) -> None:
        from socd.config import resolve_path

        self.config = config
        self.zone = local_zone(config.timezone)
        self.out_dir = resolve_path(state_dir, config.out_dir)
        self.backend_factory = backend_factory
        self.sides = sides
        self.notifiers = dict(notifiers or {})
        self.clock = clock or SystemClock()
        self._render = render
        self._state_file = os.path.join(self.out_dir, ".generated.json")
        self.history: list[Generated] = []
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_config(cls, cfg: Config, notifier: NotifierFactory, *, clock: Clock | None = None
                    ) -> ReportScheduler | None:
        """The scheduler of a loaded socd config, or None when reports are not enabled;
        ``notifier`` builds the notifiers that ``reports.notifiers`` names
        (:func:`socd.app.components.notifier_factory`). Raises
        :class:`~socd.errors.ConfigError` for an unknown notifier name."""
        from socd.errors import ConfigError, ConfigProblem
        from socd.reports.data import backend_for
        from socd.reports.sources import SideSources

        config = cfg.document.reports
        if not config.enabled or not config.schedules:
            return None
        unknown = [n for n in config.notifiers if n not in cfg.notifiers]
        if unknown:
            raise ConfigError([ConfigProblem(cfg.file, "reports.notifiers",
                                             f"unknown notifier {n!r}") for n in unknown])
        notifiers = {n: notifier(n) for n in config.notifiers}
        documents = cfg.document.documents

        def render(data: ReportData, fmt: str) -> bytes:
            # The official layout's fixed parts from `documents:` (the number is left
            # blank for the clerk: a scheduled report is not yet registered).
            from socd.reports.render import render as render_format

            return render_format(data, fmt, documents=documents)

        return cls(config, state_dir=cfg.state_dir,
                   backend_factory=lambda: backend_for(cfg, config.source),
                   sides=SideSources.from_config(cfg), notifiers=notifiers, clock=clock,
                   render=render)

    # -- the daemon's background-service interface ------------------------------------------

    async def start(self) -> None:
        """Run the schedules in a task (the daemon calls this at start and reload)."""
        if self._task is None:
            self._task = asyncio.create_task(run_scheduler(self), name="reports")

    async def stop(self) -> None:
        """Cancel the task; a report being built is abandoned (its files are written
        atomically, so none is left half-written) and made at the next start if its
        due time is within ``catch_up_hours``."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    # -- state ---------------------------------------------------------------------------

    def _done(self) -> set[str]:
        try:
            with open(self._state_file, encoding="utf-8") as fh:
                return set(json.load(fh).get("generated", []))
        except (OSError, ValueError, AttributeError):
            return set()

    def _mark_done(self, slug: str) -> None:
        done = sorted(self._done() | {slug})[-500:]
        tmp = self._state_file + ".tmp"
        with open_private(tmp, append=False) as fh:  # 0640 in a 0750 folder, any umask
            fh.write(json.dumps({"generated": done}).encode())
        os.replace(tmp, self._state_file)

    # -- the loop ------------------------------------------------------------------------

    def period_for_due(self, kind: Kind, due: datetime) -> Period:
        """The last full week/month/half-year before the due time's day."""
        return default_period(kind, due, self.config.timezone)

    def pending(self, since: datetime, now: datetime) -> list[tuple[ScheduleConfig, Period]]:
        """Schedules with a due time in ``(since, now]`` whose period is not generated."""
        done = self._done()
        out = []
        for schedule in self.config.schedules:
            due = last_due(schedule.kind, schedule.at, now, self.zone)
            if due <= since:
                continue
            period = self.period_for_due(schedule.kind, due)
            if period.slug not in done:
                out.append((schedule, period))
        return out

    def next_wake(self, now: datetime) -> datetime:
        return min(next_due(s.kind, s.at, now, self.zone) for s in self.config.schedules)

    async def run(self) -> None:
        """Until cancelled: catch up, then sleep to each due time and generate."""
        now = self.clock.now()
        since = now - timedelta(hours=self.config.catch_up_hours)
        for schedule, period in self.pending(since, now):
            await self.generate(schedule.kind, period)
        while True:
            wake = self.next_wake(now)
            log.debug("next scheduled report", at=wake.isoformat())
            while (delay := (wake - self.clock.now()).total_seconds()) > 0:
                await self.clock.sleep(min(delay, self.MAX_SLEEP))
            since, now = now, self.clock.now()
            for schedule, period in self.pending(since, now):
                await self.generate(schedule.kind, period)

    async def generate(self, kind: str, period: Period) -> Generated:
        """Build, write and send one report (never raises for a failed format/notifier)."""
        result = Generated(kind, period.slug, period.title)
        try:
            data, bodies, files, errors = await asyncio.to_thread(self._build, period)
        except Exception as exc:
            log.error("scheduled report failed", kind=kind, period=period.slug, error=str(exc))
            REPORTS.labels(kind, "failed").inc()
            result.failed["build"] = str(exc)
            self.history.append(result)
            return result
        result.title = data.title
        result.failed.update(errors)
        result.files.update(files)
        html = bodies.get("html")
        if html is None and self.notifiers:
            with contextlib.suppress(Exception):
                html = await asyncio.to_thread(self._render_one, data, "html")
        await self._send(data, html.decode("utf-8") if html else None, result, bodies)
        if not bodies:
            REPORTS.labels(kind, "failed").inc()
        else:
            self._mark_done(period.slug)
            REPORT_LAST_SUCCESS.labels(kind).set(self.clock.now().timestamp())
            REPORTS.labels(kind, "notify_failed" if any(
                n in result.failed for n in self.notifiers) else "ok").inc()
        log.info("scheduled report generated", kind=kind, period=period.slug,
                 files=list(result.files.values()), sent=result.sent,
                 failed=sorted(result.failed))
        self.history.append(result)
        return result

    def _render_one(self, data: ReportData, fmt: str) -> bytes:
        if self._render is not None:
            return self._render(data, fmt)
        from socd.reports.render import render

        return render(data, fmt)

    def _build(self, period: Period
               ) -> tuple[ReportData, dict[str, bytes], dict[str, str], dict[str, str]]:
        from socd.reports.data import build_report

        backend = self.backend_factory()
        try:
            data = build_report(backend, period, unit=self.config.unit, sides=self.sides,
                                now=self.clock.now())
        finally:
            backend.close()
        bodies: dict[str, bytes] = {}
        errors: dict[str, str] = {}
        for fmt in self.config.formats:
            try:
                bodies[fmt] = self._render_one(data, fmt)
            except Exception as exc:
                log.error("report format failed", format=fmt, period=period.slug,
                          error=str(exc))
                errors[fmt] = str(exc)
        files: dict[str, str] = {}
        for name, body in bodies.items():
            path = os.path.join(self.out_dir, f"{period.slug}.{name}")
            with open_private(path + ".tmp", append=False) as fh:  # reports are not public
                fh.write(body)
            os.replace(path + ".tmp", path)
            files[name] = path
        return data, bodies, files, errors

    async def _send(self, data: ReportData, html: str | None, result: Generated,
                    bodies: Mapping[str, bytes] | None = None) -> None:
        from socd.errors import NotifyError
        from socd.plugins import Notification

        attachments = [(f"{data.period.slug}.{fmt}", _MIME[fmt], body)
                       for fmt, body in (bodies or {}).items() if fmt in _MIME]
        notification = Notification(
            id=f"report-{data.period.slug}" + (f"-{data.unit}" if data.unit else ""),
            route="reports", group_key=f"report={data.period.slug}", severity="",
            title=data.title, text=data.summary_text(), html=html, alerts=[],
            total=data.total, attachments=attachments)
        for name, notifier in self.notifiers.items():
            for attempt in range(1, self.SEND_ATTEMPTS + 1):
                try:
                    await notifier.start()
                    try:
                        await notifier.send(notification)
                    finally:
                        await notifier.close()
                except Exception as exc:
                    retry = isinstance(exc, NotifyError) and exc.retryable
                    if retry and attempt < self.SEND_ATTEMPTS:
                        await self.clock.sleep(30.0 * attempt)
                        continue
                    log.error("scheduled report not sent", notifier=name, error=str(exc))
                    result.failed[name] = str(exc)
                    break
                result.sent.append(name)
                break


async def run_scheduler(scheduler: ReportScheduler) -> None:
    """The daemon's task body: run until cancelled, log anything unexpected."""
    try:
        await scheduler.run()
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("report scheduler stopped")


def due_times(config: ReportsConfig, start: datetime, count: int) -> Sequence[datetime]:
    """The next ``count`` due times after ``start`` (for docs and `socd report`)."""
    zone = local_zone(config.timezone)
    out: list[datetime] = []
    now = start
    for _ in range(count):
        now = min(next_due(s.kind, s.at, now, zone) for s in config.schedules)
        out.append(now)
    return out
