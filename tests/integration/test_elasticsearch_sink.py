"""The Elasticsearch sink against a real Elasticsearch (see `make services`).

The test server is the minimal distribution without X-Pack, so it has no ILM:
these tests cover the path where socd enforces retention itself; the ILM path is
covered in tests/unit/test_elasticsearch_template.py.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch
from structlog.testing import capture_logs

from socd import __version__
from socd.alerting.elasticsearch import ElasticsearchSink
from socd.app.deadletter import DeadLetter
from socd.errors import HealthCheckError, SinkError
from socd.event import fingerprint, normalize, set_severity
from socd.plugins import PluginContext
from socd.severity import Severity
from tests.helpers import TcpProxy, es_cleanup, es_client, es_count

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


cleanup = es_cleanup


async def eventually(predicate: Callable[[], Any], within: float, what: str) -> Any:
    """Like tests.helpers.wait_for, but lets the sink's own tasks run meanwhile."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {within}s waiting for {what}")


def _dead_letters(path: Path) -> list[dict[str, Any]]:
    file = path / "dead-letter.ndjson"
    if not file.exists():
        return []
    return [json.loads(line) for line in file.read_text().splitlines()]


@pytest.fixture
def prefix(services, unique):
    prefix = f"socd-it-{unique}"
    yield prefix
    es = es_client(services)
    cleanup(es, prefix)
    es.close()


@pytest.fixture
async def make_sink(services, prefix: str, tmp_path: Path):
    """Factory of started sinks on ``prefix``, closed after the test."""
    started: list[tuple[ElasticsearchSink, DeadLetter]] = []

    async def make(name: str = "es", **options: Any) -> ElasticsearchSink:
        dead = DeadLetter(str(tmp_path / "dl"))
        options = {"hosts": [services["ES_URL"]], "index_prefix": prefix, "refresh": True,
                   "bulk_max_bytes": 64 * 1024, **options}
        config = ElasticsearchSink.Config(type="elasticsearch", **options)
        s = ElasticsearchSink(config, PluginContext(name=name, dead_letter=dead))
        started.append((s, dead))
        await s.start()
        return s

    yield make
    for s, dead in started:
        await s.close()
        dead.close()


@pytest.fixture
async def sink(make_sink):
    return await make_sink()


async def test_healthcheck_reports_version(sink):
    await sink.healthcheck()


async def test_unreachable_server_fails_the_healthcheck_and_retries_writes(tmp_path: Path):
    dead = DeadLetter(str(tmp_path))
    config = ElasticsearchSink.Config(type="elasticsearch", hosts=["http://127.0.0.1:9"],
                                      request_timeout_secs=2)
    s = ElasticsearchSink(config, PluginContext(name="down", dead_letter=dead))
    await s.start()
    with pytest.raises(HealthCheckError, match="unreachable"):
        await s.healthcheck()
    with pytest.raises(SinkError) as info:
        await s.write([_event(0, "x")])
    assert info.value.retryable
    await s.close()


async def test_writes_are_idempotent_and_split_into_bounded_bulks(sink, services, prefix, unique):
    events = [_event(i, unique) for i in range(2000)]  # ~1 MB: many 64 KiB bulks
    await sink.write(events)
    await sink.write(events[:700])  # a retry after a timeout: no duplicates
    es = es_client(services)
    assert es_count(es, f"{prefix}-*") == 2000
    # Event day in UTC picks the index: 00:xx+07:00 and 01:xx+07:00 are the 15th UTC.
    assert list(es.indices.get(index=f"{prefix}-*")) == [f"{prefix}-2026.11.15"]
    doc = es.search(index=f"{prefix}-*", query={"term": {"event.id": f"{unique}-7"}})
    src = doc["hits"]["hits"][0]["_source"]
    assert src["socd"]["severity_label"] == "cao"
    assert doc["hits"]["hits"][0]["_id"] == events[7]["event"]["hash"]
    # The index got its mapping from the component templates.
    mapping = es.indices.get_mapping(index=f"{prefix}-2026.11.15")[f"{prefix}-2026.11.15"]
    props = mapping["mappings"]["properties"]
    assert props["event"]["properties"]["hash"]["type"] == "keyword"
    assert props["source"]["properties"]["ip"]["type"] == "ip"
    es.close()


async def test_large_batches_are_sent_as_concurrent_bulks(make_sink, services, prefix, unique):
    sink = await make_sink(bulk_max_bytes=8 * 1024 * 1024, bulk_concurrency=4)
    events = [_event(i, unique) for i in range(3000)]  # ~2 MB: four parts
    assert len(sink._split([1000] * 3000)) == 4
    await sink.write(events)
    await sink.write(events)
    es = es_client(services)
    assert es_count(es, f"{prefix}-*") == 3000
    es.close()


