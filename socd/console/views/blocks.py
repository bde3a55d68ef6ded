"""Blocks: the active decisions with their time left, the blocker's audit trail, and
unblock with a reason (admin only).

Unblocking is :meth:`socd.block.decisions.BlockStore.remove`, as ``socd block remove``:
the decision is marked removed and audited in the block store with the console user;
the running daemon takes the address out of the firewall on its next sync
(``expiry_interval_secs``). The change is also in the hash-chained audit log.
"""

from __future__ import annotations

import time
from typing import Any, Final

from aiohttp import web

from socd.console import data_actions as actions
from socd.console.audit import audit
from socd.console.auth import requires
from socd.console.csrf import read_form
from socd.console.render import render, url_for
from socd.console.roles import Role
from socd.console.services import NotConfigured
from socd.console.views.common import field, me, off_loop, services

AUDIT_ROWS: Final = 200


def setup(app: web.Application) -> None:
    app.router.add_get("/blocks", block_page, name="blocks")
    app.router.add_post("/blocks/unblock", unblock, name="unblock")


def _state(svc: Any, value: str | None) -> dict[str, Any]:
    from socd.block.decisions import format_duration

    store = svc.blocks()
    now = time.time()
    active = [{"d": d, "left": format_duration(d.expires - now)}
              for d in store.active(now)]
    return {"active": active, "audit": store.audit(value, limit=AUDIT_ROWS),
            "dry_run": bool(svc.blocker.dry_run)}


@requires(Role.VIEWER)
async def block_page(request: web.Request) -> web.StreamResponse:
    value = request.query.get("value", "").strip()[:100] or None
    notice = {k: request.query[k][:64] for k in ("done", "err") if k in request.query}
    try:
        state = await off_loop(_state, services(request), value)
    except NotConfigured as exc:
        return render(request, "blocks.html", {"error": str(exc), "notice": notice,
                                               "value": value or ""})
    return render(request, "blocks.html", {"error": "", "notice": notice,
                                           "value": value or "", **state})


@requires(Role.ADMIN)
async def unblock(request: web.Request) -> web.StreamResponse:
    form = await read_form(request)
    value = field(form, "value", 100).strip()
    reason = actions.clean(field(form, "reason"))
    if not value or not reason:
        raise web.HTTPSeeOther(location=url_for(request, "blocks", {"err": "reason"}))
    try:
        removed = await off_loop(actions.unblock, services(request), value, reason=reason,
                                 by=me(request))
    except NotConfigured:
        raise web.HTTPNotFound() from None
    if removed:
        await audit(request, "unblock", ("block", value), {"reason": reason})
    raise web.HTTPSeeOther(location=url_for(
        request, "blocks", {"done": "unblock"} if removed else {"err": "not_blocked"}))
