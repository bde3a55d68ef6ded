"""Health: collectors, sinks, spool, journal, notification queue, reloads, as the daemon
itself exposes them.

Two readings, both the daemon's own: ``/readyz`` of its HTTP endpoint (the ``http:``
section; which collectors and sinks are up, the journal) fetched over loopback with a
short timeout, and the metrics registry of the process the console runs in (the
daemon's, when the console is served by ``socd run``): ``socd_component_up``, the last
record per collector, the spool, journal and notification-queue gauges, reloads by
result, dead letters. Nothing is computed twice: the page shows what ``/metrics`` and
``/readyz`` say.
"""

from __future__ import annotations

import time
from typing import Any, Final

import aiohttp
import orjson
from aiohttp import web

from socd.console.auth import requires
from socd.console.render import render
from socd.console.roles import Role
from socd.console.views.common import services
from socd.metrics import REGISTRY

READYZ_TIMEOUT_SECS: Final = 2.0
_SHOWN: Final = ("socd_component_up", "socd_collector_last_received_timestamp_seconds",
                 "socd_spool_events", "socd_spool_bytes", "socd_spool_max_bytes",
                 "socd_journal_records", "socd_journal_bytes",
                 "socd_journal_oldest_age_seconds", "socd_notification_queue_depth",
                 "socd_notifications_failed_total", "socd_config_reloads_total",
                 "socd_config_last_reload_timestamp_seconds",
                 "socd_dead_letters_total", "socd_queue_depth")


def setup(app: web.Application) -> None:
    app.router.add_get("/health", health_page, name="health")


def metric_values() -> dict[str, list[tuple[dict[str, str], float]]]:
    """The shown families' samples: name -> [(labels, value)] (counters by their
    ``_total`` sample only)."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {name: [] for name in _SHOWN}
    for family in REGISTRY.collect():
        for sample in family.samples:
            if sample.name in out:
                out[sample.name].append((dict(sample.labels), float(sample.value)))
    return out


async def readyz(cfg: Any) -> dict[str, Any]:
    """The daemon's ``/readyz`` (``{"error": ...}`` when it cannot be read)."""
    http = cfg.document.http
    if not http.enabled:
        return {"error": "disabled"}
    host = "127.0.0.1" if http.host in ("0.0.0.0", "", "::") else http.host  # noqa: S104
    url = f"http://{'[' + host + ']' if ':' in host else host}:{http.port}/readyz"
    timeout = aiohttp.ClientTimeout(total=READYZ_TIMEOUT_SECS)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session, \
                session.get(url) as resp:
            body = await resp.content.read(1_000_000)
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return {"error": type(exc).__name__}
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {"error": "not JSON"}
    return data if isinstance(data, dict) else {"error": "not JSON"}


@requires(Role.VIEWER)
async def health_page(request: web.Request) -> web.StreamResponse:
    ready = await readyz(services(request).config)
    metrics = metric_values()
    now = time.time()
    last = {labels.get("collector", "?"): now - value for labels, value in
            metrics["socd_collector_last_received_timestamp_seconds"] if value > 0}
    return render(request, "health.html", {
        "ready": ready, "m": metrics, "silent_secs": last,
        "reloads": {labels.get("result", "?"): int(v) for labels, v in
                    metrics["socd_config_reloads_total"]},
        "last_reload": {labels.get("result", "?"): v for labels, v in
                        metrics["socd_config_last_reload_timestamp_seconds"] if v > 0}})
