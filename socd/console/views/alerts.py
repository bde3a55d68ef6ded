"""The alert queue and the alert page.

* ``GET /alerts``: filters, free text, sort, keyset pages, counts per severity; the
  counts and a "new alerts" notice refresh by htmx polling ``/alerts/fresh`` (the table
  itself is not replaced under the analyst's ticked boxes).
* ``POST /alerts/bulk``: ack / false positive / resolve / assign, or open or add to an
  incident, for the ticked alerts or every alert the filters select (up to
  :data:`socd.console.data_actions.MAX_BULK`), in one store transaction.
* ``GET /alerts/{id}``: the normalised event, the raw original, enrichment, IoC
  matches with their letter reference, the rule's description and suggested action,
  history, incidents; ``POST /alerts/{id}/change|incident|block``: its actions.

Every change requires the analyst role and the CSRF token (the console core checks it)
and is in the audit log with the user.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import Any, Final

import orjson
from aiohttp import web

from socd.alerts.audit import record_many
from socd.alerts.lifecycle import AlertError, InvalidTransition
from socd.console import data_actions as actions
from socd.console.audit import audit
from socd.console.auth import Handler, requires
from socd.console.csrf import form_fields, read_form
from socd.console.data import (
    COUNT_CAP,
    SourceError,
    alert_ids,
    cursor_text,
    filter_params,
    query_from_params,
)
from socd.console.keys import CLIENT_KEY
from socd.console.render import render, url_for
from socd.console.roles import Role
from socd.console.services import NotConfigured
from socd.console.views.common import field, lang, me, off_loop, services
from socd.event import get
from socd.incidents.store import IncidentError
from socd.severity import Severity
from socd.vocabulary import ASSET_KINDS, LAYERS

POLL_SECS: Final = 30
MAX_UNITS: Final = 500  # units offered by the unit filter
_ID_CHARS: Final = frozenset("0123456789abcdef")


def setup(app: web.Application) -> None:
    app.router.add_get("/alerts", queue, name="alerts")
    app.router.add_get("/alerts/fresh", fresh, name="alerts_fresh")
    app.router.add_post("/alerts/bulk", bulk, name="alerts_bulk")
    app.router.add_get("/alerts/{id}", detail, name="alert")
    app.router.add_post("/alerts/{id}/change", change, name="alert_change")
    app.router.add_post("/alerts/{id}/incident", to_incident, name="alert_incident")
    app.router.add_post("/alerts/{id}/block", block_source, name="alert_block")


def _choices() -> dict[str, Any]:
    return {"severities": [s.value for s in Severity],
            "statuses": ["new", "acknowledged", "false_positive", "resolved"],
            "layers": list(LAYERS), "asset_kinds": sorted(ASSET_KINDS)}


@requires(Role.VIEWER)
async def queue(request: web.Request) -> web.StreamResponse:
    params = dict(request.query)
    query = query_from_params(params)
    kept = filter_params(params)
    context: dict[str, Any] = {"f": kept, "query": query, "cap": COUNT_CAP,
                               "poll_secs": POLL_SECS, "notice": _notice(request),
                               **_choices()}
    try:
        source = services(request).alerts()
        page = await off_loop(source.page, query)
        context["units"] = await off_loop(source.units, MAX_UNITS)
        context["source"] = source.name
    except (NotConfigured, SourceError) as exc:
        context.update(error=str(exc), page=None, source="", units=[])
        return render(request, "alerts.html", context)
    newest = max((a.ts_ms or 0 for a in page.alerts), default=0)
    context.update(
        page=page, error="",
        next_url=url_for(request, "alerts",
                         {**kept, "after": cursor_text(page.next_after, page.next_key)})
        if page.next_after else "",
        first_url=url_for(request, "alerts", kept) if query.after else "",
        fresh_url=url_for(request, "alerts_fresh", {**kept, "newer": newest}),
        severity_url={s.value: url_for(request, "alerts", {**kept, "severity": s.value})
                      for s in Severity},
        all_url=url_for(request, "alerts", {k: v for k, v in kept.items() if k != "severity"}))
    return render(request, "alerts.html", context)


def _notice(request: web.Request) -> dict[str, str]:
    """The outcome of the last change, from the redirect's query (numbers and codes
    only; the text is the page's)."""
    q = request.query
    names = ("done", "n", "same", "refused", "missing", "es", "err", "why")
    return {k: q[k][:200] for k in names if k in q}


