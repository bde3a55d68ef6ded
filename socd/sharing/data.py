"""What is shared: alerts of a period or an incident, and the IoCs they matched.

The alerts come from the embedded store (the config's ``sqlite`` sink; each row
keeps the whole event in ``doc``); the IoC attribution (source, letter
reference, confidence, tags) from the IoC database. Only indicators that were
*observed locally* are shared: the values in an alert's ``socd.ioc.values``.

Reading never writes: the alert, IoC and incident stores are asked through their own
read methods (:class:`socd.alerts.store.AlertStore`, :class:`socd.ioc.store.IocDatabase`,
:func:`socd.incidents.store.alert_ids`), each opening its file read-only; the incident
database is only read when it exists.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import orjson

from socd.errors import SocdError
from socd.event import Event, get
from socd.sqlite import Error
from socd.tz import iso_or_none, parse_iso

_SEVERITY_RANK = {"low": 1, "medium": 2, "high": 3, "critical": 4}
# Where the classifier looks for indicators (socd.engine.classify): the same paths here say
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
    from socd.alerts.lifecycle import local_zone as zone

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


def incident_alert_ids(state_dir: str, incident: str) -> list[str]:
    from socd.incidents.store import alert_ids

    path = os.path.join(state_dir, "incidents.db")
    if not os.path.exists(path):
        raise SharingError(f"no incident database {path}: incidents are created with "
                           "`socd incident open`")
    try:
        ids = alert_ids(path, incident)
    except (Error, SocdError) as exc:
        raise SharingError(f"cannot read {path}: {exc}") from exc
    if not ids:
        raise SharingError(f"incident {incident} not found or has no alerts")
    return ids


def load_alerts(store_path: str, scope: Scope, alert_ids: Sequence[str] = ()) -> list[Event]:
    """Alerts (event.kind alert) in scope, oldest first."""
    if not os.path.exists(store_path):
        raise SharingError(f"the alert store {store_path} does not exist yet (the daemon "
                           "creates it when it stores the first alert)")
    from socd.alerts.store import AlertStore

    try:
        store = AlertStore(store_path, readonly=True)
        try:
            if scope.incident:
                docs = store.docs(alert_ids)
            else:
                assert scope.start is not None
                assert scope.end is not None
                docs = store.docs_between(_ms(scope.start), _ms(scope.end))
        finally:
            store.close()
    except (Error, SocdError) as exc:
        raise SharingError(f"cannot read the alert store {store_path}: {exc}") from exc
    events = [orjson.loads(doc) for doc in docs]
    events.sort(key=lambda e: (_event_time(e) or datetime.min.replace(tzinfo=UTC)))
    return events


class IocLookup:
    """Finds the IoC entry behind an observed value (``ioc.db`` opened read-only)."""

    def __init__(self, path: str | None) -> None:
        from socd.ioc.store import IocDatabase

        self._db: IocDatabase | None = None
        if path and os.path.exists(path):
            # An unreadable file finds nothing, as a lookup that fails does.
            with contextlib.suppress(Error, SocdError):
                self._db = IocDatabase(path, readonly=True)
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
        try:
            entry = self._db.best_match(kind, value)
        except Error:
            return None
        if entry is None:
            return None
        return Indicator(entry.kind, entry.value, entry.source, entry.ref,
                         int(entry.confidence), int(entry.first_seen or 0), entry.tags)


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
