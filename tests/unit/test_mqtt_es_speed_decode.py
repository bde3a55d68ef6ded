"""Decoding shortcuts of issue 17 (MQTT -> Elasticsearch CPU) answer as the long way:
the NDJSON payload split without the failed whole-payload parse, the address texts
the gate found canonical, the fingerprint's index bytes."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from socd.decoders.base import DecodeFailure, _json_reason, split_json
from socd.errors import DecodeError
from socd.event import (
    _CANONICAL_IPS,
    FIELDS,
    _check_plan,
    fingerprint,
    normalize,
    plan_checker,
    put,
    typed_fields_at,
)
from socd.plugins import RawRecord


def _split_json_before(data: bytes) -> tuple[list[tuple[Any, bytes | None]],
                                              list[DecodeFailure]]:
    """split_json as it was: the whole payload parsed first."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        stripped = data.strip()
        if b"\n" in stripped:
            items: list[tuple[Any, bytes | None]] = []
            failures: list[DecodeFailure] = []
            for line in stripped.split(b"\n"):
                line = line.strip()
                if not line:
                    continue
                try:
                    items.append((orjson.loads(line), line))
                except orjson.JSONDecodeError as line_exc:
                    failures.append(DecodeFailure(_json_reason(line), line, str(line_exc)))
            return items, failures
        return [], [DecodeFailure(_json_reason(data), data, str(exc))]
    if isinstance(value, list):
        return [(item, None) for item in value], []
    return [(value, None)], []


_PIECES = [b'{"a": 1}', b'{"a":\n 1}', b"[1, 2]", b"[\n]", b"12", b"1", b"-", b'"x"', b"true",
           b"null", b"{", b"}", b"", b" ", b"\t", b"\r", b"\x0b", b"\x0c", b"\xff", b"\xc3\xa9",
           b'"\xff"', b'{"b": "c"}  ', b"1e5", b"[1,", b"2]", b"{}{}", b"nul"]


@given(st.lists(st.tuples(st.sampled_from(_PIECES), st.sampled_from([b"\n", b"\r\n", b" ",
                                                                      b"", b"\n\n"])),
                max_size=6))
def test_split_json_answers_as_before(parts: list[tuple[bytes, bytes]]) -> None:
    data = b"".join(piece + sep for piece, sep in parts)
    assert repr(split_json(data)) == repr(_split_json_before(data))


def test_split_json_on_payloads_of_the_bench() -> None:
    line = orjson.dumps({"alert_id": "a", "remote_port": 443, "x": [1, {"y": None}]})
    for data in (line, line + b"\n", b"\n".join([line] * 100) + b"\n", b" \n" + line,
                 line + b"\n \t\r\n", b"\n".join([line, b"{bad", line]), line + b"\n" + b"7"):
        assert repr(split_json(data)) == repr(_split_json_before(data))


def test_a_canonical_address_is_remembered_not_trusted_elsewhere() -> None:
    plan = typed_fields_at(["source.ip", "source.port", "host.ip"])
    stamp = "2026-11-16T00:11:43+07:00"
    event = normalize({"@timestamp": stamp, "source": {"ip": "10.9.8.7"}}, typed=plan)
    assert event["source"]["ip"] == "10.9.8.7"
    assert "10.9.8.7" in _CANONICAL_IPS
    # The remembered text passes as an address only: an integer field still refuses it.
    with pytest.raises(DecodeError, match="source.port must be an integer"):
        normalize({"@timestamp": stamp, "source": {"port": "10.9.8.7"}}, typed=plan)
    # Other spellings are still rewritten or refused; lists are checked item by item.
    mapped = normalize({"@timestamp": stamp, "source": {"ip": "::ffff:10.9.8.7"}}, typed=plan)
    assert mapped["source"]["ip"] == "10.9.8.7"
    listed = normalize({"@timestamp": stamp, "host": {"ip": ["10.9.8.7", "::ffff:1.2.3.4"]}},
                       typed=plan)
    assert listed["host"]["ip"] == ["10.9.8.7", "1.2.3.4"]
    for bad in ("fe80::1%eth0", " 10.9.8.7", "10.9.8.07"):
        with pytest.raises(DecodeError, match="source.ip is not an IP address"):
            normalize({"@timestamp": stamp, "source": {"ip": bad}}, typed=plan)


def test_the_set_of_canonical_addresses_is_bounded() -> None:
    plan = typed_fields_at(["source.ip"])
    for i in range(5000):
        normalize({"@timestamp": "2026-11-16T00:11:43+07:00",
                   "source": {"ip": f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"}}, typed=plan)
        assert len(_CANONICAL_IPS) <= 4096


def test_the_fingerprint_of_every_index_is_as_before() -> None:
    from socd.decoders.json import JsonDecoder
    from socd.plugins import PluginContext

    dec = JsonDecoder(JsonDecoder.Config(type="json"), PluginContext(name="ecs", dead_letter=None))
    data = b"\n".join([b'{"message": "m"}'] * 1100)
    result = dec.decode(RawRecord(data, "ecs", "coll", "src", 1794788564.0))
    import hashlib

    digest = hashlib.blake2b(data, digest_size=16).digest()
    for index in (0, 9, 10, 1023, 1024, 1099):
        assert result.events[index]["event"]["hash"] == fingerprint("ecs", digest, str(index))


_TYPED = sorted(f.name for f in FIELDS if f.type in {"long", "byte", "ip"})
_VALUES: list[Any] = ["10.0.0.1", "::ffff:10.0.0.1", "fe80::1%eth0", "10.0.0.01", 5, 2**63,
                      -(2**63), 2**63 - 1, "5", " 5", 5.0, 5.5, True, None, [], ["10.0.0.1"],
                      ["bad"], {}, {"ip": "1.2.3.4"}, "x", ""]


def _checked(check: Any, event: dict[str, Any]) -> object:
    try:
        check(event)
    except DecodeError as exc:
        return (exc.reason, exc.detail)
    return orjson.dumps(event)


@given(st.lists(st.sampled_from(_TYPED), min_size=1, max_size=6),
       st.lists(st.tuples(st.sampled_from([*_TYPED, "process", "source", "host.ip.x",
                                           "socd"]), st.sampled_from(_VALUES)), max_size=8))
def test_the_generated_plan_check_answers_as_the_loop(paths: list[str],
                                                      writes: list[tuple[str, Any]]) -> None:
    plan = typed_fields_at(paths)
    event: dict[str, Any] = {}
    for path, value in writes:
        put(event, path, copy.deepcopy(value))
    loop = _checked(lambda e: _check_plan(e, plan), copy.deepcopy(event))
    assert _checked(plan_checker(plan), copy.deepcopy(event)) == loop
    stamp = {"@timestamp": "2026-11-16T00:11:43+07:00"}
    assert _checked(lambda e: normalize(e, typed=plan), {**copy.deepcopy(event), **stamp}) == \
        _checked(lambda e: (_check_plan(e, plan), normalize(e, typed=())),
                 {**copy.deepcopy(event), **stamp})
