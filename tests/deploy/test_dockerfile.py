"""The container image recipe (Dockerfile, .dockerignore) without a container engine.

There is no Docker here, so the Dockerfile is parsed and checked for what the chart
relies on (multi-stage, a pinned base, a numeric non-root USER equal to the chart's
runAsUser, the chart's HTTP port, exec-form ENTRYPOINT) and for the usual hygiene (no
ADD of URLs, no secrets in ENV/ARG, apt and pip caches not kept). The build stage's
`pip install .` is then run for real on exactly the files its COPY instructions take
from the context .dockerignore leaves: the wheel must build and carry socd's data files.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from .conftest import CHART, REPO

DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    stage: int  # index of the FROM this instruction belongs to (-1: before any FROM)


def parse(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped."""
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    assert not current, "the Dockerfile ends inside a continued instruction"
    out: list[Instruction] = []
    stage = -1
    for line in lines:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        out.append(Instruction(keyword, args.strip(), stage))
    return out


INSTRUCTIONS = parse(DOCKERFILE.read_text())


def of(keyword: str, stage: int | None = None) -> list[Instruction]:
    return [i for i in INSTRUCTIONS
            if i.keyword == keyword and (stage is None or i.stage == stage)]


def final_stage() -> int:
    return max(i.stage for i in INSTRUCTIONS)


def arg_default(name: str) -> str:
    for ins in of("ARG"):
        key, _, value = ins.args.partition("=")
        if key == name:
            return value
    raise AssertionError(f"no ARG {name}")


def chart_values() -> dict:
    return yaml.safe_load((CHART / "values.yaml").read_text())


def test_known_instructions_only() -> None:
    known = {"FROM", "ARG", "ENV", "RUN", "COPY", "WORKDIR", "USER", "EXPOSE", "LABEL",
             "ENTRYPOINT", "CMD", "HEALTHCHECK", "STOPSIGNAL", "VOLUME"}
    assert {i.keyword for i in INSTRUCTIONS} <= known
    assert INSTRUCTIONS[0].keyword in ("ARG", "FROM")


def test_multi_stage_from_one_pinned_base() -> None:
    froms = of("FROM")
    assert len(froms) >= 2
    names = [f.args.split() for f in froms]
    assert all(len(n) == 3 and n[1].upper() == "AS" for n in names), names
    assert [n[2] for n in names] == ["build", "runtime"]
    # Both stages use the base named once in an ARG, so the virtualenv built in the
    # first runs in the second.
    assert {n[0] for n in names} == {"${PYTHON_IMAGE}"}
    base = arg_default("PYTHON_IMAGE")
    match = re.fullmatch(r"python:(3\.\d+)(\.\d+)?-slim-(bookworm|trixie)"
                         r"(@sha256:[0-9a-f]{64})?", base)
    assert match, f"base {base!r} is not a pinned python slim tag"
    # The base's Python satisfies the project's requires-python.
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "requires-python"]
    minimum = re.fullmatch(r">=\s*3\.(\d+)", requires)
    assert minimum
    assert int(match.group(1).split(".")[1]) >= int(minimum.group(1))


def test_runtime_user_is_numeric_non_root_and_the_charts() -> None:
    users = of("USER", final_stage())
    assert users, "the runtime stage sets no USER"
    user = users[-1].args
    assert re.fullmatch(r"\d+:\d+", user), f"USER {user!r} is not numeric uid:gid"
    uid, gid = (int(x) for x in user.split(":"))
    assert uid > 0
    assert gid > 0
    ctx = chart_values()["securityContext"]
    assert (uid, gid) == (ctx["runAsUser"], ctx["runAsGroup"])
    # The user exists in the image with that id (useradd in a RUN of the final stage).
    runs = " ".join(i.args for i in of("RUN", final_stage()))
    assert "useradd" in runs
    assert '--uid "${SOCD_UID}"' in runs
    assert arg_default("SOCD_UID") == str(uid)
    # Nothing after USER switches back to root.
    last_user_index = INSTRUCTIONS.index(users[-1])
    assert not [i for i in INSTRUCTIONS[last_user_index:] if i.keyword == "RUN"]


def test_no_remote_add_and_copy_from_build_only() -> None:
    assert not of("ADD"), "use COPY (ADD fetches URLs and unpacks archives implicitly)"
    for ins in of("COPY"):
        assert not re.search(r"https?://", ins.args)
        flags = [a for a in shlex.split(ins.args) if a.startswith("--")]
        if ins.stage == final_stage():
            assert flags == ["--from=build"], ins
        else:
            assert not flags, ins


