"""The shipped rule pack, parsed ahead of time: what :func:`socd.config.located.parse`
makes of each file (its data and the line of every key path), as JSON beside the files.

Every ``socd replay`` and ``socd check-config`` reads the rule pack (320 kB of YAML),
and parsing it took ~35 ms of their ~0.25 s start (issue 17); reading its parsed form
takes ~6 ms. The form is trusted as the package's own files are (it ships in the
package, written by :func:`write`, never at run time), and used for a file only when
all of these hold, else the file is parsed as usual:

* the SHA-256 of the text read now is the one the form was made from (an edited rule
  file is parsed: a stale form is only slower, and a test keeps it current);
* the form was made by this socd and this PyYAML version;
* the form holds the file (a file whose data JSON cannot hold exactly, such as a date
  or a non-text key, is left out by :func:`build`).

A file that fails to parse is never in the form, so every error message, with its file
and line, is the parser's.

Regenerate after changing a rule file: ``python -m socd.config.parsed``.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Iterable
from typing import Any

import orjson
import yaml

from socd import __version__
from socd.config.located import Loc, Located, parse

FILE_NAME = "parsed-rules.json"
_FORMAT = 1


def _stamp() -> dict[str, Any]:
    return {"format": _FORMAT, "socd": __version__, "pyyaml": yaml.__version__}


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _json_exact(value: Any) -> bool:
    """Whether JSON gives ``value`` back as it is: text keys; str, int (64-bit), finite
    float, bool and None leaves; lists and mappings."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and _json_exact(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_json_exact(v) for v in value)
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return True
    if isinstance(value, int):
        return -(2 ** 63) <= value < 2 ** 63
    if isinstance(value, float):
        return math.isfinite(value)
    return False


def build(files: Iterable[str]) -> dict[str, Any]:
    """The parsed form of ``files`` (by base name), of those that parse and that JSON
    holds exactly."""
    out: dict[str, Any] = {**_stamp(), "files": {}}
    for path in sorted(files):
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        located = parse(text, path)  # raises for a file with a YAML error: fix it first
        if not _json_exact(located.data) or not all(
                isinstance(p, str | int) and not isinstance(p, bool)
                for loc in located.lines for p in loc):
            continue
        lines = [[list(loc), line] for loc, line in located.lines.items()]
        out["files"][os.path.basename(path)] = {
            "sha256": _digest(text), "data": located.data, "lines": lines}
    return out


def encode(form: dict[str, Any]) -> bytes:
    """JSON with one line per file: a rule change makes a one-line change here."""
    head = orjson.dumps({k: v for k, v in form.items() if k != "files"})
    files = b",\n".join(orjson.dumps(name) + b": " + orjson.dumps(entry)
                        for name, entry in form["files"].items())
    return head[:-1] + b', "files": {\n' + files + b"\n}}\n"


def write(directory: str, files: Iterable[str]) -> str:
    """Write the parsed form of ``files`` into ``directory``; returns its path."""
    path = os.path.join(directory, FILE_NAME)
    with open(path, "wb") as fh:
        fh.write(encode(build(files)))
    return path


class Parsed:
    """The parsed form of one directory's rule files, read once (:func:`load`)."""

    __slots__ = ("_files",)

    def __init__(self, files: dict[str, Any]) -> None:
        self._files = files

    def located(self, text: str, file: str) -> Located | None:
        """What ``parse(text, file)`` returns, from the form; None when the form does
        not hold this text (then parse it)."""
        entry = self._files.get(os.path.basename(file))
        if not isinstance(entry, dict) or entry.get("sha256") != _digest(text):
            return None
        lines: dict[Loc, int] = {tuple(loc): line for loc, line in entry["lines"]}
        return Located(file, entry["data"], lines)


def load(directory: str) -> Parsed | None:
    """The parsed form in ``directory`` when there is one made by this socd and PyYAML
    version; None otherwise (every file is then parsed)."""
    try:
        with open(os.path.join(directory, FILE_NAME), "rb") as fh:
            form = orjson.loads(fh.read())
    except (OSError, orjson.JSONDecodeError):
        return None
    if not isinstance(form, dict) or any(form.get(k) != v for k, v in _stamp().items()):
        return None
    files = form.get("files")
    return Parsed(files) if isinstance(files, dict) else None


def builtin_files() -> tuple[str, list[str]]:
    """The shipped rule pack's directory (the ``socd.rules`` package) and its files (the
    rule loader's ``builtin``)."""
    import socd.rules

    directory = os.path.dirname(os.path.abspath(socd.rules.__file__))
    return directory, sorted(os.path.join(directory, name) for name in os.listdir(directory)
                             if name.endswith((".yaml", ".yml")))


if __name__ == "__main__":  # python -m socd.config.parsed: regenerate the shipped form
    import sys

    sys.stdout.write(write(*builtin_files()) + "\n")
