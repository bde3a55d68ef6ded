"""The administrators' page of the console: the users (``/users``).

What ``socd console user ...`` does, for an administrator in the browser: add a local
user, change a role, disable or enable an account, set a new password (which also lifts
a lockout). The store's rules hold here too: the last enabled administrator cannot be
demoted or disabled, and a change of role, password or the disabled flag ends that
user's sessions (an administrator who demotes themself is signed out). Every change is
written to the audit log with the administrator as actor; passwords never are.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from socd.console.audit import audit
from socd.console.auth import current_user, requires
from socd.console.csrf import read_form
from socd.console.i18n import translate
from socd.console.keys import LANG_KEY, USERS_KEY
from socd.console.passwords import PasswordError, hash_password
from socd.console.render import render
from socd.console.roles import Role
from socd.console.users import UserError, UserRecord

_MAX_FIELD = 1024


def setup(app: web.Application) -> None:
    app.router.add_get("/users", users_page, name="users")
    app.router.add_post("/users", user_add, name="user_add")
    app.router.add_post("/users/{name}/role", user_role, name="user_role")
    app.router.add_post("/users/{name}/disabled", user_disabled, name="user_disabled")
    app.router.add_post("/users/{name}/password", user_password, name="user_password")


def _state(user: UserRecord, now: float) -> str:
    if user.disabled:
        return "disabled"
    if user.locked_until is not None and user.locked_until > now:
        return "locked"
    return "active"


async def _page(request: web.Request, *, error: str = "", notice: str = "",
                status: int = 200) -> web.Response:
    store = request.app[USERS_KEY]

    def rows() -> list[dict[str, Any]]:
        now = store.clock()
        return [{"user": u, "state": _state(u, now), "sessions": store.session_count(u.name)}
                for u in store.users()]

    return render(request, "users.html", {
        "rows": await asyncio.to_thread(rows), "roles": [r.label for r in Role],
        "error": error, "notice": notice}, status=status)


@requires(Role.ADMIN)
async def users_page(request: web.Request) -> web.StreamResponse:
    return await _page(request)


def _text(form: Any, name: str) -> str:
    value = form.get(name, "")
    return value[:_MAX_FIELD] if isinstance(value, str) else ""


async def _done(request: web.Request, message_key: str, user: str) -> web.Response:
    """After a change: the page again, saying what was done; the sign-in page when the
    change was to the administrator's own account (it ended their sessions)."""
    if user == current_user(request).name and message_key != "users.added":
        return web.Response(status=303, headers={"Location": "/login"})
    return await _page(request, notice=translate(request[LANG_KEY], message_key, user=user))


async def _refused(request: web.Request, exc: Exception) -> web.Response:
    lang = request[LANG_KEY]
    return await _page(request, error=f"{translate(lang, 'users.refused')}: {exc}",
                       status=400)


@requires(Role.ADMIN)
async def user_add(request: web.Request) -> web.StreamResponse:
    form = await read_form(request)
    store = request.app[USERS_KEY]
    try:
        role = Role.parse(_text(form, "role"))
        password_hash = await asyncio.to_thread(hash_password, _text(form, "password"))
        user = await asyncio.to_thread(
            lambda: store.add_user(_text(form, "name"), role, password_hash=password_hash,
                                   display_name=_text(form, "display_name")))
    except (UserError, PasswordError, ValueError) as exc:
        return await _refused(request, exc)
    await audit(request, "user_add", ("user", user.name),
                {"role": user.role.label, "display_name": user.display_name})
    return await _done(request, "users.added", user.name)


@requires(Role.ADMIN)
async def user_role(request: web.Request) -> web.StreamResponse:
    form = await read_form(request)
    name = request.match_info["name"]
    store = request.app[USERS_KEY]
    try:
        role = Role.parse(_text(form, "role"))
        before = await asyncio.to_thread(store.get, name)
        user = await asyncio.to_thread(store.set_role, name, role)
    except (UserError, ValueError) as exc:
        return await _refused(request, exc)
    await audit(request, "user_role", ("user", user.name),
                {"role_from": before.role.label if before else None,
                 "role_to": user.role.label})
    return await _done(request, "users.changed", user.name)


@requires(Role.ADMIN)
async def user_disabled(request: web.Request) -> web.StreamResponse:
    form = await read_form(request)
    name = request.match_info["name"]
    disabled = _text(form, "disabled") == "1"
    try:
        user = await asyncio.to_thread(request.app[USERS_KEY].set_disabled, name, disabled)
    except UserError as exc:
        return await _refused(request, exc)
    await audit(request, "user_disable" if disabled else "user_enable", ("user", user.name))
    return await _done(request, "users.changed", user.name)


@requires(Role.ADMIN)
async def user_password(request: web.Request) -> web.StreamResponse:
    form = await read_form(request)
    name = request.match_info["name"]
    store = request.app[USERS_KEY]
    user = await asyncio.to_thread(store.get, name)
    if user is None or user.source != "local":
        return await _refused(request, UserError(translate(request[LANG_KEY],
                                                           "users.not_local")))
    try:
        password_hash = await asyncio.to_thread(hash_password, _text(form, "password"))
    except PasswordError as exc:
        return await _refused(request, exc)
    await asyncio.to_thread(store.set_password_hash, user.name, password_hash)
    await audit(request, "user_password", ("user", user.name))
    return await _done(request, "users.changed", user.name)
