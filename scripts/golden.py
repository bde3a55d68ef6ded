#!/usr/bin/env python3
"""Golden outputs: what socd's commands print today, recorded so that a change that
should not change behaviour (the reorganisation of issue 16, the speed work of issue 17)
can prove it did not.

Usage::

    python scripts/golden.py            # --check: re-run everything, diff, exit 1 on change
    python scripts/golden.py --write    # re-record tests/golden/ (`make golden`)
    python scripts/golden.py --list     # the cases
    python scripts/golden.py -k replay/suricata   # only cases whose name contains the text

Recorded, one file a case under ``tests/golden/<case>.txt`` (the command, its exit
code, its standard error, its standard output, see :func:`render`):

* ``replay/<dir>/<file>``: ``socd replay -c socd/default/config.yaml --format F FILE``,
  the full NDJSON (events and alerts), for every decoder fixture under
  ``tests/fixtures/<decoder>/`` (good and bad files; exceptions in
  :data:`FIXTURE_DECODERS` and :data:`NOT_DECODER_FIXTURES`) and every
  file of the embedded sample week (``socd/default/sample/``, with the decoder the
  embedded configuration gives it);
* ``test-rules/builtin``: ``socd test-rules`` on the shipped pack;
* ``report/...``: ``socd report weekly|monthly --format md`` on the seeded data set of the
  report tests (:mod:`socd.reports.testing` plus IoC, block, incident and sharing stores
  filled through their own APIs, :func:`seed_report_state`);
* ``check-config/...``: ``socd check-config`` on the embedded default, every example
  configuration (``socd/default/config.yaml``, ``deploy/systemd/socd.yaml``, the
  ``config:`` of the Helm chart's ``values.yaml``, every ``<!-- valid-config -->`` block
  of README.md and docs/) and every error case in ``tests/config_errors/``.

Run-dependent values are fixed at the input where possible, so the outputs are the real
bytes:

* **The clock** is frozen at :data:`FROZEN_AT` in every socd process (``time.time``,
  ``datetime.now`` and friends, through the ``time-machine`` package; the monotonic
  clocks still run, so timeouts work). This fixes ``event.created`` and
  ``event.ingested``, the year of RFC 3164 syslog lines, IoC ages, the report's default
  period and "generated at" times.
* **The time zone** is ``TZ=Asia/Ho_Chi_Minh``, the locale ``C.UTF-8``.
* **The environment** is built from nothing (only ``PATH`` is passed on): no ``SOCD_*``
  of the caller, ``SOCD_ETC`` names a folder that does not exist (no installed
  ``/etc/socd/socd.yaml`` is ever picked up), ``HOME`` and ``XDG_*`` point into a fresh
  temporary folder, ``${VAR}`` references of the documentation examples are set to
  ``x`` (as tests/unit/test_docs.py does).
* **Paths**: socd runs from the repository root with relative paths, or from a folder
  of the temporary tree with relative paths; ``python -P`` keeps the current folder off
  ``sys.path`` as the installed ``socd`` script does.
* **Seeded data** uses explicit times (the stores' ``now=`` arguments) and the fixed
  seed of :mod:`socd.reports.testing`.
* **Hash order** is not fixed (no ``PYTHONHASHSEED``): every run has another seed, so
  an output that depends on set or hash order shows up as a difference.

The commands run through ``scripts/golden_runner.py``: one process that freezes the
clock, loads the ``socd`` entry point and forks a child per command (the start-up of
Python and ``socd.cli`` once, not 77 times). ``--no-fork`` runs each command as its own
process; both give the same bytes.

What is still run-dependent is replaced in the text (:func:`normalise`), and only this:

* the temporary folder's absolute path becomes ``<TMP>`` (config errors name absolute
  paths of missing files);
* the repository's absolute path becomes ``<REPO>`` (the same, for files next to the
  error-case configurations).

Assumptions (outside the inputs): no socd is installed on the machine (``/etc/socd`` is
absent: ``deploy/systemd/socd.yaml`` names ``/etc/socd/rules.d``), and the outputs are
recorded as root, as the test suite runs here (not tried as another user).

After an intended change of behaviour (a rule, a decoder, a message), run ``make
golden`` and review ``git diff tests/golden/`` before committing. When socd's modules
move (issue 16), only the imports of :func:`seed_report_state` (and
:data:`DEFAULT_CONFIG`, if the embedded default moves) may need to follow: the data it
writes must stay the same.
"""

