"""Opening socd's SQLite files the same way everywhere.

Every store (alerts, IoCs, block decisions, incidents, the audit log, the
notification queue, the exchange log, the sinks' spools) is one SQLite file in WAL
mode, shared between the daemon and the CLI: readers never block the writer, and
``busy_timeout`` makes a second writer wait instead of failing. Connections are in autocommit mode
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

On top of :func:`open_db`, every store is built the same way (:class:`Store`): a
:class:`Schema` says what the file holds, which version it is (the ``schema_version`` row
of a ``meta`` table, for the stores that keep one) and how an older file is brought up
to date; it is applied in one ``BEGIN IMMEDIATE`` transaction when the file is opened
for writing, so a crash leaves the old shape, never half a new one, and the daemon and
the CLI opening one file at once are serialized. Changes go through
:meth:`Store.transaction` (the same kind of transaction under the store's lock), reads
through :meth:`Store.reading`.

A store's tables belong to the subsystem that owns the store: only its module runs SQL
on them (``tests/unit/test_store_boundaries.py`` checks it). Another subsystem asks the
owner's read methods, which open the file with :func:`read_only` when they must never
create or migrate it (the reports, layer-4 sharing).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, Literal

from socd.errors import SocdError
from socd.filemode import create_private, tighten

SIDECARS: Final = ("-wal", "-shm", "-journal")

Error = sqlite3.Error
"""What a store raises when SQLite fails. Modules that only call stores catch this name
and never import :mod:`sqlite3` themselves."""


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
            busy_timeout_ms: int = 10_000, readonly: bool = False,
            pragmas: Sequence[str] = ()) -> Connection:
    """Open (creating it 0640 and its folder 0750, see :func:`prepare`) a SQLite file in
    WAL mode; with ``readonly``, open an existing file for reading only (creating
    nothing; :class:`NoDatabase` when it does not exist).

    ``synchronous=FULL`` makes every commit durable against power loss (queues whose
    input was acknowledged); ``NORMAL`` survives a crash of socd, not of the machine,
    for one fsync less per transaction. ``pragmas`` (``"cache_size=-65536"``) are set
    before the switch to WAL: ``auto_vacuum`` only takes effect on a new file that way.
    ``busy_timeout_ms=0`` fails at once on a locked file instead of waiting.
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
        for pragma in pragmas:
            db.execute(f"PRAGMA {pragma}")
        if not readonly:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={synchronous}")
    except BaseException:
        db.close()
        raise
    return db


@contextlib.contextmanager
def read_only(path: str | None, *, busy_timeout_ms: int = 5000) -> Iterator[Connection | None]:
    """A read-only connection to a store's file, or ``None`` when there is no such file
    (nothing stored yet). For the read methods another subsystem calls: they never
    create, migrate or lock the owner's file, and do not fail on a site where that
    subsystem is not set up."""
    if not path or not os.path.isfile(path):
        yield None
        return
    db = open_db(path, readonly=True, busy_timeout_ms=busy_timeout_ms)
    try:
        yield db
    finally:
        db.close()


def has_table(db: sqlite3.Connection, table: str) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                      (table,)).fetchone() is not None


def columns(db: sqlite3.Connection, table: str) -> set[str]:
    """The column names of ``table`` (empty when it does not exist)."""
    return {str(r[1]) for r in db.execute(f"PRAGMA table_info({table})")}


def script(text: str) -> tuple[str, ...]:
    """The statements of a SQL script one by one (a trigger body's ``;`` stays inside its
    statement), to run them in one transaction: ``executescript`` commits first."""
    statements: list[str] = []
    pending = ""
    for part in text.split(";"):
        candidate = (pending + part).strip() + ";"
        if sqlite3.complete_statement(candidate):
            if candidate != ";":
                statements.append(candidate)
            pending = ""
        else:
            pending += part + ";"
    if pending.strip():
        raise ValueError(f"incomplete SQL statement: {pending.strip()[:60]!r}")
    return tuple(statements)


class Transaction:
    """One ``BEGIN IMMEDIATE`` transaction (see :func:`transaction`)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.ended = False

    def rollback(self) -> None:
        """End the transaction now without writing anything (a decision that turned out
        to be a no-op); the ``with`` block then commits nothing."""
        self.db.execute("ROLLBACK")
        self.ended = True


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[Transaction]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back when the block raises.

    IMMEDIATE takes the write lock at once, so two writers (the daemon and a CLI command)
    are serialized by the busy timeout instead of one failing at its first write. A
    failed ``ROLLBACK`` (SQLite may have ended the transaction itself, on a full disk)
    never hides the error that caused it."""
    tx = Transaction(db)
    db.execute("BEGIN IMMEDIATE")
    try:
        yield tx
        if not tx.ended:
            db.execute("COMMIT")
    except BaseException:
        if not tx.ended:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
        raise


