"""Condition trees -> plain Python closures (no ``eval``).

Each leaf becomes a closure over a precomputed field getter and a scalar test;
groups become ``all``/``any``/``not`` over their children. Arrays match when any
element matches. String comparisons fold case with :meth:`str.casefold` (cached)
unless ``case: sensitive``. CIDR lists become sorted, merged integer ranges
searched with :func:`bisect`. Regular expressions run on RE2 (:mod:`socd.patterns`), in
time linear in the text, and read at most ``rules.max_field_bytes`` of a field.
"""

from __future__ import annotations

import bisect
import functools
import math
import re
import unicodedata
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter

from socd import netaddr
from socd.codegen import Source
from socd.config.located import Lines, Loc, did_you_mean, dotted, line_for
from socd.errors import ConfigProblem
from socd.event import Event
from socd.metrics import REGISTRY
from socd.patterns import Pattern, PatternError, bounded, encode

Matcher = Callable[[Event], bool]
Test = Callable[[Any], bool]
IocLookup = Callable[..., bool]

STRING_OPS = ("equals", "in", "prefix", "suffix", "contains", "regex")
NUMBER_OPS = ("gt", "gte", "lt", "lte")
OPS = (*STRING_OPS, *NUMBER_OPS, "cidr", "exists", "ioc")
LEAF_KEYS = ("field", "case", *OPS)
GROUPS = ("all", "any", "not")
IOC_KINDS = ("ip", "domain", "hash")

# Fields an event is routed on: a rule whose top-level ``all`` holds an equals/in
# leaf on one of these is only tried on events with one of its values. Most
# selective first.
INDEX_FIELDS = ("event.code", "event.action", "winlog.channel", "event.provider",
                "event.dataset", "event.category", "event.module", "observer.type",
                "event.kind")

_MISSING = object()

# -- value helpers -------------------------------------------------------------------

_FOLDED: dict[str, str] = {}
_FOLD_MAX = 200_000
# Only short values are kept for long (they recur: names, codes, paths); a long one is
# kept only while the leaves of one event read it, so input cannot fill memory.
_FOLD_SHORT = 256
_FOLDED_LONG: dict[str, str] = {}
_FOLD_LONG_MAX = 8


def folded(text: str) -> str:
    """``text.casefold()``, cached (the same values recur in every batch)."""
    f = _FOLDED.get(text)
    if f is None:
        if len(text) > _FOLD_SHORT:
            return _folded_long(text)
        f = text.casefold()
        if len(_FOLDED) >= _FOLD_MAX:
            _FOLDED.clear()
        _FOLDED[text] = f
    return f


def _folded_long(text: str) -> str:
    f = _FOLDED_LONG.get(text)
    if f is None:
        f = text.casefold()
        if len(_FOLDED_LONG) >= _FOLD_LONG_MAX:
            _FOLDED_LONG.clear()
        _FOLDED_LONG[text] = f
    return f


def as_text(value: Any) -> str | None:
    """The text form a string operator compares (numbers as written, bools lowercase)."""
    t = type(value)
    if t is str:
        return value  # type: ignore[no-any-return]
    if t is bool:
        return "true" if value else "false"
    if t is int:
        return str(value)
    if t is float:
        return str(int(value)) if value.is_integer() else repr(value)
    return None


def index_key(value: Any) -> str | None:
    text = as_text(value)
    return folded(text) if text is not None else None


def as_number(value: Any) -> float | None:
    t = type(value)
    if t is int or t is float:
        return value  # type: ignore[no-any-return]
    if t is str:
        try:
            return float(value)
        except ValueError:
            return None
    return None


def ip_int(text: str) -> tuple[int, int] | None:
    """``(version, integer)`` of an IP address text, or None.

    Through the address gate (socd.netaddr, its inet_pton fast path): an IPv4-mapped
    address matches IPv4 networks, a zone id matches nothing. Not counted: event
    fields were counted when they were decoded. A text longer than any address is
    answered before the cache: input must not make 1 MiB values its keys."""
    if len(text) > netaddr.MAX_LENGTH:
        return None
    return _ip_int(text)


@functools.lru_cache(maxsize=131072)
def _ip_int(text: str) -> tuple[int, int] | None:
    return netaddr.address_int(text)


def make_getter(path: str) -> Callable[[Event], Any]:
    """A fast getter for a dotted path of a nested event."""
    parts = tuple(path.split("."))
    if len(parts) == 1:
        (a,) = parts
        return lambda e: e.get(a)
    if len(parts) == 2:
        a, b = parts

        def get2(e: Event) -> Any:
            v = e.get(a)
            return v.get(b) if type(v) is dict else None
        return get2
    if len(parts) == 3:
        a, b, c = parts

        def get3(e: Event) -> Any:
            v = e.get(a)
            if type(v) is not dict:
                return None
            v = v.get(b)
            return v.get(c) if type(v) is dict else None
        return get3

    def getn(e: Event) -> Any:
        v: Any = e
        for p in parts:
            if type(v) is not dict:
                return None
            v = v.get(p)
        return v
    return getn


# -- compilation ---------------------------------------------------------------------


@dataclass
class IocRef:
    """Where ``ioc`` leaves find the lookup; set by the engine that runs the rules."""

    lookup: IocLookup | None = None


DEFAULT_MAX_FIELD_BYTES = 64 * 1024


@dataclass
class Limits:
    """Run-time bounds of a rule's conditions; set by the engine that runs the rules.

    ``max_field_bytes``: a regex condition reads at most this many UTF-8 bytes of a
    field (RE2 is linear in the text; this bounds the constant)."""

    max_field_bytes: int = DEFAULT_MAX_FIELD_BYTES


