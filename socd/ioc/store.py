"""The IoC store: indicators on disk (SQLite) and an immutable in-memory index.

Persistence
    ``<state_dir>/ioc.db`` (SQLite, WAL). One row per (kind, value, source) in
    ``iocs``; what an import says about its entries (source, letter reference,
    confidence, expiry, tags) is one row in ``attrs`` shared by all the entries of
    that import, so a million-entry feed costs a million small rows and a handful
    of attribution rows. Addresses and CIDRs also keep their first and last
    address (integers for IPv4, 16-byte big-endian blobs for IPv6) in a covering
    index, so the index is read in address order without sorting.

Index
    :class:`IocIndex` is built from the database (plus the plain-text lists of
    ``classification.ioc_files``) and never changes; a reload builds a new one and
    swaps the reference, so readers never see a half-built index.

    * IPv4: exact addresses in a sorted ``array('I')`` with a parallel array of
      attribution ids; CIDRs grouped by prefix length (sorted network addresses);
      everything merged into sorted disjoint intervals (two ``array('I')``) with a
      65,537-entry table of offsets by the top 16 bits, so a membership test is
      one short ``bisect`` (about 2 million lookups/s in CPython).
    * IPv6: the same with lists of Python ints.
    * Domains and hashes: dicts; domain entries ``*.example.org`` match every name
      below ``example.org`` (not ``example.org`` itself).

    When several entries match, the *best* is the one with the highest confidence,
    then the most recently imported. Expired entries never match: the index knows
    the earliest expiry it contains and after that moment lookups check each
    entry's expiry until the next reload drops them.

The ``iocs`` and ``attrs`` tables are this module's: layer-4 sharing and the reports
read them through :meth:`IocDatabase.best_match` and :func:`import_activity`.
"""

from __future__ import annotations

import heapq
import os
import socket
import sqlite3
import threading
import time
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import orjson
from prometheus_client import Gauge

from socd import metrics, netaddr
from socd.ioc.allowlist import Allowlist
from socd.ioc.normalize import (
    KINDS,
    MAX_HASH_CHARS,
    IndicatorError,
    event_domain,
    ip_int,
    ip_range,
    normalize_ip,
)
from socd.log import get_logger
from socd.sqlite import Schema, Store, has_table, open_db, read_only, script

log = get_logger("socd.ioc.store")

IOC_ENTRIES = Gauge(
    "socd_ioc_entries",
    "IoC entries in the loaded index (unexpired, above the minimum confidence), by kind.",
    ["kind"],
    registry=metrics.REGISTRY,
)

NEVER = float("inf")
_STATIC_BASE = 1 << 31  # attribution ids of entries from plain-text files (not in the DB)
_U32 = "I" if array("I").itemsize == 4 else "L"


@dataclass(frozen=True, slots=True, init=False)
class Entry:
    """One indicator with its provenance. Dates are Unix seconds (int)."""

    kind: str  # ip | domain | hash
    value: str  # normalised (see socd.ioc.normalize)
    source: str  # feed or list name
    ref: str = ""  # letter number ("1298/CATTT-NCSC"), report id, URL
    confidence: int = 50  # 0-100
    first_seen: int | None = None
    last_seen: int | None = None
    expires: int | None = None
    tags: tuple[str, ...] = ()

    def __init__(self, kind: str, value: str, source: str, ref: str = "",
                 confidence: int = 50, first_seen: int | None = None,
                 last_seen: int | None = None, expires: int | None = None,
                 tags: tuple[str, ...] = ()) -> None:
        # The dataclass's own __init__, faster: a frozen instance is filled through its
        # slots' descriptors, which the generated code reaches by a lookup in
        # object.__setattr__ for each field (a million-entry list builds a million
        # entries: 1.0 -> 0.4 s).
        s_kind, s_value, s_source, s_ref, s_conf, s_first, s_last, s_expires, s_tags = \
            _ENTRY_SETTERS
        s_kind(self, kind)
        s_value(self, value)
        s_source(self, source)
        s_ref(self, ref)
        s_conf(self, confidence)
        s_first(self, first_seen)
        s_last(self, last_seen)
        s_expires(self, expires)
        s_tags(self, tags)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "value": self.value, "source": self.source, "ref": self.ref,
                "confidence": self.confidence, "first_seen": _iso(self.first_seen),
                "last_seen": _iso(self.last_seen), "expires": _iso(self.expires),
                "tags": list(self.tags)}


# The slot setters of Entry's fields, in the order of its __init__.
_ENTRY_SETTERS: tuple[Callable[[Entry, Any], None], ...] = tuple(
    Entry.__dict__[f.name].__set__ for f in fields(Entry))


@dataclass(frozen=True, slots=True)
class Attribution:
    """What an import said about its entries; shared by many entries."""

    id: int
    source: str
    ref: str
    confidence: int
    expires: float  # NEVER when the entries do not expire
    last_used: int  # the last import that used it ("newest" when ranking)
    tags: tuple[str, ...] = ()

    @property
    def rank(self) -> tuple[int, int, int]:
        return (self.confidence, self.last_used, self.id)


@dataclass
class ImportResult:
    inserted: int = 0
    updated: int = 0
    refused: list[tuple[Entry, str]] = field(default_factory=list)  # allowlist
    rejected: list[tuple[str, str]] = field(default_factory=list)  # unparseable input


