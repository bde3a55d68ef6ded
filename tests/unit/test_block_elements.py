"""Set elements as parsed objects, the helper's wire format, and batches with bad values.

Pure tests (no nft): what the backends render comes only from parsed networks, a bad
stored value is refused alone, and the helper's decoder refuses every malformed
envelope as a protocol error while screening elements one by one. The real helper
and nft are exercised in tests/adversarial/test_privileged_helper.py.
"""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from socd.block.decisions import Change, Decision
from socd.block.elements import (
    MAX_TIMEOUT_SECS,
    Batch,
    Element,
    Outcome,
    Refusal,
    parse_add,
    parse_remove,
    without_overlaps,
)
from socd.block.ipset import IpsetBackend
from socd.block.nft import NftBackend
from socd.block.protocol import (
    HelperError,
    ProtocolError,
    decode_request,
    decode_response,
    encode_request,
    ok_response,
)
from socd.netaddr import parse_network, safe_element

NOW = 1_800_000_000.0


def decision(value: str, kind: str = "ipv4", ttl: float = 3600) -> Decision:
    return Decision(value, kind, "r", "o", "", NOW, NOW, NOW + ttl, 1)  # type: ignore[arg-type]


BAD_STORED = ["2001:db8:bad::99%x", "198.51.100.9\n; flush ruleset", "198.51.100.10 }"]


@pytest.mark.parametrize("backend", [NftBackend(), IpsetBackend()], ids=["nft", "ipset"])
def test_a_bad_stored_value_is_refused_alone(backend: NftBackend | IpsetBackend) -> None:
    kinds = {"2001:db8:bad::99%x": "ipv6"}
    ds = [decision("198.51.100.7"), *(decision(v, kinds.get(v, "ipv4")) for v in BAD_STORED),
          decision("2001:db8::/32", "ipv6")]
    batch = backend.full_batch(ds, NOW)
    assert [e.text for e in batch.add] == ["198.51.100.7", "2001:db8::/32"]
    assert [(r.value, r.reason) for r in batch.refused] == [
        ("2001:db8:bad::99%x", "scope_id"), ("198.51.100.9\n; flush ruleset", "bad_character"),
        ("198.51.100.10 }", "bad_character")]
    script = backend.render(batch)
    assert "flush ruleset" not in script
    assert "%" not in script
    assert "198.51.100.10" not in script
    inc = backend.incremental_batch([Change("add", d) for d in ds], NOW)
    assert len(inc.add) == 2
    assert len(inc.refused) == 3


def test_timeouts_are_clamped_to_what_nft_accepts() -> None:
    batch = NftBackend().full_batch([decision("198.51.100.7", ttl=10 * 365 * 86400)], NOW)
    assert batch.add[0].timeout_secs == MAX_TIMEOUT_SECS
    assert f"timeout {MAX_TIMEOUT_SECS}s" in NftBackend().render(batch)
    ipset = IpsetBackend().render(IpsetBackend().full_batch(
        [decision("198.51.100.7", ttl=10 * 365 * 86400)], NOW))
    assert "timeout 2147483 -exist" in ipset


def test_parse_add_and_remove() -> None:
    assert parse_add({"value": "198.51.100.7", "timeout_secs": 60}) == Element(
        parse_network("198.51.100.7"), 60)
    assert parse_remove("2001:db8::/32") == Element(parse_network("2001:db8::/32"))
    cases = {
        "::ffff:198.51.100.7": "not_canonical", "198.51.100.7/32": "not_canonical",
        "2001:DB8::1": "not_canonical", "10.0.0.7/24": "host_bits", "fe80::1%eth0": "scope_id",
        "1.2.3.4 ": "bad_character", "": "empty",
    }
    for value, reason in cases.items():
        found = parse_add({"value": value, "timeout_secs": 60})
        assert isinstance(found, Refusal)
        assert found.reason == reason, value
    for timeout in (0, -1, True, 1.5, "60", MAX_TIMEOUT_SECS + 1, None):
        found = parse_add({"value": "198.51.100.7", "timeout_secs": timeout})
        assert isinstance(found, Refusal)
        assert found.reason == "bad_timeout", timeout
    for item in ("198.51.100.7", {"value": "198.51.100.7"}, [1], None, 7):
        found = parse_add(item)
        assert isinstance(found, Refusal)
        assert found.reason == "malformed"
    long = parse_add({"value": "x" * 500, "timeout_secs": 60})
    assert isinstance(long, Refusal)
    assert len(long.value) == 80


