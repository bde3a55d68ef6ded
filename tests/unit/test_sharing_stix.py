"""STIX 2.1 export: structure, mapping, TLP, deterministic ids; parsed back by stix2 and
checked by the OASIS stix2-validator (no errors)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import stix2
from stix2validator import ValidationOptions, validate_string

from socd.config.sharing import SharingConfig
from socd.sharing.data import Dataset, Scope, build_dataset, scope_from
from socd.sharing.stix import build_bundle, bundle_json, pattern

from .test_sharing_seed import DOMAIN, INCIDENT, IP_DST, IP_SRC, REF_1, REF_2, SHA256, load, seed

SHARING = SharingConfig.model_validate({
    "organisation": {"name": "SOC tỉnh Bến Tre", "organisation": "Sở KH&CN tỉnh Bến Tre",
                     "contact": "soc@bentre.gov.vn"}})


def export(tmp_path: Path, sharing: SharingConfig = SHARING,
           incident: str | None = None) -> tuple[Dataset, stix2.Bundle]:
    seeded = seed(tmp_path)
    scope = (scope_from(None, None, incident) if incident
             else scope_from("16/11/2026", "22/11/2026", None))
    data = build_dataset(load(seeded.config), scope)
    return data, build_bundle(data, sharing)


def by_type(bundle: Any) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for obj in bundle["objects"]:
        out.setdefault(obj["type"], []).append(obj)
    return out


def validate(text: str) -> list[str]:
    result = validate_string(text, ValidationOptions(version="2.1", strict=False))
    results = getattr(result, "object_results", None) or [result]  # one bundle: one result
    assert result.is_valid, [str(e) for o in results for e in (o.errors or [])]
    return [str(w) for o in results for w in (o.warnings or [])]


def test_bundle_objects_and_mapping(tmp_path: Path) -> None:
    _, bundle = export(tmp_path)
    text = bundle_json(bundle)
    parsed = stix2.parse(text, allow_custom=False)
    objs = by_type(json.loads(text))
    assert len(objs["identity"]) == 1
    assert len(objs["indicator"]) == 4
    assert len(objs["observed-data"]) == 4
    assert len(objs["sighting"]) == 4
    assert {o["type"] for o in parsed.objects} >= {"ipv4-addr", "domain-name", "file",
                                                   "marking-definition"}
    me = objs["identity"][0]
    assert me["name"] == "SOC tỉnh Bến Tre"
    assert me["identity_class"] == "organization"
    assert me["contact_information"] == "soc@bentre.gov.vn"
    patterns = {i["pattern"]: i for i in objs["indicator"]}
    assert set(patterns) == {
        f"[ipv4-addr:value = '{IP_SRC}']", "[ipv4-addr:value = '198.51.100.0/24']",
        "[domain-name:value LIKE '%.badsite.vn']", f"[file:hashes.'SHA-256' = '{SHA256}']"}
    src = patterns[f"[ipv4-addr:value = '{IP_SRC}']"]
    assert src["pattern_type"] == "stix"
    assert src["indicator_types"] == ["malicious-activity"]
    assert src["external_references"] == [{
        "source_name": "ncsc", "external_id": REF_1,
        "description": "Letter reference (công văn) of the IoC list"}]
    assert src["confidence"] == 90
    assert src["labels"] == ["apt", "source:ncsc"]
    assert src["created_by_ref"] == me["id"]
    domain = patterns["[domain-name:value LIKE '%.badsite.vn']"]
    assert domain["external_references"][0]["external_id"] == REF_2
    # Sightings: of the right indicator, with observed data, sighted by us.
    ids = {o["id"]: o for o in json.loads(text)["objects"]}
    for sighting in objs["sighting"]:
        indicator = ids[sighting["sighting_of_ref"]]
        observed = ids[sighting["observed_data_refs"][0]]
        sco = ids[observed["object_refs"][0]]
        assert sighting["where_sighted_refs"] == [me["id"]]
        assert sighting["count"] == observed["number_observed"]
        assert sighting["first_seen"] == observed["first_observed"]
        assert sighting["last_seen"] == observed["last_observed"]
        value = sco.get("value") or sco["hashes"]["SHA-256"]
        if value == IP_SRC:
            assert sighting["count"] == 2
            assert sighting["first_seen"] == "2026-11-16T01:00:00Z"
            assert sighting["last_seen"] == "2026-11-16T19:00:00Z"
            assert indicator["pattern"] == f"[ipv4-addr:value = '{IP_SRC}']"
        if value == IP_DST:
            assert indicator["pattern"] == "[ipv4-addr:value = '198.51.100.0/24']"
        if value == DOMAIN:
            assert sco["type"] == "domain-name"
    # The only warning: {103} ids are UUIDv5 (deterministic, as the spec allows), not v4.
    warnings = validate(text)
    assert warnings
    assert all("{103}" in w and "not a valid UUIDv4" in w for w in warnings), warnings


def test_tlp_marking_on_every_object(tmp_path: Path) -> None:
    _, bundle = export(tmp_path)
    objs = json.loads(bundle_json(bundle))["objects"]
    assert stix2.TLP_AMBER.id == "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82"
    markings = [o for o in objs if o["type"] == "marking-definition"]
    assert [m["id"] for m in markings] == [stix2.TLP_AMBER.id]
    for obj in objs:
        if obj["type"] not in ("marking-definition", "identity"):
            assert obj["object_marking_refs"] == [stix2.TLP_AMBER.id], obj["type"]
    _, red = export(tmp_path / "red", SHARING.model_copy(update={"tlp": "red"}))
    assert stix2.TLP_RED.id in bundle_json(red)
    _, clear = export(tmp_path / "clear", SHARING.model_copy(update={"tlp": "clear"}))
    assert stix2.TLP_WHITE.id in bundle_json(clear)


def test_same_data_same_bundle(tmp_path: Path) -> None:
    _, first = export(tmp_path / "one")
    _, second = export(tmp_path / "two")
    assert bundle_json(first) == bundle_json(second)
    # The indicator of an IoC keeps its id across scopes; sightings are per scope.
    _, incident = export(tmp_path / "three", incident=INCIDENT)
    ids = {o.id for o in first.objects}
    inc = {o.id: o for o in incident.objects}
    assert {i for i, o in inc.items() if o.type == "indicator"} <= ids
    assert not {i for i, o in inc.items() if o.type == "sighting"} & ids
    validate(bundle_json(incident))


def test_empty_period_is_a_valid_bundle() -> None:
    from datetime import UTC, datetime

    data = Dataset(Scope(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)))
    bundle = build_bundle(data, SHARING)
    assert [o.type for o in bundle.objects] == ["marking-definition", "identity"]
    validate(bundle_json(bundle))


@pytest.mark.parametrize(("kind", "value", "algo", "expected"), [
    ("ip", "2001:db8::1", "", "[ipv6-addr:value = '2001:db8::1']"),
    ("ip", "10.0.0.0/8", "", "[ipv4-addr:value = '10.0.0.0/8']"),
    ("domain", "evil.vn", "", "[domain-name:value = 'evil.vn']"),
    ("hash", "d41d8cd98f00b204e9800998ecf8427e", "md5",
     "[file:hashes.'MD5' = 'd41d8cd98f00b204e9800998ecf8427e']"),
    ("hash", "da39a3ee5e6b4b0d3255bfef95601890afd80709", "sha1",
     "[file:hashes.'SHA-1' = 'da39a3ee5e6b4b0d3255bfef95601890afd80709']"),
])
def test_patterns(kind: str, value: str, algo: str, expected: str) -> None:
    from stix2patterns.validator import run_validator

    text = pattern(kind, value, algo or "sha256")
    assert text == expected
    assert run_validator(text, stix_version="2.1") == []