def _iso(ts: int | float | None) -> str | None:
    if ts is None or ts == NEVER:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


# -- the database -----------------------------------------------------------------------

SCHEMA = """
CREATE TABLE IF NOT EXISTS attrs (
    id         INTEGER PRIMARY KEY,
    source     TEXT NOT NULL,
    ref        TEXT NOT NULL,
    confidence INTEGER NOT NULL,
    expires    INTEGER NOT NULL,       -- Unix seconds, 0 = never
    tags       TEXT NOT NULL,          -- JSON array
    last_used  INTEGER NOT NULL,       -- last import that used this attribution
    UNIQUE (source, ref, confidence, expires, tags)
);
CREATE TABLE IF NOT EXISTS iocs (
    kind       TEXT NOT NULL,          -- ip | domain | hash
    value      TEXT NOT NULL,          -- normalised
    source     TEXT NOT NULL,
    attr       INTEGER NOT NULL REFERENCES attrs (id),
    first_seen INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL,
    fam        INTEGER,                -- 4 | 6 for kind ip
    lo, hi,                            -- first and last address (int; IPv6: 16-byte blob)
    PRIMARY KEY (kind, value, source)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS iocs_ip ON iocs (fam, lo, hi, attr) WHERE fam IS NOT NULL;
CREATE INDEX IF NOT EXISTS iocs_attr ON iocs (attr);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
SCHEMA_VERSION = "1"
STORE_SCHEMA = Schema(name="IoC store", create=script(SCHEMA), version=SCHEMA_VERSION,
                      unknown="ignore")

_ENTRY_SQL = ("SELECT i.kind, i.value, i.source, a.ref, a.confidence, i.first_seen, "
              "i.last_seen, a.expires, a.tags FROM iocs i JOIN attrs a ON a.id = i.attr")


# The IPv4-mapped IPv6 range ::ffff:0:0/96 as stored in `lo` (16-byte big-endian).
_MAPPED_FIRST = (0xFFFF << 32).to_bytes(16, "big")
_MAPPED_LAST = ((0xFFFF << 32) | 0xFFFFFFFF).to_bytes(16, "big")


def _canonical_ip(value: str) -> bool:
    """True when a stored IP entry is exactly what the address gate makes of it."""
    try:
        return normalize_ip(value, count=False) == value
    except IndicatorError:
        return False


def _connect(path: str) -> sqlite3.Connection:
    return open_db(path)


def _row_entry(row: Sequence[Any]) -> Entry:
    kind, value, source, ref, conf, first, last, expires, tags = row
    return Entry(kind, value, source, ref, conf, first, last, expires or None,
                 tuple(orjson.loads(tags)))


class IocDatabase(Store):
    """The SQLite file. Thread-safe; every write is one transaction.

    ``readonly``: read an existing file without changing it (layer-4 sharing looks up
    what it exports; :class:`socd.sqlite.NoDatabase` when there is none)."""

    schema = STORE_SCHEMA

    def __init__(self, path: str, *, readonly: bool = False) -> None:
        # Bulk upserts touch B-tree pages all over the file: a larger page cache (64 MB,
        # allocated only as used) keeps a 1M-entry import from re-reading them.
        super().__init__(path, readonly=readonly, pragmas=("cache_size=-65536",))
        if not readonly:
            self._remove_invalid()

    def _remove_invalid(self) -> None:
        """Delete IP entries whose value the address gate refuses; logged once with the count.

        Before the gate an entry such as ``2001:db8::5%x`` (an IPv6 zone id, whose text
        may hold spaces and newlines) or an IPv4-mapped network could be stored; its
        lookups, exports and block decisions would carry it on. Candidates are found
        in SQL (a character outside an address, or the IPv4-mapped range) so a
        million-entry store costs one index scan (~0.4 s), then checked by the gate.
        Every writer goes through the gate since, so the scan runs once per file
        (marked ``addresses_checked`` in ``meta``).
        """
        with self.reading() as db:
            done = db.execute("SELECT 1 FROM meta WHERE key = 'addresses_checked'").fetchone()
        if done:
            return
        with self.reading() as db:
            rows = db.execute(
                "SELECT value, source FROM iocs WHERE kind = 'ip' AND (value = '' OR "
                "value GLOB '*[^0-9a-f.:/]*' OR (fam = 6 AND lo >= ? AND lo <= ?))",
                (_MAPPED_FIRST, _MAPPED_LAST)).fetchall()
        bad = [(value, source) for value, source in rows if not _canonical_ip(value)]
        with self.transaction() as tx:
            if bad:
                tx.db.executemany("DELETE FROM iocs WHERE kind = 'ip' AND value = ? "
                                  "AND source = ?", bad)
                self._drop_unused_attrs()
            tx.db.execute("INSERT OR REPLACE INTO meta VALUES ('addresses_checked', '1')")
        if not bad:
            return
        log.warning("invalid IoC addresses removed", path=self.path, count=len(bad),
                    values=[v[:64] for v, _ in bad[:5]])

    def upsert(self, entries: Iterable[Entry], now: int | None = None) -> tuple[int, int]:
        """Insert or update entries by (kind, value, source); returns (inserted, updated).

        An existing entry takes the new attribution (ref, confidence, expiry, tags),
        keeps its earliest first_seen and its latest last_seen.
        """
        now = int(time.time()) if now is None else now
        attr_ids: dict[tuple[str, str, int, int, str], int] = {}
        with self.transaction() as tx:
            db = tx.db
            before = db.execute("SELECT count(*) FROM iocs").fetchone()[0]
            rows: list[tuple[Any, ...]] = []
            total = 0
            for e in entries:
                key = (e.source, e.ref, int(e.confidence), int(e.expires or 0),
                       orjson.dumps(list(e.tags)).decode())
                attr = attr_ids.get(key)
                if attr is None:
                    attr = attr_ids[key] = self._attr(key, now)
                fam: int | None = None
                lo: Any = None
                hi: Any = None
                if e.kind == "ip":
                    fam, first, last = ip_range(e.value)
                    if fam == 4:
                        lo, hi = first, last
                    else:
                        lo, hi = first.to_bytes(16, "big"), last.to_bytes(16, "big")
                first_seen = e.first_seen or now
                rows.append((e.kind, e.value, e.source, attr, first_seen,
                             max(e.last_seen or now, first_seen), fam, lo, hi))
                if len(rows) >= 50_000:
                    total += len(rows)
                    self._write(rows)
                    rows = []
            total += len(rows)
            self._write(rows)
            after = db.execute("SELECT count(*) FROM iocs").fetchone()[0]
            self._drop_unused_attrs()
        inserted = after - before
        return inserted, total - inserted

    def _attr(self, key: tuple[str, str, int, int, str], now: int) -> int:
        db = self._db
        row = db.execute("SELECT id FROM attrs WHERE source=? AND ref=? AND confidence=? "
                         "AND expires=? AND tags=?", key).fetchone()
        if row is not None:
            db.execute("UPDATE attrs SET last_used=? WHERE id=?", (now, row[0]))
            return int(row[0])
        cur = db.execute("INSERT INTO attrs (source, ref, confidence, expires, tags, last_used) "
                         "VALUES (?,?,?,?,?,?)", (*key, now))
        return int(cur.lastrowid or 0)

    def _write(self, rows: list[tuple[Any, ...]]) -> None:
        self._db.executemany(
            "INSERT INTO iocs (kind, value, source, attr, first_seen, last_seen, fam, lo, hi) "
            "VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT (kind, value, source) DO UPDATE SET "
            "attr = excluded.attr, first_seen = min(first_seen, excluded.first_seen), "
            "last_seen = max(last_seen, excluded.last_seen)", rows)

    def _drop_unused_attrs(self) -> None:
        self._db.execute("DELETE FROM attrs WHERE id NOT IN (SELECT DISTINCT attr FROM iocs)")

    def expire(self, now: float | None = None) -> int:
        """Delete expired entries; returns how many."""
        now = time.time() if now is None else now
        with self.transaction() as tx:
            cur = tx.db.execute("DELETE FROM iocs WHERE attr IN (SELECT id FROM attrs WHERE "
                                "expires > 0 AND expires <= ?)", (now,))
            removed = cur.rowcount
            self._drop_unused_attrs()
        return removed

    def _delete_where(self, where: str, params: Sequence[Any] = ()) -> int:
        with self.transaction() as tx:
            removed = tx.db.execute(f"DELETE FROM iocs WHERE {where}", tuple(params)).rowcount  # noqa: S608
            self._drop_unused_attrs()
        return removed

    def delete_source(self, source: str, ref: str | None = None) -> int:
        """Delete the entries of ``source`` (of its letter ``ref`` only, when given)."""
        if ref:
            return self._delete_where("source = ? AND attr IN (SELECT id FROM attrs WHERE "
                                      "ref = ?)", (source, ref))
        return self._delete_where("source = ?", (source,))

    def purge_allowlisted(self, allowlist: Allowlist) -> list[tuple[Entry, str]]:
        """Delete entries that touch the allowlist (after the allowlist grew)."""
        doomed: list[tuple[Entry, str]] = []
        for net in allowlist.networks:
            first, last = int(net.network_address), int(net.broadcast_address)
            if net.version == 4:
                params: tuple[Any, ...] = (last, first)
            else:
                params = (last.to_bytes(16, "big"), first.to_bytes(16, "big"))
            for row in self.query(f"{_ENTRY_SQL} WHERE i.fam = ? AND i.lo <= ? AND i.hi >= ?",
                                  (net.version, *params)):
                e = _row_entry(row)
                doomed.append((e, allowlist.reason("ip", e.value) or "allowlisted"))
        if allowlist.hosts:
            for row in self.query(f"{_ENTRY_SQL} WHERE i.kind = 'domain'"):
                reason = allowlist.reason("domain", row[1])
                if reason:
                    doomed.append((_row_entry(row), reason))
        keys = {(e.kind, e.value, e.source) for e, _ in doomed}
        with self.transaction() as tx:
            tx.db.executemany("DELETE FROM iocs WHERE kind=? AND value=? AND source=?",
                              list(keys))
            self._drop_unused_attrs()
        return doomed

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Any read of this store's file (its own methods, tests, diagnostics)."""
        with self.reading() as db:
            return list(db.execute(sql, tuple(params)))

    def entries(self, where: str = "", params: Sequence[Any] = (), *,
                limit: int | None = None) -> list[Entry]:
        sql = _ENTRY_SQL + (f" WHERE {where}" if where else "") + \
            " ORDER BY i.last_seen DESC, i.kind, i.value"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [_row_entry(r) for r in self.query(sql, params)]

    def count(self) -> int:
        return int(self.query("SELECT count(*) FROM iocs")[0][0])

    def find(self, *, kind: str | None = None, source: str | None = None,
             ref: str | None = None, limit: int | None = None) -> list[Entry]:
        """Stored entries (expired ones included) of that kind, source and letter
        reference (each only when given), most recently seen first."""
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("i.kind", kind), ("i.source", source), ("a.ref", ref)):
            if value:
                where.append(f"{column} = ?")
                params.append(value)
        return self.entries(" AND ".join(where), params, limit=limit)

    def best_match(self, kind: str, value: str) -> Entry | None:
        """The stored entry (expired ones included) behind a normalised observed value:
        an exact entry before a wider one (a CIDR holding the address, ``*.`` a parent
        domain), then the most confident, then the most recently seen."""
        sql = f"{_ENTRY_SQL} WHERE "
        params: list[Any]
        if kind == "ip":
            addr = netaddr.parse_address(value, count=False)
            x: Any = int(addr) if addr.version == 4 else addr.packed
            sql += "i.kind = 'ip' AND i.fam = ? AND i.lo <= ? AND i.hi >= ?"
            params = [addr.version, x, x]
        elif kind == "domain":
            parts = value.split(".")
            names = [value] + ["*." + ".".join(parts[i:]) for i in range(1, len(parts) - 1)]
            sql += f"i.kind = 'domain' AND i.value IN ({','.join('?' * len(names))})"
            params = names
        else:
            sql += "i.kind = 'hash' AND i.value = ?"
            params = [value]
        sql += " ORDER BY (i.value = ?) DESC, a.confidence DESC, i.last_seen DESC LIMIT 1"
        rows = self.query(sql, [*params, value])
        return _row_entry(rows[0]) if rows else None


