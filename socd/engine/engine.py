"""The rules engine: a :class:`~socd.engine.classify.Processor` that adds rule alerts.

Hot path: each event is routed through an index (:data:`INDEX_FIELDS` values ->
candidate rules, cached per dispatch key; a rule no routing field selects is routed on
the fields it needs, see :func:`required_paths`). The dispatch key also holds which
leaves on a few :data:`CLASS_FIELDS` hold and which needed fields are there, and a rule
that cannot match an event with that key is left out of its candidates, once per key
(:func:`condition_verdict`). Compiled closures do the matching; nothing is
copied unless a rule fires. Stateful rules (threshold, sequence) keep bounded, LRU-evicted
state per key and measure windows in event time, so replays give the same
alerts as live processing.
"""

from __future__ import annotations

import bisect
import gc
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import orjson
from prometheus_client import Counter

from socd.engine.compiler import (
    DEFAULT_MAX_FIELD_BYTES,
    INDEX_FIELDS,
    CodeGen,
    IocLookup,
    Matcher,
    as_text,
    condition_leaves,
    condition_verdict,
    generate_condition,
    index_key,
    leaf_matcher,
    make_getter,
    required_paths,
    residual_condition,
)
from socd.engine.loader import CompiledRule
from socd.event import Event, fingerprint, set_severity
from socd.log import configured as log_configured
from socd.log import get_logger
from socd.metrics import REGISTRY
from socd.patterns import encode
from socd.ratelimit import LogLimiter
from socd.tz import parse_iso

log = get_logger("socd.engine")

RULE_MATCHES = Counter(
    "socd_rule_matches_total",
    "Alerts emitted by a detection rule (after suppression).",
    ["rule"],
    registry=REGISTRY,
)
RULES_SUPPRESSED = Counter(
    "socd_rules_suppressed_total",
    "Rule firings dropped by the rule's suppress: window.",
    ["rule"],
    registry=REGISTRY,
)
RULES_LATE = Counter(
    "socd_rules_late_events_total",
    "Events older than the newest event time seen minus rules.max_out_of_order_secs, "
    "matched by a threshold or sequence rule but left out of its state, by collector.",
    ["collector"],
    registry=REGISTRY,
)
RULES_CLOCK_SKEW = Counter(
    "socd_rules_clock_skew_events_total",
    "Events whose own time was more than rules.max_clock_skew_secs away from their "
    "arrival while the newest event time was not (a sender's clock or time zone is "
    "wrong), placed in a threshold or sequence window at their arrival time, by collector.",
    ["collector"],
    registry=REGISTRY,
)
RULES_EVICTED = Counter(
    "socd_rules_state_evictions_total",
    "Keys (groups, sequences, suppression entries) dropped from a rule's state because "
    "it reached its maximum number of keys (least recently used first).",
    ["rule"],
    registry=REGISTRY,
)

MAX_KEYS = 100_000
MAX_TRIGGER_HASHES = 20
COPY_SECTIONS = ("host", "source", "destination", "user", "process", "file", "url", "dns",
                 "observer")
# socd.transport is not copied: an alert's provenance is the weakest of every event that
# contributed to it (see Taint), not only of the event that completed the rule.
SOCD_COPY = ("unit", "asset_kind", "system_level", "collector", "vendor_severity")

STATELESS, THRESHOLD, DISTINCT, SEQUENCE = 0, 1, 2, 3

# Fields of few values whose leaves' results are part of the dispatch key (see
# _FieldClass): a program name rules on other programs test, an outcome.
CLASS_FIELDS = ("process.name", "event.outcome")

# Provenance of an event for blocking, as ordered (rank, collector) pairs so that the
# weakest of several events is their max(): an authenticated transport, an
# unauthenticated one whose collector opted in (allow_unauthenticated_blocking), an
# unauthenticated one whose blocks are refused. Stateful rules keep one per remembered
# event: four forged UDP lines and one authenticated line make an alert as
# unauthenticated as the forged lines, so the blocker refuses its block (docs/blocking.md).
Taint = tuple[int, str]
TRUSTED: Taint = (0, "")
_ALLOWED, _REFUSED = 1, 2
_TAINTS: dict[tuple[int, str], Taint] = {}


def taint_of(event: Event) -> Taint:
    """The blocking provenance of ``event``, from the ``socd.transport`` the decoder
    stamped (never from input: decoders drop an incoming socd.transport)."""
    socd = event.get("socd")
    transport = socd.get("transport") if type(socd) is dict else None
    if type(transport) is not dict or transport.get("authenticated") is not False:
        return TRUSTED
    rank = _ALLOWED if transport.get("blocking") == "allowed" else _REFUSED
    collector = socd.get("collector")  # type: ignore[union-attr]
    name = collector if type(collector) is str else "?"
    key = (rank, name)
    found = _TAINTS.get(key)
    if found is None:
        # One shared tuple per collector and rank: state entries do not each hold a copy.
        if len(_TAINTS) >= 1024:
            _TAINTS.clear()
        found = _TAINTS[key] = key
    return found


def transport_of(taint: Taint) -> dict[str, Any] | None:
    """``socd.transport`` of an alert whose weakest contributing event had ``taint``."""
    rank, collector = taint
    if rank == TRUSTED[0]:
        return None
    return {"authenticated": False, "blocking": "allowed" if rank == _ALLOWED else "refused",
            "collector": collector}

_TS_CACHE: dict[str, float] = {}
_TS_CACHED_CHARS = 64  # RFC 3339 with nanoseconds and an offset is 35


