"""CSRF protection: every POST, PUT, PATCH and DELETE carries the session's token.

The token is per session (made at sign-in, kept in the user store) and is sent either
as the ``X-CSRF-Token`` header (htmx sends it from ``<body hx-headers>``, see
base.html) or as the ``csrf_token`` form field (plain forms). It is compared in
constant time. A signed-out browser's only state change is signing in: its form
carries the pre-session cookie's token (login CSRF). Requests a browser marks as
cross-site (``Sec-Fetch-Site: cross-site``) or whose ``Origin`` is another host are
refused before the token is looked at. The session cookie's ``SameSite=Strict`` is a
third, independent guard.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from multidict import MultiDictProxy

from socd.console.auth import Handler
from socd.console.keys import CONFIG_KEY, SESSION_KEY
from socd.console.sessions import anon_token

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
HEADER = "X-CSRF-Token"
FIELD = "csrf_token"
# Reason phrases of the refusals (the error page words them; tests read them).
CSRF_REFUSED = "csrf"
CROSS_SITE = "cross-site"
BAD_FORM = "form"
_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")
_FIELDS_ATTR = "_socd_console_form_fields"
_FORM_KEY: web.RequestKey[MultiDictProxy[Any]] = web.RequestKey("socd_console_form")
H = TypeVar("H", bound=Handler)


def expected_token(request: web.Request) -> str:
    """The token this request must carry ("" when it has none to carry)."""
    session = request.get(SESSION_KEY)
    return session.csrf if session is not None else anon_token(request)


async def supplied_token(request: web.Request) -> str:
    """The token the request carries: the header, else the form field."""
    header = request.headers.get(HEADER)
    if header:
        return header
    if request.content_type in _FORMS and request.can_read_body:
        form = await read_form(request)  # cached: the handler reads the same form
        value = form.get(FIELD)
        if isinstance(value, str):
            return value
    return ""


def form_fields(limit: int) -> Callable[[H], H]:
    """Let the route's form have up to ``limit`` fields instead of aiohttp's 1,000 (the
    bulk form: one ``id`` field per ticked alert). Put it outermost: :func:`read_form`
    reads it from the route's handler, whoever reads the form first (this middleware
    or the handler)."""

    def mark(handler: H) -> H:
        setattr(handler, _FIELDS_ATTR, limit)
        return handler

    return mark


async def read_form(request: web.Request) -> MultiDictProxy[Any]:
    """The request's form, read once (every reader gets the same). A body that
    is not a well-formed form is the client's error (400), not the console's (500);
    one over ``console.max_body_bytes``, or with more fields than the route allows
    (:func:`form_fields`, else aiohttp's 1,000), is 413."""
    cached: MultiDictProxy[Any] | None = request.get(_FORM_KEY)
    if cached is not None:
        return cached
    limit = getattr(request.match_info.handler, _FIELDS_ATTR, None)
    # The field limit is a request attribute aiohttp sets from the application; a clone
    # made before the body is read carries another one and reads the same body.
    reader = request if limit is None else request.clone(client_max_fields=limit)
    try:
        form = await reader.post()
    except web.HTTPException:
        raise
    except (HttpProcessingError, ValueError, UnicodeDecodeError, AssertionError) as exc:
        raise web.HTTPBadRequest(reason=BAD_FORM) from exc
    request[_FORM_KEY] = form
    return form


def _cross_site(request: web.Request) -> bool:
    if request.headers.get("Sec-Fetch-Site", "") == "cross-site":
        return True
    origin = request.headers.get("Origin")
    if origin is None:
        return False
    if origin == "null":
        return True
    allowed = {request.host.lower()}
    base_url = request.app[CONFIG_KEY].base_url
    if base_url:  # a proxy that rewrites Host: the address analysts use is the console's
        allowed.add(urlsplit(base_url).netloc.lower())
    return urlsplit(origin).netloc.lower() not in allowed


@web.middleware
async def csrf_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method in UNSAFE_METHODS:
        if _cross_site(request):
            raise web.HTTPForbidden(reason=CROSS_SITE)
        expected = expected_token(request)
        supplied = await supplied_token(request)
        if not expected or not hmac.compare_digest(expected.encode(), supplied.encode()):
            raise web.HTTPForbidden(reason=CSRF_REFUSED)
    return await handler(request)