@dataclass
class Context:
    """Per-file compilation context: where problems are reported."""

    file: str
    lines: Lines = field(default_factory=dict)
    problems: list[ConfigProblem] = field(default_factory=list)
    ioc: IocRef = field(default_factory=IocRef)
    uses_ioc: bool = False
    limits: Limits = field(default_factory=Limits)
    rule_id: str | None = None  # the rule being compiled, named in pattern problems

    def problem(self, loc: Loc, message: str, hint: str | None = None) -> None:
        self.problems.append(ConfigProblem(self.file, dotted(loc), message, hint,
                                           line_for(self.lines, loc)))


def _key_hint(key: object, options: tuple[str, ...]) -> str:
    return did_you_mean(str(key), options) or f"valid keys: {', '.join(options)}"


def compile_condition(raw: Any, loc: tuple[Any, ...], ctx: Context) -> Matcher | None:
    """Compile a condition tree; problems go to ``ctx`` (returns None then)."""
    if not isinstance(raw, Mapping) or not raw:
        ctx.problem(loc, "a condition must be a mapping: a leaf {field: ..., OP: ...} or "
                    "all:/any:/not:")
        return None
    groups = [k for k in raw if k in GROUPS]
    if groups:
        if len(raw) != 1:
            extra = sorted(str(k) for k in raw if k != groups[0])
            ctx.problem((*loc, extra[0]), f"{groups[0]}: cannot be combined with other keys",
                        f"put them in a list under all: (found {', '.join(extra)})")
            return None
        kind = groups[0]
        body = raw[kind]
        if kind == "not":
            inner = compile_condition(body, (*loc, "not"), ctx)
            if inner is None:
                return None
            return lambda e: not inner(e)
        if not isinstance(body, list) or not body:
            ctx.problem((*loc, kind), f"{kind}: needs a non-empty list of conditions")
            return None
        children = [compile_condition(c, (*loc, kind, i), ctx) for i, c in enumerate(body)]
        if any(c is None for c in children):
            return None
        fns: list[Matcher] = [c for c in children if c is not None]
        if len(fns) == 1:
            return fns[0]
        if kind == "all":
            if len(fns) == 2:
                f0, f1 = fns
                return lambda e: f0(e) and f1(e)
            if len(fns) == 3:
                f0, f1, f2 = fns
                return lambda e: f0(e) and f1(e) and f2(e)
            tup = tuple(fns)

            def all_n(e: Event) -> bool:
                for f in tup:  # noqa: SIM110
                    if not f(e):
                        return False
                return True
            return all_n
        tup = tuple(_merge_regexes(body, fns, loc, ctx))
        if len(tup) == 1:
            return tup[0]
        if len(tup) == 2:
            g0, g1 = tup
            return lambda e: g0(e) or g1(e)

        def any_n(e: Event) -> bool:
            for f in tup:  # noqa: SIM110
                if f(e):
                    return True
            return False
        return any_n
    return _compile_leaf(raw, loc, ctx)


def _compile_leaf(raw: Mapping[str, Any], loc: tuple[Any, ...], ctx: Context) -> Matcher | None:
    ok = True
    for key in raw:
        if key not in LEAF_KEYS:
            ctx.problem((*loc, key), f"unknown key {key!r}",
                        _key_hint(key, (*LEAF_KEYS, *GROUPS)))
            ok = False
    path = raw.get("field")
    if not isinstance(path, str) or not path:
        ctx.problem((*loc, "field"), "a condition leaf needs field: (a dotted event path)")
        ok = False
    ops = [k for k in raw if k in OPS]
    if not ops:
        if ok:
            ctx.problem(loc, "a condition leaf needs an operator",
                        f"one of {', '.join(OPS)}")
        return None
    if len(ops) > 1:
        ctx.problem((*loc, ops[1]), f"one operator per leaf, found {', '.join(ops)}",
                    "combine leaves with all: [...]")
        return None
    op = ops[0]
    case = raw.get("case", "insensitive")
    if case not in ("insensitive", "sensitive"):
        ctx.problem((*loc, "case"), f"case must be insensitive or sensitive, got {case!r}")
        ok = False
    elif "case" in raw and op not in STRING_OPS:
        ctx.problem((*loc, "case"), f"case: applies to string operators, not {op}")
        ok = False
    if not ok:
        return None
    assert isinstance(path, str)
    getter = make_getter(path)
    value = raw[op]
    vloc = (*loc, op)
    if op == "exists":
        if not isinstance(value, bool):
            ctx.problem(vloc, f"exists: takes true or false, got {value!r}")
            return None
        if value:
            return lambda e: getter(e) is not None
        return lambda e: getter(e) is None
    test = _scalar_test(op, value, case == "insensitive", vloc, ctx, path=path)
    if test is None:
        return None

    parts = path.split(".")
    if len(parts) == 2:
        a, b = parts
        fused = _fused_leaf2(a, b, test)
        if fused is not None:
            return fused

        def leaf2(e: Event) -> bool:
            v = e.get(a)
            if type(v) is not dict:
                return False
            v = v.get(b)
            if v is None:
                return False
            if type(v) is list:
                for x in v:  # noqa: SIM110
                    if x is not None and test(x):
                        return True
                return False
            return test(v)
        return leaf2

    def leaf(e: Event) -> bool:
        v = getter(e)
        if v is None:
            return False
        if type(v) is list:
            for x in v:  # noqa: SIM110
                if x is not None and test(x):
                    return True
            return False
        return test(v)
    return leaf


