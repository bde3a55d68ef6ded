#!/usr/bin/env python3
"""IoC store benchmarks; prints one JSON object per result.

* ``ioc_load``: 1,000,000 entries (950,000 IPv4 addresses, 40,000 IPv4 CIDRs,
  5,000 IPv6 addresses/CIDRs, 5,000 domains) are written to a fresh
  ``ioc.db``; then a *fresh* Python process builds the in-memory index from it.
  Measured: the build time, and VmRSS (current and peak) of that process before
  and after. Targets: <= 2 s, <= 60 MB extra RSS.
* ``ioc_lookup``: membership of 1,000,000 IPv4 addresses (half listed, given as
  ints) with ``IocStore.lookup_many_ipv4``; also per-call ``match_ip`` on strings
  for reference. Target: >= 1,000,000 addresses/s.

Options: ``--entries N`` (default 1,000,000), ``--only NAME``.
"""

from __future__ import annotations

import atexit
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from scripts.benchlib import standalone  # noqa: E402
from socd.ioc.store import Entry, IocDatabase  # noqa: E402

LOAD_TARGET_SECS = 2.0
LOAD_TARGET_MB = 60.0
LOOKUP_TARGET = 1_000_000


def _entries(n: int, seed: int = 7) -> Iterator[Entry]:
    rnd = random.Random(seed)
    n_cidr = n * 4 // 100
    n_v6 = n // 200
    n_dom = n // 200
    n_exact = n - n_cidr - n_v6 - n_dom
    refs = ["1298/CATTT-NCSC", "941/CATTT-NCSC", "ipsum"]
    for _ in range(n_exact):
        x = rnd.getrandbits(32)
        yield Entry("ip", f"{x >> 24}.{x >> 16 & 255}.{x >> 8 & 255}.{x & 255}", "bench",
                    rnd.choice(refs), rnd.randrange(10, 101, 10))
    for _ in range(n_cidr):
        plen = rnd.choice((16, 20, 24, 24, 24, 28))
        x = rnd.getrandbits(32) >> (32 - plen) << (32 - plen)
        yield Entry("ip", f"{x >> 24}.{x >> 16 & 255}.{x >> 8 & 255}.{x & 255}/{plen}", "bench",
                    rnd.choice(refs), 60)
    for i in range(n_v6):
        yield Entry("ip", f"2001:db8:{i >> 16:x}:{i & 0xffff:x}::{'/64' if i % 2 else '1'}",
                    "bench", "v6", 50)
    for i in range(n_dom):
        yield Entry("domain", f"c2-{i}.bad.example", "bench", "dom", 50)


_LOAD_CHILD = r"""
import json, sys, time
def rss():
    out = {}
    for line in open('/proc/self/status'):
        k, _, v = line.partition(':')
        if k in ('VmRSS', 'VmHWM'):
            out[k] = int(v.split()[0]) / 1024
    return out
from socd.ioc.store import IocStore
before = rss()
t0 = time.perf_counter()
store = IocStore(sys.argv[1], create=False)
secs = time.perf_counter() - t0
after = rss()
print(json.dumps({"secs": secs, "before": before, "after": after, "len": len(store),
                  "counts": store.index.counts()}))
"""

_LOOKUP_CHILD = r"""
import json, random, socket, sys, time
from socd.ioc.store import IocStore
store = IocStore(sys.argv[1], create=False)
idx = store.index
rnd = random.Random(3)
listed = list(idx.v4_exact)
n = 1_000_000
q = [rnd.getrandbits(32) if i % 2 else listed[rnd.randrange(len(listed))] for i in range(n)]
t0 = time.perf_counter()
hits = store.lookup_many_ipv4(q)
batch = time.perf_counter() - t0
strs = [socket.inet_ntoa(x.to_bytes(4, 'big')) for x in q[:200_000]]
t0 = time.perf_counter()
ints = [int.from_bytes(socket.inet_aton(s), 'big') for s in strs]
conv = time.perf_counter() - t0
t0 = time.perf_counter()
refs = [store.match_ip(s) for s in strs]
single = time.perf_counter() - t0
print(json.dumps({"batch_per_sec": n / batch, "hits": sum(hits),
                  "convert_per_sec": len(strs) / conv,
                  "match_ip_per_sec": len(strs) / single,
                  "match_ip_hits": sum(r is not None for r in refs)}))
"""


def _child(code: str, db: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code, db], capture_output=True, text=True,
                         check=True, env=env, timeout=600)
    result: dict[str, Any] = json.loads(out.stdout)
    return result


_DB_CACHE: dict[int, str] = {}


def _database(n: int) -> tuple[str, float]:
    if n in _DB_CACHE:
        return _DB_CACHE[n], 0.0
    folder = tempfile.mkdtemp(prefix="socd-bench-ioc-")
    atexit.register(shutil.rmtree, folder, True)
    path = os.path.join(folder, "ioc.db")
    db = IocDatabase(path)
    t0 = time.perf_counter()
    db.upsert(_entries(n))
    secs = time.perf_counter() - t0
    db.close()
    _DB_CACHE[n] = path
    return path, secs


def bench_load(entries: int = 1_000_000) -> dict[str, Any]:
    path, write_secs = _database(entries)
    child = _child(_LOAD_CHILD, path)
    extra = child["after"]["VmRSS"] - child["before"]["VmRSS"]
    peak = child["after"]["VmHWM"] - child["before"]["VmRSS"]
    return {
        "name": "ioc_load", "entries": entries, "loaded": child["len"],
        "counts": child["counts"], "seconds": round(child["secs"], 3),
        "extra_rss_mb": round(extra, 1), "peak_extra_rss_mb": round(peak, 1),
        "db_write_seconds": round(write_secs, 1),
        "db_size_mb": round(os.path.getsize(path) / 2**20, 1),
        "targets": {"seconds": LOAD_TARGET_SECS, "extra_rss_mb": LOAD_TARGET_MB},
        "meets_target": child["secs"] <= LOAD_TARGET_SECS and extra <= LOAD_TARGET_MB,
    }


def bench_lookup(entries: int = 1_000_000) -> dict[str, Any]:
    path, _ = _database(entries)
    child = _child(_LOOKUP_CHILD, path)
    rate = child["batch_per_sec"]
    return {
        "name": "ioc_lookup", "entries": entries,
        "lookups_per_sec": round(rate), "hits_of_1m": child["hits"],
        "inet_aton_conversions_per_sec": round(child["convert_per_sec"]),
        "match_ip_strings_per_sec": round(child["match_ip_per_sec"]),
        "targets": {"lookups_per_sec": LOOKUP_TARGET},
        "meets_target": rate >= LOOKUP_TARGET,
    }


BENCHMARKS: dict[str, Callable[..., dict[str, Any]]] = {
    "ioc_load": bench_load,
    "ioc_lookup": bench_lookup,
}


def main() -> int:
    return standalone(__doc__ or "", BENCHMARKS, "entries", 1_000_000)


if __name__ == "__main__":
    sys.exit(main())
