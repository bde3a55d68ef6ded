"""Report renderers: Markdown, HTML (Jinja2), PDF (WeasyPrint, from the same HTML), XLSX,
DOCX (python-docx).

All of them read one :class:`~socd.reports.data.ReportData` through :func:`view`, the
formatted Vietnamese texts and table rows, so a number reads the same in every format
(XLSX keeps numbers as numbers). The HTML is self-contained (inline CSS, charts as
``data:`` URIs, UTF-8) and has print CSS (A4), which is what WeasyPrint lays out for
the PDF. HTML, PDF and DOCX are in the official layout of Decree 30/2020/NĐ-CP
(:mod:`socd.reports.official`: letterhead, number, place and date, title, recipients,
signature; the ``documents:`` section) in Times New Roman, or in the PDF Liberation
Serif / DejaVu Serif where it is missing (their glyphs cover Vietnamese). Markdown and
XLSX are working copies and carry only the title.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from socd import __version__
from socd.errors import ConfigError, ConfigProblem, SocdError
from socd.reports.data import ReportData
from socd.reports.vn import (
    SEVERITY_LABELS,
    SEVERITY_ORDER,
    fmt_date,
    fmt_datetime,
    fmt_int,
    fmt_pct,
    local_zone,
    nfc,
)

if TYPE_CHECKING:
    from socd.config import Config
    from socd.config.documents import DocumentsConfig
    from socd.reports.official import Letterhead
    from socd.reports.word import Block

FORMATS = ("md", "html", "pdf", "xlsx", "docx")
SHEETS = {"he_thong": "Theo hệ thống giám sát", "xu_huong": "Xu hướng", "theo_ngay": "Theo ngày",
          "luat": "Luật phát hiện", "may": "Hệ thống bị ảnh hưởng", "don_vi": "Đơn vị",
          "ioc": "IoC", "chan": "Chặn địa chỉ", "su_co": "Sự cố", "lop_4": "Chia sẻ lớp 4"}
NO_DATA = "Chưa có dữ liệu"

PDF_HINT = ("PDF reports need WeasyPrint: pip install 'socd[pdf]' and the Debian "
            "libraries it uses: apt-get install libpango-1.0-0 libpangoft2-1.0-0 "
            "libharfbuzz0b fonts-dejavu-core")


class RenderError(SocdError):
    """A format cannot be produced (a missing optional dependency)."""


@dataclass(slots=True)
class Table:
    """A titled table: Vietnamese headers, raw cells (numbers stay numbers)."""

    key: str  # sheet / anchor name
    title: str
    headers: list[str]
    rows: list[list[Any]]
    note: str = ""  # shown instead of the table when there are no rows
    numeric: set[int] = field(default_factory=set)  # column indexes holding numbers


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "có" if value else "không"
    if isinstance(value, int):
        return fmt_int(value)
    if value is None:
        return ""
    return str(value)


def _local(ts: float | None, data: ReportData) -> str:
    if ts is None:
        return ""
    return fmt_datetime(datetime.fromtimestamp(ts, UTC), data.period.zone)


def _sev_cells(counts: dict[str, int]) -> list[int]:
    return [counts.get(s, 0) for s in SEVERITY_ORDER]


_SEV_HEADERS = [SEVERITY_LABELS[s].capitalize() for s in SEVERITY_ORDER]


def tables(data: ReportData) -> list[Table]:
    """Every table of the report, in order."""
    out: list[Table] = []
    kinds = [[k.label, *_sev_cells(k.by_severity), k.total, k.false_positives,
              k.acknowledged, k.handled] for k in data.by_kind]
    kinds.append(["Tổng cộng", *_sev_cells(data.by_severity), data.total,
                  data.false_positives, data.acknowledged, data.handled])
    out.append(Table("he_thong", "Cảnh báo theo hệ thống giám sát và mức độ",
                     ["Hệ thống giám sát", *_SEV_HEADERS, "Tổng số", "Cảnh báo nhầm",
                      "Đã tiếp nhận", "Đã xử lý"], kinds, numeric=set(range(1, 9))))
    out.append(Table("xu_huong", f"So sánh với kỳ trước ({fmt_date(data.previous.first)} – "
                     f"{fmt_date(data.previous.last)})",
                     ["Mức độ", "Kỳ trước", "Kỳ này", "Thay đổi", "Tỷ lệ thay đổi"],
                     [[SEVERITY_LABELS[t.severity].capitalize(), t.previous, t.current,
                       t.change, fmt_pct(t.percent, signed=True)] for t in data.trend]
                     + [["Tổng cộng", data.previous_total, data.total,
                         data.total - data.previous_total,
                         fmt_pct(None if not data.previous_total else
                                 100.0 * (data.total - data.previous_total)
                                 / data.previous_total, signed=True)]],
                     numeric={1, 2, 3}))
    out.append(Table("theo_ngay", "Cảnh báo theo ngày",
                     ["Ngày", *_SEV_HEADERS, "Tổng số"],
                     [[f"{d[8:10]}/{d[5:7]}/{d[0:4]}", *_sev_cells(c), sum(c.values())]
                      for d, c in data.daily], numeric={1, 2, 3, 4, 5}))
    out.append(Table("luat", "Các luật phát hiện nhiều cảnh báo nhất",
                     ["STT", "Mã luật", "Tên luật", "Mức độ cao nhất", "Số cảnh báo",
                      "Cảnh báo nhầm"],
                     [[i + 1, r.rule_id, r.rule_name, SEVERITY_LABELS.get(r.severity,
                                                                          r.severity),
                       r.total, r.false_positives] for i, r in enumerate(data.top_rules)],
                     note="Không có cảnh báo trong kỳ.", numeric={0, 4, 5}))
    out.append(Table("may", "Các hệ thống bị ảnh hưởng nhiều nhất",
                     ["STT", "Hệ thống (tên máy / địa chỉ IP)", "Đơn vị", "Số cảnh báo",
                      "Mức độ cao và nghiêm trọng"],
                     [[i + 1, r.system, r.unit, r.total, r.high]
                      for i, r in enumerate(data.top_systems)],
                     note="Không có cảnh báo trong kỳ.", numeric={0, 3, 4}))
    out.append(Table("don_vi", "Các đơn vị có nhiều cảnh báo nhất",
                     ["STT", "Đơn vị", *_SEV_HEADERS, "Tổng số"],
                     [[i + 1, r.unit, *_sev_cells(r.by_severity), r.total]
                      for i, r in enumerate(data.top_units)],
                     note="Không có cảnh báo trong kỳ.", numeric={0, 2, 3, 4, 5, 6}))
    ioc = data.ioc
    out.append(Table("ioc", "Các đợt IoC đã tiếp nhận",
                     ["STT", "Nguồn", "Văn bản (công văn)", "Thời điểm tiếp nhận",
                      "Số chỉ dấu (IoC)", "Chỉ dấu mới"],
                     [[i + 1, b.source, b.ref or "—", _local(b.received, data), b.entries,
                       b.new_entries] for i, b in enumerate(ioc.batches)],
                     note=("Không tiếp nhận đợt IoC nào trong kỳ." if ioc.available
                           else f"{NO_DATA} (kho IoC chưa được khởi tạo)."),
                     numeric={0, 4, 5}))
    blocks = data.blocks
    out.append(Table("chan", "Địa chỉ đã chặn",
                     ["Chỉ tiêu", "Số lượng"],
                     [["Địa chỉ bị chặn trong kỳ", blocks.blocked],
                      ["Trong đó chặn lần đầu", blocks.new],
                      ["Yêu cầu chặn bị từ chối (danh sách cho phép)", blocks.refused],
                      ["Đang bị chặn cuối kỳ", blocks.active_at_end]]
                     + [[f"Theo văn bản/nguồn: {ref}", n] for ref, n in blocks.by_ref.items()]
                     if blocks.available else [],
                     note=f"{NO_DATA} (chưa cấu hình chặn địa chỉ).", numeric={1}))
    inc = data.incidents
    out.append(Table("su_co", "Sự cố an toàn thông tin",
                     ["Chỉ tiêu", "Số lượng"],
                     [["Sự cố mới trong kỳ", inc.opened],
                      ["Trong đó sự cố nghiêm trọng", inc.serious],
                      ["Sự cố đã đóng trong kỳ", inc.closed],
                      ["Sự cố còn mở cuối kỳ", inc.open_at_end],
                      ["Thông báo sự cố đúng hạn (5 ngày từ khi phát hiện)", inc.notify_on_time],
                      ["Thông báo sự cố trễ hạn", inc.notify_late],
                      ["Thông báo sự cố quá hạn chưa gửi", inc.notify_overdue],
                      ["Báo cáo kết thúc đúng hạn (5 ngày sau ứng cứu)", inc.report_on_time],
                      ["Báo cáo kết thúc trễ hạn", inc.report_late],
                      ["Báo cáo kết thúc quá hạn chưa gửi", inc.report_overdue]]
                     if inc.available else [],
                     note=f"{NO_DATA} (chưa có cơ sở dữ liệu sự cố).", numeric={1}))
    ex = data.exchanges
    out.append(Table("lop_4", "Chia sẻ dữ liệu giám sát với Trung tâm quốc gia (lớp 4)",
                     ["Chỉ tiêu", "Giá trị"],
                     [["Lượt trao đổi trong kỳ", ex.total],
                      ["Thành công", ex.succeeded],
                      ["Không thành công", ex.failed],
                      ["Số đối tượng đã gửi", ex.objects],
                      ["Lần trao đổi thành công gần nhất", _last_exchange(data)]]
                     if ex.available else [],
                     note=f"{NO_DATA} (chưa cấu hình chia sẻ lớp 4).", numeric={1}))
    return out


def _last_exchange(data: ReportData) -> str:
    ex = data.exchanges
    if ex.last_success is None:
        return "chưa có"
    whom = ex.last_success_recipient or ex.last_success_target
    return _local(ex.last_success, data) + (f" ({whom})" if whom else "")


def view(data: ReportData) -> dict[str, Any]:
    """The formatted texts the templates use."""
    zone = local_zone(data.period.timezone)
    fp_share = (100.0 * data.false_positives / data.total) if data.total else None
    summary = (f"Trong kỳ, hệ thống ghi nhận tổng số {fmt_int(data.total)} cảnh báo"
               + (f", gồm {data.severity_total_sentence}." if data.total else "."))
    handling = (f"Số cảnh báo đã xử lý: {fmt_int(data.handled)}; đã tiếp nhận, đang xử lý: "
                f"{fmt_int(data.acknowledged)}; cảnh báo nhầm: "
                f"{fmt_int(data.false_positives)}"
                + (f" ({fmt_pct(fp_share)} tổng số cảnh báo)." if fp_share is not None else "."))
    trend_parts = []
    for t in data.trend:
        if t.previous or t.current:
            word = "tăng" if t.change > 0 else "giảm" if t.change < 0 else "không đổi"
            pct = (f" ({fmt_pct(t.percent, signed=True)})" if t.percent is not None
                   else " (kỳ trước không có)")
            trend_parts.append(f"mức {SEVERITY_LABELS[t.severity]} {word}{pct}")
    trend = ("So với kỳ trước: " + "; ".join(trend_parts) + ".") if trend_parts else ""
    if data.total and not data.previous_total:
        trend = (f"Kỳ trước ({fmt_date(data.previous.first)} – {fmt_date(data.previous.last)}) "
                 "không có cảnh báo để so sánh.")
    return {
        "title": nfc(data.title),
        "kind": data.period.kind,
        "period_text": nfc(f"({data.period.range_text})"),
        "unit": data.unit,
        "generated": fmt_datetime(data.generated_at, zone),
        "source": {"store": "kho cảnh báo nội bộ (SQLite)",
                   "elasticsearch": "Elasticsearch"}.get(data.source, data.source),
        "summary": nfc(summary),
        "kind_sentences": [nfc(s) for s in data.kind_sentences()],
        "handling": nfc(handling),
        "trend": nfc(trend),
        "tables": tables(data),
        "version": __version__,
    }


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(table: Table) -> list[str]:
    if not table.rows:
        return [f"_{table.note}_", ""]
    lines = ["| " + " | ".join(_md_escape(h) for h in table.headers) + " |",
             "|" + "|".join("---:" if i in table.numeric else "---"
                            for i in range(len(table.headers))) + "|"]
    for row in table.rows:
        lines.append("| " + " | ".join(_md_escape(_cell(c)) for c in row) + " |")
    lines.append("")
    return lines


def render_markdown(data: ReportData) -> str:
    v = view(data)
    lines = [f"# {v['title']}", ""]
    if data.period.kind != "weekly":
        lines += [f"_{v['period_text']}_", ""]
    if v["unit"]:
        lines += [f"Đơn vị: **{v['unit']}**", ""]
    lines += [f"Ngày lập: {v['generated']} — nguồn số liệu: {v['source']}", "",
              "## 1. Tình hình chung", "", v["summary"], ""]
    lines += [f"- {s}" for s in v["kind_sentences"]]
    lines += ["", v["handling"], ""]
    if v["trend"]:
        lines += [v["trend"], ""]
    for i, table in enumerate(v["tables"], start=2):
        lines += [f"## {i}. {table.title}", ""]
        lines += _md_table(table)
    lines += [f"_Báo cáo do socd {v['version']} tạo tự động._", ""]
    return nfc("\n".join(lines))


def _environment() -> Any:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("socd.reports", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def letterhead(data: ReportData, documents: DocumentsConfig | None = None,
               number: str | None = None) -> Letterhead:
    """The report's fixed parts from the ``documents:`` section (its defaults when None),
    dated the day the report was generated, in the report's zone."""
    from socd.config.documents import DocumentsConfig
    from socd.reports.official import letterhead as official_letterhead

    zone = local_zone(data.period.timezone)
    return official_letterhead(
        documents or DocumentsConfig(), "report", title=data.title, number=number,
        when=data.generated_at.astimezone(zone),
        subtitle="" if data.period.kind == "weekly" else f"({data.period.range_text})")