async def test_templates_are_installed_and_upgrades_are_logged(make_sink, services, prefix):
    with capture_logs() as logs:
        first = await make_sink()
    assert first.ilm is False  # the test server has no ILM: socd enforces retention
    assert [e["event"] for e in logs if e["event"].startswith("index templates")] == [
        "index templates installed"]
    es = es_client(services)
    stored = es.indices.get_index_template(name=prefix)["index_templates"][0]["index_template"]
    assert stored["composed_of"] == [f"{prefix}-mappings", f"{prefix}-settings"]
    assert stored["_meta"]["managed_by"] == "socd"
    assert stored["_meta"]["socd_version"] == __version__
    fields_hash = stored["_meta"]["fields_hash"]
    components = es.cluster.get_component_template(name=f"{prefix}-*")["component_templates"]
    assert sorted(c["name"] for c in components) == [f"{prefix}-mappings", f"{prefix}-settings"]
    assert es.indices.exists_index_template(name=f"{prefix}-deadletter")

    with capture_logs() as logs:
        await make_sink()
    assert [e["event"] for e in logs if e["event"].startswith("index templates")] == [
        "index templates unchanged"]

    # What an older socd left behind: the next start replaces it and says so.
    es.indices.put_index_template(name=prefix, index_patterns=[f"{prefix}-*"], priority=200,
                                  template={"mappings": {"dynamic": True}},
                                  meta={"managed_by": "socd", "socd_version": "0.0.1",
                                        "fields_hash": "0000"})
    with capture_logs() as logs:
        await make_sink()
    upgrade = [e for e in logs if e["event"].startswith("index templates")]
    assert upgrade[0]["event"].startswith("index templates upgraded")
    assert upgrade[0]["previous_version"] == "0.0.1"
    assert upgrade[0]["fields_hash"] == fields_hash
    stored = es.indices.get_index_template(name=prefix)["index_templates"][0]["index_template"]
    assert stored["_meta"]["fields_hash"] == fields_hash
    assert "composed_of" in stored
    es.close()


async def test_rejected_documents_are_dead_lettered_once_and_the_rest_stored(
        sink, services, prefix, unique, tmp_path: Path):
    events = [_event(i, unique) for i in range(10)]
    events[3]["source"]["port"] = {"not": "a number"}  # mapping conflict: 400 for this item
    await sink.write(events)
    await sink.write(events)  # retried batch: not dead-lettered twice
    es = es_client(services)
    # The hidden dead-letter index is not part of `<prefix>-*`.
    assert es_count(es, f"{prefix}-*") == 9
    entries = _dead_letters(tmp_path / "dl")
    assert len(entries) == 1
    assert entries[0]["reason"] == "rejected_document"
    assert entries[0]["event"]["event"]["id"] == f"{unique}-3"
    assert "document_parsing_exception" in entries[0]["detail"]

    dl_index = f"{prefix}-deadletter-{datetime.now(UTC):%Y.%m}"
    es.indices.refresh(index=dl_index)
    hits = es.search(index=dl_index, query={"match_all": {}})["hits"]["hits"]
    assert len(hits) == 1
    doc = hits[0]["_source"]
    assert hits[0]["_id"] == events[3]["event"]["hash"]
    assert doc["socd"]["sink"] == "es"
    assert doc["error"]["type"] == "document_parsing_exception"
    assert doc["error"]["message"].startswith("400 document_parsing_exception")
    assert doc["event"]["hash"] == events[3]["event"]["hash"]
    assert json.loads(doc["event"]["original"])["source"]["port"] == {"not": "a number"}
    settings = es.indices.get_settings(index=dl_index)[dl_index]["settings"]["index"]
    assert settings["hidden"] == "true"
    mapping = es.indices.get_mapping(index=dl_index)[dl_index]["mappings"]
    assert mapping["dynamic"] == "false"
    # Searchable by what a SOC looks for first.
    found = es.search(index=dl_index, query={"term": {"event.hash": events[3]["event"]["hash"]}})
    assert found["hits"]["total"]["value"] == 1
    es.close()


async def test_a_broken_dead_letter_index_still_leaves_the_file(
        sink, services, prefix, unique, tmp_path: Path):
    dl_index = f"{prefix}-deadletter-{datetime.now(UTC):%Y.%m}"
    es = es_client(services)
    es.indices.create(index=dl_index, settings={"index.blocks.write": True})
    events = [_event(i, unique) for i in range(4)]
    events[1]["source"]["port"] = {"not": "a number"}
    with capture_logs() as logs:
        await sink.write(events)  # does not raise: the file has the document
    assert es_count(es, f"{prefix}-2*") == 3
    assert len(_dead_letters(tmp_path / "dl")) == 1
    assert any(e["event"].startswith("dead-letter index refused") for e in logs)
    es.indices.put_settings(index=dl_index, settings={"index.blocks.write": False})
    es.close()


