"""Route matching and the group/dedup keys of the notification core."""

from __future__ import annotations

from typing import Any

import pytest

from socd.config import GroupingConfig, NotificationsConfig
from socd.notify.routing import Keyer, Router


def alert(rule: str = "net-port-scan", severity: str = "medium", unit: str = "Sở Y tế",
          layer: int = 2, kind: str = "server", tags: list[str] | None = None,
          notify: list[str] | None = None, src: str = "203.0.113.9") -> dict[str, Any]:
    socd: dict[str, Any] = {"severity": severity, "unit": unit, "layer": layer,
                            "asset_kind": kind}
    if notify is not None:
        socd["actions"] = {"notify": notify}
    event: dict[str, Any] = {"event": {"kind": "alert", "hash": "h1"}, "rule": {"id": rule},
                             "source": {"ip": src}, "socd": socd}
    if tags is not None:
        event["tags"] = tags
    return event


def router(*routes: dict[str, Any]) -> Router:
    cfg = NotificationsConfig.model_validate({"routes": list(routes)})
    return Router(cfg.routes, cfg.grouping)


def names(r: Router, event: dict[str, Any]) -> list[str]:
    return [route.name for route in r.routes_for(event)]


@pytest.mark.parametrize(("match", "event", "expected"), [
    ({"severity": ["high", "critical"]}, alert(severity="high"), True),
    ({"severity": ["high", "critical"]}, alert(severity="medium"), False),
    ({"min_severity": "high"}, alert(severity="critical"), True),
    ({"min_severity": "high"}, alert(severity="high"), True),
    ({"min_severity": "high"}, alert(severity="medium"), False),
    ({"unit": ["Sở Y tế", "Sở Tài chính"]}, alert(unit="Sở Tài chính"), True),
    ({"unit": ["Sở Y tế"]}, alert(unit="Sở Nội vụ"), False),
    # Units match as severities do: case and diacritics ignored (issue 14, point 13).
    ({"unit": ["So Y te"]}, alert(unit="Sở Y tế"), True),
    ({"unit": ["SỞ Y TẾ"]}, alert(unit="Sở Y tế"), True),
    ({"layer": [4]}, alert(layer=4), True),
    ({"layer": [1, 2]}, alert(layer=4), False),
    ({"asset_kind": ["workstation"]}, alert(kind="workstation"), True),
    ({"asset_kind": ["workstation"]}, alert(kind="server"), False),
    ({"rule": ["net-port-scan"]}, alert(rule="net-port-scan"), True),
    ({"rule": ["net-*"]}, alert(rule="net-port-scan"), True),
    ({"rule": ["edr-*", "2001?19"]}, alert(rule="2001219"), True),
    ({"rule": ["edr-*"]}, alert(rule="net-port-scan"), False),
    ({"rule": ["net-port"]}, alert(rule="net-port-scan"), False),  # exact, not a prefix
    ({"tags": ["irt"]}, alert(tags=["irt", "x"]), True),
    ({"tags": ["irt"]}, alert(notify=["irt"]), True),  # the rule's notify: action
    ({"tags": ["irt"]}, alert(tags=["other"], notify=["unit-owner"]), False),
    ({"tags": ["irt"]}, alert(), False),
    ({}, alert(), True),  # no condition: everything
    # every listed condition must hold
    ({"min_severity": "high", "unit": ["Sở Y tế"]}, alert(severity="high"), True),
    ({"min_severity": "high", "unit": ["Sở Y tế"]}, alert(severity="high", unit="X"), False),
])
def test_match_conditions(match: dict[str, Any], event: dict[str, Any],
                          expected: bool) -> None:
    r = router({"name": "r", "match": match, "notifiers": ["n"]})
    assert bool(r.routes_for(event)) is expected


def test_alert_without_severity_counts_as_medium() -> None:
    r = router({"name": "r", "match": {"severity": ["medium"]}, "notifiers": ["n"]})
    event = alert()
    del event["socd"]["severity"]
    assert names(r, event) == ["r"]


def test_first_match_wins_and_continue_goes_on() -> None:
    r = router(
        {"name": "critical", "match": {"severity": ["critical"]}, "notifiers": ["irt"],
         "continue": True},
        {"name": "health", "match": {"unit": ["Sở Y tế"]}, "notifiers": ["mail"]},
        {"name": "rest", "notifiers": ["mail"]},
    )
    assert names(r, alert(severity="critical")) == ["critical", "health"]
    assert names(r, alert(severity="critical", unit="X")) == ["critical", "rest"]
    assert names(r, alert(severity="low")) == ["health"]
    assert names(r, alert(severity="low", unit="X")) == ["rest"]


def test_no_route_matches() -> None:
    r = router({"name": "only-high", "match": {"min_severity": "high"}, "notifiers": ["n"]})
    assert names(r, alert(severity="low")) == []


def test_route_grouping_override() -> None:
    r = router({"name": "a", "notifiers": ["n"], "grouping": {"group_by": ["host.name"]}},
               {"name": "b", "notifiers": ["n"]})
    assert r.by_name["a"].grouping.group_by == ["host.name"]
    # The default groups by unit and affected host (was rule.id and unit): the alerts
    # one event raises go out together (issue 14, point 10).
    assert r.by_name["b"].grouping.group_by == ["socd.unit", "host.name"]


def test_duplicate_route_names_are_rejected() -> None:
    with pytest.raises(ValueError, match="used twice"):
        NotificationsConfig.model_validate({"routes": [{"name": "a", "notifiers": ["n"]},
                                                       {"name": "a", "notifiers": ["m"]}]})


def test_unknown_quiet_hours_zone_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        NotificationsConfig.model_validate({"quiet_hours": {"timezone": "Asia/Hanoi_City"}})


def test_group_key_and_values() -> None:
    keyer = Keyer.build(GroupingConfig.model_validate(
        {"group_by": ["rule.id", "socd.unit", "tags", "host.name"]}))
    event = alert(tags=["a", "b"])
    assert keyer.group_key(event) == "rule.id=net-port-scan,socd.unit=Sở Y tế,tags=a|b,host.name="
    assert keyer.group_values(event) == {"rule.id": "net-port-scan", "socd.unit": "Sở Y tế",
                                         "tags": "a|b", "host.name": ""}


def test_dedup_key_depends_on_route_and_dedup_fields() -> None:
    keyer = Keyer.build(GroupingConfig.model_validate({"dedup_by": ["rule.id", "source.ip"]}))
    a = keyer.dedup_key("r", alert())
    assert a == keyer.dedup_key("r", alert(severity="high", unit="other"))  # not in dedup_by
    assert a != keyer.dedup_key("r", alert(src="198.51.100.1"))
    assert a != keyer.dedup_key("r", alert(rule="other"))
    assert a != keyer.dedup_key("r2", alert())
