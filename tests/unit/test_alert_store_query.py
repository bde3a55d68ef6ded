"""The alert store's queue queries (issue 19): filters, keyset pages, capped counts,
bulk updates in one transaction, the version 3 indexes and the plans that use them."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from socd.alerts.store import AlertQuery, AlertStore, Change

from ..console_alerts import BASE, alert, alerts


@pytest.fixture
def store(tmp_path: Path) -> Any:
    s = AlertStore(str(tmp_path / "alerts.db"))
    yield s
    s.close()


def _ids(found: list[Any]) -> list[str]:
    return [a.id for a in found]


def _expected(events: list[dict[str, Any]], keep: Any) -> list[str]:
    """Ids of the events ``keep`` selects, newest first, ties by id (descending)."""
    chosen = [e for e in events if keep(e)]
    chosen.sort(key=lambda e: (e["@timestamp"], e["event"]["hash"]), reverse=True)
    return [e["event"]["hash"] for e in chosen]


def test_each_filter_selects_what_it_says(store: AlertStore) -> None:
    events = alerts(60)
    store.insert(events)
    cases: list[tuple[AlertQuery, Any]] = [
        (AlertQuery(severity="high"), lambda e: e["socd"]["severity"] == "high"),
        (AlertQuery(unit="Sở Y tế", severity="low"),
         lambda e: e["socd"]["unit"] == "Sở Y tế" and e["socd"]["severity"] == "low"),
        (AlertQuery(layer=2), lambda e: e["socd"]["layer"] == 2),
        (AlertQuery(asset_kind="server"), lambda e: e["socd"]["asset_kind"] == "server"),
        (AlertQuery(rule="socd-3"), lambda e: e["rule"]["id"] == "socd-3"),
        (AlertQuery(rule="Rule 4"), lambda e: e["rule"]["name"] == "Rule 4"),
        (AlertQuery(source_ip="203.0.113.5"), lambda e: e["source"]["ip"] == "203.0.113.5"),
        (AlertQuery(destination_ip="10.10.0.5"), lambda e: True),
        (AlertQuery(status="new"), lambda e: True),
        (AlertQuery(text="HOST-3"), lambda e: e["host"]["name"] == "host-3"),
        (AlertQuery(since_ms=int(BASE.timestamp() * 1000) + 10 * 60_000,
                    until_ms=int(BASE.timestamp() * 1000) + 20 * 60_000),
         lambda e: "01:10" <= e["@timestamp"][11:16] < "01:20"),
    ]
    for query, keep in cases:
        got = _ids(store.search(replace(query, limit=100)))
        assert got == _expected(events, keep), query
        assert store.count_matching(query, 1000) == len(got), query


def test_free_text_is_a_literal_substring(store: AlertStore) -> None:
    store.insert([alert(0, host="web_01"), alert(1, host="web-01"), alert(2, host="a%b")])
    assert len(store.search(AlertQuery(text="web_"))) == 1  # _ is not a wildcard
    assert len(store.search(AlertQuery(text="%"))) == 1
    assert len(store.search(AlertQuery(text="WEB"))) == 2


def test_pages_walk_every_alert_once_ties_broken_by_id(store: AlertStore) -> None:
    # 30 alerts in 10 distinct minutes: pages of 7 cut through groups of equal times.
    events = [alert(i, minutes=i // 3) for i in range(30)]
    store.insert(events)
    for oldest in (False, True):
        seen: list[str] = []
        after = None
        while True:
            sort = "oldest" if oldest else "newest"
            page = store.search(AlertQuery(after=after, sort=sort, limit=7))
            if not page:
                break
            seen += _ids(page)
            last = page[-1]
            assert last.ts_ms is not None
            after = (last.ts_ms, last.id)
        expected = _expected(events, lambda e: True)
        assert seen == (expected[::-1] if oldest else expected)


def test_counts_stop_at_the_cap(store: AlertStore) -> None:
    store.insert(alerts(40))
    assert store.count_matching(AlertQuery(), 25) == 25
    assert store.count_matching(AlertQuery(severity="critical"), 25) == 10


def test_other_event_kinds_are_not_in_the_queue(store: AlertStore) -> None:
    event = alert(0)
    event["event"]["kind"] = "event"
    store.insert([event, alert(1)])
    assert len(store.search(AlertQuery())) == 1
    assert store.count_matching(AlertQuery(), 10) == 1


def test_update_many_is_one_transaction(store: AlertStore) -> None:
    events = alerts(5)
    store.insert(events)
    ids = [e["event"]["hash"] for e in events]
    changed = store.update_many([*ids, "0" * 40, ids[0]], lambda a: Change(
        action="ack", status="acknowledged", by="an"))
    assert [u.after.status for u in changed] == ["acknowledged"] * 5  # unknown id, dup: out
    assert all(len(store.history(i)) == 1 for i in ids)

    def refuse_the_last(a: Any) -> Change:
        if a.id == ids[-1]:
            raise ValueError("no")
        return Change(action="resolve", status="resolved", by="an")

    with pytest.raises(ValueError, match="no"):
        store.update_many(ids, refuse_the_last)
    assert {a.status for a in store.search(AlertQuery())} == {"acknowledged"}  # none written
    assert all(len(store.history(i)) == 1 for i in ids)


def test_version_2_files_get_the_queue_indexes(tmp_path: Path) -> None:
    path = tmp_path / "v2.db"
    AlertStore(str(path)).close()
    db = sqlite3.connect(path)
    for name in ("alerts_q_ts", "alerts_q_severity", "alerts_q_unit", "alerts_q_status",
                 "alerts_q_rule", "alerts_q_text"):
        db.execute(f"DROP INDEX {name}")
    db.execute("ALTER TABLE alerts DROP COLUMN search")  # versions 4 and 5
    db.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    store = AlertStore(str(path))
    try:
        assert store.schema_version() == "5"
        names = {r[0] for r in store.query("SELECT name FROM sqlite_master WHERE type='index'")}
        assert {"alerts_q_ts", "alerts_q_severity", "alerts_q_unit", "alerts_q_status"} <= names
    finally:
        store.close()


@pytest.mark.parametrize(("query", "index"), [
    (AlertQuery(severity="high", unit="Sở Y tế"), "alerts_q_severity"),
    (AlertQuery(), "alerts_q_ts"),
    (AlertQuery(unit="Sở Y tế"), "alerts_q_unit"),
    (AlertQuery(status="new"), "alerts_q_status"),
])
def test_a_page_is_an_index_walk_not_a_sort(store: AlertStore, query: AlertQuery,
                                            index: str) -> None:
    """The plan, not a timing: the page reads the index in time order (only ties are
    sorted), so it stops after one page whatever the table's size."""
    from socd.alerts.store import _SELECT, _where

    where, params = _where(query, page=True)
    plan = " | ".join(str(r[3]) for r in store.query(
        f"EXPLAIN QUERY PLAN {_SELECT} WHERE {where} ORDER BY ts_ms DESC, id DESC LIMIT 50",
        params))
    assert f"USING INDEX {index}" in plan
    assert "TEMP B-TREE FOR ORDER BY" not in plan  # "RIGHT PART OF ORDER BY" is the ties


def test_severity_counts_in_one_pass_match_the_capped_counts(store: AlertStore) -> None:
    store.insert(alerts(40))
    query = AlertQuery(text="host-1", severity="low")  # its severity is ignored
    grouped = store.severity_counts(query)
    for severity in ("low", "medium", "high", "critical"):
        assert grouped.get(severity, 0) == store.count_matching(
            replace(query, severity=severity), 1000)


def test_units_are_listed_once_each_sorted(store: AlertStore) -> None:
    store.insert(alerts(30))
    assert store.units() == sorted({e["socd"]["unit"] for e in alerts(30)})
    assert store.units(limit=1) == [sorted({e["socd"]["unit"] for e in alerts(30)})[0]]