async def test_a_blocked_index_is_retried_not_dead_lettered(
        sink, services, prefix, unique, tmp_path: Path):
    events = [_event(i, unique) for i in range(6)]
    await sink.write(events[:1])
    index = f"{prefix}-2026.11.15"
    es = es_client(services)
    es.indices.put_settings(index=index, settings={"index.blocks.write": True})
    try:
        with pytest.raises(SinkError) as info:
            await sink.write(events)
        assert info.value.retryable
        assert _dead_letters(tmp_path / "dl") == []
    finally:
        es.indices.put_settings(index=index, settings={"index.blocks.write": False})
    await sink.write(events)  # the operator lifted the block: the retry stores them
    assert es_count(es, f"{prefix}-*") == 6
    es.close()


def _today() -> datetime:
    return datetime.now(UTC)


def _retention_indices(prefix: str) -> tuple[list[str], list[str]]:
    """(names retention must delete, names it must keep) for 30 days."""
    now = _today()
    expired = [f"{prefix}-2020.01.01", f"{prefix}-{now - timedelta(days=31):%Y.%m.%d}",
               f"{prefix}-deadletter-2020.01"]
    kept = [f"{prefix}-{now:%Y.%m.%d}", f"{prefix}-{now - timedelta(days=30):%Y.%m.%d}",
            f"{prefix}-deadletter-{now:%Y.%m}", f"{prefix}-2020.01.01-restored",
            f"{prefix}-keep-me", f"{prefix}-2020.13.45"]
    return expired, kept


def _existing(es: Elasticsearch, prefix: str) -> set[str]:
    return set(es.indices.get(index=f"{prefix}-*", expand_wildcards="all"))


async def test_retention_deletes_only_expired_indices(make_sink, services, prefix):
    expired, kept = _retention_indices(prefix)
    other = f"{prefix}x-2020.01.01"  # another prefix
    es = es_client(services)
    await make_sink(retention_days=0)  # templates first: dead-letter indices are hidden
    try:
        for name in [*expired, *kept, other]:
            es.indices.create(index=name)
        assert es.indices.get_settings(index=f"{prefix}-deadletter-2020.01")[
            f"{prefix}-deadletter-2020.01"]["settings"]["index"]["hidden"] == "true"
        with capture_logs() as logs:
            await make_sink(retention_days=30, retention_check_interval_secs=1)
            await eventually(lambda: not _existing(es, prefix) & set(expired), 30,
                             "the expired indices to be deleted")
        assert _existing(es, prefix) == set(kept)
        assert es.indices.exists(index=other)
        deleted = [name for e in logs if e["event"] == "expired indices deleted"
                   for name in e["indices"]]
        assert sorted(deleted) == sorted(expired)
    finally:
        es.indices.delete(index=other, ignore_unavailable=True)
        es.close()


async def test_retention_keeps_trying_while_elasticsearch_is_down(make_sink, services, prefix):
    host, port = services["ES_HOST"], int(services["ES_PORT"])
    proxy = TcpProxy(host, port)
    proxy.set_down(True)
    es = es_client(services)
    expired, _ = _retention_indices(prefix)
    try:
        for name in expired:
            es.indices.create(index=name)
        with capture_logs() as logs:
            sink = await make_sink(hosts=[proxy.url], retention_days=30, request_timeout_secs=2,
                                   retention_check_interval_secs=1)
            await eventually(lambda: any(e["event"] == "retention check failed; will retry"
                                         for e in logs), 30, "a failed retention check")
            assert _existing(es, prefix) == set(expired)
            proxy.set_down(False)
            await eventually(lambda: not _existing(es, prefix) & set(expired), 30,
                             "retention once Elasticsearch is back")
        assert sink.ilm is False
    finally:
        proxy.close()
        es.close()


async def test_retention_zero_keeps_everything(make_sink, services, prefix):
    es = es_client(services)
    es.indices.create(index=f"{prefix}-2020.01.01")
    sink = await make_sink(retention_days=0, retention_check_interval_secs=1)
    assert sink._retention_task is None
    await asyncio.sleep(1.5)
    assert es.indices.exists(index=f"{prefix}-2020.01.01")
    assert await sink.enforce_retention() == []
    es.close()


async def test_a_refused_template_keeps_the_alerts(make_sink, services, prefix, unique,
                                                   tmp_path: Path):
    # Another template with the same priority over the same names: the server refuses
    # socd's (400). That is a configuration error, not the alerts' fault.
    es = es_client(services)
    es.indices.put_index_template(name=f"{prefix}-other", index_patterns=[f"{prefix}-*"],
                                  priority=200)
    try:
        with capture_logs() as logs:
            sink = await make_sink()
            with pytest.raises(SinkError) as info:
                await sink.write([_event(0, unique)])
        assert info.value.retryable
        assert "400" in str(info.value)
        assert _dead_letters(tmp_path / "dl") == []
        assert any(e["log_level"] == "error" and "index templates" in e["event"] for e in logs)
    finally:
        es.indices.delete_index_template(name=f"{prefix}-other")
    await sink.write([_event(0, unique)])  # fixed: the retry installs them and stores
    assert es_count(es, f"{prefix}-*") == 1
    es.close()
