"""Block decisions: what is blocked, why, until when; persisted and audited.

A decision blocks one *value*: an IPv4/IPv6 address or network (normalised:
``10.0.0.7``, ``10.0.0.0/24``, ``2001:db8::/32``) or, for the feeds only, a
domain. It keeps the reason, the origin (a rule id or an IoC source), the
reference (the official letter number, "941/CATTT-NCSC"), when it was created,
when it expires, and how many offences it counts. A repeat offender is blocked
longer each time: ``ttl * factor ** (count - 1)``, capped at ``max_ttl``.

Everything lives in one SQLite file (``<state_dir>/blocks.db``, WAL) beside an
append-only audit trail: every add, extension, removal, expiry and refusal is
a row there, and triggers make the trail impossible to update or delete. The
tables are this module's: the reports read them through :func:`activity`.

A decision taken by a sink in ``dry_run`` is marked so (``Decision.dry_run``, and its
audit rows): it is recorded only, never enforced. :meth:`BlockStore.enforced` is what
the firewall sets, the EDL feeds and exports hold; a dry-run decision never replaces
an enforced one, and an enforced offence turns a dry-run decision into a real block.

The :class:`Guard` refuses to block allowlisted infrastructure: the configured
CIDRs and domains, the IoC allowlist of :mod:`socd.ioc.allowlist` when it is
installed, and always loopback, link-local, multicast/reserved space and the
machine's own addresses (private ranges too, when configured). Refusals are
audited with the reason ``allowlisted``.
"""

from __future__ import annotations

import bisect
import contextlib
import ipaddress
import math
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog

from socd import netaddr
from socd.plugins import OwnInfrastructure
from socd.sqlite import Schema, Store, has_table, read_only, script

log = structlog.get_logger("socd.block.decisions")

IPNetwork = netaddr.IPNetwork
Kind = Literal["ipv4", "ipv6", "domain"]
Action = Literal["add", "extend", "remove", "expire", "refuse"]
ACTIONS: tuple[Action, ...] = ("add", "extend", "remove", "expire", "refuse")
KINDS: tuple[Kind, ...] = ("ipv4", "ipv6", "domain")

_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9])?\.)+"
                     r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}


def parse_duration(value: str | float) -> float:
    """``90``, ``"90s"``, ``"15m"``, ``"24h"``, ``"7d"``, ``"2w"`` -> seconds."""
    if isinstance(value, bool):
        raise ValueError(  # noqa: TRY004 - pydantic reports ValueError as a config problem
            "a duration is a number of seconds or a string like 24h")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        m = _DURATION.match(str(value).lower())
        if m is None:
            raise ValueError(f"invalid duration {value!r}: use seconds or 30s, 15m, 24h, 7d, 2w")
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"a duration must be positive, got {value!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """``90061`` -> ``1d1h1m`` (seconds shown only under an hour)."""
    left = int(max(0, round(seconds)))
    if left == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if unit == "s" and seconds >= 3600:
            break
        n, left = divmod(left, size)
        if n:
            parts.append(f"{n}{unit}")
    return "".join(parts) or "0s"


def normalise(value: str, *, count: bool = True) -> tuple[str, Kind]:
    """The canonical form of ``value`` and its kind; ValueError when it is neither
    an address, a network nor a domain name.

    Addresses and networks pass the address gate (:mod:`socd.netaddr`): no zone
    id, no whitespace or other character outside an address, IPv4-mapped IPv6
    addresses *and networks* become IPv4 (``::ffff:203.0.113.0/120`` is
    ``203.0.113.0/24``, so the IPv4 allowlist applies), hosts lose their prefix
    (``10.0.0.7/32`` -> ``10.0.0.7``), networks their host bits. Domains are
    lower-cased without the final dot. A refusal is counted in
    ``socd_addresses_refused_total`` unless ``count`` is False.
    """
    text = str(value)
    try:
        net = netaddr.parse_network(text, count=False)
    except netaddr.AddressError as exc:
        domain = _domain(text)
        if domain is not None:
            return domain, "domain"
        if count:
            netaddr.count_refusal(exc.reason)
        raise ValueError(f"not an IP address, network or domain ({exc.reason.replace('_', ' ')})"
                         f": {text[:64]!r}") from None
    kind: Kind = "ipv4" if net.version == 4 else "ipv6"
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address), kind
    return str(net), kind


def _domain(text: str) -> str | None:
    """``text`` as a canonical domain name, or None."""
    domain = text.lower().rstrip(".")
    with contextlib.suppress(UnicodeError):
        domain = domain.encode("idna").decode("ascii")
    # fullmatch: `$` alone would accept a final newline ("evil.example\n").
    if _DOMAIN.fullmatch(domain) and not domain.replace(".", "").isdigit():
        return domain
    return None


def network(value: str) -> IPNetwork:
    """The network of a canonical value (an address is its /32 or /128)."""
    return netaddr.parse_network(value, count=False)


def is_canonical(value: str, kind: str) -> bool:
    """True when ``value`` is exactly what :func:`normalise` makes of it, of ``kind``:
    what the store, the firewall sets and the feeds may hold."""
    try:
        return normalise(value, count=False) == (value, kind)
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class Request:
    """A wish to block ``value``: from a rule's block action, an IoC hit or the CLI."""

    value: str
    reason: str
    origin: str
    ref: str = ""
    ttl: float | None = None  # None: the policy's default
    actor: str = "socd"
    # Set when the request must not be enforced whatever the value (e.g.
    # "unauthenticated_source ..."): audited and reported as a refusal with this reason.
    refusal: str | None = None


