"""Incidents: the list with the Circular 20 deadlines, and one incident's page.

The list shows each incident's two deadlines (initial notification 5 days after
discovery, final report 5 days after the response ended) as a countdown, or as done on
time / late, or overdue. The incident page adds the timeline (opened, discovered,
alerts, actions by layer, notified, response ended, reported, closed), the impacts and
the serious-incident check (Decision 05/2017: a level 4-5 or nationally critical system,
one of the impacts, and beyond the owner's capacity), and its documents in every
format. Every change goes through :class:`socd.incidents.store.IncidentStore`, which
audits it with the user.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from aiohttp import web

from socd.console.auth import requires
from socd.console.csrf import read_form
from socd.console.render import render, url_for
from socd.console.roles import Role
from socd.console.services import NotConfigured
from socd.console.views.common import field, me, off_loop, services
from socd.incidents.model import IMPACT_LABELS, Deadline, Impact, Incident, parse
from socd.incidents.store import IncidentError, IncidentNotFound, normalize_id
from socd.sqlite import NoDatabase

LIST_LIMIT: Final = 500
_KINDS: Final = ("notification", "final")


def setup(app: web.Application) -> None:
    app.router.add_get("/incidents", incident_list, name="incidents")
    app.router.add_get("/incidents/{id}", incident_page, name="incident")
    app.router.add_post("/incidents/{id}/change", incident_change, name="incident_change")
    app.router.add_get("/incidents/{id}/documents/{kind}.{fmt}", document,
                       name="incident_document")


def countdown(incident: Incident, deadline: Deadline, now: datetime) -> dict[str, Any]:
    """One deadline as the page shows it: state (``pending``, ``overdue``, ``on_time``,
    ``late``, ``not_started``), due time, and whole hours left or overdue."""
    due = incident.due(deadline)
    state = incident.compliance(deadline, now)
    hours = None
    if due is not None and state in ("pending", "overdue"):
        hours = int(abs((due - now).total_seconds()) // 3600)
    return {"state": state, "due": due.isoformat() if due else None, "hours": hours,
            "days": None if hours is None else hours // 24,
            "rest_hours": None if hours is None else hours % 24,
            "done": incident.done_at(deadline)}


def _row(incident: Incident, now: datetime) -> dict[str, Any]:
    return {"incident": incident,
            "notify": countdown(incident, Deadline.NOTIFICATION, now),
            "report": countdown(incident, Deadline.FINAL_REPORT, now),
            "overdue": bool(incident.overdue(now))}


def _open_store(request: web.Request) -> Any:
    try:
        return services(request).incidents()
    except (NotConfigured, NoDatabase):
        return None


@requires(Role.VIEWER)
async def incident_list(request: web.Request) -> web.StreamResponse:
    store = _open_store(request)
    only_open = request.query.get("all") != "1"
    found = await off_loop(store.find, open_only=only_open, limit=LIST_LIMIT) if store else []
    now = datetime.now(UTC)
    return render(request, "incidents.html", {
        "rows": [_row(i, now) for i in found], "only_open": only_open})


async def _get(request: web.Request) -> Incident:
    store = _open_store(request)
    if store is None:
        raise web.HTTPNotFound()
    try:
        incident: Incident = await off_loop(store.get, request.match_info["id"][:40])
    except IncidentError:
        raise web.HTTPNotFound() from None
    return incident


@requires(Role.VIEWER)
async def incident_page(request: web.Request) -> web.StreamResponse:
    incident = await _get(request)
    now = datetime.now(UTC)
    alerts = await off_loop(_alerts_of, request, incident)
    return render(request, "incident.html", {
        **_row(incident, now), "alerts": alerts, "timeline": timeline(incident, alerts),
        "impacts": [(i.value, IMPACT_LABELS[i], i.value in incident.impacts) for i in Impact],
        "serious_check": serious_check(incident), "kinds": _KINDS,
        "formats": _formats(), "notice": {k: request.query[k][:64]
                                          for k in ("done", "err") if k in request.query}})


def _formats() -> tuple[str, ...]:
    from socd.incidents.documents import FORMATS

    return tuple(FORMATS)


def _alerts_of(request: web.Request, incident: Incident) -> list[Any]:
    try:
        store = services(request).alert_store()
    except NotConfigured:
        return []
    return [a for a in (store.get(i) for i in incident.alerts) if a is not None]


def timeline(incident: Incident, alerts: list[Any]) -> list[dict[str, Any]]:
    """What happened, in time order: the incident's dates, its alerts, its actions."""
    items: list[dict[str, Any]] = [
        {"ts": ts, "what": what, "by": by, "text": ""}
        for ts, what, by in ((incident.discovered_at, "discovered", ""),
                             (incident.opened_at, "opened", incident.opened_by),
                             (incident.notified_at, "notified", ""),
                             (incident.response_ended_at, "response_ended", ""),
                             (incident.reported_at, "reported", ""),
                             (incident.closed_at, "closed", "")) if ts]
    items += [{"ts": a.ts, "what": "alert", "by": "", "text": a.rule_name or a.rule_id or "",
               "alert": a.id} for a in alerts]
    items += [{"ts": a.ts, "what": f"layer{a.layer}", "by": a.by, "text": a.text}
              for a in incident.actions]

    def key(item: dict[str, Any]) -> datetime:
        return parse(item["ts"]) or datetime.min.replace(tzinfo=UTC)

    return sorted(items, key=key)