from __future__ import annotations

import argparse
import difflib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "golden"
FIXTURES = REPO / "tests" / "fixtures"
DEFAULT_CONFIG = "socd/default/config.yaml"

# Monday 23/11/2026 14:00 in Vietnam: the day after the seeded report week 47/2026 (the
# report tests' NOW) and after the embedded sample week.
FROZEN_AT = "2026-11-23T07:00:00+00:00"
TZ = "Asia/Ho_Chi_Minh"

# tests/fixtures/<dir>/ holds input of the decoder named <dir> (tests/fixtures/suricata/:
# --format suricata), except these. "edr" holds both EDR mappings: the file name starts
# with the decoder's name (server_edr_bad.ndjson).
FIXTURE_DECODERS: dict[str, str | None] = {"edr": None}
# Fixture folders that are not decoder input (they are read by other commands' tests).
NOT_DECODER_FIXTURES = {"assets", "ioc", "sigma"}
EDR_DECODERS = ("server_edr", "workstation_edr")

REFRESH_HINT = ("If the change is intended (a rule, decoder or message changed on "
                "purpose), refresh the recorded outputs with `make golden` (or "
                "`.venv/bin/python scripts/golden.py --write`), review "
                "`git diff tests/golden/` and commit it with the change.")

RUNNER = REPO / "scripts" / "golden_runner.py"


@dataclass(frozen=True)
class Case:
    """One recorded command: ``socd ARGS`` run in ``cwd``."""

    name: str  # tests/golden/<name>.txt
    args: tuple[str, ...]
    cwd: str = "."  # relative to the repository, or "<TMP>/..." in the temporary tree
    env: tuple[tuple[str, str], ...] = ()
    ndjson: bool = False  # stdout is NDJSON: diffs show changed fields, not long lines


@dataclass
class Result:
    case: Case
    text: str


@dataclass
class Tree:
    """The temporary tree every run uses (home, state, seeded report data, examples)."""

    root: Path
    examples: dict[str, str] = field(default_factory=dict)  # case name -> YAML file name


# -- the cases ------------------------------------------------------------------------------


def fixture_cases() -> list[Case]:
    cases = []
    for folder in sorted(p for p in FIXTURES.iterdir() if p.is_dir()):
        if folder.name in NOT_DECODER_FIXTURES:
            continue
        for path in sorted(folder.iterdir()):
            if not path.is_file() or path.name.startswith(".") or path.suffix == ".md":
                continue
            decoder = FIXTURE_DECODERS.get(folder.name, folder.name)
            if decoder is None:
                decoder = next((d for d in EDR_DECODERS if path.name.startswith(d)), None)
                if decoder is None:
                    raise SystemExit(f"golden.py: {path.relative_to(REPO)}: the name "
                                     f"starts with none of {EDR_DECODERS}")
            cases.append(replay_case(f"replay/{folder.name}/{path.name}", decoder,
                                     path.relative_to(REPO)))
    return cases


def sample_cases() -> list[Case]:
    """The embedded sample week, each file with the decoder its collector names."""
    doc = yaml.safe_load((REPO / DEFAULT_CONFIG).read_text(encoding="utf-8"))
    cases = []
    for _, collector in sorted(doc["collectors"].items()):
        if collector.get("type") != "file":
            continue
        for rel in collector["paths"]:
            path = (REPO / DEFAULT_CONFIG).parent / rel
            cases.append(replay_case(f"replay/sample/{path.name}",
                                     collector.get("decoder", "json"),
                                     path.relative_to(REPO)))
    if not cases:
        raise SystemExit(f"golden.py: {DEFAULT_CONFIG} has no file collectors any more")
    return cases


def replay_case(name: str, decoder: str, path: Path) -> Case:
    return Case(name, ("replay", "-c", DEFAULT_CONFIG, "--format", decoder, str(path)),
                ndjson=True)


