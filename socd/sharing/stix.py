"""STIX 2.1 bundles of locally observed IoCs (built with the ``stix2`` library).

For each observed value the bundle holds:

* an ``indicator`` for the IoC entry that matched (its STIX pattern, the letter
  reference as an external reference, the import time as ``valid_from``);
* the observed SCO (``ipv4-addr``, ``ipv6-addr``, ``domain-name`` or ``file``)
  and an ``observed-data`` with first/last observed and ``number_observed``;
* a ``sighting`` of the indicator, sighted by our SOC's ``identity``.

Ids are UUIDv5 of the content (indicator: its pattern; observed-data and
sighting: the value and the export's scope), and ``created``/``modified`` come
from the data, never from the clock, so exporting the same data again produces
byte-identical objects and a receiver deduplicates them. SCO ids are the
deterministic ids STIX itself defines. Every object carries the configured TLP
marking (stix2 ships the TLP 1.0 marking definitions; see docs/sharing.md).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import stix2

from socd.config.sharing import SharingConfig
from socd.sharing.data import Dataset, Observation, stix_time

# The namespace of socd's deterministic ids (a fixed random UUID: never change it).
NAMESPACE = uuid.UUID("5b0f1d7e-6a0c-4c41-9f5e-2f7c1b8a9e63")
# `created` of the identity: a constant, so the identity never gets a new version.
_IDENTITY_CREATED = datetime(2020, 1, 1, tzinfo=UTC)

_STIX_HASH = {"md5": "MD5", "sha1": "SHA-1", "sha256": "SHA-256", "sha512": "SHA-512"}
TLP_MARKINGS: dict[str, Any] = {
    "clear": stix2.TLP_WHITE, "white": stix2.TLP_WHITE, "green": stix2.TLP_GREEN,
    "amber": stix2.TLP_AMBER, "amber+strict": stix2.TLP_AMBER, "red": stix2.TLP_RED,
}


def det_id(kind: str, *parts: str) -> str:
    """``<kind>--<uuid5>`` of the parts: the same content always gets the same id."""
    return f"{kind}--{uuid.uuid5(NAMESPACE, '|'.join((kind, *parts)))}"


def identity_id(config: SharingConfig) -> str:
    return det_id("identity", config.organisation.name)


def identity(config: SharingConfig) -> stix2.Identity:
    org = config.organisation
    description = " - ".join(x for x in (org.name, org.organisation) if x)
    kwargs: dict[str, Any] = {}
    if org.contact:
        kwargs["contact_information"] = org.contact
    if org.sectors:
        kwargs["sectors"] = org.sectors
    return stix2.Identity(
        id=identity_id(config), name=org.name, identity_class="organization",
        description=description, created=_IDENTITY_CREATED, modified=_IDENTITY_CREATED,
        **kwargs)


def pattern(kind: str, value: str, hash_algo: str = "sha256") -> str:
    """The STIX pattern of an IoC entry (an IP entry may be a CIDR)."""
    if kind == "ip":
        sco = "ipv6-addr" if ":" in value else "ipv4-addr"
        return f"[{sco}:value = '{value}']"
    if kind == "domain":
        if value.startswith("*."):
            return f"[domain-name:value LIKE '%.{_quote(value[2:])}']"
        return f"[domain-name:value = '{_quote(value)}']"
    return f"[file:hashes.'{_STIX_HASH.get(hash_algo, 'SHA-256')}' = '{value}']"


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


def _sco(obs: Observation, marking: Any) -> Any:
    common = {"object_marking_refs": [marking]}
    if obs.kind == "ip":
        cls = stix2.IPv6Address if ":" in obs.value else stix2.IPv4Address
        return cls(value=obs.value, **common)
    if obs.kind == "domain":
        return stix2.DomainName(value=obs.value, **common)
    return stix2.File(hashes={_STIX_HASH.get(obs.hash_algo, "SHA-256"): obs.value}, **common)


def _indicator(obs: Observation, config: SharingConfig, marking: Any) -> stix2.Indicator:
    ind = obs.indicator
    algo = obs.hash_algo if ind.kind == "hash" else ""
    pat = pattern(ind.kind, ind.value, algo or "sha256")
    valid_from = (datetime.fromtimestamp(ind.first_seen, UTC) if ind.first_seen
                  else obs.first)
    valid_from = min(valid_from, obs.first)
    refs: list[dict[str, str]] = []
    if ind.ref:
        refs.append({"source_name": ind.source or "ioc-letter", "external_id": ind.ref,
                     "description": "Letter reference (công văn) of the IoC list"})
    kwargs: dict[str, Any] = {}
    if refs:
        kwargs["external_references"] = refs
    if ind.confidence is not None:
        kwargs["confidence"] = ind.confidence
    labels = sorted({*ind.tags, *(["source:" + ind.source] if ind.source else [])})
    if labels:
        kwargs["labels"] = labels
    created = stix_time(valid_from)
    return stix2.Indicator(
        id=det_id("indicator", pat), created=created, modified=created,
        created_by_ref=identity_id(config), name=f"{ind.kind} {ind.value}",
        description=(f"IoC {ind.value} from {ind.source or 'a local list'}"
                     + (f" ({ind.ref})" if ind.ref else "") + ", observed locally"),
        pattern=pat, pattern_type="stix", valid_from=stix_time(valid_from),
        indicator_types=["malicious-activity"], object_marking_refs=[marking], **kwargs)


def build_bundle(data: Dataset, config: SharingConfig) -> stix2.Bundle:
    """The bundle for ``data``; deterministic for the same data and config."""
    marking = TLP_MARKINGS[config.tlp]
    me = identity(config)
    objects: list[Any] = [marking, me]
    seen_indicators: set[str] = set()
    for obs in data.observations:
        indicator = _indicator(obs, config, marking)
        if indicator.id not in seen_indicators:
            seen_indicators.add(indicator.id)
            objects.append(indicator)
        sco = _sco(obs, marking)
        first, last = stix_time(obs.first), stix_time(obs.last)
        key = (obs.kind, obs.value, data.scope.key)
        observed = stix2.ObservedData(
            id=det_id("observed-data", *key), created=first, modified=last,
            created_by_ref=me.id, first_observed=first, last_observed=last,
            number_observed=max(obs.count, 1), object_refs=[sco.id],
            object_marking_refs=[marking])
        sighting = stix2.Sighting(
            id=det_id("sighting", *key), created=first, modified=last,
            created_by_ref=me.id, sighting_of_ref=indicator.id,
            observed_data_refs=[observed.id], where_sighted_refs=[me.id],
            count=max(obs.count, 1), first_seen=first, last_seen=last,
            description=_sighting_text(obs), object_marking_refs=[marking])
        objects += [sco, observed, sighting]
    bundle_id = det_id("bundle", config.organisation.name, data.scope.key,
                       *sorted(o.id for o in objects))
    return stix2.Bundle(objects=objects, id=bundle_id, allow_custom=False)


def _sighting_text(obs: Observation) -> str:
    units = ", ".join(sorted(obs.units))
    return (f"{obs.count} alert(s) of severity up to {obs.severity}"
            + (f" in {units}" if units else ""))


def bundle_json(bundle: stix2.Bundle) -> str:
    """The bundle as JSON text, keys sorted (stable bytes for the same content)."""
    return str(bundle.serialize(sort_keys=True, indent=2, ensure_ascii=False))
