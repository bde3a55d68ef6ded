"""Enrichment: the asset inventory (YAML/CSV), its precedence rules, reload, GeoIP."""

from __future__ import annotations

import builtins
import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest

from socd import cli
from socd import config as config_mod
from socd.app.components import build_classifier
from socd.config.assets import Inventory, load_inventory
from socd.engine.enrich import Enricher, GeoIP
from socd.errors import ConfigError

ASSETS = Path(__file__).resolve().parents[1] / "fixtures" / "assets"
FIXTURES = ASSETS.parent


@pytest.fixture(scope="module")
def inventory() -> Inventory:
    return load_inventory(str(ASSETS / "inventory.yaml"))


def enrich(inv: Inventory, event: dict[str, Any]) -> dict[str, Any]:
    event.setdefault("socd", {})
    event.setdefault("event", {"kind": "event"})
    Enricher(inv).enrich(event)
    return event


# -- lookups --------------------------------------------------------------------------------


def test_longest_prefix_wins(inventory: Inventory) -> None:
    assert inventory.match_ip("10.20.2.77").key == "10.20.2.0/24"  # type: ignore[union-attr]
    assert inventory.match_ip("10.20.9.1").key == "10.20.0.0/16"  # type: ignore[union-attr]
    assert inventory.match_ip("10.10.20.42").key == "10.10.20.40/29"  # type: ignore[union-attr]
    assert inventory.match_ip("10.10.20.99").key == "10.10.20.0/24"  # type: ignore[union-attr]
    exact = inventory.match_ip("10.10.20.11")
    assert exact is not None
    assert exact.matched_by == "ip"
    assert inventory.match_ip("10.30.0.1") is None
    assert inventory.match_ip("192.0.2.1") is None
    assert inventory.match_ip("not an ip") is None


def test_ipv6_and_mapped_addresses(inventory: Inventory) -> None:
    v6 = inventory.match_ip("2001:db8:10:20::10")
    assert v6 is not None
    assert v6.key == "2001:db8:10:20::/64"
    mapped = inventory.match_ip("::ffff:10.10.20.11")
    assert mapped is not None
    assert mapped.matched_by == "ip"


def test_hostnames_are_case_insensitive_nfc_and_short(inventory: Inventory) -> None:
    assert inventory.match_host("SRV-DVC-01").unit == "Văn phòng UBND tỉnh"  # type: ignore[union-attr]
    assert inventory.match_host("srv-dvc-01.tinh.local") is not None  # FQDN of a short entry
    assert inventory.match_host("srv-ad-01") is not None  # short name of an FQDN entry
    assert inventory.match_host("srv-ad-01.TINH.local.") is not None
    assert inventory.match_host("pc-unknown") is None


def test_yaml_and_csv_agree() -> None:
    yaml_inv = load_inventory(str(ASSETS / "inventory.yaml"))
    csv_inv = load_inventory(str(ASSETS / "inventory.csv"))
    for ip in ("10.10.20.11", "10.10.20.20", "10.20.2.77", "10.20.9.1", "10.10.0.1"):
        a, b = yaml_inv.match_ip(ip), csv_inv.match_ip(ip)
        assert a is not None
        assert b is not None
        assert (a.unit, a.system_level, a.asset_kind) == (b.unit, b.system_level, b.asset_kind)
    assert csv_inv.match_ip("10.20.15.3").unit == "Sở Giáo dục và Đào tạo"  # type: ignore[union-attr]
    assert csv_inv.match_host("srv-dvc-01").criticality == "critical"  # type: ignore[union-attr]
    assert csv_inv.match_host("pc-stc-012").criticality == "medium"  # type: ignore[union-attr]


# -- precedence -----------------------------------------------------------------------------


def test_host_ip_exact_first(inventory: Inventory) -> None:
    event = enrich(inventory, {"host": {"name": "pc-stc-012", "ip": ["10.10.20.20"]},
                               "source": {"ip": "10.20.5.1"}})
    assert event["socd"]["unit"] == "Sở Thông tin và Truyền thông"
    assert event["socd"]["asset"] == {"field": "host.ip", "matched_by": "ip",
                                      "key": "10.10.20.20", "owner": "Phòng CNTT",
                                      "criticality": "high"}


def test_hostname_before_host_cidr(inventory: Inventory) -> None:
    event = enrich(inventory, {"host": {"name": "PC-STC-012", "ip": ["10.20.5.40"]}})
    assert event["socd"]["unit"] == "Sở Tài chính"
    assert event["socd"]["asset"]["field"] == "host.name"
    assert "system_level" not in event["socd"]  # the hostname entry sets none
    cidr = enrich(inventory, {"host": {"name": "pc-x", "ip": "10.20.5.40"}})
    assert cidr["socd"]["unit"] == "Sở Giáo dục và Đào tạo"
    assert cidr["socd"]["asset"]["matched_by"] == "cidr"