def check_config_cases(tree: Tree) -> list[Case]:
    cases = [Case("check-config/embedded-default", ("check-config",))]
    for rel in (DEFAULT_CONFIG, "deploy/systemd/socd.yaml"):
        cases.append(Case(f"check-config/examples/{rel.replace('/', '--')}",
                          ("check-config", "-c", rel)))
    for path in sorted((REPO / "tests" / "config_errors").glob("*.yaml")):
        rel = str(path.relative_to(REPO))
        cases.append(Case(f"check-config/config_errors/{path.stem}",
                          ("check-config", "-c", rel)))
    for name, file in sorted(tree.examples.items()):
        block = (tree.root / "examples" / file).read_text(encoding="utf-8")
        names = sorted(set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", block)))
        cases.append(Case(name, ("check-config", "-c", file), cwd="<TMP>/examples",
                          env=tuple((n, "x") for n in names)))
    return cases


def report_cases() -> list[Case]:
    where = "<TMP>/report"
    return [
        # The default period at the frozen clock: the last full week, 16-22/11/2026.
        Case("report/weekly.md", ("report", "weekly", "-c", "socd.yaml", "--format", "md"),
             cwd=where),
        Case("report/weekly-unit.md", ("report", "weekly", "--from", "16/11/2026", "--to",
                                       "22/11/2026", "--unit", "so y te", "-c", "socd.yaml",
                                       "--format", "md"), cwd=where),
        Case("report/monthly.md", ("report", "monthly", "--from", "01/11/2026", "-c",
                                   "socd.yaml", "--format", "md"), cwd=where),
    ]


def all_cases(tree: Tree) -> list[Case]:
    cases = [*fixture_cases(), *sample_cases(),
             Case("test-rules/builtin", ("test-rules",)),
             *report_cases(), *check_config_cases(tree)]
    names = [c.name for c in cases]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SystemExit(f"golden.py: two cases named {duplicates}")
    return cases


# -- the temporary tree ---------------------------------------------------------------------


def doc_examples() -> Iterator[tuple[str, str]]:
    """(case name, YAML) of every configuration example the docs call valid."""
    docs = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    for doc in docs:
        text = doc.read_text(encoding="utf-8")
        blocks = re.findall(r"<!-- valid-config -->\n```yaml\n(.*?)```", text, re.DOTALL)
        stem = str(doc.relative_to(REPO)).replace("/", "--")
        for i, block in enumerate(blocks, 1):
            yield f"check-config/examples/{stem}-{i}", block
    values = yaml.safe_load((REPO / "deploy/helm/socd/values.yaml").read_text(encoding="utf-8"))
    yield ("check-config/examples/deploy--helm--socd--values.yaml-config",
           yaml.safe_dump(values["config"], allow_unicode=True, sort_keys=False))


def make_tree(root: Path) -> Tree:
    tree = Tree(root)
    for sub in ("home", "xdg-state", "xdg-config", "xdg-cache", "xdg-data", "mpl",
                "examples", "report"):
        (root / sub).mkdir()
    for name, block in doc_examples():
        file = name.rsplit("/", 1)[1] + ".yaml"
        (root / "examples" / file).write_text(block, encoding="utf-8")
        tree.examples[name] = file
    (root / "report" / "socd.yaml").write_text(
        "state_dir: state\nsinks:\n  store:\n    type: sqlite\n", encoding="utf-8")
    return tree


def seed_report_state(state: Path) -> None:
    """The report tests' data set (tests/unit/test_report_data.py): the seeded alerts of
    week 47/2026 and the week before, and IoC imports, block decisions, incidents and
    layer-4 exchanges in and around that week, written through each store's own API with
    explicit times (the clock is frozen as in the socd processes)."""
    import time_machine

    from socd.alerts.store import AlertStore
    from socd.block.decisions import BlockStore, Guard, Policy, Request
    from socd.incidents.model import Impact
    from socd.incidents.store import IncidentStore
    from socd.ioc.store import Entry, IocDatabase
    from socd.reports.testing import seed_events
    from socd.sharing.records import Exchange, record

    def at(text: str) -> datetime:
        return datetime.fromisoformat(text)

    def ts(text: str) -> float:
        return at(text).timestamp()

    state.mkdir(parents=True)
    with time_machine.travel(datetime.fromisoformat(FROZEN_AT), tick=False):
        store = AlertStore(str(state / "alerts.db"))
        events = seed_events()
        if store.insert(events) != len(events):
            raise SystemExit("golden.py: the seeded alerts were not all stored")
        store.close()

        ioc = IocDatabase(str(state / "ioc.db"))
        ioc.upsert([Entry("ip", f"198.51.100.{i}", "ncsc", "941/CATTT-NCSC") for i in range(40)]
                   + [Entry("domain", f"bad{i}.example", "ncsc", "941/CATTT-NCSC")
                      for i in range(5)], now=int(ts("2026-11-17T09:00:00+07:00")))
        ioc.upsert([Entry("ip", f"203.0.113.{i}", "ipsum", "") for i in range(7)],
                   now=int(ts("2026-11-02T09:00:00+07:00")))
        ioc.upsert([Entry("hash", "a" * 64, "vncert", "1298/CATTT-NCSC")],
                   now=int(ts("2026-11-21T15:00:00+07:00")))
        ioc.close()

        blocks = BlockStore(str(state / "blocks.db"))
        guard, policy = Guard(), Policy(default_ttl=30 * 86400)
        t1 = ts("2026-11-18T10:00:00+07:00")
        blocks.decide([Request(f"198.51.100.{i}", "IoC", "ioc:ncsc", "941/CATTT-NCSC")
                       for i in range(6)], policy, guard, now=t1)
        blocks.decide([Request("198.51.100.0", "IoC", "ioc:ncsc", "941/CATTT-NCSC")],
                      policy, guard, now=t1 + 7200)  # an extension: still one address
        blocks.decide([Request("192.0.2.50", "brute force", "rule:R-SSH")], policy, guard,
                      now=ts("2026-11-10T10:00:00+07:00"))  # the week before
        blocks.decide([Request("127.0.0.1", "oops", "cli")], policy, guard, now=t1)  # refused
        blocks.close()

        incidents = IncidentStore(str(state / "incidents.db"))
        by = "golden"
        # Notified on time, response ended (closed) in the week, final report due after it.
        i1 = incidents.open_incident(title="Dò mật khẩu SSH srv-web-01", by=by,
                                     alerts=[("a-1", "high", "Sở Y tế")],
                                     now=at("2026-11-16T08:00:00+07:00")).id
        incidents.notified(i1, at("2026-11-17T09:00:00+07:00"), by=by,
                           now=at("2026-11-17T09:00:00+07:00"))
        incidents.close_incident(i1, by=by, now=at("2026-11-19T10:00:00+07:00"))
        # Serious (Decision 05/2017: level 4, an impact, beyond the owner's capacity),
        # notified, still open.
        i2 = incidents.open_incident(title="Mã độc tống tiền srv-db-01", by=by,
                                     alerts=[("a-2", "critical", "Sở Tài chính")],
                                     system_level=4, now=at("2026-11-18T08:00:00+07:00")).id
        incidents.set_impacts(i2, [Impact.SERVICE_INTERRUPTION], by=by, beyond_capacity=True,
                              now=at("2026-11-18T09:00:00+07:00"))
        incidents.notified(i2, at("2026-11-21T09:00:00+07:00"), by=by,
                           now=at("2026-11-21T09:00:00+07:00"))
        # Opened before the week, notified late, closed and reported in it.
        i3 = incidents.open_incident(title="Webshell cổng thông tin", by=by,
                                     alerts=[("a-3", "medium", "Sở Y tế")],
                                     now=at("2026-11-02T08:00:00+07:00")).id
        incidents.notified(i3, at("2026-11-10T08:00:00+07:00"), by=by,
                           now=at("2026-11-10T08:00:00+07:00"))
        incidents.response_ended(i3, at("2026-11-20T12:00:00+07:00"), by=by,
                                 now=at("2026-11-20T12:00:00+07:00"))
        incidents.reported(i3, at("2026-11-20T15:00:00+07:00"), by=by,
                           now=at("2026-11-20T15:00:00+07:00"))
        incidents.close_incident(i3, by=by, now=at("2026-11-20T15:00:00+07:00"))
        # Never notified: overdue at the end of the week.
        incidents.open_incident(title="Sâu lây qua USB pc-020", by=by,
                                alerts=[("a-4", "high", "Sở Tài chính")],
                                now=at("2026-11-14T08:00:00+07:00"))
        incidents.close()

        sharing = str(state / "sharing.db")
        for when, kind, target, objects, result in (
                ("2026-11-10T01:00:00Z", "stix", "taxii-ncsc", 10, "success"),
                ("2026-11-17T01:00:00Z", "stix", "taxii-ncsc", 25, "success"),
                ("2026-11-20T01:00:00Z", "misp", "misp-ncsc", 3, "failure"),
                ("2026-11-24T01:00:00Z", "stix", "taxii-ncsc", 1, "success")):  # after
            record(sharing, Exchange(None, when, kind, target, "NCSC", None, None, None,
                                     objects, result, "golden"))


# -- running --------------------------------------------------------------------------------


def environment(tree: Tree, case: Case) -> dict[str, str]:
    root = tree.root
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "TZ": TZ,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": str(root / "home"),
        "XDG_STATE_HOME": str(root / "xdg-state"),
        "XDG_CONFIG_HOME": str(root / "xdg-config"),
        "XDG_CACHE_HOME": str(root / "xdg-cache"),
        "XDG_DATA_HOME": str(root / "xdg-data"),
        "MPLCONFIGDIR": str(root / "mpl"),
        "SOCD_ETC": "/nonexistent/socd-golden",
        "PYTHONDONTWRITEBYTECODE": "1",
        "COLUMNS": "100",
        "NO_COLOR": "1",
    }
    env.update(case.env)
    return env


