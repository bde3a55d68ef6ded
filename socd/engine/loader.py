"""Reading rule files: YAML -> validated :class:`Rule` -> :class:`CompiledRule`.

Every problem (unknown key, bad operator, bad regex or CIDR, duplicate id, bad
duration) is a :class:`~socd.errors.ConfigProblem` naming the rule file, the key
path (``rules[3].match.all[1].regex``), the line and a hint; all problems of all
files are reported together in one :class:`~socd.errors.ConfigError`.
"""

from __future__ import annotations

import glob
import hashlib
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from socd.config import parsed as parsed_form
from socd.config import resolve_path
from socd.config.located import Located, parse, unknown_key_hint
from socd.engine.compiler import (
    NOT_ROUTED,
    Context,
    IocRef,
    Limits,
    Matcher,
    compile_condition,
    index_entries,
    make_getter,
    routed_condition,
)
from socd.engine.model import DURATION_HINT, Rule, RuleFile
from socd.errors import ConfigError, ConfigProblem

BUILTIN = "builtin"


def builtin_dir() -> str:
    """The shipped rule pack: the ``socd.rules`` package directory."""
    import socd.rules

    return str(Path(socd.rules.__file__).parent)


Getter = Callable[[Any], Any]


@dataclass(eq=False)
class CompiledRule:
    """A rule ready to run: its definition plus compiled matchers and getters."""

    rule: Rule
    file: str
    line: int | None
    order: int
    match: Matcher | None
    steps: list[Matcher]
    index: list[tuple[str, list[str]]] | None
    def_hash: str
    ioc: IocRef
    uses_ioc: bool
    limits: Limits = field(default_factory=Limits)
    group_fields: tuple[str, ...] = ()
    group_getters: tuple[Getter, ...] = ()
    suppress_getters: tuple[Getter, ...] | None = None
    escalate_getters: tuple[Getter, ...] | None = None
    distinct_getter: Getter | None = None
    block: list[tuple[Getter, str, float]] = field(default_factory=list)
    notify: list[str] = field(default_factory=list)
    techniques: list[str] = field(default_factory=list)
    plain_tags: list[str] = field(default_factory=list)
    # ``match`` minus the leaf the index already checked (only valid for events the
    # index routed to this rule), when ``routed_ok``
    routed: Matcher | None = None
    routed_ok: bool = False
    # Index of the rule in its file's ``rules:`` list (for problem key paths).
    position: int = 0

    @property
    def id(self) -> str:
        return self.rule.id

    @property
    def kind(self) -> str:
        if self.rule.threshold is not None:
            return "threshold"
        if self.rule.sequence is not None:
            return "sequence"
        return "stateless"

    @property
    def window(self) -> float | None:
        if self.rule.threshold is not None:
            return self.rule.threshold.window
        if self.rule.sequence is not None:
            return self.rule.sequence.window
        return None


def expand_paths(paths: Iterable[str], base: str | None = None) -> list[str]:
    """Rule files named by ``paths``: files, directories (recursive) and globs."""
    files: list[str] = []
    for raw in paths:
        path = builtin_dir() if raw == BUILTIN else (
            resolve_path(base, raw) if base else os.path.expanduser(raw))
        if os.path.isdir(path):
            found = [str(p) for p in Path(path).rglob("*")
                     if p.suffix in (".yaml", ".yml") and p.is_file()]
            files.extend(sorted(found))
        elif any(ch in path for ch in "*?["):
            files.extend(sorted(p for p in glob.glob(path, recursive=True)
                                if os.path.isfile(p)))
        else:
            files.append(path)
    seen: set[str] = set()
    out = []
    for f in files:
        key = os.path.abspath(f)
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out


def load_paths(paths: Iterable[str], base: str | None = None) -> list[CompiledRule]:
    """Load and compile every rule file below ``paths``; raise ConfigError."""
    return load_files(expand_paths(paths, base))


