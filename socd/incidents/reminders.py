"""Deadline reminders: the daemon's task that warns before each legal deadline.

For every incident whose notification or final report is not yet recorded as sent,
:class:`Reminders` finds the current *stage* of the deadline: ``before_<H>h`` once
``due - H hours`` has passed (the smallest such offset of
``incidents.reminder_offsets_hours``), ``overdue`` once ``due`` has passed. Each
stage of each due time is sent once per notifier: a successful send is recorded in
``incident_reminders`` and never repeated, a failed one is tried again at the next
check. Stages that were skipped (the incident was opened late, the daemon was down)
are not sent afterwards: only the latest one, so nobody gets three reminders at once.

A new due time (a corrected discovery or response end) starts its own reminders.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Final
from zoneinfo import ZoneInfo

import structlog
from prometheus_client import Counter, Gauge

from socd.config import IncidentsConfig
from socd.incidents.model import Deadline, Incident, iso
from socd.incidents.store import IncidentStore
from socd.metrics import REGISTRY
from socd.plugins import Notification, Notifier, NotifierFactory
from socd.tasks import stop_task

if TYPE_CHECKING:
    from socd.config import Config

log = structlog.get_logger("socd.incidents.reminders")

INCIDENTS_OPEN: Final = Gauge(
    "socd_incidents_open", "Incidents (sự cố) not closed; refreshed by the reminder task.",
    registry=REGISTRY)
INCIDENTS_OVERDUE: Final = Gauge(
    "socd_incidents_overdue", "Incidents past a legal deadline with its action not done, by "
    "deadline (notification: 5 days after discovery; final_report: 5 days after the "
    "response ends); refreshed by the reminder task.", ["deadline"], registry=REGISTRY)
REMINDERS_SENT: Final = Counter(
    "socd_incident_reminders_sent", "Deadline reminders sent, by deadline and result "
    "(ok, failed).", ["deadline", "result"], registry=REGISTRY)
for _d in Deadline:
    INCIDENTS_OVERDUE.labels(_d.value)
    for _r in ("ok", "failed"):
        REMINDERS_SENT.labels(_d.value, _r)

_TODO: Final[Mapping[Deadline, str]] = {
    Deadline.NOTIFICATION: "Gửi báo cáo ban đầu sự cố tới cơ quan chức năng, sau đó ghi nhận: "
                           "socd incident notified {id}",
    Deadline.FINAL_REPORT: "Gửi báo cáo kết thúc ứng cứu sự cố tới cơ quan chức năng, sau đó "
                           "ghi nhận: socd incident reported {id}",
}


def stage(due: datetime, now: datetime, offsets: list[float]) -> str | None:
    """``overdue`` from ``due`` on; before it the smallest offset whose window has
    started (``before_24h``); ``None`` when no reminder is due yet."""
    if now >= due:
        return "overdue"
    started = [h for h in offsets if now >= due - timedelta(hours=h)]
    return f"before_{_hours(min(started))}h" if started else None


def _hours(h: float) -> str:
    return str(int(h)) if float(h).is_integer() else str(h)


def _duration(delta: timedelta) -> str:
    minutes = int(abs(delta).total_seconds() // 60)
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    parts = [f"{days} ngày" if days else "", f"{hours} giờ" if hours else "",
             f"{mins} phút" if mins and not days else ""]
    return " ".join(p for p in parts if p) or "0 phút"


def local(dt: datetime, zone: str) -> str:
    return dt.astimezone(ZoneInfo(zone)).strftime("%H:%M ngày %d/%m/%Y")


def build_notification(incident: Incident, deadline: Deadline, which: str, due: datetime,
                       now: datetime, zone: str) -> Notification:
    """The Vietnamese reminder for one stage of one deadline."""
    from socd.severity import Severity

    overdue = which == "overdue"
    left = (f"ĐÃ QUÁ HẠN {_duration(now - due)}" if overdue
            else f"còn {_duration(due - now)}")
    title = (f"[{incident.id}] {'QUÁ HẠN' if overdue else 'Nhắc hạn'}: {deadline.label} "
             f"— {incident.title}")
    lines = [
        f"Sự cố: {incident.id} — {incident.title}",
        f"Hạn phải thực hiện: {deadline.label}",
        f"Thời hạn: {local(due, zone)} (giờ {zone})",
        f"Tình trạng: {left}",
        f"Việc cần làm: {_TODO[deadline].format(id=incident.id)}",
    ]
    if incident.serious:
        lines.append("Lưu ý: đây là sự cố nghiêm trọng (Quyết định 05/2017/QĐ-TTg): cần báo "
                     "cáo và đề nghị hỗ trợ ứng cứu.")
    if incident.assignee:
        lines.append(f"Người phụ trách: {incident.assignee}")
    try:
        severity = Severity(incident.severity or "high").label
    except ValueError:
        severity = incident.severity or Severity.HIGH.label
    return Notification(
        id=f"incident-reminder:{incident.id}:{deadline.value}:{which}:{iso(due)}",
        route="incidents", group_key=f"incident={incident.id}", severity=severity,
        title=title, text="\n".join(lines), html=None, alerts=[], total=0)


@dataclass(frozen=True, slots=True)
class Sent:
    incident_id: str
    deadline: Deadline
    stage: str
    notifier: str
    ok: bool


class Reminders:
    """Checks the deadlines every ``check_interval_secs`` and sends the reminders.

    ``clock`` returns the current time (aware); tests pass a controllable one.
    ``notifiers`` maps names to started :class:`~socd.plugins.Notifier` objects; the
    names in ``config.notifiers`` that are missing are logged and skipped.
    """

    def __init__(self, store: IncidentStore, config: IncidentsConfig,
                 notifiers: Mapping[str, Notifier], *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store = store
        self.config = config
        self.notifiers = dict(notifiers)
        self.clock = clock
        self._task: asyncio.Task[None] | None = None
        missing = [n for n in config.notifiers if n not in self.notifiers]
        if missing:
            log.error("incident reminder notifiers not configured", missing=missing)

    async def tick(self) -> list[Sent]:
        """One check: refresh the gauges, send every reminder that is due."""
        now = self.clock()
        incidents = await asyncio.to_thread(self.store.find, open_only=False)
        open_n, overdue = await asyncio.to_thread(self.store.counts, now)
        INCIDENTS_OPEN.set(open_n)
        for deadline, n in overdue.items():
            INCIDENTS_OVERDUE.labels(deadline).set(n)
        sent: list[Sent] = []
        targets = [n for n in self.config.notifiers if n in self.notifiers]
        if not targets:
            return sent
        for incident in incidents:
            for deadline in Deadline:
                due = incident.due(deadline)
                if due is None or incident.done_at(deadline) is not None:
                    continue
                which = stage(due, now, list(self.config.reminder_offsets_hours))
                if which is None:
                    continue
                for name in targets:
                    if await asyncio.to_thread(self.store.reminder_sent, incident.id,
                                               deadline.value, which, iso(due), name):
                        continue
                    ok = await self._send(name, build_notification(
                        incident, deadline, which, due, now, self.config.timezone))
                    if ok:
                        await asyncio.to_thread(self.store.mark_reminder, incident.id,
                                                deadline.value, which, iso(due), name, now)
                    sent.append(Sent(incident.id, deadline, which, name, ok))
        return sent

    async def _send(self, name: str, notification: Notification) -> bool:
        deadline = notification.id.split(":")[2]
        try:
            await self.notifiers[name].send(notification)
        except Exception as exc:  # any notifier failure: retried at the next check
            REMINDERS_SENT.labels(deadline, "failed").inc()
            log.warning("incident reminder not sent", notifier=name, id=notification.id,
                        error=str(exc))
            return False
        REMINDERS_SENT.labels(deadline, "ok").inc()
        log.info("incident reminder sent", notifier=name, id=notification.id)
        return True

    async def run(self) -> None:
        """Check until cancelled."""
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("incident deadline check failed")
            await asyncio.sleep(self.config.check_interval_secs)

    def start(self) -> asyncio.Task[None]:
        self._task = asyncio.create_task(self.run(), name="incident-reminders")
        return self._task

    async def stop(self) -> None:
        await stop_task(self._task)
        self._task = None


class ReminderService:
    """The daemon's side: the store, the notifier instances and the :class:`Reminders`
    task, built from the loaded config.

    It owns its notifier instances (separate from the notification core's), so a
    reload of the notification core never leaves it holding a closed notifier. On
    SIGHUP the daemon stops it and starts a new one from the new config.
    """

    def __init__(self, reminders: Reminders, store: IncidentStore,
                 own: Mapping[str, Notifier]) -> None:
        self.reminders = reminders
        self.store = store
        self._own = dict(own)

    @classmethod
    def from_config(cls, config: Config, notifier: NotifierFactory) -> ReminderService:
        """The service of a loaded config; ``notifier`` builds the notifiers that
        ``incidents.notifiers`` names (:func:`socd.app.components.notifier_factory`). An
        unknown name there is a configuration error."""
        from socd.config import resolve_path
        from socd.errors import ConfigError, ConfigProblem

        icfg = config.document.incidents
        missing = [n for n in icfg.notifiers if n not in config.notifiers]
        if missing:
            raise ConfigError([ConfigProblem(config.file, "incidents.notifiers",
                                             f"unknown notifier {', '.join(missing)}",
                                             "declare it under notifiers:")])
        own = {name: notifier(name) for name in icfg.notifiers}
        store = IncidentStore(resolve_path(config.state_dir, icfg.db_path))
        return cls(Reminders(store, icfg, own), store, own)

    async def start(self) -> None:
        for name, notifier in self._own.items():
            try:
                await notifier.start()
            except Exception as exc:  # the reminders retry; the daemon keeps running
                log.error("incident reminder notifier failed to start", notifier=name,
                          error=str(exc))
        self.reminders.start()

    async def stop(self) -> None:
        await self.reminders.stop()
        for name, notifier in self._own.items():
            try:
                await notifier.close()
            except Exception:
                log.exception("incident reminder notifier close failed", notifier=name)
        await asyncio.to_thread(self.store.close)
