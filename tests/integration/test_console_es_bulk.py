"""The console's bulk sync to a real Elasticsearch (issue 19, `make services`): each
document is updated in the index of its event day without a search over every index,
a document the day's name misses (reindexed elsewhere) is found and updated too, an
alert never indexed is reported, ``refresh=wait_for`` makes the change searchable
without a forced refresh, and an alert read by id carries its time as the store does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from socd.alerting.elasticsearch import ElasticsearchSink
from socd.alerts.store import AlertStore, Change
from socd.app.deadletter import DeadLetter
from socd.console.data_es import ElasticsearchAlertSource, bulk_update, day_index
from socd.event import normalize
from socd.plugins import PluginContext
from tests.console_alerts import alert
from tests.helpers import es_cleanup, es_client

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


async def test_bulk_update_by_day_index_with_a_fallback(services: dict[str, Any],
                                                        unique: str, tmp_path: Path) -> None:
    prefix = f"socd-it-bulk-{unique}"
    cfg = ElasticsearchSink.Config(type="elasticsearch", hosts=[services["ES_URL"]],
                                   index_prefix=prefix)  # no refresh: production's
    # Two event days (a day is 1,440 minutes), a fifth alert never indexed.
    events = [normalize(alert(i, minutes=i * 1000)) for i in range(5)]
    dead = DeadLetter(str(tmp_path / "dead-letter"))
    sink = ElasticsearchSink(cfg, PluginContext(name="es", dead_letter=dead,
                                                state_dir=str(tmp_path)))
    await sink.start()
    es = es_client(services)
    store = AlertStore(str(tmp_path / "alerts.db"))
    try:
        await sink.write(events[:4])
        es.indices.refresh(index=f"{prefix}-*")
        ids = [e["event"]["hash"] for e in events]
        # One document moved out of its day's index (a reindex): found by search.
        moved = ids[1]
        day = es.search(index=f"{prefix}-*", query={"ids": {"values": [moved]}})
        hit = day["hits"]["hits"][0]
        es.index(index=f"{prefix}-moved", id=moved, document=hit["_source"], refresh=True)
        es.delete(index=hit["_index"], id=moved, refresh=True)

        store.insert(events)
        done = store.update_many(ids, lambda a: Change(action="ack", status="acknowledged",
                                                       by="an"))
        changed = [u.after for u in done]
        assert day_index(prefix, changed[1]) == hit["_index"]  # where the sink wrote it
        assert {day_index(prefix, a) for a in changed[:4]} >= {
            f"{prefix}-2026.11.16", f"{prefix}-2026.11.17"}

        error = bulk_update(cfg, changed, es, refresh="wait_for")
        assert error == "1 alerts not indexed yet"
        found = es.search(index=f"{prefix}-*", size=10,
                          query={"term": {"socd.alert.status": "acknowledged"}})
        assert sorted(h["_id"] for h in found["hits"]["hits"]) == sorted(ids[:4])
        assert {h["_index"] for h in found["hits"]["hits"]
                if h["_id"] == moved} == {f"{prefix}-moved"}

        source = ElasticsearchAlertSource(cfg, es)
        got = source.get(ids[2])
        assert got is not None
        assert got.ts_ms == changed[2].ts_ms
        assert got.status == "acknowledged"
        assert source.get("0" * 40) is None
    finally:
        await sink.close()
        dead.close()
        store.close()
        es_cleanup(es, prefix)
        es.close()