def test_host_beats_network_sides(inventory: Inventory) -> None:
    event = enrich(inventory, {"host": {"name": "srv-dvc-01"},
                               "destination": {"ip": "10.20.2.5"},
                               "network": {"direction": "inbound"}})
    assert event["socd"]["unit"] == "Văn phòng UBND tỉnh"


@pytest.mark.parametrize(("direction", "unit", "field"), [
    ("inbound", "Sở Tài chính", "destination.ip"),
    ("outbound", "Sở Giáo dục và Đào tạo", "source.ip"),
    (None, "Sở Tài chính", "destination.ip"),
    ("internal", "Sở Tài chính", "destination.ip"),
])
def test_network_direction(inventory: Inventory, direction: str | None, unit: str,
                           field: str) -> None:
    event: dict[str, Any] = {"source": {"ip": "10.20.5.37"}, "destination": {"ip": "10.20.2.9"}}
    if direction:
        event["network"] = {"direction": direction}
    enrich(inventory, event)
    assert event["socd"]["unit"] == unit
    assert event["socd"]["asset"]["field"] == field


def test_unknown_direction_falls_back_to_source(inventory: Inventory) -> None:
    event = enrich(inventory, {"source": {"ip": "10.10.20.45"},
                               "destination": {"ip": "198.51.100.99"}})
    assert event["socd"]["asset"]["field"] == "source.ip"
    inbound_only = enrich(inventory, {"source": {"ip": "10.10.20.45"},
                                      "destination": {"ip": "198.51.100.99"},
                                      "network": {"direction": "inbound"}})
    assert "asset" not in inbound_only["socd"]


def test_inventory_wins_for_unit_and_level(inventory: Inventory) -> None:
    event = enrich(inventory, {"host": {"ip": "10.20.2.12"},
                               "socd": {"unit": "So Tai chinh (EDR)", "system_level": 1}})
    assert event["socd"]["unit"] == "Sở Tài chính"
    assert event["socd"]["system_level"] == 2


def test_asset_kind_exact_wins_cidr_only_fills(inventory: Inventory) -> None:
    exact = enrich(inventory, {"host": {"ip": "10.10.20.20"},
                               "socd": {"asset_kind": "server"}})
    assert exact["socd"]["asset_kind"] == "application"
    cidr = enrich(inventory, {"host": {"ip": "10.20.2.200"},
                              "socd": {"asset_kind": "server"}})
    assert cidr["socd"]["asset_kind"] == "server"  # Windows Server in a workstation subnet
    unknown = enrich(inventory, {"host": {"ip": "10.20.2.200"},
                                 "socd": {"asset_kind": "unknown"}})
    assert unknown["socd"]["asset_kind"] == "workstation"
    unset = enrich(inventory, {"destination": {"ip": "10.20.2.200"}})
    assert unset["socd"]["asset_kind"] == "workstation"


def test_events_without_a_match_or_with_odd_shapes(inventory: Inventory) -> None:
    for event in ({"message": "nothing"}, {"host": "srv-dvc-01"}, {"host": {"ip": [1, None]}},
                  {"source": ["10.20.2.1"]}, {"network": {"direction": ["inbound"]},
                                              "destination": {"ip": "10.20.2.1"}}):
        enriched = enrich(inventory, event)
        assert "unit" not in enriched["socd"] or enriched["socd"]["unit"] == "Sở Tài chính"


# -- errors ---------------------------------------------------------------------------------


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_inventory(str(path))
    return [str(p) for p in info.value.problems]


def test_bad_yaml_rows_are_reported_with_lines() -> None:
    found = problems(ASSETS / "bad_inventory.yaml")
    assert len(found) == 9
    text = "\n".join(found)
    assert "bad_inventory.yaml:5: assets[1].ip: not an IP address: '10.10.20.300'" in text
    assert "bad_inventory.yaml:7: assets[2].cidr" in text
    assert "did you mean 10.20.2.0/24?" in text
    assert "bad_inventory.yaml:9: assets[3].system_level" in text
    assert "cấp độ" in text
    assert "assets[4].asset_kind" in text
    assert "10.10.20.11 is listed twice (hint: first listed on line 2)" in text
    assert "unknown key 'units' (hint: did you mean 'unit'?)" in text
    assert "an entry needs an ip, cidr or hostname" in text
    assert "criticality must be" in text
    assert "an entry sets nothing" in text


