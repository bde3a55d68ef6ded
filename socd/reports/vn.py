"""Vietnamese formatting for reports: numbers, percentages, dates, labels.

Conventions of the national reports: ``.`` groups thousands (35.576), ``,`` is the
decimal mark (12,5 %), dates are ``dd/mm/yyyy`` and times ``HH:MM`` in
Asia/Ho_Chi_Minh. Every text is NFC, so search and PDF text extraction see the same
characters the template wrote.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from datetime import date, datetime, timedelta, timezone, tzinfo

from socd.severity import Severity

SEVERITY_ORDER: tuple[str, ...] = ("low", "medium", "high", "critical")
SEVERITY_LABELS: dict[str, str] = {s.value: s.label for s in Severity}
ASSET_KINDS: tuple[str, ...] = ("server", "workstation", "network", "application", "unknown")
ASSET_LABELS: dict[str, str] = {
    "server": "máy chủ", "workstation": "máy trạm", "network": "thiết bị mạng",
    "application": "ứng dụng", "unknown": "không rõ loại",
}
# "hệ thống giám sát máy chủ": the wording of the provincial reports.
MONITORING_LABELS: dict[str, str] = {
    "server": "Giám sát máy chủ", "workstation": "Giám sát máy trạm",
    "network": "Giám sát mạng", "application": "Giám sát ứng dụng",
    "unknown": "Nguồn khác",
}
# The subject of the per-system sentence, as the provincial reports write it:
# "hệ thống giám sát máy chủ có 35.576 cảnh báo mức độ trung bình, ...".
SENTENCE_SUBJECTS: dict[str, str] = {
    "server": "Hệ thống giám sát máy chủ", "workstation": "Hệ thống giám sát máy trạm",
    "network": "Hệ thống giám sát mạng", "application": "Hệ thống giám sát ứng dụng",
    "unknown": "Các nguồn khác (không rõ loại tài sản)",
}
TIMEZONE_NAME = "Asia/Ho_Chi_Minh"


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def local_zone(name: str = TIMEZONE_NAME) -> tzinfo:
    """The zone by name; a fixed +07:00 where the tz database is missing (no DST)."""
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo(name)
    except (ImportError, KeyError, ValueError):
        return timezone(timedelta(hours=7), "+07")


def fmt_int(value: int | float) -> str:
    """``35576`` -> ``"35.576"``; negative numbers keep their sign."""
    number = round(value)
    text = f"{abs(number):,}".replace(",", ".")
    return f"-{text}" if number < 0 else text


def fmt_decimal(value: float, digits: int = 1) -> str:
    """``1234.5`` -> ``"1.234,5"``."""
    rounded = round(value, digits)
    whole, _, frac = f"{abs(rounded):,.{digits}f}".partition(".")
    out = whole.replace(",", ".") + ("," + frac if frac else "")
    return f"-{out}" if rounded < 0 else out


def fmt_pct(value: float | None, digits: int = 1, *, signed: bool = False) -> str:
    """A percentage: ``12,5 %``; ``signed`` adds ``+`` to increases; None -> ``—``."""
    if value is None:
        return "—"
    text = fmt_decimal(value, digits)
    if signed and round(value, digits) > 0:
        text = "+" + text
    return f"{text} %"


def fmt_date(value: date | datetime) -> str:
    return f"{value.day:02d}/{value.month:02d}/{value.year:04d}"


def fmt_time(value: datetime, zone: tzinfo | None = None) -> str:
    """HH:MM in ``zone`` (default Asia/Ho_Chi_Minh)."""
    return value.astimezone(zone or local_zone()).strftime("%H:%M")


def fmt_datetime(value: datetime, zone: tzinfo | None = None) -> str:
    local = value.astimezone(zone or local_zone())
    return f"{fmt_time(local, local.tzinfo)} {fmt_date(local)}"


def severity_label(code: str | None) -> str:
    return SEVERITY_LABELS.get(code or "", code or "không rõ")


def asset_label(kind: str | None) -> str:
    return ASSET_LABELS.get(kind or "unknown", kind or "không rõ loại")


def join_vi(parts: Sequence[str]) -> str:
    """``a, b và c`` (Vietnamese enumeration)."""
    parts = list(parts)
    if not parts:
        return ""
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " và " + parts[-1]


def severity_sentence(counts: dict[str, int], *, all_levels: bool = False) -> str:
    """``35.576 cảnh báo mức độ trung bình, 1.901 cảnh báo mức độ cao và 432 cảnh báo
    mức độ nghiêm trọng`` (levels with no alert are left out unless ``all_levels``;
    none at all -> ``không có cảnh báo``)."""
    parts = [f"{fmt_int(counts.get(s, 0))} cảnh báo mức độ {SEVERITY_LABELS[s]}"
             for s in SEVERITY_ORDER if all_levels or counts.get(s, 0)]
    return nfc(join_vi(parts)) if parts else "không có cảnh báo"
