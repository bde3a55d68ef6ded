"""`socd alert` against a real Elasticsearch (see `make services`): the store and the
Elasticsearch documents written by the real sinks follow every lifecycle change."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from socd.alerting.elasticsearch import ElasticsearchSink
from socd.alerting.sqlite import SqliteSink
from socd.app.deadletter import DeadLetter
from socd.cli import main
from socd.event import Event, fingerprint, normalize, set_severity
from socd.plugins import PluginContext
from socd.severity import Severity
from tests.conftest import free_port
from tests.helpers import es_cleanup, es_client

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def _alert(i: int, run: str) -> Event:
    event: Event = {
        "@timestamp": f"2026-11-16T08:0{i}:00+07:00",
        "event": {"kind": "alert", "id": f"{run}-{i}", "hash": fingerprint(run, str(i))},
        "host": {"name": f"srv-{i}", "ip": "10.10.20.11"},
        "source": {"ip": "203.0.113.9", "port": 40000 + i},
        "rule": {"id": "2001219", "name": "ET SCAN Potential SSH Scan"},
        "socd": {"layer": 2, "asset_kind": "server", "unit": "Sở Y tế", "collector": "test",
                 "alert": {"status": "new"}},
        "message": "Quét SSH",
    }
    set_severity(event, Severity.HIGH)
    return normalize(event)


def _config(path: Path, state: Path, es_url: str, prefix: str) -> str:
    doc: dict[str, Any] = {
        "state_dir": str(state),
        "sinks": {"store": {"type": "sqlite"},
                  "es": {"type": "elasticsearch", "hosts": [es_url], "index_prefix": prefix,
                         "refresh": True, "request_timeout_secs": 5}},
    }
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return str(path)


class Sinks:
    """The real sqlite and elasticsearch sinks of the config, as the daemon runs them."""

    def __init__(self, es_url: str, prefix: str, state: Path) -> None:
        self.dead = DeadLetter(str(state / "dead-letter"))
        self.sqlite = SqliteSink(SqliteSink.Config(type="sqlite"),
                                 PluginContext(name="store", dead_letter=self.dead,
                                               state_dir=str(state)))
        self.es = ElasticsearchSink(
            ElasticsearchSink.Config(type="elasticsearch", hosts=[es_url], index_prefix=prefix,
                                     refresh=True),
            PluginContext(name="es", dead_letter=self.dead, state_dir=str(state)))

    async def start(self) -> None:
        await self.sqlite.start()
        await self.es.start()

    async def close(self) -> None:
        await self.sqlite.close()
        await self.es.close()
        self.dead.close()


@pytest.fixture
async def setup(services: dict[str, Any], unique: str, tmp_path: Path):
    prefix = f"socd-it-alert-{unique}"
    state = tmp_path / "state"
    sinks = Sinks(services["ES_URL"], prefix, state)
    await sinks.start()
    cfg = _config(tmp_path / "socd.yaml", state, services["ES_URL"], prefix)
    yield sinks, cfg, prefix
    await sinks.close()
    es = es_client(services)
    es_cleanup(es, prefix)
    es.close()


def _doc(services: dict[str, Any], prefix: str, alert_id: str) -> dict[str, Any]:
    es = es_client(services)
    try:
        hits = es.search(index=f"{prefix}-*", query={"ids": {"values": [alert_id]}})["hits"]
        assert hits["total"]["value"] == 1, hits
        return dict(hits["hits"][0]["_source"])
    finally:
        es.close()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


async def test_lifecycle_reaches_elasticsearch(setup, services, unique,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    sinks, cfg, prefix = setup
    events = [_alert(i, unique) for i in range(3)]
    await sinks.sqlite.write(events)
    await sinks.es.write(events)
    ids = [e["event"]["hash"] for e in events]
    assert _doc(services, prefix, ids[0])["socd"]["alert"] == {"status": "new"}

    code, out, err = run(capsys, "alert", "ack", ids[0][:8], "--by", "an",
                         "--note", "đang xác minh", "-c", cfg)
    assert (code, err) == (0, "")
    assert "elasticsearch sink es: updated" in out
    lifecycle = _doc(services, prefix, ids[0])["socd"]["alert"]
    stored = sinks.sqlite.store.get(ids[0])
    assert lifecycle == {"status": "acknowledged", "assignee": "an", "updated_by": "an",
                         "note": "đang xác minh", "updated": stored.status_at}

    code, out, err = run(capsys, "alert", "false-positive", ids[0][:8], "--by", "bình",
                         "--note", "máy quét của Sở", "-c", cfg)
    assert (code, err) == (0, "")
    lifecycle = _doc(services, prefix, ids[0])["socd"]["alert"]
    assert (lifecycle["status"], lifecycle["assignee"], lifecycle["updated_by"],
            lifecycle["note"]) == ("false_positive", "an", "bình", "máy quét của Sở")

    # The same command again: nothing changes in the store, Elasticsearch is up to date.
    code, out, _ = run(capsys, "alert", "false-positive", ids[0][:8], "--by", "bình",
                       "-c", cfg)
    assert code == 0
    assert "nothing changed" in out
    assert "es: already up to date" in out

    code, _, _ = run(capsys, "alert", "assign", ids[1][:8], "--to", "chi", "--by", "an",
                     "-c", cfg)
    assert code == 0
    assert _doc(services, prefix, ids[1])["socd"]["alert"]["assignee"] == "chi"
    assert _doc(services, prefix, ids[2])["socd"]["alert"] == {"status": "new"}  # untouched

    # A retried bulk of the same alerts never resets what the CLI set (create, 409).
    await sinks.es.write(events)
    await sinks.sqlite.write(events)
    assert _doc(services, prefix, ids[0])["socd"]["alert"]["status"] == "false_positive"
    assert sinks.sqlite.store.get(ids[0]).status == "false_positive"

    # The template maps the lifecycle fields from socd.event.FIELDS.
    es = es_client(services)
    try:
        mapping = next(iter(es.indices.get_mapping(index=f"{prefix}-*").values()))
    finally:
        es.close()
    props = mapping["mappings"]["properties"]["socd"]["properties"]["alert"]["properties"]
    assert {k: v["type"] for k, v in props.items()} == {
        "status": "keyword", "assignee": "keyword", "updated": "date",
        "updated_by": "keyword", "note": "text"}


async def test_alert_not_indexed_yet_is_repaired_by_a_rerun(
        setup, services, unique, capsys: pytest.CaptureFixture[str]) -> None:
    sinks, cfg, prefix = setup
    events = [_alert(i, unique) for i in range(2)]
    await sinks.sqlite.write(events)
    await sinks.es.write(events[1:])  # the first alert is not in Elasticsearch yet
    alert_id = events[0]["event"]["hash"]

    code, out, err = run(capsys, "alert", "resolve", alert_id, "--by", "an", "-c", cfg)
    assert code == 1
    assert "-> resolved (đã xử lý)" in out
    assert "Elasticsearch (sink es) was NOT updated: no document in" in err
    assert "hint: run the same command again" in err
    assert sinks.sqlite.store.get(alert_id).status == "resolved"

    await sinks.es.write(events[:1])  # it arrives, still "new"
    code, out, err = run(capsys, "alert", "resolve", alert_id, "--by", "an", "-c", cfg)
    assert (code, err) == (0, "")
    assert "nothing changed" in out
    assert "elasticsearch sink es: updated" in out
    lifecycle = _doc(services, prefix, alert_id)["socd"]["alert"]
    assert (lifecycle["status"], lifecycle["updated_by"]) == ("resolved", "an")


def test_elasticsearch_down_still_updates_the_store(tmp_path: Path, unique: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from socd.alerts.store import AlertStore

    state = tmp_path / "state"
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    cfg = _config(tmp_path / "socd.yaml", state, closed, f"socd-it-alert-{unique}")
    store = AlertStore(str(state / "alerts.db"))
    store.insert([_alert(0, unique)])
    store.close()
    alert_id = _alert(0, unique)["event"]["hash"]

    code, out, err = run(capsys, "alert", "ack", alert_id[:10], "--by", "an", "-c", cfg)
    assert code == 1
    assert "new (mới) -> acknowledged (đã tiếp nhận), by an" in out
    assert "Elasticsearch (sink es) was NOT updated: unreachable" in err
    assert "The alert store was updated." in err
    assert "hint: run the same command again once Elasticsearch is reachable" in err
    store = AlertStore(str(state / "alerts.db"))
    try:
        row = store.get(alert_id)
        assert row is not None
        assert (row.status, row.assignee) == ("acknowledged", "an")
        assert [h.action for h in store.history(alert_id)] == ["ack"]
    finally:
        store.close()
