"""Who is signed in, and what each handler requires.

Every route of the console needs a signed-in user unless its handler is marked
:func:`public` (the sign-in page, static files). :func:`requires` states the lowest
role a handler accepts: a signed-out browser is sent to the sign-in page (an htmx or
non-GET request gets 401), a signed-in user below the role gets the 403 page. The
security tests enumerate the router: every state-changing route must require a role
above viewer (sign-out aside) and a CSRF token (:mod:`socd.console.csrf`).

Sign-in (:func:`authenticate`) tries the local user first, then the directory when
``console.ldap`` is set; failures are counted per account (lockout, in the user store)
and per client address (rate limit, in memory), and every result is counted in
``socd_console_logins_total`` and written to the audit log by the sign-in handler.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, TypeVar
from urllib.parse import urlsplit

import structlog
from aiohttp import web
from prometheus_client import Counter

from socd.console.keys import (
    CLIENT_KEY,
    CONFIG_KEY,
    LDAP_KEY,
    LOGIN_LIMIT_KEY,
    UNKNOWN_LIMIT_KEY,
    USER_KEY,
    USERS_KEY,
)
from socd.console.passwords import needs_rehash, verify, verify_dummy
from socd.console.roles import ConsoleUser, Role
from socd.console.users import UserError, UserRecord, UserStore, normalise_name
from socd.metrics import REGISTRY

__all__ = ["ConsoleUser", "LoginResult", "Role", "authenticate", "current_user", "public",
           "requires"]

log = structlog.get_logger("socd.console")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
H = TypeVar("H", bound=Handler)

LOGIN_RESULTS = ("success", "failure", "locked", "rate_limited", "unavailable")
LOGINS = Counter("socd_console_logins_total", "Sign-in attempts at the console, by result "
                 "(success, failure, locked, rate_limited, unavailable).", ["result"],
                 registry=REGISTRY)
for _result in LOGIN_RESULTS:
    LOGINS.labels(_result)

# The reason phrase of a 403 for a role too low (the error page words it).
ROLE_REFUSED = "role"
ROLE_ATTR = "__socd_console_role__"
PUBLIC_ATTR = "__socd_console_public__"


def public(handler: H) -> H:
    """Mark a handler as open to signed-out browsers (the sign-in page)."""
    setattr(handler, PUBLIC_ATTR, True)
    return handler


def is_public(handler: object) -> bool:
    return bool(getattr(handler, PUBLIC_ATTR, False))


def required_role(handler: object) -> Role | None:
    """The role :func:`requires` put on ``handler`` (None: none declared)."""
    role = getattr(handler, ROLE_ATTR, None)
    return role if isinstance(role, Role) else None


def wants_page(request: web.Request) -> bool:
    """A browser navigating (a full page), not htmx nor a form post: it can follow a
    redirect to the sign-in page."""
    return request.method in ("GET", "HEAD") and "HX-Request" not in request.headers


def login_redirect(request: web.Request) -> web.HTTPException:
    """Where a signed-out request goes: the sign-in page (back here after), or 401;
    an htmx request's 401 says ``HX-Redirect`` (htmx then loads the sign-in page, coming
    back to the page the user was on)."""
    if request.method in ("GET", "HEAD"):
        target = request.rel_url.path_qs
    else:
        # htmx says which page it was on; the sign-in page keeps only a local path.
        current = urlsplit(request.headers.get("HX-Current-URL", "/"))
        target = (current.path or "/") + (f"?{current.query}" if current.query else "")
    location = str(request.app.router["login"].url_for().with_query(next=target))
    if not wants_page(request):
        headers = {"HX-Redirect": location} if "HX-Request" in request.headers else None
        return web.HTTPUnauthorized(text="sign in first\n", headers=headers)
    return web.HTTPSeeOther(location=location)


def requires(role: Role) -> Callable[[H], H]:
    """The lowest role ``handler`` accepts (see the module docstring)."""

    def decorate(handler: H) -> H:
        @functools.wraps(handler)
        async def checked(request: web.Request) -> web.StreamResponse:
            user = request.get(USER_KEY)
            if user is None:
                raise login_redirect(request)
            if user.role < role:
                raise web.HTTPForbidden(reason=ROLE_REFUSED)
            return await handler(request)

        setattr(checked, ROLE_ATTR, role)
        return checked  # type: ignore[return-value]

    return decorate


def current_user(request: web.Request) -> ConsoleUser:
    """The signed-in user (a handler behind :func:`requires` always has one)."""
    user: ConsoleUser | None = request.get(USER_KEY)
    if user is None:
        raise login_redirect(request)
    return user


def user_of(record: UserRecord, role: Role | None = None) -> ConsoleUser:
    return ConsoleUser(record.name, record.display_name, role or record.role, record.source)


# -- sign-in ------------------------------------------------------------------------------

Outcome = Literal["success", "failure", "locked", "rate_limited", "unavailable"]


@dataclass(frozen=True, slots=True)
class LoginResult:
    """What :func:`authenticate` decided; ``user`` is set on success only."""

    outcome: Outcome
    user: ConsoleUser | None = None
    retry_after: float = 0.0  # locked / rate limited: seconds until another try helps


async def authenticate(request: web.Request, name: str, password: str) -> LoginResult:
    """Check a sign-in (local user, then the directory); count and log the result."""
    result = await _authenticate(request, name, password)
    LOGINS.labels(result.outcome).inc()
    log.info("console sign-in", result=result.outcome, user=name[:128],
             client=request[CLIENT_KEY])
    return result


async def _authenticate(request: web.Request, name: str, password: str) -> LoginResult:
    app = request.app
    limiter = app[LOGIN_LIMIT_KEY]
    client = request[CLIENT_KEY]
    if not limiter.hit(client):
        return LoginResult("rate_limited", retry_after=limiter.retry_after(client))
    try:
        key = normalise_name(name)
    except UserError:
        await asyncio.to_thread(verify_dummy, password)
        return LoginResult("failure")
    store = app[USERS_KEY]
    record = await asyncio.to_thread(store.get, key)
    if record is not None and (until := await asyncio.to_thread(store.locked_until, key)):
        return LoginResult("locked", retry_after=until - _now(store))
    unknown = app[UNKNOWN_LIMIT_KEY]
    if record is None and not unknown.hit(key):
        # A name with no account "locks" like an account does (same attempt, same
        # words): the lockout must not tell which names exist.
        return LoginResult("locked", retry_after=unknown.retry_after(key))
    if record is not None and record.source == "local":
        return await _local(request, store, record, password)
    ldap = app[LDAP_KEY]
    if ldap is None:
        await asyncio.to_thread(verify_dummy, password)
        return LoginResult("failure")
    return await _directory(request, store, key, password)


def _now(store: UserStore) -> float:
    return store.clock()


async def _local(request: web.Request, store: UserStore, record: UserRecord,
                 password: str) -> LoginResult:
    ok = record.password_hash is not None and await asyncio.to_thread(
        verify, record.password_hash, password)
    if not ok or record.disabled:
        return await _failed(request, store, record.name)
    await asyncio.to_thread(store.clear_failures, record.name)
    assert record.password_hash is not None
    if needs_rehash(record.password_hash):
        from socd.console.passwords import hash_password

        await asyncio.to_thread(
            lambda: store.rehash(record.name, hash_password(password)))
    return LoginResult("success", user_of(record))


async def _directory(request: web.Request, store: UserStore, key: str,
                     password: str) -> LoginResult:
    from socd.console.ldap import DirectoryUnavailable

    ldap = request.app[LDAP_KEY]
    assert ldap is not None
    try:
        found = await ldap.authenticate(key, password)
    except DirectoryUnavailable as exc:
        log.warning("console directory unavailable", error=str(exc))
        return LoginResult("unavailable")
    if found is None:
        return await _failed(request, store, key)
    try:
        record = await asyncio.to_thread(store.upsert_directory_user, key, found.role,
                                         found.display_name)
    except UserError:
        return await _failed(request, store, key)
    if record.disabled:
        return await _failed(request, store, key)
    await asyncio.to_thread(store.clear_failures, key)
    return LoginResult("success", user_of(record))


async def _failed(request: web.Request, store: UserStore, key: str) -> LoginResult:
    lockout = request.app[CONFIG_KEY].lockout
    until = await asyncio.to_thread(
        lambda: store.record_failure(key, max_failures=lockout.max_failures,
                                     window_secs=lockout.window_secs,
                                     lock_secs=lockout.lock_secs))
    if until is not None:
        return LoginResult("locked", retry_after=until - _now(store))
    return LoginResult("failure")
