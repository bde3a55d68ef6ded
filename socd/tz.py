"""The time-zone type of config models (no other socd imports, so every config module
may use it without import cycles)."""

from __future__ import annotations

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
