"""The SOC's four severity levels and the tables that map vendor values to them.

Severity is always stored as a stable code (``low``...``critical``) with its
Vietnamese label beside it; the vendor's original value is kept as
``socd.vendor_severity``. See ``docs/severity.md`` for the tables.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from enum import StrEnum
from functools import lru_cache


class Severity(StrEnum):
    """A severity code, ordered from least to most severe."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def label(self) -> str:
        """The Vietnamese label (NFC)."""
        return LABELS_VI[self]

    @property
    def rank(self) -> int:
        return _RANK[self]

    def raised(self, steps: int = 1) -> Severity:
        """The level ``steps`` above this one, capped at critical."""
        order = list(Severity)
        return order[min(len(order) - 1, self.rank + steps)]


LABELS_VI: Mapping[Severity, str] = {
    Severity.LOW: unicodedata.normalize("NFC", "thấp"),
    Severity.MEDIUM: unicodedata.normalize("NFC", "trung bình"),
    Severity.HIGH: unicodedata.normalize("NFC", "cao"),
    Severity.CRITICAL: unicodedata.normalize("NFC", "nghiêm trọng"),
}
_RANK = {s: i for i, s in enumerate(Severity)}

_SPACES = re.compile(r"[\s_\-]+")


def fold(value: str) -> str:
    """Fold a label for matching: case, diacritics, đ/Đ and spacing are ignored.

    ``"Nghiêm Trọng"``, ``"nghiem trong"`` and ``"NGHIEM_TRONG"`` all fold to
    ``"nghiem trong"``. Cached for label-sized values only: vendor severities come
    from input, and 4,096 cached 1 MiB values would hold 4 GiB.
    """
    if len(value) > _FOLD_CACHED_CHARS:
        return _fold(value)
    return _fold_cached(value)


_FOLD_CACHED_CHARS = 256


@lru_cache(maxsize=4096)
def _fold_cached(value: str) -> str:
    return _fold(value)


def _fold(value: str) -> str:
    text = value.strip().casefold().replace("đ", "d")
    text = "".join(
        ch for ch in unicodedata.normalize("NFD", text) if not unicodedata.combining(ch)
    )
    return _SPACES.sub(" ", text)


class SeverityTable:
    """Maps vendor severity values (labels or numbers) to :class:`Severity`.

    Keys are matched after :func:`fold`; numeric ranges are written ``"4-7"``.
    """

    def __init__(
        self, name: str, table: Mapping[str, str], default: Severity | None = None
    ) -> None:
        self.name = name
        self.default = default
        self._exact: dict[str, Severity] = {}
        self._ranges: list[tuple[float, float, Severity]] = []
        for key, code in table.items():
            sev = Severity(code)
            key_s = str(key)
            m = re.fullmatch(r"\s*(-?\d+(?:\.\d+)?)\s*-\s*(-?\d+(?:\.\d+)?)\s*", key_s)
            if m:
                self._ranges.append((float(m.group(1)), float(m.group(2)), sev))
            else:
                self._exact[fold(key_s)] = sev

    def lookup(self, value: object) -> Severity | None:
        """The severity for a vendor value, or the table default.

        A text longer than :data:`_FOLD_CACHED_CHARS` is no severity label or number:
        the default, without folding it (1 MiB takes 0.2 s to fold)."""
        if value is None or isinstance(value, bool):
            return self.default
        if isinstance(value, int | float):
            key = str(int(value)) if float(value).is_integer() else str(value)
            hit = self._exact.get(key)
            if hit is not None:
                return hit
            return self._range(float(value))
        raw = str(value)
        if len(raw) > _FOLD_CACHED_CHARS:
            return self.default
        text = fold(raw)
        hit = self._exact.get(text)
        if hit is not None:
            return hit
        try:
            return self._range(float(text))
        except ValueError:
            return self.default

    def _range(self, number: float) -> Severity | None:
        for low, high, sev in self._ranges:
            if low <= number <= high:
                return sev
        return self.default


# Built-in tables. Vendors differ (CONTEXT.md): the server EDR of the seed SOC
# reports trung bình/cao/nghiêm trọng, the workstation EDR thấp/trung bình/cao,
# Wazuh 0-15, Suricata 1-3 with 1 the most severe, CEF 0-10, Sigma five levels.
_VIETNAMESE = {
    "thấp": "low", "low": "low", "info": "low", "informational": "low",
    "trung bình": "medium", "medium": "medium", "moderate": "medium",
    "cao": "high", "high": "high",
    "nghiêm trọng": "critical", "critical": "critical", "khẩn cấp": "critical",
}  # fmt: skip

BUILTIN_TABLES: Mapping[str, SeverityTable] = {
    "vietnamese": SeverityTable("vietnamese", _VIETNAMESE),
    "suricata": SeverityTable("suricata", {"1": "high", "2": "medium", "3": "low", "4": "low"}),
    "wazuh": SeverityTable(
        "wazuh", {"0-3": "low", "4-7": "medium", "8-11": "high", "12-15": "critical"}
    ),
    "cef": SeverityTable(
        "cef",
        {
            "0-3": "low", "4-6": "medium", "7-8": "high", "9-10": "critical",
            "low": "low", "medium": "medium", "high": "high", "very-high": "critical",
            "very high": "critical", "unknown": "low",
        },
    ),
    "sigma": SeverityTable(
        "sigma",
        {"informational": "low", "low": "low", "medium": "medium", "high": "high",
         "critical": "critical"},
    ),
}