@dataclass(frozen=True, slots=True)
class ImportActivity:
    """Entries of one (source, letter reference, kind) whose attribution an import used
    in a period (see :func:`import_activity`)."""

    source: str
    ref: str
    last_used: float  # Unix seconds of the latest such import
    kind: str
    entries: int  # entries now attributed to it
    new_entries: int  # of which first seen in the period


def import_activity(path: str | None, start: float, end: float) -> list[ImportActivity] | None:
    """What was imported in ``[start, end)`` (Unix seconds), per source, reference and
    kind, read without changing the file (the reports). ``None`` when there is no file
    or it holds no IoC tables yet."""
    with read_only(path) as db:
        if db is None or not (has_table(db, "attrs") and has_table(db, "iocs")):
            return None
        rows = db.execute(
            "SELECT a.source, a.ref, max(a.last_used), i.kind, count(*), "
            "sum(i.first_seen >= ? AND i.first_seen < ?) FROM attrs a "
            "JOIN iocs i ON i.attr = a.id WHERE a.last_used >= ? AND a.last_used < ? "
            "GROUP BY a.source, a.ref, i.kind", (start, end, start, end)).fetchall()
    return [ImportActivity(str(source), str(ref), float(used), str(kind), int(n),
                           int(new or 0)) for source, ref, used, kind, n, new in rows]


