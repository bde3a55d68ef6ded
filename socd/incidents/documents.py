"""The incident documents: the initial notification and the final report (md, html, pdf,
docx).

``notification`` is the "Báo cáo ban đầu sự cố" sent to the authority within 5 days of
discovery; ``final`` is the "Báo cáo kết thúc ứng cứu sự cố" sent within 5 days after
the response ends (Circular 20/2017/TT-BTTTT). Both carry what the forms ask for: the
reporting organisation and contact, time of discovery, the affected system and its
security level, description, impact (and whether the incident is serious), the
indicators of compromise from the linked alerts, the actions taken by layer 1 (on-site)
and layer 2 (SOC), and the status. The templates are package data
(``socd/incidents/templates``); the PDF is WeasyPrint's rendering of the HTML. HTML, PDF
and DOCX are in the official layout of Decree 30/2020/NĐ-CP, shared with the reports
(:mod:`socd.reports.official`, the ``documents:`` section; the .docx through
:mod:`socd.reports.word`): letterhead, number, place and date, title, recipients and
signature, in Times New Roman (in the PDF Liberation Serif / DejaVu Serif where it is
missing, so Vietnamese diacritics survive). Markdown is the working copy without them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Literal
from zoneinfo import ZoneInfo

from socd.config import ContactConfig
from socd.incidents.model import (
    LAYER_LABELS,
    Deadline,
    Incident,
    parse,
)
from socd.incidents.store import IncidentError

if TYPE_CHECKING:
    from socd.config.documents import DocumentsConfig
    from socd.reports.word import Block

Kind = Literal["notification", "final"]
Format = Literal["md", "html", "pdf", "docx"]
FORMATS: Final = ("md", "html", "pdf", "docx")

TITLES: Final = {
    "notification": "BÁO CÁO BAN ĐẦU SỰ CỐ AN TOÀN THÔNG TIN MẠNG",
    "final": "BÁO CÁO KẾT THÚC ỨNG CỨU SỰ CỐ AN TOÀN THÔNG TIN MẠNG",
}
_HASH_FIELDS: Final = ("file.hash.md5", "file.hash.sha1", "file.hash.sha256",
                       "process.hash.md5", "process.hash.sha1", "process.hash.sha256")


@dataclass(frozen=True, slots=True)
class Ioc:
    kind: str  # ip, domain, url, hash, other
    value: str
    source: str  # where it was seen: "socd.ioc.values", "source.ip"...


def collect_iocs(events: Iterable[dict[str, Any]]) -> list[Ioc]:
    """IoCs of the linked alerts: matched IoC values, source/destination addresses,
    domains, URLs and file hashes; each value once, in first-seen order."""
    from socd import netaddr
    from socd.event import get

    seen: dict[str, Ioc] = {}

    def add(value: Any, source: str, kind: str | None = None) -> None:
        if value in (None, "") or isinstance(value, dict):
            return
        for v in value if isinstance(value, list) else [value]:
            text = str(v).strip()
            if not text or text in seen:
                continue
            k = kind
            if k is None:
                if netaddr.is_address(text):
                    k, text = "ip", netaddr.canonical_address(text, count=False)
                else:
                    k = ("hash" if len(text) in (32, 40, 64) and all(
                        c in "0123456789abcdefABCDEF" for c in text)
                         else "url" if "://" in text else "domain" if "." in text else "other")
            seen[text] = Ioc(k, text, source)

    for event in events:
        add(get(event, "socd.ioc.values"), "socd.ioc.values")
        add(get(event, "source.ip"), "source.ip", "ip")
        add(get(event, "destination.ip"), "destination.ip", "ip")
        add(get(event, "destination.domain"), "destination.domain", "domain")
        add(get(event, "dns.question.name"), "dns.question.name", "domain")
        add(get(event, "url.full"), "url.full", "url")
        for path in _HASH_FIELDS:
            add(get(event, path), path, "hash")
    return list(seen.values())


def context(incident: Incident, kind: Kind, *, events: list[dict[str, Any]],
            missing_alerts: list[str], contact: ContactConfig, zone: str,
            now: datetime | None = None, documents: DocumentsConfig | None = None,
            number: str | None = None) -> dict[str, Any]:
    """Everything the templates show, already formatted (Vietnamese, local time).

    ``documents`` (the config's ``documents:`` section, its defaults when None) and
    ``number`` (the document's number, else left blank for the clerk) fill the official
    layout's fixed parts (``official``), dated ``now`` in ``zone``."""
    from socd.config.documents import DocumentsConfig
    from socd.reports.official import letterhead

    now = now or datetime.now(UTC)
    tz = ZoneInfo(zone)

    def t(text: str | None) -> str:
        value = parse(text)
        return value.astimezone(tz).strftime("%H:%M ngày %d/%m/%Y") if value else "—"

    from socd.severity import Severity

    def severity(code: str | None) -> str:
        try:
            return Severity(code).label if code else "—"
        except ValueError:
            return code or "—"

    alerts = []
    for e in events:
        from socd.event import get

        alerts.append({"id": str(get(e, "event.hash", ""))[:10],
                       "time": t(get(e, "@timestamp")),
                       "severity": severity(get(e, "socd.severity")),
                       "rule": get(e, "rule.name") or get(e, "rule.id") or "—",
                       "host": get(e, "host.name") or get(e, "destination.ip") or "—"})
    level = incident.system_level
    return {
        "kind": kind,
        "title": TITLES[kind],
        "official": letterhead(documents or DocumentsConfig(), "incident", title=TITLES[kind],
                               doc_type="", subtitle=incident.title, number=number,
                               when=now.astimezone(tz)),
        "generated": now.astimezone(tz).strftime("%H:%M ngày %d/%m/%Y"),
        "zone": zone,
        "incident": incident,
        "contact": contact,
        "discovered": t(incident.discovered_at),
        "opened": t(incident.opened_at),
        "response_ended": t(incident.response_ended_at),
        "closed": t(incident.closed_at),
        "notify_due": t(incident.notify_due),
        "report_due": t(incident.report_due),
        "notified": t(incident.notified_at),
        "system": incident.system_name or "—",
        "level": f"Cấp độ {level}" if level else "—",
        "national_critical": incident.national_critical,
        "severity": severity(incident.severity),
        "status": incident.status_label(),
        "impacts": incident.impact_labels(),
        "beyond_capacity": incident.beyond_capacity,
        "serious": incident.serious,
        "iocs": collect_iocs(events),
        "alerts": alerts,
        "missing_alerts": missing_alerts,
        "actions": [{"time": t(a.ts), "layer": LAYER_LABELS.get(a.layer, str(a.layer)),
                     "by": a.by, "text": a.text} for a in incident.actions],
        "deadline": Deadline.NOTIFICATION if kind == "notification" else Deadline.FINAL_REPORT,
        "compliance": incident.compliance(
            Deadline.NOTIFICATION if kind == "notification" else Deadline.FINAL_REPORT, now),
    }


def _environment() -> Any:
    import jinja2

    # The reports' templates give the official layout's macros (official.html.j2).
    return jinja2.Environment(
        loader=jinja2.ChoiceLoader([jinja2.PackageLoader("socd.incidents", "templates"),
                                    jinja2.PackageLoader("socd.reports", "templates")]),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",),
                                            default_for_string=False),
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        keep_trailing_newline=True)


def render(ctx: dict[str, Any], fmt: Format) -> bytes:
    """The document as bytes: UTF-8 Markdown or HTML, a PDF or a Word document."""
    env = _environment()
    if fmt == "md":
        return str(env.get_template("incident.md.j2").render(**ctx)).encode()
    if fmt == "docx":
        from socd.reports.word import write

        return write(ctx["official"], docx_blocks(ctx))
    html = str(env.get_template("incident.html.j2").render(**ctx))
    if fmt == "html":
        return html.encode()
    return pdf(html)


def pdf(html: str) -> bytes:
    try:
        from weasyprint import HTML
    except ImportError as exc:
        raise IncidentError(f"PDF output needs WeasyPrint, which cannot be loaded ({exc})",
                            hint="install the pdf extra (pip install 'socd[pdf]') and "
                            "Pango (Debian: libpango-1.0-0), or use --format html") from exc
    return bytes(HTML(string=html).write_pdf())


def _rows(pairs: list[tuple[str, str]]) -> Block:
    from socd.reports.word import Grid

    return Grid((), [list(p) for p in pairs])


def docx_blocks(ctx: dict[str, Any]) -> list[Block]:
    """The document's body for Word: the sections of the HTML template, in its words."""
    from socd.reports.word import Bullets, Grid, Heading, Para

    inc, contact = ctx["incident"], ctx["contact"]
    level = ctx["level"] + (" (hệ thống thông tin quan trọng quốc gia)"
                            if ctx["national_critical"] else "")
    status = [("Trạng thái", ctx["status"]), ("Người phụ trách", inc.assignee or "—")]
    if ctx["kind"] == "notification":
        status.append(("Hạn báo cáo ban đầu", ctx["notify_due"]))
    else:
        status += [("Thời điểm kết thúc ứng cứu", ctx["response_ended"]),
                   ("Đã báo cáo ban đầu", ctx["notified"]),
                   ("Hạn báo cáo kết thúc", ctx["report_due"])]
    alerts = [[a["id"], a["time"], a["severity"], a["rule"], a["host"]] for a in ctx["alerts"]]
    alerts += [[m[:10], "không còn trong kho cảnh báo", "", "", ""]
               for m in ctx["missing_alerts"]]
    return [
        Para(f"Mã sự cố: {inc.id} — Ngày lập: {ctx['generated']} (giờ {ctx['zone']})",
             italic=True),
        Heading("1. Đơn vị báo cáo và người liên hệ"),
        _rows([("Đơn vị", contact.organisation or "—"), ("Người liên hệ", contact.person or "—"),
               ("Điện thoại", contact.phone or "—"), ("Thư điện tử", contact.email or "—")]),
        Heading("2. Thông tin sự cố"),
        _rows([("Tên sự cố", inc.title), ("Thời điểm phát hiện", ctx["discovered"]),
               ("Đơn vị bị ảnh hưởng", inc.unit or "—"), ("Hệ thống bị ảnh hưởng", ctx["system"]),
               ("Cấp độ an toàn hệ thống thông tin", level),
               ("Mức độ cảnh báo cao nhất", ctx["severity"]),
               ("Mô tả", inc.description or "—")]),
        Heading("3. Ảnh hưởng"),
        Bullets([*(ctx["impacts"] or ["Chưa xác định"]),
                 "Đơn vị tự xử lý được: " + ("Không — đề nghị hỗ trợ ứng cứu"
                                             if ctx["beyond_capacity"] else "Có"),
                 "Sự cố nghiêm trọng (Quyết định 05/2017/QĐ-TTg): "
                 + ("Có" if ctx["serious"] else "Không")]),
        Heading("4. Dấu hiệu nhận biết (IoC)"),
        Grid(("Loại", "Giá trị", "Nguồn"), [[i.kind, i.value, i.source] for i in ctx["iocs"]])
        if ctx["iocs"] else Para("Không có"),
        Heading("5. Cảnh báo liên quan"),
        Grid(("Mã", "Thời gian", "Mức độ", "Quy tắc", "Máy/địa chỉ"), alerts)
        if alerts else Para("Không có"),
        Heading("6. Các biện pháp đã thực hiện"),
        Grid(("Thời gian", "Lớp", "Người thực hiện", "Nội dung"),
             [[a["time"], a["layer"], a["by"], a["text"]] for a in ctx["actions"]])
        if ctx["actions"] else Para("Chưa có"),
        Heading("7. Tình trạng"),
        _rows(status),
    ]
