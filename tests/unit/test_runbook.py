"""docs/runbook.md cannot drift from the code and the shipped alert rules.

* Every alert in deploy/prometheus/socd-alerts.yml has its own section in the runbook,
  with a Vietnamese and an English part.
* Every ``socd ...`` command line in the runbook's shell blocks parses with the real
  command-line parser (``socd.cli._parser``): subcommands, options and required
  arguments exist.
* The configuration examples marked ``<!-- valid-config -->`` load, and the vendor
  mapping example of section 5 is a valid mapping that ``check-config`` accepts when
  wired as the runbook shows.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from socd import cli, config
from socd.config.mappings import load_mapping

REPO = Path(__file__).resolve().parents[2]
RUNBOOK = REPO / "docs" / "runbook.md"
ALERT_RULES = REPO / "deploy" / "prometheus" / "socd-alerts.yml"

SUBCOMMANDS = ("run", "check-config", "replay", "test-rules", "rules", "ioc", "block",
               "alert", "incident", "audit", "share", "report")
# `socd <subcommand> ...` after the start of a line or a shell separator, or as the
# program of `runuser -u socd --` / `kubectl exec ... --`; optionally as a full path.
COMMAND = re.compile(
    r"(?:^\s*|[;|&(]\s*|\bdo\s+|\bthen\s+|--\s+|\$\(\s*)"
    r"(?:SOCD_CONFIG=\S+\s+)?(?:/opt/socd/bin/|\.venv/bin/)?socd\s+"
    rf"((?:{'|'.join(re.escape(s) for s in SUBCOMMANDS)})\b[^\n]*)")
# Where the socd arguments end on a shell line.
SHELL_END = re.compile(r";(?:\s|$)|\s(?:\||&&|\|\||>|2>|<|#)\s|\s(?:\||>)\S|\)\s*$|\s#.*$")


def _text() -> str:
    return RUNBOOK.read_text(encoding="utf-8")


def _shell_blocks() -> list[str]:
    blocks = re.findall(r"```(?:sh|bash)\n(.*?)```", _text(), re.DOTALL)
    # Join continuation lines, so one command is one line.
    return [re.sub(r"\\\n\s*", " ", block) for block in blocks]


def _command_lines() -> list[str]:
    found = []
    for block in _shell_blocks():
        for line in block.splitlines():
            for match in COMMAND.finditer(line):
                args = match.group(1)
                end = SHELL_END.search(args)
                found.append(args[:end.start()] if end else args)
    return found


def test_runbook_exists_in_both_languages() -> None:
    text = _text()
    assert text.count("**VI") > 20
    assert text.count("**EN") > 20
    for n in range(10):
        assert re.search(rf"^## {n}\. .+ / .+$", text, re.MULTILINE), f"section {n} missing"


def test_every_shipped_alert_is_explained() -> None:
    rules = yaml.safe_load(ALERT_RULES.read_text(encoding="utf-8"))
    names = [r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r]
    assert names, "no alerts in socd-alerts.yml"
    text = _text()
    sections = re.split(r"^### ", text, flags=re.MULTILINE)
    for name in names:
        matching = [s for s in sections if re.match(rf"{name}\b", s)]
        assert matching, f"docs/runbook.md has no '### {name}' section (section 6)"
        body = matching[0]
        for part in ("**VI", "**EN", "Xử lý", "Action"):
            assert part in body, f"{name}: no {part!r} (a VI and an EN part, what to do)"


def test_command_lines_are_found() -> None:
    lines = _command_lines()
    assert len(lines) >= 30, lines
    for sub in ("check-config", "ioc import", "ioc check", "block list", "block add",
                "replay", "audit verify"):
        assert any(line.startswith(sub) for line in lines), sub


@pytest.mark.parametrize("line", _command_lines())
def test_command_line_parses(line: str) -> None:
    argv = shlex.split(line)
    parser = cli._parser()
    try:
        parser.parse_args(argv)
    except SystemExit as exc:  # argparse reports the problem on stderr
        pytest.fail(f"`socd {line}` does not parse (exit {exc.code})")


def _valid_config_blocks() -> list[str]:
    return re.findall(r"<!-- valid-config -->\n```yaml\n(.*?)```", _text(), re.DOTALL)


def test_configuration_examples_load() -> None:
    blocks = _valid_config_blocks()
    assert len(blocks) >= 3
    for block in blocks:
        names = re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", block)
        loaded = config.loads(block, file="docs/runbook.md", env=dict.fromkeys(names, "x"))
        assert loaded.collectors or loaded.sinks


def test_vendor_mapping_example_is_accepted(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    text = _text()
    mapping = next(b for b in re.findall(r"```yaml\n(.*?)```", text, re.DOTALL)
                   if b.startswith("name: acme_edr"))
    wiring = next(b for b in _valid_config_blocks() if "type: mapping" in b)
    (tmp_path / "mappings").mkdir()
    (tmp_path / "mappings" / "acme_edr.yaml").write_text(mapping, encoding="utf-8")
    _, spec = load_mapping("mappings/acme_edr.yaml", str(tmp_path))
    assert spec.name == "acme_edr"
    assert spec.severity is not None
    cfg = tmp_path / "socd.yaml"
    cfg.write_text(f"state_dir: {tmp_path / 'state'}\n{wiring}", encoding="utf-8")
    assert cli.main(["check-config", "-c", str(cfg)]) == 0, capsys.readouterr()