# Epoch seconds of the start of a minute, by the text of a whole-second RFC 3339 time
# without its seconds ("2026-06-01T06:55:" + "+07:00"): a syslog stream has a new time
# text every second, and most fall in a minute whose start is known. Filled only from
# texts that parsed; bounded.
_MINUTES: dict[str, float] = {}
_MINUTES_MAX = 4096
_SECONDS = {f"{i:02d}": i for i in range(60)}
_MINUTE_SHAPE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-5][0-9](?:Z|[+-][0-9]{2}:[0-9]{2})")


def event_time(value: Any) -> float | None:
    """Epoch seconds of an ``@timestamp`` value (cached per text), or None."""
    if type(value) is str:
        t = _TS_CACHE.get(value)
        if t is None:
            n = len(value)
            sec = _SECONDS.get(value[17:19]) if n in (20, 25) else None
            base = _MINUTES.get(value[:17] + value[19:]) if sec is not None else None
            if base is not None and sec is not None:
                # Another second of a minute parsed before: the same as parsing it
                # (whole seconds, so both are exact integers).
                t = base + sec
            else:
                try:
                    t = parse_iso(value).timestamp()
                except ValueError:
                    return None
                if sec is not None and _MINUTE_SHAPE.fullmatch(value):
                    if len(_MINUTES) >= _MINUTES_MAX:
                        _MINUTES.clear()
                    _MINUTES[value[:17] + value[19:]] = t - sec
            if len(value) > _TS_CACHED_CHARS:
                # fromisoformat takes any number of fraction digits: a 1 MiB
                # timestamp parses, but must not become one of 65,536 cache keys.
                return t
            if len(_TS_CACHE) >= 65536:
                _TS_CACHE.clear()
            _TS_CACHE[value] = t
        return t
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value / 1000 if value > 1e11 else float(value)
    return None


def arrival_time(event: Event) -> float | None:
    """When socd (or the first agent) received ``event``: its ``event.created``, which
    decoders set from the receipt time. Parsed without the cache: it differs per record."""
    ev = event.get("event")
    created = ev.get("created") if type(ev) is dict else None
    if type(created) is not str or len(created) > _TS_CACHED_CHARS:
        return None
    try:
        return parse_iso(created).timestamp()
    except ValueError:
        return None


_LABELS_MAX = 64


class _TimingReport:
    """Counts and says, per collector, which events the rules could not window in their
    own time: left out as late, or windowed at their arrival (clock skew). One log line
    per collector and kind a minute: a UTC server read as +07:00 sends thousands. They
    are logged only once logging is set up (the daemon, :func:`socd.log.configured`):
    the offline commands (replay, test-rules) write their data to stdout."""

    def __init__(self, max_out_of_order_secs: float, max_clock_skew_secs: float) -> None:
        self.bound = max_out_of_order_secs
        self.skew = max_clock_skew_secs
        self._late: dict[str, list[Any]] = {}
        self._skewed: dict[str, list[Any]] = {}
        self._labels: set[str] = set()
        self._limiter = LogLimiter(60.0)

    def _collector(self, event: Event) -> str:
        socd = event.get("socd")
        name = socd.get("collector") if type(socd) is dict else None
        if type(name) is not str or not name:
            return "unknown"
        if name not in self._labels:
            if len(self._labels) >= _LABELS_MAX:
                return "other"  # collector names come from the config: a bounded set
            self._labels.add(name)
        return name

    def late(self, event: Event, ts: float, newest: float) -> None:
        entry = self._late.setdefault(self._collector(event), [0, event, ts, newest])
        entry[0] += 1

    def skewed(self, event: Event, own_time: float, arrival: float) -> None:
        entry = self._skewed.setdefault(self._collector(event), [0, event, own_time, arrival])
        entry[0] += 1

    def report(self) -> None:
        logging = log_configured()
        if self._late:
            for collector, (count, event, ts, newest) in self._late.items():
                RULES_LATE.labels(collector).inc(count)
                held = self._limiter.allow(("late", collector), count) if logging else None
                if held is not None:
                    self._log_late(collector, count + held, event, ts, newest)
            self._late.clear()
        if self._skewed:
            for collector, (count, _, own_time, arrival) in self._skewed.items():
                RULES_CLOCK_SKEW.labels(collector).inc(count)
                held = self._limiter.allow(("skew", collector), count) if logging else None
                if held is not None:
                    log.warning("event times far from their arrival: rule windows use the "
                                "arrival time", collector=collector, events=count + held,
                                off_by_secs=round(own_time - arrival),
                                hint=_zone_hint(collector, own_time - arrival))
            self._skewed.clear()

    def _log_late(self, collector: str, count: int, event: Event, ts: float,
                  newest: float) -> None:
        arrival = arrival_time(event)
        off = ts - arrival if arrival is not None else 0.0
        # A live stream (the newest event time agrees with the arrival) and an offset a
        # clock or zone can explain (zones span 26 h): say so. Else a late source.
        live = arrival is not None and abs(arrival - newest) <= max(self.skew, self.bound)
        if live and max(self.bound, 600.0) < abs(off) <= 26 * 3600:
            hint = _zone_hint(collector, off)
            if not self.skew:
                hint += "; rules.max_clock_skew_secs: 0 leaves such events out"
        else:
            hint = (f"they arrived after events more than rules.max_out_of_order_secs "
                    f"({self.bound:g} s) newer: a delayed source; raise that option if such "
                    f"delays are normal")
        log.warning("late events left out of threshold and sequence rules",
                    collector=collector, events=count, behind_newest_secs=round(newest - ts),
                    **({"off_by_secs": round(off)} if arrival is not None else {}), hint=hint)


