"""Rendering notifications from Jinja2 templates.

Templates run in Jinja2's :class:`~jinja2.sandbox.SandboxedEnvironment`: a
template file cannot reach Python internals, so operators may edit them.
Autoescaping is on for ``html.*`` templates only (title and text are plain).

Lookup order for ``<kind>.<lang>.j2`` (``kind`` = title, text, html): the
operator's ``templates_dir`` first, then the built-in set in
``socd/notify/templates``. When a Vietnamese template is missing or fails to
render, the English one is used (logged once per template); when that fails
too, a plain built-in format is used, so a broken template never loses an
alert. Every template sees the variables described in docs/notifications.md,
built by :func:`context`.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from datetime import datetime
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
import structlog
from jinja2.sandbox import SandboxedEnvironment

from socd.event import Event
from socd.ioc import IOC_MATCH_ID, IOC_MATCH_NAME
from socd.notify.routing import getter, severity_of, severity_rank
from socd.severity import Severity
from socd.tz import iso_or_none, parse_iso

log = structlog.get_logger("socd.notify.render")

TIMEZONE = ZoneInfo("Asia/Ho_Chi_Minh")
KINDS = ("title", "text", "html")
TITLE_MAX_CHARS = 200

SEVERITY_EN = {"low": "low", "medium": "medium", "high": "high", "critical": "critical"}
SEVERITY_ICON = {"low": "🔵", "medium": "🟡", "high": "🟠", "critical": "🔴"}
ASSET_KIND = {
    "vi": {"server": "máy chủ", "workstation": "máy trạm", "network": "thiết bị mạng",
           "application": "ứng dụng", "unknown": "không rõ loại"},
    "en": {"server": "server", "workstation": "workstation", "network": "network device",
           "application": "application", "unknown": "unknown asset"},
}
LAYER = {
    "vi": {1: "Lực lượng tại chỗ", 2: "Giám sát, bảo vệ chuyên nghiệp",
           3: "Kiểm tra, đánh giá độc lập", 4: "Kết nối giám sát quốc gia"},
    "en": {1: "on-site staff", 2: "professional monitoring", 3: "independent assessment",
           4: "national monitoring link"},
}
# Default suggested actions by severity, used when the alert's rule gives none
# (socd.response). Deadlines follow Circular 20/2017/TT-BTTTT: an incident is
# reported within 5 days of discovery.
ACTION = {
    "vi": {
        "critical": "Xử lý ngay: cô lập máy bị ảnh hưởng, chặn địa chỉ độc hại, báo Đội ứng cứu "
                    "sự cố. Nếu là sự cố: báo cáo trong 5 ngày kể từ khi phát hiện.",
        "high": "Xác minh trong ngày cùng đơn vị (lớp 1); nếu là sự cố: báo Đội ứng cứu sự cố, "
                "báo cáo trong 5 ngày kể từ khi phát hiện.",
        "medium": "Xác minh trong giờ làm việc; ghi nhận nếu là cảnh báo nhầm.",
        "low": "Theo dõi; tổng hợp vào báo cáo tuần.",
    },
    "en": {
        "critical": "Act now: isolate the affected host, block the malicious address, alert "
                    "the incident response team. If it is an incident: report within 5 days "
                    "of discovery.",
        "high": "Verify today with the unit (layer 1); if it is an incident: alert the incident "
                "response team, report within 5 days of discovery.",
        "medium": "Verify during working hours; record it if it is a false positive.",
        "low": "Watch; include it in the weekly report.",
    },
}
BLOCK_PREFIX = {"vi": "Chặn theo quy tắc", "en": "Blocked by the rule"}
# `what` of a message whose alerts come from several rules: the most severe rule, and
# how many others fired (the text lists each of them).
OTHER_RULES = {"vi": "{first} và {n} loại cảnh báo khác", "en": "{first} and {n} other alert types"}
# socd's own rule names, per language (stored alerts keep the name of their time).
OWN_RULES = {IOC_MATCH_ID: {"vi": IOC_MATCH_NAME, "en": "IoC match"}}

_get = {path: getter(path) for path in (
    "@timestamp", "message", "event.hash", "event.id", "event.action", "event.created",
    "rule.id", "rule.name", "rule.description", "host.name", "host.hostname", "host.ip",
    "source.ip", "source.port", "destination.ip", "destination.port", "socd.unit",
    "socd.asset_kind", "socd.layer", "socd.ioc.values", "socd.ioc.refs", "socd.response",
    "socd.actions.block", "user.name", "process.name", "file.name", "url.full",
    "dns.question.name", "observer.product")}


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _endpoint(ip: Any, port: Any) -> str:
    if not ip:
        return ""
    text = f"[{ip}]" if ":" in str(ip) and port is not None else str(ip)
    return f"{text}:{port}" if port is not None else text


def event_time(event: Event) -> datetime | None:
    for path in ("@timestamp", "event.created"):
        parsed = iso_or_none(_get[path](event))
        if parsed is not None:
            return parsed.astimezone(TIMEZONE)
    return None


def _duration(secs: Any, lang: str) -> str:
    try:
        value = int(secs)
    except (TypeError, ValueError):
        return ""
    if value % 86400 == 0:
        return f"{value // 86400} {'ngày' if lang == 'vi' else 'd'}"
    if value % 3600 == 0:
        return f"{value // 3600} {'giờ' if lang == 'vi' else 'h'}"
    return f"{value // 60} {'phút' if lang == 'vi' else 'min'}"


def suggested_action(event: Event, severity: str, lang: str) -> str:
    """The rule's own response text when the alert carries one, else the default for
    ``severity``; a rule's block action is named first."""
    own = _get["socd.response"](event)
    if isinstance(own, Mapping):
        own = own.get(lang) or own.get("vi") or own.get("en")
    text = str(own) if own else ACTION[lang][severity]
    blocks = [b for b in _list(_get["socd.actions.block"](event)) if isinstance(b, Mapping)]
    if blocks:
        values = ", ".join(
            f"{b.get('value')}" + (f" ({_duration(b.get('ttl_secs'), lang)})"
                                   if b.get("ttl_secs") else "") for b in blocks[:5])
        text = f"{BLOCK_PREFIX[lang]}: {values}. {text}"
    return text


