"""AlertStore.update_many as the console's bulk action uses it (issue 19): the result in
the caller's order whatever order the rows are written in, the row after each change the
same as read back, chunks beyond one ``IN (...)``, a refused batch writing nothing, and
SQLite's automatic WAL checkpoint back on after the batch (committed or not)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from socd.alerts.store import KEEP, AlertStore, Change

from ..console_alerts import alerts


@pytest.fixture
def store(tmp_path: Path) -> Any:
    s = AlertStore(str(tmp_path / "alerts.db"))
    yield s
    s.close()


def _autocheckpoint(store: AlertStore) -> int:
    with store.reading() as db:
        return int(db.execute("PRAGMA wal_autocheckpoint").fetchone()[0])


def test_results_keep_the_callers_order_and_match_the_rows(store: AlertStore) -> None:
    events = alerts(1200)  # more than one chunk of ids
    store.insert(events)
    ids = [e["event"]["hash"] for e in events][::-1]  # not rowid order
    ids = ids[1::2] + ids[::2]

    def decide(a: Any) -> Change | None:
        if a.id == ids[3]:
            return None  # left as it is
        return Change(action="assign", status=a.status, by="an", note="n",
                      assignee="bob" if a.id != ids[4] else KEEP)

    done = store.update_many(ids, decide)
    assert [u.after.id for u in done] == ids
    assert [u.changed for u in done[:5]] == [True, True, True, False, True]
    for u in done[:50]:
        assert store.get(u.after.id) == u.after
    assert done[4].after.assignee is None  # KEEP kept it unassigned
    assert done[0].after.status_by == "an"
    assert done[0].after.assignee == "bob"
    assert len(store.history(ids[0])) == 1
    assert store.history(ids[3]) == []
    assert _autocheckpoint(store) == 1000


def test_a_refused_batch_writes_nothing_and_restores_the_checkpoint(store: AlertStore
                                                                    ) -> None:
    events = alerts(10)
    store.insert(events)
    ids = [e["event"]["hash"] for e in events]

    def refuse(a: Any) -> Change:
        if a.id == ids[7]:
            raise ValueError("no")
        return Change(action="resolve", status="resolved", by="an")

    with pytest.raises(ValueError, match="no"):
        store.update_many(ids, refuse)
    assert {store.get(i).status for i in ids} == {"new"}  # type: ignore[union-attr]
    assert _autocheckpoint(store) == 1000
