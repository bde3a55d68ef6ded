"""The tamper-evident audit log: every change to an alert or an incident, hash-chained.

Records live in ``<state_dir>/audit.db`` (SQLite, table ``audit``). Each record is
``(seq, ts, actor, object_type, object_id, action, details, prev_hash, hash, mac)``
where ``mac`` is the record's mode (``sha256``, or ``hmac-sha256`` with a key) and
``hash`` the SHA-256 (or the HMAC-SHA256) of the canonical JSON of the other fields
(orjson, sorted keys; a keyed record's JSON includes ``mac``, an unkeyed one's does
not) and ``prev_hash`` is the previous record's ``hash`` (64 zeros for the first).
:func:`verify` recomputes the chain and names the first record that does not fit: an
edited record (its hash no longer matches), a deleted one (a gap in ``seq``), a
re-ordered or inserted one (its ``prev_hash`` does not link to the record before it),
a record the configured key does not protect.

Guarantees and limits (docs/incidents.md has the threat model):

* Appending is one ``BEGIN IMMEDIATE`` transaction that reads the head and inserts the
  next record, so the daemon and several CLI commands can append at once without
  forking the chain.
* Cutting records off the *end* leaves a valid shorter chain. The anchor file
  (``audit.anchor``, next to the database) keeps the latest ``seq`` and ``hash``;
  :func:`verify` compares the chain with it, and ``socd audit verify`` prints the head
  so an operator can copy it into the paper log (``--head SEQ:HASH`` checks that).
* Whoever can write both the database and the anchor can rewrite the whole chain.
  With ``SOCD_AUDIT_KEY`` set (in the environment of the daemon and of the CLI) every
  new record is an HMAC over the record *and its mode* (``mac`` column), and the anchor
  carries an HMAC too, so rewriting also needs the key.
* Whether a record must be keyed is decided by the verifier, never read from the
  database: with a key, a record stored as plain SHA-256 fails :func:`verify` (a
  downgrade by someone without the key) unless the operator says that records below a
  given ``seq`` were written before the key was configured (``allow_unkeyed_before``).
* The audit record is appended after the change it describes is committed in its own
  store; a crash between the two loses that one record (the change itself stays).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

import orjson
import structlog

from socd.errors import SocdError
from socd.filemode import FILE_MODE, open_private
from socd.sqlite import Schema, Store

log = structlog.get_logger("socd.audit")

GENESIS: Final = "0" * 64
KEY_ENV: Final = "SOCD_AUDIT_KEY"
DB_NAME: Final = "audit.db"
ANCHOR_SUFFIX: Final = ".anchor"
# What a record is about: alerts and incidents; the console also records its users'
# sign-ins and changes to users, IoC lists, blocks and reports (socd.console.audit).
ObjectType = Literal["alert", "incident", "user", "ioc", "block", "report"]

# The mode of one record. ``hmac-sha256`` binds the mode into the HMAC; ``hmac-sha256-v1``
# marks records of logs keyed before that (HMAC over the record alone, still needing the
# key); ``sha256`` is unkeyed.
MAC_PLAIN: Final = "sha256"
MAC_KEYED: Final = "hmac-sha256"
MAC_KEYED_V1: Final = "hmac-sha256-v1"
KEYED_MODES: Final = frozenset({MAC_KEYED, MAC_KEYED_V1})

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
    hash        TEXT NOT NULL,
    mac         TEXT NOT NULL DEFAULT 'sha256'  -- sha256 | hmac-sha256 | hmac-sha256-v1
)""",
    "CREATE INDEX IF NOT EXISTS audit_object ON audit (object_id, seq)",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)


class AuditError(SocdError):
    """The audit log cannot be opened or used (for example: keyed, but no key given)."""


@dataclass(frozen=True, slots=True)
class Entry:
    """A record to append: who did what to which object (:meth:`AuditLog.append_many`)."""

    actor: str
    object_type: ObjectType
    object_id: str
    action: str
    details: Mapping[str, Any] | None = None


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
    mac: str = MAC_PLAIN

    def as_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "ts": self.ts, "actor": self.actor,
                "object_type": self.object_type, "object_id": self.object_id,
                "action": self.action, "details": self.details,
                "prev_hash": self.prev_hash, "hash": self.hash, "mac": self.mac}


