"""Rules engine, issue 17: generated conditions and the event-time fast path give the
same answers as the closures and as parse_iso."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from socd.engine import engine as engine_mod
from socd.engine.compiler import (
    Context,
    IocRef,
    Limits,
    compile_condition,
    generate_condition,
    residual_condition,
)
from socd.tz import parse_iso

LIMITS = Limits(max_field_bytes=1024)
IOC = IocRef(lambda kind, value, *source: value in ("203.0.113.9", "evil.example"))

CONDITIONS: list[dict[str, Any]] = [
    {"field": "a.b", "equals": "Root"},
    {"field": "a.b", "equals": "Root", "case": "sensitive"},
    {"field": "a.b", "in": ["x", "Sở Tài chính", 4625]},
    {"field": "a", "in": ["x", "y"]},
    {"field": "a.b.c", "equals": "x"},
    {"field": "a.b", "regex": "^ro+t$"},
    {"field": "a.b", "regex": "(?i)^RO+T$", "case": "sensitive"},
    {"field": "a.b", "prefix": ["/tmp/", "c:\\users"]},
    {"field": "a.b", "prefix": "/tmp/", "case": "sensitive"},
    {"field": "a.b", "suffix": ".exe"},
    {"field": "a.b", "contains": ["mimikatz", "lsass"]},
    {"field": "a.b", "contains": ["a", "b", "c", "d", "e", "f"]},
    {"field": "a.b", "gte": 10},
    {"field": "a.b", "cidr": ["10.0.0.0/8", "::1/128"]},
    {"field": "a.b", "ioc": "ip"},
    {"field": "a.b", "exists": True},
    {"field": "a.b.c", "exists": False},
    {"not": {"field": "a.b", "equals": "x"}},
    {"any": [{"field": "a.b", "regex": "foo"}, {"field": "a.b", "regex": "(?i)BAR"},
             {"field": "a.c", "equals": "x"}, {"field": "a.b", "regex": "^ro"}]},
    {"all": [{"field": "a.b", "in": ["root", "x"]},
             {"any": [{"field": "a.c", "exists": True}, {"not": {"field": "d", "gt": 3}}]}]},
]

VALUES = st.sampled_from([None, "root", "ROOT", "Root", "x", "X", "sở tài chính", "4625",
                          4625, 4625.0, True, False, 12, "12", 3.5, "/TMP/a", "C:\\Users\\x",
                          "a.EXE", "run mimikatz", "MIMIKATZ", "10.1.2.3", "::1",
                          "203.0.113.9", "fooBAR", "roooot", "ro" + "o" * 2000 + "t",
                          "x" * 300, ["x", "root"], [None, "ROOT"], [], [["root"]],
                          {"c": "x"}, ("root",), "e", "abcdef"])


@st.composite
def events(draw: Any) -> dict[str, Any]:
    shape = draw(st.integers(0, 4))
    if shape == 0:
        return {"a": draw(VALUES), "d": draw(VALUES)}
    if shape == 1:
        return {"a": {"b": draw(VALUES), "c": draw(VALUES)}, "d": draw(VALUES)}
    if shape == 2:
        return {"a": {"b": {"c": draw(VALUES)}}}
    if shape == 3:
        return {"a": {"b": draw(VALUES)}}
    return {}


def _pair(raw: dict[str, Any]) -> tuple[Any, Any]:
    ctx = Context("<test>", ioc=IOC, limits=LIMITS)
    closures = compile_condition(raw, ("match",), ctx)
    assert not ctx.problems
    generated = generate_condition(raw, IOC, LIMITS)
    assert generated is not None
    return closures, generated


PAIRS = [_pair(raw) for raw in CONDITIONS]


@settings(max_examples=600, deadline=None)
@given(event=events())
def test_generated_conditions_equal_the_closures(event: dict[str, Any]) -> None:
    for raw, (closures, generated) in zip(CONDITIONS, PAIRS, strict=True):
        assert bool(generated(event)) == bool(closures(event)), (raw, event)


def test_field_names_and_values_are_constants_not_source() -> None:
    hostile = "x') or __import__('os') or ('"
    closures, generated = _pair({"field": hostile + ".b", "equals": hostile})
    assert generated({hostile: {"b": hostile}})
    assert not generated({"x": {"b": hostile}})


@pytest.mark.parametrize("raw", CONDITIONS)
def test_residue_of_nothing_known_is_the_condition(raw: dict[str, Any]) -> None:
    rest, _ = residual_condition(raw, lambda leaf: None)
    assert rest == raw


def test_event_time_fast_path_equals_parse_iso() -> None:
    rng = random.Random(17)

    def ref(text: str) -> float | None:
        try:
            return parse_iso(text).timestamp()
        except ValueError:
            return None
    for i in range(20000):
        text = (f"{rng.choice(['2023', '1970', '9999', '0001'])}-"
                f"{rng.choice(['01', '02', '12', '13'])}-{rng.choice(['01', '29', '31', '00'])}"
                f"T{rng.choice(['00', '23', '24'])}:{rng.choice(['00', '59', '60'])}:"
                f"{rng.choice(['00', '59', '60', '5x', '٣٣', '07'])}"
                f"{rng.choice(['Z', '+07:00', '-05:30', '+24:00', '-00:00'])}")
        assert engine_mod.event_time(text) == ref(text), text
        if i % 5 == 0:
            engine_mod._TS_CACHE.clear()
    assert len(engine_mod._MINUTES) <= engine_mod._MINUTES_MAX
