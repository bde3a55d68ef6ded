"""The classification step between decoding and delivery.

This is the minimal classifier of the foundation: it makes sure every alert
carries a SOC severity with its Vietnamese label, a protection layer and an
asset kind, marks values found on the configured IoC lists, and counts alerts
in ``socd_alerts_total``. The rules engine plugs in at the same place
(:class:`Processor`) and extends it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from socd import metrics
from socd.config import ClassificationConfig
from socd.decoders.base import count_stripped
from socd.event import Event, get, set_severity
from socd.ioc import IOC_MATCH_ID, IOC_MATCH_NAME
from socd.ioc.allowlist import Allowlist
from socd.ioc.importers import load_text_lists
from socd.ioc.store import IocStore
from socd.log import get_logger
from socd.severity import Severity
from socd.vocabulary import ASSET_KINDS

if TYPE_CHECKING:
    from socd.engine.engine import RuleEngine

log = get_logger("socd.classify")


class Processor(Protocol):
    """Turns decoded events into the events and alerts that are delivered."""

    def process(self, events: list[Event]) -> list[Event]: ...


_IP_PATHS = ("source.ip", "destination.ip")
_HASH_PATHS = ("file.hash.sha256", "file.hash.sha1", "file.hash.md5")
_DOMAIN_PATHS = ("dns.question.name", "url.domain", "destination.domain")
_IOC_PATHS = (("ip", _IP_PATHS), ("hash", _HASH_PATHS), ("domain", _DOMAIN_PATHS))
# (kind, section, field, path) of every path above, all two levels deep except the
# hashes and the DNS name: read with plain dict gets, as every event goes through them.
_IOC_GETS = tuple((kind, *path.split(".", 1), path) for kind, paths in _IOC_PATHS
                  for path in paths)
# The top-level sections they are in (Classifier.process spells them out): most events
# (an sshd line: source at most) lack most of them, and one with none has nothing to mark.
_IOC_SECTIONS = frozenset(section for _, section, _, _ in _IOC_GETS)
# _IOC_GETS by section: (section, ((position in _IOC_GETS, kind, field, path), ...)), so
# an event is asked once for each section; the values found are put back in the order of
# _IOC_GETS (the order of socd.ioc.values).
_IOC_BY_SECTION = tuple(
    (section, tuple((i, kind, rest, path) for i, (kind, sec, rest, path) in enumerate(_IOC_GETS)
                    if sec == section))
    for section in dict.fromkeys(sec for _, sec, _, _ in _IOC_GETS))


class Enricher(Protocol):
    """Adds what socd knows about the event's asset (socd.engine.enrich.Enricher)."""

    def enrich(self, event: Event) -> None: ...


class Classifier:
    """Severity, layer and asset kind for alerts; IoC marking for all events.

    An :class:`Enricher` (asset inventory, GeoIP), when given, runs on every event
    first, so the IoC marking and the alert defaults see its unit and asset kind.
    """

    def __init__(self, config: ClassificationConfig, iocs: IocStore | None = None,
                 enricher: Enricher | None = None) -> None:
        self.config = config
        # Label values of socd_alerts_total{asset_kind}: the enum and the configured default.
        self._asset_kinds = ASSET_KINDS | {config.default_asset_kind}
        # No lists given: an empty memory-only store (load=False: it leaves the
        # socd_ioc_entries gauge to the daemon's store).
        self.iocs = iocs if iocs is not None else IocStore(None, load=False, gauges=False)
        self.enricher = enricher
        # The rules engine (socd.engine.RuleEngine), run after classification on the
        # whole batch; set by socd.app.components.build_classifier.
        self.rules: RuleEngine | None = None

    def carry_state_from(self, old: Classifier) -> None:
        """On reload: keep the rules' windows for rules whose definition is unchanged."""
        if self.rules is not None and old.rules is not None:
            self.rules.carry_state_from(old.rules)

    def ioc_lookup(self, kind: str, value: str, source: str | None = None) -> bool:
        """The rules engine's `ioc` condition (:meth:`IocStore.lookup`)."""
        if source is None:  # IocStore.lookup's own first step, one call less an event
            return self.iocs.ref_matcher()(kind, value) is not None
        return self.iocs.lookup(kind, value, source)

    @classmethod
    def from_files(cls, config: ClassificationConfig, paths: Iterable[str],
                   enricher: Enricher | None = None, *, db_path: str | None = None,
                   allowlist: Allowlist | None = None, min_confidence: int = 0,
                   refresh_secs: float = 10.0) -> Classifier:
        """A classifier whose IoC store holds the plain-text lists at ``paths`` and, when
        ``db_path`` is given, the entries imported there with ``socd ioc import``."""
        static, refused = load_text_lists(paths, allowlist)
        for entry, reason in refused:
            log.warning("IoC list entry refused", value=entry.value, source=entry.source,
                        reason=reason)
        store = IocStore(db_path, static=static, allowlist=allowlist,
                         min_confidence=min_confidence, refresh_secs=refresh_secs,
                         create=False)
        return cls(config, store, enricher)

    def process(self, events: list[Event]) -> list[Event]:
        cfg = self.config
        # Picks up `socd ioc import` and expiry; cheap, usually a time check.
        self.iocs.maybe_refresh()
        # One matcher a batch: its cache keeps the verdict on a value for the events
        # after the first that carries it (IocStore.ref_matcher).
        match = self.iocs.ref_matcher() if len(self.iocs) > 0 else None
        enrich = self.enricher.enrich if self.enricher is not None else None
        default_kind = cfg.default_asset_kind
        owned = _OWNED
        counts = _AlertCounts(self._asset_kinds)
        for event in events:
            if enrich is not None:
                enrich(event)
            socd: dict[str, Any] = event["socd"]
            if not socd.keys().isdisjoint(owned):  # never, from the shipped decoders
                _reset_owned(socd)
            if "asset_kind" not in socd:
                socd["asset_kind"] = default_kind
            # The sections of _IOC_GETS, spelt out: most events have none, or only
            # source (an sshd line: its address, one lookup, done here).
            if match is not None:
                if "destination" in event or "file" in event or "dns" in event \
                        or "url" in event:
                    _mark_iocs(event, socd, match)
                elif "source" in event:
                    node = event["source"]
                    value = node.get("ip") if type(node) is dict else get(event, "source.ip")
                    if value and isinstance(value, str):
                        ref = match("ip", value)
                        if ref is not None:
                            _mark_hits(event, socd, [value], [ref], {"ip"})
            ev = event["event"]
            if ev.get("kind") != "alert":
                continue
            if "severity" not in socd:
                set_severity(event, cfg.default_alert_severity)
            if "layer" not in socd:
                socd["layer"] = cfg.default_layer
            _mark_new(socd)
            _mark_correlation(ev, socd)
            counts.add(socd)
        if self.rules is not None:
            count = len(events)
            events = self.rules.process(events)
            for alert in events[count:]:
                socd = alert.setdefault("socd", {})
                socd.setdefault("asset_kind", cfg.default_asset_kind)
                socd.setdefault("layer", cfg.default_layer)
                if "severity" not in socd:
                    set_severity(alert, cfg.default_alert_severity)
                _mark_new(socd)
                counts.add(socd)
        counts.flush()
        return events