def _zone_hint(collector: str, off_by_secs: float) -> str:
    hours = off_by_secs / 3600
    return (f"their own time is {abs(hours):.1f} h {'behind' if hours < 0 else 'ahead of'} "
            f"their arrival: the sender's clock or time zone is wrong. Times written without "
            f"a zone (RFC 3164 syslog, CEF) are read in the collector's `timezone` (default "
            f"Asia/Ho_Chi_Minh): set `timezone:` (or `sender_timezones:` per sender) on "
            f"collector {collector!r}, or fix the sender's clock (docs/sources/syslog.md)")


def _hashable(value: Any) -> Any:
    if type(value) is list:
        return tuple(_hashable(v) for v in value)
    if type(value) is dict:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    return value


def _required(slot: _Slot) -> frozenset[str] | None:
    """Fields of which an event needs one for ``slot`` to match it (see
    :func:`required_paths`), or None."""
    rule = slot.crule.rule
    if rule.match is not None:
        return required_paths(rule.match)
    if slot.kind == SEQUENCE and rule.sequence is not None:
        # the engine tries a sequence rule's event only when one of its steps matches
        return required_paths({"any": [step.match for step in rule.sequence.steps]})
    return None


# A routing value of a type events decoded from JSON do not hold (a tuple, a set): it
# routes nowhere (a leaf never matches such a value) and tells the verdicts nothing.
_OPAQUE = object()


def _route_value(value: Any) -> Any:
    """A routing field's value as part of the dispatch key (after the str/None case)."""
    t = type(value)
    if t is list:
        if len(value) == 1 and type(value[0]) is str:
            return (value[0],)  # most lists of routing values: ECS event.category
        return _hashable(value)
    if t is dict:
        return _hashable(value)
    if t is int or t is float or t is bool:
        return value
    return _OPAQUE


# Which leaves on a class field hold, per value of the field: bounded by count and by
# the length of a value (longer values are classified each time, never kept).
_CLASS_CACHE_MAX = 4096


class _FieldClass:
    """The leaves of every rule on one low-variety field (``process.name``), and the
    bit mask of those that hold for a value: the dispatch key holds the mask, so a rule
    whose leaf on the field fails is left out of the key's candidates once."""

    def __init__(self, path: str, leaves: list[tuple[Any, Callable[[Event], bool]]]) -> None:
        self.path = path
        self.leaves = leaves
        self.cache: dict[str, int] = {}
        self.none = self.classify(None)

    def classify(self, value: Any) -> int:
        event = _synthetic(self.path, value)
        mask = 0
        for i, (_, matcher) in enumerate(self.leaves):
            if matcher(event):
                mask |= 1 << i
        if type(value) is str and len(value) <= _CACHE_VALUE_MAX:
            if len(self.cache) >= _CLASS_CACHE_MAX:
                self.cache.clear()
            self.cache[value] = mask
        return mask


def _synthetic(path: str, value: Any) -> Event:
    """An event holding only ``value`` at ``path``: what a leaf on ``path`` reads."""
    out: Any = value
    for part in reversed(path.split(".")):
        out = {part: out}
    return out  # type: ignore[no-any-return]


def _route_key_fn(paths: Sequence[str], classes: Sequence[_FieldClass] = (),
                  presence: Sequence[str] = ()) -> Callable[[Event], tuple[Any, ...]]:
    """One generated function reading an event's dispatch key: every routing field (a
    list or mapping made hashable, see :func:`_route_value`), the leaf mask of each class
    field, then a bit mask of the fields of ``presence`` that are there (not None, bit
    ``i`` for ``presence[i]``; left out when there are none). Each section is
    read once; one call per event. Field names reach the code as closure constants
    (``_c<n>``), never as source text."""
    gen = CodeGen({"_rv": _route_value})
    out: list[str] = []
    for path in paths:
        var = gen.read(path)
        gen.line(f"if {var} is not None and type({var}) is not _str:")
        gen.line(f"    {var} = _rv({var})")
        out.append(var)
    for cls in classes:
        var = gen.read(cls.path)
        k = gen.name("k")
        gen.line(f"if {var} is None:")
        gen.line(f"    {k} = {gen.const(cls.none)}")
        gen.line("else:")
        gen.line(f"    {k} = {gen.const(cls.cache)}.get({var}) if type({var}) is _str else None")
        gen.line(f"    if {k} is None:")
        gen.line(f"        {k} = {gen.const(cls.classify)}({var})")
        out.append(k)
    if presence:
        out.append(gen.presence(presence))
    gen.line(f"return ({', '.join(out)},)" if out else "return ()")
    fn: Callable[[Event], tuple[Any, ...]] = gen.function("route_key")
    return fn


def _conditions(slot: _Slot) -> list[Any]:
    """The raw condition trees a rule's matching reads: its match, its sequence steps."""
    rule = slot.crule.rule
    out: list[Any] = [rule.match] if rule.match is not None else []
    if rule.sequence is not None:
        out.extend(step.match for step in rule.sequence.steps)
    return out


# A candidate rule of a dispatch key: the rule, the matcher still to run on its events
# (None: the key decides the condition holds), and for a sequence the steps that match
# (None: decided per event). Entries are built once per key, see _candidates_for.
_Entry = tuple["_Slot", "Matcher | None", "tuple[int, ...] | None"]


_CACHE_VALUE_MAX = 256
_RESIDUES_MAX = 4096  # generated condition residues per engine (a few per rule in use)


