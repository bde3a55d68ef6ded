"""The console's pages: the alert queue and alert page, incidents, IoC lists, blocks,
reports and health.

:func:`setup` adds every page's routes to the application
:func:`socd.console.app.build_app` made, the pages' words to the catalogues and their
template filters; each handler declares the lowest role it accepts with
:func:`socd.console.auth.requires` (viewer reads; analyst changes alerts and incidents
and blocks; admin imports IoC lists and unblocks). One module per page family.
"""

from __future__ import annotations

from aiohttp import web

from socd.console import i18n
from socd.console.auth import current_user, requires
from socd.console.render import render
from socd.console.roles import Role
from socd.console.views import alerts, blocks, health, incidents, iocs, reports, words
from socd.console.views.common import install_filters


def setup(app: web.Application) -> None:
    i18n.extend(words.VI, words.EN)
    install_filters(app)
    app.router.add_get("/", home, name="home")
    for pages in (alerts, incidents, iocs, blocks, reports, health):
        pages.setup(app)


@requires(Role.VIEWER)
async def home(request: web.Request) -> web.StreamResponse:
    return render(request, "home.html", {"me": current_user(request)})
