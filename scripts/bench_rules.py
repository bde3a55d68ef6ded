#!/usr/bin/env python3
"""Rules engine benchmark; prints one JSON object per result.

``rules_engine``: the bundled server-EDR sample, repeated to ~100k events and
decoded with the ``server_edr`` decoder (not timed), then run through a
:class:`~socd.engine.RuleEngine` holding the rule pack in ``rules/`` (plus
synthetic rules when the pack has fewer than 40) and an IoC lookup over 1M
addresses, in batches of 1000 as the pipeline hands them over. Only
``engine.process`` is timed.

    .venv/bin/python scripts/bench_rules.py [--events N] [--iocs N]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from socd import config as config_mod  # noqa: E402
from socd.components import build_decoders, dead_letter_for  # noqa: E402
from socd.engine import RuleEngine, load_paths, load_text  # noqa: E402
from socd.plugins import RawRecord  # noqa: E402

SAMPLE = REPO / "socd" / "default" / "sample" / "server-edr.ndjson"
BATCH = 1000
MIN_RULES = 40


def _synthetic(n: int) -> str:
    fields = ["process.name", "process.command_line", "user.name", "host.name", "rule.name"]
    lines = ["rules:"]
    for i in range(n):
        f = fields[i % len(fields)]
        lines.append(f"""  - id: synthetic-{i}
    title: "Synthetic {i}"
    severity: medium
    match:
      all:
        - {{field: event.module, equals: server_edr}}
        - {{field: {f}, contains: ["zz-never-{i}", "yy-never-{i}"]}}
        - not: {{field: host.ip, cidr: [10.99.{i % 250}.0/24]}}""")
    return "\n".join(lines) + "\n"


def _events(target: int) -> list[dict[str, Any]]:
    cfg = config_mod.load()
    decoder = build_decoders(cfg, dead_letter_for(cfg))["server_edr"]
    lines = [line for line in SAMPLE.read_bytes().splitlines() if line.strip()]
    out: list[dict[str, Any]] = []
    while len(out) < target:
        for line in lines:
            out.extend(decoder.decode(RawRecord(line, "server_edr", "bench", str(SAMPLE),
                                                time.time())).events)
            if len(out) >= target:
                break
    return out


def bench_rules_engine(events: int = 100_000, iocs: int = 1_000_000) -> dict[str, Any]:
    rules = load_paths([str(REPO / "rules")])
    if len(rules) < MIN_RULES:
        extra, problems = load_text(_synthetic(MIN_RULES - len(rules)), "<synthetic>",
                                    start=len(rules))
        assert not problems, problems
        rules += extra
    ioc_ips = {f"198.18.{(i >> 8) & 255}.{i & 255}" if i < 65536 else
               f"{100 + (i >> 16) % 100}.{(i >> 8) & 255}.{i & 255}.{i % 7}"
               for i in range(iocs)}

    def lookup(kind: str, value: str, source: str | None = None) -> bool:
        return kind == "ip" and value in ioc_ips

    decoded = _events(events)
    engine = RuleEngine(rules, ioc_lookup=lookup)
    batches = [decoded[i:i + BATCH] for i in range(0, len(decoded), BATCH)]
    alerts = 0
    started = time.perf_counter()
    for batch in batches:
        out = engine.process(batch)
        alerts += len(out) - len(batch)
    seconds = time.perf_counter() - started
    return {"benchmark": "rules_engine", "rules": len(engine.rules), "events": len(decoded),
            "alerts": alerts, "iocs": len(ioc_ips), "seconds": round(seconds, 3),
            "events_per_sec": round(len(decoded) / seconds), "target": 20000, "goal": 50000}


BENCHMARKS = {"rules_engine": bench_rules_engine}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--iocs", type=int, default=1_000_000)
    args = parser.parse_args()
    print(json.dumps(bench_rules_engine(args.events, args.iocs), ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
