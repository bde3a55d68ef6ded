"""The tamper-evident audit log: every change to an alert or an incident, hash-chained.

Records live in ``<state_dir>/audit.db`` (SQLite, table ``audit``). Each record is
``(seq, ts, actor, object_type, object_id, action, details, prev_hash, hash)`` where
``hash`` is the SHA-256 (or, with a key, the HMAC-SHA256) of the canonical JSON of all
the other fields (orjson, sorted keys) and ``prev_hash`` is the previous record's
``hash`` (64 zeros for the first). :func:`verify` recomputes the chain and names the
first record that does not fit: an edited record (its hash no longer matches), a
deleted one (a gap in ``seq``), a re-ordered or inserted one (its ``prev_hash`` does
not link to the record before it).

Guarantees and limits (docs/incidents.md has the threat model):

* Appending is one ``BEGIN IMMEDIATE`` transaction that reads the head and inserts the
  next record, so the daemon and several CLI commands can append at once without
  forking the chain.
* Cutting records off the *end* leaves a valid shorter chain. The anchor file
  (``audit.anchor``, next to the database) keeps the latest ``seq`` and ``hash``;
  :func:`verify` compares the chain with it, and ``socd audit verify`` prints the head
  so an operator can copy it into the paper log (``--head SEQ:HASH`` checks that).
* Whoever can write both the database and the anchor can rewrite the whole chain.
  With ``SOCD_AUDIT_KEY`` set (in the environment of the daemon and of the CLI) the
  hashes are HMACs and rewriting also needs the key.
* The audit record is appended after the change it describes is committed in its own
  store; a crash between the two loses that one record (the change itself stays).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

import orjson
import structlog

from socd.errors import SocdError
from socd.sqlite import open_db

log = structlog.get_logger("socd.audit")

GENESIS: Final = "0" * 64
KEY_ENV: Final = "SOCD_AUDIT_KEY"
DB_NAME: Final = "audit.db"
ANCHOR_SUFFIX: Final = ".anchor"
ObjectType = Literal["alert", "incident"]

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS audit (
    seq         INTEGER PRIMARY KEY,   -- 1, 2, 3... (no AUTOINCREMENT gaps: we choose it)
    ts          TEXT NOT NULL,         -- RFC 3339, UTC
    actor       TEXT NOT NULL,
    object_type TEXT NOT NULL,         -- alert | incident
    object_id   TEXT NOT NULL,
    action      TEXT NOT NULL,
    details     TEXT NOT NULL,         -- JSON object
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS audit_object ON audit (object_id, seq)",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)


class AuditError(SocdError):
    """The audit log cannot be opened or used (for example: keyed, but no key given)."""


@dataclass(frozen=True, slots=True)
class Record:
    """One audit record."""

    seq: int
    ts: str
    actor: str
    object_type: str
    object_id: str
    action: str
    details: dict[str, Any]
    prev_hash: str
    hash: str

    def as_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "ts": self.ts, "actor": self.actor,
                "object_type": self.object_type, "object_id": self.object_id,
                "action": self.action, "details": self.details,
                "prev_hash": self.prev_hash, "hash": self.hash}


def canonical(seq: int, ts: str, actor: str, object_type: str, object_id: str, action: str,
              details: Mapping[str, Any], prev_hash: str) -> bytes:
    """The bytes that are hashed: every field but ``hash``, as sorted-key JSON."""
    return orjson.dumps({"seq": seq, "ts": ts, "actor": actor, "object_type": object_type,
                         "object_id": object_id, "action": action, "details": dict(details),
                         "prev_hash": prev_hash}, option=orjson.OPT_SORT_KEYS)


def digest(data: bytes, key: bytes | None) -> str:
    """SHA-256 of ``data``, or HMAC-SHA256 with ``key``; hex."""
    if key:
        return hmac.new(key, data, hashlib.sha256).hexdigest()
    return hashlib.sha256(data).hexdigest()


def env_key() -> bytes | None:
    value = os.environ.get(KEY_ENV, "")
    return value.encode() if value else None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def anchor_path(db_path: str) -> str:
    return db_path + ANCHOR_SUFFIX


class AuditLog:
    """Append and read the hash chain in one SQLite file (thread-safe).

    ``key`` (default: ``$SOCD_AUDIT_KEY``) turns the hashes into HMACs. A log that was
    written with a key says so in its ``meta`` table, and appending to it or verifying
    it without the key is refused rather than mixing the two kinds of hash.
    """

    def __init__(self, path: str, key: bytes | None = None, *, use_env: bool = True) -> None:
        self.path = path
        self.key = key if key is not None else (env_key() if use_env else None)
        self._lock = threading.Lock()
        self._db = open_db(path, synchronous="FULL")
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for statement in _SCHEMA:
                    self._db.execute(statement)
                row = self._db.execute("SELECT value FROM meta WHERE key='mac'").fetchone()
                if row is None:
                    empty = self._db.execute("SELECT 1 FROM audit LIMIT 1").fetchone() is None
                    mac = "hmac-sha256" if self.key and empty else "sha256"
                    self._db.execute("INSERT INTO meta VALUES ('mac', ?)", (mac,))
                    self.mac = mac
                else:
                    self.mac = str(row[0])
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except BaseException:
            self._db.close()
            raise

    def _key_for_use(self) -> bytes | None:
        if self.mac == "hmac-sha256":
            if not self.key:
                raise AuditError(f"{self.path} is keyed (HMAC): set {KEY_ENV} to append to or "
                                 "verify it")
            return self.key
        return None

    def append(self, actor: str, object_type: ObjectType, object_id: str, action: str,
               details: Mapping[str, Any] | None = None) -> Record:
        """Append one record atomically and move the anchor to it."""
        key = self._key_for_use()
        details = dict(details or {})
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1"
                                 ).fetchone()
                seq, prev = (int(row[0]) + 1, str(row[1])) if row else (1, GENESIS)
                ts = _now()
                value = digest(canonical(seq, ts, actor, object_type, object_id, action,
                                         details, prev), key)
                db.execute("INSERT INTO audit VALUES (?,?,?,?,?,?,?,?,?)",
                           (seq, ts, actor, object_type, object_id, action,
                            orjson.dumps(details, option=orjson.OPT_SORT_KEYS).decode(),
                            prev, value))
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        record = Record(seq, ts, actor, object_type, object_id, action, details, prev, value)
        try:
            write_anchor(anchor_path(self.path), seq, value)
        except OSError as exc:
            log.warning("audit anchor not updated", path=anchor_path(self.path), error=str(exc))
        return record

    def records(self, object_id: str | None = None, *, limit: int | None = None
                ) -> Iterator[Record]:
        """Records in ``seq`` order (of one object, if given; the last ``limit``)."""
        params: list[Any] = [object_id, object_id, limit if limit is not None else -1]
        sql = ("SELECT * FROM (SELECT * FROM audit WHERE (? IS NULL OR object_id = ?) "
               "ORDER BY seq DESC LIMIT ?) ORDER BY seq")
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
        for r in rows:
            yield _record(r)

    def head(self) -> tuple[int, str]:
        with self._lock:
            row = self._db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1"
                                   ).fetchone()
        return (int(row[0]), str(row[1])) if row else (0, GENESIS)

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _record(row: tuple[Any, ...]) -> Record:
    seq, ts, actor, otype, oid, action, details, prev, value = row
    try:
        parsed = orjson.loads(details)
    except orjson.JSONDecodeError:
        parsed = {"_unparsable": str(details)}
    if not isinstance(parsed, dict):
        parsed = {"_not_an_object": parsed}
    return Record(int(seq), str(ts), str(actor), str(otype), str(oid), str(action), parsed,
                  str(prev), str(value))


# -- the anchor -------------------------------------------------------------------------------


def write_anchor(path: str, seq: int, value: str) -> None:
    """Move the anchor forward to (seq, hash); never backwards (appenders race)."""
    import fcntl

    fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        current = read_anchor(path)
        if current is not None and current[0] >= seq:
            return
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(orjson.dumps({"seq": seq, "hash": value, "ts": _now()}) + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        os.close(fd)


def read_anchor(path: str) -> tuple[int, str] | None:
    try:
        with open(path, "rb") as fh:
            data = orjson.loads(fh.read())
        return int(data["seq"]), str(data["hash"])
    except FileNotFoundError:
        return None
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise AuditError(f"audit anchor {path} is unreadable: {exc}") from exc


# -- verification -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Problem:
    seq: int
    kind: Literal["edited", "deleted", "reordered", "truncated", "anchor"]
    message: str


@dataclass(slots=True)
class Verification:
    """The outcome of :func:`verify`."""

    records: int = 0
    head_seq: int = 0
    head_hash: str = GENESIS
    anchor: tuple[int, str] | None = None
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_bad_seq(self) -> int | None:
        return min(p.seq for p in self.problems) if self.problems else None


def verify(path: str, *, key: bytes | None = None, use_env: bool = True,
           anchor: tuple[int, str] | Literal["file"] | None = "file",
           expected_head: tuple[int, str] | None = None, max_problems: int = 20
           ) -> Verification:
    """Recompute the chain of the log at ``path``; see :class:`Verification`.

    ``anchor="file"`` reads ``<path>.anchor``; ``expected_head`` is a (seq, hash) an
    operator wrote down (the paper log): the chain must contain exactly that record.
    """
    if not os.path.exists(path):
        raise AuditError(f"no audit log at {path}")
    audit = AuditLog(path, key, use_env=use_env)
    result = Verification()
    try:
        k = audit._key_for_use()
        expected_seq, prev, prev_seq = 1, GENESIS, 0
        hashes: dict[str, int] = {}
        for rec in audit.records():
            result.records += 1
            problems: list[Problem] = []
            if rec.seq != expected_seq:
                problems.append(Problem(expected_seq, "deleted",
                                        f"records {expected_seq}..{rec.seq - 1} are missing "
                                        f"(deleted): seq jumps from {prev_seq} to {rec.seq}"
                                        if rec.seq > expected_seq + 1 else
                                        f"record {expected_seq} is missing (deleted): seq "
                                        f"jumps from {prev_seq} to {rec.seq}"))
            recomputed = digest(canonical(rec.seq, rec.ts, rec.actor, rec.object_type,
                                          rec.object_id, rec.action, rec.details,
                                          rec.prev_hash), k)
            if recomputed != rec.hash:
                moved = hashes.get(rec.prev_hash)
                problems.append(Problem(rec.seq, "edited",
                                        f"record {rec.seq} was altered: its content does not "
                                        "match its hash"
                                        + (f" (it follows record {moved}: records were "
                                           "re-ordered)" if moved is not None
                                           and moved != rec.seq - 1 else "")))
            elif rec.prev_hash != prev and not problems:
                moved = hashes.get(rec.prev_hash)
                problems.append(Problem(rec.seq, "reordered",
                                        f"record {rec.seq} does not follow record {prev_seq}"
                                        + (f": it was written after record {moved} "
                                           "(re-ordered)" if moved is not None else
                                           ": a record before it was replaced or the "
                                           "records were re-ordered")))
            result.problems.extend(problems)
            hashes[rec.hash] = rec.seq
            expected_seq, prev, prev_seq = rec.seq + 1, rec.hash, rec.seq
            result.head_seq, result.head_hash = rec.seq, rec.hash
            if len(result.problems) >= max_problems:
                result.warnings.append(f"stopped after {max_problems} problems")
                break

        def hash_at(seq: int) -> str | None:
            rows = list(audit._db.execute("SELECT hash FROM audit WHERE seq = ?", (seq,)))
            return str(rows[0][0]) if rows else None

        checks: list[tuple[str, tuple[int, str]]] = []
        if anchor == "file":
            result.anchor = read_anchor(anchor_path(path))
            if result.anchor is None:
                result.warnings.append(f"no anchor file {anchor_path(path)}: records cut off "
                                       "the end cannot be detected")
        else:
            result.anchor = anchor
        if result.anchor is not None:
            checks.append(("the anchor file", result.anchor))
        if expected_head is not None:
            checks.append(("the head you gave", expected_head))
        for what, (seq, value) in checks:
            if seq > result.head_seq:
                result.problems.append(Problem(result.head_seq + 1, "truncated",
                                               f"the log ends at record {result.head_seq} but "
                                               f"{what} names record {seq}: records "
                                               f"{result.head_seq + 1}..{seq} were cut off "
                                               "the end"))
            elif seq > 0 and hash_at(seq) != value:
                result.problems.append(Problem(seq, "anchor",
                                               f"record {seq} differs from {what} (hash "
                                               f"{value[:16]}...): the chain was rewritten"))
    finally:
        audit.close()
    return result


@contextlib.contextmanager
def opened(path: str) -> Iterator[AuditLog]:
    audit = AuditLog(path)
    try:
        yield audit
    finally:
        audit.close()


def record(path: str, actor: str, object_type: ObjectType, object_id: str, action: str,
           details: Mapping[str, Any] | None = None) -> Record | None:
    """Append one record to the log at ``path``; never raises (a change that was
    already committed must not fail because of its audit record): failures are logged
    as errors and return ``None``."""
    try:
        with opened(path) as audit:
            return audit.append(actor, object_type, object_id, action, details)
    except (sqlite3.Error, OSError, AuditError) as exc:
        log.error("audit record not written", path=path, object_id=object_id, action=action,
                  error=str(exc))
        return None


def record_alert_change(store_path: str, updated: Any, action: str | None = None
                        ) -> Record | None:
    """The audit record of one alert lifecycle change (called by :mod:`socd.alerts`).

    The log is ``audit.db`` next to the alert store (the store is ``<state_dir>/alerts.db``
    unless the sqlite sink's ``path`` moves it)."""
    before, after = updated.before, updated.after
    details = {"status_from": before.status, "status_to": after.status,
               "assignee_from": before.assignee, "assignee_to": after.assignee,
               "note": after.status_note}
    action = action or ("status" if before.status != after.status else "assign")
    path = os.path.join(os.path.dirname(os.path.abspath(store_path)), DB_NAME)
    return record(path, after.status_by or "?", "alert", after.id, action, details)