# -- the index ----------------------------------------------------------------------------


class IocIndex:
    """An immutable snapshot of all unexpired entries, for matching."""

    def __init__(self) -> None:
        self.attrs: dict[int, Attribution] = {}
        self.v4_exact = array(_U32)
        self.v4_exact_attr = array(_U32)
        self.v4_nets: dict[int, tuple[array[int], array[int]]] = {}
        self.v4_lo = array(_U32)
        self.v4_hi = array(_U32)
        self.v4_off = array(_U32, bytes(4 * 65537))
        self.v6_exact: list[int] = []
        self.v6_exact_attr = array(_U32)
        self.v6_nets: dict[int, tuple[list[int], array[int]]] = {}
        self.v6_lo: list[int] = []
        self.v6_hi: list[int] = []
        self.domains: dict[str, int] = {}
        self.wildcards: dict[str, int] = {}
        self.hashes: dict[str, int] = {}
        self.valid_until = NEVER  # earliest expiry among the entries
        self.built_at = time.time()
        self.build_secs = 0.0

    # -- sizes -------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        nets = sum(len(s) for s, _ in self.v4_nets.values()) + \
            sum(len(s) for s, _ in self.v6_nets.values())
        return {"ip": len(self.v4_exact) + len(self.v6_exact) + nets,
                "domain": len(self.domains) + len(self.wildcards), "hash": len(self.hashes)}

    def __len__(self) -> int:
        return sum(self.counts().values())

    @property
    def has_ips(self) -> bool:
        return bool(self.v4_lo or self.v6_lo)

    # -- fast membership ---------------------------------------------------------------

    def contains_ip(self, family: int, x: int) -> bool:
        """Any (possibly expired) IP entry covers the address."""
        if family == 4:
            lo = self.v4_lo
            if not lo:
                return False
            off = self.v4_off
            b = x >> 16
            i = bisect_right(lo, x, off[b], off[b + 1]) - 1
            return i >= 0 and x <= self.v4_hi[i]
        lo6 = self.v6_lo
        if not lo6:
            return False
        i = bisect_right(lo6, x) - 1
        return i >= 0 and x <= self.v6_hi[i]

    def contains_many_ipv4(self, ints: Iterable[int]) -> list[bool]:
        lo, hi, off = self.v4_lo, self.v4_hi, self.v4_off
        if not lo:
            return [False for _ in ints]
        br = bisect_right
        return [x <= hi[i] if (i := br(lo, x, off[x >> 16], off[(x >> 16) + 1]) - 1) >= 0
                else False for x in ints]

    # -- attributions ------------------------------------------------------------------

    def ip_attrs(self, family: int, x: int) -> list[int]:
        """Attribution ids of every entry covering the address (exact, then CIDRs)."""
        if not self.contains_ip(family, x):
            return []
        out: list[int] = []
        if family == 4:
            exact: Sequence[int] = self.v4_exact
            exact_attr = self.v4_exact_attr
            nets: dict[int, Any] = self.v4_nets
            bits = 32
        else:
            exact, exact_attr, nets, bits = self.v6_exact, self.v6_exact_attr, self.v6_nets, 128
        i = bisect_left(exact, x)
        if i < len(exact) and exact[i] == x:
            out.append(exact_attr[i])
        for plen, (starts, attrs) in nets.items():
            shift = bits - plen
            key = x >> shift << shift
            j = bisect_left(starts, key)
            if j < len(starts) and starts[j] == key:
                out.append(attrs[j])
        return out

    def domain_attrs(self, name: str) -> list[int]:
        out: list[int] = []
        a = self.domains.get(name)
        if a is not None:
            out.append(a)
        wild = self.wildcards
        if wild:
            i = name.find(".")
            while i >= 0:
                w = wild.get(name[i + 1:])
                if w is not None:
                    out.append(w)
                i = name.find(".", i + 1)
        return out

    def best(self, attr_ids: Iterable[int], now: float) -> Attribution | None:
        attrs = self.attrs
        found = None
        for a in attr_ids:
            attr = attrs[a]
            if attr.expires <= now:
                continue
            if found is None or attr.rank > found.rank:
                found = attr
        return found


