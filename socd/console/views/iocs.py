"""IoC lists: search, import a letter's appendix, expire.

The import is ``socd ioc import`` from a browser (admin only): the uploaded appendix is
written to a private temporary file and read by the same parsers
(:func:`socd.ioc.importers.parse_file`, every format), with the letter's number as the
reference of rows that carry none, its date as a ``letter_date:`` tag and its issuer as
the source; :meth:`socd.ioc.store.IocStore.import_entries` refuses allowlisted values.
The page then shows the refusal report (each refused value and the allowlist entry that
covers it) and the rows the parser rejected. The running daemon picks the new entries
up on its next IoC refresh.
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any, Final

from aiohttp import web

from socd.console.audit import audit
from socd.console.auth import requires
from socd.console.csrf import read_form
from socd.console.data_actions import clean
from socd.console.render import render
from socd.console.roles import Role
from socd.console.views.common import field, off_loop, services

SHOWN: Final = 200  # refused / rejected items listed on the page
LIST_LIMIT: Final = 100
MAX_UPLOAD: Final = 16 * 1024 * 1024


def setup(app: web.Application) -> None:
    app.router.add_get("/iocs", ioc_page, name="iocs")
    app.router.add_post("/iocs/import", ioc_import, name="ioc_import")
    app.router.add_post("/iocs/expire", ioc_expire, name="ioc_expire")


def _formats() -> tuple[str, ...]:
    from socd.ioc.importers import FORMATS

    return tuple(FORMATS)


Reason = tuple[str, dict[str, str]]  # an i18n key and its values


def why_refused(allowlist: Any, kind: str, value: str, said: str | None = None
                ) -> Reason | None:
    """Why the allowlist refuses ``value``, as words of the page's language (the
    allowlist's own :meth:`~socd.ioc.allowlist.Allowlist.reason` is English, for logs
    and the CLI): the key names the case, the values the entries that cover it. ``said``
    (the allowlist's English reason, when the import already has it) is kept for a case
    not recognised here; ``None`` when the value is not allowlisted."""
    said = said if said is not None else allowlist.reason(kind, value)
    if said is None:
        return None
    if kind == "ip":
        try:
            hits = allowlist.overlapping(value)
        except ValueError:
            hits = []
        if hits:
            single = "/" not in value or value.endswith(("/32", "/128"))
            return ("iocs.why.ip_in" if single else "iocs.why.ip_overlaps",
                    {"value": value, "entries": ", ".join(str(n) for n in hits[:3])})
    elif kind == "domain":
        name = value.removeprefix("*.")
        labels = name.split(".")
        own = next((s for s in (".".join(labels[i:]) for i in range(len(labels)))
                    if s in allowlist.hosts), None)
        if own is not None:
            return "iocs.why.host_below", {"value": value, "entry": own}
        below = sorted(h for h in allowlist.hosts if h.endswith("." + name))
        if value.startswith("*.") and below:
            return "iocs.why.host_covers", {"value": value, "entry": below[0]}
    return "iocs.why.other", {"said": said}


def _search(svc: Any, text: str) -> dict[str, Any]:
    """What the store holds for a value as a letter writes it (defanged, a URL...)."""
    from socd.ioc.importers import Options, indicator
    from socd.ioc.normalize import IndicatorError

    store = svc.iocs()
    try:
        found = indicator(Options(source="console"), text, None)
    except IndicatorError as exc:
        return {"error": str(exc)}
    entries = store.entries_for(found.kind, found.value)
    allow = why_refused(store.allowlist, found.kind, found.value) if store.allowlist \
        else None
    return {"kind": found.kind, "value": found.value, "entries": entries,
            "allowlisted": allow, "now": time.time()}


def _listing(svc: Any, kind: str | None, source: str | None, ref: str | None
             ) -> dict[str, Any]:
    store = svc.iocs()
    stats = store.stats()
    return {"entries": store.db.find(kind=kind, source=source, ref=ref, limit=LIST_LIMIT),
            "stored": stats.get("stored", {}), "by_ref": stats.get("by_ref", {}),
            "expired": stats.get("expired", 0)}


@requires(Role.VIEWER)
async def ioc_page(request: web.Request) -> web.StreamResponse:
    return await _page(request)


async def _page(request: web.Request, report: dict[str, Any] | None = None,
                status: int = 200) -> web.StreamResponse:
    svc = services(request)
    q = request.query.get("q", "").strip()[:500]
    kind = request.query.get("kind") if request.query.get("kind") in ("ip", "domain",
                                                                       "hash") else None
    source = request.query.get("source", "").strip()[:200] or None
    ref = request.query.get("ref", "").strip()[:200] or None
    found = await off_loop(_search, svc, q) if q else None
    listing = await off_loop(_listing, svc, kind, source, ref)
    return render(request, "iocs.html", {
        "q": q, "found": found, "report": report, "formats": _formats(),
        "kind": kind or "", "source": source or "", "ref": ref or "", **listing,
        "now": time.time(), "expired_done": request.query.get("expired")}, status=status)


@requires(Role.ADMIN)
async def ioc_import(request: web.Request) -> web.StreamResponse:
    form = await read_form(request)
    upload = form.get("file")
    fmt = field(form, "format", 16)
    source = clean(field(form, "source", 200), 200)
    letter = clean(field(form, "ref", 200), 200) or ""
    letter_date = clean(field(form, "letter_date", 32), 32)
    if not isinstance(upload, web.FileField) or fmt not in _formats() or not source:
        return await _page(request, report={"error": "missing"}, status=400)
    data = upload.file.read(MAX_UPLOAD + 1)
    if len(data) > MAX_UPLOAD:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_UPLOAD, actual_size=len(data))
    name = (upload.filename or "appendix")[:200]
    report = await off_loop(_import, services(request), data, fmt, source, letter,
                            letter_date)
    report["file"] = name
    await audit(request, "ioc_import", ("ioc", f"{source}:{letter}"[:200]), {
        "file": name, "format": fmt, "source": source, "ref": letter,
        "letter_date": letter_date, "inserted": report.get("inserted"),
        "updated": report.get("updated"), "refused": len(report.get("refused", [])),
        "rejected": len(report.get("rejected", []))})
    return await _page(request, report=report, status=200 if "error" not in report else 400)


def _import(svc: Any, data: bytes, fmt: str, source: str, letter: str,
            letter_date: str | None) -> dict[str, Any]:
    """Parse the appendix from a private temporary file and import it (see the module
    docstring); the report the page shows."""
    from socd.ioc.importers import Options, parse_file, parse_time

    tags: tuple[str, ...] = ()
    if letter_date:
        when = parse_time(letter_date)
        if when is None:
            return {"error": "date"}
        tags = (f"letter_date:{time.strftime('%Y-%m-%d', time.gmtime(when))}",)
    opts = Options(source=source, ref=letter, tags=tags)
    with tempfile.TemporaryDirectory(prefix="socd-console-") as folder:
        path = os.path.join(folder, "appendix")
        with open(path, "wb") as fh:
            fh.write(data)
        try:
            entries, rejected = parse_file(path, fmt, opts)
        except (ValueError, OSError, UnicodeDecodeError) as exc:
            return {"error": "parse", "detail": str(exc)[:300]}
    result = svc.iocs().import_entries(entries, reload=False)
    refs: dict[str, int] = {}
    for e in entries:
        refs[e.ref or "-"] = refs.get(e.ref or "-", 0) + 1
    return {"inserted": result.inserted, "updated": result.updated,
            "refused": [(f"{e.kind} {e.value}", why_refused(svc.iocs().allowlist, e.kind,
                                                            e.value, why))
                        for e, why in result.refused[:SHOWN]],
            "refused_total": len(result.refused),
            "rejected": list(rejected)[:SHOWN], "rejected_total": len(rejected),
            "refs": sorted(refs.items(), key=lambda kv: -kv[1])[:10]}


@requires(Role.ADMIN)
async def ioc_expire(request: web.Request) -> web.StreamResponse:
    db = services(request).iocs().db
    assert db is not None  # the console opens the store with its database
    removed = await off_loop(db.expire)
    await audit(request, "ioc_expire", ("ioc", "expired"), {"removed": removed})
    raise web.HTTPSeeOther(location=f"/iocs?expired={int(removed)}")
