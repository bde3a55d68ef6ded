"""Pure helpers every notifier shares: the JSON body, severity, truncation, errors.

Nothing here does I/O, so payload shapes and the retry decision are unit-tested
without a network.

The JSON body (:func:`notification_body`) is the one contract for machines: the
``webhook`` and ``mqtt`` notifiers send exactly it::

    {"id": "...", "route": "...", "group_key": "...",
     "severity": "high", "severity_label": "cao",
     "title": "...", "text": "...", "total": 3,
     "created": "2026-11-16T01:02:03.456Z",
     "alerts": [<the alert events, as stored>]}

``alerts`` holds at most the alerts the core attached (``digest_max_alerts``);
``total`` says how many alerts the message stands for.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import orjson

from socd.errors import NotifyError
from socd.event import get
from socd.plugins import Notification
from socd.severity import LABELS_VI, Severity, fold

REDACTED = "<redacted>"
_LABEL_TO_CODE = {fold(label): code for code, label in LABELS_VI.items()}

# Status codes that may succeed later. 408 is a timeout the server reports itself.
RETRYABLE_STATUS = frozenset({408, 425, 429})


def severity_of(notification: Notification) -> Severity:
    """The notification's severity as a code.

    ``Notification.severity`` carries the Vietnamese label ("nghiêm trọng"); a
    code ("critical") is accepted too. When neither parses, the highest
    ``socd.severity`` among the attached alerts wins, else ``low``.
    """
    value = (notification.severity or "").strip()
    try:
        return Severity(value.lower())
    except ValueError:
        pass
    code = _LABEL_TO_CODE.get(fold(value)) if value else None
    if code is not None:
        return code
    best: Severity | None = None
    for alert in notification.alerts:
        try:
            sev = Severity(str(get(alert, "socd.severity", "")))
        except ValueError:
            continue
        if best is None or sev.rank > best.rank:
            best = sev
    return best or Severity.LOW


def rfc3339(timestamp: float) -> str:
    """Epoch seconds as RFC 3339 UTC with milliseconds (``...Z``)."""
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def notification_body(notification: Notification) -> dict[str, Any]:
    """The JSON document the ``webhook`` and ``mqtt`` notifiers send."""
    severity = severity_of(notification)
    return {
        "id": notification.id,
        "route": notification.route,
        "group_key": notification.group_key,
        "severity": severity.value,
        "severity_label": severity.label,
        "title": notification.title,
        "text": notification.text,
        "total": max(notification.total, len(notification.alerts)),
        "created": rfc3339(notification.created),
        "alerts": list(notification.alerts),
    }


def dumps(document: Any) -> bytes:
    """Compact UTF-8 JSON; values JSON cannot hold (sets, dates) become text."""
    return orjson.dumps(document, default=_fallback, option=orjson.OPT_NON_STR_KEYS)


def _fallback(value: Any) -> Any:
    if isinstance(value, set | frozenset | tuple):
        return sorted(value, key=str)
    return str(value)


def truncate(text: str, limit: int, *, marker: str = "…(+{n})") -> str:
    """``text`` cut to at most ``limit`` characters, ending with ``…(+N)``.

    ``N`` is how many characters were left out, so a reader knows the message
    is incomplete and by how much.
    """
    if len(text) <= limit:
        return text
    keep = max(0, limit - len(marker.format(n=len(text))))
    # The marker is never longer for a smaller N, so one pass fits the limit.
    return text[:keep] + marker.format(n=len(text) - keep)


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units: how Telegram counts message length."""
    return len(text.encode("utf-16-le")) // 2


def truncate_utf16(text: str, limit: int, *, marker: str = "…(+{n})") -> str:
    """:func:`truncate` measured in UTF-16 code units (emoji count twice)."""
    if utf16_len(text) <= limit:
        return text
    room = max(0, limit - utf16_len(marker.format(n=len(text))))
    # Cutting the encoded text drops a half surrogate pair with errors="ignore".
    head = text.encode("utf-16-le")[: room * 2].decode("utf-16-le", errors="ignore")
    return head + marker.format(n=len(text) - len(head))


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def is_retryable_status(status: int) -> bool:
    """429, 5xx (and 408/425, the server's own timeouts) may succeed later."""
    return status >= 500 or status in RETRYABLE_STATUS


def status_error(what: str, status: int, body: str = "", *,
                 retry_after: float | None = None) -> NotifyError:
    """The :class:`NotifyError` for an HTTP answer that is not a success."""
    snippet = " ".join(body.split())[:200]
    message = f"{what}: HTTP {status}" + (f": {snippet}" if snippet else "")
    retryable = is_retryable_status(status)
    return NotifyError(message, retryable=retryable,
                       retry_after=retry_after if retryable else None)


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret (token, webhook URL) replaced."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


def first(values: Sequence[Any] | Any) -> Any:
    """The first element of an ECS array field, or the value itself."""
    if isinstance(values, list | tuple):
        return values[0] if values else None
    return values


def text_values(values: Any) -> list[str]:
    """An ECS field that may be one value or an array, as a list of strings."""
    if values is None:
        return []
    if isinstance(values, list | tuple | set | frozenset):
        return [str(v) for v in values if v is not None and str(v) != ""]
    text = str(values)
    return [text] if text else []


def headers_lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}