def load_files(files: Iterable[str]) -> list[CompiledRule]:
    problems: list[ConfigProblem] = []
    rules: list[CompiledRule] = []
    first_seen: dict[str, tuple[str, int | None]] = {}
    builtin: tuple[str, parsed_form.Parsed | None] | None = None
    for file in files:
        try:
            text = Path(file).read_text(encoding="utf-8")
        except FileNotFoundError:
            problems.append(ConfigProblem(file, "", "no such rule file"))
            continue
        except OSError as exc:
            problems.append(ConfigProblem(file, "", f"cannot read: {exc.strerror}"))
            continue
        except UnicodeDecodeError:
            problems.append(ConfigProblem(file, "", "not UTF-8 text"))
            continue
        located = None
        if os.path.dirname(os.path.abspath(file)) == builtin_dir():
            # the shipped pack, parsed ahead of time (socd.config.parsed); read once
            if builtin is None:
                builtin = (builtin_dir(), parsed_form.load(builtin_dir()))
            if builtin[1] is not None:
                located = builtin[1].located(text, file)
        loaded, file_problems = load_text(text, file, start=len(rules), located=located)
        problems.extend(file_problems)
        for compiled in loaded:
            prev = first_seen.get(compiled.id)
            if prev is not None:
                where = prev[0] if prev[1] is None else f"{prev[0]}:{prev[1]}"
                problems.append(ConfigProblem(file, f"rules[{compiled.position}].id",
                                              f"duplicate rule id {compiled.id!r}",
                                              f"first defined at {where}", compiled.line))
                continue
            first_seen[compiled.id] = (file, compiled.line)
            rules.append(compiled)
    for i, compiled in enumerate(rules):
        compiled.order = i
    if problems:
        raise ConfigError(problems)
    return rules


def load_text(text: str, file: str = "<string>", *, start: int = 0,
              located: Located | None = None) -> tuple[list[CompiledRule], list[ConfigProblem]]:
    """Compile the rules of one file's text; returns the rules and the problems.
    ``located``: what ``parse(text, file)`` returns, when known (the shipped pack)."""
    if located is None:
        try:
            located = parse(text, file)
        except ConfigError as exc:
            return [], exc.problems
    raw = located.data
    ctx = Context(file, located.lines)
    if raw is None:
        return [], []
    if not isinstance(raw, Mapping):
        ctx.problem((), "a rule file is a mapping with a rules: list")
        return [], ctx.problems
    try:
        doc = RuleFile.model_validate(raw)
    except ValidationError as exc:
        report(exc, RuleFile, (), ctx)
        return [], ctx.problems
    out: list[CompiledRule] = []
    ids: dict[str, int] = {}
    for i, body in enumerate(doc.rules):
        compiled = compile_rule(body, ("rules", i), ctx, start + len(out))
        if compiled is None:
            continue
        if compiled.id in ids:
            ctx.problem(("rules", i, "id"), f"duplicate rule id {compiled.id!r}",
                        f"first defined at rules[{ids[compiled.id]}]")
            continue
        ids[compiled.id] = i
        compiled.position = i
        out.append(compiled)
    return out, ctx.problems


def compile_rule(body: Any, loc: tuple[Any, ...], ctx: Context,
                 order: int = 0) -> CompiledRule | None:
    if not isinstance(body, Mapping):
        ctx.problem(loc, "a rule must be a mapping (id:, title:, severity:, match:, ...)")
        return None
    before = len(ctx.problems)
    ctx.rule_id = body.get("id") if isinstance(body.get("id"), str) else None
    limits = Limits()
    ctx.limits = limits
    try:
        rule = Rule.model_validate(dict(body))
    except ValidationError as exc:
        report(exc, Rule, loc, ctx)
        # still check the conditions, so one run reports every problem
        if "match" in body and body["match"] is not None:
            compile_condition(body["match"], (*loc, "match"), ctx)
        return None
    uses_before = ctx.uses_ioc
    ctx.uses_ioc = False
    ioc = IocRef()
    ctx.ioc = ioc
    match = compile_condition(rule.match, (*loc, "match"), ctx) if rule.match is not None \
        else None
    steps: list[Matcher] = []
    if rule.sequence is not None:
        for i, step in enumerate(rule.sequence.steps):
            fn = compile_condition(step.match, (*loc, "sequence", "steps", i, "match"), ctx)
            if fn is not None:
                steps.append(fn)
    uses_ioc = ctx.uses_ioc
    ctx.uses_ioc = uses_before or uses_ioc
    if len(ctx.problems) > before:
        return None
    line = line_of(ctx, loc)
    compiled = CompiledRule(
        rule=rule, file=ctx.file, line=line, order=order, match=match, steps=steps,
        index=_rule_index(rule),
        def_hash=definition_hash(rule), ioc=ioc, uses_ioc=uses_ioc, limits=limits)
    _prepare(compiled)
    if rule.match is not None and compiled.index is not None and \
            index_entries(rule.match) is not None:
        reduced = routed_condition(rule.match)
        if reduced is not NOT_ROUTED:
            scratch = Context(ctx.file, ioc=ioc, limits=limits, rule_id=rule.id)
            routed = compile_condition(reduced, (*loc, "match"), scratch) \
                if reduced is not None else None
            if not scratch.problems:
                compiled.routed, compiled.routed_ok = routed, True
    return compiled


