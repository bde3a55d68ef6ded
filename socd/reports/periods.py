"""Report periods: the default one for each kind, parsing dates, titles, the previous period.

A period is a range of whole local days (Asia/Ho_Chi_Minh) ``[first, last]``; its
instants are ``[first 00:00, last + 1 day 00:00)`` local time. Defaults, relative to
"now": ``weekly`` the last full ISO week (Monday-Sunday), ``monthly`` the last full
calendar month, ``semiannual`` the last full half-year (January-June or
July-December). The previous period (for trends) is the preceding calendar month or
half-year when the period is exactly one, else the same number of days just before.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Literal

from socd.reports.vn import fmt_date, local_zone, nfc

Kind = Literal["weekly", "monthly", "semiannual"]
KINDS: tuple[Kind, ...] = ("weekly", "monthly", "semiannual")


class PeriodError(ValueError):
    """A date or range that cannot be used."""


_DMY = re.compile(r"^\s*(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})\s*$")


def parse_date(text: str) -> date:
    """``dd/mm/yyyy`` (also ``d/m/yyyy``, ``dd-mm-yyyy``, ``dd.mm.yyyy``) or ISO
    ``yyyy-mm-dd``."""
    m = _DMY.match(text)
    try:
        if m:
            return date(int(m.group(3)), int(m.group(2)), int(m.group(1)))
        return date.fromisoformat(text.strip())
    except ValueError:
        raise PeriodError(f"not a date: {text!r} (use dd/mm/yyyy or yyyy-mm-dd)") from None


def _month_start(d: date) -> date:
    return d.replace(day=1)


def _add_months(d: date, months: int) -> date:
    total = d.year * 12 + d.month - 1 + months
    return date(total // 12, total % 12 + 1, 1)


def _half_start(d: date) -> date:
    return date(d.year, 1 if d.month <= 6 else 7, 1)


@dataclass(frozen=True, slots=True)
class Period:
    """Whole local days ``first``..``last`` (inclusive) of a report of ``kind``."""

    kind: Kind
    first: date
    last: date
    timezone: str = "Asia/Ho_Chi_Minh"

    def __post_init__(self) -> None:
        if self.last < self.first:
            raise PeriodError(f"the period ends ({fmt_date(self.last)}) before it starts "
                              f"({fmt_date(self.first)})")

    @property
    def zone(self) -> tzinfo:
        return local_zone(self.timezone)

    @property
    def start(self) -> datetime:
        """The first instant (aware, local)."""
        return datetime.combine(self.first, time(0), self.zone)

    @property
    def end(self) -> datetime:
        """The first instant after the period (aware, local)."""
        return datetime.combine(self.last + timedelta(days=1), time(0), self.zone)

    @property
    def start_ms(self) -> int:
        return int(self.start.timestamp() * 1000)

    @property
    def end_ms(self) -> int:
        return int(self.end.timestamp() * 1000)

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    def day_list(self) -> list[date]:
        return [self.first + timedelta(days=i) for i in range(self.days)]

    @property
    def is_month(self) -> bool:
        return self.first.day == 1 and self.last == _add_months(self.first, 1) - timedelta(1)

    @property
    def is_half(self) -> bool:
        return (self.first.day == 1 and self.first.month in (1, 7)
                and self.last == _add_months(self.first, 6) - timedelta(1))

    def previous(self) -> Period:
        """The period the trend compares with."""
        if self.is_half:
            first = _add_months(self.first, -6)
            return Period(self.kind, first, self.first - timedelta(1), self.timezone)
        if self.is_month:
            first = _add_months(self.first, -1)
            return Period(self.kind, first, self.first - timedelta(1), self.timezone)
        return Period(self.kind, self.first - timedelta(self.days),
                      self.first - timedelta(1), self.timezone)

    @property
    def range_text(self) -> str:
        return f"từ ngày {fmt_date(self.first)} đến ngày {fmt_date(self.last)}"

    @property
    def label(self) -> str:
        """The period as the title names it: ``tuần 47/2026``, ``tháng 11/2026``,
        ``6 tháng đầu năm 2026``."""
        if self.kind == "weekly":
            year, week, _ = self.first.isocalendar()
            return f"tuần {week:02d}/{year}"
        if self.kind == "monthly":
            return f"tháng {self.first.month}/{self.first.year}"
        half = "đầu" if self.first.month <= 6 else "cuối"
        return f"6 tháng {half} năm {self.first.year}"

    @property
    def title(self) -> str:
        """The title in the national style."""
        if self.kind == "weekly":
            text = f"Tóm tắt tình hình an toàn thông tin {self.label} ({self.range_text})"
        elif self.kind == "monthly":
            text = f"Bản tin SOC {self.label}"
        else:
            text = f"Báo cáo giám sát an toàn thông tin {self.label}"
        return nfc(text)

    @property
    def slug(self) -> str:
        """A file name stem: ``weekly-2026-W47``, ``monthly-2026-11``, ``semiannual-2026-H2``
        (custom ranges: ``weekly-2026-11-16_2026-11-22``)."""
        if self.kind == "weekly" and self.first.weekday() == 0 and self.days == 7:
            year, week, _ = self.first.isocalendar()
            return f"weekly-{year}-W{week:02d}"
        if self.kind == "monthly" and self.is_month:
            return f"monthly-{self.first:%Y-%m}"
        if self.kind == "semiannual" and self.is_half:
            return f"semiannual-{self.first.year}-H{1 if self.first.month == 1 else 2}"
        return f"{self.kind}-{self.first.isoformat()}_{self.last.isoformat()}"


def default_period(kind: Kind, now: datetime | None = None,
                   timezone: str = "Asia/Ho_Chi_Minh") -> Period:
    """The last full week / month / half-year before ``now`` (local time)."""
    zone = local_zone(timezone)
    today = (now or datetime.now(zone)).astimezone(zone).date()
    if kind == "weekly":
        this_monday = today - timedelta(days=today.weekday())
        first = this_monday - timedelta(days=7)
        return Period(kind, first, this_monday - timedelta(1), timezone)
    if kind == "monthly":
        this_month = _month_start(today)
        return Period(kind, _add_months(this_month, -1), this_month - timedelta(1), timezone)
    if kind == "semiannual":
        this_half = _half_start(today)
        return Period(kind, _add_months(this_half, -6), this_half - timedelta(1), timezone)
    raise PeriodError(f"unknown report kind {kind!r}")


def period_for(kind: Kind, first: str | date | None = None, last: str | date | None = None,
               *, now: datetime | None = None, timezone: str = "Asia/Ho_Chi_Minh") -> Period:
    """The period of a command line: both dates, or neither (the default period). With
    only ``--from``, the period is the kind's natural length from that day."""
    if kind not in KINDS:
        raise PeriodError(f"unknown report kind {kind!r} (one of {', '.join(KINDS)})")
    d1 = parse_date(first) if isinstance(first, str) else first
    d2 = parse_date(last) if isinstance(last, str) else last
    if d1 is None and d2 is None:
        return default_period(kind, now, timezone)
    if d1 is None:
        raise PeriodError("--to needs --from")
    if d2 is None:
        if kind == "weekly":
            d2 = d1 + timedelta(days=6)
        elif kind == "monthly":
            d2 = _add_months(d1, 1) - timedelta(1)
        else:
            d2 = _add_months(d1, 6) - timedelta(1)
    return Period(kind, d1, d2, timezone)
