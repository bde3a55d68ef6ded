"""Time: the one ISO 8601 timestamp parser, and the time-zone types of config models.

No other socd imports, so every module (config models included) may use it without
import cycles.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator


def known_zone(value: str) -> str:
    """``value`` if it names an IANA time zone, else a ValueError with a hint."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r} (an IANA name such as "
                         "Asia/Ho_Chi_Minh)") from None
    return value


TimeZone = Annotated[str, AfterValidator(known_zone)]


_OFFSET = re.compile(r"([+-])(\d{2}):?(\d{2})")


def parse_zone(value: str) -> tzinfo:
    """``+07:00`` / ``-0330`` / ``UTC`` / ``Z`` / an IANA name (``Asia/Ho_Chi_Minh``).

    The zone syslog and CEF timestamps are read in when they carry none; a
    ValueError names what is accepted."""
    text = value.strip()
    m = _OFFSET.fullmatch(text)
    if m:
        hours, minutes = int(m.group(2)), int(m.group(3))
        if hours > 23 or minutes > 59:
            raise ValueError(f"offset out of range: {value!r}")
        delta = timedelta(hours=hours, minutes=minutes)
        return timezone(-delta if m.group(1) == "-" else delta)
    if text.upper() in ("UTC", "Z"):
        return UTC
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r}: use an IANA name such as "
                         "Asia/Ho_Chi_Minh or UTC, or an offset like +07:00") from None


def known_zone_or_offset(value: str) -> str:
    """``value`` if :func:`parse_zone` accepts it, else its ValueError."""
    parse_zone(value)
    return value


# An IANA name, UTC or a fixed offset: the zone assumed for timestamps written without one.
ZoneOrOffset = Annotated[str, AfterValidator(known_zone_or_offset)]


def parse_iso(text: str, *, naive: tzinfo | None = UTC) -> datetime:
    """``text`` (ISO 8601, as :meth:`datetime.fromisoformat` reads it) as a datetime.

    ``Z`` is read as ``+00:00`` wherever it appears, as the parsers of input always
    did before there was one (Python 3.11 reads a final ``Z`` itself; the
    replacement keeps their answers for odd texts such as ``2026-11-16Z``). A time
    without an offset gets the zone ``naive`` (UTC by default); ``naive=None`` keeps
    it naive, for callers that read such a time as the machine's local time. The
    caller strips whitespace if it allows any. Raises ValueError.
    """
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if naive is not None and parsed.tzinfo is None:
        return parsed.replace(tzinfo=naive)
    return parsed


def iso_or_none(value: object, *, naive: tzinfo | None = UTC) -> datetime | None:
    """:func:`parse_iso` of ``value``, or None when it is not a string or not ISO 8601
    (for values read back from stores and events, where a bad one is skipped)."""
    if not isinstance(value, str):
        return None
    try:
        return parse_iso(value, naive=naive)
    except ValueError:
        return None
