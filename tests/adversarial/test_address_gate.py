"""The address gate against the real consumer: nft in a private network namespace.

Property (issue 12, "One gate for addresses"): for ANY string, ``netaddr.canonical``
either refuses it (AddressError with a known reason) or returns a value that nft
accepts as an element of an ``ipv4_addr`` or ``ipv6_addr`` interval set, and that
passes ``safe_element``. The strings mix real addresses and networks with the
decorations an attacker uses: zone ids (``%`` with spaces, newlines, ``;``),
surrounding and embedded whitespace, IPv4-mapped forms, upper case, random
unicode. Each hypothesis example is a list of strings checked by one ``nft -f -``
run (one set per value, so values never conflict with each other), which keeps
the nft calls few.
"""

from __future__ import annotations

import ipaddress
import secrets
import subprocess
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from socd import netaddr
from tests.adversarial.netns import need, sh

pytestmark = pytest.mark.integration

_DECOR = st.sampled_from(["", " ", "\n", "\t", "%", "%x", "%eth0", "%x y", "%x\n10.0.0.1",
                          "%;flush ruleset", "/", "/0", "/32", "/64", "/128", "/129", "\r\n",
                          "\x00", "}", "{", ",", ";"])


@st.composite
def _address_text(draw: st.DrawFn) -> str:
    addr = draw(st.ip_addresses())
    text = str(addr)
    form = draw(st.integers(0, 5))
    if form == 1 and addr.version == 4:
        text = "::ffff:" + text
    elif form == 2:
        text = text.upper()
    elif form == 3:
        text = addr.exploded
    elif form == 4 and addr.version == 4:
        text = f"::ffff:{int(addr) >> 16:x}:{int(addr) & 0xFFFF:x}"
    return text


@st.composite
def _network_text(draw: st.DrawFn) -> str:
    text = draw(_address_text())
    bits = 32 if ":" not in text else 128
    return f"{text}/{draw(st.integers(0, bits))}"


def _decorated(base: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.builds(lambda pre, core, post: pre + core + post,
                     st.sampled_from(["", "", "", " ", "\n", "\t"]), base, _DECOR)


CANDIDATES = st.one_of(
    _address_text(), _network_text(), _decorated(_address_text()),
    _decorated(_network_text()),
    st.text(alphabet="0123456789abcdefABCDEF.:/% \n\t;x", max_size=50),
    st.text(max_size=40),
)


@pytest.fixture(scope="module")
def netns() -> Iterator[str]:
    need("ip", "iproute2")
    need("nft", "nftables")
    name = f"socdh{secrets.token_hex(3)}"
    sh("ip", "netns", "add", name)
    try:
        yield name
    finally:
        sh("ip", "netns", "delete", name, check=False)


def _nft_accepts(ns: str, values: list[str]) -> subprocess.CompletedProcess[str]:
    table = f"gate{secrets.token_hex(3)}"
    lines = [f"table inet {table} {{"]
    for i, value in enumerate(values):
        kind = "ipv6_addr" if ":" in value else "ipv4_addr"
        lines.append(f"  set s{i} {{ type {kind}; flags interval; elements = {{ {value} }} }}")
    lines.append("}")
    script = "\n".join(lines) + f"\ndelete table inet {table}\n"
    return sh("ip", "netns", "exec", ns, "nft", "-f", "-", input_=script, check=False)


def test_gate_refuses_or_nft_accepts(netns: str) -> None:
    @settings(max_examples=200, derandomize=True, database=None, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(st.lists(CANDIDATES, min_size=1, max_size=12))
    def check(texts: list[str]) -> None:
        accepted: list[str] = []
        for text in texts:
            try:
                value = netaddr.canonical(text, count=False)
            except netaddr.AddressError as exc:
                reasons.add(exc.reason)
                continue
            assert netaddr.safe_element(value) == value
            net = ipaddress.ip_network(value, strict=True)
            assert not (net.version == 6 and net.subnet_of(
                ipaddress.IPv6Network("::ffff:0:0/96"))), f"mapped form kept: {value}"
            assert netaddr.canonical(value, count=False) == value  # idempotent
            accepted.append(value)
        if accepted:
            proc = _nft_accepts(netns, accepted)
            assert proc.returncode == 0, (accepted, proc.stderr)

    reasons: set[str] = set()
    check()
    assert reasons <= set(netaddr.REASONS), reasons


@pytest.mark.parametrize("text", [
    "2001:db8:bad::99%x", "2001:db8::5%x\n10.0.0.1\n::/0", "fe80::1%eth0", "10.0.0.1 ",
    " 10.0.0.1", "10.0.0.1\n", "2001:db8::1/64\n", "10.0.0.1;flush ruleset", "1.2.3.4}",
    "１.２.３.４", "10.0.0.01", "",
])
def test_known_attacks_refused(text: str) -> None:
    with pytest.raises(netaddr.AddressError):
        netaddr.canonical(text, count=False)


@pytest.mark.parametrize(("text", "expected"), [
    ("::ffff:203.0.113.0/120", "203.0.113.0/24"),
    ("::ffff:203.0.113.9", "203.0.113.9"),
    ("::FFFF:CB00:7109", "203.0.113.9"),
    ("::ffff:203.0.113.9/128", "203.0.113.9"),
    ("2001:DB8::1", "2001:db8::1"),
    ("10.0.0.7/24", "10.0.0.0/24"),
])
def test_canonical_forms_accepted_by_nft(netns: str, text: str, expected: str) -> None:
    assert netaddr.canonical(text, count=False) == expected
    proc = _nft_accepts(netns, [expected])
    assert proc.returncode == 0, proc.stderr