def test_without_overlaps_keeps_the_first_and_the_order() -> None:
    elems = [Element(parse_network(v)) for v in
             ("198.51.100.7", "198.51.100.0/24", "2001:db8::1", "198.51.101.1", "198.51.100.7",
              "2001:db8::/64")]
    kept, refused = without_overlaps(elems)
    assert [e.text for e in kept] == ["198.51.100.0/24", "198.51.101.1", "2001:db8::/64"]
    assert [r.value for r in refused] == ["198.51.100.7", "2001:db8::1", "198.51.100.7"]
    assert {r.reason for r in refused} == {"overlap"}


def test_without_overlaps_is_fast() -> None:
    elems = [Element(parse_network(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"))
             for i in range(100_000)]
    started = time.perf_counter()
    kept, refused = without_overlaps(elems)
    assert time.perf_counter() - started < 5
    assert (len(kept), len(refused)) == (100_000, 0)


def _nft_sync(**extra: object) -> bytes:
    return json.dumps({"v": 1, "op": "sync", "backend": "nftables", "table": "socd",
                       "add": [], **extra}).encode()


@pytest.mark.parametrize("line", [
    b"not json", b"[]", b'"sync"', b"\xff", b"[" * 50_000 + b"]" * 50_000,
    _nft_sync(op="flush"), _nft_sync(backend="iptables"), _nft_sync(v=2), _nft_sync(v=True),
    _nft_sync(table="socd; flush ruleset"), _nft_sync(table=""), _nft_sync(extra=1),
    _nft_sync(priority="-10"), _nft_sync(priority=1.5), _nft_sync(priority=5000),
    _nft_sync(direction="out"), _nft_sync(remove=["198.51.100.7"]), _nft_sync(add={}),
    _nft_sync(op="check", add=[{"value": "198.51.100.7", "timeout_secs": 60}]),
    json.dumps({"v": 1, "op": "sync", "backend": "ipset", "set_name": "x" * 30}).encode(),
    json.dumps({"v": 1, "op": "sync", "backend": "ipset", "set_name": "socd",
                "table": "socd"}).encode(),
])
def test_malformed_envelopes_are_protocol_errors(line: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_request(line)


def test_a_request_round_trips() -> None:
    backend = NftBackend(priority=-20, direction="inbound")
    batch = backend.incremental_batch(
        [Change("extend", decision("198.51.100.7")), Change("remove", decision("198.51.100.8")),
         Change("add", decision("2001:db8::/48", "ipv6"))], NOW)
    request, decoded = decode_request(encode_request("apply", backend.target, batch))
    assert request.op == "apply"
    assert (request.priority, request.direction) == (-20, "inbound")  # type: ignore[union-attr]
    assert decoded.add == batch.add
    assert decoded.remove == batch.remove
    assert not decoded.full


def test_responses() -> None:
    outcome = decode_response(json.dumps(ok_response(
        Outcome(2, [Refusal("x", "scope_id")]))).encode())
    assert outcome.applied == 2
    assert outcome.refused == [Refusal("x", "scope_id")]
    with pytest.raises(HelperError) as info:
        decode_response(b'{"v": 1, "ok": false, "kind": "conflict", "error": "x"}')
    assert info.value.kind == "conflict"
    with pytest.raises(HelperError):
        decode_response(b"garbage")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_any_text_is_refused_or_a_safe_canonical_element(text: str) -> None:
    found = parse_add({"value": text, "timeout_secs": 60})
    if isinstance(found, Refusal):
        return
    assert found.text == text
    assert safe_element(found.text) == text
    rendered = NftBackend().render(Batch(False, (found,)))
    assert rendered.count("\n") == 1
    assert rendered.endswith(f"{{ {text} timeout 60s }}\n")