@dataclass(slots=True)
class Decision:
    value: str
    kind: Kind
    reason: str
    origin: str
    ref: str
    created: float
    updated: float
    expires: float
    count: int
    state: str = "active"  # active | expired | removed
    last_offence: float = 0.0
    dry_run: bool = False

    @property
    def family(self) -> int:
        return {"ipv4": 4, "ipv6": 6}.get(self.kind, 0)

    def remaining(self, now: float) -> float:
        return self.expires - now

    def as_dict(self) -> dict[str, Any]:
        return {"value": self.value, "kind": self.kind, "reason": self.reason,
                "origin": self.origin, "ref": self.ref, "created": self.created,
                "updated": self.updated, "expires": self.expires, "count": self.count,
                "state": self.state, "dry_run": self.dry_run}


@dataclass(frozen=True, slots=True)
class Change:
    """What one decision did, for the backend and the metrics."""

    action: Action
    decision: Decision
    previous_expires: float | None = None
    why: str = ""


@dataclass(frozen=True, slots=True)
class Policy:
    default_ttl: float = 86400.0
    max_ttl: float = 30 * 86400.0
    escalation: bool = True
    factor: float = 2.0
    # Offences closer together than this count once (a scan makes a thousand alerts).
    recount_after: float = 3600.0
    # After this long without an offence the count starts again at one.
    forget_after: float = 30 * 86400.0

    def ttl(self, base: float | None, count: int) -> float:
        ttl = self.default_ttl if base is None else base
        if self.escalation and count > 1:
            ttl *= self.factor ** min(count - 1, 64)
        return min(ttl, self.max_ttl)


# ------------------------------------------------------------------ guard ----

_ALWAYS = tuple(network(n) for n in (
    "0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "240.0.0.0/4",
    "::/128", "::1/128", "fe80::/10", "ff00::/8",
))
PRIVATE = tuple(network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7",
))


def own_addresses() -> set[str]:
    """The addresses of this machine (this network namespace), best effort."""
    found: set[str] = set()
    with contextlib.suppress(OSError), open("/proc/net/if_inet6", encoding="ascii") as fh:
        for line in fh:
            raw = line.split()[0]
            found.add(str(ipaddress.IPv6Address(int(raw, 16))))
    with contextlib.suppress(OSError), open("/proc/net/fib_trie", encoding="ascii") as fh:
        last = ""
        for line in fh:
            stripped = line.strip()
            if stripped.startswith("|--"):
                last = stripped[3:].strip()
            elif stripped == "/32 host LOCAL" and last:
                found.add(last)
    return found


