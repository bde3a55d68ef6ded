"""Rendering the console's pages: one Jinja2 environment, escaping everything.

Autoescaping is on for every template whatever its name (text from events, hostnames,
command lines and rule texts are attacker-controlled: they become inert text), and
undefined variables are errors (StrictUndefined), not empty strings. Each page gets:

* ``t(key, **values)``: the text in the request's language (:mod:`socd.console.i18n`);
* ``csrf_token()``: the token forms carry in a ``csrf_token`` field;
* ``user``: the signed-in :class:`~socd.console.auth.ConsoleUser` or ``None``;
* ``url_for(name, query=None, **parts)``: the path of a named route;
* ``static(path)``: the path of a file under ``static/``;
* ``nav``: the menu entries whose routes exist; ``lang`` and ``other_lang``; ``Role``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
from aiohttp import web

from socd.console.i18n import translate
from socd.console.keys import ANON_CSRF_KEY, JINJA_KEY, LANG_KEY, SESSION_KEY, USER_KEY
from socd.console.roles import Role

if TYPE_CHECKING:
    from socd.console.roles import Session

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"

#: The main menu: (route name, i18n key, lowest role that sees it), shown when the
#: route exists.
NAV: tuple[tuple[str, str, Role], ...] = (
    ("alerts", "nav.alerts", Role.VIEWER), ("incidents", "nav.incidents", Role.VIEWER),
    ("iocs", "nav.iocs", Role.VIEWER), ("blocks", "nav.blocks", Role.VIEWER),
    ("reports", "nav.reports", Role.VIEWER), ("health", "nav.health", Role.VIEWER),
    ("users", "nav.users", Role.ADMIN),
)


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        auto_reload=False)
    env.globals["Role"] = Role
    return env


def url_for(request: web.Request, route: str, /, query: Mapping[str, Any] | None = None,
            **parts: Any) -> str:
    """The path of the route named ``route`` with its ``{parts}`` filled (a part may be
    called ``name``) and ``query`` added."""
    url = request.app.router[route].url_for(**{k: str(v) for k, v in parts.items()})
    if query:
        url = url.with_query({k: str(v) for k, v in query.items() if v is not None})
    return str(url)


def csrf_token(request: web.Request) -> str:
    session: Session | None = request.get(SESSION_KEY)
    if session is not None:
        return session.csrf
    return str(request.get(ANON_CSRF_KEY, ""))


def page_context(request: web.Request) -> dict[str, Any]:
    """What every page gets (see the module docstring)."""
    lang = request.get(LANG_KEY, "vi")
    names = {r.name for r in request.app.router.routes() if r.name}
    user = request.get(USER_KEY)
    role = user.role if user is not None else Role.VIEWER
    return {
        "t": functools.partial(translate, lang),
        "csrf_token": functools.partial(csrf_token, request),
        "user": user,
        "url_for": functools.partial(url_for, request),
        "static": lambda path: f"/static/{path}",
        "nav": [(name, key) for name, key, least in NAV if name in names and role >= least],
        "lang": lang,
        "other_lang": "en" if lang == "vi" else "vi",
        "path": request.path,
    }


def render_text(request: web.Request, template_name: str, context: Mapping[str, Any]) -> str:
    template = request.app[JINJA_KEY].get_template(template_name)
    return template.render({**page_context(request), **context})


def render(request: web.Request, template_name: str, context: Mapping[str, Any] | None = None,
           status: int = 200) -> web.Response:
    """The page ``template_name`` rendered for ``request`` (text/html, UTF-8)."""
    body = render_text(request, template_name, context or {})
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")
