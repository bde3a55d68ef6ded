"""The Elasticsearch sink against a real Elasticsearch (see `make services`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from socd.alerting.elasticsearch import ElasticsearchSink
from socd.deadletter import DeadLetter
from socd.errors import SinkError
from socd.event import fingerprint, normalize, set_severity
from socd.plugins import PluginContext
from socd.severity import Severity
from tests.helpers import es_client, es_count

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _event(i: int, run: str) -> dict[str, Any]:
    event: dict[str, Any] = {
        "@timestamp": f"2026-11-16T0{i % 2}:00:{i % 60:02d}+07:00",
        "event": {"kind": "alert", "id": f"{run}-{i}", "hash": fingerprint(run, str(i))},
        "host": {"name": f"srv-{i % 5}", "ip": "10.10.20.11"},
        "source": {"ip": "203.0.113.9", "port": 40000 + i},
        "socd": {"layer": 2, "asset_kind": "server", "vendor_severity": "Cao",
                 "collector": "test"},
        "message": "Phát hiện tiến trình đáng ngờ",
    }
    set_severity(event, Severity.HIGH)
    return normalize(event)


@pytest.fixture
async def sink(services, unique, tmp_path: Path):
    dead = DeadLetter(str(tmp_path / "dl"))
    config = ElasticsearchSink.Config(type="elasticsearch", hosts=[services["ES_URL"]],
                                      index_prefix=f"socd-it-{unique}", refresh=True,
                                      bulk_max_bytes=64 * 1024)
    s = ElasticsearchSink(config, PluginContext(name="es", dead_letter=dead))
    await s.start()
    yield s
    await s.close()
    dead.close()
    es = es_client(services)
    es.indices.delete(index=f"socd-it-{unique}-*", allow_no_indices=True)
    es.indices.delete_index_template(name=f"socd-it-{unique}")
    es.close()


async def test_healthcheck_reports_version(sink):
    await sink.healthcheck()


async def test_unreachable_server_fails_the_healthcheck_and_retries_writes(tmp_path: Path):
    dead = DeadLetter(str(tmp_path))
    config = ElasticsearchSink.Config(type="elasticsearch", hosts=["http://127.0.0.1:9"],
                                      request_timeout_secs=2)
    s = ElasticsearchSink(config, PluginContext(name="down", dead_letter=dead))
    await s.start()
    from socd.errors import HealthCheckError

    with pytest.raises(HealthCheckError):
        await s.healthcheck()
    with pytest.raises(SinkError) as info:
        await s.write([_event(0, "x")])
    assert info.value.retryable
    await s.close()


async def test_writes_are_idempotent_and_split_into_bounded_bulks(sink, services, unique):
    events = [_event(i, unique) for i in range(2000)]  # ~1 MB: many 64 KiB bulks
    await sink.write(events)
    await sink.write(events[:700])  # a retry after a timeout: no duplicates
    es = es_client(services)
    assert es_count(es, f"socd-it-{unique}-*") == 2000
    # Event day in UTC picks the index: 00:xx+07:00 and 01:xx+07:00 are the 15th UTC.
    assert list(es.indices.get(index=f"socd-it-{unique}-*")) == [f"socd-it-{unique}-2026.11.15"]
    doc = es.search(index=f"socd-it-{unique}-*", query={"term": {"event.id": f"{unique}-7"}})
    src = doc["hits"]["hits"][0]["_source"]
    assert src["socd"]["severity_label"] == "cao"
    assert doc["hits"]["hits"][0]["_id"] == events[7]["event"]["hash"]
    es.close()


async def test_rejected_documents_are_dead_lettered_once_and_the_rest_stored(
        sink, services, unique, tmp_path: Path):
    events = [_event(i, unique) for i in range(10)]
    events[3]["source"]["port"] = {"not": "a number"}  # mapping conflict: 400 for this item
    await sink.write(events)
    await sink.write(events)  # retried batch: not dead-lettered twice
    es = es_client(services)
    assert es_count(es, f"socd-it-{unique}-*") == 9
    es.close()
    lines = (tmp_path / "dl" / "dead-letter.ndjson").read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    assert len(entries) == 1
    assert entries[0]["reason"] == "rejected_document"
    assert entries[0]["event"]["event"]["id"] == f"{unique}-3"
    assert "mapper_parsing_exception" in entries[0]["detail"] or "400" in entries[0]["detail"]
