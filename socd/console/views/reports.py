"""Reports: the weekly, monthly and six-monthly reports in every format, generated on
request and downloaded.

Exactly ``socd report KIND --format FMT`` (:mod:`socd.reports`): the period (the last
full one, or from the dates given), the alert source (Elasticsearch when configured,
else the store), the side stores (IoC, blocks, incidents, layer-4 sharing) and the
official layout of the ``documents:`` section for html, pdf and docx. Building a
report reads a whole period: it runs in a thread, one at a time per console
(:data:`_ONE_AT_A_TIME`), so a burst of clicks cannot starve the pages.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from aiohttp import web

from socd.console.audit import audit
from socd.console.auth import requires
from socd.console.render import render
from socd.console.roles import Role
from socd.console.views.common import off_loop, services

KINDS: Final = ("weekly", "monthly", "semiannual")
FORMATS: Final = ("pdf", "docx", "html", "md", "xlsx")
_TYPES: Final = {"md": "text/markdown", "html": "text/html", "pdf": "application/pdf",
                 "docx": "application/vnd.openxmlformats-officedocument."
                         "wordprocessingml.document",
                 "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}
_ONE_AT_A_TIME: Final = web.AppKey("socd_console_reports_building", asyncio.Semaphore)


def setup(app: web.Application) -> None:
    app[_ONE_AT_A_TIME] = asyncio.Semaphore(1)
    app.router.add_get("/reports", report_page, name="reports")
    app.router.add_get("/reports/download", generate, name="report_download")


@requires(Role.VIEWER)
async def report_page(request: web.Request) -> web.StreamResponse:
    return _page(request)


def _page(request: web.Request, error: str = "", status: int = 200) -> web.StreamResponse:
    return render(request, "reports.html", {"kinds": KINDS, "formats": FORMATS,
                                            "error": error}, status=status)


def build(cfg: Any, kind: str, fmt: str, first: str | None, last: str | None,
          unit: str | None) -> tuple[str, bytes]:
    """(file name, bytes) of one report, as the CLI builds it."""
    from socd.reports.data import backend_for, build_report
    from socd.reports.periods import period_for
    from socd.reports.render import render as render_report
    from socd.reports.sources import SideSources

    period = period_for(kind, first, last,  # type: ignore[arg-type]
                        timezone=cfg.document.reports.timezone)
    backend = backend_for(cfg, "auto")
    try:
        data = build_report(backend, period, unit=unit, sides=SideSources.from_config(cfg))
        body = render_report(data, fmt, documents=cfg.document.documents)
    finally:
        backend.close()
    return f"{period.slug}.{fmt}", body


@requires(Role.VIEWER)
async def generate(request: web.Request) -> web.StreamResponse:
    """A report is read, not changed: a viewer may download one (it is audited)."""
    from socd.reports.data import ReportError
    from socd.reports.periods import PeriodError
    from socd.reports.render import RenderError
    from socd.sqlite import Error as StoreError

    form = request.query
    kind, fmt = form.get("kind", "")[:16], form.get("format", "")[:8]
    if kind not in KINDS or fmt not in FORMATS:
        raise web.HTTPBadRequest(reason="unknown kind or format")
    first = form.get("from", "")[:10].strip() or None
    last = form.get("to", "")[:10].strip() or None
    unit = form.get("unit", "")[:200].strip() or None
    try:
        async with request.app[_ONE_AT_A_TIME]:
            name, body = await off_loop(build, services(request).config, kind, fmt, first,
                                        last, unit)
    except (PeriodError, ReportError, RenderError, StoreError) as exc:
        return _page(request, error=str(exc)[:500], status=400)
    await audit(request, "report", ("report", name), {"kind": kind, "format": fmt,
                                                      "unit": unit, "bytes": len(body)})
    return web.Response(body=body, content_type=_TYPES[fmt],
                        charset="utf-8" if fmt in ("md", "html") else None,
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})
