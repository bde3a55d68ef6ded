"""The embedded alert store and the alert lifecycle (socd.alerts.store,
socd.alerts.lifecycle): schema
migration, transitions, id prefixes, history, false-positive counts, the sink's gauge."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from socd.alerting.sqlite import SqliteSink
from socd.alerts import lifecycle as alerts
from socd.alerts.lifecycle import (
    AlertError,
    AlertNotFound,
    AmbiguousAlertId,
    InvalidTransition,
    Status,
    false_positive_counts,
    parse_since,
    resolve_id,
    set_status,
    status_counts,
)
from socd.alerts.store import AlertStore
from socd.config import ClassificationConfig
from socd.engine.classify import Classifier
from socd.errors import SocdError
from socd.event import Event, fingerprint, normalize, set_severity
from socd.plugins import PluginContext
from socd.severity import Severity

from .conftest import sample_value, series_exists

# The version 1 schema exactly as socd/alerts/store.py had it before the lifecycle (v2).
SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS alerts (
    id             TEXT PRIMARY KEY,          -- event.hash: a retry never duplicates
    ts             TEXT NOT NULL,             -- @timestamp (RFC 3339)
    kind           TEXT NOT NULL,             -- event.kind
    severity       TEXT,
    layer          INTEGER,
    asset_kind     TEXT,
    unit           TEXT,
    module         TEXT,
    rule_id        TEXT,
    rule_name      TEXT,
    host_name      TEXT,
    source_ip      TEXT,
    destination_ip TEXT,
    ioc            INTEGER NOT NULL DEFAULT 0,
    status         TEXT NOT NULL DEFAULT 'new',
    doc            BLOB NOT NULL              -- the whole event as JSON
);
CREATE INDEX IF NOT EXISTS alerts_ts ON alerts (ts);
CREATE INDEX IF NOT EXISTS alerts_severity ON alerts (severity, asset_kind);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def alert(i: int, *, rule: str = "R1", ts: str | None = None, unit: str = "Sở Y tế",
          kind: str = "alert", run: str = "t") -> Event:
    event: Event = {
        "@timestamp": ts or f"2026-11-16T08:{i % 60:02d}:00+07:00",
        "event": {"kind": kind, "hash": fingerprint(run, str(i))},
        "host": {"name": f"srv-{i}"},
        "source": {"ip": "203.0.113.9"},
        "rule": {"id": rule, "name": f"Rule {rule}"},
        "socd": {"layer": 2, "asset_kind": "server", "unit": unit},
        "message": f"alert {i}",
    }
    set_severity(event, Severity.HIGH)
    return normalize(event)


@pytest.fixture
def store(tmp_path: Path) -> Any:
    s = AlertStore(str(tmp_path / "alerts.db"))
    yield s
    s.close()


def _v1_file(path: Path, events: list[Event]) -> None:
    db = sqlite3.connect(path)
    db.executescript(SCHEMA_V1)
    db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', '1')")
    for e in events:
        db.execute("INSERT INTO alerts (id, ts, kind, severity, layer, asset_kind, unit, module, "
                   "rule_id, rule_name, host_name, source_ip, destination_ip, ioc, doc) "
                   "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                   (e["event"]["hash"], e["@timestamp"], e["event"]["kind"],
                    e["socd"]["severity"], 2, "server", e["socd"]["unit"], None,
                    e["rule"]["id"], e["rule"]["name"], e["host"]["name"], "203.0.113.9",
                    None, 0, orjson.dumps(e)))
    db.execute("UPDATE alerts SET status = 'resolved' WHERE id = ?", (events[0]["event"]["hash"],))
    db.commit()
    db.close()


# -- schema ----------------------------------------------------------------------------------


def test_new_file_is_the_current_version(store: AlertStore) -> None:
    assert store.schema_version() == "5"
    tables = {r[0] for r in store.query("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"alerts", "alert_history", "meta"} <= tables


def test_v1_file_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    events = [alert(i, ts=t) for i, t in enumerate(
        ["2026-11-16T08:00:00+07:00", "2026-11-16T02:00:00.250Z", "2026-11-16T01:30:00Z"])]
    _v1_file(path, events)
    store = AlertStore(str(path))
    try:
        assert store.schema_version() == "5"
        columns = {r[1] for r in store.query("PRAGMA table_info(alerts)")}
        assert {"assignee", "status_by", "status_note", "status_at", "ts_ms"} <= columns
        assert store.count() == 3
        old = store.get(events[0]["event"]["hash"])
        assert old is not None
        assert old.status == "resolved"
        assert old.assignee is None
        # ts_ms is filled from @timestamp, whatever its offset: 08:00+07 is 01:00Z.
        newest = store.find(limit=3)
        assert [a.id for a in newest] == [events[1]["event"]["hash"], events[2]["event"]["hash"],
                                          events[0]["event"]["hash"]]
        assert newest[0].ts_ms == int(datetime(2026, 11, 16, 2, 0, 0, 250000,
                                               tzinfo=UTC).timestamp() * 1000)
        # The migrated file takes lifecycle changes and new alerts.
        set_status(store, events[0]["event"]["hash"], Status.ACKNOWLEDGED, by="an")
        assert store.insert([alert(9)]) == 1
    finally:
        store.close()
    AlertStore(str(path)).close()  # opening a v3 file again changes nothing


def test_a_failed_migration_leaves_version_1(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _v1_file(path, [alert(0)])
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE alert_history (x INTEGER)")  # makes the migration fail midway
    db.commit()
    db.close()
    with pytest.raises(sqlite3.OperationalError):
        AlertStore(str(path))
    db = sqlite3.connect(path)
    columns = {r[1] for r in db.execute("PRAGMA table_info(alerts)")}
    version = db.execute("SELECT value FROM meta").fetchone()[0]
    db.close()
    assert "assignee" not in columns
    assert version == "1"


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    AlertStore(str(path)).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    with pytest.raises(SocdError, match="schema version 99 is newer"):
        AlertStore(str(path))


# -- lifecycle ---------------------------------------------------------------------------------


def test_transitions(store: AlertStore) -> None:
    store.insert([alert(0), alert(1), alert(2)])
    a0, a1, a2 = (alert(i)["event"]["hash"] for i in range(3))

    out = set_status(store, a0, Status.ACKNOWLEDGED, by="an", note="đang xem")
    assert out.changed
    assert out.alert.status == "acknowledged"
    assert out.alert.assignee == "an"
    assert out.alert.status_note == "đang xem"
    assert out.alert.status_by == "an"
    assert "new (mới) -> acknowledged (đã tiếp nhận)" in out.message

    again = set_status(store, a0, Status.ACKNOWLEDGED, by="binh")
    assert not again.changed
    assert again.alert.assignee == "an"
    assert "already acknowledged (đã tiếp nhận) by an" in again.message

    out = set_status(store, a0, Status.FALSE_POSITIVE, by="binh", note="máy quét nội bộ")
    assert out.alert.status == "false_positive"
    assert out.alert.assignee == "an"

    with pytest.raises(InvalidTransition) as info:
        set_status(store, a0, Status.RESOLVED, by="binh")
    assert info.value.hint
    assert f"socd alert ack {a0[:10]}" in info.value.hint
    assert store.get(a0).status == "false_positive"  # type: ignore[union-attr]

    out = set_status(store, a0, Status.ACKNOWLEDGED, by="chi")  # reopen
    assert out.alert.status == "acknowledged"
    assert out.alert.assignee == "chi"
    set_status(store, a0, Status.RESOLVED, by="chi")
    with pytest.raises(InvalidTransition):
        set_status(store, a0, Status.FALSE_POSITIVE, by="chi")

    assert set_status(store, a1, Status.RESOLVED, by="an").alert.status == "resolved"
    assert set_status(store, a2, Status.FALSE_POSITIVE, by="an").alert.assignee is None
    with pytest.raises(InvalidTransition):
        set_status(store, a2, Status.NEW, by="an")
    with pytest.raises(AlertNotFound):
        set_status(store, "0" * 40, Status.RESOLVED, by="an")


def test_transition_table_is_complete() -> None:
    assert set(alerts.TRANSITIONS) == set(Status)
    assert all(Status.NEW not in targets for targets in alerts.TRANSITIONS.values())
    assert Status.FALSE_POSITIVE.display() == "false_positive (cảnh báo nhầm)"


def test_history_records_every_change(store: AlertStore) -> None:
    store.insert([alert(0)])
    a0 = alert(0)["event"]["hash"]
    set_status(store, a0, Status.ACKNOWLEDGED, by="an")
    set_status(store, a0, Status.ACKNOWLEDGED, by="an")  # no-op: no entry
    alerts.assign(store, a0, "binh", by="an", note="ca đêm")
    alerts.assign(store, a0, "binh", by="an")  # no-op
    set_status(store, a0, Status.FALSE_POSITIVE, by="binh", note="scanner")
    set_status(store, a0, Status.ACKNOWLEDGED, by="chi")
    hist = store.history(a0)
    assert [(h.action, h.status_from, h.status_to, h.by, h.note) for h in hist] == [
        ("ack", "new", "acknowledged", "an", None),
        ("assign", "acknowledged", "acknowledged", "an", "ca đêm"),
        ("false_positive", "acknowledged", "false_positive", "binh", "scanner"),
        ("reopen", "false_positive", "acknowledged", "chi", None),
    ]
    current = store.get(a0)
    assert current is not None
    assert current.status_at == hist[-1].ts
    event = current.event()
    assert event["socd"]["alert"] == {"status": "acknowledged", "assignee": "chi",
                                      "updated": hist[-1].ts, "updated_by": "chi"}


def test_insert_never_resets_the_lifecycle(store: AlertStore) -> None:
    events = [alert(i) for i in range(3)]
    assert store.insert(events) == 3
    a0 = events[0]["event"]["hash"]
    set_status(store, a0, Status.FALSE_POSITIVE, by="an", note="x")
    assert store.insert(events) == 0  # the daemon retries a batch
    row = store.get(a0)
    assert row is not None
    assert (row.status, row.status_by, row.status_note) == (
        "false_positive", "an", "x")


def test_concurrent_writers_are_serialized(tmp_path: Path) -> None:
    path = str(tmp_path / "alerts.db")
    daemon, cli = AlertStore(path), AlertStore(path)
    try:
        daemon.insert([alert(i) for i in range(50)])
        ids = [alert(i)["event"]["hash"] for i in range(50)]
        errors: list[BaseException] = []

        def insert() -> None:
            try:
                for n in range(20):
                    daemon.insert([alert(i, run=f"x{n}") for i in range(50)] +
                                  [alert(i) for i in range(50)])
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        thread = threading.Thread(target=insert)
        thread.start()
        for alert_id in ids:
            set_status(cli, alert_id, Status.ACKNOWLEDGED, by="an")
        thread.join()
        assert not errors
        assert status_counts(cli)[Status.ACKNOWLEDGED] == 50
        assert daemon.count() == 50 * 21
    finally:
        daemon.close()
        cli.close()


def test_classification_marks_alerts_new(tmp_path: Path, store: AlertStore) -> None:
    events = Classifier(ClassificationConfig()).process([
        normalize({"@timestamp": "2026-11-16T08:00:00+07:00",
                   "event": {"kind": "alert", "hash": fingerprint("c", "1")}, "socd": {}}),
        normalize({"@timestamp": "2026-11-16T08:00:00+07:00",
                   "event": {"kind": "event", "hash": fingerprint("c", "2")}, "socd": {}}),
        normalize({"@timestamp": "2026-11-16T08:00:00+07:00",
                   "event": {"kind": "alert", "hash": fingerprint("c", "3")},
                   "socd": {"alert": {"status": "resolved"}}}),
    ])
    assert events[0]["socd"]["alert"] == {"status": "new"}
    assert "alert" not in events[1].get("socd", {})
    # A status that came with the input is not trusted (issue 12, finding 3): every
    # alert enters the lifecycle as new; only `socd alert ...` changes it.
    assert events[2]["socd"]["alert"]["status"] == "new"
    store.insert([events[2]])
    assert store.get(events[2]["event"]["hash"]).status == "new"  # type: ignore[union-attr]


# -- ids -------------------------------------------------------------------------------------


def test_prefix_resolution(store: AlertStore) -> None:
    events = [alert(i) for i in range(300)]
    store.insert(events)
    full = events[7]["event"]["hash"]
    assert resolve_id(store, full) == full
    assert resolve_id(store, full[:12].upper()) == full
    assert resolve_id(store, f"  {full[:6]} ") == full or len(store.ids_with_prefix(full[:6])) > 1
    with pytest.raises(AlertError, match="not an alert id"):
        resolve_id(store, full[:5])  # shorter than 6
    with pytest.raises(AlertError, match="not an alert id"):
        resolve_id(store, "zzzzzzzz")
    missing = next(p for p in (f"{n:06x}" for n in range(1 << 24))
                   if not store.ids_with_prefix(p))
    with pytest.raises(AlertNotFound, match=f"no alert id starts with {missing}"):
        resolve_id(store, missing)


def test_ambiguous_prefix_lists_the_candidates(tmp_path: Path) -> None:
    s = AlertStore(str(tmp_path / "a.db"))
    try:
        for suffix in ("1", "2"):
            e = alert(0)
            e["event"]["hash"] = "abcdef0123" + suffix * 30
            s.insert([e])
        e = alert(1)
        e["event"]["hash"] = "abcdef0123" + "3" * 30
        e["event"]["kind"] = "event"  # plain events are not in the lifecycle
        s.insert([e])
        with pytest.raises(AmbiguousAlertId) as info:
            resolve_id(s, "abcdef")
        assert info.value.candidates == ["abcdef0123" + "1" * 30, "abcdef0123" + "2" * 30]
        assert resolve_id(s, "abcdef01232") == "abcdef0123" + "2" * 30
        with pytest.raises(AlertNotFound):
            resolve_id(s, "abcdef01233")
    finally:
        s.close()


# -- counts ------------------------------------------------------------------------------------


def test_false_positive_counts(store: AlertStore) -> None:
    events = ([alert(i, rule="R1", ts=f"2026-11-1{i % 2 + 5}T08:00:00+07:00") for i in range(6)]
              + [alert(10 + i, rule="R2") for i in range(4)] + [alert(20, rule="R3")])
    store.insert(events)
    ids = [e["event"]["hash"] for e in events]
    for alert_id in ids[:3] + ids[6:7]:
        set_status(store, alert_id, Status.FALSE_POSITIVE, by="an")
    set_status(store, ids[0], Status.ACKNOWLEDGED, by="an")  # reopened: counts no more
    set_status(store, ids[10], Status.RESOLVED, by="an")
    counts = false_positive_counts(store)
    assert [(r.rule_id, r.rule_name, r.false_positives, r.total) for r in counts] == [
        ("R1", "Rule R1", 2, 6), ("R2", "Rule R2", 1, 4)]
    assert counts[0].ratio == pytest.approx(1 / 3)
    assert counts[1].as_dict() == {"rule_id": "R2", "rule_name": "Rule R2",
                                   "false_positives": 1, "total": 4, "ratio": 0.25}
    assert [r.rule_id for r in false_positive_counts(store, include_zero=True)] == [
        "R1", "R2", "R3"]
    # since: alert time. Alerts 1, 3, 5 are on the 16th (the 15th is before "since").
    since = datetime(2026, 11, 16, tzinfo=alerts.local_zone())
    recent = {r.rule_id: (r.false_positives, r.total) for r in
              false_positive_counts(store, since, include_zero=True)}
    assert recent["R1"] == (1, 3)
    by_status = status_counts(store)
    assert by_status == {Status.NEW: 6, Status.ACKNOWLEDGED: 1, Status.FALSE_POSITIVE: 3,
                         Status.RESOLVED: 1}
    assert store.false_positives_by_rule() == {"R1": 2, "R2": 1}


def test_vendor_alerts_without_rule_id_count_by_name(store: AlertStore) -> None:
    events = [alert(i) for i in range(5)]
    for i, event in enumerate(events):  # EDR alerts name a threat, not a rule id
        event["rule"] = {"name": "Webshell.PHP.ChinaChopper" if i < 3 else "EICAR-Test-File"}
    store.insert(events)
    for event in events[:2] + events[3:4]:
        set_status(store, event["event"]["hash"], Status.FALSE_POSITIVE, by="an")
    counts = false_positive_counts(store)
    assert [(r.rule_id, r.rule_name, r.false_positives, r.total) for r in counts] == [
        ("", "Webshell.PHP.ChinaChopper", 2, 3), ("", "EICAR-Test-File", 1, 2)]
    assert store.false_positives_by_rule() == {"Webshell.PHP.ChinaChopper": 2,
                                               "EICAR-Test-File": 1}


def test_parse_since() -> None:
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    assert parse_since("24h", now) == datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    assert parse_since("7d", now) == datetime(2026, 11, 16, 12, 0, tzinfo=UTC)
    assert parse_since("2026-11-16").utcoffset().total_seconds() == 7 * 3600  # type: ignore[union-attr]
    assert parse_since("2026-11-16T08:00:00Z") == datetime(2026, 11, 16, 8, tzinfo=UTC)
    with pytest.raises(ValueError, match="use a duration"):
        parse_since("yesterday")


def test_local_time() -> None:
    assert alerts.local_time("2026-11-16T01:12:44Z") == "2026-11-16 08:12"
    assert alerts.local_time("2026-11-16T08:12:44+07:00", seconds=True) == "2026-11-16 08:12:44"
    assert alerts.local_time(None) == "-"


# -- the sink's gauge ----------------------------------------------------------------------------


async def test_sink_keeps_status_and_exports_false_positives(tmp_path: Path, uid: str) -> None:
    sink = SqliteSink(SqliteSink.Config(type="sqlite"),
                      PluginContext(name=uid, dead_letter=None, state_dir=str(tmp_path)))
    await sink.start()
    try:
        events = [alert(i, rule="R9") for i in range(3)]
        await sink.write(events)
        assert sink.store is not None
        set_status(sink.store, events[0]["event"]["hash"], Status.FALSE_POSITIVE, by="an")
        await sink.write(events)  # a retry keeps the status
        assert sink.store.get(events[0]["event"]["hash"]).status == "false_positive"  # type: ignore[union-attr]
        await sink.refresh_gauge()
        assert sample_value("socd_alert_false_positives", sink=uid, rule="R9") == 1
        set_status(sink.store, events[0]["event"]["hash"], Status.ACKNOWLEDGED, by="an")
        await sink.refresh_gauge()
        assert not series_exists("socd_alert_false_positives", sink=uid, rule="R9")
        set_status(sink.store, events[1]["event"]["hash"], Status.FALSE_POSITIVE, by="an")
        await sink.refresh_gauge()
        assert sample_value("socd_alert_false_positives", sink=uid, rule="R9") == 1
    finally:
        await sink.close()
    assert not series_exists("socd_alert_false_positives", sink=uid, rule="R9")