def _mark_iocs(event: Event, socd: dict[str, Any],
               match: Callable[[str, str], str | None]) -> None:
    """Mark the values of the IoC paths found on the lists (``match``: the batch's
    :meth:`IocStore.ref_matcher`); contact with a listed indicator is an alert."""
    hits: list[tuple[int, str, str, str]] = []  # (position in _IOC_GETS, value, ref, kind)
    for section, paths in _IOC_BY_SECTION:
        node = event.get(section)
        if node is None:
            continue  # most events: no such section
        plain = type(node) is dict
        for i, kind, rest, path in paths:
            value = node.get(rest) if plain and "." not in rest else get(event, path)
            if value and isinstance(value, str):
                ref = match(kind, value)
                if ref is not None:
                    hits.append((i, value, ref, kind))
    if hits:
        hits.sort(key=_position)
        _mark_hits(event, socd, [h[1] for h in hits], [h[2] for h in hits],
                   {h[3] for h in hits})


def _position(hit: tuple[int, str, str, str]) -> int:
    return hit[0]


def _mark_hits(event: Event, socd: dict[str, Any], values: list[str], refs: list[str],
               kinds: set[str]) -> None:
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
        # Vietnamese like the shipped rules' names (rule.title.vi); notifications name
        # it per language (socd.notify.render.OWN_RULES).
        event.setdefault("rule", {}).setdefault("name", IOC_MATCH_NAME)
        event["rule"].setdefault("id", IOC_MATCH_ID)


class _AlertCounts:
    """A batch's alerts counted by their labels, then put in socd_alerts_total once per
    label set (:func:`socd.metrics.count_alert` with a count): most alerts of a batch
    share their labels, and a labelled counter costs more than the dict of a batch."""

    def __init__(self, asset_kinds: frozenset[str]) -> None:
        self.asset_kinds = asset_kinds
        self.groups: dict[tuple[Any, ...], list[Any]] = {}

    def add(self, socd: dict[str, Any]) -> None:
        severity, layer, kind, unit = (socd["severity"], socd["layer"], socd["asset_kind"],
                                       socd.get("unit"))
        # with the types: True and 1 are one key but two label values
        key = (severity, layer, kind, unit, type(severity), type(layer), type(kind), type(unit))
        try:
            entry = self.groups.get(key)
        except TypeError:  # an unhashable value from a plugin: counted on its own
            metrics.count_alert(socd, self.asset_kinds)
            return
        if entry is None:
            self.groups[key] = [socd, 1]
        else:
            entry[1] += 1

    def flush(self) -> None:
        for socd, count in self.groups.values():
            metrics.count_alert(socd, self.asset_kinds, count)
        self.groups.clear()


# What classification, the IoC matcher and the rules engine write under socd: an event
# never arrives with them (decoders drop them, socd.decoders.base.gate_socd); dropping
# them again here keeps block orders and lifecycle states socd's own even for a decoder
# that does not go through the gate.
_OWNED = ("ioc", "alert", "actions", "rule", "correlation_id")


def _reset_owned(socd: dict[str, Any]) -> None:
    for key in _OWNED:
        if key in socd:
            del socd[key]
            decoder = socd.get("decoder")
            count_stripped(decoder if isinstance(decoder, str) else "unknown", key)


def _mark_correlation(ev: dict[str, Any], socd: dict[str, Any]) -> None:
    """An alert that is an event itself (a vendor's, an IoC match) is its own incident:
    its correlation id is its event.hash, the id the rules engine gives every alert it
    raises on that event (docs/events.md)."""
    digest = ev.get("hash")
    if isinstance(digest, str) and digest:
        socd["correlation_id"] = digest


def _mark_new(socd: dict[str, Any]) -> None:
    """Every alert enters the lifecycle as ``new`` (socd.alerts.lifecycle, docs/alerts.md); only
    the lifecycle commands (`socd alert ...`) change it afterwards."""
    socd["alert"] = {"status": "new"}
