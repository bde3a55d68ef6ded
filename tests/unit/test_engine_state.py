"""Rules engine: thresholds, sequences, suppress, escalate, late events, alerts, reload."""

from __future__ import annotations

import datetime as dt
from typing import Any

from socd.engine import RuleEngine, load_text
from socd.event import fingerprint, unflatten
from tests.unit.conftest import sample_value

T0 = dt.datetime(2026, 3, 1, 8, 0, tzinfo=dt.UTC).timestamp()


def engine(yaml_text: str, **kw: Any) -> RuleEngine:
    rules, problems = load_text(yaml_text, "<t>")
    assert not problems, [str(p) for p in problems]
    return RuleEngine(rules, **kw)


def ev(secs: float, n: int = 0, **flat: Any) -> dict[str, Any]:
    event = unflatten({k.replace("__", "."): v for k, v in flat.items()})
    event["@timestamp"] = dt.datetime.fromtimestamp(T0 + secs, dt.UTC).isoformat()
    event.setdefault("event", {}).setdefault("hash", f"h{n}-{secs}")
    event["event"].setdefault("category", "authentication")
    event.setdefault("socd", {"unit": "Sở Y tế", "asset_kind": "server"})
    return event


def alerts(eng: RuleEngine, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = eng.process(events)
    assert out[:len(events)] == events
    return out[len(events):]


BRUTE = """
rules:
  - id: brute
    title: {vi: "Dò mật khẩu", en: "Brute force"}
    description: "Nhiều lần đăng nhập thất bại"
    severity: medium
    layer: 2
    category: authentication
    tags: [attack.t1110.001, ssh]
    match: {field: event.category, equals: authentication}
    threshold: {count: 3, window: 1m, group_by: [source.ip]}
    actions:
      - block: {field: source.ip, ttl: 1h}
      - notify: [irt]
"""


def test_threshold_fires_and_resets() -> None:
    eng = engine(BRUTE)
    out = alerts(eng, [ev(i * 10, i, source__ip="203.0.113.9") for i in range(7)])
    assert len(out) == 2  # events 3 and 6: the window is reset after firing
    a = out[0]
    assert a["event"]["kind"] == "alert"
    assert a["event"]["dataset"] == "socd.rules"
    assert a["rule"] == {"id": "brute", "name": "Dò mật khẩu", "ruleset": "socd",
                         "description": "Nhiều lần đăng nhập thất bại",
                         "category": "authentication"}
    assert a["threat"]["technique"]["id"] == ["T1110.001"]
    assert a["tags"] == ["ssh"]
    assert a["socd"]["severity"] == "medium"
    assert a["socd"]["severity_label"] == "trung bình"
    assert a["socd"]["layer"] == 2
    assert a["socd"]["unit"] == "Sở Y tế"
    assert a["socd"]["rule"]["count"] == 3
    assert a["socd"]["rule"]["window"] == 60
    assert a["socd"]["rule"]["group"] == {"source.ip": "203.0.113.9"}
    assert a["socd"]["rule"]["trigger_hashes"] == ["h0-0", "h1-10", "h2-20"]
    assert a["socd"]["actions"] == {
        "block": [{"value": "203.0.113.9", "ttl_secs": 3600, "reason": "brute: Dò mật khẩu"}],
        "notify": ["irt"]}
    assert a["source"] == {"ip": "203.0.113.9"}
    assert a["@timestamp"] == ev(20)["@timestamp"]
    assert a["event"]["hash"] == fingerprint("rule", "brute", '["203.0.113.9"]', "h0-0")


def test_threshold_sliding_window_and_groups() -> None:
    eng = engine(BRUTE)
    # 3 events but spread over 61 s+: no alert; a 4th inside the window of the last two fires
    events = [ev(0, source__ip="a"), ev(40, source__ip="a"), ev(61, source__ip="a"),
              ev(5, source__ip="b"), ev(6, source__ip="b")]
    assert alerts(eng, events) == []
    out = alerts(eng, [ev(70, 9, source__ip="a")])
    assert len(out) == 1
    assert out[0]["socd"]["rule"]["count"] == 3
    assert alerts(eng, [ev(7, 1, source__ip="b")])[0]["socd"]["rule"]["group"] == {
        "source.ip": "b"}


def test_threshold_order_within_batch_uses_event_time() -> None:
    eng = engine(BRUTE)
    events = [ev(50, 1, source__ip="a"), ev(-30, 2, source__ip="a"), ev(55, 3, source__ip="a"),
              ev(58, 4, source__ip="a")]
    out = alerts(eng, events)
    assert len(out) == 1
    assert out[0]["socd"]["rule"]["trigger_hashes"] == ["h1-50", "h3-55", "h4-58"]


def test_distinct_threshold() -> None:
    eng = engine("""
rules:
  - id: spray
    title: Spray
    severity: high
    match: {field: event.category, equals: authentication}
    threshold: {window: 5m, group_by: [source.ip], distinct: {field: user.name, count: 3}}
""")
    same = [ev(i, i, source__ip="x", user__name="bob") for i in range(10)]
    assert alerts(eng, same) == []
    out = alerts(eng, [ev(20, 1, source__ip="x", user__name="alice"),
                       ev(400, 2, source__ip="x", user__name="carol"),
                       ev(401, 3, source__ip="x", user__name="dave"),
                       ev(402, 4, source__ip="x", user__name=["erin", "frank"])])
    assert len(out) == 1
    assert out[0]["socd"]["rule"]["count"] == 4


SEQ = """
rules:
  - id: seq
    title: Fail then success
    severity: high
    sequence:
      window: 10m
      by: [host.name]
      steps:
        - match: {field: event.outcome, equals: failure}
        - match: {field: event.outcome, equals: success}
"""


def test_sequence_in_order_within_window() -> None:
    eng = engine(SEQ)
    assert alerts(eng, [ev(0, 1, host__name="h", event__outcome="success")]) == []
    assert alerts(eng, [ev(10, 2, host__name="h", event__outcome="failure")]) == []
    assert alerts(eng, [ev(20, 3, host__name="other", event__outcome="success")]) == []
    out = alerts(eng, [ev(30, 4, host__name="h", event__outcome="success")])
    assert len(out) == 1
    assert out[0]["socd"]["rule"]["count"] == 2
    assert out[0]["socd"]["rule"]["trigger_hashes"] == ["h2-10", "h4-30"]
    # progress cleared after firing
    assert alerts(eng, [ev(40, 5, host__name="h", event__outcome="success")]) == []
    # too late
    assert alerts(eng, [ev(50, 6, host__name="h", event__outcome="failure"),
                        ev(50 + 601, 7, host__name="h", event__outcome="success")]) == []


def test_sequence_orders_by_event_time_in_batch() -> None:
    eng = engine(SEQ)
    out = alerts(eng, [ev(30, 1, host__name="h", event__outcome="success"),
                       ev(10, 2, host__name="h", event__outcome="failure")])
    assert len(out) == 1
    out = alerts(engine(SEQ), [ev(10, 1, host__name="h", event__outcome="success"),
                               ev(30, 2, host__name="h", event__outcome="failure")])
    assert out == []


def test_suppress_and_metric() -> None:
    eng = engine("""
rules:
  - id: sup
    title: Sup
    severity: low
    match: {field: event.category, equals: authentication}
    suppress: {window: 30m, by: [source.ip]}
""")
    before = sample_value("socd_rules_suppressed_total", rule="sup")
    out = alerts(eng, [ev(0, 1, source__ip="a"), ev(60, 2, source__ip="a"),
                       ev(61, 3, source__ip="b"), ev(1801, 4, source__ip="a")])
    assert [a["source"]["ip"] for a in out] == ["a", "b", "a"]
    assert sample_value("socd_rules_suppressed_total", rule="sup") - before == 1
    assert sample_value("socd_rule_matches_total", rule="sup") >= 3


def test_escalate_raises_severity_through_suppression() -> None:
    eng = engine("""
rules:
  - id: esc
    title: Esc
    severity: high
    match: {field: event.category, equals: authentication}
    suppress: {window: 1h, by: [host.name]}
    escalate: {count: 3, window: 1h}
""")
    out = alerts(eng, [ev(i * 60, i, host__name="h") for i in range(7)])
    assert [a["socd"]["severity"] for a in out] == ["high", "critical", "critical"]
    assert out[1]["socd"]["rule"]["escalated"] is True
    assert out[1]["socd"]["severity_label"] == "nghiêm trọng"


def test_late_events_skip_state_but_match_stateless() -> None:
    text = BRUTE + """
  - id: stateless
    title: S
    severity: low
    match: {field: source.ip, equals: late}
"""
    eng = engine(text, max_out_of_order_secs=60)
    before = sample_value("socd_rules_late_events_total", collector="unknown")
    assert alerts(eng, [ev(1000, 1, source__ip="x")]) == []
    out = alerts(eng, [ev(100, i, source__ip="late") for i in range(5)])
    assert [a["rule"]["id"] for a in out] == ["stateless"] * 5
    assert sample_value("socd_rules_late_events_total", collector="unknown") - before == 5
    # within the bound: counted
    out = alerts(eng, [ev(950, i, source__ip="y") for i in range(3)])
    assert [a["rule"]["id"] for a in out] == ["brute"]


def test_state_is_bounded() -> None:
    eng = engine(BRUTE, max_keys=10)
    alerts(eng, [ev(i, i, source__ip=f"10.0.0.{i}") for i in range(50)])
    assert len(eng.state["brute"].groups) == 10
    assert sample_value("socd_rules_state_evictions_total", rule="brute") >= 40


def test_alert_hashes_are_deterministic() -> None:
    events = [ev(i, i, source__ip="203.0.113.9") for i in range(9)]
    a1 = alerts(engine(BRUTE), [dict(e) for e in events])
    a2 = alerts(engine(BRUTE), [dict(e) for e in events])
    assert [a["event"]["hash"] for a in a1] == [a["event"]["hash"] for a in a2]
    assert len({a["event"]["hash"] for a in a1}) == 3


def test_alert_does_not_alias_trigger() -> None:
    event = ev(0, source__ip="a", host__name="h")
    out = alerts(engine("""
rules:
  - id: s
    title: S
    severity: low
    match: {field: host.name, exists: true}
"""), [event])
    out[0]["host"]["name"] = "changed"
    assert event["host"]["name"] == "h"


def test_reload_carries_state_of_unchanged_rules() -> None:
    old = engine(BRUTE + """
  - id: other
    title: O
    severity: low
    match: {field: x, equals: 1}
    threshold: {count: 2, window: 1m}
""")
    alerts(old, [ev(0, 1, source__ip="a", x=1), ev(1, 2, source__ip="a")])
    new = engine(BRUTE + """
  - id: other
    title: O
    severity: low
    match: {field: x, equals: 1}
    threshold: {count: 2, window: 2m}
""")
    carried = new.carry_state_from(old)
    assert carried == ["brute"]
    out = alerts(new, [ev(2, 3, source__ip="a", x=1)])
    assert [a["rule"]["id"] for a in out] == ["brute"]  # 'other' restarted its window


def test_no_rules_is_a_no_op() -> None:
    eng = RuleEngine([])
    events = [ev(0)]
    assert eng.process(events) is events