@dataclass(frozen=True)
class _FoldSet:
    """What an insensitive equals/in test compares: folded targets, the longest of them."""

    targets: frozenset[str]
    longest: int


@dataclass(frozen=True)
class _Search:
    """What a regex test runs: the pattern's byte search and the engine's limits."""

    search: Callable[[bytes], bool]
    limits: Limits


@dataclass(frozen=True)
class _Prefix:
    """What an insensitive prefix test compares: folded prefixes, the longest length."""

    prefixes: tuple[str, ...]
    span: int


# The fast path of a test for a plain string value, by test function: a leaf on a
# two-level field inlines it (one call per leaf instead of three on the hot path:
# most leaves are equals/in and regex tests of a string field). Weak keys: an entry
# goes with its rules (a reload compiles new ones).
_FAST: weakref.WeakKeyDictionary[Test, _FoldSet | _Search | _Prefix] = weakref.WeakKeyDictionary()


def _test_value(v: Any, test: Test) -> bool:
    """``test`` on a field's value the way every leaf reads it: absent is False, a list
    matches when one of its items does. The fused leaves' path off their fast case."""
    if v is None:
        return False
    if type(v) is list:
        return any(x is not None and test(x) for x in v)
    return test(v)


def _fused_leaf2(a: str, b: str, test: Test) -> Matcher | None:
    """A leaf on ``a.b`` with ``test``'s string case inlined; None when ``test`` has no
    fast path. Lists, other scalars and values past the fast path's bound go through
    ``test`` itself, so the result is the same as the generic leaf's."""
    fast = _FAST.get(test)
    if isinstance(fast, _FoldSet):
        targets, longest = fast.targets, fast.longest
        fold_cache = _FOLDED

        def fold_leaf2(e: Event) -> bool:
            v = e.get(a)
            if type(v) is not dict:
                return False
            v = v.get(b)
            if type(v) is str:
                if len(v) > longest:
                    return False
                f = fold_cache.get(v)
                return (f if f is not None else folded(v)) in targets
            return _test_value(v, test)
        return fold_leaf2
    if isinstance(fast, _Search):
        search, limits = fast.search, fast.limits

        def regex_leaf2(e: Event) -> bool:
            v = e.get(a)
            if type(v) is not dict:
                return False
            v = v.get(b)
            if type(v) is str and len(v) * 4 <= limits.max_field_bytes:
                return search(encode(v))  # within the bound: the common case
            return _test_value(v, test)
        return regex_leaf2
    if isinstance(fast, _Prefix):
        prefixes, span = fast.prefixes, fast.span

        def prefix_leaf2(e: Event) -> bool:
            v = e.get(a)
            if type(v) is not dict:
                return False
            v = v.get(b)
            if type(v) is str:
                return folded(v if len(v) <= span else v[:span]).startswith(prefixes)
            return _test_value(v, test)
        return prefix_leaf2
    return None


def _strings(value: Any, op: str, loc: tuple[Any, ...], ctx: Context,
             *, allow_list: bool) -> list[str] | None:
    items = value if isinstance(value, list) and allow_list else [value]
    if isinstance(value, list) and not value:
        ctx.problem(loc, f"{op}: needs at least one value")
        return None
    out = []
    for i, item in enumerate(items):
        text = as_text(item) if not isinstance(item, dict | list) else None
        if text is None or item is None:
            ctx.problem((*loc, i) if items is value else loc,
                        f"{op}: takes {'strings or numbers' if allow_list else 'a value'}, "
                        f"got {item!r}")
            return None
        out.append(unicodedata.normalize("NFC", text))
    return out


def _scalar_test(op: str, value: Any, insensitive: bool, loc: tuple[Any, ...],
                 ctx: Context, *, path: str = "") -> Test | None:
    if op == "regex":
        return _regex_test(value, insensitive, path, loc, ctx)
    if op in ("equals", "in"):
        if op == "equals" and isinstance(value, list):
            ctx.problem(loc, "equals: takes one value", "use in: [...] for a list")
            return None
        if op == "in" and not isinstance(value, list):
            ctx.problem(loc, "in: takes a list", "use equals: for one value")
            return None
        values = _strings(value, op, loc, ctx, allow_list=True)
        if values is None:
            return None
        if insensitive:
            targets = frozenset(v.casefold() for v in values)
            # casefold never shortens a text: a longer value cannot equal a target, and
            # is not folded at all (a huge field costs nothing here)
            longest = max(len(v) for v in targets)
            if len(targets) == 1:
                (target,) = targets

                def eq_fold(x: Any) -> bool:
                    t = x if type(x) is str else as_text(x)
                    return t is not None and len(t) <= longest and folded(t) == target
                _FAST[eq_fold] = _FoldSet(targets, longest)
                return eq_fold

            def in_fold(x: Any) -> bool:
                t = x if type(x) is str else as_text(x)
                return t is not None and len(t) <= longest and folded(t) in targets
            _FAST[in_fold] = _FoldSet(targets, longest)
            return in_fold
        exact = frozenset(values)

        def in_exact(x: Any) -> bool:
            t = x if type(x) is str else as_text(x)
            return t is not None and t in exact
        return in_exact
    if op in ("prefix", "suffix", "contains"):
        values = _strings(value, op, loc, ctx, allow_list=True)
        if values is None:
            return None
        return _substring_test(op, values, insensitive)
    if op in NUMBER_OPS:
        if isinstance(value, bool) or not isinstance(value, int | float):
            ctx.problem(loc, f"{op}: takes a number, got {value!r}")
            return None
        bound = value
        cmp: Callable[[float], bool] = {"gt": lambda n: n > bound, "gte": lambda n: n >= bound,
               "lt": lambda n: n < bound, "lte": lambda n: n <= bound}[op]

        def number_test(x: Any) -> bool:
            if type(x) is bool:
                return False
            n = as_number(x)
            return n is not None and not math.isnan(n) and cmp(n)
        return number_test
    if op == "cidr":
        return _cidr_test(value, loc, ctx)
    if op == "ioc":
        return _ioc_test(value, loc, ctx)
    raise AssertionError(op)  # pragma: no cover


