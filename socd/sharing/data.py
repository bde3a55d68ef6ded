"""What is shared: alerts of a period or an incident, and the IoCs they matched.

The alerts come from the embedded store (the config's ``sqlite`` sink; each row
keeps the whole event in ``doc``); the IoC attribution (source, letter
reference, confidence, tags) from the IoC database. Only indicators that were
*observed locally* are shared: the values in an alert's ``socd.ioc.values``.

Reading never writes: the alert store is opened read-only through SQLite, the
incident database is only read when it exists.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import orjson

from socd import netaddr
from socd.errors import SocdError
from socd.event import Event, get
from socd.tz import iso_or_none, parse_iso

_SEVERITY_RANK = {"low": 1, "medium": 2, "high": 3, "critical": 4}
# Where the classifier looks for indicators (socd.classify): the same paths here say
# which kind a matched value is and in which direction it was seen.
_IOC_PATHS: tuple[tuple[str, str], ...] = (
    ("ip", "source.ip"), ("ip", "destination.ip"),
    ("hash", "file.hash.sha256"), ("hash", "file.hash.sha1"), ("hash", "file.hash.md5"),
    ("domain", "dns.question.name"), ("domain", "url.domain"), ("domain", "destination.domain"),
)
_INCIDENT = re.compile(r"SC-\d{4}-\d{4,}")


class SharingError(SocdError):
    """A sharing command cannot run (bad period, missing store or incident)."""


@dataclass(frozen=True, slots=True)
class Scope:
    """What an export covers: a period (UTC bounds, end exclusive) or an incident."""

    start: datetime | None = None
    end: datetime | None = None
    incident: str | None = None

    @property
    def key(self) -> str:
        """A stable text naming the scope (part of deterministic ids)."""
        if self.incident:
            return f"incident:{self.incident}"
        return f"period:{_iso(self.start)}/{_iso(self.end)}"


@dataclass(frozen=True, slots=True)
class Indicator:
    """An IoC entry (from the IoC store) that matched local alerts."""

    kind: str  # ip | domain | hash
    value: str  # normalised; an IP entry may be a CIDR, a domain entry `*.example.org`
    source: str = ""
    ref: str = ""  # letter reference (công văn)
    confidence: int | None = None
    first_seen: int | None = None  # Unix seconds: when we first imported it
    tags: tuple[str, ...] = ()


@dataclass(slots=True)
class Observation:
    """One observed value (an address, a domain, a hash) and the alerts that saw it."""

    kind: str  # ip | domain | hash
    value: str  # as observed (normalised spelling)
    indicator: Indicator
    first: datetime
    last: datetime
    count: int = 0
    directions: set[str] = field(default_factory=set)  # source | destination (IPs)
    hash_algo: str = ""  # md5 | sha1 | sha256 | sha512
    severity: str = "low"
    alert_ids: list[str] = field(default_factory=list)
    units: set[str] = field(default_factory=set)


@dataclass(slots=True)
class Dataset:
    """Everything an export is built from."""

    scope: Scope
    alerts: int = 0  # alerts in scope
    observations: list[Observation] = field(default_factory=list)

    @property
    def max_severity(self) -> str | None:
        if not self.observations:
            return None
        return max((o.severity for o in self.observations),
                   key=lambda s: _SEVERITY_RANK.get(s, 0))


# -- periods --------------------------------------------------------------------------------


def local_zone() -> Any:
    from socd.alerts import local_zone as zone

    return zone()


def parse_day_or_time(text: str, *, end: bool) -> datetime:
    """``dd/mm/yyyy``, ``yyyy-mm-dd`` or an ISO date-time (no offset: Asia/Ho_Chi_Minh).

    A bare date as an end bound covers the whole day (the bound is the next midnight).
    """
    value = text.strip()
    day: date | None = None
    m = re.fullmatch(r"(\d{1,2})/(\d{1,2})/(\d{4})", value)
    try:
        if m:
            day = date(int(m.group(3)), int(m.group(2)), int(m.group(1)))
        elif re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            day = date.fromisoformat(value)
        else:
            return parse_iso(value, naive=local_zone()).astimezone(UTC)
    except ValueError:
        raise SharingError(f"{text!r} is not a date: use dd/mm/yyyy, yyyy-mm-dd or an ISO "
                           "date-time (local time Asia/Ho_Chi_Minh)") from None
    if end:
        day += timedelta(days=1)
    return datetime.combine(day, time(), tzinfo=local_zone()).astimezone(UTC)


def scope_from(start: str | None, end: str | None, incident: str | None) -> Scope:
    if incident:
        if start or end:
            raise SharingError("give either --incident or --from/--to, not both")
        if not _INCIDENT.fullmatch(incident):
            raise SharingError(f"{incident!r} is not an incident id (SC-YYYY-NNNN)")
        return Scope(incident=incident)
    if not start or not end:
        raise SharingError("give a period (--from and --to) or an incident (--incident)")
    scope = Scope(parse_day_or_time(start, end=False), parse_day_or_time(end, end=True))
    assert scope.start is not None
    assert scope.end is not None
    if scope.end <= scope.start:
        raise SharingError(f"--to {end} is not after --from {start}")
    return scope


# -- reading --------------------------------------------------------------------------------


def alert_store_path(config: Any, sink: str | None = None) -> str:
    """The file of the config's ``sqlite`` sink (``sink`` names one when there are several)."""
    from socd.config import resolve_path

    stores = {n: p.config for n, p in config.sinks.items()
              if getattr(p.config, "type", None) == "sqlite"}
    if sink is not None:
        if sink not in stores:
            raise SharingError(f"no sqlite sink named {sink!r} in {config.file}")
        chosen = stores[sink]
    elif len(stores) == 1:
        chosen = next(iter(stores.values()))
    elif stores:
        raise SharingError(f"{config.file} has several sqlite sinks; choose one with --sink: "
                           f"{', '.join(sorted(stores))}")
    else:
        raise SharingError(f"{config.file} has no `sqlite` sink: sharing reads the embedded "
                           "alert store (docs/sharing.md)")
    return resolve_path(config.state_dir, chosen.path)


