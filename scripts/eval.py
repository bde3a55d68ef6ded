"""Judge the rule pack on the evaluation corpus (``make eval``; docs/detection.md).

Every data set under ``tests/corpus/<name>/`` is real public data with a
``case.yaml`` naming its source, licence, input files (pinned by sha256) and the
labelled expectations: which rule must fire for which entity, how often, and what
must not fire. This script replays each data set through the same decoders,
classification and full rule pack as the daemon (``tests/corpus/socd.yaml``), then
scores every rule:

- TP: an ``expect`` entry met (its alert count within ``min``..``max``);
- FN: an ``expect`` entry not met;
- FP: a distinct (rule, entity) group of alerts that a ``must_not`` entry matches, or
  that no ``expect`` entry labels (a case is a complete judgement of its data).

It prints a table per data set and per rule (TP, FP, FN, precision, recall, alerts per
1,000 events), writes the same as JSON with ``--json``, and exits 1 when an
expectation is missed, a ``must_not`` fires, an alert is unlabelled, or an input's
sha256 differs from the one recorded.

    .venv/bin/python scripts/eval.py [--json out.json] [--case tests/corpus/NAME ...]

``--coverage docs/detection.md`` rewrites the page's generated coverage table (every
shipped rule: ATT&CK techniques from its tags, the event fields it needs, the data
sets that exercise it and its measured precision/recall); ``--check-coverage`` fails
when the page is not what the pack and the corpus give today (``make test`` runs it).
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import hashlib
import io
import sys
import tarfile
import tempfile
import time
import zipfile
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "tests" / "corpus"
BATCH = 1000
#: The arrival clock a replay pretends when an input gives no ``received_at``: fixed, and
#: far after every data set, so each replay is a backlog (the engine windows events by
#: their own time) and the result never depends on the day or hour eval runs.
DEFAULT_RECEIVED = datetime(2100, 1, 1, tzinfo=UTC).timestamp()
#: The fields that name an unlabelled alert's entity.
ENTITY_FIELDS = ("source.ip", "destination.ip", "user.name", "host.name")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Source(_Model):
    url: str
    commit: str | None = None
    licence: str
    note: str | None = None


class Input(_Model):
    file: str | None = None
    pcap: str | None = None
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    format: str | None = None
    member: str | None = None
    received_at: datetime | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Input:
        if (self.file is None) == (self.pcap is None):
            raise ValueError("give exactly one of `file` or `pcap`")
        if self.file is not None and not self.format:
            raise ValueError("a `file` input needs `format` (the decoder name)")
        return self

    @property
    def path(self) -> str:
        return self.file or self.pcap or ""


class Expectation(_Model):
    rule: str
    entity: dict[str, str | int] = Field(default_factory=dict)
    min: int = Field(1, ge=0)
    max: int | None = Field(None, ge=0)
    why: str


class Prohibition(_Model):
    rule: str
    entity: dict[str, str | int] = Field(default_factory=dict)
    why: str


class Case(_Model):
    title: str
    source: Source
    inputs: list[Input] = Field(min_length=1)
    expect: list[Expectation] = Field(default_factory=list)
    must_not: list[Prohibition] = Field(default_factory=list)


class CaseError(Exception):
    """A case that cannot be evaluated (bad case.yaml, changed input)."""


def load_case(directory: Path) -> Case:
    path = directory / "case.yaml"
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        return Case.model_validate(raw)
    except (OSError, yaml.YAMLError) as exc:
        raise CaseError(f"{path}: {exc}") from exc
    except ValidationError as exc:
        details = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise CaseError(f"{path}: {details}") from exc


def get_field(event: dict[str, Any], dotted: str) -> Any:
    """The value at a dotted ECS path (nested objects, or a flat dotted key)."""
    if dotted in event:
        return event[dotted]
    node: Any = event
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _matches(alert: dict[str, Any], rule: str, entity: dict[str, str | int]) -> bool:
    if rule != "*" and get_field(alert, "rule.id") != rule:
        return False
    return all(str(get_field(alert, k)) == str(v) for k, v in entity.items())


def entity_of(alert: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple((k, str(v)) for k in ENTITY_FIELDS
                 if (v := get_field(alert, k)) not in (None, ""))


# --- reading inputs -------------------------------------------------------------------

def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _members(path: Path, member: str | None) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of the file itself, or of the archive's (chosen) members."""
    name = path.name
    if name.endswith(".zip"):
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.is_dir() and (member is None or info.filename == member):
                    yield info.filename, archive.read(info)
    elif name.endswith((".tar.gz", ".tgz", ".tar")):
        with tarfile.open(path) as archive:
            for tinfo in archive.getmembers():
                if tinfo.isfile() and (member is None or tinfo.name == member):
                    fh = archive.extractfile(tinfo)
                    if fh is not None:
                        yield tinfo.name, fh.read()
    elif name.endswith(".gz"):
        yield name[:-3], gzip.decompress(path.read_bytes())
    else:
        yield name, path.read_bytes()


