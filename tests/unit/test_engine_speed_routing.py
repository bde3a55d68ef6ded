"""Rules engine, issue 17: the dispatch key's verdicts (class fields, field presence)
leave rules out of an event's candidates only when they cannot match it."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from socd.engine import RuleEngine, load_text
from socd.engine.compiler import condition_verdict, required_paths
from socd.engine.engine import _CLASS_CACHE_MAX, _OPAQUE
from socd.engine.loader import load_paths
from socd.event import unflatten

PACK = load_paths(["builtin"])
ENGINE = RuleEngine(PACK)

LONG = "sshd" + "x" * 300

values: dict[str, Any] = {
    "process.name": st.sampled_from(["sshd", "SSHD", "powershell.exe", "PowerShell.EXE",
                                     "useradd", "postfix/smtpd", "dovecot", "cron", "",
                                     LONG, ["sshd", "pwsh.exe"], ("pwsh.exe",), 7, True,
                                     {"a": 1}]),
    "process.command_line": st.sampled_from(["history -c", "ls", None, ["x", "history -c"]]),
    "event.outcome": st.sampled_from(["success", "failure", "SUCCESS", ["failure"], 1]),
    "event.action": st.sampled_from(["ssh_login", "ssh_invalid_user", "sudo", "SUDO",
                                     ["sudo"], ("sudo",), 4625, None]),
    "event.category": st.sampled_from(["authentication", ["authentication"], "process",
                                       ("authentication",)]),
    "event.module": st.sampled_from(["system", "server_edr", "workstation_edr"]),
    "event.code": st.sampled_from(["4625", 4625, 4625.0, True, 1, "1"]),
    "rule.name": st.sampled_from(["suspicious.linux.historycleared", "mimikatz", "x"]),
    "file.path": st.sampled_from(["C:\\x\\lsass.dmp", "/tmp/a"]),
    "source.ip": st.sampled_from(["203.0.113.9", "10.0.0.1", "::1", "x"]),
    "destination.ip": st.sampled_from(["8.8.8.8", "10.1.1.1"]),
    "user.name": st.sampled_from(["root", "bob"]),
    "message": st.sampled_from(["new user: name=eve", "sasl LOGIN authentication failed",
                                "x"]),
    "winlog.channel": st.sampled_from(["Security", "Microsoft-Windows-Sysmon/Operational"]),
}


@st.composite
def random_events(draw: Any) -> dict[str, Any]:
    flat = {k: draw(v) for k, v in values.items() if draw(st.booleans())}
    event: dict[str, Any] = unflatten(flat)
    # a section that is not a mapping, and one whose value is a tuple
    if draw(st.booleans()):
        event[draw(st.sampled_from(["process", "file", "rule", "source"]))] = \
            draw(st.sampled_from(["text", None, 3, ["x"]]))
    return event


@settings(max_examples=1500, deadline=None)
@given(event=random_events())
def test_routing_equals_bruteforce_on_the_builtin_pack(event: dict[str, Any]) -> None:
    # one engine for every example: its dispatch and class caches are shared, as in a run
    assert ENGINE.matching_rules(event) == ENGINE.matching_rules_bruteforce(event)


def test_rules_for_other_programs_are_left_out_of_sshd_events() -> None:
    event = unflatten({"process.name": "sshd", "process.pid": 12, "event.action": "ssh_login",
                       "event.category": ["authentication"], "event.module": "system",
                       "event.outcome": "failure", "source.ip": "203.0.113.9",
                       "message": "Failed password for root", "user.name": "root"})
    ids = {s.id for s in ENGINE.candidates(event)}
    for never in ("edr-linux-log-clearing", "edr-credential-dumping", "mail-sasl-auth-failures",
                  "linux-user-added-to-admin-group", "win-encoded-powershell",
                  "ssh-root-login-from-internet", "ioc-login-success-from-ioc"):
        assert never not in ids
    assert "ssh-bruteforce" in ids
    # the same program writing a command line: the log-clearing rule is tried again
    event["process"]["command_line"] = "history -c"
    assert "edr-linux-log-clearing" in {s.id for s in ENGINE.candidates(event)}


def test_class_cache_and_dispatch_cache_are_bounded() -> None:
    engine = RuleEngine(PACK)
    for i in range(_CLASS_CACHE_MAX + 10):
        engine.candidates({"process": {"name": f"prog{i}"}, "event": {"outcome": str(i)}})
    for cls in engine._classes:
        assert len(cls.cache) <= _CLASS_CACHE_MAX
    assert len(engine._dispatch) <= 65536
    # a long value is classified, never kept
    engine.candidates({"process": {"name": "p" * 100_000}})
    assert all(len(k) <= 256 for cls in engine._classes for k in cls.cache)


def test_tuple_and_odd_routing_values_tell_nothing() -> None:
    rules, problems = load_text("""
rules:
  - id: r-sudo
    title: a
    severity: low
    match: {all: [{field: event.action, equals: sudo}, {field: user.name, equals: x}]}
""", "<t>")
    assert not problems
    engine = RuleEngine(rules)
    assert engine._route_key({"event": {"action": ("sudo",)}})[0] is _OPAQUE
    for action in (["sudo"], "SUDO", ["a", "sudo"]):
        event = {"event": {"action": action}, "user": {"name": "X"}}
        assert engine.matching_rules(event) == ["r-sudo"]
    assert engine.matching_rules({"event": {"action": ("sudo",)}, "user": {"name": "x"}}) == []


def test_verdict_is_three_valued() -> None:
    a = {"field": "a", "equals": "x"}
    b = {"field": "b", "equals": "y"}
    known = {id(a): False}

    def leaf(raw: Any) -> bool | None:
        return known.get(id(raw))
    assert condition_verdict({"all": [a, b]}, leaf) is False
    assert condition_verdict({"any": [a, b]}, leaf) is None
    assert condition_verdict({"not": a}, leaf) is True
    assert condition_verdict({"any": [{"not": a}, b]}, leaf) is True
    assert required_paths({"any": [a, {"all": [b, {"field": "c.d", "exists": True}]}]}) == \
        frozenset({"a", "b"})
    assert required_paths({"field": "x", "exists": False}) is None
