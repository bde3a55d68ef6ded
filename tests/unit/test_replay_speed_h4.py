"""Issue 17, the replay's own work: the cached IoC matcher gives the uncached answers
(expiry included) and stays bounded, the classifier marks every IoC path in order, the
block-wise line reader splits as iterating the file did, the index offsets are those of
the step-by-step fill."""

from __future__ import annotations

import gzip
import io
import random
import sys
from array import array
from collections.abc import Iterator
from pathlib import Path

import pytest

from socd.app import replay as replay_mod
from socd.config import ClassificationConfig
from socd.engine import classify
from socd.engine.classify import Classifier
from socd.event import Event
from socd.ioc import store as store_mod
from socd.ioc.store import Entry, IocStore


def _store(entries: list[Entry], clock: list[float] | None = None) -> IocStore:
    if clock is None:
        return IocStore(None, static=entries, gauges=False)
    return IocStore(None, static=entries, gauges=False, clock=lambda: clock[0])


def test_cached_matcher_answers_as_the_index() -> None:
    store = _store([Entry("ip", "192.0.2.0/24", "s", "net", 40),
                    Entry("ip", "192.0.2.7", "s", "host", 60),
                    Entry("domain", "*.evil.example", "s", "wild"),
                    Entry("hash", "a" * 64, "s", "")])
    values = [("ip", "192.0.2.7"), ("ip", "192.0.2.8"), ("ip", "198.51.100.1"),
              ("ip", "::ffff:192.0.2.7"), ("ip", "192.0.2.7%eth0"), ("ip", "x" * 500),
              ("domain", "A.Evil.Example."), ("domain", "evil.example"),
              ("hash", "A" * 64), ("hash", " " + "a" * 64)]
    for _ in range(3):  # the first pass fills the cache, the next ones read it
        for kind, value in values:
            found = store.match(kind, value)
            expected = None if found is None else (found.ref or found.source)
            assert store.match_ref(kind, value) == expected, (kind, value)
            assert store.lookup(kind, value) is (expected is not None)
    with pytest.raises(ValueError, match="unknown indicator kind"):
        store.match_ref("url", "x")


def test_cached_verdicts_follow_expiry() -> None:
    now = [1_000_000.0]
    store = _store([Entry("ip", "192.0.2.0/24", "s", "soon", 50, expires=1_000_100),
                    Entry("ip", "192.0.2.7", "s", "later", 10, expires=1_000_500)], now)
    match = store.ref_matcher()
    assert match("ip", "192.0.2.7") == "soon"
    assert match("ip", "192.0.2.8") == "soon"
    now[0] = 1_000_200.0  # the cached verdicts no longer hold
    assert match("ip", "192.0.2.7") == "later"
    assert match("ip", "192.0.2.8") is None
    now[0] = 1_000_600.0
    assert match("ip", "192.0.2.7") is None


def test_matcher_follows_reloads() -> None:
    store = _store([Entry("ip", "192.0.2.1", "s", "one")])
    assert store.match_ref("ip", "192.0.2.1") == "one"
    store.static = (Entry("ip", "192.0.2.1", "s", "two"),)
    store.reload()
    assert store.match_ref("ip", "192.0.2.1") == "two"


def test_matcher_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_mod, "_REF_CACHE_ENTRIES", 8)
    store = _store([Entry("ip", "192.0.2.1", "s", "r")])
    match = store.ref_matcher()
    for i in range(100):
        assert match("ip", f"198.51.100.{i}") is None
    assert match("domain", "d" * 10_000 + ".example") is None  # too long to be kept
    caches = {id(c): c for c in _closure_dicts(match)}
    assert caches, "the matcher keeps its caches in its closure"
    for cache in caches.values():
        assert len(cache) <= 8
        assert all(len(key) <= store_mod._REF_CACHE_CHARS for key in cache)
    assert match("ip", "192.0.2.1") == "r"


def _closure_dicts(fn: object) -> Iterator[dict[str, object]]:
    for cell in getattr(fn, "__closure__", None) or ():
        value = cell.cell_contents
        if isinstance(value, dict):
            yield from (v for v in value.values() if isinstance(v, dict))


def test_ioc_sections_are_those_spelt_out() -> None:
    # Classifier.process names the sections of _IOC_GETS in its test; keep them in step.
    assert {"source", "destination", "file", "dns", "url"} == classify._IOC_SECTIONS


def test_every_ioc_path_is_marked_in_order() -> None:
    store = _store([Entry("ip", "192.0.2.1", "s", "r-ip"),
                    Entry("ip", "192.0.2.2", "s", "r-ip2"),
                    Entry("domain", "evil.example", "s", "r-dom"),
                    Entry("hash", "b" * 64, "s", "r-hash")])
    event: Event = {
        "event": {"kind": "event"}, "socd": {},
        "destination": {"domain": "evil.example", "ip": "192.0.2.2"},
        "source": {"ip": "192.0.2.1"}, "file": {"hash": {"sha256": "b" * 64}},
        "dns": {"question": {"name": "evil.example"}}, "url": {"domain": "evil.example"},
    }
    only_source: Event = {"event": {"kind": "event"}, "socd": {},
                          "source": {"ip": "192.0.2.1"}}
    not_a_dict: Event = {"event": {"kind": "event"}, "socd": {}, "source": "192.0.2.1"}
    out = Classifier(ClassificationConfig(), store).process([event, only_source, not_a_dict])
    assert out[0]["socd"]["ioc"] == {
        "matched": True,
        "values": ["192.0.2.1", "192.0.2.2", "b" * 64, "evil.example", "evil.example",
                   "evil.example"],
        "refs": ["r-dom", "r-hash", "r-ip", "r-ip2"]}
    assert out[1]["socd"]["ioc"] == {"matched": True, "values": ["192.0.2.1"],
                                     "refs": ["r-ip"]}
    assert out[1]["event"]["kind"] == "alert"
    assert "ioc" not in out[2]["socd"]