def _readonly(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    db.execute("PRAGMA busy_timeout=5000")
    return db


def incident_alert_ids(state_dir: str, incident: str) -> list[str]:
    path = os.path.join(state_dir, "incidents.db")
    if not os.path.exists(path):
        raise SharingError(f"no incident database {path}: incidents are created with "
                           "`socd incident open`")
    db = _readonly(path)
    try:
        rows = db.execute("SELECT alert_id FROM incident_alerts WHERE incident_id = ?",
                          (incident,)).fetchall()
    except sqlite3.Error as exc:
        raise SharingError(f"cannot read {path}: {exc}") from exc
    finally:
        db.close()
    if not rows:
        raise SharingError(f"incident {incident} not found or has no alerts")
    return [str(r[0]) for r in rows]


def load_alerts(store_path: str, scope: Scope, alert_ids: Sequence[str] = ()) -> list[Event]:
    """Alerts (event.kind alert) in scope, oldest first."""
    if not os.path.exists(store_path):
        raise SharingError(f"the alert store {store_path} does not exist yet (the daemon "
                           "creates it when it stores the first alert)")
    db = _readonly(store_path)
    try:
        if scope.incident:
            rows: list[Any] = []
            ids = list(alert_ids)
            for i in range(0, len(ids), 500):
                chunk = ids[i:i + 500]
                marks = ",".join("?" * len(chunk))
                sql = f"SELECT doc FROM alerts WHERE id IN ({marks}) AND kind = 'alert'"  # noqa: S608
                rows += db.execute(sql, chunk).fetchall()
        else:
            assert scope.start is not None
            assert scope.end is not None
            rows = db.execute(
                "SELECT doc FROM alerts WHERE kind = 'alert' AND ts_ms >= ? AND ts_ms < ? "
                "ORDER BY ts_ms, id",
                (_ms(scope.start), _ms(scope.end))).fetchall()
    except sqlite3.Error as exc:
        raise SharingError(f"cannot read the alert store {store_path}: {exc}") from exc
    finally:
        db.close()
    events = [orjson.loads(r[0]) for r in rows]
    events.sort(key=lambda e: (_event_time(e) or datetime.min.replace(tzinfo=UTC)))
    return events


class IocLookup:
    """Finds the IoC entry behind an observed value (read-only on ``ioc.db``)."""

    def __init__(self, path: str | None) -> None:
        self._db = _readonly(path) if path and os.path.exists(path) else None
        self._cache: dict[tuple[str, str], Indicator | None] = {}

    def close(self) -> None:
        if self._db is not None:
            self._db.close()

    def find(self, kind: str, value: str) -> Indicator | None:
        key = (kind, value)
        if key not in self._cache:
            self._cache[key] = self._find(kind, value)
        return self._cache[key]

    def _find(self, kind: str, value: str) -> Indicator | None:
        if self._db is None:
            return None
        sql = ("SELECT i.kind, i.value, i.source, a.ref, a.confidence, i.first_seen, a.tags "
               "FROM iocs i JOIN attrs a ON a.id = i.attr WHERE ")
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
        # The best entry: an exact one before a wider one, then the most confident.
        sql += " ORDER BY (i.value = ?) DESC, a.confidence DESC, i.last_seen DESC LIMIT 1"
        try:
            row = self._db.execute(sql, [*params, value]).fetchone()
        except sqlite3.Error:
            return None
        if row is None:
            return None
        k, v, source, ref, conf, first, tags = row
        return Indicator(k, v, source, ref, int(conf), int(first),
                         tuple(orjson.loads(tags)) if tags else ())


def observe(scope: Scope, alerts: Iterable[Event], iocs: IocLookup) -> Dataset:
    """Group the alerts' matched IoC values into observations."""
    from socd.ioc.normalize import HASH_TYPES, IndicatorError, normalize

    data = Dataset(scope)
    by_value: dict[tuple[str, str], Observation] = {}
    for alert in alerts:
        data.alerts += 1
        values = get(alert, "socd.ioc.values") or []
        if not values:
            continue
        when = _event_time(alert)
        if when is None:
            continue
        refs = get(alert, "socd.ioc.refs") or []
        wanted = {str(v) for v in values}
        for kind, path in _IOC_PATHS:
            raw = get(alert, path)
            if not isinstance(raw, str) or raw not in wanted:
                continue
            try:
                _, norm = normalize(raw, kind)
            except IndicatorError:
                continue
            obs = by_value.get((kind, norm))
            if obs is None:
                ind = iocs.find(kind, norm) or Indicator(
                    kind, norm, source="", ref=refs[0] if len(refs) == 1 else "")
                obs = by_value[(kind, norm)] = Observation(kind, norm, ind, when, when)
                if kind == "hash":
                    obs.hash_algo = HASH_TYPES.get(len(norm), "sha256")
            obs.first, obs.last = min(obs.first, when), max(obs.last, when)
            hash_id = str(get(alert, "event.hash") or "")
            if hash_id not in obs.alert_ids:
                obs.count += 1
                obs.alert_ids.append(hash_id)
            if kind == "ip":
                obs.directions.add(path.split(".")[0])
            severity = str(get(alert, "socd.severity") or "low")
            if _SEVERITY_RANK.get(severity, 0) > _SEVERITY_RANK.get(obs.severity, 0):
                obs.severity = severity
            unit = get(alert, "socd.unit")
            if unit:
                obs.units.add(str(unit))
    data.observations = sorted(by_value.values(), key=lambda o: (o.first, o.kind, o.value))
    return data


def build_dataset(config: Any, scope: Scope, *, sink: str | None = None) -> Dataset:
    """Load everything an export of ``scope`` needs from the config's stores."""
    ids = incident_alert_ids(config.state_dir, scope.incident) if scope.incident else []
    alerts = load_alerts(alert_store_path(config, sink), scope, ids)
    iocs = IocLookup(os.path.join(config.state_dir, config.document.ioc.db_path))
    try:
        return observe(scope, alerts, iocs)
    finally:
        iocs.close()


# -- helpers --------------------------------------------------------------------------------


def _event_time(event: Event) -> datetime | None:
    dt = iso_or_none(event.get("@timestamp"))
    return None if dt is None else dt.astimezone(UTC)


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def _iso(dt: datetime | None) -> str:
    return "" if dt is None else dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def stix_time(dt: datetime) -> str:
    """RFC 3339 UTC with milliseconds, as STIX 2.1 timestamps are written."""
    dt = dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