class Guard:
    """Decides whether a value may be blocked; ``why_refused`` says why not."""

    def __init__(self, cidrs: Iterable[str] = (), domains: Iterable[str] = (), *,
                 protect_private: bool = False, own: Iterable[str] | None = None,
                 external: OwnInfrastructure | None = None, min_prefixlen4: int = 8,
                 min_prefixlen6: int = 32) -> None:
        self.networks: list[IPNetwork] = [network(c) for c in cidrs]
        self.domains = {d.lower().rstrip(".") for d in domains}
        self.protected: list[IPNetwork] = list(_ALWAYS)
        if protect_private:
            self.protected += PRIVATE
        self.own = _own_set(own_addresses() if own is None else own)
        self.external = external
        self.min_prefixlen = {4: min_prefixlen4, 6: min_prefixlen6}

    def refresh_own(self, own: Iterable[str] | None = None) -> None:
        self.own = _own_set(own_addresses() if own is None else own)

    def why_refused(self, value: str, kind: Kind) -> str | None:
        """None when ``value`` (normalised) may be blocked, else the reason."""
        if kind == "domain":
            labels = value.split(".")
            if any(".".join(labels[i:]) in self.domains for i in range(len(labels))):
                return "allowlisted: domain on allowlist_domains"
            if self._external_allows(value, is_network=False):
                return "allowlisted: IoC allowlist"
            return None
        net = network(value)
        if net.prefixlen < self.min_prefixlen[net.version]:
            return f"too broad: prefix shorter than /{self.min_prefixlen[net.version]}"
        for protected in self.protected:
            if net.version == protected.version and net.overlaps(protected):
                return f"allowlisted: always-protected range {protected}"
        for own, addr in self.own.items():
            if addr.version == net.version and addr in net:
                return f"allowlisted: own address {own}"
        for allowed in self.networks:
            if net.version == allowed.version and net.overlaps(allowed):
                return f"allowlisted: overlaps allowlist_cidrs {allowed}"
        if self._external_allows(value, is_network=net.prefixlen != net.max_prefixlen):
            return "allowlisted: IoC allowlist"
        return None

    def _external_allows(self, value: str, *, is_network: bool) -> bool:
        ext = self.external
        if ext is None:
            return False
        try:
            if is_network:
                return bool(ext.covers(value))
            return bool(ext.is_allowed(value))
        except (ValueError, TypeError):
            return False


def _own_set(addresses: Iterable[str]) -> dict[str, netaddr.IPAddress]:
    """The machine's addresses, canonical; one the gate refuses is left out."""
    out: dict[str, netaddr.IPAddress] = {}
    for text in addresses:
        with contextlib.suppress(netaddr.AddressError):
            addr = netaddr.parse_address(text, count=False)
            out[str(addr)] = addr
    return out


def load_external_allowlist(config: Any) -> OwnInfrastructure | None:
    """The top-level ``allowlist:`` of a loaded :class:`socd.config.Config`, as the IoC
    store's :class:`socd.ioc.allowlist.Allowlist` (``is_allowed``, ``covers``).

    The import is guarded: without that module (or without a loaded config) the
    guard uses ``allowlist_cidrs`` and ``allowlist_domains`` only, which it always
    applies as well. OSError/ValueError (an unreadable allowlist file) propagate:
    blocking without the allowlist must not start silently.
    """
    if config is None:
        return None
    try:
        from socd.ioc.allowlist import load_allowlist
    except ImportError:
        return None
    allowlist = load_allowlist(config)
    return allowlist if len(allowlist) else None


# ------------------------------------------------------------------ store ----

SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    value        TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,
    reason       TEXT NOT NULL,
    origin       TEXT NOT NULL,
    ref          TEXT NOT NULL DEFAULT '',
    created      REAL NOT NULL,
    updated      REAL NOT NULL,
    expires      REAL NOT NULL,
    count        INTEGER NOT NULL,
    state        TEXT NOT NULL,
    last_offence REAL NOT NULL,
    dry_run      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS decisions_state ON decisions (state, expires);
