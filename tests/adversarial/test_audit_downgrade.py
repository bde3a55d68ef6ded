"""Finding 4: the keyed audit log cannot be downgraded by someone without the key.

Real ``socd`` CLI processes append to and verify a real ``audit.db``; the attacker has
write access to the state directory (the database and the anchor) but not the key. They
turn the log into a plain SHA-256 one, edit a record, re-chain every hash and rewrite the
anchor. ``socd audit verify`` with ``SOCD_AUDIT_KEY`` set must fail and name the first
record that the key does not protect.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from socd.alerts.store import AlertStore
from tests.unit.test_alert_cli import alert

KEY = "khóa-kiểm-toán-bí-mật"
GENESIS = "0" * 64


class Site:
    """A config, an alert store with one alert, and the audit log next to it."""

    def __init__(self, tmp_path: Path) -> None:
        state = tmp_path / "state"
        self.config = tmp_path / "socd.yaml"
        self.config.write_text(f"state_dir: {state}\nsinks:\n  store:\n    type: sqlite\n"
                               "    path: alerts.db\n", encoding="utf-8")
        event = alert(0)
        store = AlertStore(str(state / "alerts.db"))
        store.insert([event])
        store.close()
        self.alert_id = str(event["event"]["hash"])
        self.db = state / "audit.db"
        self.anchor = Path(f"{self.db}.anchor")

    def socd(self, *argv: str, key: str | None) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items()
               if k not in ("SOCD_AUDIT_KEY", "SOCD_CONFIG", "SUDO_USER")}
        env["USER"] = "truc-ban"
        if key is not None:
            env["SOCD_AUDIT_KEY"] = key
        return subprocess.run([sys.executable, "-m", "socd", *argv, "-c", str(self.config)],
                              env=env, capture_output=True, text=True, timeout=120,
                              check=False)

    def changes(self, n: int, *, key: str | None) -> None:
        """``n`` audited alert changes through the real CLI (ack/resolve alternate)."""
        for i in range(n):
            verb = ("ack", "resolve")[i % 2]
            done = self.socd("alert", verb, self.alert_id, "--note", f"lần {i}", key=key)
            assert done.returncode == 0, done.stderr

    def verify(self, *extra: str, key: str | None) -> subprocess.CompletedProcess[str]:
        return self.socd("audit", "verify", *extra, key=key)


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


# -- the attacker: write access to the database and the anchor, no key ----------------------


def _plain(row: dict[str, Any]) -> str:
    """The unkeyed record hash, computed as the attacker would from the documented format
    (SHA-256 of the sorted-key JSON of every field but ``hash``)."""
    fields = {k: row[k] for k in ("seq", "ts", "actor", "object_type", "object_id",
                                  "action", "prev_hash")}
    fields["details"] = orjson.loads(row["details"])
    return hashlib.sha256(orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)).hexdigest()


def forge(site: Site, *, edit_seq: int | None = None, delete_from: int | None = None,
          rechain_from: int = 1) -> None:
    """Downgrade the log to plain SHA-256, edit/delete records, re-chain, rewrite anchor."""
    db = sqlite3.connect(site.db, isolation_level=None)
    db.row_factory = sqlite3.Row
    db.execute("BEGIN IMMEDIATE")
    # every hint that the log is keyed goes: the mode flag, per-record marks, key metadata
    db.execute("UPDATE meta SET value = 'sha256' WHERE key = 'mac'")
    db.execute("DELETE FROM meta WHERE key LIKE '%key%'")
    columns = {r[1] for r in db.execute("PRAGMA table_info(audit)")}
    if "mac" in columns:
        db.execute("UPDATE audit SET mac = 'sha256' WHERE seq >= ?", (rechain_from,))
    if delete_from is not None:
        db.execute("DELETE FROM audit WHERE seq >= ?", (delete_from,))
    if edit_seq is not None:
        db.execute("UPDATE audit SET actor = 'ai-do-khac', details = ? WHERE seq = ?",
                   ('{"note":"đã sửa"}', edit_seq))
    rows = [dict(r) for r in db.execute("SELECT * FROM audit ORDER BY seq")]
    prev = GENESIS
    for row in rows:
        if row["seq"] >= rechain_from:
            row["prev_hash"] = prev
            row["hash"] = _plain(row)
            db.execute("UPDATE audit SET prev_hash = ?, hash = ? WHERE seq = ?",
                       (row["prev_hash"], row["hash"], row["seq"]))
        prev = row["hash"]
    db.execute("COMMIT")
    db.close()
    head = rows[-1]
    site.anchor.write_bytes(orjson.dumps({"seq": head["seq"], "hash": head["hash"],
                                          "ts": "2026-12-01T00:00:00.000000Z"}) + b"\n")


# -- tests ------------------------------------------------------------------------------------


def test_downgraded_keyed_log_fails_verify_with_the_key(site: Site) -> None:
    site.changes(4, key=KEY)
    intact = site.verify(key=KEY)
    assert intact.returncode == 0, intact.stderr
    forge(site, edit_seq=2)
    # the forgery is self-consistent: a verifier without the key cannot tell
    assert site.verify(key=None).returncode == 0
    done = site.verify(key=KEY)
    assert done.returncode == 1, done.stdout
    assert "Traceback" not in done.stderr
    assert "first bad record: seq 1" in done.stderr
    assert "record 1 is not protected by the key" in done.stderr


def test_truncated_keyed_log_with_a_rewritten_anchor_fails(site: Site) -> None:
    site.changes(4, key=KEY)
    # no downgrade of the records: cut the last two and move the anchor back
    db = sqlite3.connect(site.db, isolation_level=None)
    db.execute("DELETE FROM audit WHERE seq >= 3")
    head_hash = db.execute("SELECT hash FROM audit WHERE seq = 2").fetchone()[0]
    db.close()
    site.anchor.write_bytes(orjson.dumps({"seq": 2, "hash": head_hash,
                                          "ts": "2026-12-01T00:00:00.000000Z"}) + b"\n")
    done = site.verify(key=KEY)
    assert done.returncode == 1, done.stdout
    assert "Traceback" not in done.stderr
    assert "anchor" in done.stderr
    assert "not protected by the key" in done.stderr


def test_truncated_keyed_log_with_the_anchor_deleted_fails(site: Site) -> None:
    site.changes(3, key=KEY)
    db = sqlite3.connect(site.db, isolation_level=None)
    db.execute("DELETE FROM audit WHERE seq = 3")
    db.close()
    site.anchor.unlink()
    done = site.verify(key=KEY)
    assert done.returncode == 1, done.stdout
    assert "anchor file" in done.stderr
    assert "Traceback" not in done.stderr


def test_key_configured_on_an_existing_unkeyed_log(site: Site) -> None:
    site.changes(2, key=None)   # records 1-2 before the key
    site.changes(2, key=KEY)    # records 3-4 with it
    loud = site.verify(key=KEY)
    assert loud.returncode == 1, loud.stdout
    assert "record 1 is not protected by the key" in loud.stderr
    assert "--allow-unkeyed-before 3" in loud.stderr
    accepted = site.verify("--allow-unkeyed-before", "3", key=KEY)
    assert accepted.returncode == 0, accepted.stderr
    assert "records 1..2 are not keyed" in accepted.stderr
    # the attacker downgrades the keyed part too: the operator's boundary still holds
    forge(site, edit_seq=4, rechain_from=3)
    done = site.verify("--allow-unkeyed-before", "3", key=KEY)
    assert done.returncode == 1, done.stdout
    assert "record 3 is not protected by the key" in done.stderr
    # ... and cutting off every keyed record is a truncation
    forge(site, delete_from=3, rechain_from=3)
    done = site.verify("--allow-unkeyed-before", "3", key=KEY)
    assert done.returncode == 1, done.stdout
    assert "cut off" in done.stderr


def test_unkeyed_deployment_still_verifies(site: Site) -> None:
    site.changes(3, key=None)
    assert site.verify(key=None).returncode == 0
    forge(site, edit_seq=2, rechain_from=3)  # edited, later records re-chained: caught
    done = site.verify(key=None)
    assert done.returncode == 1
    assert "first bad record: seq 2" in done.stderr
