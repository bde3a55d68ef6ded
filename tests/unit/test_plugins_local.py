"""Plugins that need no network service: the file collector, the ndjson and sqlite sinks,
and the pure parts of the MQTT collector and the Elasticsearch sink."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import aiomqtt
import orjson
import pytest

from socd.alerting.elasticsearch import ElasticsearchSink, index_template
from socd.alerting.ndjson import NdjsonSink
from socd.alerting.sqlite import SqliteSink
from socd.app import deadletter
from socd.app.deadletter import DeadLetter
from socd.collectors.file import FileCollector
from socd.collectors.mqtt import MqttCollector, _match_filter
from socd.decoders.mapping import MappingDecoder
from socd.errors import SinkError
from socd.event import FIELDS
from socd.plugins import Ack, PluginContext, RawRecord

from .conftest import SAMPLE_DIR, sample_value

pytestmark = pytest.mark.timeout(60)


def ctx(name: str, dl: Any = None, tmp: Path | None = None) -> PluginContext:
    base = str(tmp) if tmp else "."
    return PluginContext(name=name, dead_letter=dl, config_dir=base, state_dir=base)


# -- file collector ----------------------------------------------------------------


async def test_file_collector_reads_lines_in_batches(tmp_path: Path, dead_letter: DeadLetter,
                                                     uid: str) -> None:
    (tmp_path / "a.ndjson").write_bytes(b'{"n": 1}\r\n\n{"n": 2}\n{"n": 3}')
    with gzip.open(tmp_path / "b.ndjson.gz", "wb") as fh:
        fh.write(b'{"n": 4}\n')
    (tmp_path / "big.ndjson").write_bytes(b"x" * 300 + b"\n" + b'{"n": 5}\n')
    config = FileCollector.Config(type="file", paths=["*.ndjson*", "missing.ndjson"],
                                  batch_max_events=2, max_line_bytes=256, decoder="json")
    collector = FileCollector(config, ctx(uid, dead_letter, tmp_path))
    batches: list[list[RawRecord]] = []

    async def emit(records: list[RawRecord], ack: Ack | None) -> None:
        batches.append(records)

    assert not collector.ready
    await collector.run(emit)
    assert collector.ready
    assert [len(b) for b in batches] == [2, 1, 1, 1]
    assert [r.data for b in batches for r in b] == [
        b'{"n": 1}', b'{"n": 2}', b'{"n": 3}', b'{"n": 4}', b'{"n": 5}']
    first = batches[0][0]
    assert (first.decoder, first.collector, first.source) == ("json", uid,
                                                               str(tmp_path / "a.ndjson"))
    dead_letter.close()
    (entry,) = deadletter.read(dead_letter.path)
    assert (entry["reason"], entry["raw"]) == ("oversize", b"x" * 300)
    assert sample_value("socd_events_received_total", collector=uid) == 1
    assert sample_value("socd_component_up", kind="collector", name=uid) == 1


async def test_file_collector_with_no_match_finishes(tmp_path: Path, uid: str) -> None:
    config = FileCollector.Config(type="file", paths=["nothing/*.ndjson"])
    collector = FileCollector(config, ctx(uid, None, tmp_path))
    calls: list[Any] = []

    async def emit(records: list[RawRecord], ack: Ack | None) -> None:
        calls.append(records)

    await collector.run(emit)
    assert calls == []


# -- mqtt collector (no broker) --------------------------------------------------------


def test_mqtt_routes_topics_to_decoders(uid: str) -> None:
    config = MqttCollector.Config(
        type="mqtt", topics=["ids/#"], decoder="json",
        subscriptions=[{"topic": "$share/socd/edr/servers/+", "decoder": "server_edr"},
                       {"topic": "edr/pcs", "decoder": "workstation_edr", "qos": 0}])
    collector = MqttCollector(config, ctx(uid))
    assert collector.client_id.startswith("socd-")
    assert collector.client_id.endswith(uid)
    assert [s.topic for s in collector.subscriptions] == [
        "ids/#", "$share/socd/edr/servers/+", "edr/pcs"]
    assert collector._decoder_for(aiomqtt.Topic("edr/servers/srv1")) == "server_edr"
    assert collector._decoder_for(aiomqtt.Topic("edr/pcs")) == "workstation_edr"
    assert collector._decoder_for(aiomqtt.Topic("ids/suricata/eve")) == "json"
    assert collector._decoder_for(aiomqtt.Topic("other")) == "json"
    assert collector._tls_context() is None
    assert not collector.ready


def test_mqtt_match_filter() -> None:
    assert _match_filter("$share/g/a/b/#") == "a/b/#"
    assert _match_filter("a/+/c") == "a/+/c"
    assert _match_filter("$share/g") == "$share/g"


def test_mqtt_fixed_client_id(uid: str) -> None:
    config = MqttCollector.Config(type="mqtt", topics=["a"], client_id="socd-main")
    assert MqttCollector(config, ctx(uid)).client_id == "socd-main"


# -- ndjson sink -------------------------------------------------------------------------


async def test_ndjson_sink_appends_events(tmp_path: Path, uid: str) -> None:
    sink = NdjsonSink(NdjsonSink.Config(type="ndjson", path="out/alerts.ndjson", fsync=True),
                      ctx(uid, None, tmp_path))
    with pytest.raises(SinkError):
        await sink.write([{"a": 1}])
    await sink.start()
    await sink.healthcheck()
    await sink.write([{"message": "nghiêm trọng"}, {"n": 2}])
    await sink.write([{"n": 3}])
    await sink.close()
    lines = (tmp_path / "out" / "alerts.ndjson").read_bytes().splitlines()
    assert [orjson.loads(x) for x in lines] == [{"message": "nghiêm trọng"}, {"n": 2}, {"n": 3}]


# -- sqlite sink ---------------------------------------------------------------------------


def edr_events(count: int) -> list[dict[str, Any]]:
    decoder = MappingDecoder(MappingDecoder.Config(type="mapping", mapping="server_edr"),
                             ctx("server_edr"))
    lines = (SAMPLE_DIR / "server-edr.ndjson").read_bytes().splitlines()[:count]
    result = decoder.decode(RawRecord(b"\n".join(lines), "server_edr", "c"))
    assert result.failures == []
    return result.events


async def test_sqlite_sink_stores_alerts_idempotently(tmp_path: Path, uid: str) -> None:
    sink = SqliteSink(SqliteSink.Config(type="sqlite", path="db/alerts.db"),
                      ctx(uid, None, tmp_path))
    with pytest.raises(SinkError):
        await sink.write([])
    await sink.start()
    await sink.healthcheck()
    events = edr_events(5)
    await sink.write(events)
    await sink.write(events)  # a retried batch never duplicates
    assert sink.store is not None
    assert sink.store.count() == 5
    counts = sink.store.severity_by_asset()
    assert sum(counts.values()) == 5
    assert {kind for _, kind in counts} == {"server"}
    await sink.close()
    assert (tmp_path / "db" / "alerts.db").is_file()


# -- elasticsearch sink (no cluster) ----------------------------------------------------------


def test_index_template_is_generated_from_fields() -> None:
    template = index_template("socd-alerts", shards=2, replicas=1)
    assert template["index_patterns"] == ["socd-alerts-*"]
    settings = template["template"]["settings"]
    assert (settings["number_of_shards"], settings["number_of_replicas"]) == (2, 1)
    props = template["template"]["mappings"]["properties"]
    for field in FIELDS:
        node: Any = {"properties": props}
        for part in field.name.split("."):
            node = node["properties"][part]
        assert node["type"] == field.type, field.name
    assert props["socd"]["properties"]["severity_label"]["ignore_above"] == 1024
    assert props["event"]["properties"]["original"]["index"] is False


@pytest.mark.parametrize(("ts", "index"), [
    ("2026-11-16T00:11:43+07:00", "socd-x-2026.11.15"),
    ("2026-11-16T08:00:00+07:00", "socd-x-2026.11.16"),
    ("2026-11-16T23:59:59Z", "socd-x-2026.11.16"),
    ("2026-11-16T23:59:59+00:00", "socd-x-2026.11.16"),
])
def test_elasticsearch_daily_index_uses_utc_day(ts: str, index: str, uid: str) -> None:
    sink = ElasticsearchSink(ElasticsearchSink.Config(type="elasticsearch",
                                                      index_prefix="socd-x"), ctx(uid))
    assert sink._index_for({"@timestamp": ts}) == index


async def test_elasticsearch_write_before_start_is_retryable(uid: str) -> None:
    sink = ElasticsearchSink(ElasticsearchSink.Config(type="elasticsearch"), ctx(uid))
    with pytest.raises(SinkError) as info:
        await sink.write([{"@timestamp": "2026-11-16T00:00:00Z", "event": {"hash": "x"}}])
    assert info.value.retryable
