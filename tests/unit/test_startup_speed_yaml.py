"""The rule pack's YAML is built from libyaml's nodes in one walk (located._build, issue
17 start-up): the data (types, key order, shared objects) and the line index are
SafeConstructor's and _index's, for every YAML file of the project and for the texts
the one walk leaves to them (aliases, merge keys, unusual tags)."""

from __future__ import annotations

import glob
import os
from typing import Any

import pytest
import yaml

from socd.config import located

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _reference(text: str) -> tuple[Any, dict[located.Loc, int]] | None:
    """_read_fast as it was: SafeConstructor's data and _index's lines."""
    loader = yaml.CSafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        lines, unsure = located._index(node, text.split("\n"))
        return None if unsure else (loader.construct_document(node), lines)
    except yaml.YAMLError:
        return None
    finally:
        loader.dispose()


def _typed(value: Any) -> Any:
    """A form of ``value`` where 1, 1.0 and True differ and key order counts."""
    if isinstance(value, dict):
        return ("dict", [(_typed(k), _typed(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [_typed(v) for v in value])
    return (type(value).__name__, repr(value))


def _same(text: str) -> None:
    if located._CSafeLoader is None or located._UNSURE_TEXT.search(text):
        return
    try:
        want = _reference(text)
    except Exception as exc:  # noqa: BLE001 - the same error, whatever it is
        with pytest.raises(type(exc)):
            located._read_fast(text)
        return
    got = located._read_fast(text)
    if want is None:
        assert got is None
        return
    assert got is not None
    assert _typed(got[0]) == _typed(want[0])
    assert list(got[1].items()) == list(want[1].items())


_FILES = sorted(
    f for pattern in ("socd/**/*.yaml", "socd/**/*.yml", "tests/**/*.yaml", "tests/**/*.yml",
                      "deploy/**/*.yaml", "examples/**/*.yaml", "*.yaml")
    for f in glob.glob(os.path.join(ROOT, pattern), recursive=True))


def test_there_are_files_to_compare() -> None:
    assert len([f for f in _FILES if "/socd/rules/" in f]) >= 9


@pytest.mark.parametrize("path", _FILES, ids=lambda p: os.path.relpath(p, ROOT))
def test_every_project_yaml_file_reads_as_before(path: str) -> None:
    with open(path, encoding="utf-8", errors="replace") as fh:
        _same(fh.read())


@pytest.mark.parametrize("text", [
    "",
    "# only a comment\n",
    "a: 1\nb: 1.5\nc: true\nd: null\ne: ~\nf: 2024-01-02\ng: 2024-01-02 03:04:05\n"
    "h: 0x1f\ni: 1_000\nj: 0o17\nk: 1:30\nl: .inf\nm: -.nan\nn: 'quoted'\no: yes\n",
    "1: int key\ntrue: bool key\nnull: null key\n2024-01-02: date key\n1.5: float key\n",
    "a: 1\nb: 2\na: 3\n",  # a repeated key: the last value, the first position
    "a: &x {k: v}\nb: *x\n",  # alias: left to SafeConstructor
    "a: &x [1, 2]\nb: *x\n",
    "a: &s text\nb: *s\n",
    "base: &b {k: 1}\nderived:\n  <<: *b\n  j: 2\n",  # merge key
    "=: value key\n",
    "a: =\n",
    "[1, 2, [3, {x: y}]]\n",
    "- a\n- - b\n  - c\n- {d: e, f: [g, h]}\n",
    "a: {x?y: 1}\n",  # '?' in a flow scalar: PyYAML reads it differently
    "a: [x?y]\n",
    "a: x?y\n",
    "a: |\n  block\n  text\nb: >-\n  folded\n  text\n",
    "a: |#glued\n  text\n",  # a comment glued to a block scalar's header
    "a: |2\n    indented\n",
    "a:\n  b:\n    c:\n      - d: 1\n        e: [2, 3]\n",
    "just a scalar\n",
    "? complex\n: key\n",
    "? [a, b]\n: list key\n",
    "a: b: c\n",  # invalid YAML
    "a: [1, 2\n",
    "&r [*r]\n",  # recursive: left to SafeConstructor
    "a: !!binary aGVsbG8=\n",
    "a: 2024-13-45\n",
    "a: 12:30:45\n",
    "a: '1'\nb: \"2\"\nc: 3\n",
])
def test_texts_read_as_before(text: str) -> None:
    _same(text)


@pytest.mark.parametrize("path", _FILES, ids=lambda p: os.path.relpath(p, ROOT))
def test_mapping_files_load_as_with_safe_load(path: str) -> None:
    from socd.config.mappings import _safe_load

    def outcome(load: Any) -> str:
        with open(path, encoding="utf-8") as fh:
            try:
                return "data " + repr(_typed(load(fh)))
            except Exception as exc:  # noqa: BLE001 - the same error, whatever it is
                return f"error {type(exc).__name__}: {exc}"

    assert outcome(_safe_load) == outcome(yaml.safe_load)
