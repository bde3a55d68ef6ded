"""The CEF and LEEF formats: parsers and the mapping of their fields to events.

CEF (ArcSight Common Event Format)::

    CEF:Version|Device Vendor|Device Product|Device Version|Signature ID|Name|Severity|Extension

Header fields escape ``|`` and ``\\`` with a backslash; the extension is
``key=value`` pairs separated by spaces, where values may hold spaces and escape
``=``, ``\\``, and write line breaks as ``\\n`` / ``\\r``.

LEEF (IBM QRadar Log Event Extended Format) 1.0 and 2.0::

    LEEF:1.0|Vendor|Product|Version|EventID|key=value<TAB>key=value
    LEEF:2.0|Vendor|Product|Version|EventID|<delimiter>|key=value<delimiter>...

Pure functions, used by the ``syslog`` decoder for the payloads of syslog messages
(the ``cef`` decoder, :mod:`socd.decoders.cef`, is the syslog decoder requiring CEF):
this module imports neither decoder. See ``docs/sources/syslog.md`` for the field
mapping.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from socd.event import Event, put
from socd.netaddr import address_or_none
from socd.tz import parse_iso, parse_zone

_KEY = re.compile(r"(?:^|(?<=\s))([A-Za-z0-9_.\[\]-]{1,128})=")
_UNESCAPE = re.compile(r"\\(.)", re.S)
_UNESCAPE_MAP = {"n": "\n", "r": "\r", "t": "\t"}
_CEF_START = re.compile(r"CEF:\d{1,2}\|")
_LEEF_START = re.compile(r"LEEF:[12]\.0\|")

#: IANA protocol numbers (as firewalls write them) -> ECS ``network.transport``.
TRANSPORTS = {"6": "tcp", "17": "udp", "1": "icmp", "58": "ipv6-icmp", "47": "gre",
               "50": "esp", "132": "sctp"}

# CEF extension keys (short and long forms) -> ECS path and kind.
_CEF_MAP: dict[str, tuple[str, str]] = {
    "src": ("source.ip", "ip"), "sourceAddress": ("source.ip", "ip"),
    "dst": ("destination.ip", "ip"), "destinationAddress": ("destination.ip", "ip"),
    "spt": ("source.port", "port"), "sourcePort": ("source.port", "port"),
    "dpt": ("destination.port", "port"), "destinationPort": ("destination.port", "port"),
    "proto": ("network.transport", "transport"),
    "transportProtocol": ("network.transport", "transport"),
    "app": ("network.protocol", "lower"), "applicationProtocol": ("network.protocol", "lower"),
    "act": ("event.action", "str"), "deviceAction": ("event.action", "str"),
    "suser": ("user.name", "str"), "sourceUserName": ("user.name", "str"),
    "request": ("url.original", "str"), "requestURL": ("url.original", "str"),
    "msg": ("message", "str"), "message": ("message", "str"),
    "shost": ("source.domain", "str"), "sourceHostName": ("source.domain", "str"),
    "dhost": ("destination.domain", "str"), "destinationHostName": ("destination.domain", "str"),
    "in": ("source.bytes", "int"), "bytesIn": ("source.bytes", "int"),
    "out": ("destination.bytes", "int"), "bytesOut": ("destination.bytes", "int"),
    "dvchost": ("observer.hostname", "str"), "deviceHostName": ("observer.hostname", "str"),
    "cat": ("rule.category", "str"), "deviceEventCategory": ("rule.category", "str"),
    "fname": ("file.name", "str"), "fileName": ("file.name", "str"),
    "filePath": ("file.path", "str"),
    "fileHash": ("file.hash.sha256", "sha256"),
    "sproc": ("process.name", "str"), "sourceProcessName": ("process.name", "str"),
    "spid": ("process.pid", "int"), "sourceProcessId": ("process.pid", "int"),
    "outcome": ("event.outcome", "outcome"), "eventOutcome": ("event.outcome", "outcome"),
    "externalId": ("event.id", "str"),
}  # fmt: skip
_CEF_TIME_KEYS = ("rt", "deviceReceiptTime", "end", "endTime", "start", "startTime")
_CEF_SEVERITY_KEYS = ("deviceSeverity", "severity", "sev")

# LEEF attribute keys -> ECS path and kind.
_LEEF_MAP: dict[str, tuple[str, str]] = {
    "src": ("source.ip", "ip"), "dst": ("destination.ip", "ip"),
    "srcPort": ("source.port", "port"), "dstPort": ("destination.port", "port"),
    "proto": ("network.transport", "transport"),
    "usrName": ("user.name", "str"), "accountName": ("user.name", "str"),
    "url": ("url.original", "str"), "cat": ("rule.category", "str"),
    "action": ("event.action", "str"), "msg": ("message", "str"),
    "srcBytes": ("source.bytes", "int"), "dstBytes": ("destination.bytes", "int"),
    "identHostName": ("host.hostname", "str"), "domain": ("user.domain", "str"),
}  # fmt: skip

_MONTHS = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}
_CEF_DATE = re.compile(
    r"([A-Za-z]{3}) (\d{1,2})(?: (\d{4}))? (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?"
    r"(?: ([A-Za-z]{3,4}|[+-]\d{2}:?\d{2}))?$")


def unescape(value: str) -> str:
    """Undo CEF escaping: ``\\=`` ``\\|`` ``\\\\`` ``\\n`` ``\\r`` (others kept literally)."""
    if "\\" not in value:
        return value
    return _UNESCAPE.sub(lambda m: _UNESCAPE_MAP.get(m.group(1), m.group(1)), value)


def split_header(text: str, count: int) -> list[str] | None:
    """Split ``text`` at its first ``count`` unescaped pipes: ``count`` fields and the rest.

    Returns ``None`` when there are fewer pipes. Fields are unescaped; the rest is not.
    """
    if "\\" not in text:
        parts = text.split("|", count)
        return parts if len(parts) == count + 1 else None
    fields: list[str] = []
    start = i = 0
    n = len(text)
    while i < n and len(fields) < count:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "|":
            fields.append(unescape(text[start:i]))
            start = i + 1
        i += 1
    if len(fields) < count:
        return None
    fields.append(text[start:])
    return fields


def parse_extension(ext: str) -> dict[str, str]:
    """CEF extension ``k=v k2=v with spaces`` -> dict (values unescaped)."""
    out: dict[str, str] = {}
    matches = list(_KEY.finditer(ext))
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(ext)
        value = ext[m.end():end]
        value = value.rstrip(" ") if i + 1 < len(matches) else value.rstrip()
        out[m.group(1)] = unescape(value)
    return out


def find_cef(text: str) -> int:
    """Index of a ``CEF:<n>|`` header in ``text`` (-1 when there is none)."""
    if text.startswith("CEF:"):
        return 0
    idx = text.find("CEF:")
    if idx < 0:
        return -1
    m = _CEF_START.search(text, idx)
    return m.start() if m else -1


def find_leef(text: str) -> int:
    if text.startswith("LEEF:"):
        return 0
    idx = text.find("LEEF:")
    if idx < 0:
        return -1
    m = _LEEF_START.search(text, idx)
    return m.start() if m else -1


def parse_cef(text: str) -> dict[str, Any] | None:
    """Parse a ``CEF:...`` string into header fields and extension; ``None`` if not CEF."""
    if not text.startswith("CEF:"):
        return None
    parts = split_header(text[4:], 7)
    if parts is None:
        # Some senders drop the extension and its separating pipe.
        parts = split_header(text[4:], 6)
        if parts is None:
            return None
        parts.append("")
    version = parts[0].strip()
    if not version.isdigit():
        return None
    return {
        "version": version,
        "device_vendor": parts[1],
        "device_product": parts[2],
        "device_version": parts[3],
        "signature_id": parts[4],
        "name": parts[5],
        "severity": parts[6].strip(),
        "extension": parse_extension(parts[7]),
    }


def _leef_delimiter(spec: str) -> str | None:
    if len(spec) == 1:
        return spec
    low = spec.lower()
    if low in ("\\t", "tab"):
        return "\t"
    if low.startswith(("0x", "x")):
        try:
            return chr(int(low.lstrip("0x") or "0", 16) if low.startswith("x") else int(low, 16))
        except ValueError:
            return None
    return None


def parse_leef(text: str) -> dict[str, Any] | None:
    """Parse ``LEEF:1.0|...`` or ``LEEF:2.0|...``; ``None`` if not LEEF."""
    if text.startswith("LEEF:1.0|"):
        parts = split_header(text[9:], 4)
        if parts is None:
            return None
        attrs, delim = parts[4], "\t"
    elif text.startswith("LEEF:2.0|"):
        parts = split_header(text[9:], 5)
        if parts is None:
            return None
        found = _leef_delimiter(parts[4])
        if found is None:
            # The delimiter field is optional in practice: the rest is attributes.
            attrs, delim = parts[4] + "|" + parts[5], "\t"
        else:
            attrs, delim = parts[5], found
    else:
        return None
    values: dict[str, str] = {}
    if delim == "\t" and "\t" not in attrs and "=" in attrs:
        # Tabs lost on the way (some relays turn them into spaces): CEF-style split.
        values = parse_extension(attrs)
    else:
        for item in attrs.split(delim):
            key, sep, value = item.partition("=")
            if sep and key.strip():
                values[key.strip()] = value
    return {"version": text[5:8], "vendor": parts[0], "product": parts[1],
            "product_version": parts[2], "event_id": parts[3], "attributes": values}


def apply_fields(event: Event, mapping: dict[str, tuple[str, str]], values: dict[str, str]) -> None:
    """Set the ECS fields ``mapping`` names from ``values``; invalid values are skipped
    (they stay in the vendor namespace)."""
    for key, value in values.items():
        spec = mapping.get(key)
        if spec is None or value == "":
            continue
        path, kind = spec
        out: Any = value
        if kind == "ip":
            out = address_or_none(value.strip())
            if out is None:
                continue
        elif kind in ("port", "int"):
            text = value.strip()
            if not text.isdigit() or not text.isascii():
                continue
            out = int(text)
            if kind == "port" and not 0 <= out <= 65535:
                continue
            if out >= 2**63:
                continue
        elif kind == "transport":
            low = value.strip().lower()
            out = TRANSPORTS.get(low, low)
        elif kind == "lower":
            out = value.strip().lower()
        elif kind == "outcome":
            low = value.strip().lower()
            out = {"success": "success", "failure": "failure", "fail": "failure",
                   "failed": "failure", "unknown": "unknown"}.get(low)
            if out is None:
                continue
        elif kind == "sha256" and len(value) != 64:
            continue
        put(event, path, out)


def cef_timestamp(value: str, tz: Any) -> str | None:
    """A CEF time (epoch ms, ``MMM dd yyyy HH:mm:ss[.SSS] [zone]``, ISO) as ISO 8601."""
    text = value.strip()
    if not text:
        return None
    if text.isdigit() and text.isascii():
        number = int(text)
        seconds = number / 1000 if number > 1e11 else number
        try:
            return datetime.fromtimestamp(seconds, UTC).isoformat()
        except (OverflowError, OSError, ValueError):
            return None
    m = _CEF_DATE.match(text)
    if m:
        mon = _MONTHS.get(m.group(1).lower())
        if mon is None:
            return None
        zone = m.group(8)
        tzinfo = tz
        if zone:
            if zone.upper() in ("UTC", "GMT", "Z"):
                tzinfo = UTC
            elif zone[0] in "+-":
                try:
                    tzinfo = parse_zone(zone)
                except ValueError:
                    tzinfo = tz
        year = int(m.group(3)) if m.group(3) else datetime.now(tzinfo).year
        frac = m.group(7) or "0"
        try:
            return datetime(year, mon, int(m.group(2)), int(m.group(4)), int(m.group(5)),
                            int(m.group(6)), int(frac.ljust(6, "0")), tzinfo).isoformat()
        except ValueError:
            return None
    try:
        return parse_iso(text, naive=tz).isoformat()
    except ValueError:
        return None


def apply_cef(event: Event, cef: dict[str, Any], tz: Any) -> None:
    """Fill ``event`` from a parsed CEF record; it becomes an alert."""
    ext: dict[str, str] = cef["extension"]
    ev = event.setdefault("event", {})
    ev["kind"] = "alert"
    event["message"] = cef["name"]
    apply_fields(event, _CEF_MAP, ext)
    if "user" not in event and ext.get("duser"):
        event["user"] = {"name": ext["duser"]}
    if "destinationUserName" in ext and "user" not in event:
        event["user"] = {"name": ext["destinationUserName"]}
    observer = event.setdefault("observer", {})
    if cef["device_vendor"]:
        observer["vendor"] = cef["device_vendor"]
    if cef["device_product"]:
        observer["product"] = cef["device_product"]
    if cef["device_version"]:
        observer["version"] = cef["device_version"]
    rule = event.setdefault("rule", {})
    if cef["signature_id"]:
        rule["id"] = cef["signature_id"]
    if cef["name"]:
        rule["name"] = cef["name"]
    for key in _CEF_TIME_KEYS:
        if ext.get(key):
            ts = cef_timestamp(ext[key], tz)
            if ts is not None:
                event["@timestamp"] = ts
                break
    severity = cef["severity"]
    if not severity or severity.lower() == "unknown":
        for key in _CEF_SEVERITY_KEYS:
            if ext.get(key):
                severity = ext[key].strip()
                break
    socd = event.setdefault("socd", {})
    if severity:
        socd["vendor_severity"] = severity
        if severity.isdigit() and severity.isascii() and len(severity) <= 2:
            ev["severity"] = int(severity)
    labels: dict[str, str] = {}
    for key, value in ext.items():
        if key.endswith("Label") and value:
            target = ext.get(key[:-5])
            if target is not None:
                labels[value] = target
    vendor = socd.setdefault("vendor", {})
    vendor["cef"] = ext
    vendor["cef_header"] = {k: v for k, v in cef.items() if k != "extension"}
    if labels:
        vendor["cef_labels"] = labels
    ev["module"] = "cef"
    ev["dataset"] = "cef"


def apply_leef(event: Event, leef: dict[str, Any]) -> None:
    """Fill ``event`` from a parsed LEEF record (kept as ``event.kind: event``)."""
    attrs: dict[str, str] = leef["attributes"]
    event["message"] = f"{leef['vendor']} {leef['product']} {leef['event_id']}".strip()
    apply_fields(event, _LEEF_MAP, attrs)
    observer = event.setdefault("observer", {})
    if leef["vendor"]:
        observer["vendor"] = leef["vendor"]
    if leef["product"]:
        observer["product"] = leef["product"]
    if leef["product_version"]:
        observer["version"] = leef["product_version"]
    ev = event.setdefault("event", {})
    if leef["event_id"]:
        ev["code"] = leef["event_id"]
    ev["module"] = "leef"
    ev["dataset"] = "leef"
    socd = event.setdefault("socd", {})
    sev = attrs.get("sev", "").strip()
    if sev:
        socd["vendor_severity"] = sev
    socd.setdefault("vendor", {})["leef"] = attrs
    socd["vendor"]["leef_header"] = {k: v for k, v in leef.items() if k != "attributes"}