def _build_ip(rows: Iterable[tuple[int, int, int]], family: int, index: IocIndex,
              skip: set[int], rank: dict[int, tuple[int, int, int]]) -> None:
    """Fill the index for one family from rows sorted by (first, last)."""
    bits = 32 if family == 4 else 128

    def seq() -> Any:
        return array(_U32) if family == 4 else []

    exact: Any = seq()
    exact_attr = array(_U32)
    nets: dict[int, tuple[Any, array[int]]] = {}
    starts: Any = seq()
    ends: Any = seq()
    last_exact = -1
    cur_hi = -2
    for lo, hi, a in rows:
        if skip and a in skip:
            continue
        if lo == hi:
            if lo == last_exact:
                if rank[a] > rank[exact_attr[-1]]:
                    exact_attr[-1] = a
                continue
            exact.append(lo)
            exact_attr.append(a)
            last_exact = lo
        else:
            plen = bits + 1 - (hi - lo + 1).bit_length()
            group = nets.get(plen)
            if group is None:
                group = nets[plen] = (seq(), array(_U32))
            g_starts, g_attr = group
            if g_starts and g_starts[-1] == lo:
                if rank[a] > rank[g_attr[-1]]:
                    g_attr[-1] = a
                continue
            g_starts.append(lo)
            g_attr.append(a)
        if lo > cur_hi + 1:
            starts.append(lo)
            ends.append(hi)
            cur_hi = hi
        elif hi > cur_hi:
            ends[-1] = hi
            cur_hi = hi
    if family == 4:
        index.v4_exact, index.v4_exact_attr, index.v4_lo, index.v4_hi = (
            exact, exact_attr, starts, ends)
        index.v4_nets = dict(sorted(nets.items()))
        _fill_offsets(index.v4_off, starts)
    else:
        index.v6_exact, index.v6_exact_attr, index.v6_lo, index.v6_hi = (
            exact, exact_attr, starts, ends)
        index.v6_nets = dict(sorted(nets.items()))


def _fill_offsets(off: array[int], starts: Sequence[int]) -> None:
    """off[b] = index of the first interval starting at or above b << 16.

    ``off`` holds zeros. Filled by runs: between two consecutive top-16-bit values of the
    starts the offset is constant, so a list of 200 addresses costs 200 slice
    assignments (not a loop over all 65,537 entries, a start-up cost of every replay)
    and a million starts one bisect per run (not a step per start)."""
    n = len(starts)
    j = 0  # the number of starts below b << 16
    b = 0
    while j < n:
        top = starts[j] >> 16
        # off[b..top] = j: the starts below (top << 16) are those below (b << 16)
        if top == b:
            off[b] = j
        else:
            off[b:top + 1] = array(_U32, (j,)) * (top + 1 - b)
        b = top + 1
        j = bisect_left(starts, b << 16, j)
    if b <= 65536:
        off[b:] = array(_U32, (n,)) * (65537 - b)


def _blob_rows(rows: Iterable[tuple[bytes, bytes, int]]) -> Iterator[tuple[int, int, int]]:
    fb = int.from_bytes
    for lo, hi, a in rows:
        yield fb(lo, "big"), fb(hi, "big"), a


