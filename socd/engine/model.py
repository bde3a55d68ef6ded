"""The rule file schema (docs/rules.md), validated with pydantic.

Condition trees (``match:``) are kept raw here and checked by
:mod:`socd.engine.compiler`, which reports errors with their exact key path.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from socd.config import StrictModel
from socd.severity import BUILTIN_TABLES, Severity

RULE_ID = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
DURATION_HINT = "write a number with s, m, h or d (30s, 2m, 1h, 7d) or a number of seconds"


def parse_duration(value: Any) -> float:
    """``"30s"``, ``"2m"``, ``"1h"``, ``"7d"`` or a number of seconds -> seconds."""
    if isinstance(value, bool):
        raise PydanticCustomError("duration", "invalid duration {value}", {"value": repr(value)})
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    else:
        raise PydanticCustomError("duration", "invalid duration {value}", {"value": repr(value)})
    if seconds <= 0:
        raise PydanticCustomError("duration", "a duration must be positive, got {value}",
                                  {"value": repr(value)})
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
FieldPath = Annotated[str, Field(min_length=1, pattern=r"^[@A-Za-z0-9_][A-Za-z0-9_.@-]*$")]


class LocalText(StrictModel):
    vi: str
    en: str | None = None


def _text(value: Any) -> Any:
    return {"vi": value} if isinstance(value, str) else value


Text = Annotated[LocalText, BeforeValidator(_text)]


def _severity(value: Any) -> Severity:
    if isinstance(value, Severity):
        return value
    sev = BUILTIN_TABLES["vietnamese"].lookup(value) if isinstance(value, str) else None
    if sev is None:
        raise PydanticCustomError(
            "severity", "unknown severity {value}; use low, medium, high, critical "
            "(or thấp, trung bình, cao, nghiêm trọng)", {"value": repr(value)})
    return sev


class Distinct(StrictModel):
    field: FieldPath
    count: int = Field(ge=1)


class Threshold(StrictModel):
    count: int | None = Field(None, ge=1)
    window: Duration
    group_by: list[FieldPath] = Field(default_factory=list)
    distinct: Distinct | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Threshold:
        if (self.count is None) == (self.distinct is None):
            raise PydanticCustomError("threshold", "a threshold needs exactly one of count: "
                                      "or distinct: {{field, count}}")
        return self


class Step(StrictModel):
    name: str | None = None
    match: Any


class Sequence(StrictModel):
    window: Duration
    by: list[FieldPath] = Field(default_factory=list)
    steps: list[Step] = Field(min_length=2)


class Suppress(StrictModel):
    window: Duration
    by: list[FieldPath] | None = None


class Escalate(StrictModel):
    count: int = Field(ge=1)
    window: Duration
    by: list[FieldPath] | None = None


class BlockAction(StrictModel):
    field: FieldPath
    ttl: Duration = 86400.0


class Action(StrictModel):
    block: BlockAction | None = None
    notify: list[str] | None = None

    @model_validator(mode="after")
    def _one(self) -> Action:
        if (self.block is None) == (self.notify is None):
            raise PydanticCustomError("action", "an action is either block: or notify:")
        return self


class RuleTest(StrictModel):
    name: str
    events: list[dict[str, Any]] = Field(min_length=1)
    expect: list[dict[str, Any]] = Field(default_factory=list)
    iocs: dict[Literal["ip", "domain", "hash"], list[str]] = Field(default_factory=dict)


class Rule(StrictModel):
    id: str
    title: Text
    description: Text | None = None
    severity: Annotated[Severity, BeforeValidator(_severity)]
    layer: int = Field(2, ge=1, le=4)
    category: str | None = None
    tags: list[str] = Field(default_factory=list)
    references: list[str] = Field(default_factory=list)
    version: Annotated[str | None, BeforeValidator(lambda v: str(v) if isinstance(
        v, int | float) and not isinstance(v, bool) else v)] = None
    enabled: bool = True
    match: Any = None
    threshold: Threshold | None = None
    sequence: Sequence | None = None
    suppress: Suppress | None = None
    escalate: Escalate | None = None
    actions: list[Action] = Field(default_factory=list)
    tests: list[RuleTest] = Field(default_factory=list)

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not RULE_ID.match(value):
            raise PydanticCustomError(
                "rule_id", "invalid rule id {value}: use lowercase letters, digits, '.', '_' "
                "and '-', starting with a letter or digit", {"value": repr(value)})
        return value

    @model_validator(mode="after")
    def _shape(self) -> Rule:
        if self.threshold is not None and self.sequence is not None:
            raise PydanticCustomError("rule", "a rule has threshold: or sequence:, not both")
        if self.match is None and self.sequence is None:
            raise PydanticCustomError("rule", "a rule needs match: (a condition)")
        return self

    @property
    def techniques(self) -> list[str]:
        out = []
        for tag in self.tags:
            m = re.fullmatch(r"attack\.(t\d{4}(?:\.\d{3})?)", tag, re.IGNORECASE)
            if m:
                out.append(m.group(1).upper())
        return out

    @property
    def plain_tags(self) -> list[str]:
        return [t for t in self.tags
                if not re.fullmatch(r"attack\.(t\d{4}(?:\.\d{3})?)", t, re.IGNORECASE)]


class RuleFile(StrictModel):
    rules: list[Any] = Field(default_factory=list)