def canonical(seq: int, ts: str, actor: str, object_type: str, object_id: str, action: str,
              details: Mapping[str, Any], prev_hash: str, *, mac: str | None = None) -> bytes:
    """The bytes that are hashed: every field but ``hash``, as sorted-key JSON (``mac``
    only for keyed records, so unkeyed logs keep the hashes they always had)."""
    fields = {"seq": seq, "ts": ts, "actor": actor, "object_type": object_type,
              "object_id": object_id, "action": action, "details": dict(details),
              "prev_hash": prev_hash}
    if mac is not None:
        fields["mac"] = mac
    return orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)


def digest(data: bytes, key: bytes | None) -> str:
    """SHA-256 of ``data``, or HMAC-SHA256 with ``key``; hex."""
    if key:
        return hmac.new(key, data, hashlib.sha256).hexdigest()
    return hashlib.sha256(data).hexdigest()


def record_hash(rec: Record, mac: str, key: bytes | None) -> str:
    """The hash ``rec`` must carry in mode ``mac`` (keyed modes need ``key``)."""
    fields = (rec.seq, rec.ts, rec.actor, rec.object_type, rec.object_id, rec.action,
              rec.details, rec.prev_hash)
    if mac == MAC_PLAIN:
        return digest(canonical(*fields), None)
    if mac not in KEYED_MODES:
        raise AuditError(f"record {rec.seq} has an unknown hash mode {mac[:40]!r}")
    if not key:
        raise AuditError(f"record {rec.seq} is keyed (HMAC): set {KEY_ENV}")
    return digest(canonical(*fields, mac=mac if mac == MAC_KEYED else None), key)


def env_key() -> bytes | None:
    value = os.environ.get(KEY_ENV, "")
    return value.encode() if value else None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def anchor_path(db_path: str) -> str:
    return db_path + ANCHOR_SUFFIX


def _migrate(db: sqlite3.Connection) -> None:
    """Give a log written before per-record modes its ``mac`` column. Its chain mode was
    a ``meta`` row: a keyed log's records become ``hmac-sha256-v1`` (their HMAC does not
    cover the mode, and still needs the key)."""
    columns = {str(r[1]) for r in db.execute("PRAGMA table_info(audit)")}
    if "mac" in columns:
        return
    row = db.execute("SELECT value FROM meta WHERE key = 'mac'").fetchone()
    db.execute("ALTER TABLE audit ADD COLUMN mac TEXT NOT NULL DEFAULT 'sha256'")
    if row is not None and row[0] == "hmac-sha256":
        db.execute("UPDATE audit SET mac = ?", (MAC_KEYED_V1,))


# No version row: a log is upgraded by what it lacks (_migrate), checked at every open.
SCHEMA: Final = Schema(name="audit log", create=(*_SCHEMA, _migrate))