def alert_view(event: Event, lang: str) -> dict[str, Any]:
    """What a template knows about one alert (see docs/notifications.md)."""
    severity = severity_of(event)
    when = event_time(event)
    hash_ = str(_get["event.hash"](event) or _get["event.id"](event) or "")
    host = _get["host.name"](event) or _get["host.hostname"](event)
    host_ips = _list(_get["host.ip"](event))
    if not host and host_ips:
        host = host_ips[0]
    src = _endpoint(_get["source.ip"](event), _get["source.port"](event))
    dst = _endpoint(_get["destination.ip"](event), _get["destination.port"](event))
    flow = f"{src} → {dst}" if src and dst else (src or dst)
    kind = str(_get["socd.asset_kind"](event) or "unknown")
    layer = _get["socd.layer"](event)
    rule_id = str(_get["rule.id"](event) or "")
    own = OWN_RULES.get(rule_id)
    rule_name = (own[lang] if own else None) or (
        _get["rule.name"](event) or _get["message"](event) or _get["event.action"](event) or "")
    return {
        "id": hash_[:12],
        "hash": hash_,
        "time": when.strftime("%d/%m/%Y %H:%M:%S") if when else "",
        "time_short": when.strftime("%H:%M") if when else "",
        "timestamp": when.isoformat() if when else "",
        "rule_id": rule_id,
        "rule_name": str(rule_name),
        "description": str(_get["rule.description"](event) or ""),
        "message": str(_get["message"](event) or ""),
        "severity": severity,
        "severity_label": Severity(severity).label if lang == "vi" else SEVERITY_EN[severity],
        "severity_icon": SEVERITY_ICON[severity],
        "host": str(host or ""),
        "host_ip": [str(ip) for ip in host_ips],
        "source_ip": _get["source.ip"](event),
        "source_port": _get["source.port"](event),
        "destination_ip": _get["destination.ip"](event),
        "destination_port": _get["destination.port"](event),
        "source": src,
        "destination": dst,
        "flow": flow,
        "unit": str(_get["socd.unit"](event) or ""),
        "asset_kind": kind,
        "asset_kind_label": ASSET_KIND[lang].get(kind, kind),
        "layer": layer,
        "layer_label": LAYER[lang].get(layer, "") if isinstance(layer, int) else "",
        "ioc_values": [str(v) for v in _list(_get["socd.ioc.values"](event))],
        "ioc_refs": [str(v) for v in _list(_get["socd.ioc.refs"](event))],
        "blocked": [str(b.get("value")) for b in _list(_get["socd.actions.block"](event))
                    if isinstance(b, Mapping)],
        "user": str(_get["user.name"](event) or ""),
        "process": str(_get["process.name"](event) or ""),
        "file": str(_get["file.name"](event) or ""),
        "url": str(_get["url.full"](event) or _get["dns.question.name"](event) or ""),
        "product": str(_get["observer.product"](event) or ""),
        "action": suggested_action(event, severity, lang),
        "event": event,
    }


