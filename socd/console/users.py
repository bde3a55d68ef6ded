"""The console's users and sessions: one SQLite file (``<state_dir>/console-users.db``).

Local users carry an Argon2id hash (:mod:`socd.console.passwords`); directory users
(LDAP/AD) get a row at their first sign-in, without a hash, so that an administrator
can see them and disable them here too. Failed sign-ins are counted per account in the
file, so a lockout holds across restarts and between the daemon and the CLI.

Sessions are server-side. The browser holds a random 256-bit id; the file holds only
its SHA-256, so a copy of the file does not give anyone a live session. A session ends
when unused for the idle timeout, at the absolute timeout after sign-in, at sign-out,
and when its user is disabled, changes role or password.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from socd.console.roles import Role, Source
from socd.sqlite import Schema, Store

# A session's last use is written at most this often (not at every request).
_TOUCH_SECS = 30.0
_MAX_NAME = 128

_SCHEMA = Schema(
    name="console user store",
    version="1",
    unknown="newer",
    create=(
        """CREATE TABLE IF NOT EXISTS console_users (
    name          TEXT PRIMARY KEY,      -- normalised sign-in name (NFC, lower case)
    display_name  TEXT NOT NULL,
    role          TEXT NOT NULL,         -- viewer | analyst | admin
    source        TEXT NOT NULL,         -- local | ldap
    password_hash TEXT,                  -- Argon2id (local users)
    disabled      INTEGER NOT NULL DEFAULT 0,
    failures      INTEGER NOT NULL DEFAULT 0,
    first_failure REAL,
    locked_until  REAL,
    created       REAL NOT NULL,
    updated       REAL NOT NULL
)""",
        """CREATE TABLE IF NOT EXISTS console_sessions (
    id_hash    TEXT PRIMARY KEY,         -- SHA-256 of the cookie's id
    user       TEXT NOT NULL REFERENCES console_users (name) ON DELETE CASCADE,
    csrf       TEXT NOT NULL,
    role       TEXT NOT NULL,            -- the role when signed in (directory users)
    created    REAL NOT NULL,
    last_seen  REAL NOT NULL,
    address    TEXT NOT NULL
)""",
        "CREATE INDEX IF NOT EXISTS console_sessions_user ON console_sessions (user, created)",
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ),
)


class UserError(ValueError):
    """A user change that cannot be made (unknown user, bad name, last admin...)."""


def normalise_name(name: str) -> str:
    """The stored form of a sign-in name: NFC, stripped, lower case. ValueError when it
    is empty, too long or holds control characters (it is shown in pages and logs)."""
    text = unicodedata.normalize("NFC", name).strip().lower()
    if not text or len(text) > _MAX_NAME:
        raise UserError(f"a user name has 1 to {_MAX_NAME} characters")
    if any(unicodedata.category(c)[0] in "CZ" and c != " " for c in text):
        raise UserError("a user name has no control or separator characters")
    return text


def session_digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class UserRecord:
    """One user as stored."""

    name: str
    display_name: str
    role: Role
    source: Source
    password_hash: str | None
    disabled: bool
    failures: int
    locked_until: float | None
    created: float


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """One live session (what :meth:`UserStore.session` returns)."""

    user: UserRecord
    role: Role  # the session's role: the lower of the stored one and the user's
    csrf: str
    created: float
    last_seen: float


class UserStore(Store):
    """The console's users and sessions (thread-safe; the daemon calls it in threads)."""

    schema = _SCHEMA

    def __init__(self, path: str, *, readonly: bool = False,
                 clock: Callable[[], float] = time.time) -> None:
        # FULL: a lockout or a sign-out must survive a power cut.
        super().__init__(path, synchronous="FULL", readonly=readonly,
                         pragmas=("foreign_keys=ON",))
        self.clock = clock

    # -- users --------------------------------------------------------------------------

    def add_user(self, name: str, role: Role, *, password_hash: str | None,
                 display_name: str = "", source: Source = "local") -> UserRecord:
        key = normalise_name(name)
        now = self.clock()
        with self.transaction() as tx:
            if tx.db.execute("SELECT 1 FROM console_users WHERE name = ?",
                             (key,)).fetchone():
                raise UserError(f"user {key!r} exists")
            tx.db.execute("INSERT INTO console_users (name, display_name, role, source, "
                          "password_hash, created, updated) VALUES (?,?,?,?,?,?,?)",
                          (key, display_name.strip() or key, role.label, source,
                           password_hash, now, now))
        user = self.get(key)
        assert user is not None
        return user

    def upsert_directory_user(self, name: str, role: Role, display_name: str) -> UserRecord:
        """The row of a directory user who just signed in (role and name refreshed);
        a local user of the same name is not touched (UserError)."""
        key = normalise_name(name)
        now = self.clock()
        with self.transaction() as tx:
            row = tx.db.execute("SELECT source FROM console_users WHERE name = ?",
                                (key,)).fetchone()
            if row is None:
                tx.db.execute("INSERT INTO console_users (name, display_name, role, source, "
                              "created, updated) VALUES (?,?,?,'ldap',?,?)",
                              (key, display_name or key, role.label, now, now))
            elif row[0] != "ldap":
                raise UserError(f"{key!r} is a local user")
            else:
                tx.db.execute("UPDATE console_users SET display_name = ?, role = ?, "
                              "updated = ? WHERE name = ?",
                              (display_name or key, role.label, now, key))
        user = self.get(key)
        assert user is not None
        return user

    def get(self, name: str) -> UserRecord | None:
        try:
            key = normalise_name(name)
        except UserError:
            return None
        with self.reading() as db:
            row = db.execute(f"SELECT {_USER_COLUMNS} FROM console_users "  # noqa: S608
                             "WHERE name = ?", (key,)).fetchone()
        return None if row is None else _user(row)

    def users(self) -> list[UserRecord]:
        with self.reading() as db:
            rows = db.execute(f"SELECT {_USER_COLUMNS} FROM console_users "  # noqa: S608
                              "ORDER BY name").fetchall()
        return [_user(r) for r in rows]

    def has_admin(self) -> bool:
        """An enabled administrator exists (the console is served only then)."""
        with self.reading() as db:
            return db.execute("SELECT 1 FROM console_users WHERE role = 'admin' "
                              "AND disabled = 0 LIMIT 1").fetchone() is not None

    def set_role(self, name: str, role: Role) -> UserRecord:
        return self._change(name, "role = ?", (role.label,), demotes=role != Role.ADMIN)

    def set_disabled(self, name: str, disabled: bool) -> UserRecord:
        return self._change(name, "disabled = ?", (int(disabled),), demotes=disabled)

    def set_password_hash(self, name: str, password_hash: str) -> UserRecord:
        """A new hash (a password change: the user's sessions end, the lockout lifts)."""
        return self._change(name, "password_hash = ?, failures = 0, first_failure = NULL, "
                            "locked_until = NULL", (password_hash,), demotes=False)

    def rehash(self, name: str, password_hash: str) -> None:
        """Store a stronger hash of the same password (sessions stay)."""
        with self.transaction() as tx:
            tx.db.execute("UPDATE console_users SET password_hash = ? WHERE name = ? "
                          "AND source = 'local'", (password_hash, normalise_name(name)))

    def _change(self, name: str, assignment: str, values: tuple[Any, ...], *,
                demotes: bool) -> UserRecord:
        """Change one user, end its sessions; refuse to leave no enabled admin."""
        key = normalise_name(name)
        with self.transaction() as tx:
            row = tx.db.execute("SELECT role, disabled FROM console_users WHERE name = ?",
                                (key,)).fetchone()
            if row is None:
                raise UserError(f"no user {key!r}")
            if demotes and row[0] == "admin" and not row[1]:
                others = tx.db.execute("SELECT COUNT(*) FROM console_users WHERE role = "
                                       "'admin' AND disabled = 0 AND name != ?",
                                       (key,)).fetchone()[0]
                if not others:
                    raise UserError(f"{key!r} is the last enabled administrator")
            # assignment: a constant of this module's callers, values are placeholders.
            tx.db.execute(f"UPDATE console_users SET {assignment}, updated = ? "  # noqa: S608
                          "WHERE name = ?", (*values, self.clock(), key))
            tx.db.execute("DELETE FROM console_sessions WHERE user = ?", (key,))
        user = self.get(key)
        assert user is not None
        return user

    # -- failed sign-ins ---------------------------------------------------------------------

    def locked_until(self, name: str) -> float | None:
        """When the account's lock ends, if it is locked now."""
        user = self.get(name)
        if user is None or user.locked_until is None or user.locked_until <= self.clock():
            return None
        return user.locked_until

    def record_failure(self, name: str, *, max_failures: int, window_secs: float,
                       lock_secs: float) -> float | None:
        """Count a failed sign-in of an existing account; the lock's end when this one
        locks it (or it was locked), else None. Unknown names are not stored (a flood of
        made-up names must not grow the file)."""
        key = normalise_name(name)
        now = self.clock()
        with self.transaction() as tx:
            row = tx.db.execute("SELECT failures, first_failure, locked_until FROM "
                                "console_users WHERE name = ?", (key,)).fetchone()
            if row is None:
                tx.rollback()
                return None
            failures, first, locked = int(row[0]), row[1], row[2]
            if locked is not None and locked > now:
                return float(locked)
            if first is None or now - float(first) >= window_secs:
                failures, first = 0, now
            failures += 1
            lock = now + lock_secs if failures >= max_failures else None
            if lock is not None:
                failures, first = 0, None
            tx.db.execute("UPDATE console_users SET failures = ?, first_failure = ?, "
                          "locked_until = ? WHERE name = ?", (failures, first, lock, key))
        return lock

    def clear_failures(self, name: str) -> None:
        with self.transaction() as tx:
            tx.db.execute("UPDATE console_users SET failures = 0, first_failure = NULL, "
                          "locked_until = NULL WHERE name = ? AND (failures != 0 OR "
                          "locked_until IS NOT NULL)", (normalise_name(name),))

    # -- sessions -------------------------------------------------------------------------

    def create_session(self, name: str, role: Role, address: str, *,
                       max_per_user: int) -> tuple[str, str]:
        """A new session of ``name``: (the id for the cookie, its CSRF token). The
        user's oldest sessions beyond ``max_per_user`` end."""
        session_id = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        key = normalise_name(name)
        now = self.clock()
        with self.transaction() as tx:
            tx.db.execute("INSERT INTO console_sessions VALUES (?,?,?,?,?,?,?)",
                          (session_digest(session_id), key, csrf, role.label, now, now,
                           address[:64]))
            tx.db.execute("DELETE FROM console_sessions WHERE user = ? AND id_hash NOT IN "
                          "(SELECT id_hash FROM console_sessions WHERE user = ? "
                          "ORDER BY created DESC LIMIT ?)", (key, key, max_per_user))
        return session_id, csrf

    def session(self, session_id: str, *, idle_secs: float,
                absolute_secs: float) -> SessionRecord | None:
        """The live session of this cookie id, its use recorded; None when there is none,
        it expired (then it is deleted) or its user is disabled."""
        digest = session_digest(session_id)
        now = self.clock()
        with self.reading() as db:
            row = db.execute("SELECT user, csrf, role, created, last_seen FROM "
                             "console_sessions WHERE id_hash = ?", (digest,)).fetchone()
        if row is None:
            return None
        created, last_seen = float(row[3]), float(row[4])
        user = self.get(row[0])
        if (user is None or user.disabled or now - last_seen >= idle_secs
                or now - created >= absolute_secs):
            self.delete_session(session_id)
            return None
        if now - last_seen >= _TOUCH_SECS:
            with self.transaction() as tx:
                tx.db.execute("UPDATE console_sessions SET last_seen = ? WHERE id_hash = ?",
                              (now, digest))
            last_seen = now
        role = min(Role.parse(row[2]), user.role)
        return SessionRecord(user, role, str(row[1]), created, last_seen)

    def delete_session(self, session_id: str) -> None:
        with self.transaction() as tx:
            tx.db.execute("DELETE FROM console_sessions WHERE id_hash = ?",
                          (session_digest(session_id),))

    def purge_sessions(self, *, idle_secs: float, absolute_secs: float) -> int:
        """Delete expired sessions; how many."""
        now = self.clock()
        with self.transaction() as tx:
            cur = tx.db.execute("DELETE FROM console_sessions WHERE last_seen <= ? OR "
                                "created <= ?", (now - idle_secs, now - absolute_secs))
            return int(cur.rowcount)

    def session_count(self, name: str | None = None) -> int:
        with self.reading() as db:
            if name is None:
                return int(db.execute("SELECT COUNT(*) FROM console_sessions").fetchone()[0])
            return int(db.execute("SELECT COUNT(*) FROM console_sessions WHERE user = ?",
                                  (normalise_name(name),)).fetchone()[0])


_USER_COLUMNS = ("name, display_name, role, source, password_hash, disabled, failures, "
                 "locked_until, created")


def _user(row: Any) -> UserRecord:
    return UserRecord(name=str(row[0]), display_name=str(row[1]), role=Role.parse(row[2]),
                      source="ldap" if row[3] == "ldap" else "local",
                      password_hash=row[4], disabled=bool(row[5]), failures=int(row[6]),
                      locked_until=None if row[7] is None else float(row[7]),
                      created=float(row[8]))
