"""Finding 9: input cannot create metric series without bound.

A real ``socd run`` with the webhook collector receives 500 alerts, each with its own
``socd.asset_kind`` (and its own 2 KiB ``socd.unit``), plus alerts with the documented
values. ``/metrics`` must keep ``socd_alerts_total`` to the asset-kind enum (an unknown
kind is not a label value), every alert must still be counted, and the unit label must
stay short and capped.
"""

from __future__ import annotations

import re
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from socd.vocabulary import ASSET_KINDS
from tests.conftest import free_port
from tests.helpers import SocdProcess, metric, wait_for

pytestmark = pytest.mark.timeout(180)

TOKEN = "adv-labels-token-0123456789abcdef"
DISTINCT = 500


def _post(url: str, records: list[dict[str, Any]]) -> int:
    body = b"\n".join(orjson.dumps(r) for r in records)
    req = urllib.request.Request(url, data=body, method="POST", headers={
        "Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-ndjson"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return int(resp.status)


def _alert(i: int, **socd: Any) -> dict[str, Any]:
    return {"@timestamp": datetime.now(UTC).isoformat(),
            "event": {"kind": "alert", "id": f"labels-{i}"},
            "message": f"alert {i}", "socd": socd}


def _label_values(text: str, name: str, label: str) -> set[str]:
    pattern = re.compile(rf'^{name}\{{.*?{label}="((?:[^"\\]|\\.)*)"', re.MULTILINE)
    return set(pattern.findall(text))


def test_alert_labels_stay_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOCD_ADV_TOKEN", TOKEN)
    port = free_port()
    config = {
        "state_dir": str(tmp_path / "state"),
        "log": {"format": "json"},
        "http": {"host": "127.0.0.1", "port": free_port()},
        "rules": {"paths": []},
        "collectors": {"hook": {"type": "webhook", "port": port,
                                "sources": {"ids": {"token": "${SOCD_ADV_TOKEN}"}}}},
        "sinks": {"out": {"type": "ndjson", "path": "out.ndjson",
                          "flush_interval_secs": 0.1}},
    }
    hostile = [_alert(i, asset_kind=f"kind-{i:03d}", unit=f"{i:03d}" + "đ" * 2048,
                      severity="high") for i in range(DISTINCT)]
    documented = [_alert(DISTINCT + i, asset_kind=kind, layer=3, severity="low")
                  for i, kind in enumerate(sorted(ASSET_KINDS))]
    socd = SocdProcess(config, tmp_path)
    socd.start()
    try:
        url = f"http://127.0.0.1:{port}/ingest/ids"
        for start in range(0, DISTINCT, 100):
            assert _post(url, hostile[start:start + 100]) == 202
        assert _post(url, documented) == 202
        total = DISTINCT + len(documented)
        wait_for(lambda: metric(socd.metrics(), "socd_alerts_total") >= total, 60,
                 f"{total} alerts counted")
        with urllib.request.urlopen(socd.url + "/metrics", timeout=10) as resp:
            text = resp.read().decode()
        socd.assert_running()
    finally:
        assert socd.stop() == 0

    kinds = _label_values(text, "socd_alerts_total", "asset_kind")
    assert kinds <= ASSET_KINDS | {"other"}, sorted(kinds)[:10]
    assert kinds >= ASSET_KINDS  # the documented values are still labels
    series = [line for line in text.splitlines() if line.startswith("socd_alerts_total{")]
    assert len(series) <= 4 * 4 * (len(ASSET_KINDS) + 1)
    layers = _label_values(text, "socd_alerts_total", "layer")
    assert layers <= {"1", "2", "3", "4"}
    assert "3" in layers
    units = _label_values(text, "socd_alerts_by_unit_total", "unit")
    assert len(units) <= 201
    assert max(len(u) for u in units) <= 128
