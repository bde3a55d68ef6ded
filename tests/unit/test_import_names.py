"""Every file has one import name (issue 16).

The top-level folders ``collectors/``, ``alerting/`` and ``rules/`` are installed as
``socd.collectors``, ``socd.alerting`` and ``socd.rules`` (``package-dir`` in
pyproject.toml). Importing them under their folder names would load a second copy of
every module in them: two metric registrations, two classes that ``isinstance`` tells
apart. This test reads every Python file of the project and refuses such imports.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FOLDER_NAMES = {"collectors", "alerting", "rules"}
ROOTS = ("socd", "collectors", "alerting", "rules", "tests", "scripts")


def _second_names(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [f"{path.relative_to(REPO)}:{node.lineno}: {name}" for name in names
                  if name.split(".")[0] in FOLDER_NAMES]
    return found


def test_folders_are_imported_only_under_socd() -> None:
    offenders = [hit for root in ROOTS for path in sorted((REPO / root).rglob("*.py"))
                 for hit in _second_names(path)]
    assert offenders == [], "import these as socd.collectors / socd.alerting / socd.rules:\n" \
        + "\n".join(offenders)


def test_metrics_are_registered_without_double_import_workarounds() -> None:
    for root in ("socd", "collectors", "alerting"):
        for path in (REPO / root).rglob("*.py"):
            assert "_names_to_collectors" not in path.read_text(encoding="utf-8"), path


def test_every_package_is_installed() -> None:
    """A package missing from pyproject's list works from the source tree (editable
    install) and is absent from the wheel, the .deb and `make install`."""
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
                 ["packages"])
    on_disk = set()
    for init in (REPO / "socd").rglob("__init__.py"):
        package = init.parent.relative_to(REPO).as_posix().replace("/", ".")
        if "templates" not in package:
            on_disk.add(package)
    assert on_disk - listed == set(), "add these to [tool.setuptools] packages"
