"""Running the ``tests:`` of rules (``socd test-rules``).

Each test runs on a fresh :class:`RuleEngine` holding only its rule, so tests
are independent of each other and of the rest of the pack.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TextIO

from socd.engine.compiler import IocLookup, as_text
from socd.engine.engine import RuleEngine, event_time
from socd.engine.loader import CompiledRule
from socd.engine.model import RuleTest, parse_duration
from socd.errors import DecodeError
from socd.event import Event, fingerprint, get, normalize, unflatten
from socd.ioc.normalize import IndicatorError
from socd.ioc.normalize import normalize as normalize_indicator
from socd.ioc.store import Entry, IocStore

DEFAULT_START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp()
SHOWN_KEYS = ("rule.id", "@timestamp", "socd.severity", "socd.rule.count", "socd.rule.group")


@dataclass
class TestOutcome:
    __test__ = False  # not a pytest class

    rule_id: str
    name: str
    file: str
    line: int | None
    ok: bool
    expected: list[dict[str, Any]] = field(default_factory=list)
    got: list[Event] = field(default_factory=list)
    missing: list[dict[str, Any]] = field(default_factory=list)
    unexpected: list[Event] = field(default_factory=list)
    error: str | None = None


def _iso(ts: float) -> str:
    text = dt.datetime.fromtimestamp(ts, dt.UTC).isoformat()
    return text.replace("+00:00", "Z")


def _plain(value: Any) -> Any:
    """YAML dates and times -> ISO text."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def build_events(rule_id: str, test: RuleTest) -> list[Event]:
    """The test's events as a decoder would deliver them (repeat/step expanded)."""
    out: list[Event] = []
    for i, raw in enumerate(test.events):
        body = dict(_plain(raw))
        repeat = body.pop("repeat", 1)
        step = parse_duration(body.pop("step", 1))
        if not isinstance(repeat, int) or isinstance(repeat, bool) or repeat < 1:
            raise ValueError(f"events[{i}].repeat must be a positive integer")
        base_ts = body.get("@timestamp")
        start = event_time(base_ts) if base_ts is not None else DEFAULT_START + len(out)
        if start is None:
            raise ValueError(f"events[{i}].@timestamp is not a date: {base_ts!r}")
        for r in range(repeat):
            event = unflatten(body)
            event["@timestamp"] = _iso(start + r * step) if (r or base_ts is None) \
                else body["@timestamp"]
            ev = event.setdefault("event", {})
            ev.setdefault("kind", "event")
            ev.setdefault("hash", fingerprint("test", rule_id, test.name, str(len(out))))
            event.setdefault("socd", {})
            try:
                normalize(event)
            except DecodeError as exc:
                raise ValueError(f"events[{i}]: {exc}") from exc
            out.append(event)
    return out


def _test_lookup(iocs: Mapping[Literal["ip", "domain", "hash"], list[str]]) -> IocLookup:
    """The test's indicators (source and reference ``test``) in a memory-only IoC store;
    a value that is no indicator of its kind matches nothing."""
    entries: list[Entry] = []
    for kind, values in iocs.items():
        for value in values:
            try:
                _, norm = normalize_indicator(value, kind)
            except IndicatorError:
                continue
            entries.append(Entry(kind, norm, "test", "test"))
    return IocStore(None, static=entries, gauges=False).lookup


def _same(actual: Any, expected: Any, key: str) -> bool:
    if key == "@timestamp":
        return actual is not None and event_time(actual) == event_time(expected)
    if isinstance(expected, Mapping):
        return isinstance(actual, Mapping) and all(
            _same(actual.get(k), v, k) for k, v in expected.items())
    if isinstance(expected, list):
        return isinstance(actual, list) and len(actual) == len(expected) and all(
            _same(a, e, key) for a, e in zip(actual, expected, strict=True))
    if isinstance(actual, list):
        return any(_same(a, expected, key) for a in actual)
    if expected is None or actual is None:
        return expected is actual
    if isinstance(expected, bool) or isinstance(actual, bool):
        return actual is expected
    return actual == expected or as_text(actual) == as_text(expected)