def _substring_test(op: str, values: list[str], insensitive: bool) -> Test:
    """The test of a prefix, suffix or contains leaf."""
    subs = tuple(v.casefold() for v in values) if insensitive else tuple(values)
    norm: Callable[[str], str] = folded if insensitive else (lambda s: s)
    # Each character folds on its own to one or more: the folded start (end) of a
    # value is the fold of its first (last) ``span`` characters, so a huge value is
    # not folded whole to test a few characters.
    span = max(len(v) for v in subs)
    if op == "prefix":
        def prefix_test(x: Any) -> bool:
            t = x if type(x) is str else as_text(x)
            return t is not None and norm(t if len(t) <= span else t[:span]).startswith(subs)
        if insensitive:
            _FAST[prefix_test] = _Prefix(subs, span)
        return prefix_test
    if op == "suffix":
        return lambda x: (t := x if type(x) is str else as_text(x)) is not None and \
            norm(t if len(t) <= span else t[-span:]).endswith(subs)
    if len(subs) == 1:
        (sub,) = subs
        return lambda x: (t := x if type(x) is str else as_text(x)) is not None and \
            sub in norm(t)
    if len(subs) <= 4:
        def contains_any(x: Any) -> bool:
            t = x if type(x) is str else as_text(x)
            if t is None:
                return False
            n = norm(t)
            for s in subs:  # noqa: SIM110
                if s in n:
                    return True
            return False
        return contains_any
    # one pass over the text for all of them, in linear time (RE2)
    pattern = Pattern("|".join(re.escape(s) for s in subs))
    return lambda x: (t := x if type(x) is str else as_text(x)) is not None and \
        pattern.search(norm(t))


RULE_FIELDS_TRUNCATED = Counter(
    "socd_rule_fields_truncated_total",
    "Field values longer than rules.max_field_bytes: regex conditions read only their "
    "first rules.max_field_bytes bytes (counted once per value and field).",
    ["field"],
    registry=REGISTRY,
)

# The last long values regex leaves encoded and cut, by identity: the leaves on one field
# of one event share the work (and the value is counted once).
_SUBJECTS: dict[int, tuple[str, int, bytes]] = {}
_SUBJECTS_MAX = 16


def _regex_test(value: Any, insensitive: bool, path: str, loc: tuple[Any, ...],
                ctx: Context) -> Test | None:
    if not isinstance(value, str):
        ctx.problem(loc, f"regex: takes a pattern string, got {value!r}")
        return None
    try:
        pattern = Pattern(value, ignore_case=insensitive)
    except PatternError as exc:
        rule = f" (rule {ctx.rule_id!r})" if ctx.rule_id else ""
        ctx.problem(loc, exc.message + rule, exc.hint)
        return None
    search = pattern.search_bytes
    limits = ctx.limits
    truncated = RULE_FIELDS_TRUNCATED.labels(path)
    subjects = _SUBJECTS

    def regex_test(x: Any) -> bool:
        t = x if type(x) is str else as_text(x)
        if t is None:
            return False
        limit = limits.max_field_bytes
        if len(t) * 4 <= limit:  # cannot exceed the limit: most values
            return search(encode(t))
        entry = subjects.get(id(t))
        if entry is not None and entry[0] is t and entry[1] == limit:
            return search(entry[2])
        data, cut = bounded(t, limit)
        if cut:
            truncated.inc()
        if len(subjects) >= _SUBJECTS_MAX:
            subjects.clear()
        subjects[id(t)] = (t, limit, data)
        return search(data)
    _FAST[regex_test] = _Search(search, limits)
    return regex_test


def cidr_ranges(networks: Iterable[str]) -> dict[int, tuple[list[int], list[int]]]:
    """Merged, sorted ``(starts, ends)`` integer ranges per IP version."""
    by_version: dict[int, list[tuple[int, int]]] = {4: [], 6: []}
    for text in networks:
        net = netaddr.parse_network(text.strip(), count=False)
        by_version[net.version].append((int(net.network_address), int(net.broadcast_address)))
    out: dict[int, tuple[list[int], list[int]]] = {}
    for version, ranges in by_version.items():
        ranges.sort()
        starts: list[int] = []
        ends: list[int] = []
        for lo, hi in ranges:
            if ends and lo <= ends[-1] + 1:
                ends[-1] = max(ends[-1], hi)
            else:
                starts.append(lo)
                ends.append(hi)
        out[version] = (starts, ends)
    return out