def serious_check(incident: Incident) -> list[tuple[str, bool]]:
    """The conditions of a serious incident and whether each holds."""
    level = incident.system_level
    return [("level", bool(level and level >= 4) or incident.national_critical),
            ("impact", bool(incident.impacts)),
            ("capacity", incident.beyond_capacity)]


# -- changes ---------------------------------------------------------------------------

_CHANGES: Final = ("action", "impacts", "system", "assign", "notified", "response_ended",
                   "reported", "close")


@requires(Role.ANALYST)
async def incident_change(request: web.Request) -> web.StreamResponse:
    incident_id = normalize_id(request.match_info["id"][:40])
    form = await read_form(request)
    what = field(form, "change", 32)
    if what not in _CHANGES:
        raise web.HTTPBadRequest(reason="unknown change")
    store = _open_store(request)
    if store is None:
        raise web.HTTPNotFound()
    try:
        await off_loop(_apply, store, incident_id, what, form, me(request))
    except IncidentNotFound:
        raise web.HTTPNotFound() from None
    except (IncidentError, ValueError):
        raise web.HTTPSeeOther(location=url_for(request, "incident", {"err": what},
                                                id=incident_id)) from None
    raise web.HTTPSeeOther(location=url_for(request, "incident", {"done": what},
                                            id=incident_id))


def _apply(store: Any, incident_id: str, what: str, form: Any, by: str) -> None:
    """One change of the incident page's forms, through the store's methods."""
    from socd.console.data_actions import clean

    now = datetime.now(UTC)
    if what == "action":
        text = clean(field(form, "text"))
        layer = int(field(form, "layer", 1) or "0")
        if not text or layer not in (1, 2, 3, 4):
            raise ValueError("an action needs its layer and text")
        store.add_action(incident_id, layer, text, by=by)
    elif what == "impacts":
        chosen = [Impact(v) for v in form.getall("impact", []) if v in {i.value for i in Impact}]
        store.set_impacts(incident_id, chosen, by=by,
                          beyond_capacity=field(form, "beyond_capacity", 8) == "1")
    elif what == "system":
        level_text = field(form, "level", 2)
        store.set_system(incident_id, by=by, name=clean(field(form, "name", 300), 300),
                         level=int(level_text) if level_text.isdigit() else None,
                         national_critical=field(form, "national_critical", 8) == "1")
    elif what == "assign":
        store.assign(incident_id, clean(field(form, "to", 128), 128), by=by)
    elif what == "close":
        store.close_incident(incident_id, by=by, now=now)
    else:  # notified, response_ended, reported: now (the form's button)
        {"notified": store.notified, "response_ended": store.response_ended,
         "reported": store.reported}[what](incident_id, now, by=by)


# -- documents -------------------------------------------------------------------------

_TYPES: Final = {"md": "text/markdown", "html": "text/html", "pdf": "application/pdf",
                 "docx": "application/vnd.openxmlformats-officedocument."
                         "wordprocessingml.document"}


@requires(Role.VIEWER)
async def document(request: web.Request) -> web.StreamResponse:
    """An incident document (notification or final report) in one of the formats, as
    ``socd incident doc`` writes it, downloaded."""
    kind, fmt = request.match_info["kind"], request.match_info["fmt"]
    if kind not in _KINDS or fmt not in _formats():
        raise web.HTTPNotFound()
    incident = await _get(request)
    svc = services(request)
    body = await off_loop(_render_document, svc, incident, kind, fmt)
    name = f"{incident.id}-{kind}.{fmt}"
    return web.Response(body=body, content_type=_TYPES[fmt],
                        charset="utf-8" if fmt in ("md", "html") else None,
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})


def _render_document(svc: Any, incident: Incident, kind: str, fmt: str) -> bytes:
    from socd.incidents.documents import context, render

    events, missing = [], []
    try:
        store = svc.alert_store()
    except NotConfigured:
        store = None
    for alert_id in incident.alerts:
        row = store.get(alert_id) if store is not None else None
        if row is None:
            missing.append(alert_id)
        else:
            events.append(row.event())
    icfg = svc.config.document.incidents
    ctx = context(incident, kind, events=events, missing_alerts=missing,  # type: ignore[arg-type]
                  contact=icfg.contact, zone=icfg.timezone,
                  documents=svc.config.document.documents)
    data: bytes = render(ctx, fmt)  # type: ignore[arg-type]
    return data
