"""``socd report``: a weekly, monthly or six-monthly report in Vietnamese.

``socd report weekly|monthly|semiannual [--from DATE --to DATE] --format
md|html|pdf|xlsx|docx [--unit U] [--number N] [--out FILE] [--source
auto|store|elasticsearch]``

The numbers come from Elasticsearch when the config has an ``elasticsearch`` sink and
from the embedded store (``sqlite`` sink) otherwise; ``--source`` forces one. Both give
the same numbers. Without dates the period is the last full week (Monday-Sunday),
month or half-year in Asia/Ho_Chi_Minh. Without ``--out`` text formats go to stdout
and binary ones (pdf, xlsx, docx) to ``<slug>.<format>`` in the current folder. html, pdf
and docx are in the official layout of the ``documents:`` section (docs/reports.md);
``--number`` fills the number of its ``Số:`` line, left blank otherwise for the clerk.

Exit codes: 0 written, 1 the data could not be read or a format cannot be produced,
2 usage or configuration.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from socd.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    Subparsers,
    WithConfig,
    fail,
    write_output,
    write_stdout,
)
from socd.sqlite import Error as StoreError


def _doc_number(text: str) -> str:
    from socd.reports.official import document_number  # the reports only when used

    return document_number(text)


def register(sub: Subparsers, with_config: WithConfig) -> None:
    p = sub.add_parser("report", help="a weekly, monthly or six-monthly report (Vietnamese)")
    p.add_argument("kind", choices=("weekly", "monthly", "semiannual"),
                   help="weekly (tuần), monthly (bản tin tháng) or semiannual (6 tháng)")
    with_config(p)
    p.add_argument("--from", dest="date_from", metavar="DATE",
                   help="first day, dd/mm/yyyy or yyyy-mm-dd (default: the last full "
                   "week / month / half-year)")
    p.add_argument("--to", dest="date_to", metavar="DATE",
                   help="last day, inclusive (default: the kind's length from --from)")
    p.add_argument("--format", "-f", dest="fmt", default="md",
                   choices=("md", "html", "pdf", "xlsx", "docx"),
                   help="output format (default md); html, pdf and docx in the official "
                   "layout (`documents:`)")
    p.add_argument("--number", type=_doc_number, help="the report's number in the `Số:` "
                   "line (default: blank, for the clerk who registers it)")
    p.add_argument("--unit", help="only alerts of this unit (socd.unit); case and diacritics "
                   "do not matter, as for severities")
    p.add_argument("--out", "-o", help="output file ('-' = stdout)")
    p.add_argument("--source", choices=("auto", "store", "elasticsearch"), default="auto",
                   help="where alerts are counted (default: Elasticsearch when configured)")
    p.add_argument("--sink", help="name of the sqlite or elasticsearch sink to read")
    p.set_defaults(handler=_report)


def _report(args: argparse.Namespace) -> int:
    from socd import config as config_mod
    from socd.reports.data import ReportError, ReportSetupError, build_report
    from socd.reports.periods import PeriodError, period_for
    from socd.reports.render import RenderError, render
    from socd.reports.sources import SideSources
    from socd.reports.vn import fmt_int

    cfg = config_mod.load(args.config)
    timezone = cfg.document.reports.timezone
    try:
        period = period_for(args.kind, args.date_from, args.date_to, timezone=timezone)
    except PeriodError as exc:
        return fail(exc, EXIT_USAGE)
    try:
        backend = _backend(cfg, args.source, args.sink)
    except ReportError as exc:
        return fail(exc, EXIT_USAGE if isinstance(exc, ReportSetupError) else EXIT_FAILURE)
    try:
        data = build_report(backend, period, unit=args.unit, sides=SideSources.from_config(cfg))
        body = render(data, args.fmt, documents=cfg.document.documents, number=args.number)
    except (ReportError, RenderError) as exc:
        return fail(exc)
    except StoreError as exc:
        return fail(f"cannot read the alert store: {exc}")
    finally:
        backend.close()
    out = args.out
    if out is None and args.fmt in ("pdf", "xlsx", "docx"):
        out = f"{period.slug}.{args.fmt}"
    if out is None or out == "-":
        write_stdout(body)
        return EXIT_OK
    write_output(out, body)  # the operator's file (in their folder), not socd's state
    print(f"{out}: {data.title} ({args.fmt}, {fmt_int(len(body))} bytes, "
          f"{fmt_int(data.total)} alerts, source {data.source})", file=sys.stderr)
    return EXIT_OK


def _backend(cfg: Any, source: str, sink: str | None) -> Any:
    from socd.reports.data import backend_for

    return backend_for(cfg, source, sink=sink)