class AuditLog(Store):
    """Append and read the hash chain in one SQLite file (thread-safe).

    ``key`` (default: ``$SOCD_AUDIT_KEY``) makes new records HMACs. Appending to a log
    whose last record is keyed without the key is refused rather than mixing the two
    kinds of hash. A key configured on an existing unkeyed log keys the records from
    the next one on; that boundary is logged (``verify`` needs it, see
    :func:`verify`'s ``allow_unkeyed_before``).
    """

    schema = SCHEMA

    def __init__(self, path: str, key: bytes | None = None, *, use_env: bool = True) -> None:
        self.key = key if key is not None else (env_key() if use_env else None)
        super().__init__(path, synchronous="FULL")

    def append(self, actor: str, object_type: ObjectType, object_id: str, action: str,
               details: Mapping[str, Any] | None = None) -> Record:
        """Append one record atomically and move the anchor to it."""
        return self.append_many([Entry(actor, object_type, object_id, action, details)])[0]

    def append_many(self, entries: Sequence[Entry]) -> list[Record]:
        """Append several records, each its own link of the chain, in one transaction,
        and move the anchor once, to the last: a bulk change of 1,000 alerts (the
        analyst console) is 1,000 records but one durable write, not 1,000. All or none
        are appended."""
        if not entries:
            return []
        mac = MAC_KEYED if self.key else MAC_PLAIN
        out: list[Record] = []
        with self.transaction() as tx:
            seq, prev = self._next_position()
            ts = _now()
            rows = []
            for entry in entries:
                details = dict(entry.details or {})
                rec = Record(seq, ts, entry.actor, entry.object_type, entry.object_id,
                             entry.action, details, prev, "", mac)
                value = record_hash(rec, mac, self.key)
                rows.append((seq, ts, entry.actor, entry.object_type, entry.object_id,
                             entry.action,
                             orjson.dumps(details, option=orjson.OPT_SORT_KEYS).decode(),
                             prev, value, mac))
                out.append(Record(seq, ts, entry.actor, entry.object_type, entry.object_id,
                                  entry.action, details, prev, value, mac))
                seq, prev = seq + 1, value
            tx.db.executemany("INSERT INTO audit VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
        last = out[-1]
        try:
            write_anchor(anchor_path(self.path), last.seq, last.hash, self.key)
        except OSError as exc:
            log.warning("audit anchor not updated", path=anchor_path(self.path), error=str(exc))
        return out

    def _next_position(self) -> tuple[int, str]:
        """(seq, prev_hash) of the record to append, inside the append transaction;
        refuses to append unkeyed after a keyed record."""
        row = self._db.execute("SELECT seq, hash, mac FROM audit ORDER BY seq DESC LIMIT 1"
                               ).fetchone()
        if row is None:
            return 1, GENESIS
        seq, prev, head_mac = int(row[0]) + 1, str(row[1]), str(row[2])
        if head_mac in KEYED_MODES and not self.key:
            raise AuditError(f"{self.path} is keyed (HMAC): set {KEY_ENV} to append to or "
                             "verify it")
        if head_mac == MAC_PLAIN and self.key:
            _note_key_start(self._db, self.path, seq)
        return seq, prev

    def records(self, object_id: str | None = None, *, limit: int | None = None
                ) -> Iterator[Record]:
        """Records in ``seq`` order (of one object, if given; the last ``limit``)."""
        params: list[Any] = [object_id, object_id, limit if limit is not None else -1]
        sql = ("SELECT * FROM (SELECT seq, ts, actor, object_type, object_id, action, "
               "details, prev_hash, hash, mac FROM audit WHERE (? IS NULL OR object_id = ?) "
               "ORDER BY seq DESC LIMIT ?) ORDER BY seq")
        with self.reading() as db:
            rows = db.execute(sql, params).fetchall()
        for r in rows:
            yield _record(r)

    def head(self) -> tuple[int, str]:
        with self.reading() as db:
            row = db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1"
                             ).fetchone()
        return (int(row[0]), str(row[1])) if row else (0, GENESIS)

    def keyed_records(self) -> bool:
        """Whether any record is keyed (it then cannot be checked without the key)."""
        with self.reading() as db:
            row = db.execute("SELECT 1 FROM audit WHERE mac <> ? LIMIT 1",
                             (MAC_PLAIN,)).fetchone()
        return row is not None

    def first_keyed(self) -> int | None:
        """The ``seq`` of the first keyed record, if any."""
        with self.reading() as db:
            row = db.execute("SELECT min(seq) FROM audit WHERE mac <> ?",
                             (MAC_PLAIN,)).fetchone()
        return int(row[0]) if row and row[0] is not None else None

    def record_at(self, seq: int) -> tuple[str, str] | None:
        """(hash, mode) of record ``seq``, if it exists."""
        with self.reading() as db:
            row = db.execute("SELECT hash, mac FROM audit WHERE seq = ?", (seq,)).fetchone()
        return (str(row[0]), str(row[1])) if row else None


