"""Alerts for the console's tests: real events as classification leaves them, stored
through :meth:`socd.alerts.store.AlertStore.insert` (and indexed in Elasticsearch by the
parity test), with hostile text where the console must show it inert."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

# What an attacker controls in an event: the host name, the command line, a rule text
# (a vendor's threat name), the message.
XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'

BASE = datetime(2026, 11, 16, 1, 0, tzinfo=UTC)
SEVERITIES = ("low", "medium", "high", "critical")
UNITS = ("Sở Y tế", "Sở Tài chính", "UBND huyện Tuy Phước")


def alert(i: int, *, severity: str | None = None, unit: str | None = None,
          status: str = "new", host: str | None = None, rule: str | None = None,
          layer: int | None = None, asset_kind: str | None = None,
          source_ip: str | None = None, minutes: int | None = None,
          extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Alert ``i``: its fields cycle through severities, units, layers and asset kinds
    unless given; alert ``i`` is ``i`` minutes after :data:`BASE` (two alerts share a
    minute when ``minutes`` says so: the pages must break ties by id)."""
    ts = BASE + timedelta(minutes=i if minutes is None else minutes)
    event: dict[str, Any] = {
        "@timestamp": ts.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "event": {"hash": hashlib.sha1(f"alert-{i}".encode()).hexdigest(), "kind": "alert",
                  "module": "edr", "original": f"raw line {i} {XSS}"},
        "socd": {"severity": severity or SEVERITIES[i % 4], "unit": unit or UNITS[i % 3],
                 "layer": layer or (i % 4) + 1,
                 "asset_kind": asset_kind or ("server" if i % 2 else "workstation"),
                 "alert": {"status": status}},
        "rule": {"id": rule or f"socd-{i % 5}", "name": f"Rule {i % 5}",
                 "description": f"Mô tả luật {i % 5}"},
        "host": {"name": host or f"host-{i % 7}"},
        "source": {"ip": source_ip or f"203.0.113.{i % 50 + 1}", "port": 40000 + i},
        "destination": {"ip": "10.10.0.5", "port": 443},
        "message": f"alert {i}",
    }
    if extra:
        event.update(extra)
    return event


def alerts(n: int) -> list[dict[str, Any]]:
    return [alert(i) for i in range(n)]
