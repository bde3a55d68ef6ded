"""Opening socd's SQLite files the same way everywhere.

Every store (alerts, IoCs, block decisions, incidents, the audit log, the
notification queue) is one SQLite file in WAL mode, shared between the daemon and
the CLI: readers never block the writer, and ``busy_timeout`` makes a second
writer wait instead of failing. Connections are in autocommit mode
(``isolation_level=None``): each store runs its own explicit transactions.

Files are private whatever the umask (:mod:`socd.filemode`): the database is created
0640 before SQLite opens it (SQLite gives its ``-wal`` and ``-shm`` files the database's
mode), and existing files with looser modes are tightened.
"""

from __future__ import annotations

import sqlite3
from typing import Final, Literal

from socd.filemode import create_private, tighten

SIDECARS: Final = ("-wal", "-shm", "-journal")


def prepare(path: str) -> None:
    """Create the folder (0750) and an empty database file (0640) unless they exist, and
    tighten a looser mode of the file and its sidecars: SQLite itself would create them
    0644 minus the umask."""
    create_private(path)
    for suffix in SIDECARS:
        tighten(path + suffix)


def open_db(path: str, *, synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
            busy_timeout_ms: int = 10_000) -> sqlite3.Connection:
    """Open (creating it 0640 and its folder 0750, see :func:`prepare`) a SQLite file in
    WAL mode.

    ``synchronous=FULL`` makes every commit durable against power loss (queues whose
    input was acknowledged); ``NORMAL`` survives a crash of socd, not of the machine,
    for one fsync less per transaction.
    """
    prepare(path)
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    try:
        # busy_timeout first: switching to WAL waits for a writer that holds the file.
        db.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={synchronous}")
    except BaseException:
        db.close()
        raise
    return db
