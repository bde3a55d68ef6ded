"""The hash-chained audit log: appends, verification, and tampering detected."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from socd import cli
from socd.alerts import audit
from socd.alerts.audit import GENESIS, AuditLog, canonical, digest, verify
from socd.alerts.lifecycle import Status, assign, set_status
from socd.alerts.store import AlertStore
from socd.cli import main
from tests.unit.test_alert_cli import alert


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOCD_AUDIT_KEY", raising=False)
    monkeypatch.delenv("SOCD_CONFIG", raising=False)
    if "socd.cli.audit" not in cli._COMMAND_MODULES:
        monkeypatch.setattr(cli, "_COMMAND_MODULES",
                            (*cli._COMMAND_MODULES, "socd.cli.audit"))


@pytest.fixture
def config(tmp_path: Path) -> tuple[str, Path]:
    """A config whose audit log is <state>/audit.db, with 6 records in it."""
    state = tmp_path / "state"
    cfg = tmp_path / "socd.yaml"
    cfg.write_text(f"state_dir: {state}\nsinks:\n  store:\n    type: sqlite\n"
                   "    path: alerts.db\n", encoding="utf-8")
    log = AuditLog(str(state / "audit.db"))
    for i in range(1, 7):
        log.append("an", "incident", f"SC-2026-000{i % 2 + 1}", "action",
                   {"layer": 1, "text": f"việc {i}"})
    log.close()
    return str(cfg), state / "audit.db"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_chain_and_hashes(tmp_path: Path) -> None:
    log = AuditLog(str(tmp_path / "audit.db"))
    first = log.append("an", "alert", "ab" * 20, "ack", {"status_to": "acknowledged"})
    second = log.append("bình", "incident", "SC-2026-0001", "open", {"title": "Sự cố"})
    log.close()
    assert (first.seq, first.prev_hash) == (1, GENESIS)
    assert (second.seq, second.prev_hash) == (2, first.hash)
    expected = digest(canonical(2, second.ts, "bình", "incident", "SC-2026-0001", "open",
                                {"title": "Sự cố"}, first.hash), None)
    assert second.hash == expected
    # canonical = sorted keys, so a JSON re-serialization in any order hashes the same
    assert orjson.loads(canonical(1, "t", "a", "alert", "x", "y", {"b": 1, "a": 2}, GENESIS)) \
        == {"action": "y", "actor": "a", "details": {"a": 2, "b": 1}, "object_id": "x",
            "object_type": "alert", "prev_hash": GENESIS, "seq": 1, "ts": "t"}
    result = verify(str(tmp_path / "audit.db"))
    assert result.ok
    assert result.records == 2
    assert result.head_seq == 2
    assert result.anchor == (2, second.hash)


def test_verify_ok_prints_the_head(config: tuple[str, Path],
                                   capsys: pytest.CaptureFixture[str]) -> None:
    cfg, path = config
    code, out, err = run(capsys, "audit", "verify", "-c", cfg)
    assert (code, err) == (0, "")
    head = verify(str(path))
    assert f"head: 6:{head.head_hash}" in out
    code, out, _ = run(capsys, "audit", "verify", "--head", f"6:{head.head_hash}", "-c", cfg)
    assert code == 0
    code, out, _ = run(capsys, "audit", "show", "--object", "sc-2026-1", "--json", "-c", cfg)
    assert [orjson.loads(line)["seq"] for line in out.splitlines()] == [2, 4, 6]


def _edit(db: sqlite3.Connection) -> None:
    db.execute("UPDATE audit SET details = ? WHERE seq = 3",
               ('{"layer":2,"text":"việc khác"}',))


def _delete(db: sqlite3.Connection) -> None:
    db.execute("DELETE FROM audit WHERE seq = 3")


def _delete_and_renumber(db: sqlite3.Connection) -> None:
    db.execute("DELETE FROM audit WHERE seq = 3")
    db.execute("UPDATE audit SET seq = seq - 1 WHERE seq > 3")


def _swap(db: sqlite3.Connection) -> None:
    """Rows 3 and 4 exchange places (their seq numbers are swapped)."""
    db.execute("UPDATE audit SET seq = -3 WHERE seq = 3")
    db.execute("UPDATE audit SET seq = 3 WHERE seq = 4")
    db.execute("UPDATE audit SET seq = 4 WHERE seq = -3")


def _swap_contents(db: sqlite3.Connection) -> None:
    """Records 3 and 4 exchange everything but seq, hashes included."""
    cols = "ts, actor, object_type, object_id, action, details, prev_hash, hash"
    three = db.execute(f"SELECT {cols} FROM audit WHERE seq = 3").fetchone()
    four = db.execute(f"SELECT {cols} FROM audit WHERE seq = 4").fetchone()
    sets = ", ".join(f"{c.strip()} = ?" for c in cols.split(","))
    db.execute(f"UPDATE audit SET {sets} WHERE seq = 3", four)
    db.execute(f"UPDATE audit SET {sets} WHERE seq = 4", three)


def _rehash_edit(db: sqlite3.Connection) -> None:
    """Edit record 3 and recompute its hash (no key): record 4 no longer links."""
    row = db.execute("SELECT ts, actor, object_type, object_id, action, prev_hash FROM audit "
                     "WHERE seq = 3").fetchone()
    details = {"layer": 2, "text": "giả mạo"}
    value = digest(canonical(3, row[0], row[1], row[2], row[3], row[4], details, row[5]),
                   None)
    db.execute("UPDATE audit SET details = ?, hash = ? WHERE seq = 3",
               (orjson.dumps(details).decode(), value))


def _truncate(db: sqlite3.Connection) -> None:
    db.execute("DELETE FROM audit WHERE seq >= 5")


@pytest.mark.parametrize(("tamper", "first_bad", "words"), [
    (_edit, 3, "record 3 was altered"),
    (_delete, 3, "record 3 is missing (deleted)"),
    (_delete_and_renumber, 3, "record 3 was altered"),
    (_swap, 3, "record 3 was altered"),
    (_swap_contents, 3, "re-ordered"),
    (_rehash_edit, 4, "record 4 does not follow record 3"),
    (_truncate, 5, "records 5..6 were cut off the end"),
])
def test_tampering_is_detected(config: tuple[str, Path], capsys: pytest.CaptureFixture[str],
                               tamper: Callable[[sqlite3.Connection], None], first_bad: int,
                               words: str) -> None:
    cfg, path = config
    db = sqlite3.connect(path, isolation_level=None)
    tamper(db)
    db.close()
    code, out, err = run(capsys, "audit", "verify", "-c", cfg)
    assert code == 1
    assert f"first bad record: seq {first_bad}" in err
    assert words in err


def test_truncation_without_anchor_needs_the_paper_head(config: tuple[str, Path],
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    cfg, path = config
    head = verify(str(path))
    Path(audit.anchor_path(str(path))).unlink()
    db = sqlite3.connect(path, isolation_level=None)
    _truncate(db)
    db.close()
    code, _, err = run(capsys, "audit", "verify", "-c", cfg)
    assert code == 0
    assert "no anchor file" in err
    code, _, err = run(capsys, "audit", "verify", "--head", f"6:{head.head_hash}", "-c", cfg)
    assert code == 1
    assert "first bad record: seq 5" in err


def test_deleted_log_is_detected(config: tuple[str, Path],
                                 capsys: pytest.CaptureFixture[str]) -> None:
    cfg, path = config
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    code, _, err = run(capsys, "audit", "verify", "-c", cfg)
    assert code == 1
    assert "MISSING" in err


def test_hmac_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "audit.db")
    monkeypatch.setenv("SOCD_AUDIT_KEY", "khóa-bí-mật")
    log = AuditLog(path)
    rec = log.append("an", "incident", "SC-2026-0001", "open", {})
    log.close()
    # the HMAC covers the record and its mode
    assert rec.mac == "hmac-sha256"
    assert rec.hash == digest(canonical(1, rec.ts, "an", "incident", "SC-2026-0001", "open",
                                        {}, GENESIS, mac="hmac-sha256"), "khóa-bí-mật".encode())
    assert verify(path).ok
    # a forger without the key recomputes plain SHA-256: detected
    db = sqlite3.connect(path, isolation_level=None)
    forged = digest(canonical(1, rec.ts, "an", "incident", "SC-2026-0001", "open",
                              {"x": 1}, GENESIS), None)
    db.execute("UPDATE audit SET details = '{\"x\":1}', hash = ? WHERE seq = 1", (forged,))
    db.close()
    assert verify(path).first_bad_seq == 1
    assert not verify(path, key=b"wrong").ok
    monkeypatch.delenv("SOCD_AUDIT_KEY")
    with pytest.raises(audit.AuditError, match="keyed"):
        verify(path)


def test_concurrent_appends_keep_one_chain(tmp_path: Path) -> None:
    path = str(tmp_path / "audit.db")
    AuditLog(path).close()

    def worker(n: int) -> None:
        log = AuditLog(path)  # one connection each, like separate processes
        for i in range(25):
            log.append(f"w{n}", "incident", "SC-2026-0001", "action", {"i": i})
        log.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result = verify(path)
    assert result.ok
    assert result.records == 100
    assert result.anchor == (100, result.head_hash)


def test_alert_changes_are_audited(tmp_path: Path) -> None:
    store = AlertStore(str(tmp_path / "alerts.db"))
    event = alert(0)
    store.insert([event])
    alert_id = event["event"]["hash"]
    set_status(store, alert_id, Status.ACKNOWLEDGED, by="an")
    set_status(store, alert_id, Status.ACKNOWLEDGED, by="an")  # no-op: not audited
    set_status(store, alert_id, Status.FALSE_POSITIVE, by="an", note="quét nội bộ")
    assign(store, alert_id, "bình", by="an")
    store.close()
    log = AuditLog(str(tmp_path / "audit.db"))
    records = list(log.records(alert_id))
    log.close()
    assert [(r.action, r.object_type, r.actor) for r in records] == [
        ("ack", "alert", "an"), ("false_positive", "alert", "an"), ("assign", "alert", "an")]
    assert records[1].details == {"status_from": "acknowledged", "status_to": "false_positive",
                                  "assignee_from": "an", "assignee_to": "an",
                                  "note": "quét nội bộ"}
    assert verify(str(tmp_path / "audit.db")).ok


def _legacy_keyed_log(path: str, key: bytes) -> None:
    """A log as written before records had a mode: the chain mode in ``meta``, HMACs over
    the record alone."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("CREATE TABLE audit (seq INTEGER PRIMARY KEY, ts TEXT NOT NULL, actor TEXT NOT "
               "NULL, object_type TEXT NOT NULL, object_id TEXT NOT NULL, action TEXT NOT "
               "NULL, details TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL)")
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute("INSERT INTO meta VALUES ('mac', 'hmac-sha256')")
    prev = GENESIS
    for seq in (1, 2):
        value = digest(canonical(seq, "2026-11-01T00:00:00Z", "an", "incident",
                                 "SC-2026-0001", "open", {}, prev), key)
        db.execute("INSERT INTO audit VALUES (?,?,?,?,?,?,?,?,?)",
                   (seq, "2026-11-01T00:00:00Z", "an", "incident", "SC-2026-0001", "open",
                    "{}", prev, value))
        prev = value
    db.close()
    Path(audit.anchor_path(path)).write_bytes(orjson.dumps({"seq": 2, "hash": prev,
                                                            "ts": "2026-11-01T00:00:00Z"}))