def run_all(tree: Tree, cases: list[Case], jobs: int, *, fork: bool = True) -> list[Result]:
    """Run ``cases`` through scripts/golden_runner.py: one runner forking a child per
    case (``fork``), or one runner process per case."""
    work = tree.root / "runner"
    work.mkdir(exist_ok=True)
    specs: list[dict[str, Any]] = []
    for i, case in enumerate(cases):
        cwd = (tree.root / case.cwd.removeprefix("<TMP>/") if case.cwd.startswith("<TMP>")
               else REPO / case.cwd)
        specs.append({"id": str(i), "args": list(case.args), "cwd": str(cwd),
                      "env": environment(tree, case), "stdout": str(work / f"{i}.out"),
                      "stderr": str(work / f"{i}.err")})
    base_env = environment(tree, Case("", ()))

    def runner(batch: list[dict[str, Any]], name: str, *extra: str
               ) -> subprocess.CompletedProcess[str]:
        path = work / f"{name}.json"
        path.write_text(json.dumps({"jobs": jobs, "cases": batch}), encoding="utf-8")
        return subprocess.run([sys.executable, "-P", str(RUNNER), FROZEN_AT, str(path),
                               *extra], cwd=tree.root, env=base_env, capture_output=True,
                              text=True, timeout=900, check=False)

    if fork:
        proc = runner(specs, "batch")
        if proc.returncode != 0:
            raise SystemExit(f"golden.py: the runner failed:\n{proc.stdout}{proc.stderr}")
        codes = {k: int(v) for k, v in json.loads(proc.stdout).items()}
    else:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            procs = pool.map(lambda s: runner([s], s["id"], "--inline"), specs)
            codes = {s["id"]: p.returncode for s, p in zip(specs, procs, strict=True)}
    results = []
    for case, spec in zip(cases, specs, strict=True):
        stdout = Path(spec["stdout"]).read_bytes().decode("utf-8", "backslashreplace")
        stderr = Path(spec["stderr"]).read_bytes().decode("utf-8", "backslashreplace")
        results.append(Result(case, render(case, codes[spec["id"]], normalise(stdout, tree),
                                           normalise(stderr, tree))))
    return results