Step = str | Callable[[sqlite3.Connection], None]
"""One step of a schema: a SQL statement, or a function for what SQL alone cannot decide
(add a column only when it is missing)."""


@dataclass(frozen=True, slots=True)
class Schema:
    """What a store's file holds, its version and how an older file is brought up to date.

    ``create`` makes the current shape. When ``create_always`` (its statements are
    ``IF NOT EXISTS``), it runs on every open, so a table added later without a new
    version appears in existing files too; otherwise only in a new file. ``version``
    (stores that keep one) is the ``schema_version`` row of the ``meta`` table that
    ``create`` makes; a file older than that row is recognised by ``legacy``. A file of
    a version in ``upgrades`` is upgraded by those steps (the same transaction). Any
    other version is, by ``unknown``: ``newer`` refused as written by a newer socd,
    ``unsupported`` refused, ``ignore`` opened as it is (its version row kept).
    """

    name: str  # "alert store": how messages call it
    create: tuple[Step, ...]
    version: str | None = None
    upgrades: Mapping[str, tuple[Step, ...]] = field(default_factory=dict)
    legacy: Callable[[sqlite3.Connection], str | None] | None = None
    create_always: bool = True
    unknown: Literal["newer", "unsupported", "ignore"] = "unsupported"

    def stored_version(self, db: sqlite3.Connection) -> str | None:
        """The file's version (``None``: a new file, or a store without versions)."""
        if self.version is None:
            return None
        found: str | None = None
        if has_table(db, "meta"):
            row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            found = None if row is None else str(row[0])
        if found is None and self.legacy is not None:
            found = self.legacy(db)
        return found

    def apply(self, db: sqlite3.Connection, path: str) -> None:
        """Create or upgrade the file; call it inside a transaction."""
        found = self.stored_version(db)
        if found is None or found == self.version:
            if found is None or self.create_always:
                _run(db, self.create)
            if found is None and self.version is not None:
                self._write_version(db)
            return
        steps = self.upgrades.get(found)
        if steps is not None:
            _run(db, steps)
            self._write_version(db)
            return
        self._refuse(path, found)
        if self.create_always:
            _run(db, self.create)

    def check(self, db: sqlite3.Connection, path: str) -> None:
        """A read-only open: refuse a file this socd cannot read (nothing is changed)."""
        found = self.stored_version(db)
        if found is not None and found != self.version and found not in self.upgrades:
            self._refuse(path, found)

    def _refuse(self, path: str, found: str) -> None:
        if self.unknown == "newer":
            raise SocdError(f"{path}: {self.name} schema version {found} is newer than this "
                            f"socd supports ({self.version}); upgrade socd")
        if self.unknown == "unsupported":
            raise SocdError(f"{path}: {self.name} schema version {found} is not supported by "
                            f"this socd ({self.version})")

    def _write_version(self, db: sqlite3.Connection) -> None:
        db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (self.version,))


def _run(db: sqlite3.Connection, steps: Iterable[Step]) -> None:
    for step in steps:
        if isinstance(step, str):
            db.execute(step)
        else:
            step(db)


class Store:
    """The base of socd's SQLite stores: one connection, a lock, the schema, transactions.

    A subclass sets :attr:`schema` and calls ``super().__init__`` with its durability
    (``synchronous``) and patience (``busy_timeout_ms``). Opening for writing applies the
    schema (see :class:`Schema`) in one transaction; ``readonly`` opens an existing file
    without changing it (:class:`NoDatabase` when there is none) and refuses a version
    this socd cannot read. The connection is shared by threads (the daemon calls stores
    through ``asyncio.to_thread``): every use holds the store's lock, through
    :meth:`transaction` for changes and :meth:`reading` for reads.
    """

    schema: ClassVar[Schema]

    def __init__(self, path: str, *, synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
                 busy_timeout_ms: int = 10_000, readonly: bool = False,
                 pragmas: Sequence[str] = ()) -> None:
        self.path = path
        self.readonly = readonly
        self._lock = threading.Lock()
        self._db = open_db(path, synchronous=synchronous, busy_timeout_ms=busy_timeout_ms,
                           readonly=readonly, pragmas=pragmas)
        try:
            if readonly:
                self.schema.check(self._db, path)
            else:
                with transaction(self._db):
                    self.schema.apply(self._db, path)
        except BaseException:
            self._db.close()
            raise

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """Hold the lock and run one ``BEGIN IMMEDIATE`` transaction (:func:`transaction`);
        ``tx.db`` is the connection."""
        with self._lock, transaction(self._db) as tx:
            yield tx

    @contextlib.contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """Hold the lock for reads (each statement sees one snapshot of the file)."""
        with self._lock:
            yield self._db

    def data_version(self) -> int:
        """Changes when another connection (another process) commits to the file."""
        with self._lock:
            return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
