"""Finding 11: one bad indicator never aborts a STIX or MISP import.

``socd ioc import`` runs as a real process on a real store. A bundle carries valid
indicators and hostile ones (3,000 nested parentheses, a pattern the STIX grammar
rejects, fields of the wrong JSON type); the valid ones are imported, each bad one is
listed with its reason, nothing prints a traceback, and the exit code is 0 (the file
was read; docs/ioc.md).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

DEPTH = 3000


def _indicator(n: int, pattern: str, **extra: Any) -> dict[str, Any]:
    return {"type": "indicator", "spec_version": "2.1", "id": f"indicator--{n:08d}",
            "created": "2026-11-10T00:00:00Z", "modified": "2026-11-10T00:00:00Z",
            "pattern_type": "stix", "valid_from": "2026-11-10T00:00:00Z",
            "pattern": pattern, **extra}


class Cli:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.config = tmp_path / "socd.yaml"
        self.config.write_text(f"state_dir: {tmp_path / 'state'}\n", encoding="utf-8")

    def __call__(self, *argv: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "SOCD_CONFIG"}
        return subprocess.run([sys.executable, "-m", "socd", *argv, "-c", str(self.config)],
                              env=env, capture_output=True, text=True, timeout=120,
                              check=False)

    def stored(self) -> set[tuple[str, str]]:
        done = self("ioc", "list", "--json", "--limit", "1000")
        assert done.returncode == 0, done.stderr
        return {(e["kind"], e["value"]) for e in map(orjson.loads, done.stdout.splitlines())}


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


def test_stix_bundle_with_a_hostile_pattern(cli: Cli) -> None:
    nested = "(" * DEPTH + "[ipv4-addr:value = '198.51.100.1']" + ")" * DEPTH
    bundle = {"type": "bundle", "id": "bundle--1", "objects": [
        _indicator(1, "[ipv4-addr:value = '203.0.113.10']"),
        _indicator(2, nested),
        _indicator(3, "[domain-name:value = 'c2.evil.example']"),
        _indicator(4, "[ipv4-addr:value = '203.0.113.11'"),  # unbalanced
        _indicator(5, "[file:hashes.MD5 = '44d88612fea8a8f36de82e1278abb02f']"),
        _indicator(6, "[ipv4-addr:value = '203.0.113.12']", labels=7),  # not a list
        _indicator(7, "[ipv6-addr:value = '2001:db8:bad::1']"),
    ]}
    path = cli.tmp / "bundle.json"
    path.write_bytes(orjson.dumps(bundle))
    done = cli("ioc", "import", str(path), "--format", "stix", "--source", "feed")
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 0, done.stderr
    assert "4 new" in done.stdout, done.stdout
    assert "3 rejected" in done.stdout, done.stdout
    lines = done.stdout.splitlines()

    def reason(n: int) -> str:
        return next(line for line in lines if f"indicator--{n:08d}" in line)

    assert "nested too deeply" in reason(2)
    assert "ends unexpectedly" in reason(4)
    assert "labels is not a list" in reason(6)
    assert cli.stored() == {("ip", "203.0.113.10"), ("domain", "c2.evil.example"),
                            ("hash", "44d88612fea8a8f36de82e1278abb02f"),
                            ("ip", "2001:db8:bad::1")}


def test_misp_event_with_hostile_attributes(cli: Cli) -> None:
    event = {"Event": {"info": "Công văn 1298/CATTT-NCSC", "Attribute": [
        {"type": "ip-dst", "value": "203.0.113.77", "to_ids": True},
        {"type": "ip-dst", "value": "203.0.113.78", "to_ids": True, "Tag": 5},
        {"type": "domain", "value": "update.bad.example", "to_ids": True},
        {"type": "ip-dst", "value": "203.0.113.79", "to_ids": True,
         "first_seen": {"not": "a date"}},
    ], "Object": [{"name": "x", "Attribute": 3},
                  {"name": "y", "Attribute": [{"type": "md5", "to_ids": True,
                                               "value": "44d88612fea8a8f36de82e1278abb02f"}]}]}}
    path = cli.tmp / "event.json"
    path.write_bytes(orjson.dumps(event))
    done = cli("ioc", "import", str(path), "--format", "misp", "--source", "misp")
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 0, done.stderr
    assert "3 new" in done.stdout, done.stdout
    assert "3 rejected" in done.stdout, done.stdout
    assert cli.stored() == {("ip", "203.0.113.77"), ("domain", "update.bad.example"),
                            ("hash", "44d88612fea8a8f36de82e1278abb02f")}