def normalise(text: str, tree: Tree) -> str:
    """The two run-dependent strings left (see the module docstring)."""
    text = text.replace(str(tree.root), "<TMP>")
    real = os.path.realpath(tree.root)
    if real != str(tree.root):
        text = text.replace(real, "<TMP>")
    return text.replace(str(REPO), "<REPO>")


def _section(title: str, text: str) -> str:
    if text and not text.endswith("\n"):
        text += "\n\\ no newline at end of " + title + "\n"
    return f"--- {title}\n{text}"


def render(case: Case, code: int, stdout: str, stderr: str) -> str:
    """The golden file: how to reproduce it, then exit code, stderr, stdout (exact)."""
    command = " ".join(_quote(a) for a in ("socd", *case.args))
    where = "" if case.cwd == "." else f"  (in {case.cwd})"
    return (f"# golden output of scripts/golden.py; refresh: make golden\n"
            f"$ {command}{where}\nexit {code}\n"
            + _section("stderr", stderr) + _section("stdout", stdout))


def _quote(arg: str) -> str:
    return arg if re.fullmatch(r"[\w./:=@,+-]+", arg) else "'" + arg.replace("'", "'\\''") + "'"


# -- comparing ------------------------------------------------------------------------------


def _flatten(value: Any, path: str) -> Iterator[str]:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from _flatten(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list) and value:
        for i, item in enumerate(value):
            yield from _flatten(item, f"{path}[{i}]")
    else:
        yield f"{path} = {json.dumps(value, ensure_ascii=False)}"