def _note_key_start(db: sqlite3.Connection, path: str, seq: int) -> None:
    """The first keyed record after unkeyed ones: remember and say where the key starts.

    The ``meta`` row is only a hint for the operator (the database is not trusted for
    this): ``verify`` takes the boundary from the operator's own records."""
    db.execute("INSERT OR IGNORE INTO meta VALUES ('key_from_seq', ?)", (str(seq),))
    log.warning("audit log keyed from now on; earlier records are not", path=path,
                first_keyed_seq=seq,
                hint=f"write it in the paper log; verify with --allow-unkeyed-before {seq}")


def _record(row: tuple[Any, ...]) -> Record:
    seq, ts, actor, otype, oid, action, details, prev, value, mac = row
    try:
        parsed = orjson.loads(details)
    except orjson.JSONDecodeError:
        parsed = {"_unparsable": str(details)}
    if not isinstance(parsed, dict):
        parsed = {"_not_an_object": parsed}
    return Record(int(seq), str(ts), str(actor), str(otype), str(oid), str(action), parsed,
                  str(prev), str(value), str(mac))


# -- the anchor -------------------------------------------------------------------------------


def anchor_tag(key: bytes, seq: int, value: str, ts: str) -> str:
    """The anchor's HMAC: over its head and mode, in a message no record can have (the
    ``kind`` field), so a record's hash is never a valid anchor tag or the reverse."""
    return digest(orjson.dumps({"kind": "socd-audit-anchor", "mac": MAC_KEYED, "seq": seq,
                                "hash": value, "ts": ts}, option=orjson.OPT_SORT_KEYS), key)


def write_anchor(path: str, seq: int, value: str, key: bytes | None = None) -> None:
    """Move the anchor forward to (seq, hash); never backwards (appenders race). With a
    key the anchor carries its HMAC (``tag``)."""
    import fcntl

    fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        current = read_anchor(path)
        if current is not None and current[0] >= seq:
            return
        ts = _now()
        data: dict[str, Any] = {"seq": seq, "hash": value, "ts": ts}
        if key:
            data.update(mac=MAC_KEYED, tag=anchor_tag(key, seq, value, ts))
        tmp = f"{path}.{os.getpid()}.tmp"
        with open_private(tmp, append=False) as fh:
            fh.write(orjson.dumps(data) + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        os.close(fd)


def _load_anchor(path: str) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as fh:
            data = orjson.loads(fh.read())
        data["seq"], data["hash"] = int(data["seq"]), str(data["hash"])
    except FileNotFoundError:
        return None
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise AuditError(f"audit anchor {path} is unreadable: {exc}") from exc
    return dict(data)


def read_anchor(path: str) -> tuple[int, str] | None:
    data = _load_anchor(path)
    return (int(data["seq"]), str(data["hash"])) if data is not None else None


def anchor_protected(data: Mapping[str, Any], key: bytes) -> bool:
    """Whether an anchor's HMAC is valid under ``key`` (constant-time compare)."""
    tag = data.get("tag")
    if data.get("mac") != MAC_KEYED or not isinstance(tag, str):
        return False
    expected = anchor_tag(key, int(data["seq"]), str(data["hash"]), str(data.get("ts", "")))
    return hmac.compare_digest(tag.encode(), expected.encode())


# -- verification -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Problem:
    seq: int
    kind: Literal["edited", "deleted", "reordered", "truncated", "anchor", "unkeyed"]
    message: str


@dataclass(slots=True)
class Verification:
    """The outcome of :func:`verify`.

    ``key_starts_at``: when records are reported ``unkeyed`` and the log looks like an
    unkeyed log that got a key later, the ``seq`` of its first keyed record: what the
    operator passes as ``allow_unkeyed_before`` *if their own records agree*."""

    records: int = 0
    head_seq: int = 0
    head_hash: str = GENESIS
    anchor: tuple[int, str] | None = None
    keyed: bool = False
    key_starts_at: int | None = None
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
           expected_head: tuple[int, str] | None = None, max_problems: int = 20,
           allow_unkeyed_before: int | None = None) -> Verification:
    """Recompute the chain of the log at ``path``; see :class:`Verification`.

    ``anchor="file"`` reads ``<path>.anchor``; ``expected_head`` is a (seq, hash) an
    operator wrote down (the paper log): the chain must contain exactly that record.

    With a key (``key``, else ``$SOCD_AUDIT_KEY``), every record must be keyed and the
    anchor must carry a valid HMAC: the database cannot switch this off. Only
    ``allow_unkeyed_before=N`` — the operator's statement that the key was configured
    just before record N — lets records 1..N-1 be unkeyed; record N must then exist
    (record N's HMAC covers its link to them, so they are protected through it).
    """
    if not os.path.exists(path):
        raise AuditError(f"no audit log at {path}")
    k = key if key is not None else (env_key() if use_env else None)
    audit = AuditLog(path, k, use_env=False)
    result = Verification(keyed=bool(k))
    try:
        if not k and audit.keyed_records():
            raise AuditError(f"{path} is keyed (HMAC): set {KEY_ENV} to verify it")
        if allow_unkeyed_before is not None and not k:
            result.warnings.append(f"--allow-unkeyed-before has no effect without {KEY_ENV}")
        must_key_from = (allow_unkeyed_before or 1) if k else None
        unkeyed = _check_chain(audit, result, k, must_key_from, max_problems)
        if unkeyed:
            result.problems.append(_unkeyed_problem(audit, result, unkeyed))
        if must_key_from is not None and must_key_from > 1:
            _check_key_boundary(result, must_key_from)
        _check_heads(audit, path, result, anchor, expected_head, k, must_key_from)
    finally:
        audit.close()
    return result