def build_index(db_path: str | None, static: Sequence[Entry] = (), *,
                min_confidence: int = 0, now: float | None = None) -> IocIndex:
    """Read the database (its own connection) and the static entries into a new index."""
    started = time.perf_counter()
    now = time.time() if now is None else now
    index = IocIndex()
    attrs = index.attrs
    db = _connect(db_path) if db_path else None
    try:
        if db is not None:
            for aid, source, ref, conf, expires, tags, last_used in db.execute(
                    "SELECT id, source, ref, confidence, expires, tags, last_used FROM attrs"):
                attrs[aid] = Attribution(aid, source, ref, conf, float(expires) or NEVER,
                                         last_used, tuple(orjson.loads(tags)))
        static_rows = _static_rows(static, attrs, now)
        skip = {a.id for a in attrs.values()
                if a.expires <= now or a.confidence < min_confidence}
        rank = {a.id: a.rank for a in attrs.values()}
        live = [a.expires for a in attrs.values() if a.id not in skip]
        index.valid_until = min(live, default=NEVER)
        for family in (4, 6):
            rows: Iterable[tuple[int, int, int]] = []
            if db is not None:
                cur = db.execute("SELECT lo, hi, attr FROM iocs WHERE fam = ? "
                                 "ORDER BY fam, lo, hi", (family,))
                rows = cur if family == 4 else _blob_rows(cur)
            extra = static_rows[family]
            if extra:
                rows = heapq.merge(rows, extra)
            _build_ip(rows, family, index, skip, rank)
        for kind, target in (("domain", index.domains), ("hash", index.hashes)):
            rows2: list[Iterable[tuple[str, int]]] = [static_rows[kind]]
            if db is not None:
                rows2.insert(0, db.execute("SELECT value, attr FROM iocs WHERE kind = ?",
                                           (kind,)))
            for source_rows in rows2:
                for value, a in source_rows:
                    if skip and a in skip:
                        continue
                    table = target
                    if kind == "domain" and value.startswith("*."):
                        table, value = index.wildcards, value[2:]
                    old = table.get(value)
                    if old is None or rank[a] > rank[old]:
                        table[value] = a
    finally:
        if db is not None:
            db.close()
    index.built_at = time.time()
    index.build_secs = time.perf_counter() - started
    return index


def _static_rows(static: Sequence[Entry], attrs: dict[int, Attribution],
                 now: float) -> dict[Any, list[Any]]:
    rows: dict[Any, list[Any]] = {4: [], 6: [], "domain": [], "hash": []}
    ids: dict[tuple[Any, ...], int] = {}
    pton, inet, from_bytes = socket.inet_pton, socket.AF_INET, int.from_bytes
    # The attribution fields of the entry before: the entries of one list share the
    # very objects (its name, a letter's reference), so most entries are known by an
    # identity test, without building and hashing their key.
    l_source: Any = _MISS
    l_ref: Any = _MISS
    l_conf: Any = _MISS
    l_expires: Any = _MISS
    l_tags: Any = _MISS
    aid = 0
    for e in static:
        source, ref, confidence, expires, tags = e.source, e.ref, e.confidence, e.expires, \
            e.tags
        if source is not l_source or ref is not l_ref or confidence is not l_conf \
                or expires is not l_expires or tags is not l_tags:
            key = (source, ref, confidence, expires, tags)
            found = ids.get(key)
            if found is None:
                found = ids[key] = _STATIC_BASE + len(ids)
                attrs[found] = Attribution(found, source, ref, confidence,
                                           float(expires) if expires else NEVER,
                                           int(e.last_seen or now), tags)
            aid = found
            l_source, l_ref, l_conf, l_expires, l_tags = source, ref, confidence, expires, tags
        if e.kind == "ip":
            value = e.value
            try:
                # Most entries of a list: an IPv4 address, what ip_range's first step
                # (netaddr.address_int) reads so, without its calls.
                x = from_bytes(pton(inet, value), "big")
            except (OSError, ValueError, TypeError):
                fam, lo, hi = ip_range(value)
                rows[fam].append((lo, hi, aid))
            else:
                rows[4].append((x, x, aid))
        else:
            rows[e.kind].append((e.value, aid))
    rows[4].sort()
    rows[6].sort()
    return rows


def _match(index: IocIndex, kind: str, value: str, now: float) -> Attribution | None:
    """:meth:`IocStore.match` in ``index`` at the time ``now``."""
    if kind == "ip":
        parsed = ip_int(value)
        if parsed is None or not index.contains_ip(*parsed):
            return None
        return index.best(index.ip_attrs(*parsed), now)
    if kind == "domain":
        if not (index.domains or index.wildcards):
            return None
        name = event_domain(value)  # "" when too long to be a domain
        return index.best(index.domain_attrs(name), now) if name else None
    if kind == "hash":
        text = value.strip()
        if len(text) > MAX_HASH_CHARS:
            return None  # not a digest: no need to lower a huge field
        a = index.hashes.get(text.lower())
        return None if a is None else index.best((a,), now)
    raise ValueError(f"unknown indicator kind {kind!r}; use one of {', '.join(KINDS)}")


# Bounds of a matcher's cache (_cached_refs), per kind: values cached, and the longest
# value cached (an address is at most 64 characters, a domain name 254, a digest 128;
# a longer value is looked up every time, never kept: input must not make huge keys).
_REF_CACHE_ENTRIES = 8192
_REF_CACHE_CHARS = 256
_MISS: Any = object()


