"""The Elasticsearch sink's shortcuts of issue 17 (MQTT -> Elasticsearch CPU): bulk
responses without errors are not parsed past their flag, every other body is; the
bulk lines are those of the per-event index and action as before; the GC setting."""

from __future__ import annotations

import asyncio
import gc
from datetime import date
from typing import Any

import orjson
import pytest

from socd.alerting.elasticsearch import ElasticsearchSink, _ResponseSerializer, daily_index
from socd.app.pipeline import FULL_COLLECTION_EVERY, collect_less_often
from socd.plugins import PluginContext


def test_a_bulk_response_without_errors_is_not_parsed_further() -> None:
    ser = _ResponseSerializer()
    ok = b'{"errors":false,"items":[{"create":{"status":201}},{"create":{"status":409}}]}'
    assert ser.loads(ok) == {"errors": False}
    failed = (b'{"errors":true,"items":[{"create":{"status":201}},{"create":{"status":400,'
              b'"error":{"type":"mapper_parsing_exception","reason":"x"}}}]}')
    assert ser.loads(failed) == orjson.loads(failed)
    for other in (b'{"acknowledged":true}', b'{"errors": false, "items": []}', b"[]",
                  b'{"error":{"type":"x"},"status":400}'):
        assert ser.loads(other) == orjson.loads(other)
    assert ser.loads(b"") is None


def test_the_client_reads_compatible_json_with_it() -> None:
    sink = ElasticsearchSink(ElasticsearchSink.Config.model_validate(
        {"type": "elasticsearch", "hosts": ["http://127.0.0.1:1"], "index_prefix": "p"}),
        PluginContext(name="es", dead_letter=None))
    client = sink._make_client()
    try:
        serializers = client.transport.serializers
        for mimetype in ("application/json",
                         "application/vnd.elasticsearch+json; compatible-with=8"):
            assert isinstance(serializers.get_serializer(mimetype), _ResponseSerializer)
    finally:
        asyncio.run(client.close())


class _Client:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def bulk(self, operations: bytes, **_: Any) -> dict[str, Any]:
        self.bodies.append(operations)
        return {"errors": False}


def test_bulk_lines_name_each_event_s_day_index() -> None:
    sink = ElasticsearchSink(ElasticsearchSink.Config.model_validate(
        {"type": "elasticsearch", "hosts": ["http://127.0.0.1:1"], "index_prefix": "p"}),
        PluginContext(name="es", dead_letter=None))
    client = _Client()
    sink.client = client  # type: ignore[assignment]

    async def ready() -> None:
        return None

    sink._ensure_setup = ready  # type: ignore[method-assign]
    stamps: list[Any] = ["2026-11-16T00:11:43+07:00", "2026-11-16T00:11:44+07:00",
                         "2026-11-16T06:59:59-01:00", "2026-11-16T23:00:00Z", None, 5,
                         "2026-11-16T00:11:43+07:00"]
    events = [{"@timestamp": ts, "event": {"hash": f"h{i}"}} for i, ts in enumerate(stamps)]
    events = [{k: v for k, v in e.items() if v is not None} for e in events]
    asyncio.run(sink.write(events))
    lines = client.bodies[0].split(b"\n")
    for i, event in enumerate(events):
        action = orjson.loads(lines[2 * i])["create"]
        assert action["_id"] == f"h{i}"
        assert action["_index"] == sink._index_for(event)
        assert orjson.loads(lines[2 * i + 1]) == event
    assert orjson.loads(lines[0])["create"]["_index"] == daily_index("p", date(2026, 11, 15))


@pytest.fixture
def restore_gc() -> Any:
    saved = gc.get_threshold()
    yield
    gc.set_threshold(*saved)


def test_full_collections_are_made_rarer_never_more_frequent(restore_gc: Any) -> None:
    gc.set_threshold(700, 10, 10)
    collect_less_often()
    assert gc.get_threshold() == (700, 10, FULL_COLLECTION_EVERY)
    gc.set_threshold(500, 5, 1000)
    collect_less_often()
    assert gc.get_threshold() == (500, 5, 1000)