def test_entrypoint_cmd_port_and_healthcheck() -> None:
    (entrypoint,) = of("ENTRYPOINT")
    assert entrypoint.args == '["socd"]'  # exec form: socd is PID 1 and gets SIGTERM
    (cmd,) = of("CMD")
    assert cmd.args.startswith("[")
    assert [i.args for i in of("STOPSIGNAL")] == ["SIGTERM"]
    exposed = {p.split("/")[0] for i in of("EXPOSE") for p in i.args.split()}
    assert str(chart_values()["ports"]["http"]) in exposed
    (health,) = of("HEALTHCHECK")
    assert "/healthz" in health.args
    assert health.args.split("CMD", 1)[1].strip().startswith("[")


def test_hygiene_no_secrets_and_no_caches() -> None:
    for ins in of("ENV") + of("ARG"):
        assert not re.search(r"(PASSWORD|TOKEN|SECRET|API_KEY)", ins.args, re.I), ins
    for ins in of("RUN"):
        if "apt-get install" in ins.args:
            assert "--no-install-recommends" in ins.args
            assert "rm -rf /var/lib/apt/lists/*" in ins.args
            assert "apt-get update" in ins.args  # same layer: no stale package lists
        if "pip install" in ins.args:
            assert "--no-cache-dir" in ins.args
        assert "sudo" not in ins.args
        assert not re.search(r"(curl|wget)\s", ins.args), "no downloads outside package managers"
    # Bytecode is compiled at build time: the runtime root filesystem is read-only.
    assert any("compileall" in i.args for i in of("RUN", 0))
    env = " ".join(i.args for i in of("ENV", final_stage()))
    assert "PYTHONDONTWRITEBYTECODE=1" in env


# ----------------------------------------------------------- the build context


def dockerignore_patterns() -> list[tuple[bool, str]]:
    out = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        out.append((negate, line.lstrip("!").rstrip("/")))
    return out


def in_context(rel: str, patterns: list[tuple[bool, str]]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents wins."""
    parts = rel.split("/")
    candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    excluded = False
    for negate, pattern in patterns:
        for candidate in candidates:
            if fnmatch.fnmatchcase(candidate, pattern) or (
                    pattern.startswith("**/") and (
                        fnmatch.fnmatchcase(candidate, pattern[3:])
                        or fnmatch.fnmatchcase(candidate.rsplit("/", 1)[-1], pattern[3:]))):
                excluded = not negate
                break
    return not excluded


def tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                         cwd=REPO, capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if (REPO / line).is_file()]


def test_dockerignore_keeps_only_the_package_sources() -> None:
    patterns = dockerignore_patterns()
    context = [f for f in tracked_files() if in_context(f, patterns)]
    tops = {f.split("/")[0] for f in context}
    assert tops == {"pyproject.toml", "README.md", "socd", "collectors", "alerting", "rules"}
    for path in (".venv/bin/python", ".git/config", "tests/conftest.py", "deploy/helm"):
        assert not in_context(path, patterns), path
    assert not in_context("socd/__pycache__/x.pyc", patterns)


def test_copy_sources_match_the_package_layout() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    package_dirs = set(project["tool"]["setuptools"]["package-dir"].values())
    copied = set()
    for ins in of("COPY", 0):
        *sources, _dest = shlex.split(ins.args)
        copied |= set(sources)
    assert package_dirs | {"pyproject.toml", "README.md"} <= copied, copied


def test_build_stage_pip_install_builds_the_wheel(tmp_path: Path) -> None:
    """`pip install .` of the build stage, on the files its COPYs take from the context."""
    patterns = dockerignore_patterns()
    context = tmp_path / "src"
    sources = {s for ins in of("COPY", 0) for s in shlex.split(ins.args)[:-1]}
    for rel in tracked_files():
        if rel.split("/")[0] in sources and in_context(rel, patterns):
            target = context / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, target)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir", "--quiet",
         "-w", str(tmp_path / "dist"), str(context)],
        capture_output=True, text=True, timeout=600, check=False)
    if proc.returncode != 0:
        pytest.fail(f"pip wheel of the Docker build context failed:\n{proc.stdout}\n"
                    f"{proc.stderr}", pytrace=False)
    (wheel,) = (tmp_path / "dist").glob("socd-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in ("socd/cli/__init__.py", "socd/default/config.yaml", "socd/rules/auth.yaml",
                     "socd/collectors/sensor.py", "socd/alerting/elasticsearch.py"):
        assert expected in names, expected
    assert any(n.startswith("socd/notify/templates/") for n in names)
