"""The console's pages (minimal start page by the console core, C1; the pages' owner,
C2, takes this package over and adds the alert queue, incidents, IoC, blocks, reports
and health pages here).

:func:`setup` adds every page's routes to the application :func:`socd.console.app.build_app`
made; each handler declares the lowest role it accepts with
:func:`socd.console.auth.requires`.
"""

from __future__ import annotations

from aiohttp import web

from socd.console.auth import current_user, requires
from socd.console.render import render
from socd.console.roles import Role


def setup(app: web.Application) -> None:
    app.router.add_get("/", home, name="home")


@requires(Role.VIEWER)
async def home(request: web.Request) -> web.StreamResponse:
    return render(request, "home.html", {"me": current_user(request)})
