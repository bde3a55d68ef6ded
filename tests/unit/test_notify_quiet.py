"""Quiet hours: local-time windows, across midnight, with the severity override."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from socd.config import QuietHoursConfig
from socd.notify.quiet import QuietHours

VN = ZoneInfo("Asia/Ho_Chi_Minh")


def at(text: str, zone: ZoneInfo = VN) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=zone).timestamp()


def quiet(**kw: object) -> QuietHours:
    return QuietHours(QuietHoursConfig.model_validate(kw))


def test_window_across_midnight() -> None:
    q = quiet(start="22:00", end="06:30")
    assert q.release_at(at("2026-11-16T21:59:59")) is None
    assert q.release_at(at("2026-11-16T22:00:00")) == at("2026-11-17T06:30:00")
    assert q.release_at(at("2026-11-16T23:59:59")) == at("2026-11-17T06:30:00")
    assert q.release_at(at("2026-11-17T00:00:00")) == at("2026-11-17T06:30:00")
    assert q.release_at(at("2026-11-17T06:29:59")) == at("2026-11-17T06:30:00")
    assert q.release_at(at("2026-11-17T06:30:00")) is None
    assert q.release_at(at("2026-11-17T12:00:00")) is None


def test_window_within_one_day() -> None:
    q = quiet(start="12:00", end="13:30")
    assert q.release_at(at("2026-11-16T11:59:00")) is None
    assert q.release_at(at("2026-11-16T12:10:00")) == at("2026-11-16T13:30:00")
    assert q.release_at(at("2026-11-16T13:30:00")) is None


def test_empty_window() -> None:
    assert quiet(start="22:00", end="22:00").release_at(at("2026-11-16T22:00:00")) is None


def test_time_zone_is_the_configured_one() -> None:
    q = quiet(start="22:00", end="06:30", timezone="UTC")
    # 23:00 in Vietnam is 16:00 UTC: not quiet in UTC terms.
    assert q.release_at(at("2026-11-16T23:00:00")) is None
    utc = ZoneInfo("UTC")
    assert q.release_at(at("2026-11-16T23:00:00", utc)) == at("2026-11-17T06:30:00", utc)


def test_override_severities() -> None:
    q = quiet(start="22:00", end="06:30", override_severities=["high", "critical"])
    night = at("2026-11-16T23:00:00")
    assert q.holds("critical", night) is None
    assert q.holds("high", night) is None
    assert q.holds("medium", night) == at("2026-11-17T06:30:00")
    assert q.holds("medium", at("2026-11-16T10:00:00")) is None


def test_default_override_is_critical() -> None:
    q = quiet()
    night = at("2026-11-16T23:00:00")
    assert q.holds("critical", night) is None
    assert q.holds("high", night) is not None