def _check_chain(audit: AuditLog, result: Verification, key: bytes | None,
                 must_key_from: int | None, max_problems: int) -> list[int]:
    """Hashes and links of every record; returns the seqs that should be keyed and are
    not (reported as one problem by the caller)."""
    expected_seq, prev, prev_seq = 1, GENESIS, 0
    hashes: dict[str, int] = {}
    unkeyed: list[int] = []
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
        if must_key_from is not None and rec.seq >= must_key_from \
                and rec.mac not in KEYED_MODES:
            unkeyed.append(rec.seq)
        try:
            recomputed: str | None = record_hash(rec, rec.mac, key)
        except AuditError as exc:
            recomputed = None
            problems.append(Problem(rec.seq, "edited", f"record {rec.seq} was altered: {exc}"))
        if recomputed is not None and recomputed != rec.hash:
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
    return unkeyed


def _unkeyed_problem(audit: AuditLog, result: Verification, unkeyed: list[int]) -> Problem:
    first, count = unkeyed[0], len(unkeyed)
    span = f"record {first}" if count == 1 else f"{count} records from {first} on"
    first_keyed = audit.first_keyed()
    if first_keyed is not None and first_keyed == unkeyed[-1] + 1 \
            and unkeyed == list(range(first, first_keyed)):
        result.key_starts_at = first_keyed
        why = (f"records {first}..{first_keyed - 1} were written without the key and record "
               f"{first_keyed} is the first keyed one: either the key was configured then "
               "(check the paper log), or someone without the key rewrote them")
    elif first_keyed is None:
        why = ("no record of the log is keyed: it was written before the key was "
               "configured, or downgraded to plain SHA-256 by someone without the key")
    else:
        why = "the log was downgraded to plain SHA-256 by someone without the key"
    return Problem(first, "unkeyed",
                   f"record {first} is not protected by the key: {KEY_ENV} is set but "
                   f"{span} are stored as plain SHA-256; {why}")


def _check_key_boundary(result: Verification, must_key_from: int) -> None:
    """``allow_unkeyed_before=N`` says record N is keyed: it must exist."""
    if result.head_seq < must_key_from:
        result.problems.append(Problem(result.head_seq + 1, "truncated",
                                       f"the log ends at record {result.head_seq} but the "
                                       f"key protects records from {must_key_from} on: the "
                                       "keyed records were cut off the end"))
    else:
        below = must_key_from - 1
        result.warnings.append(("record 1 is" if below == 1 else f"records 1..{below} are")
                               + f" not keyed (allowed below {must_key_from}); record "
                               f"{must_key_from}'s HMAC covers its link to them")


