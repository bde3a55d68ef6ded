"""The incident documents: the initial notification and the final report (md, html, pdf).

``notification`` is the "Báo cáo ban đầu sự cố" sent to the authority within 5 days of
discovery; ``final`` is the "Báo cáo kết thúc ứng cứu sự cố" sent within 5 days after
the response ends (Circular 20/2017/TT-BTTTT). Both carry what the forms ask for: the
reporting organisation and contact, time of discovery, the affected system and its
security level, description, impact (and whether the incident is serious), the
indicators of compromise from the linked alerts, the actions taken by layer 1 (on-site)
and layer 2 (SOC), and the status. The templates are package data
(``socd/incidents/templates``); the PDF is WeasyPrint's rendering of the HTML with the
DejaVu fonts, so Vietnamese diacritics survive.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo

from socd.config import ContactConfig
from socd.incidents.model import (
    LAYER_LABELS,
    Deadline,
    Incident,
    parse,
)
from socd.incidents.store import IncidentError

Kind = Literal["notification", "final"]
Format = Literal["md", "html", "pdf"]

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
            now: datetime | None = None) -> dict[str, Any]:
    """Everything the templates show, already formatted (Vietnamese, local time)."""
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

    return jinja2.Environment(
        loader=jinja2.PackageLoader("socd.incidents", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",),
                                            default_for_string=False),
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        keep_trailing_newline=True)


def render(ctx: dict[str, Any], fmt: Format) -> bytes:
    """The document as bytes: UTF-8 Markdown or HTML, or a PDF."""
    env = _environment()
    if fmt == "md":
        return str(env.get_template("incident.md.j2").render(**ctx)).encode()
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