def _rule_index(rule: Rule) -> list[tuple[str, list[str]]] | None:
    if rule.match is not None:
        entries = index_entries(rule.match)
        if entries is not None or rule.sequence is None:
            return entries
    if rule.sequence is not None:  # every step must be indexable
        out: list[tuple[str, list[str]]] = []
        for step in rule.sequence.steps:
            e = index_entries(step.match)
            if e is None:
                return None
            out.extend(e)
        return out
    return None


def line_of(ctx: Context, loc: tuple[Any, ...]) -> int | None:
    return ctx.lines.get(loc) or ctx.lines.get((*loc, "id"))


def definition_hash(rule: Rule) -> str:
    """Hash of what determines a rule's state: its conditions and windows."""
    data = rule.model_dump(mode="json", include={"id", "match", "threshold", "sequence",
                                                 "suppress", "escalate"})
    return hashlib.blake2b(orjson.dumps(data, option=orjson.OPT_SORT_KEYS),
                           digest_size=16).hexdigest()


def _prepare(c: CompiledRule) -> None:
    r = c.rule
    group: list[str] = []
    if r.threshold is not None:
        group = list(r.threshold.group_by)
        if r.threshold.distinct is not None:
            c.distinct_getter = make_getter(r.threshold.distinct.field)
    elif r.sequence is not None:
        group = list(r.sequence.by)
    c.techniques = r.techniques
    c.plain_tags = r.plain_tags
    c.group_fields = tuple(group)
    c.group_getters = tuple(make_getter(f) for f in group)
    if r.suppress is not None:
        by = r.suppress.by if r.suppress.by is not None else group
        c.suppress_getters = tuple(make_getter(f) for f in by)
    if r.escalate is not None:
        by = (r.escalate.by if r.escalate.by is not None else
              r.suppress.by if r.suppress is not None and r.suppress.by is not None else group)
        c.escalate_getters = tuple(make_getter(f) for f in by)
    for action in r.actions:
        if action.block is not None:
            c.block.append((make_getter(action.block.field), action.block.field,
                            action.block.ttl))
        elif action.notify is not None:
            c.notify.extend(action.notify)


_HINTS = {"duration": DURATION_HINT}


def report(exc: ValidationError, model: type[BaseModel], prefix: tuple[Any, ...],
           ctx: Context) -> None:
    """Turn pydantic errors into problems with key paths and did-you-mean hints."""
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and
                                                  p.startswith(("function-", "str", "int"))
                                                  and p not in _field_names(model)))
        full = (*prefix, *loc)
        kind = err["type"]
        if kind == "extra_forbidden":
            ctx.problem(full, f"unknown key {loc[-1]!r}", unknown_key_hint(model, loc))
        elif kind == "missing":
            ctx.problem(full, "required key is missing")
        else:
            msg = err["msg"]
            if msg.startswith("Value error, "):
                msg = msg[len("Value error, "):]
            ctx.problem(full, msg, _HINTS.get(kind))


def _field_names(model: type[BaseModel]) -> set[str]:
    return set(model.model_fields)
