"""socd.netaddr: the one gate every IP address and network passes."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from socd import netaddr
from socd.netaddr import AddressError
from tests.unit.conftest import sample_value

REFUSED = "socd_addresses_refused_total"


def _refused(reason: str) -> float:
    return sample_value(REFUSED, reason=reason)


@pytest.mark.parametrize(("text", "expected"), [
    ("10.0.0.7", "10.0.0.7"),
    ("2001:DB8::1", "2001:db8::1"),
    ("2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
    ("::ffff:203.0.113.9", "203.0.113.9"),
    ("::FFFF:cb00:7109", "203.0.113.9"),
    ("::1", "::1"),
])
def test_parse_address_canonical(text: str, expected: str) -> None:
    assert str(netaddr.parse_address(text)) == expected
    assert netaddr.canonical_address(text) == expected


@pytest.mark.parametrize(("text", "reason"), [
    ("", "empty"),
    ("2001:db8::5%x", "scope_id"),
    ("fe80::1%eth0", "scope_id"),
    ("2001:db8::5%x\n10.0.0.1", "scope_id"),
    (" 10.0.0.1", "bad_character"),
    ("10.0.0.1\n", "bad_character"),
    ("10.0.0.1;", "bad_character"),
    ("１０.0.0.1", "bad_character"),
    ("1" * 65, "too_long"),
    ("10.0.0.0/24", "syntax"),
    ("10.0.0", "syntax"),
    ("10.0.0.01", "syntax"),
    (":::", "syntax"),
])
def test_parse_address_refusals_are_counted(text: str, reason: str) -> None:
    before = _refused(reason)
    with pytest.raises(AddressError) as info:
        netaddr.parse_address(text)
    assert info.value.reason == reason
    assert isinstance(info.value, ValueError)
    assert _refused(reason) == before + 1


def test_non_strings_are_refused() -> None:
    for value in (None, 167772167, b"10.0.0.7", ipaddress.ip_address("10.0.0.7")):
        with pytest.raises(AddressError) as info:
            netaddr.parse_address(value)
        assert info.value.reason == "syntax"


def test_count_false_does_not_count() -> None:
    before = _refused("scope_id")
    with pytest.raises(AddressError):
        netaddr.parse_address("fe80::1%lo", count=False)
    with pytest.raises(AddressError):
        netaddr.canonical_address("fe80::1%lo", count=False)
    assert _refused("scope_id") == before


def test_cached_canonical_address_counts_every_refusal() -> None:
    before = _refused("scope_id")
    for _ in range(3):
        with pytest.raises(AddressError):
            netaddr.canonical_address("2001:db8::77%cached")
    assert _refused("scope_id") == before + 3


def test_error_message_is_bounded() -> None:
    with pytest.raises(AddressError) as info:
        netaddr.parse_address("x" * 10_000, count=False)
    assert len(str(info.value)) < 200


@pytest.mark.parametrize(("text", "expected"), [
    ("10.0.0.7/24", "10.0.0.0/24"),
    ("10.0.0.7/32", "10.0.0.7"),
    ("10.0.0.7", "10.0.0.7"),
    ("2001:db8::1/32", "2001:db8::/32"),
    ("2001:db8::1/128", "2001:db8::1"),
    ("::ffff:203.0.113.0/120", "203.0.113.0/24"),
    ("::ffff:203.0.113.128/121", "203.0.113.128/25"),
    ("::ffff:0:0/96", "0.0.0.0/0"),
    ("::ffff:0:0/95", "::fffe:0:0/95"),
    ("::ffff:203.0.113.9/128", "203.0.113.9"),
])
def test_canonical_networks(text: str, expected: str) -> None:
    assert netaddr.canonical(text) == expected


def test_strict_network_refuses_host_bits() -> None:
    with pytest.raises(AddressError) as info:
        netaddr.parse_network("10.0.0.7/24", strict=True)
    assert info.value.reason == "host_bits"
    assert str(netaddr.parse_network("10.0.0.0/24", strict=True)) == "10.0.0.0/24"


@pytest.mark.parametrize("text", ["2001:db8::/32%x", "2001:db8::5%x/64", "10.0.0.0/8 ",
                                  "10.0.0.0/33", "10.0.0.0/-1", "10.0.0.0//8", "/8"])
def test_parse_network_refusals(text: str) -> None:
    with pytest.raises(AddressError):
        netaddr.parse_network(text, count=False)


def test_is_address_and_is_network_never_count() -> None:
    before = sum(_refused(r) for r in netaddr.REASONS)
    assert netaddr.is_address("10.0.0.7")
    assert netaddr.is_address("::ffff:10.0.0.7")
    assert not netaddr.is_address("10.0.0.0/8")
    assert not netaddr.is_address("fe80::1%eth0")
    assert not netaddr.is_address(None)
    assert not netaddr.is_address(42)
    assert netaddr.is_network("10.0.0.0/8")
    assert netaddr.is_network("10.0.0.7")
    assert not netaddr.is_network("10.0.0.0/8\n")
    assert sum(_refused(r) for r in netaddr.REASONS) == before


@pytest.mark.parametrize("text", ["10.0.0.0/24", "2001:db8::1", "::", "203.0.113.9"])
def test_safe_element_accepts(text: str) -> None:
    assert netaddr.safe_element(text) == text


@pytest.mark.parametrize("text", ["", "10.0.0.1\n", "10.0.0.1 ", "a;b", "{10.0.0.1}",
                                  "fe80::1%x", "ab" * 40, "example.org"])
def test_safe_element_refuses(text: str) -> None:
    with pytest.raises(AddressError):
        netaddr.safe_element(text)


def test_count_refusal_helper() -> None:
    before = _refused("bad_character")
    netaddr.count_refusal("bad_character")
    assert _refused("bad_character") == before + 1
    with pytest.raises(ValueError, match="unknown reason"):
        netaddr.count_refusal("not-a-reason")


_TEXTS = st.one_of(
    st.ip_addresses().map(str),
    st.ip_addresses(v=4).map(lambda a: f"::ffff:{a}"),
    st.ip_addresses(v=6).map(lambda a: a.exploded.upper()),
    st.builds(lambda a, tail: f"{a}{tail}", st.ip_addresses(),
              st.sampled_from(["%x", "%eth0", " ", "\n", "/24", "\x00", ".1", ":1"])),
    st.text(alphabet="0123456789abcdefABCDEF.:%/ \n", max_size=45),
    st.text(max_size=20),
)


@settings(max_examples=2000, derandomize=True, database=None, deadline=None)
@given(_TEXTS)
def test_address_int_agrees_with_parse_address(text: str) -> None:
    try:
        addr = netaddr.parse_address(text, count=False)
    except AddressError:
        assert netaddr.address_int(text) is None
    else:
        assert netaddr.address_int(text) == (addr.version, int(addr))


_NETWORK_TEXTS = st.one_of(
    _TEXTS,
    st.builds(lambda a, n: f"{a}/{n}", st.ip_addresses(v=4), st.integers(0, 33)),
    st.builds(lambda a, n: f"{a}/{n}", st.ip_addresses(v=6), st.integers(0, 129)),
    st.builds(lambda a, b, c, d: f"{a}.{b}.{c}.{d}", *(
        [st.sampled_from(["0", "00", "01", "1", "9", "10", "099", "255", "256", "+1", " 1",
                          "1 ", "١", "0x1", ""])] * 4)),
)


def _slow_canonical(text: str) -> str:
    net = netaddr.parse_network(text, count=False)
    return str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)


@settings(max_examples=3000, derandomize=True, database=None, deadline=None)
@given(_NETWORK_TEXTS)
def test_fast_paths_agree_with_ipaddress(text: str) -> None:
    """canonical's dotted-quad path and network_range's address path (the IoC lists'
    fast paths) answer what the ipaddress path answers, and refuse what it refuses."""
    try:
        expected = _slow_canonical(text)
    except AddressError:
        assert not netaddr.is_dotted_quad(text)
        with pytest.raises(AddressError):
            netaddr.canonical(text, count=False)
        with pytest.raises(AddressError):
            netaddr.network_range(text, count=False)
        return
    assert netaddr.canonical(text, count=False) == expected
    if netaddr.is_dotted_quad(text):
        assert text == expected
    net = netaddr.parse_network(text, count=False)
    assert netaddr.network_range(text, count=False) == (
        net.version, int(net.network_address), int(net.broadcast_address))


def test_fast_paths_count_refusals_as_before() -> None:
    before = _refused("bad_character")
    with pytest.raises(AddressError):
        netaddr.canonical("1.2.3.4 ")
    with pytest.raises(AddressError):
        netaddr.network_range("1.2.3.4\n")
    assert _refused("bad_character") == before + 2
    assert not netaddr.is_dotted_quad(None)
    assert not netaddr.is_dotted_quad("001.2.3.4")
    assert netaddr.is_dotted_quad("0.0.0.0")
