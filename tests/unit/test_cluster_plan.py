"""The split of a rule pack between intake and workers (socd.app.cluster_plan), the
cluster section's checks, and that one process never loads Kafka (issue 18)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from socd.app.cluster_intake import is_rule_alert
from socd.app.cluster_plan import (
    build_plan,
    is_stateful,
    longest_window,
    partition_fields,
    topic_name,
)
from socd.engine import CompiledRule, RuleEngine, load_text
from socd.engine.loader import builtin_dir, expand_paths, load_files
from socd.errors import ConfigError

TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


def _rules(text: str) -> list[CompiledRule]:
    rules, problems = load_text(text)
    assert not problems, problems
    return rules


def _rule(body: str) -> CompiledRule:
    [rule] = _rules("rules:\n  - id: r\n    title: t\n    severity: high\n"
                    "    match: {field: event.outcome, equals: failure}\n" + body)
    return rule


def _engine(rules: Any) -> RuleEngine:
    return RuleEngine(rules)


@pytest.mark.parametrize(("body", "fields"), [
    ("", None),  # stateless
    ("    threshold: {count: 5, window: 10m, group_by: [source.ip, source.domain]}\n",
     ("source.ip", "source.domain")),
    # suppress by one of the group's fields: only that field keeps both keys together
    ("    threshold: {count: 5, window: 10m, group_by: [source.ip, user.name]}\n"
     "    suppress: {window: 1h, by: [source.ip]}\n", ("source.ip",)),
    # suppress by more fields than the group: the group's fields are enough
    ("    threshold: {count: 5, window: 10m, group_by: [source.ip]}\n"
     "    suppress: {window: 1h, by: [source.ip, user.name]}\n", ("source.ip",)),
    # escalate by default follows suppress.by
    ("    threshold: {count: 5, window: 10m, group_by: [source.ip, host.name]}\n"
     "    suppress: {window: 1h, by: [host.name, source.ip]}\n"
     "    escalate: {count: 3, window: 1h}\n", ("source.ip", "host.name")),
    # keys without a common field: one partition, like the one state of one process
    ("    threshold: {count: 5, window: 10m, group_by: [source.ip]}\n"
     "    suppress: {window: 1h, by: [host.name]}\n", ()),
    ("    threshold: {count: 5, window: 10m}\n", ()),
    # a stateless match with suppress keeps state: partitioned on its suppress key
    ("    suppress: {window: 30m, by: [host.name, rule.name]}\n", ("host.name", "rule.name")),
])
def test_partition_fields_are_those_every_state_key_has(body: str,
                                                        fields: tuple[str, ...] | None) -> None:
    rule = _rule(body)
    assert is_stateful(rule) == (fields is not None)
    if fields is not None:
        assert partition_fields(rule) == fields


def test_longest_window_counts_suppress_and_escalate() -> None:
    rule = _rule("    threshold: {count: 5, window: 10m, group_by: [source.ip]}\n"
                 "    suppress: {window: 1h}\n    escalate: {count: 3, window: 2h}\n")
    assert longest_window(rule) == 7200


def test_the_shipped_pack_splits_into_valid_distinct_topics() -> None:
    rules = load_files(expand_paths([builtin_dir()]))
    active = [r for r in rules if r.rule.enabled]
    plan = build_plan(active, "socd", _engine)
    names = plan.topic_names
    assert len(names) == len(set(names))
    assert all(TOPIC.match(n) for n in names)
    placed = [r.id for t in plan.topics for r in t.rules]
    assert sorted(placed + [r.id for r in plan.stateless]) == sorted(r.id for r in active)
    assert len(placed) == len(set(placed))
    assert all(not is_stateful(r) for r in plan.stateless)
    by_name = plan.by_name()
    assert "ssh-bruteforce" in {r.id for r in by_name["socd.events.by.source.ip-source.domain"]
                                .rules}
    # a rule keyed by the same fields as another shares its topic
    assert all(partition_fields(r) == t.fields for t in plan.topics for r in t.rules)
    # the one routing engine picks the topics the per-topic engines would
    for rule in placed_rules(plan):
        for test in rule.rule.tests:
            for event in test.events:
                nested = _nest(event)
                assert [t.name for t in plan.topics_for(nested)] == \
                    [t.name for t in plan.topics if t.concerns(nested)]


def placed_rules(plan: Any) -> list[CompiledRule]:
    return [r for t in plan.topics for r in t.rules]


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    """A rule test's event (dotted keys) as an event."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        *parents, last = key.split(".") if not key.startswith("@") else [key]
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return out


def test_topic_names() -> None:
    assert topic_name("socd", ("source.ip", "source.domain")) == \
        "socd.events.by.source.ip-source.domain"
    assert topic_name("p", ()) == "p.events.by._all"
    odd = topic_name("p", ("@timestamp",))
    assert TOPIC.match(odd)
    assert odd != topic_name("p", ("_timestamp",))
    long = topic_name("p", tuple(f"field.number{i}" for i in range(40)))
    assert TOPIC.match(long)


