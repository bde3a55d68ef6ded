"""The daemon's HTTP endpoint: ``/metrics``, ``/healthz`` and ``/readyz``.

These endpoints only read; they accept no data and change no state, so they
are served without authentication on loopback by default. Endpoints that
accept data (webhooks, block feeds) authenticate separately.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from socd.metrics import REGISTRY


def make_app(readiness: Callable[[], tuple[bool, dict[str, Any]]],
             before_scrape: Callable[[], None] | None = None) -> web.Application:
    async def metrics(_request: web.Request) -> web.Response:
        if before_scrape is not None:
            before_scrape()
        body = generate_latest(REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_request: web.Request) -> web.Response:
        ready, detail = readiness()
        return web.Response(body=orjson.dumps({"ready": ready, **detail}),
                            status=200 if ready else 503, content_type="application/json")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


class HttpServer:
    """Runs the aiohttp app on one address; ``port`` is the bound port after start."""

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        if server is not None and self.port == 0:
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
