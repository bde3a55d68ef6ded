"""Vietnamese formatting and report periods/titles."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from socd.reports.periods import Period, PeriodError, default_period, parse_date, period_for
from socd.reports.vn import (
    fmt_date,
    fmt_datetime,
    fmt_decimal,
    fmt_int,
    fmt_pct,
    fmt_time,
    severity_label,
    severity_sentence,
)


@pytest.mark.parametrize(("value", "text"), [
    (0, "0"), (7, "7"), (999, "999"), (1000, "1.000"), (35576, "35.576"),
    (1234567, "1.234.567"), (-1901, "-1.901"), (432.4, "432"),
])
def test_fmt_int(value: float, text: str) -> None:
    assert fmt_int(value) == text


def test_fmt_decimal_and_percent() -> None:
    assert fmt_decimal(1234.56) == "1.234,6"
    assert fmt_decimal(0.5, 2) == "0,50"
    assert fmt_decimal(-12.25, 1) == "-12,2"  # banker's rounding of .25 is fine: -12,2
    assert fmt_decimal(-0.01) == "0,0"  # no "-0,0"
    assert fmt_pct(12.5) == "12,5 %"
    assert fmt_pct(12.5, signed=True) == "+12,5 %"
    assert fmt_pct(-3.04, signed=True) == "-3,0 %"
    assert fmt_pct(0.0, signed=True) == "0,0 %"
    assert fmt_pct(None) == "—"


def test_dates_and_times() -> None:
    assert fmt_date(date(2026, 1, 5)) == "05/01/2026"
    when = datetime(2026, 11, 16, 23, 30, tzinfo=UTC)  # 06:30 the next day in Vietnam
    assert fmt_time(when) == "06:30"
    assert fmt_datetime(when) == "06:30 17/11/2026"


def test_severity_texts() -> None:
    assert [severity_label(s) for s in ("low", "medium", "high", "critical")] == [
        "thấp", "trung bình", "cao", "nghiêm trọng"]
    # The provincial report's own sentence.
    assert severity_sentence({"medium": 35576, "high": 1901, "critical": 432}) == (
        "35.576 cảnh báo mức độ trung bình, 1.901 cảnh báo mức độ cao và 432 cảnh báo "
        "mức độ nghiêm trọng")
    assert severity_sentence({"low": 6733, "medium": 7598, "high": 1265, "critical": 0}) == (
        "6.733 cảnh báo mức độ thấp, 7.598 cảnh báo mức độ trung bình và 1.265 cảnh báo "
        "mức độ cao")
    assert severity_sentence({"high": 1}) == "1 cảnh báo mức độ cao"
    assert severity_sentence({}) == "không có cảnh báo"


@pytest.mark.parametrize(("text", "day"), [
    ("16/11/2026", date(2026, 11, 16)), ("6/1/2026", date(2026, 1, 6)),
    ("2026-11-16", date(2026, 11, 16)), ("16-11-2026", date(2026, 11, 16)),
    ("16.11.2026", date(2026, 11, 16)),
])
def test_parse_date(text: str, day: date) -> None:
    assert parse_date(text) == day


@pytest.mark.parametrize("text", ["31/02/2026", "2026/11/16", "yesterday", ""])
def test_parse_date_refuses(text: str) -> None:
    with pytest.raises(PeriodError):
        parse_date(text)


def test_default_periods() -> None:
    # Monday 23/11/2026 06:59 local is still Sunday 22:59 UTC: the last full week is
    # the one that ended on Sunday 22/11 (local time decides).
    now = datetime(2026, 11, 22, 23, 59, tzinfo=UTC)
    week = default_period("weekly", now)
    assert (week.first, week.last) == (date(2026, 11, 16), date(2026, 11, 22))
    assert week.title == ("Tóm tắt tình hình an toàn thông tin tuần 47/2026 (từ ngày "
                          "16/11/2026 đến ngày 22/11/2026)")
    assert week.slug == "weekly-2026-W47"
    # On Sunday the current week is not over yet: the week before.
    sunday = default_period("weekly", datetime(2026, 11, 22, 10, 0, tzinfo=UTC))
    assert sunday.first == date(2026, 11, 9)

    month = default_period("monthly", datetime(2026, 12, 1, 0, 30, tzinfo=UTC))
    assert (month.first, month.last) == (date(2026, 11, 1), date(2026, 11, 30))
    assert month.title == "Bản tin SOC tháng 11/2026"
    assert month.previous() == Period("monthly", date(2026, 10, 1), date(2026, 10, 31))
    jan = default_period("monthly", datetime(2027, 1, 10, tzinfo=UTC))
    assert (jan.first, jan.last, jan.title) == (date(2026, 12, 1), date(2026, 12, 31),
                                                "Bản tin SOC tháng 12/2026")

    half = default_period("semiannual", datetime(2026, 7, 1, 8, 0, tzinfo=UTC))
    assert (half.first, half.last) == (date(2026, 1, 1), date(2026, 6, 30))
    assert half.title == "Báo cáo giám sát an toàn thông tin 6 tháng đầu năm 2026"
    assert half.previous() == Period("semiannual", date(2025, 7, 1), date(2025, 12, 31))
    h2 = default_period("semiannual", datetime(2027, 2, 1, tzinfo=UTC))
    assert h2.title == "Báo cáo giám sát an toàn thông tin 6 tháng cuối năm 2026"
    assert h2.slug == "semiannual-2026-H2"


def test_week_numbers_across_years() -> None:
    # 29/12/2025-04/01/2026 is ISO week 01/2026.
    p = period_for("weekly", "29/12/2025")
    assert p.last == date(2026, 1, 4)
    assert "tuần 01/2026 (từ ngày 29/12/2025 đến ngày 04/01/2026)" in p.title


def test_custom_periods() -> None:
    p = period_for("weekly", "16/11/2026", "2026-11-22")
    assert p.previous() == Period("weekly", date(2026, 11, 9), date(2026, 11, 15))
    assert p.days == 7
    # The instants: local midnight to local midnight.
    assert p.start.isoformat() == "2026-11-16T00:00:00+07:00"
    assert p.end_ms == int(datetime(2026, 11, 22, 17, 0, tzinfo=UTC).timestamp() * 1000)
    ten = period_for("weekly", "01/11/2026", "10/11/2026")
    assert ten.previous() == Period("weekly", date(2026, 10, 22), date(2026, 10, 31))
    assert ten.slug == "weekly-2026-11-01_2026-11-10"
    with pytest.raises(PeriodError, match="ends"):
        period_for("monthly", "10/11/2026", "01/11/2026")
    with pytest.raises(PeriodError, match="--to needs --from"):
        period_for("monthly", None, "01/11/2026")
