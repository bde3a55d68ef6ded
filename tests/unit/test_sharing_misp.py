"""MISP event JSON export: the MISP core format fields and the mapping of observed IoCs."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from socd.config.sharing import SharingConfig
from socd.sharing.data import Dataset, Scope, SharingError, build_dataset, scope_from
from socd.sharing.misp import build_event

from .test_sharing_seed import DOMAIN, INCIDENT, IP_DST, IP_SRC, REF_1, REF_2, SHA256, load, seed

SHARING = SharingConfig.model_validate({"organisation": {"name": "SOC tỉnh Bến Tre"}})


def event_of(tmp_path: Path, sharing: SharingConfig = SHARING, incident: str | None = None,
             **kwargs: int) -> dict:
    seeded = seed(tmp_path)
    scope = (scope_from(None, None, incident) if incident
             else scope_from("16/11/2026", "22/11/2026", None))
    return build_event(build_dataset(load(seeded.config), scope), sharing, **kwargs)


def test_event_fields(tmp_path: Path) -> None:
    doc = event_of(tmp_path)
    orjson.dumps(doc)  # plain JSON
    event = doc["Event"]
    assert event["info"] == ("SOC tỉnh Bến Tre: IoC ghi nhận trong giám sát "
                             "(từ ngày 16/11/2026 đến ngày 22/11/2026)")
    assert event["date"] == "2026-11-16"
    assert event["threat_level_id"] == "1"  # a critical alert among the sightings
    assert event["analysis"] == "2"
    assert event["distribution"] == "1"
    assert event["published"] is False
    assert "sharing_group_id" not in event
    assert event["Orgc"]["name"] == "SOC tỉnh Bến Tre"
    uuid.UUID(event["Orgc"]["uuid"])
    uuid.UUID(event["uuid"])
    assert {"name": "tlp:amber"} in event["Tag"]
    attrs = {a["value"]: a for a in event["Attribute"]}
    assert set(attrs) == {IP_SRC, IP_DST, DOMAIN, SHA256}
    assert (attrs[IP_SRC]["type"], attrs[IP_SRC]["category"]) == ("ip-src", "Network activity")
    assert (attrs[IP_DST]["type"], attrs[IP_DST]["category"]) == ("ip-dst", "Network activity")
    assert (attrs[DOMAIN]["type"], attrs[DOMAIN]["category"]) == ("domain", "Network activity")
    assert (attrs[SHA256]["type"], attrs[SHA256]["category"]) == ("sha256", "Payload delivery")
    for attr in attrs.values():
        assert attr["to_ids"] is True
        uuid.UUID(attr["uuid"])
    assert attrs[IP_SRC]["comment"] == f"Công văn {REF_1}; nguồn ncsc; 2 cảnh báo"
    assert attrs[IP_DST]["comment"] == (f"Công văn {REF_1}; nguồn ncsc; khớp IoC "
                                        "198.51.100.0/24; 1 cảnh báo")
    assert REF_2 in attrs[DOMAIN]["comment"]
    assert attrs[IP_SRC]["first_seen"] == "2026-11-16T01:00:00.000Z"
    assert attrs[IP_SRC]["last_seen"] == "2026-11-16T19:00:00.000Z"


def test_deterministic_and_incident(tmp_path: Path) -> None:
    assert event_of(tmp_path / "a") == event_of(tmp_path / "b")
    event = event_of(tmp_path / "c", incident=INCIDENT)["Event"]
    assert "sự cố SC-2026-0007" in event["info"]
    assert event["threat_level_id"] == "1"
    assert {a["value"] for a in event["Attribute"]} == {IP_SRC, SHA256}


def test_distribution_tlp_and_threat_level(tmp_path: Path) -> None:
    sharing = SharingConfig.model_validate({"tlp": "clear", "misp": {
        "distribution": 4, "sharing_group_id": 12, "analysis": 0, "publish": True}})
    event = event_of(tmp_path, sharing)["Event"]
    assert (event["distribution"], event["sharing_group_id"]) == ("4", "12")
    assert event["analysis"] == "0"
    assert event["published"] is True
    assert {"name": "tlp:clear"} in event["Tag"]
    # A push target overrides the distribution.
    event = event_of(tmp_path / "o", sharing, distribution=0)["Event"]
    assert event["distribution"] == "0"
    with pytest.raises(ValueError, match="sharing_group_id"):
        SharingConfig.model_validate({"misp": {"distribution": 4}})
    with pytest.raises(SharingError, match="sharing_group_id"):
        build_event(Dataset(Scope(incident=INCIDENT)), SHARING, distribution=4)
    empty = Dataset(Scope(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)))
    assert build_event(empty, SHARING)["Event"]["threat_level_id"] == "4"
    assert build_event(empty, SHARING)["Event"]["Attribute"] == []