def _cached_refs(index: IocIndex, clock: Callable[[], float]) -> Callable[[str, str], str | None]:
    """``ref(kind, value)``: the reference (else the source) of the best unexpired entry of
    ``index`` for the value, or None, as :meth:`IocStore.match` finds it, cached.

    A verdict depends on the index and on the time only through expiry: until the
    earliest expiry among the entries (``index.valid_until``) every moment gives the
    same answer. So a verdict found before then is kept and served until then; from
    then on (until the reload that drops the expired entries) every call looks up
    afresh at its own time, as an uncached lookup would. Each kind's cache holds at
    most ``_REF_CACHE_ENTRIES`` values and is emptied when full.
    """
    caches: dict[str, dict[str, str | None]] = {kind: {} for kind in KINDS}
    valid_until = index.valid_until
    timeless = valid_until == NEVER  # no entry expires: the clock need not be read

    def ref(kind: str, value: str) -> str | None:
        cache = caches.get(kind)
        if cache is not None and type(value) is str:
            hit = cache.get(value, _MISS)
            if hit is not _MISS and (timeless or clock() < valid_until):
                return hit  # type: ignore[no-any-return]  # a str or None, as stored
        now = clock()
        found = _match(index, kind, value, now)
        out = None if found is None else (found.ref or found.source)
        if (cache is not None and now < valid_until and type(value) is str
                and len(value) <= _REF_CACHE_CHARS):
            if len(cache) >= _REF_CACHE_ENTRIES:
                cache.clear()
            cache[value] = out
        return out

    return ref


# -- the store ----------------------------------------------------------------------------


