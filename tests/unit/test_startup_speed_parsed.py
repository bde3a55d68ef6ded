"""The shipped rule pack parsed ahead of time (socd.config.parsed, issue 17 start-up):
current, the same as parsing, and never used for a text it was not made from."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import orjson
import pytest

from socd.config import parsed
from socd.config.located import parse
from socd.engine import loader
from tests.unit.test_startup_speed_yaml import _typed


def test_the_shipped_form_is_current() -> None:
    directory, files = parsed.builtin_files()
    with open(os.path.join(directory, parsed.FILE_NAME), "rb") as fh:
        shipped = fh.read()
    assert shipped == parsed.encode(parsed.build(files)), (
        "a rule file changed: run `python -m socd.config.parsed` (it is only slower "
        "until then)")
    assert directory == loader.builtin_dir()
    assert sorted(files) == sorted(loader.expand_paths(["builtin"]))


def test_the_form_holds_every_shipped_file_as_parse_reads_it() -> None:
    directory, files = parsed.builtin_files()
    form = parsed.load(directory)
    assert form is not None
    for path in files:
        text = Path(path).read_text(encoding="utf-8")
        got = form.located(text, path)
        want = parse(text, path)
        assert got is not None, path
        assert got.file == want.file == path
        assert _typed(got.data) == _typed(want.data)
        assert list(got.lines.items()) == list(want.lines.items())


def test_a_changed_text_is_parsed() -> None:
    directory, files = parsed.builtin_files()
    form = parsed.load(directory)
    assert form is not None
    text = Path(files[0]).read_text(encoding="utf-8")
    assert form.located(text + "\n", files[0]) is None
    assert form.located(text, os.path.join(directory, "other.yaml")) is None


def test_a_form_of_another_version_is_not_used(tmp_path: Path) -> None:
    directory, files = parsed.builtin_files()
    form = orjson.loads((Path(directory) / parsed.FILE_NAME).read_bytes())
    assert parsed.load(str(tmp_path)) is None  # none there
    for key, other in (("socd", "0.0.0-other"), ("pyyaml", "0.0"), ("format", 0)):
        (tmp_path / parsed.FILE_NAME).write_bytes(orjson.dumps({**form, key: other}))
        assert parsed.load(str(tmp_path)) is None
    (tmp_path / parsed.FILE_NAME).write_bytes(b"{not json")
    assert parsed.load(str(tmp_path)) is None


def test_values_json_cannot_hold_leave_a_file_out(tmp_path: Path) -> None:
    (tmp_path / "plain.yaml").write_text("rules: []\n", encoding="utf-8")
    (tmp_path / "dated.yaml").write_text("rules: []\nwhen: 2024-01-02\n", encoding="utf-8")
    (tmp_path / "numkey.yaml").write_text("rules: []\n1: one\n", encoding="utf-8")
    (tmp_path / "inf.yaml").write_text("rules: []\nx: .inf\n", encoding="utf-8")
    form = parsed.build(str(p) for p in tmp_path.glob("*.yaml"))
    assert list(form["files"]) == ["plain.yaml"]


def test_rule_errors_in_an_edited_shipped_file_are_the_parser_s(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory, files = parsed.builtin_files()
    copy = tmp_path / "rules"
    shutil.copytree(directory, copy, ignore=shutil.ignore_patterns("__pycache__"))
    auth = copy / "auth.yaml"
    auth.write_text(auth.read_text(encoding="utf-8") + "\nbroken: [\n", encoding="utf-8")
    monkeypatch.setattr(loader, "builtin_dir", lambda: str(copy))
    with pytest.raises(loader.ConfigError) as with_form:
        loader.load_files([str(auth)])
    (copy / parsed.FILE_NAME).unlink()
    with pytest.raises(loader.ConfigError) as without_form:
        loader.load_files([str(auth)])
    assert [str(p) for p in with_form.value.problems] == [
        str(p) for p in without_form.value.problems]
    assert "invalid YAML" in str(with_form.value.problems[0])


def test_the_shipped_pack_loads_the_same_with_and_without_the_form(
        monkeypatch: pytest.MonkeyPatch) -> None:
    files = loader.expand_paths(["builtin"])
    with_form = loader.load_files(files)
    monkeypatch.setattr(parsed, "load", lambda _directory: None)
    without_form = loader.load_files(files)
    assert [(r.id, r.file, r.line, r.def_hash, r.order) for r in with_form] == [
        (r.id, r.file, r.line, r.def_hash, r.order) for r in without_form]
