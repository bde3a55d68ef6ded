"""Finding 3: inputs cannot write socd's own fields (``socd.*`` belongs to socd).

A real ``socd run`` with the webhook collector (ECS ``json`` decoder), the alert store,
an NDJSON sink and a blocker sink that records decisions (``backend: none``, IoC hits
blocked). Events posted with a valid token carry ``socd.actions.block`` (a 30-day block
with a letter reference), ``socd.ioc`` (a forged IoC hit), ``socd.alert.status:
false_positive`` and other socd-owned keys, nested and as dotted keys. Nothing of that
may reach a sink: no block decision and no audit row for the forged values, the alerts
are stored with status ``new``, and every stripped key is counted. Five genuine SSH
failures posted afterwards still make the shipped ``ssh-bruteforce`` rule block their
source, with the rule as the origin: the engine's own actions are honoured.
"""

from __future__ import annotations

import sqlite3
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import free_port
from tests.helpers import SocdProcess, metric, wait_for

pytestmark = pytest.mark.timeout(180)

TOKEN = "adv-namespace-token-0123456789abcdef"
FORGED = ("198.51.100.77", "198.51.100.78", "198.51.100.79", "198.51.100.80")
ATTACKER = "203.0.113.50"


def _post(url: str, records: list[dict[str, Any]]) -> int:
    body = b"\n".join(orjson.dumps(r) for r in records)
    req = urllib.request.Request(url, data=body, method="POST", headers={
        "Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-ndjson"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _forged() -> list[dict[str, Any]]:
    nested = {
        "@timestamp": _now(),
        "event": {"kind": "alert", "module": "vendor"},
        "message": "forged-nested",
        "source": {"ip": "192.0.2.10"},
        "rule": {"id": "vendor-1", "name": "Forged order"},
        "socd": {
            "severity": "critical",
            "actions": {"block": [{"value": FORGED[0], "ttl_secs": 2592000,
                                   "reason": "công văn", "ref": "941/CATTT-NCSC",
                                   "origin": "ssh-bruteforce"}],
                        "notify": ["irt"]},
            "ioc": {"matched": True, "values": [FORGED[1]], "refs": ["941/CATTT-NCSC"]},
            "alert": {"status": "false_positive", "assignee": "mallory"},
            "rule": {"count": 99},
            "collector": "trusted-collector",
            "transport": {"authenticated": True},
        },
    }
    dotted = {
        "@timestamp": _now(),
        "event.kind": "alert",
        "message": "forged-dotted",
        "source.ip": "192.0.2.11",
        "socd.severity": "high",
        "socd.actions.block": [{"value": FORGED[2], "ttl_secs": 2592000}],
        "socd.ioc.matched": True,
        "socd.ioc.values": [FORGED[3]],
        "socd.alert.status": "false_positive",
    }
    return [nested, dotted]


def _ssh_failures() -> list[dict[str, Any]]:
    return [{
        "@timestamp": _now(),
        "event": {"kind": "event", "module": "system", "dataset": "system.auth",
                  "category": ["authentication"], "action": "ssh_login",
                  "outcome": "failure"},
        "user": {"name": "root"}, "host": {"name": "srv-dvc-01"},
        "source": {"ip": ATTACKER}, "message": f"Failed password for root ({i})",
    } for i in range(5)]


def _rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return list(conn.execute(sql))
    except sqlite3.OperationalError:
        return []  # the sink has not created its tables yet
    finally:
        conn.close()


def test_inputs_cannot_write_socd_fields(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                         ) -> None:
    monkeypatch.setenv("SOCD_ADV_TOKEN", TOKEN)
    port = free_port()
    state = tmp_path / "state"
    config = {
        "state_dir": str(state),
        "log": {"format": "json"},
        "http": {"host": "127.0.0.1", "port": free_port()},
        "collectors": {"hook": {"type": "webhook", "port": port,
                                "sources": {"ids": {"token": "${SOCD_ADV_TOKEN}"}}}},
        "sinks": {
            "store": {"type": "sqlite", "path": "alerts.db"},
            "out": {"type": "ndjson", "path": "out.ndjson", "select": "all",
                    "flush_interval_secs": 0.1},
            "block": {"type": "blocker", "backend": "none", "block_ioc_hits": True,
                      "path": "blocks.db"},
        },
    }
    socd = SocdProcess(config, tmp_path)
    socd.start()
    url = f"http://127.0.0.1:{port}/ingest/ids"
    blocks = state / "blocks.db"
    try:
        assert _post(url, _forged()) == 202
        assert _post(url, _ssh_failures()) == 202
        # The genuine brute force is decided: everything posted before it was seen too.
        wait_for(lambda: _rows(blocks, f"SELECT origin FROM decisions WHERE value = "
                               f"'{ATTACKER}'"), 60, "the ssh-bruteforce block decision")
        out = state / "out.ndjson"
        wait_for(lambda: out.exists() and out.read_bytes().count(b"forged-") >= 2, 30,
                 "the forged events in the NDJSON sink")
        socd.assert_running()
        metrics = socd.metrics()
    finally:
        assert socd.stop() == 0

    decisions = _rows(blocks, "SELECT value, origin FROM decisions")
    assert decisions == [(ATTACKER, "ssh-bruteforce")]
    audited = {row[0] for row in _rows(blocks, "SELECT value FROM audit")}
    assert audited == {ATTACKER}, f"forged values reached the block audit: {audited}"

    stored = _rows(state / "alerts.db", "SELECT status, severity, doc FROM alerts")
    forged = [(s, sev, orjson.loads(doc)) for s, sev, doc in stored if b"forged-" in
              (doc if isinstance(doc, bytes) else doc.encode())]
    assert len(forged) == 2
    for status, severity, doc in forged:
        assert status == "new", doc
        assert severity in ("critical", "high")  # the documented input field is kept
        socd_doc = doc["socd"]
        assert socd_doc["alert"] == {"status": "new"}
        assert socd_doc["collector"] == "hook"
        for key in ("actions", "ioc", "rule", "transport"):
            assert key not in socd_doc, (key, socd_doc)
        assert "ioc" not in doc.get("tags", [])

    stripped = {field: metric(metrics, "socd_input_fields_stripped_total", decoder="json",
                              field=field) for field in ("actions", "ioc", "alert")}
    assert stripped == {"actions": 2, "ioc": 2, "alert": 2}
    assert metric(metrics, "socd_input_fields_stripped_total", decoder="json") >= 9
    assert metric(metrics, "socd_block_decisions_total", action="add") == 1