CREATE TABLE IF NOT EXISTS audit (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    ts      REAL NOT NULL,
    action  TEXT NOT NULL,
    value   TEXT NOT NULL,
    why     TEXT NOT NULL,
    origin  TEXT NOT NULL,
    ref     TEXT NOT NULL,
    expires REAL,
    count   INTEGER,
    actor   TEXT NOT NULL,
    dry_run INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS audit_value ON audit (value);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the block audit trail is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the block audit trail is append-only'); END;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
STORE_SCHEMA = Schema(name="block store", create=script(SCHEMA), version="1",
                      unknown="ignore")
#: Audit reason of a stored decision removed because its value fails the address gate.
INVALID_VALUE = "invalid_value"
_COLUMNS = ("value, kind, reason, origin, ref, created, updated, expires, count, state, "
            "last_offence, dry_run")


def _decision(row: Sequence[Any]) -> Decision:
    return Decision(value=row[0], kind=row[1], reason=row[2], origin=row[3], ref=row[4],
                    created=row[5], updated=row[6], expires=row[7], count=row[8],
                    state=row[9], last_offence=row[10], dry_run=bool(row[11]))


@dataclass
class Outcome:
    changes: list[Change] = field(default_factory=list)
    refused: list[tuple[Request, str]] = field(default_factory=list)


class BlockStore(Store):
    """The decisions and their audit trail in SQLite (WAL); thread-safe."""

    schema = STORE_SCHEMA

    def __init__(self, path: str) -> None:
        super().__init__(path, synchronous="FULL", busy_timeout_ms=5000)
        self._remove_invalid()

    def _remove_invalid(self) -> None:
        """Delete decisions whose value the address gate refuses, audited as removals with
        the reason ``invalid_value``; logged once with the count.

        Before the gate, a value such as ``2001:db8::5%x`` (an IPv6 zone id) could be
        stored; nft rejected every batch holding it and the feeds served its
        embedded newlines as extra lines. Such rows are not blocks socd can enforce.
        """
        with self.reading() as db:
            rows = db.execute(f"SELECT {_COLUMNS} FROM decisions").fetchall()  # noqa: S608
        bad = [d for d in map(_decision, rows) if not is_canonical(d.value, d.kind)]
        if not bad:
            return
        now = time.time()
        with self.transaction():
            for dec in bad:
                self._db.execute("DELETE FROM decisions WHERE value = ?", (dec.value,))
                req = Request(dec.value, INVALID_VALUE, dec.origin, dec.ref, actor="socd")
                self._audit(now, "remove", dec.value, INVALID_VALUE, req, now, dec.count,
                            dec.dry_run)
        log.warning("invalid block values removed", path=self.path, count=len(bad),
                    values=[d.value[:64] for d in bad[:5]])

    # -- reads
    def get(self, value: str) -> Decision | None:
        with self.reading() as db:
            row = db.execute(f"SELECT {_COLUMNS} FROM decisions WHERE value = ?",  # noqa: S608
                             (value,)).fetchone()
        return _decision(row) if row else None

    def active(self, now: float | None = None, kinds: Iterable[str] | None = None
               ) -> list[Decision]:
        now = time.time() if now is None else now
        with self.reading() as db:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM decisions WHERE state = 'active' AND expires > ? "  # noqa: S608
                "ORDER BY value", (now,)).fetchall()
        wanted = set(kinds) if kinds is not None else None
        return [d for d in map(_decision, rows) if wanted is None or d.kind in wanted]

    def enforced(self, now: float | None = None, kinds: Iterable[str] | None = None
                 ) -> list[Decision]:
        """The active decisions that are enforced: what the firewall sets, the EDL feeds
        and ``socd block export`` hold. A dry-run decision is recorded only."""
        return [d for d in self.active(now, kinds) if not d.dry_run]

    def all(self) -> list[Decision]:
        with self.reading() as db:
            rows = db.execute(f"SELECT {_COLUMNS} FROM decisions ORDER BY value"  # noqa: S608
                              ).fetchall()
        return [_decision(r) for r in rows]

    def audit(self, value: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        sql = ("SELECT id, ts, action, value, why, origin, ref, expires, count, actor, dry_run "
               "FROM audit")
        params: tuple[Any, ...] = ()
        if value is not None:
            sql += " WHERE value = ?"
            params = (value,)
        sql += " ORDER BY id DESC LIMIT ?"
        with self.reading() as db:
            rows = db.execute(sql, (*params, limit)).fetchall()
        keys = ("id", "ts", "action", "value", "why", "origin", "ref", "expires", "count",
                "actor", "dry_run")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def next_expiry(self) -> float | None:
        with self.reading() as db:
            row = db.execute(
                "SELECT min(expires) FROM decisions WHERE state = 'active'").fetchone()
        return row[0] if row and row[0] is not None else None

    def last_change(self) -> float:
        with self.reading() as db:
            row = db.execute("SELECT max(ts) FROM audit WHERE action != 'refuse'"
                             ).fetchone()
        return float(row[0]) if row and row[0] is not None else 0.0

    # -- writes
    def decide(self, requests: Sequence[Request], policy: Policy, guard: Guard | None,
               now: float | None = None, *, dry_run: bool = False) -> Outcome:
        """Apply block requests in one transaction; every change is audited."""
        now = time.time() if now is None else now
        out = Outcome()
        refused_seen: set[str] = set()
        with self.transaction():
            for req in requests:
                try:
                    value, kind = normalise(req.value)
                except ValueError as exc:
                    out.refused.append((req, f"invalid: {exc}"))
                    continue
                why = req.refusal or (guard.why_refused(value, kind) if guard is not None
                                      else None)
                if why is not None:
                    out.refused.append((req, why))
                    if value not in refused_seen:  # one audit row per value and batch
                        refused_seen.add(value)
                        self._audit(now, "refuse", value, why, req, None, None, dry_run)
                    continue
                change = self._decide_one(value, kind, req, policy, now, dry_run)
                if change is not None:
                    out.changes.append(change)
        return out

    def _decide_one(self, value: str, kind: Kind, req: Request, policy: Policy, now: float,
                    dry_run: bool) -> Change | None:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM decisions WHERE value = ?",  # noqa: S608
                               (value,)).fetchone()
        old = _decision(row) if row else None
        active = old is not None and old.state == "active" and old.expires > now
        if old is not None and active and old.dry_run != dry_run:
            if dry_run:
                # The kernel still holds this real block: a dry-run offence must not turn
                # it into a dry-run decision (out of the feeds); audited only.
                if now - old.last_offence >= policy.recount_after:
                    self._audit(now, "extend", value, f"{req.reason} (dry-run: enforced "
                                "block unchanged)", req, old.expires, old.count, True)
                return None
            # Never enforced: the first real offence is a new block, whatever the window
            # (within it, the dry-run decision's offence is the same one: counted once).
            active = False
            burst = now - old.last_offence < policy.recount_after
        else:
            burst = False
        if old is not None and active and now - old.last_offence < policy.recount_after:
            # The same offence seen again (a burst of alerts): nothing new to decide.
            return None
        fresh = old is None or now - old.last_offence >= policy.forget_after
        count = 1 if fresh or old is None else old.count + (0 if burst else 1)
        ttl = policy.ttl(req.ttl, count)
        expires = now + ttl
        if active and old is not None:
            expires = max(expires, old.expires)
            action: Action = "extend"
        else:
            action = "add"
        created = old.created if (old is not None and active) else now
        dec = Decision(value=value, kind=kind, reason=req.reason, origin=req.origin,
                       ref=req.ref, created=created, updated=now, expires=expires, count=count,
                       state="active", last_offence=now, dry_run=dry_run)
        self._db.execute(
            f"INSERT OR REPLACE INTO decisions ({_COLUMNS}) "  # noqa: S608 - fixed columns
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (dec.value, dec.kind, dec.reason, dec.origin, dec.ref, dec.created, dec.updated,
             dec.expires, dec.count, dec.state, dec.last_offence, int(dry_run)))
        why = req.reason if count == 1 else \
            f"{req.reason} (offence {count}, ttl {format_duration(ttl)})"
        self._audit(now, action, value, why, req, expires, count, dry_run)
        return Change(action, dec, old.expires if (old is not None and active) else None, why)

    def remove(self, value: str, *, actor: str, why: str = "removed by operator",
               now: float | None = None, dry_run: bool = False,
               origin: str | None = None) -> Change | None:
        """Lift an active block. The audit row names ``actor`` and ``origin`` (where
        the removal came from, e.g. ``console``; default: the decision's own origin)."""
        now = time.time() if now is None else now
        try:
            value, _ = normalise(value)
        except ValueError:
            return None
        with self.transaction():
            row = self._db.execute(f"SELECT {_COLUMNS} FROM decisions WHERE value = ?",  # noqa: S608
                                   (value,)).fetchone()
            if row is None:
                return None
            dec = _decision(row)
            if dec.state != "active" or dec.expires <= now:
                return None
            previous = dec.expires
            self._db.execute("UPDATE decisions SET state = 'removed', updated = ?, expires = ? "
                             "WHERE value = ?", (now, now, value))
            req = Request(value, why, origin or dec.origin, dec.ref, actor=actor)
            self._audit(now, "remove", value, why, req, now, dec.count, dry_run or dec.dry_run)
            dec.state, dec.updated, dec.expires = "removed", now, now
            return Change("remove", dec, previous, why)

    def expire(self, now: float | None = None) -> list[Change]:
        """Mark decisions past their expiry as expired (the kernel lifted them itself)."""
        now = time.time() if now is None else now
        with self.transaction():
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM decisions WHERE state = 'active' AND expires <= ?",  # noqa: S608
                (now,)).fetchall()
            changes = []
            for row in rows:
                dec = _decision(row)
                self._db.execute("UPDATE decisions SET state = 'expired', updated = ? "
                                 "WHERE value = ?", (now, dec.value))
                req = Request(dec.value, "ttl elapsed", dec.origin, dec.ref, actor="socd")
                self._audit(now, "expire", dec.value, "ttl elapsed", req, dec.expires,
                            dec.count, dec.dry_run)
                dec.state = "expired"
                changes.append(Change("expire", dec, dec.expires, "ttl elapsed"))
        return changes

    def _audit(self, now: float, action: Action, value: str, why: str, req: Request,
               expires: float | None, count: int | None, dry_run: bool) -> None:
        self._db.execute(
            "INSERT INTO audit (ts, action, value, why, origin, ref, expires, count, actor, "
            "dry_run) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (now, action, value, why, req.origin, req.ref, expires, count, req.actor,
             int(dry_run)))