def _lines(data: bytes) -> Iterator[bytes]:
    for line in io.BytesIO(data):
        line = line.rstrip(b"\r\n")
        if line.strip():
            yield line


# --- running a case -------------------------------------------------------------------

@dataclass
class Outcome:
    """What the pack did on one case."""

    name: str
    case: Case
    records: int = 0
    events: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    source_alerts: int = 0
    seconds: float = 0.0


class Runner:
    """The daemon's decoders, classification and rule pack, built from the corpus config."""

    def __init__(self, config_path: Path) -> None:
        from socd import config as config_mod
        from socd.app.components import build_decoders, dead_letter_for

        self.cfg = config_mod.load(str(config_path))
        self.decoders = build_decoders(self.cfg, dead_letter_for(self.cfg))

    def classifier(self) -> Any:
        from socd.app.components import build_classifier

        return build_classifier(self.cfg)  # fresh rule state for every case

    def run(self, directory: Path, case: Case) -> Outcome:
        outcome = Outcome(directory.name, case)
        classifier = self.classifier()
        started = time.perf_counter()
        for spec in case.inputs:
            path = directory / spec.path
            if not path.is_file():
                raise CaseError(f"{directory.name}: no such input {spec.path}")
            digest = sha256(path)
            if digest != spec.sha256:
                raise CaseError(f"{directory.name}: {spec.path} has sha256 {digest}, "
                                f"case.yaml pins {spec.sha256}")
            received = spec.received_at.timestamp() if spec.received_at else DEFAULT_RECEIVED
            if spec.pcap is not None:
                records = self._pcap_records(path, spec.member, received)
            else:
                records = self._file_records(path, spec, received)
            self._classify(records, classifier, outcome)
        outcome.seconds = time.perf_counter() - started
        return outcome

    def _file_records(self, path: Path, spec: Input, received: float) -> Iterator[Any]:
        from socd.plugins import RawRecord

        assert spec.format is not None
        if spec.format not in self.decoders:
            raise CaseError(f"{path}: unknown format {spec.format!r}; known: "
                            f"{', '.join(sorted(self.decoders))}")
        for name, data in _members(path, spec.member):
            for line in _lines(data):
                yield RawRecord(line, spec.format, "eval", f"{path.name}:{name}", received)

    def _pcap_records(self, path: Path, member: str | None, received: float) -> Iterator[Any]:
        """Flow records of the sensor collector replaying the capture(s)."""
        from socd.collectors.sensor import SensorCollector
        from socd.plugins import PluginContext

        records: list[Any] = []
        with tempfile.TemporaryDirectory(prefix="socd-eval-") as tmp:
            files = []
            for i, (name, data) in enumerate(_members(path, member)):
                target = Path(tmp) / f"{i}-{Path(name).name}"
                target.write_bytes(data)
                files.append(str(target))
            config = SensorCollector.Config.model_validate(
                {"type": "sensor", "pcap_files": files, "decoder": "flows"})
            collector = SensorCollector(config, PluginContext(name="eval-sensor",
                                                              dead_letter=None))

            async def emit(batch: Any, ack: Any = None) -> None:
                records.extend(batch)

            asyncio.run(collector.run(emit))
        for record in records:
            record.received = received
            yield record

    def _classify(self, records: Iterable[Any], classifier: Any, outcome: Outcome) -> None:
        batch: list[Any] = []
        for record in records:
            outcome.records += 1
            batch.append(record)
            if len(batch) >= BATCH:
                self._batch(batch, classifier, outcome)
                batch = []
        if batch:
            self._batch(batch, classifier, outcome)

    def _batch(self, batch: list[Any], classifier: Any, outcome: Outcome) -> None:
        events = []
        for record in batch:
            result = self.decoders[record.decoder].decode(record)
            events.extend(result.events)
            for failure in result.failures:
                outcome.failures[failure.reason] += 1
        for event in classifier.process(events):
            outcome.events += 1
            if event["event"].get("kind") != "alert":
                continue
            if event["event"].get("module") != "socd":
                # An alert the source raised (a Suricata signature, a Wazuh rule) passes
                # through; the corpus judges the pack's own rules.
                outcome.source_alerts += 1
                continue
            # Through JSON, as a sink would see it (no live objects, plain types).
            outcome.alerts.append(orjson.loads(orjson.dumps(event)))


