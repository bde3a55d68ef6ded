"""Dry-run blocks are marked everywhere and stay out of the feeds (issue 14, point 11).

A real ``socd run`` with three blocker sinks fed by the same rule: ``dry`` (dry_run),
``dryfeed`` (dry_run, ``edl.include_dry_run: true``) and ``live`` (enforcing); backend
``none``, so the EDL feeds are the enforcement a FortiGate would poll. Checked over the
real EDL listeners, ``/metrics`` and the ``socd block`` CLI run as a process.
"""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import free_port
from tests.helpers import SocdProcess, metric, wait_for

pytestmark = pytest.mark.e2e

EDL_TOKEN = "edl-dry-run-" + "t" * 20
RULES = """
rules:
  - id: dry-run-block
    title: {vi: "Thử nghiệm chặn", en: "block test"}
    severity: high
    actions:
      - block: {field: destination.address, ttl: 1h}
    match: {field: event.action, equals: dry-run-block}
"""
VALUES = {"ipv4": "198.51.100.20", "ipv6": "2001:db8:beef::20"}


def _edl(port: int, family: str) -> str:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/edl/{family}.txt",
                                     headers={"Authorization": f"Bearer {EDL_TOKEN}"})
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - loopback
        assert response.status == 200
        return str(response.read().decode())


def _cli(config: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "socd", "block", *argv, "-c", str(config)],
                          capture_output=True, text=True, timeout=60, check=False)


def _sink(path: str, port: int, *, dry_run: bool, **edl: Any) -> dict[str, Any]:
    return {"type": "blocker", "backend": "none", "dry_run": dry_run, "path": path,
            "select": "alerts", "expiry_interval_secs": 0.5,
            "edl": {"host": "127.0.0.1", "port": port, "token": EDL_TOKEN, **edl}}


def test_dry_run_marked_and_kept_out_of_feeds(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(RULES)
    events = tmp_path / "events.ndjson"
    events.write_bytes(b"".join(orjson.dumps({
        "@timestamp": "2026-11-16T01:00:00Z",
        "event": {"kind": "event", "action": "dry-run-block"},
        "destination": {"address": value}, "message": f"attack {i}"}) + b"\n"
        for i, value in enumerate(VALUES.values())))
    ports = {name: free_port() for name in ("dry", "dryfeed", "live")}
    config = {
        "state_dir": str(tmp_path / "state"),
        "log": {"format": "json"},
        "http": {"host": "127.0.0.1", "port": free_port()},
        "rules": {"paths": [str(tmp_path / "rules.yaml")]},
        "collectors": {"events": {"type": "file", "paths": [str(events)],
                                  "start_at": "beginning", "decoder": "json"}},
        "sinks": {"dry": _sink("dry.db", ports["dry"], dry_run=True),
                  "dryfeed": _sink("dryfeed.db", ports["dryfeed"], dry_run=True,
                                   include_dry_run=True),
                  "live": _sink("live.db", ports["live"], dry_run=False)},
    }
    socd = SocdProcess(config, tmp_path).start()
    try:
        def decided() -> dict[str, float] | None:
            m = socd.metrics()
            done = (metric(m, "socd_blocks_dry_run", sink="dry") == 2
                    and metric(m, "socd_blocks_dry_run", sink="dryfeed") == 2
                    and metric(m, "socd_blocks_active", sink="live") == 2)
            return m if done else None

        m = wait_for(decided, 30, "the three sinks to decide both blocks")
        # Metrics: a dry-run decision is not an active block.
        for family in ("ipv4", "ipv6"):
            assert metric(m, "socd_blocks_active", sink="dry", family=family) == 0
            assert metric(m, "socd_blocks_dry_run", sink="dry", family=family) == 1
            assert metric(m, "socd_blocks_active", sink="live", family=family) == 1
            assert metric(m, "socd_blocks_dry_run", sink="live", family=family) == 0
        # Feeds: a FortiGate polling the dry-run sink's EDL gets nothing to enforce.
        for family, value in VALUES.items():
            assert _edl(ports["dry"], family) == ""
            assert _edl(ports["dryfeed"], family) == value + "\n"
            assert _edl(ports["live"], family) == value + "\n"
    finally:
        assert socd.stop() == 0

    cfg = socd.config_path
    listed = _cli(cfg, "list", "--sink", "dry")
    assert listed.returncode == 0, listed.stderr
    rows = [line.split() for line in listed.stdout.splitlines()
            if line.startswith(("198.", "2001:"))]
    assert sorted((r[0], r[1]) for r in rows) == [(VALUES["ipv4"], "dry-run"),
                                                  (VALUES["ipv6"], "dry-run")]
    assert "2 decisions (2 dry-run: recorded only, not enforced nor in the feeds)" \
        in listed.stdout
    live = _cli(cfg, "list", "--sink", "live")
    assert sorted(line.split()[1] for line in live.stdout.splitlines()
                  if line.startswith(("198.", "2001:"))) == ["active", "active"]
    as_json = _cli(cfg, "list", "--sink", "dry", "--json")
    assert {(d["state"], d["dry_run"]) for d in map(orjson.loads, as_json.stdout.splitlines())} \
        == {("dry-run", True)}

    exported = _cli(cfg, "export", "--sink", "dry")
    assert (exported.returncode, exported.stdout) == (0, "")
    assert "2 dry-run decisions left out (--include-dry-run)" in exported.stderr
    exported = _cli(cfg, "export", "--sink", "dry", "--include-dry-run")
    assert exported.stdout == "".join(sorted(v + "\n" for v in VALUES.values()))
    assert _cli(cfg, "export", "--sink", "live").stdout == exported.stdout

    audit = _cli(cfg, "audit", "--sink", "dry")
    assert audit.stdout.count("(dry-run)") == 2
    added = _cli(cfg, "add", "203.0.113.99", "--reason", "test", "--sink", "dry")
    assert added.returncode == 0, added.stderr
    assert "[dry-run]" in added.stdout
    assert _cli(cfg, "export", "--sink", "dry", "--family", "4").stdout == ""