@dataclass(frozen=True, slots=True)
class AuditedAction:
    """One enforced ``add``, ``extend`` or ``refuse`` of the audit trail (:func:`activity`)."""

    action: str
    value: str
    ref: str


@dataclass(frozen=True, slots=True)
class Activity:
    """What the block subsystem did in a period, for the reports."""

    actions: list[AuditedAction]  # enforced (not dry-run) add/extend/refuse, in the period
    active_at_end: int  # enforced address decisions in force at the end of the period


def activity(path: str | None, start: float, end: float) -> Activity | None:
    """The block activity of ``[start, end)`` (Unix seconds), read without changing the
    file; ``None`` when there is no file or it has no audit trail yet."""
    with read_only(path) as db:
        if db is None or not has_table(db, "audit"):
            return None
        rows = db.execute(
            "SELECT action, value, ref FROM audit WHERE ts >= ? AND ts < ? AND dry_run = 0 "
            "AND action IN ('add', 'extend', 'refuse')", (start, end)).fetchall()
        active = 0
        if has_table(db, "decisions"):
            active = int(db.execute(
                "SELECT count(*) FROM decisions WHERE dry_run = 0 AND kind != 'domain' "
                "AND created < ? AND expires >= ? AND (state = 'active' OR updated >= ?)",
                (end, end, end)).fetchone()[0])
    return Activity([AuditedAction(str(a), str(v), str(r or "")) for a, v, r in rows], active)