def _cidr_test(value: Any, loc: tuple[Any, ...], ctx: Context) -> Test | None:
    items = value if isinstance(value, list) else [value]
    if not items:
        ctx.problem(loc, "cidr: needs at least one network")
        return None
    good = []
    for i, item in enumerate(items):
        sub = (*loc, i) if isinstance(value, list) else loc
        if not isinstance(item, str):
            ctx.problem(sub, f"cidr: takes CIDR strings like 10.0.0.0/8, got {item!r}")
            return None
        try:
            netaddr.parse_network(item.strip(), count=False)
        except netaddr.AddressError as exc:
            ctx.problem(sub, f"invalid CIDR {item!r}: {exc.reason.replace('_', ' ')}",
                        "write an IPv4 or IPv6 network like 10.0.0.0/8 or 2001:db8::/32")
            return None
        good.append(item)
    ranges = cidr_ranges(good)
    table = {v: r for v, r in ranges.items() if r[0]}
    right = bisect.bisect_right

    def in_cidr(x: Any) -> bool:
        if type(x) is not str:
            return False
        parsed = ip_int(x)
        if parsed is None:
            return False
        r = table.get(parsed[0])
        if r is None:
            return False
        n = parsed[1]
        i = right(r[0], n) - 1
        return i >= 0 and n <= r[1][i]
    return in_cidr


# No indicator is longer (a domain has at most 253 characters, a SHA-512 hash 128): a
# longer value is not normalised and looked up at all.
_IOC_MAX_LEN = 512


def _ioc_test(value: Any, loc: tuple[Any, ...], ctx: Context) -> Test | None:
    source: str | None = None
    if isinstance(value, Mapping):
        for key in value:
            if key not in ("kind", "source"):
                ctx.problem((*loc, key), f"unknown key {key!r}",
                            _key_hint(key, ("kind", "source")))
                return None
        kind = value.get("kind")
        source = value.get("source")
        if source is not None and not isinstance(source, str):
            ctx.problem((*loc, "source"), "source: takes the IoC source or letter number")
            return None
        kloc: tuple[Any, ...] = (*loc, "kind")
    else:
        kind, kloc = value, loc
    if kind not in IOC_KINDS:
        ctx.problem(kloc, f"unknown IoC kind {kind!r}",
                    did_you_mean(str(kind), IOC_KINDS) or "use ip, domain or hash")
        return None
    ctx.uses_ioc = True
    ref = ctx.ioc
    norm: Callable[[str], str]
    if kind == "domain":
        def norm(s: str) -> str:
            return s.lower().rstrip(".")
    elif kind == "hash":
        norm = str.lower
    else:
        def norm(s: str) -> str:
            return s

    def ioc_test(x: Any) -> bool:
        lookup = ref.lookup
        if lookup is None or type(x) is not str or len(x) > _IOC_MAX_LEN:
            return False
        if source is None:
            return bool(lookup(kind, norm(x)))
        return bool(lookup(kind, norm(x), source))
    return ioc_test


def _leaf_entry(leaf: Mapping[str, Any]) -> tuple[str, list[str]] | None:
    path = leaf.get("field")
    if path not in INDEX_FIELDS:
        return None
    if "equals" in leaf:
        values = [leaf["equals"]]
    elif "in" in leaf and isinstance(leaf["in"], list):
        values = leaf["in"]
    else:
        return None
    if not values or any(isinstance(v, bool) or v is None for v in values):
        return None
    keys = [index_key(unicodedata.normalize("NFC", v) if isinstance(v, str) else v)
            for v in values]
    if any(k is None for k in keys):
        return None
    return path, [k for k in keys if k is not None]


Entries = list[tuple[str, list[str]]]


def _score(entries: Entries) -> tuple[int, int]:
    """Lower is better: the least selective field used, then the number of values."""
    return (max(INDEX_FIELDS.index(p) for p, _ in entries),
            sum(len(v) for _, v in entries))


def index_entries(raw: Any) -> Entries | None:
    """What a condition requires of the routing fields, as a disjunction.

    Returns ``[(field, folded values), ...]``: the condition can only be true for
    an event whose ``field`` has one of ``values`` for at least one entry. None
    when no such requirement can be read off (the rule goes to the catch-all
    list). The compiled matcher still checks everything, so this only has to be
    implied by the condition.
    """
    if not isinstance(raw, Mapping) or (len(raw) != 1 and "field" not in raw):
        return None
    if "all" in raw and len(raw) == 1:
        items = raw["all"]
        if not isinstance(items, list):
            return None
        options = [e for e in (index_entries(c) for c in items) if e is not None]
        return min(options, key=_score) if options else None
    if "any" in raw and len(raw) == 1:
        items = raw["any"]
        if not isinstance(items, list) or not items:
            return None
        out: Entries = []
        for c in items:
            e = index_entries(c)
            if e is None:
                return None
            out.extend(e)
        return out
    if "field" in raw:
        entry = _leaf_entry(raw)
        return [entry] if entry is not None else None
    return None  # not: tells nothing


# Every decoded event has these: needing them tells nothing.
_ALWAYS_THERE = ("event", "socd", "@timestamp")


def required_sections(raw: Any) -> frozenset[str] | None:
    """Top-level event keys of which a condition needs at least one (not None) to hold.

    A leaf other than ``exists: false`` is false when its field is missing, and its field
    is missing when the first part of its path is: so a leaf needs that key, ``all:``
    needs what its most demanding child needs, ``any:`` one of what its children need,
    ``not:`` nothing known. None when nothing can be said. The engine leaves a rule
    whose keys an event lacks out of the candidates (the compiled matcher would say no).
    """
    return _required(raw, lambda path: path.split(".", 1)[0])