@requires(Role.VIEWER)
async def fresh(request: web.Request) -> web.StreamResponse:
    """The polled fragment: counts per severity, and how many alerts arrived since the
    page was loaded (a link reloads it). One query: the newest page under the same
    filters has the counts, and its alerts newer than the loaded page's newest are the
    arrivals (shown as "50+" when they fill it)."""
    params = dict(request.query)
    query = replace(query_from_params({**params, "sort": ""}), after=None)
    since = params.get("newer", "")[:15]
    try:
        source = services(request).alerts()
        page = await off_loop(source.page, query)
    except (NotConfigured, SourceError) as exc:
        return render(request, "alerts_fresh.html", {"error": str(exc), "page": None,
                                                     "arrived": 0, "cap": COUNT_CAP,
                                                     "severity_url": {}, "reload_url": ""})
    newest = int(since) if since.isdigit() else None
    arrived = 0 if newest is None else sum(1 for a in page.alerts if (a.ts_ms or 0) > newest)
    kept = filter_params(params)
    return render(request, "alerts_fresh.html", {
        "error": "", "page": page, "arrived": arrived, "full": arrived >= query.limit,
        "cap": COUNT_CAP,
        "severity_url": {s.value: url_for(request, "alerts", {**kept, "severity": s.value})
                         for s in Severity},
        "reload_url": url_for(request, "alerts", kept)})


# -- changes ---------------------------------------------------------------------------


def _store_needed(handler: Handler) -> Handler:
    """Changes are written to the alert store: without one (an Elasticsearch-only
    config, or before the daemon stored an alert) the queue says so instead of failing."""
    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except (NotConfigured, SourceError):
            raise web.HTTPSeeOther(location=url_for(
                request, "alerts", {"done": "none", "err": "no_store"})) from None
    return wrapped


_BULK: Final = ("ack", "false_positive", "resolve", "assign", "incident_new", "incident_add")


# The bulk form's fields: an id per ticked alert, the filters (f_*) and a few more.
_BULK_FIELDS: Final = actions.MAX_BULK + 32


@form_fields(_BULK_FIELDS)
@requires(Role.ANALYST)
@_store_needed
async def bulk(request: web.Request) -> web.StreamResponse:
    form = await read_form(request)
    ticked = form.getall("id", [])
    if len(ticked) > actions.MAX_BULK:
        # Refused whole, never cut: the analyst would believe every ticked alert changed.
        raise web.HTTPRequestEntityTooLarge(max_size=actions.MAX_BULK,
                                            actual_size=len(ticked))
    action = field(form, "action", 32)
    back = {k: field(form, f"f_{k}", 200) for k in ("severity", "status", "unit", "layer",
                                                   "asset_kind", "rule", "source_ip",
                                                   "destination_ip", "since", "until", "q",
                                                   "sort", "size")}
    back = {k: v for k, v in back.items() if v}
    if action not in _BULK:
        raise web.HTTPBadRequest(reason="unknown action")
    if field(form, "scope", 16) == "filter":
        ids = await _matching(request, back)
    else:
        ids = alert_ids([v for v in ticked if isinstance(v, str)], actions.MAX_BULK)
    if not ids:
        raise see_other_alerts(request, back, {"done": "none"})
    if action.startswith("incident"):
        return await _incident_from(request, ids, form, back)
    note = actions.clean(field(form, "note"))
    if action == "false_positive" and not note:
        raise see_other_alerts(request, back, {"done": "none", "err": "reason"})
    to = actions.clean(field(form, "to", 128), 128) if action == "assign" else None
    result = await off_loop(actions.bulk_change, services(request), ids, action, by=me(request),
                            note=note, to=to)
    if result.changes:
        extra = {"via": "console", "client": request.get(CLIENT_KEY, request.remote or "")}
        await off_loop(record_many, services(request).audit_path,
                       result.audit_entries(me(request), extra))
    raise see_other_alerts(request, back, {
        "done": action, "n": len(result.changed), "same": result.unchanged,
        "refused": sum(result.refused.values()), "missing": result.missing,
        "es": len(result.es_errors)})


async def _matching(request: web.Request, params: dict[str, str]) -> list[str]:
    """Ids of the alerts the filters select (the store's, newest first, up to
    MAX_BULK): "all that match" in the bulk form."""
    query = query_from_params(params)
    store = services(request).alert_store()
    found = await off_loop(store.search, replace(query, after=None, limit=actions.MAX_BULK))
    return [a.id for a in found]


def see_other_alerts(request: web.Request, back: dict[str, str],
                     notice: dict[str, Any]) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(location=url_for(request, "alerts", {**back, **notice}))


async def _incident_from(request: web.Request, ids: list[str], form: Any,
                         back: dict[str, str]) -> web.StreamResponse:
    svc = services(request)
    triples = await off_loop(actions.alert_triples, svc, ids[:500])
    if not triples:
        raise see_other_alerts(request, back, {"done": "none"})
    store = svc.incidents()
    try:
        if field(form, "action", 32) == "incident_new":
            title = actions.clean(field(form, "title", 300), 300)
            if not title:
                raise see_other_alerts(request, back, {"done": "none", "err": "title"})
            level = await off_loop(actions.system_level, svc, [t[0] for t in triples])
            incident = await off_loop(store.open_incident, title=title, by=me(request),
                                      alerts=triples, system_level=level)
        else:
            incident, _ = await off_loop(store.add_alerts, field(form, "incident", 40),
                                         triples, by=me(request))
    except IncidentError:
        raise see_other_alerts(request, back, {"done": "none", "err": "incident"}) from None
    raise web.HTTPSeeOther(location=url_for(request, "incident", id=incident.id))