# --- scoring --------------------------------------------------------------------------

@dataclass
class RuleScore:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    alerts: int = 0

    def add(self, other: RuleScore) -> None:
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        self.alerts += other.alerts

    def as_dict(self, events: int) -> dict[str, Any]:
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, "alerts": self.alerts,
                "precision": _ratio(self.tp, self.tp + self.fp),
                "recall": _ratio(self.tp, self.tp + self.fn),
                "alerts_per_1000_events": round(1000 * self.alerts / events, 2)
                if events else None}


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 3) if b else None


@dataclass
class Judgement:
    """The score of one case, and every problem that fails the evaluation."""

    rules: dict[str, RuleScore]
    problems: list[str]


def judge(outcome: Outcome) -> Judgement:
    """Score ``outcome`` against its case's labels (see the module docstring)."""
    case = outcome.case
    rules: dict[str, RuleScore] = defaultdict(RuleScore)
    problems: list[str] = []
    for alert in outcome.alerts:
        rules[str(get_field(alert, "rule.id"))].alerts += 1
    labelled: set[int] = set()
    for exp in case.expect:
        hits = [i for i, a in enumerate(outcome.alerts) if _matches(a, exp.rule, exp.entity)]
        labelled.update(hits)
        within = len(hits) >= exp.min and (exp.max is None or len(hits) <= exp.max)
        score = rules[exp.rule]
        if within:
            score.tp += 1
        else:
            score.fn += 1
            bound = f"{exp.min}..{exp.max if exp.max is not None else ''}"
            problems.append(f"{outcome.name}: missed: {exp.rule} {_entity(exp.entity)}: "
                            f"{len(hits)} alerts, expected {bound} ({exp.why})")
    forbidden: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}
    unlabelled: dict[tuple[str, tuple[tuple[str, str], ...]], int] = Counter()
    for i, alert in enumerate(outcome.alerts):
        rule = str(get_field(alert, "rule.id"))
        group = (rule, entity_of(alert))
        banned = next((p for p in case.must_not if _matches(alert, p.rule, p.entity)), None)
        if banned is not None:
            forbidden.setdefault(group, banned.why)
        elif i not in labelled:
            unlabelled[group] += 1
    for (rule, ent), why in forbidden.items():
        rules[rule].fp += 1
        problems.append(f"{outcome.name}: must not fire: {rule} {_entity(dict(ent))} ({why})")
    for (rule, ent), count in unlabelled.items():
        rules[rule].fp += 1
        problems.append(f"{outcome.name}: unlabelled: {rule} {_entity(dict(ent))}: "
                        f"{count} alerts")
    if outcome.failures:
        problems.append(f"{outcome.name}: decode failures: {dict(outcome.failures)}")
    return Judgement(dict(rules), problems)