def _required(raw: Any, unit: Callable[[str], str]) -> frozenset[str] | None:
    """:func:`required_sections` and :func:`required_paths`: what a leaf on ``path``
    needs is ``unit(path)`` (its top-level key, or the path itself)."""
    if not isinstance(raw, Mapping):
        return None
    if "field" in raw:
        path = raw["field"]
        if not isinstance(path, str) or not path or raw.get("exists") is False or \
                not any(op in raw for op in OPS):
            return None
        needed = unit(path)
        return None if needed in _ALWAYS_THERE else frozenset((needed,))
    if len(raw) != 1:
        return None
    if isinstance(raw.get("all"), list):
        found = [r for r in (_required(c, unit) for c in raw["all"]) if r is not None]
        return min(found, key=len) if found else None
    if isinstance(raw.get("any"), list) and raw["any"]:
        out: set[str] = set()
        for c in raw["any"]:
            r = _required(c, unit)
            if r is None:
                return None
            out |= r
        return frozenset(out)
    return None


# -- optimisations ---------------------------------------------------------------------

_GLOBAL_FLAGS = re.compile(r"^\(\?([aiLmsu]+)\)")
_UNMERGEABLE = re.compile(r"\\[1-9]|\(\?P=|\(\?\(|\(\?[aiLmsux-]*x")


def _regex_leaf(raw: Any) -> tuple[str, str, str] | None:
    """``(field, case, pattern)`` of a leaf that is just a regex test, else None."""
    if not isinstance(raw, Mapping) or "regex" not in raw or \
            any(k not in ("field", "regex", "case") for k in raw):
        return None
    path, pattern, case = raw.get("field"), raw["regex"], raw.get("case", "insensitive")
    if not isinstance(path, str) or not isinstance(pattern, str) or \
            case not in ("insensitive", "sensitive") or _UNMERGEABLE.search(pattern):
        return None
    return path, case, pattern


def _merge_regexes(body: list[Any], fns: list[Matcher], loc: tuple[Any, ...],
                   ctx: Context) -> list[Matcher]:
    """The children of an ``any:``, with regex leaves on the same field (and case) merged
    into one alternation (one search instead of several). Order does not matter in an
    ``any:``; a merge that does not compile leaves the leaves as they are."""
    groups: dict[tuple[str, str], list[int]] = {}
    for i, raw in enumerate(body):
        info = _regex_leaf(raw)
        if info is not None:
            groups.setdefault(info[:2], []).append(i)
    groups = {k: v for k, v in groups.items() if len(v) > 1}
    if not groups:
        return fns
    replaced: dict[int, Matcher | None] = {}
    for (path, case), idxs in groups.items():
        parts = []
        for i in idxs:
            pattern = body[i]["regex"]
            m = _GLOBAL_FLAGS.match(pattern)
            if m is not None:  # a leading (?i) applies to its own alternative only
                pattern = f"(?{m.group(1)}:{pattern[m.end():]})"
            parts.append(f"(?:{pattern})")
        merged = "|".join(parts)
        scratch = Context(ctx.file, ioc=ctx.ioc, limits=ctx.limits)
        fn = _compile_leaf({"field": path, "regex": merged, "case": case}, loc, scratch)
        if fn is None or scratch.problems:
            continue
        replaced[idxs[0]] = fn
        for i in idxs[1:]:
            replaced[i] = None
    out: list[Matcher] = []
    for i, fn in enumerate(fns):
        if i not in replaced:
            out.append(fn)
        elif (r := replaced[i]) is not None:
            out.append(r)
    return out


NOT_ROUTED = object()


def _implied_leaf(raw: Any, entry: tuple[str, list[str]]) -> bool:
    """Whether leaf ``raw`` holds for every event the index routes through ``entry``."""
    return isinstance(raw, Mapping) and "field" in raw and \
        all(k in ("field", "case", "equals", "in") for k in raw) and \
        raw.get("case", "insensitive") == "insensitive" and _leaf_entry(raw) == entry


def routed_condition(raw: Any) -> Any:
    """``raw`` without the routing leaf the index already checked.

    When a condition's index requirement (:func:`index_entries`) is a single
    equals/in leaf on a routing field, every event the index hands over satisfies
    that leaf, so the matcher used after routing can skip it. Returns the reduced
    condition, None when nothing is left to check, or :data:`NOT_ROUTED` when no
    leaf can be dropped.
    """
    entries = index_entries(raw)
    if entries is None or len(entries) != 1:
        return NOT_ROUTED
    entry = entries[0]
    if _implied_leaf(raw, entry):
        return None
    if isinstance(raw, Mapping) and len(raw) == 1 and isinstance(raw.get("all"), list):
        items = raw["all"]
        for i, item in enumerate(items):
            if _implied_leaf(item, entry):
                rest = items[:i] + items[i + 1:]
                if not rest:
                    return None
                return rest[0] if len(rest) == 1 else {"all": rest}
    return NOT_ROUTED


# -- per-bucket verdicts ------------------------------------------------------------------
# The engine's dispatch key holds some facts of an event beyond the index values (whether
# a field is there, the results of the leaves on a few low-variety fields). A rule that
# cannot match any event with those facts is left out of the key's candidates once, when
# the key is first met, instead of being tried (and failing) on every event.


def required_paths(raw: Any) -> frozenset[str] | None:
    """Field paths of which a condition needs at least one (not None) to hold; the
    path-level form of :func:`required_sections` (same reasoning, whole paths)."""
    return _required(raw, lambda path: path)


def condition_leaves(raw: Any) -> list[Mapping[str, Any]]:
    """The leaves of a (valid) condition tree, in order."""
    out: list[Mapping[str, Any]] = []
    stack = [raw]
    while stack:
        node = stack.pop()
        if not isinstance(node, Mapping):
            continue
        if "field" in node:
            out.append(node)
            continue
        for kind in ("not", "any", "all"):
            body = node.get(kind)
            if isinstance(body, list):
                stack.extend(reversed(body))
            elif body is not None:
                stack.append(body)
    return out


