"""The console's changes in the hash-chained audit log (:mod:`socd.alerts.audit`).

Every change made at the console (and every sign-in, successful or not) is one record
whose actor is the console user; the details add ``via: console`` and the client's
address, so a record tells who, from where and through what. Alert and incident
changes made through their lifecycle functions are recorded by those (with the user as
``by``); :func:`audit` is for the rest. Passwords and tokens are never in a record.
Appending is a blocking SQLite write (synchronous=FULL): it runs in a thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from socd.alerts.audit import ObjectType, Record, record
from socd.console.keys import AUDIT_PATH_KEY, CLIENT_KEY, USER_KEY

Target = tuple[ObjectType, str]

_SECRET_WORDS = ("password", "token", "secret", "csrf")


async def audit(request: web.Request, action: str, target: Target,
                detail: Mapping[str, Any] | None = None, *,
                actor: str | None = None) -> Record | None:
    """Append one record: ``action`` on ``target`` (object type, id) by the signed-in
    user (or ``actor``, for a failed sign-in). Never raises (see
    :func:`socd.alerts.audit.record`); None when the record could not be written."""
    user = request.get(USER_KEY)
    who = actor if actor is not None else (user.name if user is not None else "?")
    details: dict[str, Any] = {k: v for k, v in (detail or {}).items()
                               if not any(w in k.lower() for w in _SECRET_WORDS)}
    details["via"] = "console"
    details["client"] = request.get(CLIENT_KEY, request.remote or "")
    path = request.app[AUDIT_PATH_KEY]
    object_type, object_id = target
    return await asyncio.to_thread(record, path, who, object_type, object_id, action, details)
