"""The socd(8) man page is generated from the CLI's own argparse parser (issue 14, point 9):
every command, subcommand and option is in it, and groff renders it without a warning."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from socd.cli import _parser

REPO = Path(__file__).resolve().parents[2]
GEN_MAN = REPO / "scripts" / "gen_man.py"


def _tool(name: str) -> str:
    from tests.deploy import tool

    return tool(name)


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
              ) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name), sub
                yield from _commands(sub, (*path, name))


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> str:
    env = {k: v for k, v in os.environ.items() if k != "SOCD_CONFIG"}
    result = subprocess.run([sys.executable, str(GEN_MAN)], capture_output=True, text=True,
                            check=False, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


def test_header_and_sections(page: str) -> None:
    from socd import __version__

    first = page.splitlines()[0]
    assert first.startswith('.TH "SOCD" "8" ')
    assert f'"socd {__version__}"' in first
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "FILES", "ENVIRONMENT",
                    "EXIT STATUS", "SEE ALSO"):
        assert f'.SH "{section}"' in page, section
    assert "/etc/socd/socd.yaml" in page
    assert "/opt/socd/share/doc/socd/configuration.md" in page


def test_every_command_and_option_is_documented(page: str) -> None:
    commands = list(_commands(_parser()))
    assert len(commands) > 30
    for path, sub in commands:
        assert f".SS socd {' '.join(path)}".replace("-", r"\-") in page, path
        for action in sub._actions:
            for option in action.option_strings:
                if option in ("-h", "--help"):
                    continue
                assert option.replace("-", r"\-") in page, (path, option)
    assert r"\-\-include\-dry\-run" in page


def test_groff_renders_without_warnings(page: str, tmp_path: Path) -> None:
    source = tmp_path / "socd.8"
    source.write_text(page, encoding="utf-8")
    groff = subprocess.run([_tool("groff"), "-man", "-Tutf8", "-ww", "-z", str(source)],
                           capture_output=True, text=True, check=False, timeout=60)
    assert (groff.returncode, groff.stderr) == (0, "")
    shown = subprocess.run([_tool("man"), "-l", str(source)], capture_output=True, text=True,
                           check=False, timeout=60, env={**os.environ, "MANWIDTH": "100",
                                                         "MAN_KEEP_FORMATTING": "0"})
    assert shown.returncode == 0, shown.stderr
    text = re.sub(".\b", "", shown.stdout)  # man's overstrike bold and underline
    assert "socd ioc import" in text
    assert "--include-dry-run" in text
    assert "/opt/socd/share/doc/socd/configuration.md" in text  # never hyphenated
    assert "socd - security-operations monitoring daemon for a provincial SOC" in text
