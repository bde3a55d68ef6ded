"""The time zone assumed for a record's timestamps that carry none.

RFC 3164 syslog (and CEF without a zone) write local wall-clock time with no
offset. Read in the wrong zone, a server's events look hours old (or new) to the
rules, and threshold rules leave them out. The operator says which zone each
source uses: a collector's ``timezone`` and ``sender_timezones`` (address, CIDR or
host name -> zone), over the decoder's own ``timezone`` (default
Asia/Ho_Chi_Minh). Decoders that read such times (the
:class:`~socd.plugins.ZoneAware` ones) are given, at start and on reload, one
:class:`SenderZones` per collector that names a zone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any

from socd import netaddr
from socd.tz import parse_zone

_CACHE_MAX = 10_000


@dataclass(slots=True)
class SenderZones:
    """The zones of one collector's senders.

    ``for_source`` answers from the sender's address (the record's ``source``,
    ``udp://10.0.0.5:51514``), ``for_host`` from the host name in the message; the
    collector's ``default`` applies when neither names one, and ``None`` leaves the
    decoder's own zone."""

    default: tzinfo | None = None
    hosts: dict[str, tzinfo] = field(default_factory=dict)
    networks: list[tuple[Any, tzinfo]] = field(default_factory=list)
    _by_source: dict[str, tzinfo | None] = field(default_factory=dict)

    @classmethod
    def from_config(cls, timezone: str | None, senders: Mapping[str, str]) -> SenderZones:
        zones = cls(parse_zone(timezone) if timezone else None)
        for key, value in senders.items():
            zone = parse_zone(value)
            try:
                net = netaddr.parse_network(key, count=False)
            except netaddr.AddressError:
                zones.hosts[key.lower().rstrip(".")] = zone
            else:
                zones.networks.append((net, zone))
        # Longest prefix first: a /32 inside a listed /8 wins.
        zones.networks.sort(key=lambda item: item[0].prefixlen, reverse=True)
        return zones

    def for_source(self, source: str) -> tzinfo | None:
        """The zone of the sender behind ``source``: its network's, else the
        collector's default (cached per source: one lookup per sender)."""
        if not self.networks:
            return self.default
        try:
            return self._by_source[source]
        except KeyError:
            pass
        zone = self.default
        ip = _source_ip(source)
        if ip:
            try:
                addr = netaddr.parse_address(ip, count=False)
            except netaddr.AddressError:
                addr = None
            if addr is not None:
                for net, net_zone in self.networks:
                    if addr.version == net.version and addr in net:
                        zone = net_zone
                        break
        if len(self._by_source) >= _CACHE_MAX:
            self._by_source.clear()
        self._by_source[source] = zone
        return zone

    def for_host(self, host: object) -> tzinfo | None:
        """The zone listed for the host name a message gives, if any."""
        if not self.hosts or type(host) is not str:
            return None
        return self.hosts.get(host.lower().rstrip("."))


def _source_ip(source: str) -> str:
    """``udp://10.0.0.5:514`` / ``tcp://[2001:db8::5]:601`` -> the address part."""
    _, sep, rest = source.partition("://")
    if not sep:
        return ""
    if rest.startswith("["):
        return rest[1:rest.find("]")] if "]" in rest else ""
    return rest.rsplit(":", 1)[0] if rest.count(":") == 1 else rest


def collector_zones(collectors: Mapping[str, Any], decoder: str) -> dict[str, SenderZones]:
    """For the decoder named ``decoder``: the zones of each collector that sends it
    records and sets ``timezone`` or ``sender_timezones``."""
    out: dict[str, SenderZones] = {}
    for name, plugin in collectors.items():
        # A socd.config.CollectorConfig: it lists the decoders it names (decoder_refs).
        cfg = plugin.config
        if not cfg.timezone and not cfg.sender_timezones:
            continue
        if decoder in {ref for _, ref in cfg.decoder_refs()}:
            out[name] = SenderZones.from_config(cfg.timezone, cfg.sender_timezones)
    return out
