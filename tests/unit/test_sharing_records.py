"""The exchange log (sharing.db) and the layer-4 metrics read from it."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import generate_latest

from socd import metrics
from socd.sharing import records

from .test_sharing_seed import load, seed

TARGETS = """sharing:
  organisation: {name: SOC}
  targets:
    ncsc: {type: taxii, url: "https://taxii.example.vn/api1/", collection_id: c1,
           username: soc, password: "${TAXII_PASSWORD:-x}"}
    misp-vn: {type: misp, url: "https://misp.example.vn", api_key: "${MISP_KEY:-k}"}
"""


def row(target: str, result: str, ts: str) -> records.Exchange:
    return records.Exchange(None, ts, "stix", target, "NCSC", "2026-11-15T17:00:00Z",
                            "2026-11-22T17:00:00Z", None, 12, result, "detail")


def sample(name: str, **labels: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(name, labels)


def test_record_list_last_success(tmp_path: Path) -> None:
    path = str(tmp_path / "sharing.db")
    assert records.exchanges(path) == []
    assert records.last_success(path) is None
    first = records.record(path, row("ncsc", "success", "2026-11-23T01:00:00Z"))
    records.record(path, row("ncsc", "failure", "2026-11-23T02:00:00Z"))
    records.record(path, row("misp-vn", "success", "2026-11-23T03:00:00Z"))
    rows = records.exchanges(path)
    assert [r.result for r in rows] == ["success", "failure", "success"]
    assert rows[-1].id == first
    assert records.last_success(path, "ncsc").ts == "2026-11-23T01:00:00Z"  # type: ignore[union-attr]
    assert records.last_success(path).target == "misp-vn"  # type: ignore[union-attr]
    assert [r.target for r in records.exchanges(path, target="ncsc", limit=1)] == ["ncsc"]
    assert rows[0].as_dict()["objects"] == 12


def test_refresh_metrics_reads_the_table(tmp_path: Path) -> None:
    seeded = seed(tmp_path, TARGETS)
    cfg = load(seeded.config)
    records.refresh_metrics(cfg)  # no file yet: no series
    assert sample("socd_sharing_last_success_timestamp_seconds", target="ncsc") is None
    path = records.db_path(cfg)
    assert path == str(seeded.state / "sharing.db")
    records.record(path, row("ncsc", "success", "2026-11-23T01:00:00Z"))
    records.record(path, row("ncsc", "failure", "2026-11-23T02:00:00Z"))
    records.record(path, row("ncsc", "failure", "2026-11-23T03:00:00Z"))
    records.record(path, row("removed-target", "success", "2026-11-23T03:00:00Z"))
    records.refresh_metrics(cfg)
    assert sample("socd_sharing_last_success_timestamp_seconds", target="ncsc") == 1795395600.0
    assert sample("socd_sharing_exchanges_total", target="ncsc", result="success") == 1
    assert sample("socd_sharing_exchanges_total", target="ncsc", result="failure") == 2
    # Targets no longer configured are not reported (bounded labels).
    assert sample("socd_sharing_exchanges_total", target="removed-target",
                  result="success") is None
    text = generate_latest(metrics.REGISTRY).decode()
    assert "# TYPE socd_sharing_last_success_timestamp_seconds gauge" in text
    assert "# TYPE socd_sharing_exchanges_total counter" in text
    records.COLLECTOR.set({}, {})