def alert_matches(alert: Event, expected: Mapping[str, Any]) -> bool:
    sentinel = object()
    for key, value in expected.items():
        actual = alert.get(key, sentinel) if key in alert else get(alert, key, sentinel)
        if actual is sentinel:
            actual = None
        if not _same(actual, value, key):
            return False
    return True


def _assign(expected: list[dict[str, Any]], got: list[Event]) -> tuple[
        list[dict[str, Any]], list[Event]]:
    """Match expected items to alerts (each used once); returns what is left over."""
    best: tuple[list[int], list[int]] | None = None

    def search(i: int, used: set[int], unmatched: list[int]) -> bool:
        nonlocal best
        if i == len(expected):
            rest = [j for j in range(len(got)) if j not in used]
            if best is None or len(unmatched) + len(rest) < len(best[0]) + len(best[1]):
                best = (list(unmatched), rest)
            return not unmatched and not rest
        for j, alert in enumerate(got):
            if (j not in used and alert_matches(alert, expected[i])
                    and search(i + 1, used | {j}, unmatched)):
                return True
        return search(i + 1, used, [*unmatched, i])

    search(0, set(), [])
    assert best is not None
    return [expected[i] for i in best[0]], [got[j] for j in best[1]]


def run_test(crule: CompiledRule, test: RuleTest,
             max_out_of_order_secs: float = 300.0) -> TestOutcome:
    outcome = TestOutcome(crule.id, test.name, crule.file, crule.line, ok=False,
                          expected=[dict(_plain(e)) for e in test.expect])
    try:
        events = build_events(crule.id, test)
    except ValueError as exc:
        outcome.error = f"invalid test event: {exc}"
        return outcome
    engine = RuleEngine([crule], ioc_lookup=_test_lookup(test.iocs),
                        max_out_of_order_secs=max_out_of_order_secs, include_disabled=True)
    n = len(events)
    out = engine.process(events)
    outcome.got = out[n:]
    outcome.missing, outcome.unexpected = _assign(outcome.expected, outcome.got)
    outcome.ok = not outcome.missing and not outcome.unexpected
    return outcome


def run_tests(rules: Iterable[CompiledRule], keyword: str | None = None) -> list[TestOutcome]:
    outcomes = []
    for crule in rules:
        for test in crule.rule.tests:
            if keyword and keyword.lower() not in f"{crule.id}: {test.name}".lower():
                continue
            outcomes.append(run_test(crule, test))
    return outcomes


def _short(value: Any) -> str:
    if isinstance(value, str):
        return value if len(value) <= 60 else value[:57] + "..."
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_short(v)}" for k, v in value.items()) + "}"
    return str(value)


def compact(item: Mapping[str, Any], keys: Iterable[str] | None = None) -> str:
    """``{a.b: v, ...}`` for an expected item, or the chosen keys of an alert."""
    if keys is None:
        return "{" + ", ".join(f"{k}: {_short(v)}" for k, v in item.items()) + "}"
    parts = []
    for key in keys:
        value = get(item, key) if key not in item else item[key]
        if value is not None:
            parts.append(f"{key}: {_short(value)}")
    return "{" + ", ".join(parts) + "}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def report(rules: list[CompiledRule], outcomes: list[TestOutcome], out: TextIO) -> int:
    """Print one line per test and a summary; return the exit code."""
    failures = 0
    for o in outcomes:
        if o.ok:
            print(f"ok    {o.rule_id}: {o.name}", file=out)
            continue
        failures += 1
        where = o.file if o.line is None else f"{o.file}:{o.line}"
        print(f"FAIL  {o.rule_id}: {o.name}  ({where})", file=out)
        if o.error:
            print(f"      {o.error}", file=out)
            continue
        print(f"      expected {_plural(len(o.expected), 'alert')}, got {len(o.got)}:",
              file=out)
        keys = list(dict.fromkeys([*SHOWN_KEYS, *(k for e in o.expected for k in e)]))
        for item in o.missing:
            print(f"        - {compact(item)}   (expected, not raised)", file=out)
        for alert in o.unexpected:
            print(f"        + {compact(alert, keys)}   (raised, not expected)", file=out)
    print(f"{_plural(len(rules), 'rule')}, {_plural(len(outcomes), 'test')}, "
          f"{_plural(failures, 'failure')}", file=out)
    return 0 if failures == 0 else 1
