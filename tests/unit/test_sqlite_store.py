"""The SQLite store base (socd.sqlite): schema versions and upgrades, transactions,
read-only opens, file modes."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from socd.errors import SocdError
from socd.sqlite import NoDatabase, Schema, Store, read_only, script, transaction


def _v1_to_v2(db: sqlite3.Connection) -> None:
    db.execute("UPDATE t SET x = x * 10")


class Versioned(Store):
    schema = Schema(
        name="test store",
        create=("CREATE TABLE IF NOT EXISTS t (x INTEGER, y INTEGER)",
                "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"),
        version="2",
        upgrades={"1": ("ALTER TABLE t ADD COLUMN y INTEGER", _v1_to_v2)},
        unknown="newer",
    )


class Tolerant(Store):
    schema = Schema(name="tolerant store", create=Versioned.schema.create, version="2",
                    unknown="ignore")


def _version(path: Path) -> str | None:
    db = sqlite3.connect(path)
    try:
        row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    finally:
        db.close()
    return None if row is None else str(row[0])


def _v1_file(path: Path, version: str = "1") -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE t (x INTEGER)")
    db.execute("INSERT INTO t VALUES (4)")
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (version,))
    db.commit()
    db.close()


def test_a_new_file_gets_the_schema_and_its_version_privately(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "s.db"
    Versioned(str(path)).close()
    assert _version(path) == "2"
    assert os.stat(path).st_mode & 0o777 == 0o640
    assert os.stat(path.parent).st_mode & 0o777 == 0o750


def test_an_older_file_is_upgraded_in_one_transaction(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    _v1_file(path)
    store = Versioned(str(path))
    with store.reading() as db:
        assert db.execute("SELECT x, y FROM t").fetchall() == [(40, None)]
    store.close()
    assert _version(path) == "2"


def test_a_failed_upgrade_leaves_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    _v1_file(path)
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE t ADD COLUMN y INTEGER")  # the upgrade's ALTER now fails
    db.commit()
    db.close()
    with pytest.raises(sqlite3.OperationalError):
        Versioned(str(path))
    assert _version(path) == "1"


def test_unknown_versions_are_refused_or_kept(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    _v1_file(path, version="7")
    with pytest.raises(SocdError, match="test store schema version 7 is newer than this "
                                        "socd supports \\(2\\); upgrade socd"):
        Versioned(str(path))
    with pytest.raises(SocdError, match="newer"):
        Versioned(str(path), readonly=True)
    Tolerant(str(path)).close()
    assert _version(path) == "7"


def test_transactions_commit_roll_back_and_end_early(tmp_path: Path) -> None:
    store = Versioned(str(tmp_path / "s.db"))
    with store.transaction() as tx:
        tx.db.execute("INSERT INTO t VALUES (1, 1)")

    def fail() -> None:
        with store.transaction() as tx:
            tx.db.execute("INSERT INTO t VALUES (2, 2)")
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        fail()
    with store.transaction() as tx:
        tx.db.execute("INSERT INTO t VALUES (3, 3)")
        tx.rollback()
    with store.reading() as db:
        assert db.execute("SELECT x FROM t").fetchall() == [(1,)]
        assert db.in_transaction is False
    store.close()


def test_a_failed_rollback_does_not_hide_the_error(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "s.db", isolation_level=None)

    def fail() -> None:
        with transaction(db):
            db.execute("ROLLBACK")  # SQLite ended the transaction itself (a full disk)
            raise KeyError("the first error")

    with pytest.raises(KeyError, match="the first error"):
        fail()
    db.close()


def test_read_only_opens_create_nothing(tmp_path: Path) -> None:
    path = tmp_path / "none.db"
    with read_only(str(path)) as db:
        assert db is None
    with pytest.raises(NoDatabase):
        Versioned(str(path), readonly=True)
    assert not path.exists()
    Versioned(str(path)).close()
    with read_only(str(path)) as db:
        assert db is not None
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            db.execute("INSERT INTO t VALUES (1, 1)")


def test_script_keeps_trigger_bodies_whole() -> None:
    statements = script("""
    CREATE TABLE a (x);
    CREATE TRIGGER a_ro BEFORE DELETE ON a
    BEGIN SELECT RAISE(ABORT, 'no; never'); END;
    CREATE INDEX a_x ON a (x)
    """)
    assert statements[0] == "CREATE TABLE a (x);"
    assert statements[1].startswith("CREATE TRIGGER")
    assert statements[1].endswith("'no; never'); END;")
    assert statements[2] == "CREATE INDEX a_x ON a (x);"
    assert len(statements) == 3