class IocStore:
    """Database + index: the object the classifier, the CLI and the rules engine use.

    ``path`` None gives a memory-only store holding just ``static`` entries (the
    plain-text ``classification.ioc_files``). A path that does not exist yet is
    opened once it appears (``create=False``: the daemon never creates it; the
    ``socd ioc`` commands do).
    """

    def __init__(self, path: str | None = None, *, static: Sequence[Entry] = (),
                 allowlist: Allowlist | None = None, min_confidence: int = 0,
                 refresh_secs: float = 10.0, create: bool = True, load: bool = True,
                 clock: Callable[[], float] = time.time, gauges: bool = True) -> None:
        self.path = path
        # Only the daemon's store sets socd_ioc_entries: a collector's own lists or a rule
        # test's indicators must not overwrite its counts.
        self.gauges = gauges
        self.allowlist = allowlist or Allowlist()
        self.min_confidence = min_confidence
        self.refresh_secs = refresh_secs
        self.clock = clock
        self.static: tuple[Entry, ...] = tuple(static)
        self.db: IocDatabase | None = None
        if path is not None and (create or os.path.exists(path)):
            self.db = IocDatabase(path)
        self._version = self.db.data_version() if self.db is not None else 0
        self._next_check = 0.0
        self._reloading: threading.Thread | None = None
        self._index = IocIndex()
        # (index, its cached matcher): see ref_matcher.
        self._refs: tuple[IocIndex, Callable[[str, str], str | None]] | None = None
        if load:
            self.reload()

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def index(self) -> IocIndex:
        return self._index

    def reload(self) -> IocIndex:
        """Build a new index and swap it in (atomic for readers)."""
        index = build_index(self.db.path if self.db is not None else None, self.static,
                            min_confidence=self.min_confidence, now=self.clock())
        self._index = index
        if self.gauges:
            for kind, n in index.counts().items():
                IOC_ENTRIES.labels(kind).set(n)
        return index

    def maybe_refresh(self, *, background: bool = True) -> bool:
        """Reload when another process changed the database or an entry expired.

        Cheap enough to call once per batch: it looks at most every
        ``refresh_secs``. With ``background`` the new index is built in a thread
        and swapped in when ready. Returns True when a reload was started.
        """
        now = self.clock()
        if now < self._next_check and now < self._index.valid_until:
            return False
        self._next_check = now + self.refresh_secs
        if self._reloading is not None and self._reloading.is_alive():
            return False
        if self.db is None:
            if self.path is None or not os.path.exists(self.path):
                return False
            self.db = IocDatabase(self.path)
            self._version = -1
        version = self.db.data_version()
        if version == self._version and now < self._index.valid_until:
            return False
        self._version = version
        if background:
            self._reloading = threading.Thread(target=self.reload, name="ioc-reload",
                                               daemon=True)
            self._reloading.start()
        else:
            self.reload()
        return True

    def wait_reload(self, timeout: float | None = None) -> None:
        if self._reloading is not None:
            self._reloading.join(timeout)

    def close(self) -> None:
        self.wait_reload()
        if self.db is not None:
            self.db.close()

    # -- matching ----------------------------------------------------------------------

    def __len__(self) -> int:
        """Entries in the loaded index (unexpired, above the minimum confidence)."""
        return len(self._index)

    def lookup(self, kind: str, value: str, source: str | None = None) -> bool:
        """Is the value (an address, domain name or hash) on an unexpired entry? With
        ``source``: is it on an entry of that source (expired ones included, as
        :meth:`entries_for` lists them)? This is the rules engine's ``ioc`` condition."""
        if source is None:
            return self.ref_matcher()(kind, value) is not None
        return any(e.source == source for e in self.entries_for(kind, value))

    def match(self, kind: str, value: str) -> Attribution | None:
        """The best unexpired entry's attribution for the value, or None."""
        return _match(self._index, kind, value, self.clock())

    def match_ref(self, kind: str, value: str) -> str | None:
        """The reference (else the source) of :meth:`match`'s entry, or None; cached."""
        return self.ref_matcher()(kind, value)

    def ref_matcher(self) -> Callable[[str, str], str | None]:
        """:meth:`match_ref` for the index loaded now, its verdicts cached.

        The classifier takes it once per batch and the rules engine's ``ioc`` condition
        through :meth:`lookup`: the same addresses recur in almost every event of a
        batch (an attacker's, a server's), and a lookup through the index costs several
        calls (address parsing, a bisect, the attribution ranking). A reload builds a new
        index and so a new, empty cache (:func:`_cached_refs` says when a verdict holds).
        """
        index = self._index
        refs = self._refs
        if refs is not None and refs[0] is index:
            return refs[1]
        matcher = _cached_refs(index, self.clock)
        self._refs = (index, matcher)
        return matcher

    def match_ip(self, value: str) -> str | None:
        """Reference of the best entry covering the address, or None: the network
        sensor's hook (:attr:`socd.collectors.sensor.SensorCollector.ioc_lookup`)."""
        return self.match_ref("ip", value)

    def lookup_many_ipv4(self, ints: Sequence[int]) -> list[bool]:
        """Membership of many IPv4 addresses given as ints (``int.from_bytes(inet_aton)``)."""
        index = self._index
        now = self.clock()
        if now < index.valid_until:
            return index.contains_many_ipv4(ints)
        return [index.best(index.ip_attrs(4, x), now) is not None for x in ints]

    def entries_for(self, kind: str, value: str) -> list[Entry]:
        """Every stored entry (all sources, expired ones included) matching the value."""
        from socd.ioc.normalize import IndicatorError, normalize

        try:
            kind, norm = normalize(value, kind)
        except IndicatorError:
            return []
        keys: list[tuple[str, str]] = []  # (kind, value) rows to fetch
        if kind == "ip":
            fam, first, last = ip_range(norm)
            spans = self._covering_spans(fam, first, last)
            values = {norm} | spans
            keys = [("ip", v) for v in values]
        elif kind == "domain":
            name = norm.removeprefix("*.")
            keys = [("domain", norm)]
            parts = name.split(".")
            keys += [("domain", "*." + ".".join(parts[i:])) for i in range(1, len(parts) - 1)]
        else:
            keys = [("hash", norm)]
        found: list[Entry] = []
        if self.db is not None:
            for k, v in keys:
                found += self.db.entries("i.kind = ? AND i.value = ?", (k, v))
        wanted = set(keys)
        found += [e for e in self.static if (e.kind, e.value) in wanted]
        found.sort(key=lambda e: (-e.confidence, -(e.last_seen or 0)))
        return found

    def _covering_spans(self, fam: int, first: int, last: int) -> set[str]:
        """Normalised CIDR strings (any prefix present in the index) containing the range."""
        import ipaddress

        bits = 32 if fam == 4 else 128
        own = bits + 1 - (last - first + 1).bit_length()
        nets = self._index.v4_nets if fam == 4 else self._index.v6_nets
        out: set[str] = set()
        for plen in nets:
            if plen <= own:
                shift = bits - plen
                cls = ipaddress.IPv4Network if fam == 4 else ipaddress.IPv6Network
                out.add(str(cls((first >> shift << shift, plen))))
        return out

    # -- writing -----------------------------------------------------------------------

    def import_entries(self, entries: Iterable[Entry], *, reload: bool = True) -> ImportResult:
        """Refuse allowlisted entries, upsert the rest, rebuild the index."""
        if self.db is None:
            raise RuntimeError("this IoC store has no database")
        result = ImportResult()
        allow = self.allowlist
        keep: list[Entry] = []
        if allow:
            for e in entries:
                reason = allow.reason(e.kind, e.value)
                if reason is None:
                    keep.append(e)
                else:
                    result.refused.append((e, reason))
        else:
            keep = list(entries)
        result.inserted, result.updated = self.db.upsert(keep)
        if reload:
            self.reload()
        return result

    def expire(self) -> int:
        if self.db is None:
            return 0
        removed = self.db.expire(self.clock())
        self.reload()
        return removed

    def stats(self) -> dict[str, Any]:
        index = self._index
        out: dict[str, Any] = {"loaded": index.counts(),
                               "index_build_seconds": round(index.build_secs, 3),
                               "next_expiry": _iso(index.valid_until),
                               "static_entries": len(self.static)}
        if self.db is not None:
            db = self.db
            out["db"] = self.path
            out["stored"] = dict(db.query("SELECT kind, count(*) FROM iocs GROUP BY kind"))
            out["by_source"] = dict(db.query(
                "SELECT source, count(*) FROM iocs GROUP BY source ORDER BY source"))
            out["by_ref"] = {r or "-": n for r, n in db.query(
                "SELECT a.ref, count(*) FROM iocs i JOIN attrs a ON a.id = i.attr "
                "GROUP BY a.ref ORDER BY a.ref")}
            out["expired"] = db.query(
                "SELECT count(*) FROM iocs i JOIN attrs a ON a.id = i.attr "
                "WHERE a.expires > 0 AND a.expires <= ?", (self.clock(),))[0][0]
        return out
