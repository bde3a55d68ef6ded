"""Rules engine: condition operators, nesting, CIDR, index correctness."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from socd import netaddr
from socd.engine import RuleEngine, load_text
from socd.engine.compiler import Context, cidr_ranges, compile_condition, ip_int
from socd.event import unflatten


def cond(raw: dict[str, Any], ioc: Any = None) -> Any:
    ctx = Context("<test>")
    ctx.ioc.lookup = ioc
    fn = compile_condition(raw, ("match",), ctx)
    assert not ctx.problems, [str(p) for p in ctx.problems]
    assert fn is not None
    return fn


def ev(**flat: Any) -> dict[str, Any]:
    return unflatten({k.replace("__", "."): v for k, v in flat.items()})


def test_equals_is_case_insensitive_by_default() -> None:
    fn = cond({"field": "user.name", "equals": "Root"})
    assert fn(ev(user__name="root"))
    assert fn(ev(user__name="ROOT"))
    assert not fn(ev(user__name="rooty"))
    assert not fn(ev())
    sensitive = cond({"field": "user.name", "equals": "Root", "case": "sensitive"})
    assert sensitive(ev(user__name="Root"))
    assert not sensitive(ev(user__name="root"))


def test_equals_vietnamese_casefold() -> None:
    fn = cond({"field": "socd.unit", "equals": "Sở Tài chính"})
    assert fn(ev(socd__unit="SỞ TÀI CHÍNH"))
    assert not fn(ev(socd__unit="So Tai chinh"))


def test_numbers_and_text_compare_as_text() -> None:
    fn = cond({"field": "event.code", "equals": 4625})
    assert fn(ev(event__code="4625"))
    assert fn(ev(event__code=4625))
    assert not fn(ev(event__code="46250"))
    assert cond({"field": "x", "equals": True})(ev(x=True))
    assert not cond({"field": "x", "equals": True})(ev(x=False))


def test_in_prefix_suffix_contains() -> None:
    assert cond({"field": "a", "in": ["x", "Y"]})(ev(a="y"))
    assert not cond({"field": "a", "in": ["x", "Y"]})(ev(a="z"))
    assert cond({"field": "a", "prefix": "/tmp/"})(ev(a="/TMP/x"))
    assert cond({"field": "a", "prefix": ["/var/", "/tmp/"]})(ev(a="/tmp/x"))
    assert not cond({"field": "a", "prefix": "/tmp/", "case": "sensitive"})(ev(a="/TMP/x"))
    assert cond({"field": "a", "suffix": [".jsp", ".php"]})(ev(a="shell.PHP"))
    assert not cond({"field": "a", "suffix": ".jsp"})(ev(a="x.jspx"))
    assert cond({"field": "a", "contains": "mimikatz"})(ev(a="run MimiKatz.exe"))
    many = cond({"field": "a", "contains": ["a1", "b2", "c3", "d4", "e5", "f6"]})
    assert many(ev(a="xxE5yy"))
    assert not many(ev(a="xx"))
    assert cond({"field": "a", "contains": ["q", "zz"]})(ev(a="azz"))


def test_arrays_match_any_element() -> None:
    fn = cond({"field": "event.category", "equals": "authentication"})
    assert fn(ev(event__category=["process", "authentication"]))
    assert not fn(ev(event__category=["process"]))
    assert cond({"field": "host.ip", "cidr": ["10.0.0.0/8"]})(ev(host__ip=["1.2.3.4", "10.1.1.1"]))
    assert cond({"field": "n", "gt": 5})(ev(n=[1, 9]))


def test_regex_search_and_case() -> None:
    fn = cond({"field": "p", "regex": r"curl .*\| *(ba)?sh"})
    assert fn(ev(p="CURL -s http://x | bash"))
    assert not cond({"field": "p", "regex": "^curl", "case": "sensitive"})(ev(p="CURL x"))
    assert cond({"field": "p", "regex": r"^\d+$"})(ev(p=123))


def test_numeric_operators() -> None:
    assert cond({"field": "n", "gt": 5})(ev(n=6))
    assert not cond({"field": "n", "gt": 5})(ev(n=5))
    assert cond({"field": "n", "gte": 5})(ev(n=5))
    assert cond({"field": "n", "lt": 5})(ev(n="4.5"))
    assert cond({"field": "n", "lte": 5})(ev(n=5.0))
    assert not cond({"field": "n", "lt": 5})(ev(n="abc"))
    assert not cond({"field": "n", "lt": 5})(ev(n=True))


def test_exists_and_not() -> None:
    assert cond({"field": "a.b", "exists": True})(ev(a__b=0))
    assert not cond({"field": "a.b", "exists": True})(ev(a__c=1))
    assert cond({"field": "a.b", "exists": False})(ev())
    assert cond({"not": {"field": "a", "equals": "x"}})(ev())


def test_nesting() -> None:
    fn = cond({"all": [
        {"field": "event.category", "equals": "authentication"},
        {"any": [{"field": "user.name", "equals": "root"},
                 {"field": "user.name", "prefix": "admin"}]},
        {"not": {"field": "source.ip", "cidr": ["10.0.0.0/8", "fd00::/8"]}},
    ]})
    base = {"event__category": "authentication", "source__ip": "203.0.113.1"}
    assert fn(ev(**base, user__name="root"))
    assert fn(ev(**base, user__name="administrator"))
    assert not fn(ev(**base, user__name="bob"))
    assert not fn(ev(**{**base, "source__ip": "10.2.3.4"}, user__name="root"))
    assert not fn(ev(**{**base, "source__ip": "fd00::1"}, user__name="root"))


def test_ioc_operator_uses_injected_lookup() -> None:
    calls: list[tuple[Any, ...]] = []

    def lookup(*args: Any) -> bool:
        calls.append(args)
        return args[1] in {"198.51.100.7", "evil.example"}

    assert cond({"field": "source.ip", "ioc": "ip"}, lookup)(ev(source__ip="198.51.100.7"))
    assert cond({"field": "dns.question.name", "ioc": "domain"}, lookup)(
        ev(dns__question__name="EVIL.example."))
    assert not cond({"field": "source.ip", "ioc": "ip"}, lookup)(ev(source__ip="1.1.1.1"))
    cond({"field": "source.ip", "ioc": {"kind": "ip", "source": "941/CATTT-NCSC"}}, lookup)(
        ev(source__ip="198.51.100.7"))
    assert calls[-1] == ("ip", "198.51.100.7", "941/CATTT-NCSC")
    assert not cond({"field": "source.ip", "ioc": "ip"}, None)(ev(source__ip="198.51.100.7"))


def test_cidr_v4_v6_and_garbage() -> None:
    fn = cond({"field": "ip", "cidr": ["192.0.2.0/24", "2001:db8::/32", "198.51.100.7"]})
    assert fn(ev(ip="192.0.2.255"))
    assert fn(ev(ip="2001:db8:ffff::1"))
    assert fn(ev(ip="198.51.100.7"))
    assert not fn(ev(ip="198.51.100.8"))
    assert not fn(ev(ip="2001:db9::1"))
    assert not fn(ev(ip="not an ip"))
    assert fn(ev(ip="::ffff:192.0.2.1"))  # IPv4-mapped is the IPv4 address (socd.netaddr)
    assert not fn(ev(ip="2001:db8::1%eth0"))  # a zone id matches nothing


networks = st.one_of(
    st.builds(lambda a, p: ipaddress.IPv4Network((a, p), strict=False),
              st.integers(0, 2**32 - 1), st.integers(0, 32)),
    st.builds(lambda a, p: ipaddress.IPv6Network((a, p), strict=False),
              st.integers(0, 2**128 - 1), st.integers(0, 128)),
)
addresses = st.one_of(
    st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address),
    st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address),
)


@settings(max_examples=300, deadline=None)
@given(nets=st.lists(networks, min_size=1, max_size=8), addr=addresses,
       near=st.integers(-3, 3))
def test_cidr_matches_ipaddress(nets: list[Any], addr: Any, near: int) -> None:
    # also probe the edges of the first network
    first = nets[0]
    edge = int(first.broadcast_address if near > 0 else first.network_address) + near
    candidates = [addr]
    if 0 <= edge < 2 ** first.max_prefixlen:
        candidates.append(ipaddress.ip_address(edge) if first.version == 4
                          else ipaddress.IPv6Address(edge))
    fn = cond({"field": "ip", "cidr": [str(n) for n in nets]})
    gated = [netaddr.parse_network(str(n)) for n in nets]  # IPv4-mapped ones become IPv4
    for a in candidates:
        b = netaddr.parse_address(str(a))
        expected = any(b.version == n.version and b in n for n in gated)
        assert fn({"ip": str(a)}) == expected, (a, nets)


def test_cidr_ranges_merge() -> None:
    r = cidr_ranges(["10.0.0.0/9", "10.128.0.0/9", "10.0.0.0/16"])
    assert r[4] == ([int(ipaddress.ip_address("10.0.0.0"))],
                    [int(ipaddress.ip_address("10.255.255.255"))])
    assert ip_int("fe80::1%eth0") is None
    assert ip_int("::ffff:10.0.0.1") == (4, int(ipaddress.ip_address("10.0.0.1")))


# -- index correctness -------------------------------------------------------------

PACK = """
rules:
  - id: r-code
    title: a
    severity: low
    match: {all: [{field: event.code, equals: 4625}, {field: user.name, equals: bob}]}
  - id: r-code-in
    title: a
    severity: low
    match: {all: [{field: event.code, in: ["4624", 4625]}, {field: event.outcome, equals: success}]}
  - id: r-cat
    title: a
    severity: low
    match: {field: event.category, equals: Authentication}
  - id: r-cat-sensitive
    title: a
    severity: low
    match: {field: event.category, equals: authentication, case: sensitive}
  - id: r-module-any
    title: a
    severity: low
    match:
      any:
        - {all: [{field: event.module, equals: server_edr}, {field: user.name, prefix: a}]}
        - {field: event.dataset, equals: system.auth}
  - id: r-any-unindexable
    title: a
    severity: low
    match:
      any:
        - {field: event.module, equals: server_edr}
        - {field: user.name, equals: carol}
  - id: r-not
    title: a
    severity: low
    match: {not: {field: event.kind, equals: alert}}
  - id: r-kind
    title: a
    severity: low
    match: {all: [{field: event.kind, in: [alert, event]}, {field: observer.type, equals: edr}]}
  - id: r-catchall
    title: a
    severity: low
    match: {field: source.ip, cidr: [10.0.0.0/8]}
  - id: r-seq
    title: a
    severity: low
    sequence:
      window: 1m
      steps:
        - match: {field: event.action, equals: logon-failed}
        - match: {field: event.action, equals: logon}
  - id: r-bool
    title: a
    severity: low
    match: {field: event.code, equals: true}
