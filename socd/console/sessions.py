"""Session cookies, the client's address and the language of each request.

The session cookie holds only a random id (the user store keeps its digest, the user,
the role and the CSRF token). It is ``HttpOnly`` and ``SameSite=Strict``, and
``Secure`` with the ``__Host-`` prefix (no ``Domain``, path ``/``: a sibling host
cannot plant it) unless ``console.dev_plain_http``. Signing in always issues a new id
(:func:`start_session`): an id planted in a browser before sign-in is never promoted
(session fixation).

A signed-out browser gets a pre-session cookie with a random token: the sign-in form
carries it and :mod:`socd.console.csrf` checks the two match (login CSRF).
"""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
from collections.abc import Iterable

from aiohttp import web

from socd.config.console import ConsoleConfig
from socd.console.auth import Handler, is_public, login_redirect, user_of
from socd.console.i18n import LANGUAGES, language_of
from socd.console.keys import (
    ANON_CSRF_KEY,
    CLIENT_KEY,
    CONFIG_KEY,
    LANG_KEY,
    SESSION_KEY,
    USER_KEY,
    USERS_KEY,
)
from socd.console.roles import ConsoleUser, Role, Session

_ID_MAX = 128  # longer cookie values are not ours: not even looked up
LANG_COOKIE = "socd_lang"


def session_cookie(cfg: ConsoleConfig) -> str:
    return "__Host-socd_session" if cfg.secure_cookies else "socd_session"


def anon_cookie(cfg: ConsoleConfig) -> str:
    return "__Host-socd_presession" if cfg.secure_cookies else "socd_presession"


def set_cookie(response: web.StreamResponse, cfg: ConsoleConfig, name: str, value: str,
               *, max_age: int | None = None) -> None:
    """A cookie with the console's flags (see the module docstring)."""
    response.set_cookie(name, value, path="/", max_age=max_age, httponly=True,
                        secure=cfg.secure_cookies, samesite="Strict")


def clear_cookie(response: web.StreamResponse, cfg: ConsoleConfig, name: str) -> None:
    response.del_cookie(name, path="/", secure=cfg.secure_cookies, httponly=True,
                        samesite="Strict")


def client_address(request: web.Request, trusted: Iterable[str]) -> str:
    """The client's address: the peer's, or, when the peer is a trusted proxy, the
    right-most address of ``X-Forwarded-For`` that is not a trusted proxy."""
    peer = request.remote or ""
    networks = [ipaddress.ip_network(t, strict=False) for t in trusted]
    if not networks or not _within(peer, networks):
        return peer
    hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",")]
    for hop in reversed(hops):
        if not hop:
            continue
        if not _within(hop, networks):
            return hop[:64]
    return peer


def _within(address: str, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]
            ) -> bool:
    try:
        addr = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(addr in n for n in networks)


def anon_token(request: web.Request) -> str:
    """The pre-session cookie's token ("" when the browser sent none, or a bad one)."""
    value = request.cookies.get(anon_cookie(request.app[CONFIG_KEY]), "")
    return value if 0 < len(value) <= _ID_MAX else ""


async def start_session(request: web.Request, response: web.StreamResponse,
                        user: ConsoleUser) -> Session:
    """A fresh session for ``user`` (the old one of this browser, if any, ends), its
    cookie set on ``response``."""
    cfg = request.app[CONFIG_KEY]
    store = request.app[USERS_KEY]
    old = request.get(SESSION_KEY)
    if old is not None:
        await asyncio.to_thread(store.delete_session, old.id)
    session_id, csrf = await asyncio.to_thread(
        store.create_session, user.name, user.role, request[CLIENT_KEY],
        max_per_user=cfg.session.max_per_user)
    set_cookie(response, cfg, session_cookie(cfg), session_id,
               max_age=int(cfg.session.absolute_timeout_secs))
    clear_cookie(response, cfg, anon_cookie(cfg))
    session = Session(session_id, csrf, user, store.clock())
    request[SESSION_KEY] = session
    request[USER_KEY] = user
    return session


async def end_session(request: web.Request, response: web.StreamResponse) -> None:
    """Sign out: the session is deleted in the store, its cookie cleared."""
    cfg = request.app[CONFIG_KEY]
    session = request.get(SESSION_KEY)
    if session is not None:
        await asyncio.to_thread(request.app[USERS_KEY].delete_session, session.id)
    clear_cookie(response, cfg, session_cookie(cfg))
    request[SESSION_KEY] = None
    request[USER_KEY] = None


async def _load(request: web.Request) -> Session | None:
    cfg = request.app[CONFIG_KEY]
    session_id = request.cookies.get(session_cookie(cfg), "")
    if not session_id or len(session_id) > _ID_MAX:
        return None
    record = await asyncio.to_thread(
        request.app[USERS_KEY].session, session_id,
        idle_secs=cfg.session.idle_timeout_secs,
        absolute_secs=cfg.session.absolute_timeout_secs)
    if record is None:
        return None
    return Session(session_id, record.csrf, user_of(record.user, Role(record.role)),
                   record.created)


@web.middleware
async def session_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Load the session, the client's address and the language; send signed-out
    requests of non-public routes to the sign-in page."""
    cfg = request.app[CONFIG_KEY]
    request[CLIENT_KEY] = client_address(request, cfg.trusted_proxies)
    session = await _load(request)
    request[SESSION_KEY] = session
    request[USER_KEY] = session.user if session is not None else None
    anon = anon_token(request)
    fresh = session is None and not anon
    # A signed-out browser's first page: its token for the sign-in form (the cookie is
    # set with the answer; csrf.py compares a form's token with the cookie only).
    request[ANON_CSRF_KEY] = secrets.token_urlsafe(32) if fresh else anon
    asked = request.query.get("lang", "")
    request[LANG_KEY] = language_of(asked, request.cookies.get(LANG_COOKIE, ""))
    if session is None and not _public_route(request):
        raise login_redirect(request)
    response = await handler(request)
    if fresh and request.get(SESSION_KEY) is None:
        set_cookie(response, cfg, anon_cookie(cfg), request[ANON_CSRF_KEY])
    if asked in LANGUAGES:
        response.set_cookie(LANG_COOKIE, asked, path="/", max_age=365 * 86400,
                            secure=cfg.secure_cookies, samesite="Strict")
    return response


def _public_route(request: web.Request) -> bool:
    route = request.match_info.route
    if isinstance(route.resource, web.StaticResource):
        return True
    return is_public(request.match_info.handler)
