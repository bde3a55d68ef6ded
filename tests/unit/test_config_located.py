"""One pass over a YAML text (socd.config.located.read): the data, the lines and the
errors PyYAML's own reader gives, read twice (compose for the lines, safe_load for
the data) as socd did before libyaml read its files (issue 17)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from socd.config import located

from .conftest import CONFIG_ERRORS_DIR, DEFAULT_DIR, REPO


def pyyaml_twice(text: str) -> tuple[Any, ...]:
    """What PyYAML's pure-Python reader says: data and lines, or the error."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        return ("error", getattr(exc, "problem", None) or str(exc),
                mark.line if mark else None)
    return ("ok", repr(data), located.line_index(node) if node is not None else {})


def one_pass(text: str) -> tuple[Any, ...]:
    try:
        data, lines = located.read(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        return ("error", getattr(exc, "problem", None) or str(exc),
                mark.line if mark else None)
    return ("ok", repr(data), lines)


SHIPPED = sorted([*(REPO / "rules").glob("*.yaml"), *DEFAULT_DIR.rglob("*.yaml"),
                  *CONFIG_ERRORS_DIR.glob("*.yaml")])


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(REPO)))
def test_shipped_files_read_the_same(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert one_pass(text) == pyyaml_twice(text)


# Texts libyaml and PyYAML read differently, or that only one of them refuses; the
# one-pass reader must give PyYAML's answer for each.
TEXTS = {
    "tab before a colon": "a:\n  b\t: 1\n",
    "tab in a flow mapping": "a: {b: 1,\tc: 2}\n",
    "question mark in a flow plain scalar": "a: {b?c: 1}\n",
    "question mark in a flow sequence": "topics: [edr/a?lerts]\n",
    "question mark quoted in a flow mapping": "a: {regex: '(?i)x?'}\n",
    "question mark in a block plain scalar": "a: x?y\n",
    "comment glued to a block scalar header": "a: |#note\n  text\n",
    "comment after a block scalar header": "a: |  # note\n  text\n",
    "block scalar with a glued comment in its text": "a: >-\n  x |#24 y\n",
    "empty non-specific tag": "log:\n  key: !\n",
    "non-specific tag on a number": "a: ! 12\n",
    "explicit str tag": "a: !!str 12\n",
    "colon before a comma in a flow mapping": "a: [{protocol:,udp, port: 1}]\n",
    "merge key": "base: &b {x: 1, y: 2}\nc:\n  <<: *b\n  y: 3\n",
    "alias": "a: &x [1, 2]\nb: *x\n",
    "unhashable key": "? [a, b]\n: 1\n",
    "mapping as a key": "{a: 1}: 2\n",
    "two documents": "a: 1\n---\nb: 2\n",
    "bad indentation": "a:\n  b: 1\n c: 2\n",
    "unclosed flow": "a: [1, 2\nb: 3\n",
    "control character": "a: \x01\n",
    "byte order mark": "\ufeffa: 1\n",
    "CRLF line ends": "a: 1\r\nb:\r\n  - x\r\n",
    "NEL line break": "a: 1\x85b: 2\n",
    "empty": "",
    "comments only": "# nothing\n",
    "null items": "a:\n  -\n  - x\n  -\n",
    "dates and numbers as keys": "2024-01-01: a\n1: b\n0x10: c\nyes: d\n",
    "multi-line flow": "a: [x,\n  y, {k: v,\n  w: z}]\n",
    "non-ASCII": "tên: \"Nguyễn Văn A\"\nghi_chú: sự cố 𝄞\n",
}


@pytest.mark.parametrize("text", TEXTS.values(), ids=TEXTS.keys())
def test_texts_the_readers_differ_on_read_as_pyyaml(text: str) -> None:
    assert one_pass(text) == pyyaml_twice(text)


def test_invalid_yaml_problem_is_pyyaml_s() -> None:
    with pytest.raises(located.ConfigError) as caught:
        located.parse("a:\n  b: 1\n c: 2\n", "x.yaml")
    assert [str(p) for p in caught.value.problems] == [
        "x.yaml:3: invalid YAML: expected <block end>, but found '<block mapping start>'"]


def test_the_rule_pack_is_read_by_libyaml() -> None:
    # The fast path is the point (start-up time): PyYAML's wheels carry libyaml, and
    # no shipped rule file may fall back to the pure-Python reader.
    assert yaml.__with_libyaml__, "PyYAML was installed without libyaml (its C parser)"
    for path in sorted((REPO / "rules").glob("*.yaml")):
        assert located._read_fast(path.read_text(encoding="utf-8")) is not None, path
