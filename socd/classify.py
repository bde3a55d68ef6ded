"""The classification step between decoding and delivery.

This is the minimal classifier of the foundation: it makes sure every alert
carries a SOC severity with its Vietnamese label, a protection layer and an
asset kind, marks values found on the configured IoC lists, and counts alerts
in ``socd_alerts_total``. The rules engine plugs in at the same place
(:class:`Processor`) and extends it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from socd import metrics
from socd.config import ClassificationConfig
from socd.event import Event, get, set_severity
from socd.severity import Severity


class Processor(Protocol):
    """Turns decoded events into the events and alerts that are delivered."""

    def process(self, events: list[Event]) -> list[Event]: ...


_HEX = re.compile(r"[0-9a-fA-F]+")
_REF = re.compile(r"^#\s*(?:source\s+)?(?:reference|ref|letter|công văn)\s*[:=]\s*(.+)$",
                  re.IGNORECASE)
_LETTER = re.compile(r"\d+/[\w.-]+")


@dataclass
class IocSet:
    """Indicators loaded from plain-text lists, for membership tests."""

    ips: dict[str, str] = field(default_factory=dict)
    networks: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]] = field(
        default_factory=list)
    domains: dict[str, str] = field(default_factory=dict)
    hashes: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ips) + len(self.networks) + len(self.domains) + len(self.hashes)

    def add_lines(self, lines: Iterable[str], default_ref: str) -> None:
        ref = default_ref
        for raw in lines:
            line = raw.strip()
            m = _REF.match(line)
            if m:
                letter = _LETTER.search(m.group(1))
                ref = letter.group(0) if letter else m.group(1).strip()
                continue
            value = line.split("#", 1)[0].split()[0] if line.split("#", 1)[0].split() else ""
            if not value:
                continue
            self.add(value, ref)

    def add(self, value: str, ref: str) -> None:
        try:
            if "/" in value:
                self.networks.append((ipaddress.ip_network(value, strict=False), ref))
            else:
                self.ips[str(ipaddress.ip_address(value))] = ref
        except ValueError:
            lowered = value.lower()
            if len(lowered) in (32, 40, 64) and _HEX.fullmatch(lowered):
                self.hashes[lowered] = ref
            else:
                self.domains[lowered.rstrip(".")] = ref

    def match_ip(self, value: str) -> str | None:
        ref = self.ips.get(value)
        if ref is not None or not self.networks:
            return ref
        try:
            addr = ipaddress.ip_address(value)
        except ValueError:
            return None
        for net, net_ref in self.networks:
            if addr.version == net.version and addr in net:
                return net_ref
        return None


_IP_PATHS = ("source.ip", "destination.ip")
_HASH_PATHS = ("file.hash.sha256", "file.hash.sha1", "file.hash.md5")
_DOMAIN_PATHS = ("dns.question.name", "url.domain", "destination.domain")


class Enricher(Protocol):
    """Adds what socd knows about the event's asset (socd.enrich.Enricher)."""

    def enrich(self, event: Event) -> None: ...


class Classifier:
    """Severity, layer and asset kind for alerts; IoC marking for all events.

    An :class:`Enricher` (asset inventory, GeoIP), when given, runs on every event
    first, so the IoC marking and the alert defaults see its unit and asset kind.
    """

    def __init__(self, config: ClassificationConfig, iocs: IocSet | None = None,
                 enricher: Enricher | None = None) -> None:
        self.config = config
        self.iocs = iocs or IocSet()
        self.enricher = enricher

    @classmethod
    def from_files(cls, config: ClassificationConfig, paths: Iterable[str],
                   enricher: Enricher | None = None) -> Classifier:
        iocs = IocSet()
        for path in paths:
            with open(path, encoding="utf-8") as fh:
                iocs.add_lines(fh, default_ref=path.rsplit("/", 1)[-1])
        return cls(config, iocs, enricher)

    def process(self, events: list[Event]) -> list[Event]:
        cfg = self.config
        check_iocs = len(self.iocs) > 0
        enrich = self.enricher.enrich if self.enricher is not None else None
        for event in events:
            if enrich is not None:
                enrich(event)
            socd: dict[str, Any] = event["socd"]
            if "asset_kind" not in socd:
                socd["asset_kind"] = cfg.default_asset_kind
            if check_iocs:
                self._mark_iocs(event, socd)
            ev = event["event"]
            if ev.get("kind") != "alert":
                continue
            if "severity" not in socd:
                set_severity(event, cfg.default_alert_severity)
            if "layer" not in socd:
                socd["layer"] = cfg.default_layer
            metrics.ALERTS.labels(socd["severity"], str(socd["layer"]),
                                  socd["asset_kind"]).inc()
        return events

    def _mark_iocs(self, event: Event, socd: dict[str, Any]) -> None:
        values: list[str] = []
        refs: list[str] = []
        kinds: set[str] = set()
        for path in _IP_PATHS:
            ip = get(event, path)
            if ip:
                ref = self.iocs.match_ip(ip)
                if ref is not None:
                    values.append(ip)
                    refs.append(ref)
                    kinds.add("ip")
        if self.iocs.hashes:
            for path in _HASH_PATHS:
                h = get(event, path)
                if isinstance(h, str):
                    ref = self.iocs.hashes.get(h.lower())
                    if ref is not None:
                        values.append(h)
                        refs.append(ref)
                        kinds.add("hash")
        if self.iocs.domains:
            for path in _DOMAIN_PATHS:
                d = get(event, path)
                if isinstance(d, str):
                    ref = self.iocs.domains.get(d.lower().rstrip("."))
                    if ref is not None:
                        values.append(d)
                        refs.append(ref)
                        kinds.add("domain")
        if not values:
            return
        socd["ioc"] = {"matched": True, "values": values, "refs": sorted(set(refs))}
        tags = event.setdefault("tags", [])
        if "ioc" not in tags:
            tags.append("ioc")
        for kind in kinds:
            metrics.IOC_HITS.labels(kind).inc()
        ev = event["event"]
        if ev.get("kind") != "alert":
            # Contact with a listed indicator is an alert in itself (CONTEXT.md:
            # provinces block IoC addresses); the rules engine refines this.
            ev["kind"] = "alert"
            set_severity(event, Severity.HIGH)
            event.setdefault("rule", {}).setdefault("name", "IoC match")
            event["rule"].setdefault("id", "socd-ioc-match")
