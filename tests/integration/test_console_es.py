"""The console's alert source against a real Elasticsearch (`make services`): the same
query gives the same alerts, in the same order, with the same counts, from the embedded
store and from the documents the real elasticsearch sink wrote; the queue page shows the
same alerts from either; a bulk action reaches Elasticsearch in one _bulk request."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from socd.alerting.elasticsearch import ElasticsearchSink
from socd.alerts.store import AlertQuery, AlertStore
from socd.console.data import StoreAlertSource
from socd.console.data_es import ElasticsearchAlertSource
from socd.event import normalize
from tests.console_alerts import BASE, alert
from tests.console_pages import console
from tests.helpers import es_cleanup, es_client, index_with_es_sink

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

N = 90


def _events() -> list[dict[str, Any]]:
    # Groups of three alerts share a minute: the order must break ties by id, the same way.
    out = [alert(i, minutes=i // 3) for i in range(N)]
    out[5]["socd"]["alert"]["status"] = "acknowledged"
    del out[6]["socd"]["alert"]  # the store takes a missing status as new; so must ES
    out[7]["host"]["name"] = "Web_Cổng-01"
    return [normalize(e) for e in out]


@pytest.fixture
async def indexed(services: dict[str, Any], unique: str, tmp_path: Path
                  ) -> AsyncIterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """The alerts written by the real elasticsearch sink (its template and mapping)."""
    prefix = f"socd-it-console-{unique}"
    es_cfg = {"hosts": [services["ES_URL"]], "index_prefix": prefix, "refresh": True}
    events = _events()
    await index_with_es_sink(services["ES_URL"], prefix, events, tmp_path)
    yield es_cfg, events
    es = es_client(services)
    es_cleanup(es, prefix)
    es.close()


QUERIES = [
    AlertQuery(),
    AlertQuery(severity="high", unit="Sở Y tế"),
    AlertQuery(status="new"),
    AlertQuery(status="acknowledged"),
    AlertQuery(layer=4, asset_kind="server"),
    AlertQuery(rule="socd-2"),
    AlertQuery(rule="Rule 4"),
    AlertQuery(source_ip="203.0.113.8"),
    AlertQuery(text="web_cổng"[:4]),
    AlertQuery(text="HOST-2"),
    AlertQuery(since_ms=int(BASE.timestamp() * 1000) + 5 * 60_000,
               until_ms=int(BASE.timestamp() * 1000) + 20 * 60_000),
    AlertQuery(sort="oldest", unit="UBND huyện Tuy Phước"),
]


async def test_the_same_query_gives_the_same_alerts(indexed: Any, tmp_path: Path) -> None:
    es_cfg, events = indexed
    store = AlertStore(str(tmp_path / "alerts.db"))
    store.insert(events)
    ours, theirs = StoreAlertSource(store), ElasticsearchAlertSource(_cfg(es_cfg))
    try:
        for query in QUERIES:
            for size in (7, 100):
                q = replace(query, limit=size)
                pages_a, pages_b = _walk(ours, q), _walk(theirs, q)
                assert pages_a == pages_b, query
            first = ours.page(query)
            assert first.counts == theirs.page(query).counts, query
            assert first.alerts, query  # each query selects something
        one = events[7]["event"]["hash"]
        a, b = ours.get(one), theirs.get(one)
        assert a is not None
        assert b is not None
        assert (a.id, a.ts_ms, a.severity, a.unit, a.host_name, a.status) == (
            b.id, b.ts_ms, b.severity, b.unit, b.host_name, b.status)
        assert theirs.ids_with_prefix(one[:8], 5) == ours.ids_with_prefix(one[:8], 5)
        assert theirs.units(500) == ours.units(500)
    finally:
        theirs.close()
        store.close()


def _cfg(es_cfg: dict[str, Any]) -> Any:
    return ElasticsearchSink.Config(type="elasticsearch", **es_cfg)


def _walk(source: Any, query: AlertQuery) -> list[list[str]]:
    """Every page of the query: the ids on each."""
    pages, after = [], None
    while True:
        page = source.page(replace(query, after=after))
        pages.append([a.id for a in page.alerts])
        if page.next_after is None:
            return pages
        after = page.next_after


_ROW = re.compile(r'href="/alerts/([0-9a-f]{40})"')


async def test_the_queue_page_is_the_same_from_either_and_bulk_reaches_es(
        indexed: Any, tmp_path: Path) -> None:
    es_cfg, events = indexed
    shown: dict[str, list[str]] = {}
    for source in ("store", "elasticsearch"):
        async with console(tmp_path / source, source=source,  # type: ignore[arg-type]
                           es=es_cfg) as c:
            c.store.insert(events)
            await c.sign_in("analyst")
            page = await c.page("/alerts?severity=critical&size=10")
            shown[source] = _ROW.findall(page)
            if source == "elasticsearch":
                ids = [e["event"]["hash"] for e in events if e["socd"]["severity"] == "low"]
                r = await c.post("/alerts/bulk", [("action", "ack"), *[("id", i) for i in ids]])
                assert "es=0" in r.headers["Location"]
                after = await c.page("/alerts?severity=low&status=acknowledged&size=100")
                assert set(_ROW.findall(after)) == set(ids)
    assert shown["store"] == shown["elasticsearch"]
    assert len(shown["store"]) == 10