def condition_verdict(raw: Any, known: Callable[[Mapping[str, Any]], bool | None]) -> \
        bool | None:
    """What a condition says of every event of which ``known`` tells some leaves' results
    (True, False, or None when the leaf depends on what is not known): True or False
    when the known leaves decide it, else None (three-valued all/any/not)."""
    if not isinstance(raw, Mapping):
        return None
    if "field" in raw:
        return known(raw)
    if len(raw) != 1:
        return None
    if "not" in raw:
        inner = condition_verdict(raw["not"], known)
        return None if inner is None else not inner
    kind = "all" if "all" in raw else "any" if "any" in raw else None
    body = raw.get(kind) if kind is not None else None
    if not isinstance(body, list) or not body:
        return None
    decided = kind == "any"  # the child result that decides the group
    result: bool | None = not decided
    for child in body:
        v = condition_verdict(child, known)
        if v is None:
            result = None
        elif v is decided:
            return decided
    return result


def leaf_matcher(raw: Mapping[str, Any], ioc: IocRef, limits: Limits) -> Matcher | None:
    """The matcher of one (valid) leaf alone, as the rule's compiled tree runs it."""
    ctx = Context("<leaf>", ioc=ioc, limits=limits)
    fn = compile_condition(raw, (), ctx)
    return None if ctx.problems else fn


# -- generated code -------------------------------------------------------------------


class CodeGen(Source):
    """Builds one Python function over an event ``e`` from lines of generated code
    (:class:`socd.codegen.Source`: everything from rules or input is a bound constant).
    Sections of the event (``e[a]`` of a path ``a.b``) are read once, a missing or
    non-mapping one standing for an empty mapping."""

    def __init__(self, consts: Mapping[str, Any] | None = None) -> None:
        super().__init__({"_dict": dict, "_str": str, "_list": list, "_E": _EMPTY,
                          **(consts or {})})
        self.indent = 1
        self.sections: dict[str, str] = {}

    def line(self, text: str) -> None:
        self.add(self.indent, text)

    def section(self, key: str) -> str:
        """A local holding the mapping at dotted ``key`` (``e[a]``, ``e[a][b]``...), or an
        empty one when it is missing or not a mapping."""
        sec = self.sections.get(key)
        if sec is None:
            parent, _, last = key.rpartition(".")
            source = f"{self.section(parent)}.get" if parent else "e.get"
            sec = self.sections[key] = self.name("s")
            self.line(f"{sec} = {source}({self.const(last)})")
            self.line(f"if type({sec}) is not _dict:")
            self.line(f"    {sec} = _E")
        return sec

    def read(self, path: str) -> str:
        """A new local holding the value at ``path``, as :func:`make_getter` reads it."""
        parent, _, last = path.rpartition(".")
        var = self.name("v")
        source = f"{self.section(parent)}.get" if parent else "e.get"
        self.line(f"{var} = {source}({self.const(last)})")
        return var

    def presence(self, paths: Sequence[str]) -> str:
        """A local holding a bit mask of which of ``paths`` are there (not None): bit
        ``i`` for ``paths[i]``. The paths under one top-level section are read only when
        that section is a mapping (most events lack most sections)."""
        mask = self.name("m")
        self.line(f"{mask} = 0")
        groups: dict[str, list[int]] = {}
        for i, path in enumerate(paths):
            if "." in path:
                groups.setdefault(path.split(".", 1)[0], []).append(i)
            else:
                self.line(f"if {self.read(path)} is not None:")
                self.line(f"    {mask} |= {1 << i}")
        for top, members in groups.items():
            self.line(f"if {self.section(top)} is not _E:")
            self.indent += 1
            outer = dict(self.sections)  # sections read in this branch stay in it
            for i in members:
                self.line(f"if {self.read(paths[i])} is not None:")
                self.line(f"    {mask} |= {1 << i}")
            self.sections = outer
            self.indent -= 1
        return mask

    def function(self, name: str) -> Any:
        """The generated function of an event ``e`` (``name`` in tracebacks and profiles)."""
        return self.build(name, "e", f"socd.engine {name}")


_EMPTY: dict[str, Any] = {}  # read only: stands for a section that is not a mapping


# -- generated conditions ---------------------------------------------------------------


class _NoCode(Exception):
    """A node the generator has no form for: the condition stays closures."""


def generate_condition(raw: Any, ioc: IocRef, limits: Limits) -> Matcher | None:
    """A valid condition tree as one generated function with the same results as its
    compiled closures (:func:`compile_condition`), or None where the generator has no
    form for a node.

    Groups become ``and``/``or``/``not`` expressions (short-circuited as the closures
    are); each leaf reads its field from its section (read once per call) and inlines its
    test's fast path (:data:`_FAST`: folded equals/in, regex, folded prefix) for a text,
    leaving other values to the test itself through :func:`_test_value`, exactly as the
    fused leaves do. Every value, pattern and field name is a bound constant."""
    gen = CodeGen({"_tv": _test_value, "_folded": folded, "_enc": encode, "_F": _FOLDED})
    scratch = Context("<generated>", ioc=ioc, limits=limits)
    try:
        expr = _expr(raw, ("match",), gen, scratch)
    except _NoCode:
        return None
    if scratch.problems:
        return None
    gen.line(f"return {expr}")
    fn: Matcher = gen.function("condition")
    return fn


