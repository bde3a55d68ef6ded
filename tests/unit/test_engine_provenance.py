"""Rules engine: an alert is as unauthenticated as the weakest event it counted.

A threshold, distinct or sequence alert carries ``socd.transport`` when any event still
in the rule's state when it fired came from an unauthenticated transport; the blocker
then refuses its block (finding 8 of issue 12: four forged UDP lines plus one
authenticated line must not block).
"""

from __future__ import annotations

from typing import Any

from socd.block.sink import BlockerConfig, requests_from
from tests.unit.test_engine_state import BRUTE, SEQ, alerts, engine, ev

REFUSED = {"authenticated": False, "blocking": "refused"}
ALLOWED = {"authenticated": False, "blocking": "allowed"}


def via(event: dict[str, Any], collector: str, transport: dict[str, Any] | None = None
        ) -> dict[str, Any]:
    """``event`` as the decoder of ``collector`` stamps it."""
    event["socd"]["collector"] = collector
    if transport is not None:
        event["socd"]["transport"] = dict(transport)
    return event


def forged(secs: float, n: int, **flat: Any) -> dict[str, Any]:
    return via(ev(secs, n, **flat), "udp_fw", REFUSED)


def trusted(secs: float, n: int, **flat: Any) -> dict[str, Any]:
    return via(ev(secs, n, **flat), "tcp_srv")


def refusal(alert: dict[str, Any]) -> str | None:
    cfg = BlockerConfig.model_validate({"type": "blocker", "backend": "none"})
    (request,) = requests_from([alert], cfg)
    return request.refusal


def test_threshold_completed_by_an_authenticated_event_keeps_the_forged_ones() -> None:
    eng = engine(BRUTE)
    out = alerts(eng, [forged(0, 1, source__ip="203.0.113.9"),
                       forged(10, 2, source__ip="203.0.113.9"),
                       trusted(20, 3, source__ip="203.0.113.9")])
    (alert,) = out
    assert alert["socd"]["collector"] == "tcp_srv"
    assert alert["socd"]["transport"] == {**REFUSED, "collector": "udp_fw"}
    why = refusal(alert)
    assert why is not None
    assert why.startswith("unauthenticated_source: collector udp_fw")


def test_threshold_across_batches_remembers_the_forged_events() -> None:
    eng = engine(BRUTE)
    assert alerts(eng, [forged(0, 1, source__ip="x")]) == []
    assert alerts(eng, [trusted(10, 2, source__ip="x")]) == []
    (alert,) = alerts(eng, [trusted(20, 3, source__ip="x")])
    assert alert["socd"]["transport"]["blocking"] == "refused"


def test_authenticated_threshold_has_no_transport() -> None:
    eng = engine(BRUTE)
    (alert,) = alerts(eng, [trusted(i * 10, i, source__ip="x") for i in range(3)])
    assert "transport" not in alert["socd"]
    assert refusal(alert) is None


def test_a_forged_event_that_left_the_window_no_longer_counts() -> None:
    eng = engine(BRUTE)
    events = [forged(0, 0, source__ip="x")]
    events += [trusted(100 + i * 10, i + 1, source__ip="x") for i in range(3)]
    (alert,) = alerts(eng, events)
    assert alert["socd"]["rule"]["count"] == 3
    assert "transport" not in alert["socd"]


def test_refused_outranks_opted_in_and_opted_in_outranks_authenticated() -> None:
    eng = engine(BRUTE)
    (alert,) = alerts(eng, [via(ev(0, 1, source__ip="x"), "udp_optin", ALLOWED),
                            forged(1, 2, source__ip="x"), trusted(2, 3, source__ip="x")])
    assert alert["socd"]["transport"] == {**REFUSED, "collector": "udp_fw"}
    (alert,) = alerts(eng, [via(ev(100, 4, source__ip="y"), "udp_optin", ALLOWED),
                            trusted(101, 5, source__ip="y"), trusted(102, 6, source__ip="y")])
    assert alert["socd"]["transport"] == {**ALLOWED, "collector": "udp_optin"}
    assert refusal(alert) is None


def test_stateless_alert_names_its_own_collector() -> None:
    eng = engine("""
rules:
  - id: one
    title: One
    severity: high
    match: {field: event.category, equals: authentication}
    actions:
      - block: {field: source.ip, ttl: 1h}
""")
    (alert,) = alerts(eng, [forged(0, 1, source__ip="198.51.100.7")])
    assert alert["socd"]["transport"] == {**REFUSED, "collector": "udp_fw"}
    (alert,) = alerts(eng, [trusted(1, 2, source__ip="198.51.100.7")])
    assert "transport" not in alert["socd"]


DISTINCT = """
rules:
  - id: spray
    title: Spray
    severity: high
    match: {field: event.category, equals: authentication}
    threshold: {window: 5m, group_by: [source.ip], distinct: {field: user.name, count: 3}}
"""


def test_distinct_taint_follows_the_event_that_holds_each_value() -> None:
    eng = engine(DISTINCT)
    (alert,) = alerts(eng, [forged(0, 1, source__ip="x", user__name="alice"),
                            trusted(1, 2, source__ip="x", user__name="bob"),
                            trusted(2, 3, source__ip="x", user__name="carol")])
    assert alert["socd"]["transport"] == {**REFUSED, "collector": "udp_fw"}
    # A value seen again from an authenticated event is held by that event.
    (alert,) = alerts(eng, [forged(100, 4, source__ip="y", user__name="alice"),
                            trusted(101, 5, source__ip="y", user__name="alice"),
                            trusted(102, 6, source__ip="y", user__name="bob"),
                            trusted(103, 7, source__ip="y", user__name="carol")])
    assert "transport" not in alert["socd"]


def test_sequence_started_by_a_forged_event_is_unauthenticated() -> None:
    eng = engine(SEQ)
    (alert,) = alerts(eng, [via(ev(0, 1, host__name="h", event__outcome="failure"),
                                "udp_fw", REFUSED),
                            via(ev(10, 2, host__name="h", event__outcome="success"),
                                "tcp_srv")])
    assert alert["socd"]["transport"] == {**REFUSED, "collector": "udp_fw"}
    (alert,) = alerts(eng, [via(ev(20, 3, host__name="g", event__outcome="failure"),
                                "tcp_srv"),
                            via(ev(30, 4, host__name="g", event__outcome="success"),
                                "tcp_srv")])
    assert "transport" not in alert["socd"]