def _split(text: str) -> tuple[list[str], list[str]]:
    """(the lines up to and with ``--- stdout``, the stdout lines)."""
    lines = text.splitlines()
    if "--- stdout" not in lines:
        return lines, []
    at = lines.index("--- stdout") + 1
    return lines[:at], lines[at:]


def _event(line: str) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _describe(n: int, event: dict[str, Any] | None) -> str:
    """``event 12 (rule id, dataset, @timestamp)``: enough to find it in the file."""
    if event is None:
        return f"line {n}"
    ev: dict[str, Any] = event["event"] if isinstance(event.get("event"), dict) else {}
    rule: dict[str, Any] = event["rule"] if isinstance(event.get("rule"), dict) else {}
    parts = [str(v) for v in (ev.get("id"), rule.get("id"), ev.get("dataset"),
                              event.get("@timestamp")) if v]
    return f"event {n}" + (f" ({', '.join(parts)})" if parts else "")


def _fields(line: str) -> list[str]:
    event = _event(line)
    return list(_flatten(event, "")) if event is not None else [line]


def ndjson_diff(old: list[str], new: list[str]) -> Iterator[str]:
    """Events aligned first (an added event does not shift the others), then, for each
    changed event, only its changed fields, one path a line."""
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            continue
        pairs = min(i2 - i1, j2 - j1)
        for k in range(pairs):
            a, b = old[i1 + k], new[j1 + k]
            yield (f"~ {_describe(i1 + k + 1, _event(a))} -> "
                   f"{_describe(j1 + k + 1, _event(b))}:")
            changed = [line for line in difflib.unified_diff(_fields(a), _fields(b), n=0,
                                                             lineterm="")
                       if line[:1] in "+-" and line[:3] not in ("---", "+++")]
            yield from (f"  {line}" for line in changed) if changed else [
                "  (same fields and values; the bytes differ: key order or formatting)",
                f"  - {a}", f"  + {b}"]
        for k in range(i1 + pairs, i2):
            yield f"- {_describe(k + 1, _event(old[k]))} is gone:"
            yield from (f"  - {f}" for f in _fields(old[k]))
        for k in range(j1 + pairs, j2):
            yield f"+ {_describe(k + 1, _event(new[k]))} is new:"
            yield from (f"  + {f}" for f in _fields(new[k]))


def diff(name: str, old: str, new: str, ndjson: bool, limit: int) -> str:
    """A unified diff of the recorded and the new output; for NDJSON output, the stdout
    part event by event (:func:`ndjson_diff`)."""
    head = [f"--- {shown(golden_path(name))} (recorded)", f"+++ {name} (now)"]
    if ndjson:
        (old_head, old_out), (new_head, new_out) = _split(old), _split(new)
        lines = list(difflib.unified_diff(old_head, new_head, lineterm="", n=2))[2:]
        if old_out != new_out:
            lines += ["@@ stdout, event by event @@", *ndjson_diff(old_out, new_out)]
    else:
        lines = list(difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="",
                                          n=2))[2:]
    if not lines:  # only a final newline differs
        lines = ["(the outputs differ only in their line ends)"]
    if len(lines) > limit:
        lines = [*lines[:limit], f"... {len(lines) - limit} more diff lines "
                 f"(python scripts/golden.py -k {name} --max-diff-lines 0 shows all)"]
    return "\n".join([*head, *lines])


def golden_path(name: str) -> Path:
    return GOLDEN / f"{name}.txt"