def _fmt(stamp: str) -> str:
    return parse_iso(stamp, naive=None).strftime("%d/%m/%Y %H:%M")


def _period(stamps: Sequence[str]) -> str:
    """``16/11/2026 08:00–08:15`` (or with both dates when they differ)."""
    if not stamps:
        return ""
    first, last = _fmt(stamps[0]), _fmt(stamps[-1])
    if first == last:
        return first
    if first[:10] == last[:10]:
        return f"{first}–{last[11:]}"
    return f"{first} – {last}"


def _union(lists: Any, limit: int = 10) -> list[str]:
    out: list[str] = []
    for values in lists:
        for value in values:
            if value not in out:
                out.append(value)
    return out[:limit]


def _common(values: Sequence[Any]) -> Any:
    first = values[0] if values else None
    return first if all(v == first for v in values) else None


def context(alerts: Sequence[Event], *, lang: str, total: int, severity: str, route: str,
            group: Mapping[str, str], group_key: str, repeated: int = 0,
            after_quiet: bool = False) -> dict[str, Any]:
    """The variables of one message (``alerts`` are the ones it lists)."""
    views = [alert_view(a, lang) for a in alerts]
    rules = _rules(views)
    units = sorted({v["unit"] for v in views if v["unit"]})
    hosts = sorted({v["host"] for v in views if v["host"]})
    same_rule = _common([v["rule_id"] or v["rule_name"] for v in views]) is not None
    stamps = sorted(v["timestamp"] for v in views if v["timestamp"])
    first = views[0] if views else alert_view({}, lang)
    top = next((v for v in views if v["severity"] == severity), first)
    return {
        "lang": lang,
        "route": route,
        "group": dict(group),
        "group_key": group_key,
        "alerts": views,
        "first": first,
        "total": total,
        "shown": len(views),
        "more": max(0, total - len(views)),
        "repeated": repeated,
        "digest": total > 1,
        "after_quiet": after_quiet,
        "severity": severity,
        "severity_label": Severity(severity).label if lang == "vi" else SEVERITY_EN[severity],
        "severity_icon": SEVERITY_ICON[severity],
        "mixed_severity": _common([v["severity"] for v in views]) is None,
        "same_rule": same_rule,
        "what": _what(rules, lang),
        "rules": rules,
        "unit": units[0] if len(units) == 1 else "",
        "units": units,
        "host": hosts[0] if len(hosts) == 1 and all(v["host"] for v in views) else "",
        "hosts": hosts,
        "asset_kind_label": _common([v["asset_kind_label"] for v in views]) or "",
        "layer": _common([v["layer"] for v in views]),
        "layer_label": _common([v["layer_label"] for v in views]) or "",
        "first_time": _fmt(stamps[0]) if stamps else "",
        "last_time": _fmt(stamps[-1]) if stamps else "",
        "period": _period(stamps),
        "action": top["action"],
        "ioc_values": _union(v["ioc_values"] for v in views),
        "ioc_refs": _union(v["ioc_refs"] for v in views),
        "timezone": "Asia/Ho_Chi_Minh",
    }


def add_links(ctx: dict[str, Any], console_url: str) -> None:
    """``link`` of each alert (its page in the analyst console) and ``queue_link`` (the
    queue, filtered by the rule when the message has one): set only with
    ``console.base_url``, so messages without it stay as they were. The id is hex and
    the rule id is URL-encoded: event text never shapes the link."""
    from urllib.parse import quote, urlencode

    for view in ctx["alerts"]:
        if view["hash"]:
            view["link"] = f"{console_url}/alerts/{quote(view['hash'], safe='')}"
    first = ctx["first"]
    if first is not None and first["hash"] and "link" not in first:
        first["link"] = f"{console_url}/alerts/{quote(first['hash'], safe='')}"
    rule = first.get("rule_id") if ctx["same_rule"] else ""
    ctx["queue_link"] = f"{console_url}/alerts" + (f"?{urlencode({'rule': rule})}" if rule
                                                   else "")


def _rules(views: Sequence[Mapping[str, Any]]) -> list[str]:
    """The names of the rules that fired, once each, the most severe first (then in
    the order they fired)."""
    order = sorted(range(len(views)), key=lambda i: -severity_rank(views[i]["severity"]))
    names: list[str] = []
    for i in order:
        name = views[i]["rule_name"]
        if name and name not in names:
            names.append(name)
    return names


def _what(rules: Sequence[str], lang: str) -> str:
    if len(rules) <= 1:
        return rules[0] if rules else ""
    return OTHER_RULES[lang].format(first=rules[0], n=len(rules) - 1)