# ---------------------------------------------------------- interval math ----

def flatten(entries: Iterable[tuple[str, float]]) -> list[tuple[IPNetwork, float]]:
    """Disjoint networks covering ``entries`` (value, expires), one family or both.

    Interval sets reject overlapping elements, and a network's timeout must not
    shorten a longer block inside it nor lengthen the shorter ones. The result
    gives every address the latest expiry of the decisions that cover it:
    inside a group of nested networks, the longest-lived is kept whole and the
    shorter-lived ones are cut around it (``address_exclude``). Groups are found
    by one sort and sweep, so the common case (no overlap) costs O(n log n).
    """
    nets = sorted(((network(v), e) for v, e in entries),
                  key=lambda p: (p[0].version, int(p[0].network_address), p[0].prefixlen))
    out: list[tuple[IPNetwork, float]] = []
    group: list[tuple[IPNetwork, float]] = []
    end = -1
    version = 0
    for net, exp in nets:
        start = int(net.network_address)
        if group and (net.version != version or start > end):
            out.extend(_flatten_group(group))
            group = []
        if not group:
            version, end = net.version, int(net.broadcast_address)
        group.append((net, exp))
        end = max(end, int(net.broadcast_address))
    if group:
        out.extend(_flatten_group(group))
    return out


def _flatten_group(group: list[tuple[IPNetwork, float]]) -> list[tuple[IPNetwork, float]]:
    if len(group) == 1:
        return group
    best: dict[IPNetwork, float] = {}
    for net, exp in group:  # duplicates: keep the latest expiry
        best[net] = max(exp, best.get(net, exp))
    taken: list[IPNetwork] = []
    out: list[tuple[IPNetwork, float]] = []
    for net, exp in sorted(best.items(), key=lambda p: (-p[1], p[0].prefixlen)):
        pieces: list[IPNetwork] = [net]
        for t in taken:
            nxt: list[IPNetwork] = []
            for piece in pieces:
                if not piece.overlaps(t):
                    nxt.append(piece)
                elif piece.prefixlen < t.prefixlen:  # piece contains t
                    nxt.extend(piece.address_exclude(t))  # type: ignore[arg-type]
                # else: t contains piece, piece is dropped
            pieces = nxt
            if not pieces:
                break
        taken.extend(pieces)
        out.extend((p, exp) for p in pieces)
    return sorted(out, key=lambda p: (int(p[0].network_address), p[0].prefixlen))


