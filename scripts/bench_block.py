#!/usr/bin/env python3
"""Benchmark: push 100k blocked addresses to nftables in a fresh network namespace.

The decisions are 100,000 values: IPv4 hosts, some IPv4 networks (a few of them
overlapping hosts, so the interval flattening does real work) and IPv6 hosts.
Timed: building the one-transaction script (flatten + render) and running it with
``nft -f -`` inside a namespace created for the run (deleted afterwards). Target:
<= 5 s. Needs root (or CAP_NET_ADMIN + CAP_SYS_ADMIN for the namespace) and nft.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from socd.block.decisions import Decision  # noqa: E402
from socd.block.nft import NftBackend  # noqa: E402

TARGET = 5.0


def _decisions(n: int, now: float) -> list[Decision]:
    out = []
    for i in range(n):
        if i % 50 == 0:  # 2% IPv4 /24 networks
            value, kind = f"{100 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}.0/24", "ipv4"
        elif i % 50 == 1:  # 2% IPv6 hosts
            value, kind = f"2001:db8:{i >> 16:x}:{i & 0xffff:x}::1", "ipv6"
        elif i % 1000 == 2:  # a host inside an earlier /24, living longer: flattened
            j = i - 2
            value, kind = f"{100 + (j >> 16)}.{(j >> 8) & 255}.{j & 255}.7", "ipv4"
        else:
            value, kind = f"{11 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}.9", "ipv4"
        expires = now + (86400 if i % 1000 == 2 else 3600 + i % 7200)
        out.append(Decision(value, kind, "bench", "bench", "", now, now, expires, 1))
    return out


def nft_push_100k(addresses: int = 100_000) -> dict[str, Any]:
    ns = f"socdbench{secrets.token_hex(2)}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        now = time.time()
        decisions = _decisions(addresses, now)
        backend = NftBackend(table="socdbench")
        started = time.perf_counter()
        script = backend.full_script(decisions, time.time())
        built = time.perf_counter()
        proc = subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=script,
                              text=True, capture_output=True, check=False)
        elapsed = time.perf_counter() - started
        if proc.returncode != 0:
            raise RuntimeError(f"nft failed: {proc.stderr[:2000]}")
        listing = subprocess.run(["ip", "netns", "exec", ns, "nft", "-j", "list", "set", "inet",
                                  "socdbench", "blocked4"], capture_output=True, text=True,
                                 check=True).stdout
    finally:
        subprocess.run(["ip", "netns", "delete", ns], check=False)
    return {"benchmark": "nft_push_100k", "addresses": addresses,
            "seconds": round(elapsed, 3), "script_seconds": round(built - started, 3),
            "nft_seconds": round(elapsed - (built - started), 3),
            "elements_in_kernel4": listing.count('"elem"') or listing.count("timeout"),
            "target_seconds": TARGET, "meets_target": elapsed <= TARGET}


BENCHMARKS = {"nft_push_100k": nft_push_100k}

if __name__ == "__main__":
    print(nft_push_100k())
