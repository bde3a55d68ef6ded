"""Patterns outside the rules must be linear in the text they read.

Python's ``re`` backtracks: a pattern with a repeated part that several starting
positions (or two adjacent quantifiers) can share takes time quadratic in the text.
These were found in socd's own code and fed by input an attacker can shape:

* log redaction (``socd.log``): every logged string and library message goes through
  the URL-credentials pattern, and log lines carry input (peer names, errors quoting a
  record). A long run of letters made ``[a-z][a-z0-9+.-]*://`` retry from each letter;
* IoC imports (``socd.ioc.importers``): the letter-number pattern on MISP ``Event.info``
  and tags (a remote MISP server writes them) and on text-list reference lines, the
  "Số: <letter>" title pattern and the parenthesis stripper of spreadsheet header
  cells, the TTL parser; the plain IoC lists' reference line (now the text-list reader);
* chat escaping (``alerting.notifiers.markup``): the Mattermost/Slack tag lookahead
  on alert text.

Each crafted 64 KiB text took from 3 to 34 seconds before; every one must now finish
within a second (each is milliseconds). The last test imports crafted 256 KiB files
through a real ``socd ioc import`` process (minutes before).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from socd import log
from socd.alerting.notifiers import markup
from socd.ioc import importers

N = 64 * 1024
BOUND_SECS = 1.0  # generous: the linear code takes milliseconds, the old one seconds


def _record(message: str) -> logging.LogRecord:
    return logging.LogRecord("lib", logging.WARNING, __file__, 1, message, None, None)


def _redact(value: str) -> Any:
    return log.redact(None, "warning", {"peer": value})["peer"]


def _text_list(line: str) -> Any:
    return importers.parse_text([line, "198.51.100.1"], importers.Options(source="t"))


def _misp(info: str) -> Any:
    event = {"Event": {"info": info, "Attribute": [
        {"type": "ip-dst", "value": "198.51.100.1", "to_ids": True}]}}
    return importers.parse_misp(json.dumps(event), importers.Options(source="m"))


def _csv(title: str, header_cell: str) -> Any:
    text = f'"{title}"\n"{header_cell}",ip\nx,198.51.100.1\n'
    return importers.parse_csv(text, importers.Options(source="c"))


def _duration(text: str) -> Any:
    try:
        return importers.parse_duration(text)
    except ValueError:
        return None


def _plain_list(line: str) -> Any:
    return importers.parse_text([line, "198.51.100.1"], importers.Options(source="list.txt"))


CASES: dict[str, tuple[Callable[[str], Any], str]] = {
    "log: letters then @": (_redact, "a" * N + "@"),
    "log: scheme then letters": (_redact, "a://" + "b" * N + "@"),
    "log: library message": (lambda s: log._JsonFormatter().format(_record(s)), "x" * N + "@"),
    "text list: digits in the reference line": (_text_list, "# ref: " + "1" * N),
    "text list: digits after a slash": (_text_list, "# ref: 1/" + "1" * N),
    "MISP: digits in Event.info": (_misp, "1" * N),
    "CSV: spaces after Số": (lambda s: _csv(s, "ip"), "Số" + " " * N + "x"),
    "CSV: spaces in a header cell": (lambda s: _csv("t", s), "a" + " " * N + "x"),
    "CSV: opening brackets in a header cell": (lambda s: _csv("t", s), "(" * N),
    "TTL: spaces then junk": (_duration, "5" + " " * N + "x"),
    "plain IoC list: digits in the reference line": (_plain_list, "# ref: " + "1" * N),
    "Mattermost: tag openers": (markup.markdown, "<|" * (N // 2)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_crafted_text_is_handled_in_linear_time(name: str) -> None:
    call, text = CASES[name]
    started = time.perf_counter()
    call(text)
    elapsed = time.perf_counter() - started
    assert elapsed < BOUND_SECS, f"{name}: {elapsed:.2f} s for {len(text)} characters"


def test_results_on_crafted_text_are_still_right() -> None:
    assert _redact("see https://" + "a" * N + ":pw@host/") == "see https://***@host/"
    assert _redact("1abc://u:p@h") == "1abc://***@h"
    entries, _ = _text_list("# ref: " + "1" * N + " 941/CATTT-NCSC")
    assert [e.ref for e in entries] == ["941/CATTT-NCSC"]
    entries, _ = _misp("1" * N + " công văn 1298/CATTT-NCSC")
    assert [e.ref for e in entries] == ["1298/CATTT-NCSC"]
    entries, _ = _csv("Số:" + " " * N + "77/BC-SO", "IP (" + "x" * N + ")")
    assert [e.ref for e in entries] == ["77/BC-SO"]
    assert _duration("5" + " " * N + "d") == 5 * 86400
    assert markup.markdown("<|" * 4 + "<x|y>") == "&lt;\\|" * 4 + "&lt;x\\|y>"


def _import(tmp_path: Path, fmt: str, name: str, content: str
            ) -> tuple[subprocess.CompletedProcess[str], float]:
    (tmp_path / "socd.yaml").write_text(f"state_dir: {tmp_path / 'state'}\n")
    (tmp_path / name).write_text(content, encoding="utf-8")
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "socd", "ioc", "import", "-c", str(tmp_path / "socd.yaml"),
         "--format", fmt, "--source", f"crafted-{fmt}", str(tmp_path / name)],
        capture_output=True, text=True, timeout=600, check=False)
    return done, time.monotonic() - started


def test_socd_ioc_import_of_crafted_files(tmp_path: Path) -> None:
    """A real ``socd ioc import`` of a MISP event, a text list and a CSV appendix whose
    texts are crafted (256 KiB; CSV cells 100 KiB, under the csv module's field limit):
    before, minutes of backtracking each; now seconds."""
    big, cell = 256 * 1024, 100 * 1024
    files = {
        "misp": ("event.json", json.dumps({"Event": {"info": "1" * big, "Attribute": [
            {"type": "ip-dst", "value": "198.51.100.1", "to_ids": True}]}})),
        "text": ("list.txt", "# ref: " + "1" * big + "\n198.51.100.2\n"),
        "csv": ("letter.csv", f'"Số{" " * cell}x"\n"{"(" * cell}",ip\nx,198.51.100.3\n'),
    }
    for fmt, (name, content) in files.items():
        done, elapsed = _import(tmp_path, fmt, name, content)
        assert done.returncode == 0, done.stderr
        assert elapsed < 30, f"{fmt}: {elapsed:.1f} s"


def test_a_csv_cell_over_the_field_limit_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    done, _ = _import(tmp_path, "csv", "huge.csv", f'ip\n"{"1" * 256 * 1024}"\n')
    assert done.returncode == 1
    assert "field larger than field limit" in done.stderr
    assert "Traceback" not in done.stderr
