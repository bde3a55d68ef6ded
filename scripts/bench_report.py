#!/usr/bin/env python3
"""Benchmark: a monthly report over 200,000 alerts in the embedded store.

The alerts (30 days of November 2026, fixed seed: severities, asset kinds, 12 units,
300 rules, 2,000 hosts) are written once to a temporary store. Timed: gathering the
numbers (``build_report``: four grouped queries over the month and one over the
month before) and rendering each format (md, html with its three charts, pdf, xlsx).
Target: the numbers in <= 2 s, every format in <= 10 s in all.
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from socd.alerts.store import AlertStore  # noqa: E402
from socd.event import fingerprint, normalize, set_severity  # noqa: E402
from socd.reports.data import StoreBackend, build_report  # noqa: E402
from socd.reports.periods import period_for  # noqa: E402
from socd.reports.render import render  # noqa: E402
from socd.severity import Severity  # noqa: E402

TARGET_DATA, TARGET_ALL = 2.0, 10.0


def _events(n: int) -> list[dict[str, Any]]:
    rnd = random.Random(20261101)
    start = datetime(2026, 10, 31, 17, 0, tzinfo=UTC)
    sevs = list(Severity)
    kinds = ["server", "workstation", "network", "unknown"]
    units = [f"Đơn vị {i:02d}" for i in range(12)]
    out = []
    for i in range(n):
        rule = rnd.randrange(300)
        event: dict[str, Any] = {
            "@timestamp": (start + timedelta(seconds=rnd.randrange(30 * 86400))).isoformat(),
            "event": {"kind": "alert", "hash": fingerprint("bench", str(i))},
            "rule": {"id": f"R{rule:03d}", "name": f"Luật phát hiện số {rule}"},
            "host": {"name": f"host-{rnd.randrange(2000):04d}"},
            "socd": {"asset_kind": rnd.choice(kinds), "unit": rnd.choice(units), "layer": 2,
                     "alert": {"status": rnd.choice(["new", "new", "acknowledged",
                                                     "resolved", "false_positive"])}},
        }
        set_severity(event, rnd.choice(sevs))
        out.append(normalize(event))
    return out


def report_monthly_200k(alerts: int = 200_000) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        store = AlertStore(str(Path(tmp) / "alerts.db"))
        events = _events(alerts)
        for i in range(0, len(events), 20_000):
            store.insert(events[i:i + 20_000])
        store.close()
        backend = StoreBackend.open(str(Path(tmp) / "alerts.db"))
        started = time.perf_counter()
        data = build_report(backend, period_for("monthly", "01/11/2026"))
        gathered = time.perf_counter() - started
        backend.close()
        formats: dict[str, float] = {}
        sizes: dict[str, int] = {}
        for fmt in ("md", "html", "pdf", "xlsx"):
            t0 = time.perf_counter()
            sizes[fmt] = len(render(data, fmt))
            formats[fmt] = round(time.perf_counter() - t0, 3)
    total = gathered + sum(formats.values())
    return {"benchmark": "report_monthly_200k", "alerts": alerts, "counted": data.total,
            "data_seconds": round(gathered, 3), "render_seconds": formats,
            "bytes": sizes, "total_seconds": round(total, 3),
            "target_seconds": {"data": TARGET_DATA, "all": TARGET_ALL},
            "meets_target": gathered <= TARGET_DATA and total <= TARGET_ALL}


BENCHMARKS = {"report_monthly_200k": report_monthly_200k}