def _entity(entity: dict[str, Any]) -> str:
    return "{" + ", ".join(f"{k}={v}" for k, v in entity.items()) + "}"


# --- report ---------------------------------------------------------------------------

def report(outcomes: list[Outcome], judgements: list[Judgement]) -> dict[str, Any]:
    per_rule: dict[str, RuleScore] = defaultdict(RuleScore)
    per_rule_events: Counter[str] = Counter()
    datasets = []
    for outcome, verdict in zip(outcomes, judgements, strict=True):
        total = RuleScore()
        for rule, score in verdict.rules.items():
            total.add(score)
            per_rule[rule].add(score)
            per_rule_events[rule] += outcome.events
        datasets.append({
            "dataset": outcome.name, "title": outcome.case.title,
            "source": outcome.case.source.url, "licence": outcome.case.source.licence,
            "records": outcome.records, "events": outcome.events,
            "source_alerts": outcome.source_alerts,
            "labelled_rules": sorted({e.rule for e in outcome.case.expect}
                                     | {p.rule for p in outcome.case.must_not} - {"*"}),
            "decode_failures": sum(outcome.failures.values()),
            "seconds": round(outcome.seconds, 3), **total.as_dict(outcome.events),
            "rules": {r: s.as_dict(outcome.events) for r, s in sorted(verdict.rules.items())},
        })
    return {
        "datasets": datasets,
        "rules": {r: s.as_dict(per_rule_events[r]) for r, s in sorted(per_rule.items())},
        "problems": [p for j in judgements for p in j.problems],
    }


# --- coverage table (docs/detection.md) -------------------------------------------------

COVERAGE_START = "<!-- coverage:start (scripts/eval.py --coverage; do not edit by hand) -->"
COVERAGE_END = "<!-- coverage:end -->"
#: Fields whose positive equals/in values say which data source a rule reads.
SOURCE_FIELDS = ("event.module", "event.dataset", "event.provider", "event.code",
                 "event.action", "event.category", "winlog.channel")


def _needs(node: Any, found: dict[str, set[str]]) -> None:
    """Collect the positive equals/in values of SOURCE_FIELDS in a rule's match tree."""
    if isinstance(node, list):
        for child in node:
            _needs(child, found)
    elif isinstance(node, dict):
        if "field" in node:
            if node["field"] in SOURCE_FIELDS:
                values = [node["equals"]] if "equals" in node else node.get("in") or []
                found.setdefault(node["field"], set()).update(map(str, values))
            return
        for key, child in node.items():
            if key != "not":
                _needs(child, found)


def coverage_rows(result: dict[str, Any]) -> list[str]:
    """The markdown rows of the coverage table, one per shipped rule."""
    from socd.engine.loader import builtin_dir, load_paths

    exercised: dict[str, list[str]] = defaultdict(list)
    for dataset in result["datasets"]:
        for rule in sorted(set(dataset["rules"]) | set(dataset["labelled_rules"])):
            exercised[rule].append(dataset["dataset"])
    rows = ["| rule | severity | ATT&CK | needs (event fields) | corpus data sets | TP/FP/FN "
            "| precision | recall |", "|---|---|---|---|---|---|---|---|"]
    for compiled in sorted(load_paths([builtin_dir()]), key=lambda c: c.id):
        rule = compiled.rule
        found: dict[str, set[str]] = {}
        _needs(rule.match, found)
        for step in rule.sequence.steps if rule.sequence else []:
            _needs(step.match, found)
        needs = "; ".join(f"{k}: {', '.join(sorted(v))}" for k, v in found.items() if v)
        score = result["rules"].get(rule.id)
        measured = ("—", "—", "—") if score is None else (
            f"{score['tp']}/{score['fp']}/{score['fn']}", _fmt(score["precision"]),
            _fmt(score["recall"]))
        rows.append(f"| `{rule.id}` | {rule.severity.value} | "
                    f"{', '.join(rule.techniques) or '—'} | {needs or '—'} | "
                    f"{', '.join(exercised.get(rule.id, [])) or '—'} | "
                    + " | ".join(measured) + " |")
    return rows


