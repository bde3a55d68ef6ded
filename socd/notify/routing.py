"""Routes: which alerts go to which notifiers, and how alerts are keyed.

Routes are checked in order; an alert goes to the first route it matches and
to later ones while the matched route says ``continue``. Every condition of a
route's ``match`` must hold; a list condition holds when any of its values
does, an empty list is no condition at all.

Two keys are computed per (alert, route):

* the **group key** (``rule.id=R1,socd.unit=X``): alerts with the same key go
  out together in one message;
* the **dedup key**: a hash of the route and the ``dedup_by`` values; a second
  alert with the same key within ``repeat_interval_secs`` is counted, not sent.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from socd.config import GroupingConfig, RouteConfig, RouteMatch
from socd.event import Event
from socd.severity import Severity, fold

Getter = Callable[[Event], Any]
Matcher = Callable[[Event], bool]

_RANK = {s.value: s.rank for s in Severity}


def getter(path: str) -> Getter:
    """A getter for a dotted path of a nested event (``None`` when absent)."""
    parts = tuple(path.split("."))

    def get(event: Event) -> Any:
        node: Any = event
        for part in parts:
            if type(node) is not dict:
                return None
            node = node.get(part)
        return node

    return get


def severity_of(event: Event) -> str:
    """The alert's SOC severity code (``medium`` when it carries none we know)."""
    socd = event.get("socd")
    code = socd.get("severity") if type(socd) is dict else None
    return code if code in _RANK else Severity.MEDIUM.value


def severity_rank(code: str) -> int:
    return _RANK.get(code, Severity.MEDIUM.rank)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _text(value: Any) -> str:
    if isinstance(value, list):
        return "|".join(_text(v) for v in value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def compile_match(match: RouteMatch) -> Matcher:
    """One closure testing every condition of ``match`` (all must hold)."""
    tests: list[Matcher] = []
    get_sev = severity_of
    if match.severity:
        wanted = frozenset(s.value for s in match.severity)
        tests.append(lambda e: get_sev(e) in wanted)
    if match.min_severity is not None:
        floor = match.min_severity.rank
        tests.append(lambda e: _RANK[get_sev(e)] >= floor)
    if match.unit:
        # As severities and `socd alert list --unit`: case and diacritics do not matter.
        units = frozenset(fold(u) for u in match.unit)
        get_unit = getter("socd.unit")
        tests.append(lambda e: isinstance(u := get_unit(e), str) and fold(u) in units)
    if match.layer:
        layers = frozenset(match.layer)
        get_layer = getter("socd.layer")
        tests.append(lambda e: get_layer(e) in layers)
    if match.asset_kind:
        kinds = frozenset(match.asset_kind)
        get_kind = getter("socd.asset_kind")
        tests.append(lambda e: get_kind(e) in kinds)
    if match.rule:
        tests.append(_rule_test(match.rule))
    if match.tags:
        tags = frozenset(match.tags)
        get_tags = getter("tags")
        get_notify = getter("socd.actions.notify")
        tests.append(lambda e: any(t in tags for t in _as_list(get_tags(e)))
                     or any(t in tags for t in _as_list(get_notify(e))))
    if not tests:
        return lambda e: True
    if len(tests) == 1:
        return tests[0]
    return lambda e: all(t(e) for t in tests)


def _rule_test(patterns: Sequence[str]) -> Matcher:
    exact = frozenset(p for p in patterns if not any(c in p for c in "*?["))
    globs = [p for p in patterns if p not in exact]
    regex = re.compile("|".join(f"(?:{fnmatch.translate(g)})" for g in globs)) if globs else None
    get_rule = getter("rule.id")

    def test(event: Event) -> bool:
        rule_id = get_rule(event)
        if rule_id is None:
            return False
        rule_id = str(rule_id)
        return rule_id in exact or (regex is not None and regex.match(rule_id) is not None)

    return test


@dataclass(frozen=True, slots=True)
class Keyer:
    """Computes the group and dedup keys of one grouping configuration."""

    group_fields: tuple[str, ...]
    group_getters: tuple[Getter, ...]
    dedup_getters: tuple[Getter, ...]

    @classmethod
    def build(cls, grouping: GroupingConfig) -> Keyer:
        return cls(tuple(grouping.group_by), tuple(getter(p) for p in grouping.group_by),
                   tuple(getter(p) for p in grouping.dedup_by))

    def group_values(self, event: Event) -> dict[str, str]:
        return {f: _text(g(event)) for f, g in zip(self.group_fields, self.group_getters,
                                                    strict=True)}

    def group_key(self, event: Event) -> str:
        return ",".join(f"{f}={_text(g(event))}"
                        for f, g in zip(self.group_fields, self.group_getters, strict=True))

    def dedup_key(self, route: str, event: Event) -> bytes:
        values = [g(event) for g in self.dedup_getters]
        data = orjson.dumps([route, values], default=str)
        return hashlib.blake2b(data, digest_size=16).digest()


@dataclass(frozen=True, slots=True)
class Route:
    """A compiled route."""

    name: str
    matches: Matcher
    notifiers: tuple[str, ...]
    continue_: bool
    quiet_hours: bool
    grouping: GroupingConfig
    keyer: Keyer


class Router:
    """The configured routes, compiled; :meth:`routes_for` gives an alert's routes."""

    def __init__(self, routes: Sequence[RouteConfig], default_grouping: GroupingConfig) -> None:
        self.routes: list[Route] = []
        for cfg in routes:
            grouping = cfg.grouping or default_grouping
            self.routes.append(Route(cfg.name, compile_match(cfg.match), tuple(cfg.notifiers),
                                     cfg.continue_, cfg.quiet_hours, grouping,
                                     Keyer.build(grouping)))
        self.by_name = {r.name: r for r in self.routes}

    def routes_for(self, event: Event) -> list[Route]:
        out: list[Route] = []
        for route in self.routes:
            if route.matches(event):
                out.append(route)
                if not route.continue_:
                    break
        return out
