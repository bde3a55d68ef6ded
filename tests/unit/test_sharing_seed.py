"""The data set of the sharing tests (alerts, IoC entries, an incident) and the reading side.

Other sharing tests import :func:`seed`. Known content, local time Asia/Ho_Chi_Minh:
the period 16/11/2026-22/11/2026 holds six alerts, five of them with IoC matches
on four observed values (one address seen twice), and one more alert after it.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from socd.alerts.store import AlertStore
from socd.event import Event, fingerprint, normalize, set_severity
from socd.ioc.store import Entry, IocStore
from socd.severity import Severity
from socd.sharing.data import (
    SharingError,
    build_dataset,
    parse_day_or_time,
    scope_from,
)

IP_SRC = "203.0.113.9"
IP_DST = "198.51.100.23"
DOMAIN = "cdn.badsite.vn"
SHA256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
REF_1 = "1298/CATTT-NCSC"
REF_2 = "47/VNCERT-ĐPƯC"
INCIDENT = "SC-2026-0007"


def alert(key: str, ts: str, severity: Severity, *, unit: str = "Sở Y tế",
          ioc: list[str] | None = None, refs: list[str] | None = None,
          **fields: Any) -> Event:
    event: Event = {
        "@timestamp": ts,
        "event": {"kind": "alert", "hash": fingerprint("share", key), "module": "suricata"},
        "host": {"name": f"srv-{key}"},
        "rule": {"id": f"R-{key}", "name": f"Kết nối tới IoC {key}",
                 "description": "Kết nối tới địa chỉ trong danh sách IoC"},
        "socd": {"layer": 2, "asset_kind": "server", "unit": unit},
        "message": f"alert {key}",
    }
    for path, value in fields.items():
        node = event
        parts = path.split("__")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    if ioc:
        event["socd"]["ioc"] = {"matched": True, "values": ioc, "refs": refs or []}
        event["tags"] = ["ioc"]
    set_severity(event, severity)
    return normalize(event)


@dataclass
class Seeded:
    config: Path
    state: Path
    alerts: list[Event]


def seed(tmp_path: Path, sharing_yaml: str = "", extra_yaml: str = "") -> Seeded:
    """Write a config, the alert store, the IoC database and an incident under tmp_path."""
    state = tmp_path / "state"
    alerts = [
        alert("a1", "2026-11-16T01:00:00Z", Severity.HIGH, ioc=[IP_SRC], refs=[REF_1],
              source__ip=IP_SRC, source__port=40001, destination__ip="10.10.20.11",
              destination__port=22),
        alert("a2", "2026-11-17T02:00:00+07:00", Severity.CRITICAL, ioc=[IP_SRC],
              refs=[REF_1], unit="UBND huyện Châu Thành", source__ip=IP_SRC,
              destination__ip="10.10.20.12"),
        alert("a3", "2026-11-18T03:00:00Z", Severity.MEDIUM, ioc=[IP_DST], refs=[REF_1],
              source__ip="10.10.30.5", destination__ip=IP_DST, destination__port=443),
        alert("a4", "2026-11-19T04:00:00Z", Severity.MEDIUM, ioc=[DOMAIN], refs=[REF_2],
              source__ip="10.10.30.6", dns__question__name=DOMAIN),
        alert("a5", "2026-11-20T05:00:00Z", Severity.HIGH, ioc=[SHA256], refs=[REF_1],
              file__hash__sha256=SHA256, file__name="hoadon.exe", user__name="nguyenvana"),
        alert("a6", "2026-11-20T06:00:00Z", Severity.LOW, source__ip="10.10.30.7"),
        alert("a7", "2026-11-25T01:00:00Z", Severity.HIGH, ioc=[IP_SRC], refs=[REF_1],
              source__ip=IP_SRC),
    ]
    store = AlertStore(str(state / "alerts.db"))
    store.insert(alerts)
    store.close()
    iocs = IocStore(str(state / "ioc.db"))
    iocs.import_entries([
        Entry("ip", IP_SRC, "ncsc", REF_1, 90, tags=("apt",)),
        Entry("ip", "198.51.100.0/24", "ncsc", REF_1, 70),
        Entry("domain", "*.badsite.vn", "vncert", REF_2, 80),
        Entry("hash", SHA256, "ncsc", REF_1, 100),
        Entry("ip", "192.0.2.1", "ncsc", REF_1, 90),  # never observed: never shared
    ])
    iocs.close()
    db = sqlite3.connect(state / "incidents.db")
    db.execute("CREATE TABLE incident_alerts (incident_id TEXT, alert_id TEXT)")
    db.executemany("INSERT INTO incident_alerts VALUES (?, ?)",
                   [(INCIDENT, alerts[0]["event"]["hash"]),
                    (INCIDENT, alerts[4]["event"]["hash"])])
    db.commit()
    db.close()
    cfg = tmp_path / "socd.yaml"
    cfg.write_text(f"state_dir: {state}\nsinks:\n  store:\n    type: sqlite\n"
                   f"    path: alerts.db\n{sharing_yaml}{extra_yaml}", encoding="utf-8")
    return Seeded(cfg, state, alerts)


def load(path: Path) -> Any:
    from socd import config

    return config.load(path, env={})


# -- tests of the reading side --------------------------------------------------------------


def test_dates_are_local_and_to_includes_the_day() -> None:
    assert parse_day_or_time("16/11/2026", end=False) == datetime(2026, 11, 15, 17, tzinfo=UTC)
    assert parse_day_or_time("22/11/2026", end=True) == datetime(2026, 11, 22, 17, tzinfo=UTC)
    assert parse_day_or_time("2026-11-16", end=False) == datetime(2026, 11, 15, 17, tzinfo=UTC)
    assert parse_day_or_time("2026-11-16T08:00", end=True) == datetime(2026, 11, 16, 1,
                                                                        tzinfo=UTC)
    assert parse_day_or_time("2026-11-16T08:00Z", end=False) == datetime(2026, 11, 16, 8,
                                                                          tzinfo=UTC)
    with pytest.raises(SharingError, match="not a date"):
        parse_day_or_time("32/13/2026", end=False)
    with pytest.raises(SharingError, match="not after"):
        scope_from("20/11/2026", "19/11/2026", None)
    with pytest.raises(SharingError, match="either"):
        scope_from("20/11/2026", None, INCIDENT)
    with pytest.raises(SharingError, match="SC-YYYY-NNNN"):
        scope_from(None, None, "42")
    with pytest.raises(SharingError, match="give a period"):
        scope_from("20/11/2026", None, None)


def test_period_dataset(tmp_path: Path) -> None:
    seeded = seed(tmp_path)
    data = build_dataset(load(seeded.config), scope_from("16/11/2026", "22/11/2026", None))
    assert data.alerts == 6  # a7 is after the period
    by_value = {o.value: o for o in data.observations}
    assert set(by_value) == {IP_SRC, IP_DST, DOMAIN, SHA256}
    src = by_value[IP_SRC]
    assert src.count == 2
    assert src.directions == {"source"}
    assert src.severity == "critical"
    assert src.units == {"Sở Y tế", "UBND huyện Châu Thành"}
    assert src.first == datetime(2026, 11, 16, 1, tzinfo=UTC)
    assert src.last == datetime(2026, 11, 16, 19, tzinfo=UTC)
    assert (src.indicator.value, src.indicator.ref, src.indicator.confidence) == (
        IP_SRC, REF_1, 90)
    assert by_value[IP_DST].indicator.value == "198.51.100.0/24"  # the CIDR entry
    assert by_value[IP_DST].directions == {"destination"}
    assert by_value[DOMAIN].indicator.value == "*.badsite.vn"
    assert by_value[DOMAIN].indicator.ref == REF_2
    assert by_value[SHA256].hash_algo == "sha256"
    assert data.max_severity == "critical"


def test_incident_dataset_and_errors(tmp_path: Path) -> None:
    seeded = seed(tmp_path)
    cfg = load(seeded.config)
    data = build_dataset(cfg, scope_from(None, None, INCIDENT))
    assert data.alerts == 2
    assert {o.value for o in data.observations} == {IP_SRC, SHA256}
    with pytest.raises(SharingError, match="SC-2026-0099 not found"):
        build_dataset(cfg, scope_from(None, None, "SC-2026-0099"))
    (seeded.state / "incidents.db").unlink()
    with pytest.raises(SharingError, match="no incident database"):
        build_dataset(cfg, scope_from(None, None, INCIDENT))


def test_without_ioc_database_the_alert_refs_are_used(tmp_path: Path) -> None:
    seeded = seed(tmp_path)
    (seeded.state / "ioc.db").unlink()
    data = build_dataset(load(seeded.config), scope_from("16/11/2026", "22/11/2026", None))
    by_value = {o.value: o for o in data.observations}
    assert by_value[IP_SRC].indicator.value == IP_SRC
    assert by_value[IP_SRC].indicator.ref == REF_1
    assert by_value[IP_DST].indicator.value == IP_DST  # no CIDR known: the address itself