def residual_condition(raw: Any, known: Callable[[Mapping[str, Any]], bool | None]) -> \
        tuple[Any, Any]:
    """``raw`` with the leaves ``known`` decides taken out, and a signature of what is left
    (equal for equal residues of one tree): ``(True | False, None)`` when they decide it
    (see :func:`condition_verdict`), else ``(residual tree, signature)``."""
    if not isinstance(raw, Mapping):
        return raw, ("?", id(raw))
    if "field" in raw:
        v = known(raw)
        return (v, None) if v is not None else (raw, id(raw))
    if len(raw) != 1:
        return raw, ("?", id(raw))
    kind = next(iter(raw))
    body = raw[kind]
    if kind == "not":
        inner, sig = residual_condition(body, known)
        if type(inner) is bool:
            return not inner, None
        return {"not": inner}, ("not", sig)
    if kind not in ("all", "any") or not isinstance(body, list) or not body:
        return raw, ("?", id(raw))
    decided = kind == "any"
    kept: list[Any] = []
    sigs: list[Any] = []
    for child in body:
        rest, sig = residual_condition(child, known)
        if type(rest) is bool:
            if rest is decided:
                return decided, None
            continue
        kept.append(rest)
        sigs.append(sig)
    if not kept:
        return not decided, None
    if len(kept) == 1:
        return kept[0], sigs[0]
    return {kind: kept}, (kind, tuple(sigs))


def _expr(raw: Any, loc: tuple[Any, ...], gen: CodeGen, ctx: Context) -> str:
    if not isinstance(raw, Mapping) or not raw:
        raise _NoCode
    if "field" in raw:
        return _leaf_expr(raw, loc, gen, ctx)
    if len(raw) != 1:
        raise _NoCode
    kind = next(iter(raw))
    body = raw[kind]
    if kind == "not":
        return f"(not {_expr(body, (*loc, 'not'), gen, ctx)})"
    if kind not in ("all", "any") or not isinstance(body, list) or not body:
        raise _NoCode
    items: list[Any] = list(body)
    if kind == "any":
        items = _merged_any(items, loc, ctx)
    parts = [_expr(c, (*loc, kind, i), gen, ctx) for i, c in enumerate(items)]
    if len(parts) == 1:
        return parts[0]
    return "(" + (" and " if kind == "all" else " or ").join(parts) + ")"


def _merged_any(body: list[Any], loc: tuple[Any, ...], ctx: Context) -> list[Any]:
    """The children of an ``any:`` with regex leaves on one field and case merged into
    one leaf, as :func:`_merge_regexes` merges their closures."""
    groups: dict[tuple[str, str], list[int]] = {}
    for i, raw in enumerate(body):
        info = _regex_leaf(raw)
        if info is not None:
            groups.setdefault(info[:2], []).append(i)
    replaced: dict[int, Any] = {}
    for (path, case), idxs in groups.items():
        if len(idxs) < 2:
            continue
        parts = []
        for i in idxs:
            pattern = body[i]["regex"]
            m = _GLOBAL_FLAGS.match(pattern)
            if m is not None:
                pattern = f"(?{m.group(1)}:{pattern[m.end():]})"
            parts.append(f"(?:{pattern})")
        merged = {"field": path, "regex": "|".join(parts), "case": case}
        scratch = Context(ctx.file, ioc=ctx.ioc, limits=ctx.limits)
        if _compile_leaf(merged, loc, scratch) is None or scratch.problems:
            continue
        replaced[idxs[0]] = merged
        for i in idxs[1:]:
            replaced[i] = None
    return [replaced.get(i, raw) for i, raw in enumerate(body)
            if i not in replaced or replaced[i] is not None]


def _leaf_expr(raw: Mapping[str, Any], loc: tuple[Any, ...], gen: CodeGen,
               ctx: Context) -> str:
    path = raw.get("field")
    ops = [k for k in raw if k in OPS]
    if not isinstance(path, str) or not path or len(ops) != 1 or \
            any(k not in LEAF_KEYS for k in raw):
        raise _NoCode
    op = ops[0]
    value = raw[op]
    parent, _, last = path.rpartition(".")
    source = f"{gen.section(parent)}.get" if parent else "e.get"
    read = f"{source}({gen.const(last)})"
    if op == "exists":
        if not isinstance(value, bool):
            raise _NoCode
        return f"({read} is {'not ' if value else ''}None)"
    test = _scalar_test(op, value, raw.get("case", "insensitive") == "insensitive",
                        (*loc, op), ctx, path=path)
    if test is None:
        raise _NoCode
    t = gen.const(test)
    y = gen.name("y")
    # any value but a text: absent is False, a list matches when one of its items does
    other = f"({y} is not None and _tv({y}, {t}))"
    fast = _FAST.get(test)
    if isinstance(fast, _FoldSet):
        return (f"((len({y}) <= {gen.const(fast.longest)} and "
                f"(_F.get({y}) or _folded({y})) in {gen.const(fast.targets)}) "
                f"if type({y} := {read}) is _str else {other})")
    if isinstance(fast, _Search):
        return (f"({gen.const(fast.search)}(_enc({y})) if type({y} := {read}) is _str and "
                f"len({y}) * 4 <= {gen.const(fast.limits)}.max_field_bytes "
                f"else {other})")
    if isinstance(fast, _Prefix):
        span = gen.const(fast.span)
        return (f"(_folded({y} if len({y}) <= {span} else {y}[:{span}])"
                f".startswith({gen.const(fast.prefixes)}) "
                f"if type({y} := {read}) is _str else {other})")
    return f"({t}({y}) if type({y} := {read}) is _str else {other})"