def test_message_keys_are_canonical_and_bounded() -> None:
    rule = _rule("    threshold: {count: 5, window: 10m, group_by: [source.ip, user.name]}\n")
    plan = build_plan([rule], "p", _engine)
    [topic] = plan.topics
    event: dict[str, Any] = {"event": {"outcome": "failure"}, "source": {"ip": "10.0.0.1"},
                             "user": {"name": "a"}}
    assert topic.key(event) == b'["10.0.0.1","a"]'
    assert topic.concerns(event)
    assert plan.topics_for(event) == [topic]
    assert plan.topics_for({"event": {"outcome": "success"}}) == []
    assert not topic.concerns({"event": {"outcome": "success"}, "source": {"ip": "10.0.0.1"}})
    # a missing field is null: every such event meets in one partition, as in one process
    assert topic.key({"event": {"outcome": "failure"}}) == b"[null,null]"
    huge = {**event, "user": {"name": "x" * 100_000}}
    key = topic.key(huge)
    assert len(key) < 100
    assert key == topic.key({**event, "user": {"name": "x" * 100_000}})
    assert topic.key({**event, "user": {"name": ["b", "a"]}}) == b'["10.0.0.1",["b","a"]]'


def test_rule_alerts_are_not_published_again() -> None:
    assert is_rule_alert({"socd": {"rule": {"count": 5}}})
    assert not is_rule_alert({"socd": {"collector": "x"}, "rule": {"id": "vendor"}})
    assert not is_rule_alert({"socd": "not a dict"})


def _config(tmp_path: Path, text: str) -> Any:
    from socd import config as config_mod

    path = tmp_path / "socd.yaml"
    path.write_text(text)
    return config_mod.load(str(path))


def test_role_without_a_cluster_section_is_refused(tmp_path: Path) -> None:
    from socd.app.cluster import ClusterRole

    cfg = _config(tmp_path, f"state_dir: {tmp_path}/state\n")
    assert ClusterRole.from_config(cfg) is None
    with pytest.raises(ConfigError, match="--role worker needs a cluster: section"):
        ClusterRole.from_config(cfg, "worker")


def test_bad_kafka_settings_name_their_key(tmp_path: Path) -> None:
    from socd.app.cluster import ClusterRole

    cfg = _config(tmp_path, f"state_dir: {tmp_path}/state\ncluster:\n  kafka:\n"
                  "    bootstrap_servers: [no-port]\n    bogus: 1\n")
    with pytest.raises(ConfigError) as info:
        ClusterRole.from_config(cfg)
    text = str(info.value)
    assert "cluster.kafka.bootstrap_servers" in text
    assert "cluster.kafka.bogus" in text


def test_one_process_never_imports_kafka(tmp_path: Path) -> None:
    """The embedded default: building and starting the daemon's parts without a
    cluster section loads neither the cluster modules nor confluent_kafka."""
    (tmp_path / "socd.yaml").write_text(f"state_dir: {tmp_path}/state\nhttp: {{enabled: false}}\n")
    code = (
        "import sys\n"
        "from socd import config\n"
        "from socd.app.server import Daemon\n"
        f"cfg = config.load({str(tmp_path / 'socd.yaml')!r})\n"
        "daemon = Daemon(cfg)\n"
        "assert daemon.cluster is None\n"
        "bad = [m for m in sys.modules if m.startswith(('confluent_kafka', 'socd.app.cluster',"
        " 'socd.kafka'))]\n"
        "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_the_split_is_kept_across_a_reload(tmp_path: Path) -> None:
    """prepare() gives the intake's classifier the stateless rules only; a reload keeps
    the running split (intake and workers must agree on the topics) and points the
    running rules' `ioc` conditions at the reloaded IoC store."""
    from socd.app.cluster import ClusterRole
    from socd.app.components import build_classifier

    cfg = _config(tmp_path, f"state_dir: {tmp_path}/state\ncluster:\n  role: intake\n"
                  "  kafka: {bootstrap_servers: ['127.0.0.1:9']}\n")
    role = ClusterRole.from_config(cfg)
    assert role is not None
    assert role.intake
    assert not role.worker_role
    classifier = build_classifier(cfg)
    every = {r.id for r in classifier.rules.rules} if classifier.rules else set()
    role.prepare(classifier)
    assert role.plan is not None
    assert classifier.rules is role.stateless
    assert {r.id for r in classifier.rules.rules} == {r.id for r in role.plan.stateless}
    assert {r.id for t in role.plan.topics for r in t.rules} | \
        {r.id for r in role.plan.stateless} == every
    reloaded = build_classifier(cfg)
    role.adapt(reloaded)
    assert reloaded.rules is role.stateless
    some = role.plan.topics[0].rules[0]
    assert some.ioc.lookup == reloaded.ioc_lookup
