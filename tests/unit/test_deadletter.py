"""The dead-letter file keeps every byte of what could not be delivered."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from socd.app import deadletter
from socd.app.deadletter import DeadLetter

from .conftest import sample_value

RAWS = [
    b'{"message": "xin ch\xc3\xa0o"}',
    b"\xff\xfe\xfd invalid utf-8 \xc3\x28",
    bytes(range(256)),
    b"",
    b"line\nwith\r\nnewlines\x00and NUL",
]


def test_raw_bytes_round_trip(tmp_path: Path, uid: str) -> None:
    dl = DeadLetter(str(tmp_path / "dl"))
    try:
        for raw in RAWS:
            dl.write(stage="decode", reason="invalid_json", raw=raw, collector=uid,
                     source="edr/alerts", detail="bad")
    finally:
        dl.close()
    entries = deadletter.read(dl.path)
    assert [e["raw"] for e in entries] == RAWS
    for entry, raw in zip(entries, RAWS, strict=True):
        assert entry["raw_bytes"] == len(raw)
        assert base64.b64decode(entry["raw_b64"]) == raw
        assert (entry["stage"], entry["reason"], entry["collector"], entry["source"]) == (
            "decode", "invalid_json", uid, "edr/alerts")
        assert isinstance(entry["time"], float)
    # One JSON object a line, whatever the raw bytes were.
    lines = Path(dl.path).read_bytes().splitlines()
    assert len(lines) == len(RAWS)
    for line in lines:
        orjson.loads(line)


@settings(max_examples=50, deadline=None)
@given(raw=st.binary(max_size=512))
def test_any_bytes_round_trip(tmp_path_factory: pytest.TempPathFactory, raw: bytes) -> None:
    directory = tmp_path_factory.mktemp("dl")
    dl = DeadLetter(str(directory))
    try:
        dl.write(stage="collect", reason="oversize", raw=raw)
    finally:
        dl.close()
    (entry,) = deadletter.read(dl.path)
    assert entry["raw"] == raw


def test_event_entries_and_non_json_values(dead_letter: DeadLetter) -> None:
    from datetime import UTC, datetime

    event = {"message": "nghiêm trọng", "when": datetime(2026, 11, 16, tzinfo=UTC),
             "socd": {"collector": "c"}}
    dead_letter.write(stage="sink/es", reason="rejected", event=event, detail="x" * 5000)
    dead_letter.close()
    (entry,) = deadletter.read(dead_letter.path)
    assert entry["event"]["message"] == "nghiêm trọng"
    assert entry["event"]["when"].startswith("2026-11-16")
    assert "raw" not in entry
    assert len(entry["detail"]) == 2000


def test_counts_drops(dead_letter: DeadLetter, uid: str) -> None:
    stage = f"sink/{uid}"
    dead_letter.write(stage=stage, reason="rejected", raw=b"x")
    dead_letter.write(stage=stage, reason="rejected", raw=b"y")
    dead_letter.write(stage=stage, reason="shutdown_timeout", raw=b"z")
    assert sample_value("socd_events_dropped_total", stage=stage, reason="rejected") == 2
    assert sample_value("socd_events_dropped_total", stage=stage,
                        reason="shutdown_timeout") == 1
    assert sample_value("socd_dead_letters_total", stage=stage) == 3


def test_directory_created_lazily(tmp_path: Path) -> None:
    directory = tmp_path / "a" / "b"
    dl = DeadLetter(str(directory))
    assert not directory.exists()
    dl.write(stage="s", reason="r", raw=b"1")
    dl.close()
    assert (directory / "dead-letter.ndjson").is_file()


def test_appends_across_instances(tmp_path: Path) -> None:
    for raw in (b"first", b"second"):
        dl = DeadLetter(str(tmp_path))
        dl.write(stage="s", reason="r", raw=raw)
        dl.close()
    assert [e["raw"] for e in deadletter.read(str(tmp_path / "dead-letter.ndjson"))] == [
        b"first", b"second"]


def test_rotation_by_size_keeps_max_files(tmp_path: Path) -> None:
    # Every entry is larger than max_file_bytes, so every write rotates; all of them
    # happen within the same second.
    dl = DeadLetter(str(tmp_path), max_file_bytes=1024, max_files=3)
    try:
        for i in range(8):
            dl.write(stage="s", reason="r", raw=bytes([i]) * 2000)
    finally:
        dl.close()
    rotated = sorted(f for f in os.listdir(tmp_path) if f.startswith("dead-letter-"))
    assert len(rotated) == 3
    # The newest ones are kept, oldest first by name, each still readable.
    kept = [deadletter.read(str(tmp_path / f))[0]["raw"][0] for f in rotated]
    assert kept == [5, 6, 7]
    assert not (tmp_path / "dead-letter.ndjson").exists() or deadletter.read(
        str(tmp_path / "dead-letter.ndjson")) == []


def test_rotation_continues_in_a_fresh_file(tmp_path: Path) -> None:
    dl = DeadLetter(str(tmp_path), max_file_bytes=1024, max_files=5)
    try:
        dl.write(stage="s", reason="r", raw=b"a" * 1500)  # rotates
        dl.write(stage="s", reason="r", raw=b"small")     # stays in the current file
    finally:
        dl.close()
    assert [e["raw"] for e in deadletter.read(dl.path)] == [b"small"]
    rotated = [f for f in os.listdir(tmp_path) if f.startswith("dead-letter-")]
    assert len(rotated) == 1


def test_dead_letter_warnings_are_rate_limited(tmp_path: Path) -> None:
    """A flood of garbage is written and counted in full, but logged once per interval
    and reason, with the number left unlogged (issue 12: no log flooding from input)."""
    from structlog.testing import capture_logs

    dl = DeadLetter(str(tmp_path))
    with capture_logs() as logs:
        for i in range(500):
            dl.write(stage="decode", reason="invalid_json", raw=b"x%d" % i)
        dl.write(stage="decode", reason="oversize", raw=b"y")
        dl._quiet[("decode", "invalid_json")][0] -= 60  # the interval has passed
        dl.write(stage="decode", reason="invalid_json", raw=b"z")
    dl.close()
    assert len(deadletter.read(dl.path)) == 502
    warnings = [e for e in logs if e["event"] == "record dead-lettered"]
    assert [(e["reason"], e.get("more_since_last_log")) for e in warnings] == [
        ("invalid_json", None), ("oversize", None), ("invalid_json", 499)]
