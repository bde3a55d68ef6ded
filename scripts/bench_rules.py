#!/usr/bin/env python3
"""Rules engine benchmark; prints one JSON object per result.

``rules_engine``: the bundled server-EDR sample, repeated to ~100k events and
decoded with the ``server_edr`` decoder (not timed), then run through a
:class:`~socd.engine.RuleEngine` holding the rule pack in ``rules/`` (plus
synthetic rules when the pack has fewer than 40) and an IoC lookup over 1M
addresses, in batches of 1000 as the pipeline hands them over. Only
``engine.process`` is timed.

``replay_edr_with_pack``: ~100k server-EDR vendor lines (the sample repeated with
unique ``alert_id``) through ``socd replay --format server_edr --stats`` in-process,
with a config whose ``classification.ioc_files`` is a 1M-address text list. Besides
wall-clock rates it reports CPU (``ioc_load_cpu_seconds``, ``replay_cpu_seconds``,
``events_per_cpu_sec``) and the benchmark process's ``peak_rss_mb``.

``classify_1mib_fields``: the time to classify one hostile event through every shipped
rule, each string field a rule reads 1 MiB long (issue 12: at most 100 ms). The routing
fields hold every value a rule is routed on, so each rule meets the event.

    .venv/bin/python scripts/bench_rules.py [--events N] [--iocs N] [--only NAME]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from socd import config as config_mod  # noqa: E402
from socd.app.components import build_decoders, dead_letter_for  # noqa: E402
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
    ioc_ips = set(_ioc_ips(iocs))

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


def _ioc_ips(n: int) -> list[str]:
    """``n`` distinct IPv4 addresses (198.18.0.0/16 first, then 100-199.x.y.z)."""
    return [f"198.18.{(i >> 8) & 255}.{i & 255}" if i < 65536 else
            f"{100 + (i >> 16) % 100}.{(i >> 8) & 255}.{i & 255}.{i % 7}"
            for i in range(n)]


def _edr_lines(target: int) -> list[bytes]:
    """``target`` server-EDR vendor lines: the sample repeated, alert_id made unique."""
    samples = [orjson.loads(line) for line in SAMPLE.read_bytes().splitlines() if line.strip()]
    out: list[bytes] = []
    i = 0
    while len(out) < target:
        for doc in samples:
            i += 1
            out.append(orjson.dumps({**doc, "alert_id": f"{doc.get('alert_id', 'SG')}-{i}"}))
            if len(out) >= target:
                break
    return out


def bench_replay_edr_with_pack(events: int = 100_000, iocs: int = 1_000_000) -> dict[str, Any]:
    """``socd replay --format server_edr FILE --stats`` in-process, the full rule pack and a
    1M-line ``classification.ioc_files`` list loaded; stdout goes to /dev/null.

    ``events_per_sec`` is input lines / the replay's own seconds (from ``--stats``, so
    config and IoC loading are left out); ``end_to_end_events_per_sec`` counts the whole
    command. ``ioc_load_seconds`` is building the classifier (rule pack + IoC list) once
    on its own.
    """
    from socd import cli
    from socd.app.components import build_classifier

    with tempfile.TemporaryDirectory(prefix="socd-bench-") as tmp:
        ioc_path = os.path.join(tmp, "iocs.txt")
        with open(ioc_path, "w", encoding="ascii") as fh:
            fh.write("\n".join(_ioc_ips(iocs)) + "\n")
        input_path = os.path.join(tmp, "server-edr.ndjson")
        with open(input_path, "wb") as fh:
            fh.write(b"\n".join(_edr_lines(events)) + b"\n")
        config_path = os.path.join(tmp, "config.yaml")
        with open(config_path, "w", encoding="utf-8") as fh:
            fh.write(f"state_dir: {json.dumps(os.path.join(tmp, 'state'))}\n"
                     f"classification:\n  ioc_files: [{json.dumps(ioc_path)}]\n")

        cfg = config_mod.load(config_path)
        started, cpu_started = time.perf_counter(), time.process_time()
        classifier = build_classifier(cfg)
        ioc_load = time.perf_counter() - started
        ioc_load_cpu = time.process_time() - cpu_started
        rules = len(classifier.rules.rules) if classifier.rules is not None else 0
        del classifier

        err = io.StringIO()
        with open(os.devnull, "w", encoding="utf-8") as devnull, \
                contextlib.redirect_stdout(devnull), contextlib.redirect_stderr(err):
            started, cpu_started = time.perf_counter(), time.process_time()
            code = cli.main(["replay", "-c", config_path, "--format", "server_edr",
                             input_path, "--stats"])
            total = time.perf_counter() - started
            total_cpu = time.process_time() - cpu_started
    stats_line = [line for line in err.getvalue().splitlines() if line.startswith("{")]
    stats = json.loads(stats_line[-1]) if stats_line else {}
    seconds = float(stats.get("seconds") or total)
    return {"benchmark": "replay_edr_with_pack", "exit": code, "rules": rules,
            "lines": events, "events": stats.get("events"), "alerts": stats.get("alerts"),
            "iocs": iocs, "ioc_load_seconds": round(ioc_load, 3),
            "ioc_load_cpu_seconds": round(ioc_load_cpu, 3),
            # The command's CPU less one classifier build: the replay's CPU, for a
            # machine where other jobs make wall-clock figures swing.
            "replay_cpu_seconds": round(total_cpu - ioc_load_cpu, 3),
            "events_per_cpu_sec": round(events / max(total_cpu - ioc_load_cpu, 1e-9)),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "replay_seconds": round(seconds, 3), "total_seconds": round(total, 3),
            "events_per_sec": round(events / seconds),
            "end_to_end_events_per_sec": round(events / total),
            "target": 20000, "goal": 50000}


def _leaves(node: Any) -> Iterator[dict[str, Any]]:
    """Every condition leaf below ``node`` (a match: tree or a list of them)."""
    if isinstance(node, dict):
        if "field" in node:
            yield node
        for key in ("all", "any", "not"):
            if key in node:
                yield from _leaves(node[key])
    elif isinstance(node, list):
        for item in node:
            yield from _leaves(item)


# Tokens the shipped patterns look for, so a backtracking engine would try hard at
# every position (the 56 s stall of issue 12 was such a command line), plus
# Vietnamese text for the UTF-8 paths.
_HOSTILE = ("nc -x curl | rm wget history -e sekurlsa:: S-1-5-21- /var/www/ "
            "powershell -enc AAAA Nguyễn Văn Á /dev/tcp/ socket.socket( ")
_TEXT_TYPES = ("keyword", "text", "wildcard")
# Fields a webhook event may carry even when no shipped rule reads them.
_ALWAYS = ("process.command_line", "process.name", "url.original", "message",
           "file.path", "user.name", "rule.name", "host.name")


def hostile_event(rules: list[Any], size: int, salt: int) -> dict[str, Any]:
    """An event every rule of ``rules`` meets, each text field it reads ``size`` bytes of
    tokens the shipped patterns look for, as the JSON decoder hands it to the rules."""
    from socd.engine.compiler import INDEX_FIELDS
    from socd.event import FIELDS_BY_NAME, put_parts

    routing: dict[str, list[Any]] = {}
    for crule in rules:
        for entry in crule.index or ():
            routing.setdefault(entry[0], []).extend(v for v in entry[1]
                                                    if v not in routing[entry[0]])
    paths = set(_ALWAYS)
    for crule in rules:
        r = crule.rule
        for node in [r.match, *(s.match for s in (r.sequence.steps if r.sequence else []))]:
            paths.update(leaf["field"] for leaf in _leaves(node)
                         if isinstance(leaf.get("field"), str))
    text = (f"{salt} " + _HOSTILE * (size // len(_HOSTILE) + 1))
    event: dict[str, Any] = {"@timestamp": "2026-11-20T10:00:00+07:00"}
    for path in sorted(paths - set(INDEX_FIELDS)):
        field = FIELDS_BY_NAME.get(path)
        if path.startswith("socd.") or (field is not None and field.type not in _TEXT_TYPES):
            continue  # socd's own fields, numbers, addresses, dates: the decoder refuses
        value = text.encode("utf-8")[:size].decode("utf-8", "ignore")
        put_parts(event, path.split("."), value)
    for path, values in routing.items():
        put_parts(event, path.split("."), list(values))
    # through the JSON decoder, as a webhook event reaches the rules (event.hash set)
    cfg = config_mod.load()
    decoder = build_decoders(cfg, dead_letter_for(cfg))["json"]
    result = decoder.decode(RawRecord(orjson.dumps(event), "json", "bench", "", time.time()))
    if not result.events:
        raise RuntimeError(f"the JSON decoder refused the event: {result.failures[0]}")
    return result.events[0]


def bench_classify_1mib_fields(events: int = 0, iocs: int = 0,
                               rounds: int = 15) -> dict[str, Any]:
    """One event at a time, fresh 1 MiB values each round (no cache helps), through a
    :class:`RuleEngine` holding the shipped pack at its default ``rules.max_field_bytes``."""
    from socd.engine.compiler import RULE_FIELDS_TRUNCATED

    del events, iocs  # the sizes of the other benchmarks do not apply
    rules = load_paths(["builtin"])
    engine = RuleEngine(rules, ioc_lookup=lambda kind, value, source=None: False)
    size = 1 << 20
    times: list[float] = []
    alerts = 0
    fields = 0
    for i in range(rounds):
        event = hostile_event(rules, size, i)
        fields = sum(1 for _ in _strings(event, size))
        started = time.perf_counter()
        out = engine.process([event])
        times.append((time.perf_counter() - started) * 1000)
        alerts += len(out) - 1
    truncated = sum(s.value for m in RULE_FIELDS_TRUNCATED.collect() for s in m.samples
                    if s.name.endswith("_total"))
    worst = max(times)
    return {"benchmark": "classify_1mib_fields", "rules": len(engine.rules),
            "fields_of_1mib": fields, "rounds": rounds, "max_ms": round(worst, 2),
            "p50_ms": round(statistics.median(times), 2), "alerts_per_event": alerts // rounds,
            "fields_truncated": int(truncated), "target_ms": 100,
            "meets_target": worst <= 100}


def _strings(node: Any, size: int) -> Iterator[str]:
    if isinstance(node, dict):
        for v in node.values():
            yield from _strings(v, size)
    elif isinstance(node, str) and len(node.encode("utf-8")) >= size - 4:
        yield node


BENCHMARKS = {"rules_engine": bench_rules_engine,
              "replay_edr_with_pack": bench_replay_edr_with_pack,
              "classify_1mib_fields": bench_classify_1mib_fields}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--iocs", type=int, default=1_000_000)
    parser.add_argument("--only", choices=sorted(BENCHMARKS), help="run one benchmark")
    args = parser.parse_args()
    for name, fn in BENCHMARKS.items():
        if args.only is None or args.only == name:
            print(json.dumps(fn(args.events, args.iocs), ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
