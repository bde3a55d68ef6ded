"""Opening socd's SQLite files the same way everywhere.

Every store (alerts, IoCs, block decisions, incidents, the audit log, the
notification queue) is one SQLite file in WAL mode, shared between the daemon and
the CLI: readers never block the writer, and ``busy_timeout`` makes a second
writer wait instead of failing. Connections are in autocommit mode
(``isolation_level=None``): each store runs its own explicit transactions.

Files are private whatever the umask (:mod:`socd.filemode`): the database is created
0640 before SQLite opens it (SQLite gives its ``-wal`` and ``-shm`` files the database's
mode), and existing files with looser modes are tightened.

Commands that only read open the file read-only (``readonly=True``): they never create
a database (a missing one is :class:`NoDatabase`, "no data yet"), so a ``socd incident
list`` run by the wrong user cannot leave a file the daemon later fails to write. When
the operating system refuses a read or write, the error names the file, the sidecar or
folder at fault, its owner and mode, and the command that fixes it
(:class:`DatabaseAccessError`), instead of SQLite's bare "attempt to write a readonly
database".
"""

from __future__ import annotations

import os
import sqlite3
import urllib.parse
from collections.abc import Iterable
from typing import Any, Final, Literal

from socd.errors import SocdError
from socd.filemode import create_private, tighten

SIDECARS: Final = ("-wal", "-shm", "-journal")


class NoDatabase(SocdError):
    """A read-only open of a database that does not exist yet: nothing was stored."""

    def __init__(self, path: str) -> None:
        super().__init__(f"{path} does not exist yet (nothing stored)")
        self.path = path


class DatabaseAccessError(sqlite3.OperationalError, SocdError):
    """The OS refused to read or write a database file. Still a ``sqlite3`` error
    (callers that catch those keep working), with a message that says which file and
    how to fix it; ``hint`` holds the fix alone."""

    def __init__(self, path: str, error: BaseException, *, readonly: bool = False) -> None:
        from socd import access

        problem = (access.Problem(f"{path} is open for reading only here")
                   if readonly else access.database_problem(path))
        super().__init__(f"{path}: {error}: {problem.message}"
                         + (f" (fix: {problem.hint})" if problem.hint else ""))
        self.path = path
        self.hint = problem.hint
        code = getattr(error, "sqlite_errorcode", None)
        if isinstance(code, int):
            self.sqlite_errorcode = code


def _named(path: str, exc: sqlite3.Error, *, readonly: bool = False) -> sqlite3.Error:
    from socd.access import is_permission_error

    if isinstance(exc, DatabaseAccessError) or not is_permission_error(exc):
        return exc
    return DatabaseAccessError(path, exc, readonly=readonly)


class Connection(sqlite3.Connection):
    """A connection that names its file in permission errors (see module docstring)."""

    path: str = ""
    readonly: bool = False

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        try:
            return super().execute(sql, parameters)
        except sqlite3.Error as exc:
            raise _named(self.path, exc, readonly=self.readonly) from exc

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> sqlite3.Cursor:
        try:
            return super().executemany(sql, parameters)
        except sqlite3.Error as exc:
            raise _named(self.path, exc, readonly=self.readonly) from exc

    def executescript(self, sql_script: str, /) -> sqlite3.Cursor:
        try:
            return super().executescript(sql_script)
        except sqlite3.Error as exc:
            raise _named(self.path, exc, readonly=self.readonly) from exc


def prepare(path: str) -> None:
    """Create the folder (0750) and an empty database file (0640) unless they exist, and
    tighten a looser mode of the file and its sidecars: SQLite itself would create them
    0644 minus the umask."""
    create_private(path)
    for suffix in SIDECARS:
        tighten(path + suffix)


def open_db(path: str, *, synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
            busy_timeout_ms: int = 10_000, readonly: bool = False) -> sqlite3.Connection:
    """Open (creating it 0640 and its folder 0750, see :func:`prepare`) a SQLite file in
    WAL mode; with ``readonly``, open an existing file for reading only (creating
    nothing; :class:`NoDatabase` when it does not exist).

    ``synchronous=FULL`` makes every commit durable against power loss (queues whose
    input was acknowledged); ``NORMAL`` survives a crash of socd, not of the machine,
    for one fsync less per transaction.
    """
    if readonly:
        if not os.path.exists(path):
            raise NoDatabase(path)
        target, uri = f"file:{urllib.parse.quote(os.path.abspath(path))}?mode=ro", True
    else:
        try:
            prepare(path)
        except PermissionError as exc:
            raise DatabaseAccessError(path, exc) from exc
        target, uri = path, False
    try:
        db = sqlite3.connect(target, check_same_thread=False, isolation_level=None, uri=uri,
                             factory=Connection)
    except sqlite3.Error as exc:
        raise _named(path, exc) from exc
    db.path, db.readonly = path, readonly
    try:
        # busy_timeout first: switching to WAL waits for a writer that holds the file.
        db.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        if not readonly:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={synchronous}")
    except BaseException:
        db.close()
        raise
    return db