def _check_heads(audit: AuditLog, path: str, result: Verification,
                 anchor: tuple[int, str] | Literal["file"] | None,
                 expected_head: tuple[int, str] | None, key: bytes | None,
                 must_key_from: int | None) -> None:
    """Truncation: the chain against the anchor file and the head the operator gave."""
    if anchor == "file":
        data = _load_anchor(anchor_path(path))
        result.anchor = (int(data["seq"]), str(data["hash"])) if data is not None else None
        if key and must_key_from is not None and result.head_seq >= must_key_from:
            _check_anchor_key(audit, path, result, data, key)
        elif data is None:
            result.warnings.append(f"no anchor file {anchor_path(path)}: records cut off "
                                   "the end cannot be detected")
    else:
        result.anchor = anchor
    _compare_heads(audit, result, expected_head)


def _check_anchor_key(audit: AuditLog, path: str, result: Verification,
                      data: Mapping[str, Any] | None, key: bytes) -> None:
    """With a key, the anchor must exist and carry a valid HMAC: otherwise whoever cut
    records off the end could move it back."""
    where = anchor_path(path)
    if data is None:
        result.problems.append(Problem(result.head_seq, "anchor",
                                       f"the anchor file {where} is missing: with {KEY_ENV} "
                                       "set it must exist (records cut off the end are "
                                       "detected with it)"))
    elif anchor_protected(data, key):
        pass
    elif _legacy_head(audit, result, data):
        result.warnings.append(f"the anchor file {where} was written before anchors "
                               "carried an HMAC; the next change writes a keyed one")
    else:
        result.problems.append(Problem(int(data["seq"]), "anchor",
                                       f"the anchor file {where} is not protected by the "
                                       "key (no valid HMAC): it was rewritten by someone "
                                       "without the key"))


def _legacy_head(audit: AuditLog, result: Verification, data: Mapping[str, Any]) -> bool:
    """An untagged anchor is what a log keyed before anchors had HMACs has, until its next
    append: accepted only while it names the head and the head is such a record."""
    if int(data["seq"]) != result.head_seq:
        return False
    found = audit.record_at(result.head_seq)
    return found is not None and found[1] == MAC_KEYED_V1


def _compare_heads(audit: AuditLog, result: Verification,
                   expected_head: tuple[int, str] | None) -> None:
    checks: list[tuple[str, tuple[int, str]]] = []
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
        elif seq > 0 and _hash_at(audit, seq) != value:
            result.problems.append(Problem(seq, "anchor",
                                           f"record {seq} differs from {what} (hash "
                                           f"{value[:16]}...): the chain was rewritten"))


def _hash_at(audit: AuditLog, seq: int) -> str | None:
    found = audit.record_at(seq)
    return found[0] if found else None


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


def record_many(path: str, entries: Sequence[Entry]) -> list[Record] | None:
    """:func:`record` for many records in one transaction (:meth:`AuditLog.append_many`);
    never raises either: ``None`` (logged) when they could not be written."""
    try:
        with opened(path) as audit:
            return audit.append_many(entries)
    except (sqlite3.Error, OSError, AuditError) as exc:
        log.error("audit records not written", path=path, records=len(entries),
                  error=str(exc))
        return None


def alert_change_details(updated: Any) -> dict[str, Any]:
    """What an alert's audit record says about one lifecycle change (before -> after)."""
    before, after = updated.before, updated.after
    return {"status_from": before.status, "status_to": after.status,
            "assignee_from": before.assignee, "assignee_to": after.assignee,
            "note": after.status_note}


def record_alert_change(store_path: str, updated: Any, action: str | None = None
                        ) -> Record | None:
    """The audit record of one alert lifecycle change (called by :mod:`socd.alerts.lifecycle`).

    The log is ``audit.db`` next to the alert store (the store is ``<state_dir>/alerts.db``
    unless the sqlite sink's ``path`` moves it)."""
    before, after = updated.before, updated.after
    details = alert_change_details(updated)
    action = action or ("status" if before.status != after.status else "assign")
    path = os.path.join(os.path.dirname(os.path.abspath(store_path)), DB_NAME)
    return record(path, after.status_by or "?", "alert", after.id, action, details)