def with_coverage(page: str, result: dict[str, Any]) -> str:
    """``page`` with its coverage section replaced by today's table."""
    start, end = page.find(COVERAGE_START), page.find(COVERAGE_END)
    if start < 0 or end < start:
        raise CaseError(f"the page has no {COVERAGE_START} ... {COVERAGE_END} section")
    table = "\n".join(coverage_rows(result))
    return page[:start] + COVERAGE_START + "\n" + table + "\n" + page[end:]


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def print_tables(result: dict[str, Any], out: Any) -> None:
    head = f"{'':34} {'TP':>4} {'FP':>4} {'FN':>4} {'prec':>5} {'recall':>6} {'alerts':>7} " \
           f"{'/1k ev':>7}"
    print("Per data set", file=out)
    print(f"{'data set':34}" + head[34:] + f" {'events':>8}", file=out)
    for d in result["datasets"]:
        print(f"{d['dataset'][:34]:34} {d['tp']:>4} {d['fp']:>4} {d['fn']:>4} "
              f"{_fmt(d['precision']):>5} {_fmt(d['recall']):>6} {d['alerts']:>7} "
              f"{_fmt(d['alerts_per_1000_events']):>7} {d['events']:>8}", file=out)
    print("\nPer rule (all data sets)", file=out)
    print(f"{'rule':34}" + head[34:], file=out)
    for rule, s in result["rules"].items():
        print(f"{rule[:34]:34} {s['tp']:>4} {s['fp']:>4} {s['fn']:>4} "
              f"{_fmt(s['precision']):>5} {_fmt(s['recall']):>6} {s['alerts']:>7} "
              f"{_fmt(s['alerts_per_1000_events']):>7}", file=out)
    if result["problems"]:
        print(f"\n{len(result['problems'])} problem(s):", file=out)
        for problem in result["problems"]:
            print(f"  {problem}", file=out)


def case_dirs(selected: list[str] | None) -> list[Path]:
    if selected:
        return [Path(p).resolve() for p in selected]
    return sorted(p.parent for p in CORPUS.glob("*/case.yaml"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", action="append", metavar="DIR",
                        help="evaluate only this data set directory (repeatable)")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON here")
    parser.add_argument("--coverage", metavar="PAGE",
                        help="rewrite the coverage table of this markdown page")
    parser.add_argument("--check-coverage", metavar="PAGE",
                        help="fail when the page's coverage table is not today's")
    parser.add_argument("--config", default=str(CORPUS / "socd.yaml"),
                        help="the config with the pack under test (default: %(default)s)")
    args = parser.parse_args(argv)
    from socd import log

    log.setup(level="error")  # the pack's own warnings (late events...) are not the result
    runner = Runner(Path(args.config))
    outcomes, judgements, errors = [], [], []
    for directory in case_dirs(args.case):
        try:
            case = load_case(directory)
            outcome = runner.run(directory, case)
        except CaseError as exc:
            errors.append(str(exc))
            continue
        outcomes.append(outcome)
        judgements.append(judge(outcome))
    result = report(outcomes, judgements)
    result["problems"] = errors + result["problems"]
    for page, write in ((args.coverage, True), (args.check_coverage, False)):
        if page is None:
            continue
        text = Path(page).read_text(encoding="utf-8")
        try:
            fresh = with_coverage(text, result)
        except CaseError as exc:
            result["problems"].append(f"{page}: {exc}")
            continue
        if write:
            Path(page).write_text(fresh, encoding="utf-8")
        elif fresh != text:
            result["problems"].append(
                f"{page}: the coverage table is not what the pack and the corpus give today; "
                f"run `.venv/bin/python scripts/eval.py --coverage {page}` and commit it")
    print_tables(result, sys.stdout)
    if args.json:
        Path(args.json).write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    if not outcomes and not errors:
        print("no data set found under tests/corpus/*/case.yaml", file=sys.stderr)
        return 1
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
