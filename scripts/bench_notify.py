#!/usr/bin/env python3
"""Notification core benchmark; prints one JSON object.

* ``notify_routing``: 50,000 alerts of realistic shape (8 rules, 12 units, the four
  severities, source addresses from a pool so some repeat within the dedup
  window, IoC hits on some) go through :meth:`NotificationCore.write` in batches
  of 1,000 (the daemon's runner batch), with 5 routes (two with ``continue``),
  grouping on ``rule.id`` + ``socd.unit`` and dedup on. Measured: alerts/s of
  ``write`` including the durable SQLite transaction (WAL, synchronous=FULL) of
  every batch; then one flush of every due group (render + outbox), timed apart.
  Target: >= 10,000 alerts/s.

Options: ``--alerts N``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from socd import log, metrics  # noqa: E402
from socd.app.deadletter import DeadLetter  # noqa: E402
from socd.config import NotificationsConfig, NotifierConfig  # noqa: E402
from socd.notify.core import NotificationCore  # noqa: E402
from socd.plugins import Notification  # noqa: E402
from socd.severity import Severity  # noqa: E402

TARGET = 10_000
BATCH = 1000

RULES = [
    ("net-port-scan", "Dò quét cổng", 2, "network"),
    ("edr-server-malware", "Mã độc trên máy chủ", 2, "server"),
    ("edr-ws-malware", "Mã độc trên máy trạm", 1, "workstation"),
    ("auth-ssh-bruteforce", "Dò mật khẩu SSH", 2, "server"),
    ("ioc-c2-connection", "Kết nối tới máy chủ C&C", 4, "server"),
    ("mail-spam-outbreak", "Thư rác hàng loạt", 2, "application"),
    ("web-webshell", "Webshell trên máy chủ web", 2, "server"),
    ("2001219", "ET SCAN Potential SSH Scan", 2, "network"),
]
UNITS = ["Sở Y tế", "Sở Tài chính", "Sở Giáo dục và Đào tạo", "Sở Nội vụ", "UBND huyện A",
         "UBND huyện B", "Văn phòng UBND tỉnh", "Sở Xây dựng", "Sở Công Thương",
         "Sở Tư pháp", "Sở Khoa học và Công nghệ", "Trung tâm THDL"]
SEVERITIES = ["medium"] * 10 + ["high"] * 4 + ["critical"] + ["low"] * 5


def alerts(n: int, seed: int = 11) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        rule_id, name, layer, kind = RULES[rnd.randrange(len(RULES))]
        severity = rnd.choice(SEVERITIES)
        src = f"203.0.{rnd.randrange(8)}.{rnd.randrange(1, 255)}"
        socd: dict[str, Any] = {
            "severity": severity, "severity_label": Severity(severity).label, "layer": layer,
            "asset_kind": kind, "unit": rnd.choice(UNITS), "collector": "mqtt",
            "vendor_severity": "Cao"}
        if i % 20 == 0:
            socd["ioc"] = {"matched": True, "values": [src], "refs": ["941/CATTT-NCSC"]}
            socd["actions"] = {"notify": ["irt"]}
        out.append({
            "@timestamp": f"2026-11-16T01:{(i // 60) % 60:02d}:{i % 60:02d}.{i % 1000:03d}Z",
            "message": f"{name} ({src})",
            "event": {"kind": "alert", "hash": f"{i:016x}{seed:08x}", "module": "server_edr",
                      "category": ["malware"], "created": "2026-11-16T01:00:00Z"},
            "host": {"name": f"srv-{i % 40:02d}", "ip": [f"10.10.20.{i % 200 + 1}"]},
            "source": {"ip": src, "port": 40000 + i % 20000},
            "destination": {"ip": f"10.10.20.{i % 200 + 1}", "port": 22},
            "rule": {"id": rule_id, "name": name, "description": f"{name}: mô tả quy tắc."},
            "observer": {"type": "edr", "product": "EDR"},
            "tags": ["attack.t1046"] if i % 7 == 0 else [],
            "socd": socd,
        })
    return out


def _config() -> NotificationsConfig:
    return NotificationsConfig.model_validate({
        "grouping": {"group_by": ["rule.id", "socd.unit"], "group_wait_secs": 30,
                     "group_interval_secs": 300, "repeat_interval_secs": 14400},
        "routes": [
            {"name": "critical", "match": {"severity": ["critical"]},
             "notifiers": ["irt", "mail"], "continue": True},
            {"name": "ioc", "match": {"tags": ["irt"]}, "notifiers": ["irt"], "continue": True},
            {"name": "servers", "match": {"asset_kind": ["server"], "min_severity": "high"},
             "notifiers": ["mail"]},
            {"name": "scans", "match": {"rule": ["net-*", "2001*"]}, "notifiers": ["chat"]},
            {"name": "rest", "match": {"min_severity": "medium"}, "notifiers": ["mail"]},
        ]})


class _Null:
    def __init__(self, name: str) -> None:
        self.name = name

    async def start(self) -> None: ...

    async def healthcheck(self) -> None: ...

    async def send(self, notification: Notification) -> None: ...

    async def close(self) -> None: ...


async def _run(n: int) -> dict[str, Any]:
    data = alerts(n)
    batches = [data[i:i + BATCH] for i in range(0, n, BATCH)]
    with tempfile.TemporaryDirectory(prefix="socd-bench-notify-") as tmp:
        names = ("irt", "mail", "chat")
        core = NotificationCore(
            _config(), {m: _Null(m) for m in names},
            {m: NotifierConfig.model_validate({"type": "null"}) for m in names},
            path=os.path.join(tmp, "notify.db"), dead_letter=DeadLetter(tmp), run_tasks=False)
        await core.start()
        before = _outcomes()
        started = time.perf_counter()
        for batch in batches:
            await core.write(batch)
        elapsed = time.perf_counter() - started
        outcomes = {k: round(v - before[k]) for k, v in _outcomes().items()}
        assert core.store is not None
        pending = core.store.counts()["pending"]
        t = time.perf_counter()
        messages = await core.flush_due(time.time() + 3600)
        flush_secs = time.perf_counter() - t
        await core.close()
        size = await asyncio.to_thread(os.path.getsize, os.path.join(tmp, "notify.db"))
    rate = n / elapsed
    return {"benchmark": "notify_routing", "alerts": n, "batch": BATCH, "routes": 5,
            "seconds": round(elapsed, 3), "alerts_per_sec": round(rate),
            "outcomes": outcomes, "pending_rows": pending, "groups": len(core.groups),
            "flush_seconds": round(flush_secs, 3), "messages_queued": messages,
            "db_bytes": size, "target_alerts_per_sec": TARGET, "meets_target": rate >= TARGET,
            "cpus": os.cpu_count()}


def _outcomes() -> dict[str, float]:
    return {o: metrics.REGISTRY.get_sample_value("socd_notification_alerts_total",
                                                 {"outcome": o}) or 0.0
            for o in ("routed", "unrouted", "deduplicated", "deferred_quiet")}


def notify_routing(n: int = 50_000) -> dict[str, Any]:
    log.setup("warning")
    return asyncio.run(_run(n))


BENCHMARKS = {"notify_routing": notify_routing}

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=50_000)
    args = parser.parse_args()
    print(json.dumps(notify_routing(args.alerts)))