# -- one alert -------------------------------------------------------------------------


def _alert_id(request: web.Request) -> str:
    text = request.match_info["id"].lower()
    if not 6 <= len(text) <= 40 or not set(text) <= _ID_CHARS:
        raise web.HTTPNotFound()
    return text


@requires(Role.VIEWER)
async def detail(request: web.Request) -> web.StreamResponse:
    alert_id = _alert_id(request)
    svc = services(request)
    try:
        source = svc.alerts()
        if len(alert_id) < 40:  # a short id from a notification or the CLI
            found = await off_loop(source.ids_with_prefix, alert_id, 2)
            if len(found) == 1:
                raise web.HTTPSeeOther(location=url_for(request, "alert", id=found[0]))
            raise web.HTTPNotFound()
        alert = await off_loop(source.get, alert_id)
    except (NotConfigured, SourceError) as exc:
        return render(request, "alert.html", {"error": str(exc), "alert": None,
                                              "notice": {}})
    if alert is None:
        raise web.HTTPNotFound()
    history, incidents = await off_loop(_record_of, svc, alert_id)
    event = alert.event()
    from socd.notify.render import alert_view

    return render(request, "alert.html", {
        "error": "", "alert": alert, "event": event, "view": alert_view(event, lang(request)),
        "event_json": orjson.dumps(event, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
                                   ).decode(),
        "original": get(event, "event.original"),
        "command_line": get(event, "process.command_line"),
        "level": get(event, "socd.system_level"), "asset": _mapping(get(event, "socd.asset")),
        "ioc": {"values": _strings(get(event, "socd.ioc.values")),
                "refs": _strings(get(event, "socd.ioc.refs"))},
        "history": history, "incidents": incidents, "notice": _notice(request),
        "source": source.name,
    })


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _strings(value: Any) -> list[str]:
    """A list field of an event as texts (one value, or none, as stored)."""
    if value is None:
        return []
    return [str(v) for v in (value if isinstance(value, list) else [value])]


def _record_of(svc: Any, alert_id: str) -> tuple[list[Any], list[str]]:
    """History (from the store, the record) and incidents of an alert."""
    try:
        history = svc.alert_store().history(alert_id)
    except NotConfigured:
        history = []
    try:
        incidents = svc.incidents().incidents_of_alert(alert_id)
    except NotConfigured:
        incidents = []
    return history, incidents


def _back(request: web.Request, alert_id: str, **notice: Any) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(location=url_for(request, "alert", notice, id=alert_id))


@requires(Role.ANALYST)
@_store_needed
async def change(request: web.Request) -> web.StreamResponse:
    alert_id = _alert_id(request)
    form = await read_form(request)
    action = field(form, "action", 32)
    if action not in ("ack", "false_positive", "resolve", "assign"):
        raise web.HTTPBadRequest(reason="unknown action")
    note = actions.clean(field(form, "note"))
    if action == "false_positive" and not note:
        raise _back(request, alert_id, err="reason")
    to = actions.clean(field(form, "to", 128), 128) if action == "assign" else None
    try:
        result = await off_loop(actions.change_one, services(request), alert_id, action,
                                by=me(request), note=note, to=to)
    except InvalidTransition:
        raise _back(request, alert_id, err="transition") from None
    except AlertError:
        raise web.HTTPNotFound() from None
    raise _back(request, alert_id, done=action if result.outcome.changed else "same",
                es=len(result.es_errors))


@requires(Role.ANALYST)
@_store_needed
async def to_incident(request: web.Request) -> web.StreamResponse:
    alert_id = _alert_id(request)
    form = await read_form(request)
    return await _incident_from(request, [alert_id], form, {})


@requires(Role.ANALYST)
@_store_needed
async def block_source(request: web.Request) -> web.StreamResponse:
    """Block the alert's source address through the blocker's rules and allowlist."""
    alert_id = _alert_id(request)
    form = await read_form(request)
    svc = services(request)
    alert = await off_loop(svc.alerts().get, alert_id)
    if alert is None:
        raise web.HTTPNotFound()
    value = alert.source_ip
    if not value:
        raise _back(request, alert_id, err="no_source")
    reason = actions.clean(field(form, "note")) or f"alert {alert_id[:12]}"
    try:
        result = await off_loop(actions.block, svc, value, reason=reason,
                                ref=alert.rule_id, by=me(request))
    except NotConfigured:
        raise _back(request, alert_id, err="no_blocker") from None
    await audit(request, "block", ("alert", alert_id), {
        "value": value, "reason": reason, "refused": result.refused,
        "decision": result.action, "expires": result.expires, "dry_run": result.dry_run})
    if result.refused:
        raise _back(request, alert_id, err="block_refused", why=result.refused[:200])
    raise _back(request, alert_id, done="block" if result.action else "block_same")