class Renderer:
    """Renders title, text and HTML of a message; thread-safe (the send queue's
    worker thread renders while the event loop runs)."""

    def __init__(self, language: str = "vi", templates_dir: str | None = None,
                 console_url: str | None = None) -> None:
        self.language = language
        self.templates_dir = templates_dir
        # The analyst console's address (console.base_url): messages link to the alert.
        self.console_url = console_url.rstrip("/") if console_url else None
        builtin = str(resources.files("socd.notify").joinpath("templates"))
        loaders: list[jinja2.BaseLoader] = []
        if templates_dir:
            loaders.append(jinja2.FileSystemLoader(templates_dir))
        loaders.append(jinja2.FileSystemLoader(builtin))
        self.env = SandboxedEnvironment(
            loader=jinja2.ChoiceLoader(loaders),
            autoescape=lambda name: name is not None and name.startswith("html"),
            trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False,
            undefined=jinja2.ChainableUndefined, auto_reload=False)
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    def problems(self) -> list[str]:
        """Templates that do not load or fail on a sample alert (``check-config``)."""
        out = []
        sample: Event = {
            "@timestamp": "2026-11-16T01:02:03Z", "message": "sample",
            "event": {"kind": "alert", "hash": "0123456789abcdef"},
            "rule": {"id": "sample", "name": "Sample", "description": "Sample alert"},
            "host": {"name": "srv-01"}, "source": {"ip": "203.0.113.9", "port": 40000},
            "destination": {"ip": "10.10.20.11", "port": 22},
            "socd": {"severity": "high", "layer": 2, "unit": "Unit", "asset_kind": "server"}}
        for alerts, total in (([sample], 1), ([sample, sample], 3)):
            for kind in KINDS:
                name = f"{kind}.{self.language}.j2"
                ctx = context(alerts, lang=self.language, total=total, severity="high",
                              route="sample", group={}, group_key="", repeated=1)
                try:
                    self.env.get_template(name).render(ctx)
                except Exception as exc:
                    problem = f"template {name}: {type(exc).__name__}: {exc}"
                    if problem not in out:
                        out.append(problem)
        return out

    def render(self, alerts: Sequence[Event], *, total: int, route: str,
               group: Mapping[str, str], group_key: str, repeated: int = 0,
               after_quiet: bool = False) -> tuple[str, str, str | None]:
        """Title (one line), plain text and HTML (None if no HTML template works)."""
        severity = max((severity_of(a) for a in alerts), key=severity_rank, default="medium")
        langs = [self.language, "en"] if self.language == "vi" else [self.language]
        contexts: dict[str, dict[str, Any]] = {}

        def ctx(lang: str) -> dict[str, Any]:
            if lang not in contexts:
                contexts[lang] = context(alerts, lang=lang, total=total, severity=severity,
                                         route=route, group=group, group_key=group_key,
                                         repeated=repeated, after_quiet=after_quiet)
                if self.console_url:
                    add_links(contexts[lang], self.console_url)
            return contexts[lang]

        out: dict[str, str | None] = {}
        for kind in KINDS:
            out[kind] = None
            for lang in langs:
                name = f"{kind}.{lang}.j2"
                try:
                    out[kind] = self.env.get_template(name).render(ctx(lang)).strip()
                    break
                except Exception as exc:
                    self._warn_once(name, exc)
        title = out["title"] or _plain_title(ctx(langs[-1]))
        text = out["text"] or _plain_text(ctx(langs[-1]))
        title = " ".join(title.split())
        if len(title) > TITLE_MAX_CHARS:
            title = title[:TITLE_MAX_CHARS - 1] + "…"
        return title, text, out["html"] or None

    def _warn_once(self, name: str, exc: Exception) -> None:
        with self._lock:
            if name in self._warned:
                return
            self._warned.add(name)
        log.warning("notification template unusable; falling back", template=name,
                    error=f"{type(exc).__name__}: {exc}", templates_dir=self.templates_dir)


def _plain_title(ctx: Mapping[str, Any]) -> str:
    return f"[socd] {ctx['total']} alert(s) {ctx['severity']} — {ctx['what']}"


def _plain_text(ctx: Mapping[str, Any]) -> str:
    lines = [_plain_title(ctx)]
    for a in ctx["alerts"]:
        lines.append(f"- {a['time']} {a['severity']} {a['rule_name']} {a['unit']} {a['host']} "
                     f"{a['flow']} [{a['id']}]")
    if ctx["more"]:
        lines.append(f"+{ctx['more']} more")
    return "\n".join(lines)
