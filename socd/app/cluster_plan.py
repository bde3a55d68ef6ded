"""How a rule pack is split between intake and workers (docs/scaling.md).

A rule that remembers nothing (no threshold, sequence, suppress or escalate) runs in the
intake process, as in one process. A *stateful* rule keeps state per key: its group-by
key and the keys of its ``suppress:`` and ``escalate:``. Every event that can change one
key's state must reach the same engine, so the rule is partitioned on the fields every
one of its keys contains (their intersection): events with the same values of those
fields land in the same Kafka partition. Rules partitioned on the same fields share one
*repartition topic* ``<prefix>.events.by.<fields>``, as Kafka Streams repartitions per key.
A rule whose keys share no field (or have none) is partitioned on nothing: all its events
go to one partition, like its one state in a single process.

An event missing a key field is keyed ``null`` there, exactly as the engine groups it
under ``None`` in one process: all such events meet in one partition.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from socd.engine import CompiledRule, RuleEngine
from socd.engine.compiler import make_getter
from socd.engine.loader import Getter
from socd.event import Event

_TOPIC_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_TOPIC_MAX = 249
# A key value longer than this is sent as its digest: keys come from input, and a 1 MiB
# command line must not become a 1 MiB Kafka key (the engine compacts it likewise).
_KEY_VALUE_MAX = 256


def is_stateful(crule: CompiledRule) -> bool:
    """Whether the rule remembers anything between events."""
    rule = crule.rule
    return (rule.threshold is not None or rule.sequence is not None
            or rule.suppress is not None or rule.escalate is not None)


def state_key_fields(crule: CompiledRule) -> list[tuple[str, ...]]:
    """The field lists of every key the rule keeps state under (socd.engine.loader's
    defaults: suppress by the group, escalate by suppress's or the group)."""
    rule = crule.rule
    group = tuple(crule.group_fields)
    keys: list[tuple[str, ...]] = []
    if rule.threshold is not None or rule.sequence is not None:
        keys.append(group)
    suppress_by = tuple(rule.suppress.by) if rule.suppress is not None and \
        rule.suppress.by is not None else None
    if rule.suppress is not None:
        keys.append(suppress_by if suppress_by is not None else group)
    if rule.escalate is not None:
        keys.append(tuple(rule.escalate.by) if rule.escalate.by is not None else
                    suppress_by if suppress_by is not None else group)
    return keys


def partition_fields(crule: CompiledRule) -> tuple[str, ...]:
    """The fields the rule's events are partitioned on: those every state key has, in
    the order of the first key (so ``[source.ip, source.domain]`` stays one topic)."""
    keys = state_key_fields(crule)
    if not keys:
        return ()
    common = set(keys[0]).intersection(*keys[1:])
    return tuple(f for f in keys[0] if f in common)


def longest_window(crule: CompiledRule) -> float:
    """The longest time the rule's state looks back: its window, suppression, escalation."""
    rule = crule.rule
    spans = [crule.window or 0.0]
    if rule.suppress is not None:
        spans.append(rule.suppress.window)
    if rule.escalate is not None:
        spans.append(rule.escalate.window)
    return max(spans)


def topic_name(prefix: str, fields: Sequence[str]) -> str:
    """``<prefix>.events.by.<f1>-<f2>`` (``_all`` without fields). A field name with a
    character Kafka refuses in topic names, or a name too long, gets a digest suffix so
    two field lists never share a topic."""
    readable = "-".join(fields) if fields else "_all"
    safe = _TOPIC_UNSAFE.sub("_", readable)
    name = f"{prefix}.events.by.{safe}"
    if safe != readable or len(name) > _TOPIC_MAX:
        digest = hashlib.blake2b("\0".join(fields).encode(), digest_size=6).hexdigest()
        name = f"{name[:_TOPIC_MAX - 13]}.{digest}"
    return name


def _key_part(value: Any) -> Any:
    if type(value) is str and len(value) <= _KEY_VALUE_MAX:
        return value
    data = orjson.dumps(value, option=orjson.OPT_SORT_KEYS, default=str)
    if len(data) <= _KEY_VALUE_MAX:
        return value
    return "blake2b:" + hashlib.blake2b(data, digest_size=16).hexdigest()


@dataclass(eq=False)
class KeyTopic:
    """One repartition topic: its partition fields and the rules that read it."""

    fields: tuple[str, ...]
    name: str
    rules: list[CompiledRule]
    getters: tuple[Getter, ...] = ()
    window: float = 0.0
    # matches an event against the topic's rules (the intake's router); set by build_plan
    router: RuleEngine | None = field(default=None, repr=False)

    def key(self, event: Event) -> bytes:
        """The message key: the partition fields' values as canonical JSON."""
        return orjson.dumps([_key_part(g(event)) for g in self.getters],
                            option=orjson.OPT_SORT_KEYS, default=str)

    def concerns(self, event: Event) -> bool:
        """Whether a rule of this topic matches ``event`` (the engine's own routing and
        conditions), so that only those events are published."""
        assert self.router is not None
        return bool(self.router.matching_rules(event))


@dataclass(eq=False)
class ClusterPlan:
    """The split of a rule pack: stateless rules and one :class:`KeyTopic` per key."""

    stateless: list[CompiledRule]
    topics: list[KeyTopic]
    # One engine over every stateful rule, for routing only: one index lookup per event
    # finds the rules (hence topics) it concerns, instead of one per topic.
    router: RuleEngine | None = field(default=None, repr=False)
    topic_of: dict[str, KeyTopic] = field(default_factory=dict, repr=False)

    def topics_for(self, event: Event) -> list[KeyTopic]:
        """The topics one of whose rules matches ``event``, in plan order."""
        assert self.router is not None
        ids = self.router.matching_rules(event)
        if not ids:
            return []
        found = {id(t): t for t in (self.topic_of[r] for r in ids)}
        return [t for t in self.topics if id(t) in found] if len(found) > 1 \
            else list(found.values())

    @property
    def topic_names(self) -> list[str]:
        return [t.name for t in self.topics]

    def by_name(self) -> dict[str, KeyTopic]:
        return {t.name: t for t in self.topics}


EngineFactory = Callable[[Sequence[CompiledRule]], RuleEngine]


def build_plan(rules: Sequence[CompiledRule], prefix: str,
               make_engine: EngineFactory) -> ClusterPlan:
    """Split ``rules`` (the active ones, in pack order) for ``prefix``'s topics.

    ``make_engine`` builds a :class:`RuleEngine` over some of them with the daemon's
    settings (every engine over a compiled rule sets its limits and IoC lookup: they
    must all agree)."""
    stateless: list[CompiledRule] = []
    grouped: dict[tuple[str, ...], list[CompiledRule]] = {}
    for crule in rules:
        if is_stateful(crule):
            grouped.setdefault(partition_fields(crule), []).append(crule)
        else:
            stateless.append(crule)
    topics = []
    for fields, members in sorted(grouped.items()):
        topic = KeyTopic(fields=fields, name=topic_name(prefix, fields), rules=members,
                         getters=tuple(make_getter(f) for f in fields),
                         window=max(longest_window(r) for r in members))
        topic.router = make_engine(members)
        topics.append(topic)
    names = [t.name for t in topics]
    if len(set(names)) != len(names):  # pragma: no cover (digests make names distinct)
        raise ValueError(f"two key field lists map to one topic name: {names}")
    stateful = [r for r in rules if is_stateful(r)]
    return ClusterPlan(stateless=stateless, topics=topics, router=make_engine(stateful),
                       topic_of={r.id: t for t in topics for r in t.rules})