def _iterated(path: Path) -> list[bytes]:
    """What replay read before: iterating the file, line ends stripped, blanks left out."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        return [line.rstrip(b"\r\n") for line in fh if line.rstrip(b"\r\n").strip()]


@pytest.mark.parametrize("block", [1, 2, 5, 64, 1 << 16])
def test_block_reader_splits_as_file_iteration(tmp_path: Path, block: int,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replay_mod, "BLOCK", block)
    rng = random.Random(block)
    alphabet = [b"a", b"xyz", b" ", b"\t", b"\r", b"\n", b"\n", b"\x0b", b"\x0c", b"\xc3\xa9"]
    for i in range(200):
        data = b"".join(rng.choice(alphabet) for _ in range(rng.randrange(80)))
        path = tmp_path / (f"{i}.log.gz" if i % 3 == 0 else f"{i}.log")
        if path.suffix == ".gz":
            with gzip.open(path, "wb") as fh:
                fh.write(data)
        else:
            path.write_bytes(data)
        got = [line for lines in replay_mod._line_blocks(str(path)) for line in lines]
        assert got == _iterated(path), data


def test_a_long_line_is_read_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replay_mod, "BLOCK", 1000)
    path = tmp_path / "long.log"
    path.write_bytes(b"x" * 1_000_000 + b"\r\nshort\n" + b"y" * 5000)
    got = [line for lines in replay_mod._line_blocks(str(path)) for line in lines]
    assert got == [b"x" * 1_000_000, b"short", b"y" * 5000]


def test_stdin_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    class Stdin:
        buffer = io.BufferedReader(io.BytesIO(b"one\r\n\n  \ntwo"))

    monkeypatch.setattr(sys, "stdin", Stdin)
    assert [line for lines in replay_mod._line_blocks("-") for line in lines] == \
        [b"one", b"two"]


def _fill_step_by_step(off: array[int], starts: array[int]) -> None:
    n = len(starts)
    j = 0
    for b in range(65537):
        bound = b << 16
        while j < n and starts[j] < bound:
            j += 1
        off[b] = j


def test_index_offsets() -> None:
    rng = random.Random(17)
    u32 = store_mod._U32
    edges = [0, 1, 65535, 65536, 65537, 2**32 - 65536, 2**32 - 1]
    for n in (0, 1, 2, 7, 300, 5000):
        for pool in (edges + [rng.randrange(2**32) for _ in range(50)], None):
            if pool is None:
                starts = sorted(rng.sample(range(2**32), n))
            else:
                starts = sorted({rng.choice(pool) for _ in range(n)})
            expected = array(u32, bytes(4 * 65537))
            got = array(u32, bytes(4 * 65537))
            _fill_step_by_step(expected, array(u32, starts))
            store_mod._fill_offsets(got, array(u32, starts))
            assert got == expected


def test_static_rows_share_attributions_by_value() -> None:
    ref_a, ref_b = "".join(["1298/", "CATTT"]), "".join(["1298/", "CATTT"])  # equal, two objects
    assert ref_a == ref_b
    assert ref_a is not ref_b
    entries = [Entry("ip", "192.0.2.1", "list", ref_a), Entry("ip", "192.0.2.2", "list", ref_b),
               Entry("ip", "2001:db8::1", "list", ref_a, 70),
               Entry("ip", "198.51.100.0/24", "list", ref_a, 50, expires=2_000_000_000),
               Entry("domain", "evil.example", "list", ref_b),
               Entry("hash", "c" * 64, "other", "x", tags=("t",))]
    attrs: dict[int, store_mod.Attribution] = {}
    rows = store_mod._static_rows(entries, attrs, 1_000_000.0)
    assert len(attrs) == 4
    (a1, a2) = (rows[4][0][2], rows[4][1][2])
    assert rows[4][:2] == [(0xC0000201, 0xC0000201, a1), (0xC0000202, 0xC0000202, a1)]
    assert a1 == a2
    assert rows[4][2] == (0xC6336400, 0xC63364FF, rows[4][2][2])
    assert rows[4][2][2] != a1
    assert rows[6] == [(0x20010DB8 << 96 | 1, 0x20010DB8 << 96 | 1, rows[6][0][2])]
    assert attrs[rows[6][0][2]].confidence == 70
    assert rows["domain"] == [("evil.example", a1)]
    assert attrs[rows["hash"][0][1]].tags == ("t",)