def _cacheable(value: Any) -> bool:
    """Whether routing values are small enough to keep as a dispatch-cache key: they come
    from input, and 65,536 keys of 1 MiB values would hold 64 GiB."""
    t = type(value)
    if t is str or t is bytes:
        return len(value) <= _CACHE_VALUE_MAX
    if t is tuple:
        return len(value) <= 16 and all(_cacheable(v) for v in value)
    return True


def _compact(value: Any) -> Any:
    """``value`` as a part of a state key: a long text or list is kept as its fingerprint.
    Keys come from input and a rule keeps up to MAX_KEYS of them: 100,000 keys holding a
    1 MiB command line each would hold 100 GB."""
    if _cacheable(value):
        return value
    t = type(value)
    data = value if t is bytes else encode(value) if t is str else \
        repr(value).encode("utf-8", "backslashreplace")
    return "fingerprint:" + fingerprint(data)


def _key(getters: tuple[Callable[[Event], Any], ...], event: Event) -> tuple[Any, ...]:
    out: list[Any] = []
    for g in getters:
        v = g(event)
        # a short text (most group-by values: addresses, names) is its own key part
        out.append(v if type(v) is str and len(v) <= _CACHE_VALUE_MAX
                   else _compact(_hashable(v)))
    return tuple(out)


def _key_part(value: Any) -> Any:
    return _compact(_hashable(value))


def _key_fn(paths: Sequence[str]) -> Callable[[Event], tuple[Any, ...]]:
    """A generated function equal to ``_key(tuple(make_getter(p) for p in paths), e)``:
    each section read once, a short text (most group-by values) kept as it is."""
    gen = CodeGen({"_kp": _key_part, "_n": _CACHE_VALUE_MAX})
    out = []
    for path in paths:
        var = gen.read(path)
        gen.line(f"if {var} is not None and (type({var}) is not _str or len({var}) > _n):")
        gen.line(f"    {var} = _kp({var})")
        out.append(var)
    gen.line(f"return ({', '.join(out)},)" if out else "return ()")
    fn: Callable[[Event], tuple[Any, ...]] = gen.function("group_key")
    return fn


def _clone(value: Any) -> Any:
    t = type(value)
    if t is dict:
        return {k: v if (tv := type(v)) is not dict and tv is not list else _clone(v)
                for k, v in value.items()}
    if t is list:
        return [v if (tv := type(v)) is not dict and tv is not list else _clone(v)
                for v in value]
    return value


# The last event hashed here (by identity) and its hash: several rules may fire on one
# event, and hashing a large event (huge fields) more than once would cost as much again.
_LAST_HASHED: list[Any] = [None, ""]


def _event_hash(event: Event) -> str:
    ev = event.get("event")
    h = ev.get("hash") if type(ev) is dict else None
    if type(h) is str:
        return h
    if _LAST_HASHED[0] is event:
        return _LAST_HASHED[1]  # type: ignore[no-any-return]
    h = fingerprint(orjson.dumps(event, option=orjson.OPT_SORT_KEYS, default=str))
    _LAST_HASHED[0], _LAST_HASHED[1] = event, h
    return h


class _LRU(OrderedDict[Any, Any]):
    """An OrderedDict with a size bound; evictions are counted per rule."""

    def __init__(self, limit: int, counter: Any) -> None:
        super().__init__()
        self.limit = limit
        self.counter = counter

    def touch(self, key: Any, default: Callable[[], Any]) -> Any:
        value = self.get(key)
        if value is None:
            value = default()
            self[key] = value
            if len(self) > self.limit:
                self.popitem(last=False)
                self.counter.inc()
        else:
            self.move_to_end(key)
        return value


class RuleState:
    """Everything a rule remembers between batches."""

    def __init__(self, rule_id: str, limit: int) -> None:
        evicted = RULES_EVICTED.labels(rule_id)
        self.groups = _LRU(limit, evicted)      # threshold / distinct / sequence progress
        self.suppress = _LRU(limit, evicted)    # key -> event time of the last alert
        self.escalate = _LRU(limit, evicted)    # key -> event times of recent firings


class _Slot:
    """A rule as the hot loop sees it (attributes resolved once)."""

    __slots__ = ("crule", "group_key", "id", "kind", "match", "order", "routed", "state",
                 "steps")

    def __init__(self, crule: CompiledRule, state: RuleState) -> None:
        self.crule = crule
        self.id = crule.id
        self.order = crule.order
        self.match = crule.match
        # what is left to check once the index has chosen the rule (see CompiledRule.routed)
        self.routed = crule.routed if crule.routed_ok else crule.match
        self.steps = crule.steps
        self.state = state
        self.group_key = _key_fn(crule.group_fields)
        th = crule.rule.threshold
        if th is not None:
            self.kind = DISTINCT if th.distinct is not None else THRESHOLD
        elif crule.rule.sequence is not None:
            self.kind = SEQUENCE
        else:
            self.kind = STATELESS


