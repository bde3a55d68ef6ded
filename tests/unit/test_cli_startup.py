"""`socd <command>` builds the parser of its command group only (start-up, issue 17):
the table of groups matches what each group registers, and every command's parser is
the one the full parser has."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys

import pytest

from socd import cli
from socd.cli.common import with_config


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_group_table_matches_what_each_group_registers() -> None:
    registered: dict[str, str] = {}
    for module_name in cli._COMMAND_MODULES:
        sub = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(module_name).register(sub, with_config)
        registered.update(dict.fromkeys(sub.choices, module_name))
    assert registered == cli._GROUP_OF


@pytest.mark.parametrize("command", sorted(cli._GROUP_OF))
def test_a_command_s_parser_is_the_full_parser_s(command: str) -> None:
    alone = _subparsers(cli._parser(command))
    assert list(alone) == [c for c, m in cli._GROUP_OF.items() if m == cli._GROUP_OF[command]]
    full = _subparsers(cli._parser())[command]
    assert alone[command].format_help() == full.format_help()


@pytest.mark.parametrize("first", [None, "--help", "-h", "--version", "no-such-command"])
def test_help_version_and_unknown_commands_get_every_group(first: str | None) -> None:
    assert _subparsers(cli._parser(first)).keys() == cli._GROUP_OF.keys()


def test_replay_and_check_config_import_no_other_group() -> None:
    code = ("import sys\nfrom socd import cli\ncli._parser(sys.argv[1])\n"
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('socd.cli.'))))")
    for command in ("replay", "check-config"):
        out = subprocess.run([sys.executable, "-c", code, command], capture_output=True,
                             text=True, check=True).stdout.split()
        others = [m for m in cli._COMMAND_MODULES if m != "socd.cli.run"]
        assert not set(out) & set(others), out
