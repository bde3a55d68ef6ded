"""Event enrichment: the asset inventory (unit, security level, asset kind) and GeoIP.

Runs on every event after decoding and before classification (the classifier calls
:meth:`Enricher.enrich`). The rules, in short (docs/enrichment.md has the long form):

* The event is matched to **one asset**: first the host the event is about
  (``host.ip`` exact, then ``host.name`` / ``host.hostname``, then ``host.ip`` in a
  CIDR), else the protected end of a network event: ``destination.ip`` when
  ``network.direction`` is ``inbound``, ``source.ip`` when ``outbound``, and when the
  direction is unknown ``destination.ip`` first, then ``source.ip``.
* The inventory **wins** for ``socd.unit`` and ``socd.system_level``. For
  ``socd.asset_kind`` an exact match (IP, host name) wins too; a CIDR match only fills a
  kind the decoder left unset or ``unknown``.
* GeoIP/ASN (optional, MaxMind ``.mmdb`` read with ``maxminddb``) is added to
  ``source.*`` and ``destination.*`` for public addresses only.

The inventory itself (file format, checks, lookups) is :mod:`socd.config.assets`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from socd import netaddr
from socd.access import read_problem
from socd.config.assets import Asset, Inventory, load_inventory
from socd.errors import ConfigError, ConfigProblem
from socd.event import Event

if TYPE_CHECKING:
    from socd.config import Config

# -- GeoIP -----------------------------------------------------------------------------


class GeoIP:
    """City and ASN lookups in MaxMind databases, for public addresses only."""

    def __init__(self, city_db: str | None, asn_db: str | None) -> None:
        import maxminddb

        self._readers: list[Any] = []
        self._city = maxminddb.open_database(city_db) if city_db else None
        self._asn = maxminddb.open_database(asn_db) if asn_db else None
        self._readers = [r for r in (self._city, self._asn) if r is not None]
        self._cached: Callable[[str], dict[str, Any] | None] = functools.lru_cache(
            maxsize=65536)(self._lookup)

    def lookup(self, text: str) -> dict[str, Any] | None:
        """City and ASN of an address (cached; a text longer than any address is not
        one and never becomes a cache key)."""
        if len(text) > netaddr.MAX_LENGTH:
            return None
        return self._cached(text)

    def close(self) -> None:
        for reader in self._readers:
            reader.close()

    def _lookup(self, text: str) -> dict[str, Any] | None:
        try:
            addr = netaddr.parse_address(text, count=False)
        except netaddr.AddressError:
            return None
        if not addr.is_global:
            return None
        out: dict[str, Any] = {}
        if self._city is not None:
            record = self._city.get(str(addr))
            if isinstance(record, dict):
                geo = _geo(record)
                if geo:
                    out["geo"] = geo
        if self._asn is not None:
            record = self._asn.get(str(addr))
            if isinstance(record, dict):
                as_: dict[str, Any] = {}
                number = record.get("autonomous_system_number")
                if isinstance(number, int):
                    as_["number"] = number
                org = record.get("autonomous_system_organization")
                if isinstance(org, str) and org:
                    as_["organization"] = {"name": org}
                if as_:
                    out["as"] = as_
        return out or None


def _geo(record: Mapping[str, Any]) -> dict[str, Any]:
    geo: dict[str, Any] = {}
    country = record.get("country")
    if isinstance(country, dict) and isinstance(country.get("iso_code"), str):
        geo["country_iso_code"] = country["iso_code"]
    city = record.get("city")
    if isinstance(city, dict):
        names = city.get("names")
        if isinstance(names, dict) and isinstance(names.get("en"), str):
            geo["city_name"] = names["en"]
    location = record.get("location")
    if isinstance(location, dict):
        lat, lon = location.get("latitude"), location.get("longitude")
        if isinstance(lat, int | float) and isinstance(lon, int | float):
            geo["location"] = {"lat": lat, "lon": lon}
    return geo


# -- the enricher ----------------------------------------------------------------------

_SIDES = {"inbound": ("destination",), "outbound": ("source",)}
_UNKNOWN_SIDES = ("destination", "source")


class Enricher:
    """Applies the inventory and GeoIP to events, in place."""

    def __init__(self, inventory: Inventory | None = None, geoip: GeoIP | None = None) -> None:
        self.inventory = inventory if inventory is not None and len(inventory) else None
        self.geoip = geoip

    def close(self) -> None:
        if self.geoip is not None:
            self.geoip.close()

    def enrich(self, event: Event) -> None:
        if self.inventory is not None:
            found = self.find(event)
            if found is not None:
                _apply(event, *found)
        if self.geoip is not None:
            for side in ("source", "destination"):
                node = event.get(side)
                if isinstance(node, dict):
                    ip = node.get("ip")
                    if isinstance(ip, str):
                        info = self.geoip.lookup(ip)
                        if info:
                            node.update(info)

    def process(self, events: list[Event]) -> list[Event]:
        for event in events:
            self.enrich(event)
        return events

    def find(self, event: Event) -> tuple[Asset, str] | None:
        """The inventory entry the event is about and the field that matched it."""
        inv = self.inventory
        if inv is None:
            return None
        host = event.get("host")
        ips: list[str] = []
        if isinstance(host, dict):
            raw = host.get("ip")
            ips = [ip for ip in (raw if isinstance(raw, list) else [raw])
                   if isinstance(ip, str)]
            for ip in ips:
                hit = inv.exact_ip(ip)
                if hit is not None:
                    return hit, "host.ip"
            for field in ("name", "hostname"):
                name = host.get(field)
                if isinstance(name, str) and name:
                    hit = inv.match_host(name)
                    if hit is not None:
                        return hit, f"host.{field}"
            for ip in ips:
                hit = inv.cidr(ip)
                if hit is not None:
                    return hit, "host.ip"
        network = event.get("network")
        direction = network.get("direction") if isinstance(network, dict) else None
        sides = _SIDES.get(direction, _UNKNOWN_SIDES) if isinstance(direction, str) \
            else _UNKNOWN_SIDES
        for side in sides:
            node = event.get(side)
            if isinstance(node, dict):
                addr = node.get("ip")
                if isinstance(addr, str):
                    hit = inv.match_ip(addr)
                    if hit is not None:
                        return hit, f"{side}.ip"
        return None


def _apply(event: Event, asset: Asset, field: str) -> None:
    socd = event.get("socd")
    if not isinstance(socd, dict):
        socd = {}
        event["socd"] = socd
    if asset.unit is not None:
        socd["unit"] = asset.unit
    if asset.system_level is not None:
        socd["system_level"] = asset.system_level
    if asset.asset_kind is not None and (
            asset.matched_by != "cidr" or socd.get("asset_kind") in (None, "unknown")):
        socd["asset_kind"] = asset.asset_kind
    info: dict[str, Any] = {"field": field, "matched_by": asset.matched_by, "key": asset.key}
    if asset.owner is not None:
        info["owner"] = asset.owner
    if asset.criticality is not None:
        info["criticality"] = asset.criticality
    socd["asset"] = info


# -- building from the config ----------------------------------------------------------


def build_enricher(config: Config) -> Enricher | None:
    """The enricher the config asks for, or None; raises :class:`ConfigError`."""
    enr = config.document.enrichment
    if not (enr.assets_file or enr.geoip_city_db or enr.geoip_asn_db):
        return None
    problems: list[ConfigProblem] = []
    inventory = None
    if enr.assets_file:
        path = config.resolve(enr.assets_file)
        unreadable = read_problem(path)  # missing, or there but not readable: which one
        if unreadable is not None:
            problems.append(ConfigProblem(config.file, "enrichment.assets_file",
                                          unreadable.message, unreadable.hint
                                          or "paths are relative to the config file"))
        else:
            try:
                inventory = load_inventory(path)
            except ConfigError as exc:
                problems.extend(exc.problems)
    geoip = None
    dbs = {key: config.resolve(value) for key, value in
           (("geoip_city_db", enr.geoip_city_db), ("geoip_asn_db", enr.geoip_asn_db)) if value}
    for key, path in dbs.items():
        unreadable = read_problem(path)
        if unreadable is not None:
            problems.append(ConfigProblem(config.file, f"enrichment.{key}",
                                          unreadable.message, unreadable.hint
                                          or "paths are relative to the config file"))
    if dbs and not problems:
        geoip, geo_problems = _open_geoip(config.file, dbs)
        problems.extend(geo_problems)
    if problems:
        raise ConfigError(problems)
    return Enricher(inventory, geoip)


def _open_geoip(file: str, dbs: Mapping[str, str]) -> tuple[GeoIP | None,
                                                              list[ConfigProblem]]:
    try:
        import maxminddb
    except ImportError:
        return None, [ConfigProblem(file, f"enrichment.{key}",
                                    "GeoIP needs the maxminddb package",
                                    "pip install 'socd[geoip]' (or maxminddb)")
                      for key in dbs]
    problems = []
    for key, path in dbs.items():
        try:
            maxminddb.open_database(path).close()
        except (OSError, ValueError, RuntimeError) as exc:
            problems.append(ConfigProblem(file, f"enrichment.{key}",
                                          f"cannot open MaxMind database {path}: {exc}",
                                          "give a .mmdb file (GeoLite2-City / GeoLite2-ASN)"))
    if problems:
        return None, problems
    return GeoIP(dbs.get("geoip_city_db"), dbs.get("geoip_asn_db")), []
