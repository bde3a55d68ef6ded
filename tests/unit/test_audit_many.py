"""AuditLog.append_many (issue 19, bulk actions of the analyst console): many records in
one transaction, each its own link of the chain, the anchor moved once; all or none."""

from __future__ import annotations

from pathlib import Path

import pytest

from socd.alerts.audit import AuditLog, Entry, read_anchor, verify


def _entries(n: int, start: int = 0) -> list[Entry]:
    return [Entry("an", "alert", f"{i:040x}", "ack", {"status_to": "acknowledged", "i": i})
            for i in range(start, start + n)]


def test_many_records_chain_and_verify(tmp_path: Path) -> None:
    path = str(tmp_path / "audit.db")
    log = AuditLog(path, use_env=False)
    try:
        log.append("an", "incident", "SC-2026-0001", "open")
        out = log.append_many(_entries(300))
        assert [r.seq for r in out] == list(range(2, 302))
        assert all(b.prev_hash == a.hash for a, b in zip(out, out[1:], strict=False))
        log.append("an", "alert", "f" * 40, "resolve")
        assert log.append_many([]) == []
        one = list(log.records(f"{7:040x}"))
        assert [(r.action, r.details["i"]) for r in one] == [("ack", 7)]
        assert read_anchor(path + ".anchor") == log.head()
    finally:
        log.close()
    assert verify(path, use_env=False).ok


def test_keyed_records_verify_with_the_key(tmp_path: Path) -> None:
    path = str(tmp_path / "audit.db")
    log = AuditLog(path, key=b"k" * 32, use_env=False)
    try:
        log.append_many(_entries(20))
    finally:
        log.close()
    assert verify(path, key=b"k" * 32, use_env=False).ok
    assert not verify(path, key=b"x" * 32, use_env=False).ok


def test_all_or_none(tmp_path: Path) -> None:
    path = str(tmp_path / "audit.db")
    log = AuditLog(path, use_env=False)
    try:
        log.append_many(_entries(3))
        bad = [*_entries(5, 3), Entry("an", "alert", "x", "ack", {"not json": {1, 2}})]
        with pytest.raises(TypeError):
            log.append_many(bad)
        assert log.head()[0] == 3
    finally:
        log.close()
    assert verify(path, use_env=False).ok