def render_html(data: ReportData, charts: dict[str, bytes] | None = None, *,
                head: Letterhead | None = None) -> str:
    """The self-contained HTML report (charts drawn unless given), in the official layout
    (``head``: :func:`letterhead` with the default ``documents:`` unless given)."""
    from socd.reports import charts as charts_mod

    pngs = charts if charts is not None else charts_mod.all_charts(data)
    images = {name: charts_mod.data_uri(png) for name, png in pngs.items()}
    template = _environment().get_template("report.html.j2")
    return nfc(template.render(v=view(data), images=images, cell=_cell,
                               h=head or letterhead(data)))


def pdf_unavailable() -> str | None:
    """Why WeasyPrint cannot be loaded here (``ImportError: ...``, or the ``OSError`` cffi
    raises when libpango is missing), or None when PDF reports can be produced."""
    try:
        import weasyprint  # noqa: F401
    except (ImportError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def check_formats(config: Config) -> None:
    """Raise :class:`ConfigError` when the scheduled reports (``reports:`` of a loaded
    configuration) ask for a format this machine cannot produce: `pdf` without
    WeasyPrint or its libraries. The default formats are ``[html, pdf]``, so without
    this check the first Monday report failed long after ``check-config`` said OK.
    """
    reports = config.document.reports
    if not reports.enabled or "pdf" not in reports.formats:
        return
    why = pdf_unavailable()
    if why is None:
        return
    others = [f for f in reports.formats if f != "pdf"] or ["html"]
    raise ConfigError([ConfigProblem(
        config.file, "reports.formats",
        f"pdf is configured (the default formats are [html, pdf]) but WeasyPrint cannot be "
        f"loaded ({why})",
        f"{PDF_HINT}; or leave PDF out: `formats: [{', '.join(others)}]`")])


def render_pdf(data: ReportData, html: str | None = None, *,
               head: Letterhead | None = None) -> bytes:
    try:
        import weasyprint
    except (ImportError, OSError) as exc:
        raise RenderError(f"{PDF_HINT} ({type(exc).__name__}: {exc})") from exc
    document = weasyprint.HTML(string=html or render_html(data, head=head), base_url=".")
    return bytes(document.write_pdf())


def docx_blocks(data: ReportData, charts: dict[str, bytes] | None = None) -> list[Block]:
    """The report's body for Word: the sections of the HTML, the same :func:`tables`."""
    from socd.reports import charts as charts_mod
    from socd.reports.word import Bullets, Grid, Heading, Para, Picture

    v = view(data)
    pngs = charts if charts is not None else charts_mod.all_charts(data)
    blocks: list[Block] = []
    if v["unit"]:
        blocks.append(Para(f"Đơn vị: {v['unit']}"))
    blocks += [Para(f"Ngày lập: {v['generated']} — nguồn số liệu: {v['source']}", italic=True),
               Heading("1. Tình hình chung"), Para(v["summary"]),
               Bullets(v["kind_sentences"]), Para(v["handling"])]
    if v["trend"]:
        blocks.append(Para(v["trend"]))
    blocks += [Picture(pngs[name]) for name in ("daily", "kinds") if name in pngs]
    for i, table in enumerate(v["tables"], start=2):
        blocks.append(Heading(f"{i}. {table.title}"))
        if table.key == "luat" and table.rows and "rules" in pngs:
            blocks.append(Picture(pngs["rules"]))
        if table.rows:
            blocks.append(Grid(table.headers, [[_cell(c) for c in row] for row in table.rows],
                               frozenset(table.numeric)))
        else:
            blocks.append(Para(table.note, italic=True))
    return blocks


def render_docx(data: ReportData, *, head: Letterhead | None = None) -> bytes:
    """The report as a Word document in the official layout (agencies edit and sign it)."""
    from socd.reports.word import write

    return write(head or letterhead(data), docx_blocks(data))


def _summary_sheet(ws: Any, data: ReportData, v: dict[str, Any]) -> None:
    from openpyxl.styles import Font

    ws.title = "Tổng hợp"
    bold = Font(bold=True)
    ws.append([v["title"]])
    ws["A1"].font = Font(bold=True, size=13)
    ws.append([v["period_text"]])
    if v["unit"]:
        ws.append(["Đơn vị", v["unit"]])
    ws.append(["Ngày lập", v["generated"]])
    ws.append(["Nguồn số liệu", v["source"]])
    ws.append([])
    ws.append([v["summary"]])
    for sentence in v["kind_sentences"]:
        ws.append([sentence])
    ws.append([v["handling"]])
    if v["trend"]:
        ws.append([v["trend"]])
    ws.append([])
    header = ["Chỉ tiêu", "Số lượng"]
    ws.append(header)
    for c in ws[ws.max_row]:
        c.font = bold
    rows: list[tuple[str, int]] = [("Tổng số cảnh báo", data.total)]
    rows += [(f"Cảnh báo mức độ {SEVERITY_LABELS[s]}", data.by_severity.get(s, 0))
             for s in SEVERITY_ORDER]
    rows += [("Cảnh báo nhầm", data.false_positives),
             ("Cảnh báo đã tiếp nhận", data.acknowledged), ("Cảnh báo đã xử lý", data.handled),
             ("Tổng số cảnh báo kỳ trước", data.previous_total)]
    if data.blocks.available:
        rows.append(("Địa chỉ đã chặn", data.blocks.blocked))
    if data.ioc.available:
        rows.append(("Số đợt IoC tiếp nhận", len(data.ioc.batches)))
    if data.incidents.available:
        rows += [("Sự cố mới", data.incidents.opened), ("Sự cố đã đóng", data.incidents.closed)]
    for name, value in rows:
        ws.append([name, value])
        ws.cell(ws.max_row, 2).number_format = "#,##0"
    ws.column_dimensions["A"].width = 60
    ws.column_dimensions["B"].width = 16


def render_xlsx(data: ReportData) -> bytes:
    """A workbook: a summary sheet ("Tổng hợp") and one sheet per table."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font, PatternFill

    v = view(data)
    wb = Workbook()
    _summary_sheet(wb.active, data, v)
    bold = Font(bold=True)
    fill = PatternFill("solid", fgColor="DDE5F0")
    for table in v["tables"]:
        sheet = wb.create_sheet(_sheet_name(SHEETS.get(table.key, table.title),
                                            wb.sheetnames))
        sheet.append([table.title])
        sheet["A1"].font = Font(bold=True, size=12)
        if not table.rows:
            sheet.append([table.note])
            continue
        sheet.append(table.headers)
        for c in sheet[2]:
            c.font = bold
            c.fill = fill
            c.alignment = Alignment(wrap_text=True, vertical="top")
        for row in table.rows:
            sheet.append(row)
            for i, value in enumerate(row):
                if isinstance(value, int) and not isinstance(value, bool):
                    sheet.cell(sheet.max_row, i + 1).number_format = "#,##0"
        for i, h in enumerate(table.headers):
            width = max([len(h), *(len(_cell(r[i])) for r in table.rows)])
            sheet.column_dimensions[chr(ord("A") + i)].width = min(60, max(10, width + 2))
        sheet.freeze_panes = "A3"
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _sheet_name(title: str, taken: Sequence[str]) -> str:
    name = "".join(ch for ch in title if ch not in "[]:*?/\\")[:31].strip()
    base, n = name, 2
    while name in taken:
        suffix = f" {n}"
        name = base[: 31 - len(suffix)] + suffix
        n += 1
    return name


def render(data: ReportData, fmt: str, *, documents: DocumentsConfig | None = None,
           number: str | None = None) -> bytes:
    """One format as bytes (text formats UTF-8). ``documents`` (the config's
    ``documents:`` section, its defaults when None) and ``number`` (the document's
    number, else left blank for the clerk) fill the official layout of html, pdf, docx.
    """
    if fmt == "md":
        return render_markdown(data).encode("utf-8")
    if fmt == "xlsx":
        return render_xlsx(data)
    head = letterhead(data, documents, number)
    if fmt == "html":
        return render_html(data, head=head).encode("utf-8")
    if fmt == "pdf":
        return render_pdf(data, head=head)
    if fmt == "docx":
        return render_docx(data, head=head)
    raise RenderError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")
