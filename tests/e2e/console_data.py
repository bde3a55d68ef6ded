"""Realistic alerts for the console's browser tests and its benchmark (issue 19).

The alerts are the bundled sample week (``socd/default/sample``: server EDR,
workstation EDR, IDS and syslog) decoded and classified by the real decoders, the
shipped rule pack and the sample IoC list, exactly as ``socd replay --alerts-only``
writes them. :func:`varied_alerts` derives any number of distinct alerts from them
(new time, id, host, addresses and owning agency), so a million-alert store has the
shapes, field sizes and severity mix of real traffic rather than one repeated row.
"""

from __future__ import annotations

import io
import random
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import orjson

from socd.event import Event, fingerprint

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "socd/default/sample"
# (decoder of the embedded default config, sample file)
SAMPLE_FILES = (("server_edr", "server-edr.ndjson"), ("workstation_edr", "workstation-edr.ndjson"),
                ("ids_ecs", "ids.ndjson"), ("json", "syslog.ndjson"))
UNITS = ("Sở Y tế", "Sở Tài chính", "Sở Giáo dục và Đào tạo", "Sở Tài nguyên và Môi trường",
         "Sở Nội vụ", "Sở Tư pháp", "Sở Xây dựng", "Sở Công Thương", "Văn phòng UBND tỉnh",
         "Trung tâm Tích hợp dữ liệu", "UBND thành phố Quy Nhơn", "UBND huyện Tuy Phước",
         "UBND thị xã An Nhơn", "Bảo hiểm xã hội tỉnh", "Sở Giao thông vận tải",
         "Sở Lao động - Thương binh và Xã hội")
STATUSES = ("new",) * 6 + ("acknowledged", "acknowledged", "false_positive", "resolved")


@cache
def _sample_docs() -> tuple[bytes, ...]:
    """The sample's alerts as JSON (computed once per process: ~1 s)."""
    from socd import config as config_mod
    from socd.app.components import build_classifier, build_decoders
    from socd.app.deadletter import DeadLetter
    from socd.app.replay import replay

    # The embedded default explicitly: $SOCD_CONFIG or /etc/socd must not change the data.
    cfg = config_mod.load(REPO / "socd/default/config.yaml")
    docs: list[bytes] = []
    with tempfile.TemporaryDirectory(prefix="socd-console-data-") as tmp:
        dead = DeadLetter(tmp)
        decoders = build_decoders(cfg, dead)
        classifier = build_classifier(cfg)
        for decoder, name in SAMPLE_FILES:
            out = io.BytesIO()
            replay([str(SAMPLE / name)], decoders[decoder], classifier, out, alerts_only=True)
            docs += [line for line in out.getvalue().splitlines() if line]
        dead.close()
    return tuple(docs)


def sample_alerts() -> list[Event]:
    """Fresh copies of the sample's alerts (about 3,200), as the pipeline stores them."""
    return [orjson.loads(doc) for doc in _sample_docs()]


def _vary(event: Event, i: int, rnd: random.Random, start: datetime, span_secs: int,
          run: str) -> Event:
    ts = start + timedelta(seconds=rnd.randrange(span_secs), milliseconds=rnd.randrange(1000))
    event["@timestamp"] = ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    ev = event["event"]
    ev["hash"] = fingerprint("console-bench", run, str(i))
    ev["id"] = f"{ev.get('id', 'alert')}-{i}"
    socd = event.setdefault("socd", {})
    socd["unit"] = UNITS[rnd.randrange(len(UNITS))]
    socd["correlation_id"] = ev["hash"]
    socd["alert"] = {"status": STATUSES[rnd.randrange(len(STATUSES))]}
    host = event.get("host")
    if isinstance(host, dict) and "name" in host:
        host["name"] = f"{host['name']}-{rnd.randrange(400):03d}"
    for side in ("source", "destination"):
        node = event.get(side)
        if isinstance(node, dict) and isinstance(node.get("ip"), str) and ":" not in node["ip"]:
            head = node["ip"].rsplit(".", 1)[0]
            node["ip"] = f"{head}.{rnd.randrange(1, 255)}"
            if "address" in node:
                node["address"] = node["ip"]
    return event


def varied_alerts(n: int, *, seed: int = 20261206, run: str = "bench",
                  start: datetime = datetime(2026, 9, 1, tzinfo=UTC),
                  days: int = 90) -> Iterator[Event]:
    """``n`` distinct alerts derived from the sample's (see the module docstring); the
    same ``seed`` and ``run`` give the same alerts. Their time spreads over ``days``
    from ``start``, their unit over :data:`UNITS`, their status over the lifecycle."""
    docs = _sample_docs()
    rnd = random.Random(seed)
    span = days * 86400
    for i in range(n):
        yield _vary(orjson.loads(docs[rnd.randrange(len(docs))]), i, rnd, start, span, run)


def as_json(event: Event) -> dict[str, Any]:
    """A plain copy of an event (for assertions that must not share its dicts)."""
    copy: dict[str, Any] = orjson.loads(orjson.dumps(event))
    return copy