def test_legacy_keyed_log_keeps_verifying(tmp_path: Path) -> None:
    path = str(tmp_path / "audit.db")
    _legacy_keyed_log(path, b"k")
    result = verify(path, key=b"k")
    assert result.ok, result.problems
    assert "before anchors carried an HMAC" in result.warnings[0]
    log = AuditLog(path, b"k")
    assert [r.mac for r in log.records()] == ["hmac-sha256-v1"] * 2
    log.append("an", "incident", "SC-2026-0001", "close", {})
    log.close()
    assert verify(path, key=b"k").ok
    with pytest.raises(audit.AuditError, match="keyed"):
        verify(path, use_env=False)
    # relabelling a record's mode does not help a forger: the HMAC no longer matches
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("UPDATE audit SET mac = 'hmac-sha256-v1' WHERE seq = 3")
    db.close()
    assert verify(path, key=b"k").first_bad_seq == 3


def test_unknown_mode_and_keyed_append_without_key(tmp_path: Path) -> None:
    path = str(tmp_path / "audit.db")
    log = AuditLog(path, b"k")
    log.append("an", "incident", "SC-2026-0001", "open", {})
    log.close()
    unkeyed = AuditLog(path, use_env=False)
    with pytest.raises(audit.AuditError, match="keyed"):
        unkeyed.append("an", "incident", "SC-2026-0001", "close", {})
    unkeyed.close()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("UPDATE audit SET mac = 'md5' WHERE seq = 1")
    db.close()
    result = verify(path, key=b"k")
    assert [p.kind for p in result.problems] == ["edited", "unkeyed"]
    assert "unknown hash mode 'md5'" in result.problems[0].message