class RuleEngine:
    """Runs compiled rules over batches of events; see docs/rules.md."""

    def __init__(self, rules: Sequence[CompiledRule], *, ioc_lookup: IocLookup | None = None,
                 max_out_of_order_secs: float = 300.0, max_keys: int = MAX_KEYS,
                 include_disabled: bool = False,
                 max_field_bytes: int = DEFAULT_MAX_FIELD_BYTES,
                 max_clock_skew_secs: float = 0.0) -> None:
        self.rules = [r for r in rules if include_disabled or r.rule.enabled]
        self.max_out_of_order_secs = float(max_out_of_order_secs)
        # 0: events far from their arrival are windowed in their own time (or left out).
        self.max_clock_skew_secs = float(max_clock_skew_secs)
        self._timing = _TimingReport(self.max_out_of_order_secs, self.max_clock_skew_secs)
        self.max_keys = max_keys
        self.max_time = -math.inf
        self.ioc_lookup = ioc_lookup
        for r in self.rules:
            r.ioc.lookup = ioc_lookup
            r.limits.max_field_bytes = max_field_bytes
        self.state: dict[str, RuleState] = {r.id: RuleState(r.id, max_keys) for r in self.rules}
        self._by_id = {r.id: r for r in self.rules}
        self._matches = {r.id: RULE_MATCHES.labels(r.id) for r in self.rules}
        self._suppressed = {r.id: RULES_SUPPRESSED.labels(r.id) for r in self.rules}
        self._build_index()

    # -- index ---------------------------------------------------------------------

    def _build_index(self) -> None:
        self._slots = [_Slot(r, self.state[r.id]) for r in self.rules]
        used: list[str] = []
        table: dict[str, dict[str, list[_Slot]]] = {}
        catch_all: list[_Slot] = []
        for slot in self._slots:
            entry = slot.crule.index
            if entry is None:
                catch_all.append(slot)
                continue
            for path, keys in entry:
                bucket = table.setdefault(path, {})
                for k in keys:
                    slots = bucket.setdefault(k, [])
                    if slot not in slots:
                        slots.append(slot)
        used = [p for p in INDEX_FIELDS if p in table]
        self._index_paths = used
        self._index_getters = tuple(make_getter(p) for p in used)
        self._index_tables = [table[p] for p in used]
        # Catch-all rules the index cannot route still need some fields (a rule on file
        # hashes needs `file.hash.*`): whether the event has each is part of the dispatch
        # key, and a rule none of whose fields the event has is not a candidate.
        needs = {slot.order: _required(slot) for slot in catch_all}
        # (the value of a routing or class field is in the key already)
        presence = sorted({k for req in needs.values() if req is not None for k in req
                           if k not in used and k not in CLASS_FIELDS})
        self._presence = tuple(presence)
        # Leaves on the class fields, one bit each (equal leaves of several rules share
        # one): which hold is part of the dispatch key (see _FieldClass).
        self._leaf_owner: dict[int, CompiledRule] = {}
        leaves = []
        for slot in self._slots:
            for cond in _conditions(slot):
                for leaf in condition_leaves(cond):
                    leaves.append(leaf)
                    self._leaf_owner[id(leaf)] = slot.crule
        self._leaf_fns: dict[int, Callable[[Event], bool] | None] = {}
        self._leaf_bits: dict[int, tuple[int, int]] = {}  # id(leaf) -> (class, bit)
        classes: list[_FieldClass] = []
        for path in CLASS_FIELDS:
            distinct: dict[bytes, int] = {}
            members: list[tuple[Any, Callable[[Event], bool]]] = []
            for leaf in leaves:
                if leaf.get("field") != path or "ioc" in leaf:
                    continue
                text = orjson.dumps(leaf, option=orjson.OPT_SORT_KEYS, default=str)
                bit = distinct.get(text)
                if bit is None:
                    fn = self._leaf_fn(leaf)
                    if fn is None:
                        continue
                    bit = distinct[text] = len(members)
                    members.append((leaf, fn))
                self._leaf_bits[id(leaf)] = (len(classes), bit)
            if members:
                classes.append(_FieldClass(path, members))
        self._classes = classes
        self._route_key = _route_key_fn(used, classes, self._presence)
        self._catch_all = catch_all
        self._dispatch: dict[Any, tuple[_Entry, ...]] = {}
        # generated residues of rule conditions, by (rule, residue signature)
        self._residues: dict[tuple[int, Any], Matcher | None] = {}

    def _leaf_fn(self, leaf: Any) -> Callable[[Event], bool] | None:
        """The matcher of one leaf of a rule (compiled on first use, kept per engine)."""
        key = id(leaf)
        if key not in self._leaf_fns:
            crule = self._leaf_owner[key]
            self._leaf_fns[key] = leaf_matcher(leaf, crule.ioc, crule.limits)
        return self._leaf_fns[key]

    def _candidates_for(self, key: tuple[Any, ...]) -> tuple[_Entry, ...]:
        n = len(self._index_tables)
        values = key[:n]
        found: dict[int, _Slot] = {s.order: s for s in self._catch_all}
        for value, tbl in zip(values, self._index_tables, strict=True):
            if value is None:
                continue
            for item in (value if type(value) is tuple else (value,)):
                k = index_key(item)
                if k is None:
                    continue
                for slot in tbl.get(k, ()):
                    found[slot.order] = slot
        # What the key tells of the event: the value of a routing field when it is a
        # text (or a list of texts), the class masks, absent and present fields.
        known: dict[str, Any] = {}
        for path, value in zip(self._index_paths, values, strict=True):
            if value is None or type(value) is str:
                known[path] = value
            elif type(value) is tuple and all(type(v) is str for v in value):
                known[path] = list(value)  # only a list of texts becomes such a tuple
        masks = key[n:n + len(self._classes)]
        present: set[str] = set()
        there = key[-1] if self._presence else 0
        for i, path in enumerate(self._presence):
            if there >> i & 1:
                present.add(path)
            else:
                known[path] = None

        def leaf_result(leaf: Mapping[str, Any]) -> bool | None:
            bit = self._leaf_bits.get(id(leaf))
            if bit is not None:
                return bool(masks[bit[0]] >> bit[1] & 1)
            path = leaf.get("field")
            if path in known:
                value = known[path]
                if value is not None and "ioc" in leaf:
                    return None  # the IoC lists change while the key is cached
                fn = self._leaf_fn(leaf)
                return None if fn is None else fn(_synthetic(path, value))
            if path in present and "exists" in leaf:
                return leaf["exists"] is True
            return None

        out: list[_Entry] = []
        for order in sorted(found):
            entry = self._entry(found[order], leaf_result)
            if entry is not None:
                out.append(entry)
        return tuple(out)

    def _entry(self, slot: _Slot, leaf_result: Callable[[Mapping[str, Any]], bool | None]) \
            -> _Entry | None:
        """``slot``'s entry for events of which ``leaf_result`` tells some leaves; None
        when it cannot match them. What is left of its condition runs as one generated
        function (one per rule and residue, bounded), or as the compiled closures."""
        crule = slot.crule
        rule = crule.rule
        match = slot.routed
        if rule.match is not None:
            rest, sig = residual_condition(rule.match, leaf_result)
            if rest is False:
                return None
            if rest is True:
                match = None
            else:
                key = (slot.order, sig)
                if key in self._residues:
                    fn = self._residues[key]
                elif len(self._residues) < _RESIDUES_MAX:
                    fn = self._residues[key] = generate_condition(rest, crule.ioc,
                                                                  crule.limits)
                else:
                    fn = None  # past the bound: the compiled closures
                if fn is not None:
                    match = fn
        hit: tuple[int, ...] | None = None
        if slot.kind == SEQUENCE and rule.sequence is not None:
            steps = [condition_verdict(step.match, leaf_result)
                     for step in rule.sequence.steps]
            if all(v is False for v in steps):
                return None
            if all(v is not None for v in steps):
                hit = tuple(i for i, v in enumerate(steps) if v)
        return slot, match, hit

    def entries(self, event: Event) -> tuple[_Entry, ...]:
        """The candidate rules of ``event``, each with what is left to test (see
        :data:`_Entry`), cached per dispatch key."""
        values = self._route_key(event)
        cands = self._dispatch.get(values)
        if cands is None:
            cands = self._candidates_for(values)
            # the key's own length is the engine's (routing, class, presence fields)
            if all(_cacheable(v) for v in values):
                if len(self._dispatch) >= 65536:
                    self._dispatch.clear()
                self._dispatch[values] = cands
        return cands

    def candidates(self, event: Event) -> tuple[_Slot, ...]:
        """The rules ``event`` is tried on."""
        return tuple(entry[0] for entry in self.entries(event))

    @staticmethod
    def _slot_matches(slot: _Slot, event: Event) -> bool:
        match = slot.match
        if match is not None and not match(event):
            return False
        if slot.kind == SEQUENCE:
            return any(step(event) for step in slot.steps)
        return True

    def matching_rules(self, event: Event) -> list[str]:
        """Ids of the rules whose conditions match ``event`` (through the index and the
        dispatch key's verdicts, as :meth:`process` tries them)."""
        out = []
        for slot, match, hit in self.entries(event):
            if match is not None and not match(event):
                continue
            if slot.kind == SEQUENCE and not (
                    hit if hit is not None else any(step(event) for step in slot.steps)):
                continue
            out.append(slot.id)
        return out

    def matching_rules_bruteforce(self, event: Event) -> list[str]:
        """:meth:`matching_rules` without the index (for tests)."""
        return [s.id for s in self._slots if self._slot_matches(s, event)]

    # -- processing ----------------------------------------------------------------

    def process(self, events: list[Event]) -> list[Event]:
        """Return ``events`` followed by the alerts the rules raised on them."""
        if not self._slots or not events:
            return events
        if not gc.isenabled():
            return self._process(events)
        # The engine makes no reference cycles, but the alerts it builds count towards
        # the collector's thresholds; with the pipeline holding many live events every
        # few batches then pays a full collection over all of them. Collecting once
        # after the batch instead costs the same memory bound (one batch) and saves
        # about a third of the time.
        gc.disable()
        try:
            return self._process(events)
        finally:
            gc.enable()

    def _process(self, events: list[Event]) -> list[Event]:  # noqa: PLR0915 (hot loop)
        alerts: list[Event] = []
        pending: list[tuple[float, int, _Slot, Event, tuple[int, ...] | None]] = []
        route_key = self._route_key
        dispatch = self._dispatch
        bound = self.max_out_of_order_secs
        max_time = self.max_time
        skew = self.max_clock_skew_secs
        # Nothing is from the future: past this, a sender's clock or zone is ahead.
        future = time.time() + skew if skew else math.inf
        timing = self._timing
        ts_cache = _TS_CACHE
        last_ts = -math.inf
        ordered = True  # pending is in (time, event, rule) order as it is appended
        for n, event in enumerate(events):
            values = route_key(event)
            cands = dispatch.get(values)
            if cands is None:
                cands = self.entries(event)
            stamp = event.get("@timestamp")
            ts = ts_cache.get(stamp) if type(stamp) is str else None
            if ts is None:
                ts = event_time(stamp)
            if ts is None:
                ts = max_time if max_time > -math.inf else 0.0
            own_time: float | None = None  # set when windows use the arrival time instead
            if ts > future:
                arrival = arrival_time(event)
                if arrival is not None:
                    own_time, ts = ts, arrival
            late = ts < max_time - bound
            if late and skew:
                arrival = arrival_time(event)
                # The newest event time agrees with the arrival (a live stream) but this
                # event's own time does not: its sender's clock or zone is wrong. A replay
                # of old records (arrival far after every event time) is left as it was.
                if (arrival is not None and abs(ts - arrival) > skew
                        and max_time - bound <= arrival <= max_time + skew):
                    own_time, ts, late = ts, arrival, False
            if own_time is None and ts > max_time:  # as max(): NaN leaves it
                max_time = ts
            if not cands:
                continue
            counted_late = False
            windowed = False
            for slot, match, hit in cands:
                kind = slot.kind
                if kind == SEQUENCE:
                    if match is not None and not match(event):
                        continue
                    if hit is None:
                        hit = tuple([i for i, step in enumerate(slot.steps) if step(event)])
                        if not hit:
                            continue
                    if late:
                        counted_late = True
                        continue
                    if not ts >= last_ts:  # (NaN too: then the full sort decides)
                        ordered = False
                    last_ts = ts
                    pending.append((ts, n, slot, event, hit))
                    windowed = True
                    continue
                if match is not None and not match(event):
                    continue
                if kind == STATELESS:
                    self._fire(slot, event, ts, 1, (), [_event_hash(event)], alerts,
                               taint_of(event))
                elif late:
                    counted_late = True
                else:
                    if not ts >= last_ts:
                        ordered = False
                    last_ts = ts
                    pending.append((ts, n, slot, event, None))
                    windowed = True
            if counted_late:
                timing.late(event, ts, max_time)
            elif windowed and own_time is not None:
                timing.skewed(event, own_time, ts)
        self.max_time = max_time
        timing.report()
        if pending:
            if not ordered:
                # Appended in event order and, per event, rule order: already sorted
                # unless some event time went back.
                pending.sort(key=lambda p: (p[0], p[1], p[2].order))
            last: Event | None = None
            h, taint = "", TRUSTED
            for ts, _, slot, event, steps_hit in pending:
                if event is not last:  # an event's entries are adjacent: hash it once
                    last, h, taint = event, _event_hash(event), taint_of(event)
                if slot.kind == THRESHOLD:
                    self._threshold(slot, event, ts, alerts, h, taint)
                elif slot.kind == DISTINCT:
                    self._distinct(slot, event, ts, alerts, h, taint)
                else:
                    assert steps_hit is not None
                    self._sequence(slot, event, ts, steps_hit, alerts, h, taint)
        if not alerts:
            return events
        return events + alerts

    def _threshold(self, slot: _Slot, event: Event, ts: float, alerts: list[Event], h: str,
                   taint: Taint) -> None:
        crule = slot.crule
        th = crule.rule.threshold
        assert th is not None
        assert th.count is not None
        key = slot.group_key(event)
        groups = slot.state.groups
        items: list[tuple[float, str, Taint]] | None = groups.get(key)
        if items is None:
            items = groups.touch(key, list)  # new: bounded there
        else:
            groups.move_to_end(key)  # what touch() does, without the call
        item = (ts, h, taint)
        if not items or ts >= items[-1][0]:
            items.append(item)
        else:
            bisect.insort(items, item)
        low = items[-1][0] - th.window
        i = 0
        while items[i][0] < low:
            i += 1
        if i:
            del items[:i]
        if len(items) >= th.count:
            del groups[key]
            hashes = [h for _, h, _ in items]
            self._fire(slot, event, ts, len(items), key, hashes, alerts,
                       max(t for _, _, t in items))

    def _distinct(self, slot: _Slot, event: Event, ts: float, alerts: list[Event], h: str,
                  taint: Taint) -> None:
        crule = slot.crule
        th = crule.rule.threshold
        assert th is not None
        assert th.distinct is not None
        assert crule.distinct_getter is not None
        value = crule.distinct_getter(event)
        if value is None:
            return
        key = slot.group_key(event)
        groups = slot.state.groups
        seen: dict[str, tuple[float, str, Taint]] | None = groups.get(key)
        if seen is None:
            seen = groups.touch(key, dict)
        else:
            groups.move_to_end(key)
        for v in (value if type(value) is list else (value,)):
            text = v if type(v) is str else as_text(v)
            if text is None:
                continue
            if len(text) > _CACHE_VALUE_MAX:
                text = _compact(text)
            old = seen.get(text)
            if old is None or old[0] <= ts:
                seen[text] = (ts, h, taint)
        if len(seen) < th.distinct.count:
            return
        low = ts - th.window
        for text in [t for t, (when, _, _) in seen.items()
                     if when < low or when > ts + th.window]:
            del seen[text]
        if len(seen) >= th.distinct.count:
            del groups[key]
            entries = sorted(seen.values())
            self._fire(slot, event, ts, len(seen), key, [h for _, h, _ in entries], alerts,
                       max(t for _, _, t in entries))

    def _sequence(self, slot: _Slot, event: Event, ts: float, hit: tuple[int, ...],
                  alerts: list[Event], h: str, taint: Taint) -> None:
        crule = slot.crule
        seq = crule.rule.sequence
        assert seq is not None
        key = slot.group_key(event)
        groups = slot.state.groups
        last = len(slot.steps) - 1
        # Per step: (start, time, hashes, weakest provenance of the chain so far).
        parts: list[tuple[float, float, tuple[str, ...], Taint] | None] | None = \
            groups.get(key)
        if parts is None:
            if 0 not in hit:
                return
            parts = groups.touch(key, lambda: [None] * last)
        else:
            groups.move_to_end(key)
        for j in reversed(hit):
            if j == 0:
                parts[0] = (ts, ts, (h,), taint)
                continue
            prev = parts[j - 1]
            if prev is None or ts < prev[1] or ts - prev[0] > seq.window:
                continue
            chain = (prev[0], ts, (*prev[2], h), max(prev[3], taint))
            if j == last:
                groups.pop(key, None)
                self._fire(slot, event, ts, len(slot.steps), key, list(chain[2]), alerts,
                           chain[3])
                return
            cur = parts[j]
            if cur is None or cur[0] <= chain[0] or ts - cur[0] > seq.window:
                parts[j] = chain

    # -- firing --------------------------------------------------------------------

    def _fire(self, slot: _Slot, event: Event, ts: float, count: int, key: tuple[Any, ...],
              hashes: list[str], alerts: list[Event], taint: Taint) -> None:
        crule = slot.crule
        rule = crule.rule
        state = slot.state
        severity = rule.severity
        escalated = False
        if rule.escalate is not None and crule.escalate_getters is not None:
            ekey = _key(crule.escalate_getters, event)
            times: list[float] = state.escalate.touch(ekey, list)
            times.append(ts)
            low = ts - rule.escalate.window
            times[:] = [t for t in times if t >= low]
            if len(times) >= rule.escalate.count:
                times.clear()
                escalated = True
                severity = severity.raised()
        if rule.suppress is not None and crule.suppress_getters is not None:
            skey = _key(crule.suppress_getters, event)
            last = state.suppress.get(skey)
            if not escalated and last is not None and abs(ts - last) < rule.suppress.window:
                self._suppressed[slot.id].inc()
                return
            state.suppress[skey] = ts
            state.suppress.move_to_end(skey)
            if len(state.suppress) > state.suppress.limit:
                state.suppress.popitem(last=False)
                state.suppress.counter.inc()
        alerts.append(self._alert(crule, event, count, key, hashes, severity, escalated, taint))
        self._matches[slot.id].inc()

    def _alert(self, crule: CompiledRule, event: Event, count: int, key: tuple[Any, ...],  # noqa: PLR0915
               hashes: list[str], severity: Any, escalated: bool,
               taint: Taint = TRUSTED) -> Event:
        rule = crule.rule
        alert: Event = {"@timestamp": event.get("@timestamp")}
        for section in COPY_SECTIONS:
            value = event.get(section)
            if value is not None:
                alert[section] = _clone(value)
        first = hashes[0] if hashes else ""
        group = {f: _clone(crule.group_getters[i](event)) for i, f in
                 enumerate(crule.group_fields)}
        alert["event"] = {
            "kind": "alert", "module": "socd", "dataset": "socd.rules",
            "hash": fingerprint("rule", rule.id,
                                orjson.dumps([list(v) if isinstance(v, tuple) else v
                                              for v in key], default=str), first),
        }
        created = event.get("event", {}).get("created") if type(event.get("event")) is dict \
            else None
        if created is not None:
            alert["event"]["created"] = created
        rule_obj: dict[str, Any] = {"id": rule.id, "name": rule.title.vi, "ruleset": "socd"}
        if rule.description is not None:
            rule_obj["description"] = rule.description.vi
        if rule.category is not None:
            rule_obj["category"] = rule.category
        if rule.references:
            rule_obj["reference"] = list(rule.references)
        if rule.version is not None:
            rule_obj["version"] = rule.version
        alert["rule"] = rule_obj
        techniques = crule.techniques
        if techniques:
            alert["threat"] = {"framework": "MITRE ATT&CK",
                               "technique": {"id": list(techniques)}}
        if crule.plain_tags:
            alert["tags"] = list(crule.plain_tags)
        message = rule.title.vi
        if group:
            message += " (" + ", ".join(f"{f}={v}" for f, v in group.items()
                                        if v is not None) + ")"
        alert["message"] = message
        socd: dict[str, Any] = {}
        src_socd = event.get("socd")
        if type(src_socd) is dict:
            for name in SOCD_COPY:
                if name in src_socd:
                    socd[name] = _clone(src_socd[name])
        transport = transport_of(taint)
        if transport is not None:
            # Read by the blocker: a block is refused unless every contributing event
            # came from an authenticated transport or an opted-in collector.
            socd["transport"] = transport
        alert["socd"] = socd
        # Every alert raised on one event shares that event's hash (the event's own
        # alert carries it too, socd.engine.classify): the notification core and the analyst
        # see one incident, not one per rule that fired.
        socd["correlation_id"] = _event_hash(event)
        set_severity(alert, severity)
        socd["layer"] = rule.layer
        meta: dict[str, Any] = {"count": count, "trigger_hashes": hashes[-MAX_TRIGGER_HASHES:]}
        window = crule.window
        if window is not None:
            meta["window"] = int(window)
        if group:
            meta["group"] = group
        if escalated:
            meta["escalated"] = True
        socd["rule"] = meta
        if crule.block or crule.notify:
            actions: dict[str, Any] = {}
            if crule.block:
                reason = f"{rule.id}: {rule.title.vi}"
                blocks = []
                for getter, _field, ttl in crule.block:
                    value = getter(event)
                    for v in (value if type(value) is list else [value]):
                        if v is not None:
                            blocks.append({"value": v, "ttl_secs": int(ttl), "reason": reason})
                if blocks:
                    actions["block"] = blocks
            if crule.notify:
                actions["notify"] = list(crule.notify)
            if actions:
                socd["actions"] = actions
        return alert

    # -- reload --------------------------------------------------------------------

    def carry_state_from(self, old: RuleEngine) -> list[str]:
        """Keep the state of rules whose definition is unchanged (SIGHUP reload).

        Returns the ids of the rules whose state was carried over.
        """
        carried = []
        for crule in self.rules:
            prev = old._by_id.get(crule.id)
            if prev is not None and prev.def_hash == crule.def_hash:
                self.state[crule.id] = old.state[crule.id]
                carried.append(crule.id)
        self.max_time = max(self.max_time, old.max_time)
        self._build_index()
        return carried

    def rule_ids(self) -> Iterable[str]:
        return (r.id for r in self.rules)
