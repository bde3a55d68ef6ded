"""MISP event JSON (the MISP core format) of locally observed IoCs.

One event per export: ``info`` names the SOC and the period or incident,
``threat_level_id`` follows the highest SOC severity among the sightings
(critical/high 1, medium 2, low 3), and each observed value is one attribute:

==========================  =============  ==================
observed                    MISP type      category
==========================  =============  ==================
address seen as source      ip-src         Network activity
address seen as destination ip-dst         Network activity
domain                      domain         Network activity
file hash                   md5/sha1/...   Payload delivery
==========================  =============  ==================

The attribute ``comment`` carries the letter reference (công văn) and source of
the IoC list; ``first_seen``/``last_seen`` the local sightings. UUIDs are UUIDv5
of the content, so re-exporting the same data gives the same event and
attributes (MISP then updates instead of duplicating).
"""

from __future__ import annotations

import uuid
from typing import Any

from socd.config.sharing import SharingConfig
from socd.sharing.data import Dataset, Observation, local_zone, stix_time
from socd.sharing.stix import NAMESPACE

_THREAT_LEVEL = {"critical": "1", "high": "1", "medium": "2", "low": "3"}
_HASH_TYPES = {"md5": "md5", "sha1": "sha1", "sha256": "sha256", "sha512": "sha512"}


def _uuid(*parts: str) -> str:
    return str(uuid.uuid5(NAMESPACE, "|".join(("misp", *parts))))


def org_uuid(config: SharingConfig) -> str:
    return _uuid("org", config.organisation.name)


def tlp_tag(tlp: str) -> str:
    """The MISP taxonomy tag (TLP 2.0 names: white is written clear)."""
    return "tlp:clear" if tlp in ("clear", "white") else f"tlp:{tlp}"


def attribute_type(obs: Observation) -> tuple[str, str]:
    """(type, category) of an observed value."""
    if obs.kind == "ip":
        wanted = "ip-src" if obs.directions == {"source"} else "ip-dst"
        return wanted, "Network activity"
    if obs.kind == "domain":
        return "domain", "Network activity"
    return _HASH_TYPES.get(obs.hash_algo, "sha256"), "Payload delivery"


def _comment(obs: Observation) -> str:
    ind = obs.indicator
    parts = []
    if ind.ref:
        parts.append(f"Công văn {ind.ref}")
    if ind.source:
        parts.append(f"nguồn {ind.source}")
    if ind.value != obs.value:
        parts.append(f"khớp IoC {ind.value}")
    parts.append(f"{obs.count} cảnh báo")
    return "; ".join(parts)


def _date_text(data: Dataset) -> tuple[str, str]:
    """(MISP date yyyy-mm-dd, Vietnamese description of the scope)."""
    scope = data.scope
    if scope.incident:
        first = min((o.first for o in data.observations), default=None)
        day = (first.astimezone(local_zone()).date().isoformat() if first
               else "1970-01-01")
        return day, f"sự cố {scope.incident}"
    assert scope.start is not None
    assert scope.end is not None
    zone = local_zone()
    start = scope.start.astimezone(zone)
    # The end bound is exclusive: the last day covered is the one before it at midnight.
    end = (scope.end.astimezone(zone) - _one_ms())
    text = f"từ ngày {start:%d/%m/%Y} đến ngày {end:%d/%m/%Y}"
    return start.date().isoformat(), text


def _one_ms() -> Any:
    from datetime import timedelta

    return timedelta(milliseconds=1)


def build_event(data: Dataset, config: SharingConfig, *, distribution: int | None = None,
                sharing_group_id: int | None = None) -> dict[str, Any]:
    """``{"Event": {...}}`` for ``data``; deterministic for the same data and config."""
    misp = config.misp
    dist = misp.distribution if distribution is None else distribution
    group = misp.sharing_group_id if sharing_group_id is None else sharing_group_id
    if dist == 4 and group is None:
        from socd.sharing.data import SharingError

        raise SharingError("MISP distribution 4 (sharing group) needs sharing_group_id")
    day, scope_text = _date_text(data)
    org = config.organisation
    attributes: list[dict[str, Any]] = []
    for obs in data.observations:
        type_, category = attribute_type(obs)
        attributes.append({
            "uuid": _uuid("attribute", data.scope.key, obs.kind, obs.value),
            "type": type_, "category": category, "value": obs.value, "to_ids": True,
            "distribution": "5",  # inherit the event's distribution
            "comment": _comment(obs),
            "first_seen": stix_time(obs.first), "last_seen": stix_time(obs.last),
        })
    event: dict[str, Any] = {
        "uuid": _uuid("event", org.name, data.scope.key),
        "info": f"{org.name}: IoC ghi nhận trong giám sát ({scope_text})",
        "date": day,
        "threat_level_id": _THREAT_LEVEL.get(data.max_severity or "", "4"),
        "analysis": str(misp.analysis),
        "distribution": str(dist),
        "published": misp.publish,
        "Orgc": {"name": org.name, "uuid": org_uuid(config)},
        "Attribute": attributes,
        "Tag": [{"name": tlp_tag(config.tlp)}, {"name": 'socd:layer="4"'}],
    }
    if dist == 4:
        event["sharing_group_id"] = str(group)
    return {"Event": event}
