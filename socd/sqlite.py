"""Opening socd's SQLite files the same way everywhere.

Every store (alerts, IoCs, block decisions, incidents, the audit log, the
notification queue) is one SQLite file in WAL mode, shared between the daemon and
the CLI: readers never block the writer, and ``busy_timeout`` makes a second
writer wait instead of failing. Connections are in autocommit mode
(``isolation_level=None``): each store runs its own explicit transactions.
"""

from __future__ import annotations

import os
import sqlite3
from typing import Literal


def open_db(path: str, *, synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
            busy_timeout_ms: int = 10_000) -> sqlite3.Connection:
    """Open (creating its folder, mode 0750) a SQLite file in WAL mode.

    ``synchronous=FULL`` makes every commit durable against power loss (queues whose
    input was acknowledged); ``NORMAL`` survives a crash of socd, not of the machine,
    for one fsync less per transaction.
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o750, exist_ok=True)
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