class OverlapIndex:
    """Answers "does this network overlap another one in the set?" quickly.

    Networks are either nested or disjoint, so ``value`` overlaps a member when a
    member contains it (a supernet at one of the prefix lengths present) or it
    contains a member (a member starts inside it: one bisect on sorted starts).
    """

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._members: set[IPNetwork] = set()
        self._prefixes: dict[int, set[int]] = {4: set(), 6: set()}
        self._starts: dict[int, list[int]] = {4: [], 6: []}
        for v in values:
            net = network(v)
            self._members.add(net)
            self._prefixes[net.version].add(net.prefixlen)
            self._starts[net.version].append(int(net.network_address))
        for starts in self._starts.values():
            starts.sort()

    def overlaps(self, value: str) -> bool:
        """True when ``value`` overlaps a member other than an identical one."""
        net = network(value)
        for plen in self._prefixes[net.version]:
            if plen < net.prefixlen and net.supernet(new_prefix=plen) in self._members:
                return True
        if net.prefixlen == net.max_prefixlen:
            return False
        starts = self._starts[net.version]
        lo = bisect.bisect_left(starts, int(net.network_address))
        hi = bisect.bisect_right(starts, int(net.broadcast_address))
        inside = hi - lo
        return inside > (1 if net in self._members else 0)