def shown(path: Path) -> str:
    """``path`` as the messages name it: relative to the repository when inside it."""
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def recorded_names() -> set[str]:
    return {str(p.relative_to(GOLDEN).with_suffix("")) for p in GOLDEN.rglob("*.txt")}


def _set_golden_dir(path: str) -> None:
    global GOLDEN  # noqa: PLW0603 - one folder for the whole run, chosen on the command line
    GOLDEN = Path(path).resolve()


def compare(results: list[Result], limit: int, selected: bool) -> tuple[list[str], list[str]]:
    """(changed case names, report lines)."""
    changed: list[str] = []
    report: list[str] = []
    for result in results:
        path = golden_path(result.case.name)
        if not path.exists():
            changed.append(result.case.name)
            report.append(f"NEW {result.case.name}: not recorded yet ({shown(path)})")
            continue
        old = path.read_text(encoding="utf-8")
        if old != result.text:
            changed.append(result.case.name)
            report.append(f"CHANGED {result.case.name}")
            report.append(diff(result.case.name, old, result.text, result.case.ndjson,
                               limit or sys.maxsize))
    if not selected:  # with -k, the other recorded files are simply not checked
        for name in sorted(recorded_names() - {r.case.name for r in results}):
            changed.append(name)
            report.append(f"GONE {name}: recorded, but no such case any more "
                          f"({shown(golden_path(name))})")
    return changed, report


# -- main -----------------------------------------------------------------------------------


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true",
                      help="re-run and compare with tests/golden/ (the default)")
    mode.add_argument("--write", action="store_true", help="re-record tests/golden/")
    mode.add_argument("--list", action="store_true", help="list the cases")
    parser.add_argument("-k", dest="select", metavar="TEXT",
                        help="only the cases whose name contains TEXT")
    parser.add_argument("--jobs", "-j", type=int, default=min(4, os.cpu_count() or 1),
                        help="socd processes at a time (default: up to 4)")
    parser.add_argument("--no-fork", action="store_true",
                        help="run every command as its own process (slower; the same bytes)")
    parser.add_argument("--golden-dir", metavar="DIR",
                        help="record to / compare with DIR instead of tests/golden/")
    parser.add_argument("--max-diff-lines", type=int, default=120,
                        help="diff lines shown per case, 0 = all (default 120)")
    args = parser.parse_args(list(argv) if argv is not None else None)

    if args.golden_dir:
        _set_golden_dir(args.golden_dir)
    if importlib.util.find_spec("time_machine") is None:
        print("golden.py: the time-machine package is missing (a test dependency in "
              "pyproject.toml): .venv/bin/pip install time-machine", file=sys.stderr)
        return 2
    started = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="socd-golden-"))
    try:
        tree = make_tree(root)
        cases = all_cases(tree)
        if args.select:
            cases = [c for c in cases if args.select in c.name]
        if args.list:
            for case in cases:
                print(f"{case.name}: socd {' '.join(case.args)}")
            return 0
        if not cases:
            print(f"golden.py: no case matches {args.select!r}", file=sys.stderr)
            return 2
        if any(c.name.startswith("report/") for c in cases):
            seed_report_state(root / "report" / "state")
        results = run_all(tree, cases, max(1, args.jobs), fork=not args.no_fork)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    changed, report = compare(results, args.max_diff_lines, bool(args.select))
    elapsed = time.perf_counter() - started
    if args.write:
        for result in results:
            path = golden_path(result.case.name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(result.text, encoding="utf-8")
        if not args.select:
            for name in recorded_names() - {r.case.name for r in results}:
                golden_path(name).unlink()
        print("\n".join(report))
        print(f"golden.py: recorded {len(results)} outputs in {shown(GOLDEN)}/ "
              f"({len(changed)} new, changed or removed) in {elapsed:.1f} s; review "
              f"`git diff {shown(GOLDEN)}/` and commit it")
        return 0
    if changed:
        print("\n".join(report))
        print(f"\ngolden.py: {len(changed)} of {len(results)} outputs differ from "
              f"{shown(GOLDEN)}/: {', '.join(changed[:20])}"
              f"{' ...' if len(changed) > 20 else ''}\n{REFRESH_HINT}")
        return 1
    print(f"golden.py: {len(results)} outputs identical to {shown(GOLDEN)}/ in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