"""

values = {
    "event.code": st.sampled_from(["4625", "4624", 4625, 4624.0, "1", True, ["4625", "x"]]),
    "event.category": st.sampled_from(["authentication", "Authentication", ["process",
                                       "AUTHENTICATION"], "process", 7]),
    "event.module": st.sampled_from(["server_edr", "SERVER_EDR", "suricata"]),
    "event.dataset": st.sampled_from(["system.auth", "x"]),
    "event.kind": st.sampled_from(["alert", "event", "Alert"]),
    "event.outcome": st.sampled_from(["success", "failure"]),
    "event.action": st.sampled_from(["logon-failed", "logon", "LOGON", "other"]),
    "observer.type": st.sampled_from(["edr", "ids", "EDR"]),
    "user.name": st.sampled_from(["bob", "alice", "carol", "Bob"]),
    "source.ip": st.sampled_from(["10.1.2.3", "203.0.113.1"]),
}


@st.composite
def random_events(draw: Any) -> dict[str, Any]:
    flat = {k: draw(v) for k, v in values.items() if draw(st.booleans())}
    return unflatten(flat)


_rules, _problems = load_text(PACK, "<pack>")
assert not _problems, _problems
ENGINE = RuleEngine(_rules)


def test_index_is_used() -> None:
    assert ENGINE._catch_all
    assert len(ENGINE._catch_all) < len(ENGINE.rules)
    ids = {s.id for s in ENGINE._catch_all}
    assert "r-code" not in ids
    assert "r-module-any" not in ids
    assert {"r-not", "r-catchall", "r-any-unindexable", "r-bool"} <= ids


@settings(max_examples=500, deadline=None)
@given(event=random_events())
def test_index_equals_bruteforce(event: dict[str, Any]) -> None:
    assert ENGINE.matching_rules(event) == ENGINE.matching_rules_bruteforce(event)


@pytest.mark.parametrize("raw", [
    {"field": "a", "equals": ["x"]},
    {"field": "a", "in": "x"},
    {"field": "a", "gt": "5"},
])
def test_bad_values_are_problems(raw: dict[str, Any]) -> None:
    ctx = Context("<test>")
    assert compile_condition(raw, ("match",), ctx) is None
    assert ctx.problems
    assert ctx.problems[0].path.startswith("match.")
