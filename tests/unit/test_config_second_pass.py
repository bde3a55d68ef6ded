"""`socd check-config` lists the problems that need other files all at once.

Issue 14, point 14: a valid document naming a missing IoC list, a missing asset
inventory and a mapping file that does not validate gave one problem per run (the
builds stop at their first failure), although docs/configuration.md promises every
problem in one run. The second pass (:func:`socd.config.reference_problems`) reports
them together; an invalid document reports them with its schema problems
(tests/config_errors/files_and_typos_at_once.yaml).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from socd import cli, config
from socd.errors import ConfigError


def write(tmp_path: Path, mapping: str | None) -> Path:
    (tmp_path / "state").mkdir()
    if mapping is not None:
        (tmp_path / "vendor.yaml").write_text(mapping, encoding="utf-8")
    path = tmp_path / "socd.yaml"
    path.write_text(f"""\
state_dir: {tmp_path / 'state'}
classification:
  ioc_files: [iocs/letter-941.txt]
enrichment:
  assets_file: assets.yaml
allowlist:
  files: [own-networks.txt]
decoders:
  vendor:
    type: mapping
    mapping: vendor.yaml
collectors:
  edr:
    type: file
    paths: [edr.ndjson]
    decoder: vendor
sinks:
  store:
    type: sqlite
""", encoding="utf-8")
    return path


def test_every_missing_or_invalid_file_in_one_run(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "name: vendor\nfields: {source.ip: [not, a, path]}\n")
    assert cli.main(["check-config", "-c", str(path)]) == cli.EXIT_CONFIG
    err = capsys.readouterr().err
    assert "(4 problems)" in err, err
    for expected in (
            f"{path}:3: classification.ioc_files[0]: no such file: {tmp_path}/iocs/letter-941.txt",
            f"{path}:5: enrichment.assets_file: no such file: {tmp_path}/assets.yaml",
            f"{path}:7: allowlist.files[0]: no such file: {tmp_path}/own-networks.txt",
            f"{path}:11: decoders.vendor.mapping: mapping {tmp_path}/vendor.yaml"):
        assert expected in err, (expected, err)


def test_a_missing_mapping_file_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, None)
    cfg = config.load(path, env={})
    problems = config.reference_problems(cfg)
    assert [p.path for p in problems] == ["classification.ioc_files[0]", "allowlist.files[0]",
                                          "enrichment.assets_file", "decoders.vendor.mapping"]
    assert "cannot read mapping: No such file or directory" in problems[-1].message
    assert all(p.file == str(path) and p.line for p in problems)


def test_nothing_to_report_when_the_files_exist(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "name: vendor\nfields: {source.ip: src}\n"
                 "constants: {event.kind: alert}\n")
    (tmp_path / "iocs").mkdir()
    (tmp_path / "iocs" / "letter-941.txt").write_text("203.0.113.9\n", encoding="utf-8")
    (tmp_path / "assets.yaml").write_text("- ip: [10.10.20.11]\n  unit: Sở Y tế\n",
                                          encoding="utf-8")
    (tmp_path / "own-networks.txt").write_text("10.10.0.0/16\n", encoding="utf-8")
    assert config.reference_problems(config.load(path, env={})) == []
    assert cli.main(["check-config", "-c", str(path)]) == cli.EXIT_OK, capsys.readouterr().err


def test_an_invalid_document_reports_them_too(tmp_path: Path) -> None:
    path = write(tmp_path, None)
    path.write_text(path.read_text(encoding="utf-8") + "http:\n  prot: 1\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        config.load(path, env={})
    assert [p.path for p in info.value.problems] == [
        "http.prot", "classification.ioc_files[0]", "allowlist.files[0]",
        "enrichment.assets_file", "decoders.vendor.mapping"]
