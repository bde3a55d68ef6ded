"""The console's aiohttp application: security middlewares, sign-in, static files, pages.

:func:`build_app` is the one way the console is made (by the daemon's listener,
:mod:`socd.console.listener`, and by the tests). Order of the middlewares, outermost
first: error pages (a refusal renders the error page, an unexpected exception is
logged and shown as a bare 500), sessions (who is signed in; signed-out requests of
non-public routes go to the sign-in page), CSRF (every state change carries the
session's token). Every answer, error pages and static files included, carries the
security headers (:func:`_security_headers`). The pages are added by
:func:`socd.console.views.setup`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import structlog
from aiohttp import web

from socd.config.console import ConsoleConfig
from socd.config.paths import resolve_path
from socd.console import admin, views
from socd.console.audit import audit
from socd.console.auth import Handler, authenticate, public, requires
from socd.console.csrf import CROSS_SITE, CSRF_REFUSED, csrf_middleware, read_form
from socd.console.i18n import translate
from socd.console.keys import (
    AUDIT_PATH_KEY,
    CONFIG_KEY,
    JINJA_KEY,
    LANG_KEY,
    LDAP_KEY,
    LOGIN_LIMIT_KEY,
    SERVICES_KEY,
    UNKNOWN_LIMIT_KEY,
    USER_KEY,
    USERS_KEY,
)
from socd.console.render import STATIC, environment, render
from socd.console.roles import Role
from socd.console.sessions import end_session, session_middleware, start_session
from socd.console.users import UserStore
from socd.ratelimit import KeyedRateLimiter

if TYPE_CHECKING:
    from socd.console.ldap import LdapAuthenticator
    from socd.console.services import ConsoleServices

log = structlog.get_logger("socd.console")

#: The Content-Security-Policy of every answer: the console's own scripts, styles and
#: images only; no inline script, no plugins, no framing, forms post to the console.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
_MAX_NEXT = 2048


def build_app(cfg: ConsoleConfig, services: ConsoleServices, *,
              users: UserStore | None = None,
              ldap: LdapAuthenticator | None = None) -> web.Application:
    """The console for ``cfg`` over ``services`` (the pages' data and where the audit log
    is). Users and sessions are in ``users`` (default: ``console.users_db`` under the
    state folder, closed with the application); directory sign-in through ``ldap``
    (default: built from ``console.ldap`` when set)."""
    app = web.Application(middlewares=[_error_pages, session_middleware, csrf_middleware],
                          client_max_size=cfg.max_body_bytes)
    app[CONFIG_KEY] = cfg
    app[SERVICES_KEY] = services
    if users is None:
        users = UserStore(users_db_path(cfg, services.state_dir))
        app.on_cleanup.append(_closing(users))
    app[USERS_KEY] = users
    app[AUDIT_PATH_KEY] = services.audit_path
    if ldap is None and cfg.ldap is not None:
        from socd.console.ldap import LdapAuthenticator

        ldap = LdapAuthenticator(cfg.ldap, services.config.config_dir)
    app[LDAP_KEY] = ldap
    app[JINJA_KEY] = environment()
    app[LOGIN_LIMIT_KEY] = KeyedRateLimiter(cfg.lockout.per_address_per_minute, 60.0)
    # An account locks at its max_failures-th failure; a name without one refuses the
    # attempt after as many: the same sequence of answers either way.
    app[UNKNOWN_LIMIT_KEY] = KeyedRateLimiter(max(1, cfg.lockout.max_failures - 1),
                                              cfg.lockout.lock_secs)
    app.on_response_prepare.append(_security_headers)
    app.router.add_get("/login", login_page, name="login")
    app.router.add_post("/login", login_submit, name="login_submit")
    app.router.add_post("/logout", logout, name="logout")
    app.router.add_static("/static/", STATIC, name="static", append_version=False)
    app.router.add_get("/favicon.ico", favicon, name="favicon")
    admin.setup(app)
    views.setup(app)
    return app


def users_db_path(cfg: ConsoleConfig, state_dir: str) -> str:
    """The users and sessions file (``console.users_db``, relative to the state folder)."""
    return resolve_path(state_dir, cfg.users_db)


def _closing(users: UserStore) -> Callable[[web.Application], Awaitable[None]]:
    async def close(_app: web.Application) -> None:
        users.close()

    return close


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CSP)
    headers["X-Frame-Options"] = "DENY"
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "same-origin"
    headers["Cross-Origin-Opener-Policy"] = "same-origin"
    headers["Cross-Origin-Resource-Policy"] = "same-origin"
    headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=(), payment=()"
    if request.app[CONFIG_KEY].secure_cookies:
        headers["Strict-Transport-Security"] = "max-age=31536000"
    if not request.path.startswith("/static/"):
        # Pages show alerts and who is signed in: no shared or back-button caches.
        headers["Cache-Control"] = "no-store"


@public
async def favicon(_request: web.Request) -> web.StreamResponse:
    """Browsers ask for ``/favicon.ico`` whatever the page links (``base.html`` links
    ``static/favicon.svg``): a 204 keeps a 404 out of their consoles and the logs."""
    return web.Response(status=204)


# -- error pages ----------------------------------------------------------------------


@web.middleware
async def _error_pages(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error_page(request, exc)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("console request failed", path=request.path, method=request.method)
        return _error_response(request, 500, "")


def _error_page(request: web.Request, exc: web.HTTPException) -> web.StreamResponse:
    response = _error_response(request, exc.status, exc.reason)
    for name in ("Retry-After", "Allow", "HX-Redirect"):
        if name in exc.headers:
            response.headers[name] = exc.headers[name]
    return response


def _error_response(request: web.Request, status: int, reason: str) -> web.Response:
    lang = request.get(LANG_KEY, "vi")
    key = "error.403.csrf" if status == 403 and reason in (CSRF_REFUSED, CROSS_SITE) else ""
    known = (400, 401, 403, 404, 405, 413, 429, 500)
    message = translate(lang, key or (f"error.{status}" if status in known else "error.other"))
    if (USER_KEY not in request or "HX-Request" in request.headers
            or "text/html" not in request.headers.get("Accept", "")):
        # Before the session middleware ran, for htmx (which shows no error pages) or a
        # client that does not ask for HTML: the words alone.
        return web.Response(text=message + "\n", status=status, charset="utf-8")
    try:
        return render(request, "error.html", {"status": status, "message": message},
                      status=status)
    except Exception:  # the page itself failed: the bare answer still goes out
        log.exception("console error page failed", status=status)
        return web.Response(text=message + "\n", status=status, charset="utf-8")


# -- sign-in and sign-out --------------------------------------------------------------


def redirect(location: str) -> web.Response:
    """A 303 to ``location`` that a handler returns (so cookies set on it are sent)."""
    return web.Response(status=303, headers={"Location": location})


def _safe_next(value: str) -> str:
    """A local path to go to after sign-in, never another site (``//host``, ``/\\host``,
    a scheme) nor the sign-in page."""
    if (not value.startswith("/") or value.startswith(("//", "/\\", "/login"))
            or len(value) > _MAX_NEXT or any(ord(c) < 32 for c in value)):
        return "/"
    return value


@public
async def login_page(request: web.Request) -> web.StreamResponse:
    if request.get(USER_KEY) is not None:
        raise web.HTTPSeeOther(location=_safe_next(request.query.get("next", "/")))
    return _login_form(request)


def _login_form(request: web.Request, *, error: str = "", name: str = "",
                status: int = 200, notice: str = "") -> web.Response:
    next_path = _safe_next(request.query.get("next", "/"))
    return render(request, "login.html", {"error": error, "notice": notice, "name": name,
                                          "next": next_path}, status=status)


@public
async def login_submit(request: web.Request) -> web.StreamResponse:
    form = await read_form(request)
    name = str(form.get("name", ""))[:256]
    password = str(form.get("password", ""))
    next_path = _safe_next(str(form.get("next", "/")))
    lang = request[LANG_KEY]
    result = await authenticate(request, name, password)
    if result.user is None:
        await audit(request, "login_failed", ("user", name[:128]),
                    {"result": result.outcome}, actor=name[:128] or "?")
        if result.outcome == "locked":
            error = translate(lang, "login.locked",
                              minutes=max(1, round(result.retry_after / 60)))
        elif result.outcome == "rate_limited":
            error = translate(lang, "login.rate_limited",
                              seconds=max(1, round(result.retry_after)))
        else:
            error = translate(lang, f"login.{result.outcome}")
        status = {"rate_limited": 429, "unavailable": 503}.get(result.outcome, 401)
        response = _login_form(request, error=error, name=name[:128], status=status)
        if result.outcome == "rate_limited":
            response.headers["Retry-After"] = str(max(1, round(result.retry_after)))
        return response
    response = redirect(next_path)
    await start_session(request, response, result.user)
    await audit(request, "login", ("user", result.user.name),
                {"source": result.user.source, "role": result.user.role.label})
    return response


@requires(Role.VIEWER)
async def logout(request: web.Request) -> web.StreamResponse:
    """Sign out (any signed-in role; the CSRF token keeps other sites from doing it)."""
    user = request.get(USER_KEY)
    response = redirect(str(request.app.router["login"].url_for()))
    if user is not None:
        await audit(request, "logout", ("user", user.name), {})
    await end_session(request, response)
    return response