def test_bad_csv_rows_are_reported_with_row_numbers() -> None:
    found = problems(ASSETS / "bad_inventory.csv")
    assert [p.split(": ", 2)[:2] for p in found] == [
        [f"{ASSETS / 'bad_inventory.csv'}:3", "row 3.ip"],
        [f"{ASSETS / 'bad_inventory.csv'}:4", "row 4.cidr"],
        [f"{ASSETS / 'bad_inventory.csv'}:5", "row 5.system_level"],
        [f"{ASSETS / 'bad_inventory.csv'}:6", "row 6.asset_kind"],
        [f"{ASSETS / 'bad_inventory.csv'}:7", "row 7.ip"],
    ]


@pytest.mark.parametrize(("name", "text", "expected"), [
    ("inv.csv", "address,unit\n10.0.0.1,X\n", "unknown column"),
    ("inv.csv", "unit,owner\nX,Y\n", "no key column"),
    ("inv.csv", "ip,unit\n10.0.0.1,X,extra\n", "too many cells"),
    ("inv.yaml", "assets: {ip: 10.0.0.1}\n", "must be a list"),
    ("inv.yaml", "assets: []\nextra: 1\n", "unknown top-level key"),
    ("inv.yaml", "- ip: [10.0.0.1\n", "invalid YAML"),
    ("inv.yaml", "- 10.0.0.1\n", "must be a mapping"),
    ("inv.json", "[]", "unknown inventory format"),
])
def test_malformed_files(tmp_path: Path, name: str, text: str, expected: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    assert any(expected in p for p in problems(path))


def test_empty_and_commented_files(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("# nothing yet\n", encoding="utf-8")
    (tmp_path / "b.csv").write_text("# nothing yet\n", encoding="utf-8")
    assert len(load_inventory(str(tmp_path / "a.yaml"))) == 0
    assert len(load_inventory(str(tmp_path / "b.csv"))) == 0


# -- config, reload, replay -----------------------------------------------------------------


def write_config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "socd.yaml"
    path.write_text(f"state_dir: state\n{body}", encoding="utf-8")
    return path


def test_config_paths_are_relative_and_reload_picks_up_changes(tmp_path: Path) -> None:
    (tmp_path / "inv").mkdir()
    inv = tmp_path / "inv" / "assets.csv"
    inv.write_text("cidr,unit,system_level\n10.20.2.0/24,Sở Tài chính,2\n", encoding="utf-8")
    cfg = config_mod.load(write_config(tmp_path, "enrichment:\n  assets_file: inv/assets.csv\n"))

    def unit_of(classifier: Any) -> Any:
        event = {"event": {"kind": "alert"}, "socd": {}, "host": {"ip": ["10.20.2.5"]}}
        return classifier.process([event])[0]["socd"].get("unit")

    assert unit_of(build_classifier(cfg)) == "Sở Tài chính"
    inv.write_text("cidr,unit,system_level\n10.20.2.0/24,Sở Tư pháp,3\n", encoding="utf-8")
    assert unit_of(build_classifier(cfg)) == "Sở Tư pháp"  # what SIGHUP does


def test_enricher_runs_before_classification_defaults(tmp_path: Path) -> None:
    shutil.copy(ASSETS / "inventory.yaml", tmp_path / "inventory.yaml")
    cfg = config_mod.load(write_config(tmp_path, "enrichment: {assets_file: inventory.yaml}\n"))
    classifier = build_classifier(cfg)
    (event,) = classifier.process([{"event": {"kind": "alert"}, "socd": {},
                                    "destination": {"ip": "10.10.20.99"}}])
    assert event["socd"]["asset_kind"] == "server"  # not the "unknown" default
    assert event["socd"]["system_level"] == 3


def test_missing_inventory_is_a_config_error(tmp_path: Path) -> None:
    cfg = config_mod.load(write_config(tmp_path, "enrichment: {assets_file: nope.yaml}\n"))
    with pytest.raises(ConfigError) as info:
        build_classifier(cfg)
    assert "enrichment.assets_file: no such file" in str(info.value)


def test_unknown_enrichment_key_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        config_mod.load(write_config(tmp_path, "enrichment: {asset_file: x.yaml}\n"))
    assert "did you mean 'assets_file'?" in str(info.value)


def test_check_config_reports_inventory_rows(
        tmp_path: Path, isolated_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copy(ASSETS / "bad_inventory.csv", tmp_path / "assets.csv")
    path = write_config(tmp_path, "enrichment: {assets_file: assets.csv}\n")
    assert cli.main(["check-config", "-c", str(path)]) == cli.EXIT_CONFIG
    err = capsys.readouterr().err
    assert "assets.csv:3: row 3.ip" in err
    assert "5 problems" in err


def test_replay_enriches(tmp_path: Path, isolated_env: Path,
                         capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    shutil.copy(ASSETS / "inventory.yaml", tmp_path / "inventory.yaml")
    path = write_config(tmp_path, "enrichment: {assets_file: inventory.yaml}\n")
    code = cli.main(["replay", "-c", str(path), "--format", "wazuh",
                     str(FIXTURES / "wazuh" / "alerts.ndjson")])
    out, err = capsysbinary.readouterr()
    assert code == 0, err
    events = [orjson.loads(line) for line in out.splitlines()]
    assert events[0]["socd"]["unit"] == "Văn phòng UBND tỉnh"  # agent srv-dvc-01
    assert events[0]["socd"]["system_level"] == 4
    assert events[0]["socd"]["asset"]["criticality"] == "critical"
    assert events[5]["socd"]["unit"] == "Sở Tài chính"  # agent pc-stc-012 (hostname)


# -- GeoIP ----------------------------------------------------------------------------------


@pytest.fixture
def mmdbs(tmp_path: Path) -> tuple[Path, Path]:
    from mmdb_writer import MmdbU32, MMDBWriter
    from netaddr import IPSet

    city = MMDBWriter(ip_version=6, database_type="GeoLite2-City", ipv4_compatible=True)
    city.insert_network(IPSet(["14.160.0.0/16"]), {
        "country": {"iso_code": "VN"}, "city": {"names": {"en": "Hanoi", "vi": "Hà Nội"}},
        "location": {"latitude": 21.0245, "longitude": 105.8412}})
    city.insert_network(IPSet(["10.0.0.0/8"]), {"country": {"iso_code": "ZZ"}})
    asn = MMDBWriter(ip_version=6, database_type="GeoLite2-ASN", ipv4_compatible=True)
    asn.insert_network(IPSet(["14.160.0.0/16"]), {
        "autonomous_system_number": MmdbU32(45899),
        "autonomous_system_organization": "VNPT Corp"})
    city.to_db_file(str(tmp_path / "city.mmdb"))
    asn.to_db_file(str(tmp_path / "asn.mmdb"))
    return tmp_path / "city.mmdb", tmp_path / "asn.mmdb"


def test_geoip_public_addresses_only(mmdbs: tuple[Path, Path]) -> None:
    geo = GeoIP(str(mmdbs[0]), str(mmdbs[1]))
    try:
        enricher = Enricher(None, geo)
        event: dict[str, Any] = {"source": {"ip": "14.160.1.2"},
                                 "destination": {"ip": "10.10.20.11"}}
        enricher.enrich(event)
        assert event["source"]["geo"] == {"country_iso_code": "VN", "city_name": "Hanoi",
                                          "location": {"lat": 21.0245, "lon": 105.8412}}
        assert event["source"]["as"] == {"number": 45899,
                                         "organization": {"name": "VNPT Corp"}}
        assert "geo" not in event["destination"]  # private: skipped even though in the db
        other: dict[str, Any] = {"source": {"ip": "8.8.8.8"}, "destination": {"ip": "x"}}
        enricher.enrich(other)
        assert other == {"source": {"ip": "8.8.8.8"}, "destination": {"ip": "x"}}
    finally:
        geo.close()


def test_geoip_from_config(tmp_path: Path, mmdbs: tuple[Path, Path]) -> None:
    path = write_config(tmp_path, "enrichment:\n  geoip_city_db: city.mmdb\n"
                        "  geoip_asn_db: asn.mmdb\n")
    classifier = build_classifier(config_mod.load(path))
    (event,) = classifier.process([{"event": {"kind": "event"}, "socd": {},
                                    "source": {"ip": "14.160.200.1"}}])
    assert event["source"]["geo"]["country_iso_code"] == "VN"
    assert event["source"]["as"]["number"] == 45899


def test_geoip_bad_database_and_missing_library(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "city.mmdb").write_bytes(b"not a maxmind database")
    path = write_config(tmp_path, "enrichment: {geoip_city_db: city.mmdb}\n")
    cfg = config_mod.load(path)
    with pytest.raises(ConfigError) as info:
        build_classifier(cfg)
    assert "enrichment.geoip_city_db: cannot open MaxMind database" in str(info.value)
    real_import = builtins.__import__

    def no_maxminddb(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "maxminddb":
            raise ImportError("No module named 'maxminddb'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_maxminddb)
    with pytest.raises(ConfigError) as info:
        build_classifier(cfg)
    assert "needs the maxminddb package" in str(info.value)
