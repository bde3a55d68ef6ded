"""Caches keyed by event values never keep a huge value as a key.

Input decides these keys: 131,072 cached 1 MiB "addresses" would hold 128 GiB. A value
longer than any address (``netaddr.MAX_LENGTH``), severity label or timestamp is
answered without touching the cache, with the same answer as before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from socd import netaddr, severity
from socd.config import assets as enrich
from socd.engine import compiler, engine

HUGE = "1" * (1 << 20)
LONG_V6 = "2001:db8::" + "0:" * 40 + "1"  # long, but the parser decides (syntax)


def _size(cached: Any) -> int:
    return int(cached.cache_info().currsize)


@pytest.mark.parametrize(("call", "cached", "expected"), [
    (compiler.ip_int, compiler._ip_int, None),
    (netaddr.address_int, None, None),
    (netaddr.is_address, netaddr._address_verdict, False),
    (enrich._parse_ip, enrich._parse_ip_text, None),
])
def test_address_lookups_answer_huge_values_without_caching(
        call: Callable[[str], Any], cached: Any, expected: Any) -> None:
    before = _size(cached) if cached is not None else 0
    for text in (HUGE, "a" * (netaddr.MAX_LENGTH + 1), "1.2.3.4:" * 10):
        assert call(text) == expected
    if cached is not None:
        assert _size(cached) == before
    assert call(LONG_V6) == expected  # the length alone decides nothing below the limit


def test_address_answers_are_unchanged_at_the_limit() -> None:
    assert compiler.ip_int("::ffff:10.0.0.1") == (4, 0x0A000001)
    assert netaddr.canonical_address("::ffff:10.0.0.1") == "10.0.0.1"
    with pytest.raises(netaddr.AddressError) as refused:
        netaddr.canonical_address(HUGE, count=False)
    assert refused.value.reason == "too_long"
    assert enrich._parse_ip("  10.0.0.7  ") == (4, 0x0A000007, "10.0.0.7")
    assert enrich._parse_ip(" " * 5000 + "10.0.0.7") == (4, 0x0A000007, "10.0.0.7")


def test_severity_labels_fold_as_before_and_huge_ones_are_not_cached() -> None:
    assert severity.fold("Nghiêm Trọng") == "nghiem trong"
    before = _size(severity._fold_cached)
    assert severity.fold("X" * 10_000) == "x" * 10_000
    assert _size(severity._fold_cached) == before
    table = severity.BUILTIN_TABLES["vietnamese"]
    assert table.lookup("Cao") == severity.Severity("high")
    assert table.lookup("cao" * 100_000) == table.default


def test_event_times_of_huge_timestamps_are_not_cached() -> None:
    engine._TS_CACHE.clear()
    huge = "2026-01-01T00:00:00." + "1" * 100_000 + "+00:00"
    assert engine.event_time(huge) == engine.event_time("2026-01-01T00:00:00.111111+00:00")
    assert huge not in engine._TS_CACHE
    assert len(engine._TS_CACHE) == 1
