"""What the benchmark modules share when run on their own (`python scripts/bench_x.py`)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping
from typing import Any


def standalone(doc: str, benchmarks: Mapping[str, Callable[[int], dict[str, Any]]],
               size_flag: str, default: int) -> int:
    """Run ``benchmarks`` with one size option; print JSON lines; exit 1 if a target
    was missed."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument(f"--{size_flag}", type=int, default=default)
    parser.add_argument("--only", choices=sorted(benchmarks))
    args = parser.parse_args()
    size = getattr(args, size_flag.replace("-", "_"))
    ok = True
    for name, fn in benchmarks.items():
        if args.only and name != args.only:
            continue
        result = fn(size)
        ok = ok and bool(result["meets_target"])
        print(json.dumps(result, ensure_ascii=False), flush=True)
    return 0 if ok else 1
