"""Events whose own time is far from their arrival (issue 14, point 2): a UTC server's
RFC 3164 lines read as +07:00 look 7 hours old, and threshold rules left them out.

Windows use the arrival time when the event time is more than
``rules.max_clock_skew_secs`` off it while the newest event time is not (a live
stream); what stays late is counted per collector and logged with a hint."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest
from structlog.testing import capture_logs

from socd.engine import RuleEngine, load_text
from socd.engine import engine as engine_mod
from socd.event import unflatten
from tests.unit.conftest import sample_value

BRUTE = """
rules:
  - id: brute
    title: {vi: "Dò mật khẩu", en: "Brute force"}
    description: "Nhiều lần đăng nhập thất bại"
    severity: medium
    layer: 2
    category: authentication
    match: {field: event.category, equals: authentication}
    threshold: {count: 5, window: 10m, group_by: [source.ip]}
"""
HOUR = 3600.0


def engine(**kw: Any) -> RuleEngine:
    rules, problems = load_text(BRUTE, "<t>")
    assert not problems, [str(p) for p in problems]
    return RuleEngine(rules, **kw)


def iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat()


def ev(own: float, arrival: float | None, n: int, collector: str, ip: str = "203.0.113.5"
       ) -> dict[str, Any]:
    event = unflatten({"event.category": "authentication", "source.ip": ip,
                       "socd.collector": collector, "event.hash": f"{collector}-{n}-{own}"})
    event["@timestamp"] = iso(own)
    if arrival is not None:
        event["event"]["created"] = iso(arrival)
    return event


def rule_alerts(eng: RuleEngine, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return eng.process(events)[len(events):]


def utc_server_burst(collector: str, now: float) -> list[dict[str, Any]]:
    """Six failed logins now, stamped 7 hours early (UTC wall time read as +07:00),
    after an event of a correct clock set the newest event time."""
    return [ev(now - 2, now - 2, 0, "edr", ip="192.0.2.1"),
            *(ev(now - 7 * HOUR + i, now + i / 10, i, collector) for i in range(6))]


def test_a_zone_error_is_windowed_at_arrival_and_counted(uid: str) -> None:
    now = time.time()
    eng = engine(max_clock_skew_secs=1800)
    before = sample_value("socd_rules_clock_skew_events_total", collector=uid)
    out = rule_alerts(eng, utc_server_burst(uid, now))
    assert [a["rule"]["id"] for a in out] == ["brute"]
    assert out[0]["socd"]["rule"]["count"] == 5
    assert sample_value("socd_rules_clock_skew_events_total", collector=uid) - before == 6
    assert sample_value("socd_rules_late_events_total", collector=uid) == 0


def test_without_the_fallback_the_events_are_late_counted_and_said(
        uid: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_mod, "log_configured", lambda: True)  # as after socd.log.setup
    now = time.time()
    eng = engine(max_clock_skew_secs=0)
    with capture_logs() as logs:
        assert rule_alerts(eng, utc_server_burst(uid, now)) == []
        # A second burst within the minute is counted, not logged again.
        assert rule_alerts(eng, [ev(now - 7 * HOUR + 9, now, 9, uid)]) == []
    assert sample_value("socd_rules_late_events_total", collector=uid) == 7
    [line] = [entry for entry in logs if entry.get("collector") == uid]
    assert line["event"] == "late events left out of threshold and sequence rules"
    assert line["log_level"] == "warning"
    assert line["events"] == 6
    assert round(line["off_by_secs"] / HOUR) == -7
    hint = line["hint"]
    assert "7.0 h behind their arrival" in hint
    assert f"set `timezone:` (or `sender_timezones:` per sender) on collector {uid!r}" in hint
    assert "Asia/Ho_Chi_Minh" in hint


def test_the_skew_fallback_is_logged_with_the_same_hint(
        uid: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_mod, "log_configured", lambda: True)
    now = time.time()
    eng = engine(max_clock_skew_secs=1800)
    with capture_logs() as logs:
        rule_alerts(eng, utc_server_burst(uid, now))
    [line] = [entry for entry in logs if entry.get("collector") == uid]
    assert line["event"] == ("event times far from their arrival: rule windows use the "
                             "arrival time")
    assert line["events"] == 6
    assert f"on collector {uid!r}" in line["hint"]


def test_a_clock_ahead_does_not_make_every_other_event_late(uid: str) -> None:
    now = time.time()
    eng = engine(max_clock_skew_secs=1800)
    # One sender 7 hours ahead, then five failures from a correct clock.
    events = [ev(now + 7 * HOUR, now, 0, f"{uid}-ahead", ip="192.0.2.9"),
              *(ev(now + i, now + i, i + 1, uid) for i in range(5))]
    out = rule_alerts(eng, events)
    assert [a["source"]["ip"] for a in out] == ["203.0.113.5"]
    assert eng.max_time < now + HOUR
    assert sample_value("socd_rules_late_events_total", collector=uid) == 0


def test_a_replay_of_old_records_keeps_its_event_times(uid: str) -> None:
    """Read today, last month's records all arrive now: out-of-order ones stay late
    (left out, as before) rather than being windowed at the replay's time."""
    now = time.time()
    old = now - 30 * 24 * HOUR
    eng = engine(max_clock_skew_secs=1800)
    events = [ev(old + 3600, now, 0, uid, ip="192.0.2.1"),
              *(ev(old + i, now, i + 1, uid) for i in range(6))]
    assert rule_alerts(eng, events) == []
    assert sample_value("socd_rules_late_events_total", collector=uid) == 6
    assert sample_value("socd_rules_clock_skew_events_total", collector=uid) == 0


def test_offline_commands_count_but_do_not_log(uid: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """`socd replay` and `test-rules` write data to stdout: nothing is logged there."""
    monkeypatch.setattr(engine_mod, "log_configured", lambda: False)
    now = time.time()
    with capture_logs() as logs:
        rule_alerts(engine(max_clock_skew_secs=0), utc_server_burst(uid, now))
    assert [entry for entry in logs if entry.get("collector") == uid] == []
    assert sample_value("socd_rules_late_events_total", collector=uid) == 6


def test_events_without_arrival_time_behave_as_before(uid: str) -> None:
    now = time.time()
    eng = engine(max_clock_skew_secs=1800)
    events = [ev(now, None, 0, uid, ip="192.0.2.1"),
              *(ev(now - 7 * HOUR + i, None, i + 1, uid) for i in range(6))]
    assert rule_alerts(eng, events) == []
    assert sample_value("socd_rules_late_events_total", collector=uid) == 6
