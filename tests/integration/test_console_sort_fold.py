"""The console's alert source against a real Elasticsearch (`make services`), for the
follow-ups of issue 19: free text in Vietnamese finds the same alerts whatever its case
from the store and from Elasticsearch, and every sort of the queue (newest, oldest,
severity, unit, rule) walks the same alerts page by page from either."""

from __future__ import annotations

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
from tests.console_alerts import alert
from tests.helpers import es_cleanup, es_client, index_with_es_sink

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

N = 60
RULE_NAMES = ("Lỗi ĐĂNG NHẬP SSH", "lỗi đăng nhập sai mật khẩu", "Dang nhap khong dau",
              "Quét cổng", "MÃ ĐỘC")


def _events() -> list[dict[str, Any]]:
    out = []
    for i in range(N):
        event = alert(i, minutes=i // 4)  # ties on time: broken by id, the same way
        event["rule"]["name"] = RULE_NAMES[i % 5]
        if i % 11 == 0:
            del event["rule"]["id"]  # vendor alerts naming only a threat: rule sort last
        if i % 13 == 0:
            del event["socd"]["unit"]  # no unit: unit sort last
        if i % 9 == 0:
            event["host"]["name"] = f"MÁY-CHỦ-{i}"
        out.append(normalize(event))
    return out


@pytest.fixture
async def sources(services: dict[str, Any], unique: str, tmp_path: Path
                  ) -> AsyncIterator[tuple[StoreAlertSource, ElasticsearchAlertSource]]:
    """The same alerts in the store and, written by the real elasticsearch sink, in ES."""
    prefix = f"socd-it-sortfold-{unique}"
    events = _events()
    await index_with_es_sink(services["ES_URL"], prefix, events, tmp_path)
    store = AlertStore(str(tmp_path / "alerts.db"))
    store.insert(events)
    theirs = ElasticsearchAlertSource(ElasticsearchSink.Config(
        type="elasticsearch", hosts=[services["ES_URL"]], index_prefix=prefix, refresh=True))
    try:
        yield StoreAlertSource(store), theirs
    finally:
        theirs.close()
        store.close()
        es = es_client(services)
        es_cleanup(es, prefix)
        es.close()


def _walk(source: Any, query: AlertQuery) -> list[list[str]]:
    """Every page of the query (the ids on each), at most one per alert."""
    pages: list[list[str]] = []
    after, key = None, None
    for _ in range(N + 1):
        page = source.page(replace(query, after=after, after_key=key))
        pages.append([a.id for a in page.alerts])
        if page.next_after is None:
            return pages
        after, key = page.next_after, page.next_key
    raise AssertionError(f"more pages than alerts: {query}")


TEXTS = ["ĐĂNG NHẬP", "đăng nhập", "Đăng Nhập", "dang nhap", "máy-chủ", "MÁY-CHỦ-1",
         "MÃ độc", "khẩu", "Sở Y TẾ", "UBND HUYỆN"]


async def test_free_text_in_vietnamese_is_the_same_from_either(sources: Any) -> None:
    ours, theirs = sources
    found: dict[str, set[str]] = {}
    for text in TEXTS:
        query = AlertQuery(text=text, limit=100)
        a, b = ours.page(query), theirs.page(query)
        assert [x.id for x in a.alerts] == [x.id for x in b.alerts], text
        assert a.alerts, text
        assert a.counts == b.counts, text
        found[text] = {x.id for x in a.alerts}
    # the case of a letter never matters, its diacritics do
    assert found["ĐĂNG NHẬP"] == found["đăng nhập"] == found["Đăng Nhập"]
    assert not found["ĐĂNG NHẬP"] & found["dang nhap"]
    assert len(found["ĐĂNG NHẬP"]) == 2 * N // 5


SORTED = [AlertQuery(sort=s) for s in ("newest", "oldest", "severity", "unit", "rule")] + [
    AlertQuery(sort="severity", unit="Sở Y tế"),
    AlertQuery(sort="unit", severity="high"),
    AlertQuery(sort="unit", unit="Sở Tài chính"),
    AlertQuery(sort="rule", text="đăng nhập"),
    AlertQuery(sort="severity", severity="low"),
]


async def test_every_sort_walks_the_same_pages_from_either(sources: Any) -> None:
    ours, theirs = sources
    for query in SORTED:
        for size in (1, 7, 100):
            q = replace(query, limit=size)
            pages = _walk(ours, q)
            assert pages == _walk(theirs, q), (query, size)
            walked = [i for page in pages for i in page]
            assert len(walked) == len(set(walked)), query  # every alert once
        everything = ours.store.search(replace(query, sort="newest", limit=N))
        assert sorted(walked) == sorted(a.id for a in everything), query
    # the order is the key's, then newest first; alerts without the key last
    rows = [ours.store.get(i) for page in _walk(ours, AlertQuery(sort="unit", limit=9))
            for i in page]
    shown = [r for r in rows if r is not None]
    expected = sorted(sorted(shown, key=lambda r: r.id, reverse=True),  # ties: id descending
                      key=lambda r: (r.unit is None, r.unit or "", -(r.ts_ms or 0)))
    assert [r.id for r in shown] == [r.id for r in expected]
    assert rows[-1] is not None
    assert rows[-1].unit is None
