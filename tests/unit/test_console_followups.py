"""Console follow-ups of issue 19: the favicon, the queue's sorts, the bulk form's size,
free text folded alike by both sources, ``console.alert_source``, and the documents'
placeholder warning."""

from __future__ import annotations

import html
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml

from socd import cli
from socd import config as config_mod
from socd.errors import ConfigError

from ..console_alerts import alert, alerts
from ..console_pages import console


async def test_favicon_answers_without_sign_in(tmp_path: Path) -> None:
    async with console(tmp_path) as c:
        r = await c.client.get("/favicon.ico", allow_redirects=False)
        assert r.status == 204
        login = await c.page("/login")
        assert 'rel="icon" type="image/svg+xml" href="/static/favicon.svg"' in login
        r = await c.client.get("/static/favicon.svg")
        assert r.status == 200
        assert r.content_type == "image/svg+xml"
        assert (await r.text()).startswith("<svg")


def test_check_config_warns_on_the_documents_placeholders(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shipped = yaml.safe_load(Path("deploy/systemd/socd.yaml").read_text(encoding="utf-8"))
    path = tmp_path / "socd.yaml"
    doc = {"state_dir": str(tmp_path / "state"), "documents": shipped["documents"]}
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    assert cli.main(["check-config", "-c", str(path)]) == 0  # a warning, not a failure
    err = capsys.readouterr().err
    assert "documents.parent_body: still the placeholder 'UBND TỈNH ……'" in err
    assert "documents.place: still the placeholder '……'" in err
    assert "documents.issuing_body" not in err  # the shipped one is a real name
    # Filled in: no warning; no documents section at all: none either.
    doc["documents"] = {**shipped["documents"], "parent_body": "UBND TỈNH BÌNH ĐỊNH",
                        "place": "Bình Định", "issuing_body": "SỞ KHOA HỌC VÀ CÔNG NGHỆ"}
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    assert config_mod.load(str(path)).warnings == ()
    doc["documents"]["issuing_body"] = "TRUNG TÂM ……"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    [warning] = config_mod.load(str(path)).warnings
    assert "documents.issuing_body: still the placeholder" in str(warning)
    del doc["documents"]
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    assert config_mod.load(str(path)).warnings == ()


def _sources_config(alert_source: str, tmp_path: Path) -> str:
    return (f"state_dir: {tmp_path}\n"
            "sinks:\n"
            "  store:\n    type: sqlite\n    select: alerts\n    path: alerts.db\n"
            "  archive:\n    type: sqlite\n    select: alerts\n    path: archive.db\n"
            "  es:\n    type: elasticsearch\n    hosts: ['http://127.0.0.1:9']\n"
            "    index_prefix: socd-a\n"
            "  es2:\n    type: elasticsearch\n    hosts: ['http://127.0.0.1:9']\n"
            "    index_prefix: socd-b\n"
            "  blocker:\n    type: blocker\n    dry_run: true\n"
            f"console:\n  alert_source: {alert_source}\n")


@pytest.mark.parametrize(("wanted", "store_file", "source"), [
    ("auto", "alerts.db", "store"), ("store", "alerts.db", "store"),
    ("archive", "archive.db", "store"), ("elasticsearch", "alerts.db", "socd-a-*"),
    ("es2", "alerts.db", "socd-b-*")])
def test_alert_source_names_the_sink(tmp_path: Path, wanted: str, store_file: str,
                                     source: str) -> None:
    from socd.alerts.store import AlertStore
    from socd.console.services import ConsoleServices

    cfg = config_mod.loads(_sources_config(wanted, tmp_path), file="socd.yaml")
    services = ConsoleServices.from_config(cfg)
    try:
        assert services.alert_store_path == str(tmp_path / store_file)
        AlertStore(str(tmp_path / store_file)).close()
        found = services.alerts()
        assert found.name == "store" if source == "store" else found.index == source  # type: ignore[attr-defined]
    finally:
        services.close()


@pytest.mark.parametrize(("wanted", "sinks", "message", "hint"), [
    ("store", "es", "alert_source is 'store' but no sink has type sqlite",
     "use one of auto, elasticsearch, es"),
    ("elasticsearch", "store", "no sink has type elasticsearch", "use one of auto, store"),
    ("blocker", "store", "sink 'blocker' has type blocker", "use one of auto, store)"),
    ("stroe", "store", "no sink named 'stroe'", "did you mean 'store'?")])
def test_alert_source_of_nothing_is_a_config_error(tmp_path: Path, wanted: str, sinks: str,
                                                   message: str, hint: str) -> None:
    text = _sources_config(wanted, tmp_path)
    keep = {"store": ("store", "blocker"), "es": ("es", "blocker")}[sinks]
    lines = text.split("\n")
    out: list[str] = []
    name = ""
    for line in lines:
        if line.startswith("  ") and not line.startswith("    ") and line.strip().endswith(":"):
            name = line.strip()[:-1]
        if line.startswith("console:"):
            name = ""
        if not name or name in keep or not line.startswith("  "):
            out.append(line)
    with pytest.raises(ConfigError) as caught:
        config_mod.loads("\n".join(out), file="socd.yaml")
    [problem] = caught.value.problems
    text = str(problem)
    assert text.startswith("socd.yaml:"), text
    assert "console.alert_source" in text, text
    assert message in text, text
    assert hint in text, text


# -- free text: every letter's case, alike in the store and Elasticsearch ------------------

_VI = [("Lỗi ĐĂNG NHẬP SSH", "máy-chủ-01"), ("lỗi đăng nhập sai mật khẩu", "MÁY-CHỦ-02"),
       ("Dang nhap (khong dau)", "host_%_x")]


def _vi_alerts() -> list[dict[str, Any]]:
    out = []
    for i, (rule_name, host) in enumerate(_VI):
        event = alert(i)
        event["rule"]["name"] = rule_name
        event["host"]["name"] = host
        out.append(event)
    return out


@pytest.mark.parametrize(("text", "found"), [
    ("ĐĂNG NHẬP", [0, 1]), ("đăng nhập", [0, 1]), ("Đăng Nhập", [0, 1]), ("dang nhap", [2]),
    ("MÁY-CHỦ", [0, 1]), ("%", [2]), ("_%_", [2]), ("nhập\x1fmáy", []), ("khẩu", [1])])
def test_free_text_folds_every_letter(tmp_path: Path, text: str, found: list[int]) -> None:
    from socd.alerts.store import AlertQuery, AlertStore

    store = AlertStore(str(tmp_path / "alerts.db"))
    try:
        events = _vi_alerts()
        store.insert(events)
        got = {a.id for a in store.search(AlertQuery(text=text))}
        assert got == {events[i]["event"]["hash"] for i in found}
    finally:
        store.close()


def test_elasticsearch_regexp_of_a_text() -> None:
    from socd.console.data_es import contains_regexp

    assert contains_regexp("Đăng 1") == ".*[Đđ][Ăă][Nn][Gg]\\ 1.*"
    # every operator is literal: nothing a user types widens the match
    assert contains_regexp('.*?+|{}[]()"\\#@&<>~') == (
        ".*" + "".join("\\" + c for c in '.*?+|{}[]()"\\#@&<>~') + ".*")
    assert contains_regexp("中") == ".*中.*"


def test_a_version_3_store_is_migrated_with_its_search_column(tmp_path: Path) -> None:
    from socd.alerts.store import AlertQuery, AlertStore

    path = tmp_path / "v3.db"
    store = AlertStore(str(path))
    store.insert(_vi_alerts())
    store.close()
    db = sqlite3.connect(path)  # version 3: no search column, no rule or text index
    db.execute("DROP INDEX alerts_q_rule")
    db.execute("DROP INDEX alerts_q_text")
    db.execute("ALTER TABLE alerts DROP COLUMN search")
    db.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    store = AlertStore(str(path))
    try:
        assert store.schema_version() == "5"
        assert len(store.search(AlertQuery(text="ĐĂNG NHẬP"))) == 2
        [row] = store.query("SELECT search FROM alerts WHERE rule_name = ?", (_VI[0][0],))
        assert row[0].split("\x1f")[2:] == ["lỗi đăng nhập ssh", "máy-chủ-01", "sở y tế"]
        names = {r[0] for r in store.query("SELECT name FROM sqlite_master WHERE type='index'")}
        assert {"alerts_q_rule", "alerts_q_text"} <= names
    finally:
        store.close()


def test_free_text_walks_the_text_index_not_the_rows(tmp_path: Path) -> None:
    """The plan, not a timing: a page of free text tests ``search`` on the entries of
    ``alerts_q_text`` in time order; its counts per severity are a covering scan."""
    from socd.alerts.store import AlertQuery, AlertStore, _select, _where

    store = AlertStore(str(tmp_path / "alerts.db"))
    try:
        store.insert(alerts(50))
        q = AlertQuery(text="ĐĂNG", unit="Sở Y tế")
        where, params = _where(q, page=True)
        plan = " | ".join(str(r[3]) for r in store.query(
            f"EXPLAIN QUERY PLAN {_select(q)} WHERE {where} ORDER BY ts_ms DESC, id DESC "
            "LIMIT 51", params))
        assert "USING INDEX alerts_q_text" in plan, plan
        assert "TEMP B-TREE FOR ORDER BY" not in plan, plan
        expected: dict[str, int] = {}
        for e in alerts(50):
            if e["host"]["name"] == "host-1":
                expected[e["socd"]["severity"]] = expected.get(e["socd"]["severity"], 0) + 1
        assert store.severity_counts(AlertQuery(text="host-1")) == expected
        assert store.count_matching(AlertQuery(text="HOST-1"), 100) == 7
    finally:
        store.close()


# -- sorts ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("sort", "filters", "index"), [
    # a severity alone: its index or a time index (severity tested on the entry)
    ("severity", {}, ("alerts_q_severity", "alerts_q_ts", "alerts_q_text")),
    ("severity", {"unit": "Sở Y tế"}, ("alerts_q_severity",)),
    ("unit", {}, ("alerts_q_unit",)),
    ("unit", {"severity": "high"}, ("alerts_q_severity",)),
    ("rule", {}, ("alerts_q_rule",)),
])
def test_a_keyed_sort_walks_an_index_per_key(tmp_path: Path, sort: str,
                                            filters: dict[str, str],
                                            index: tuple[str, ...]) -> None:
    """The plan, not a timing: each key's part of a page reads an index in time order and
    stops after the page (only ties are sorted); the next key is one seek of the key's
    index."""
    from socd.alerts.store import _SELECT, SORT_COLUMNS, AlertQuery, AlertStore, _where

    store = AlertStore(str(tmp_path / "alerts.db"))
    try:
        store.insert(alerts(200))
        column = SORT_COLUMNS[sort]
        where, params = _where(AlertQuery(after=(1, "ab"), **filters), page=True)  # type: ignore[arg-type]
        plan = " | ".join(str(r[3]) for r in store.query(
            f"EXPLAIN QUERY PLAN {_SELECT} WHERE {where} AND {column} = ? "
            "ORDER BY ts_ms DESC, id DESC LIMIT 51", [*params, "x"]))
        assert any(f"USING INDEX {name} " in plan for name in index), plan
        assert "TEMP B-TREE FOR ORDER BY" not in plan, plan
        if sort != "severity":
            plan = " | ".join(str(r[3]) for r in store.query(
                f"EXPLAIN QUERY PLAN SELECT min({column}) FROM alerts "
                f"WHERE kind = 'alert' AND {column} > ?", ["x"]))
            assert "USING COVERING INDEX" in plan, plan
    finally:
        store.close()


def test_cursors_carry_the_sort_key() -> None:
    from socd.console.data import cursor_text, parse_cursor, query_from_params

    hexid = "ab" * 20
    for key in (None, "Sở Y tế", "", "a:b/c=="):
        text = cursor_text((1_700_000_000_000, hexid), (key,))
        assert parse_cursor(text) == ((1_700_000_000_000, hexid), (key,))
    assert parse_cursor(cursor_text((5, hexid))) == ((5, hexid), None)
    q = query_from_params({"sort": "unit", "after": cursor_text((5, hexid), ("Sở Y tế",))})
    assert (q.sort, q.after, q.after_key) == ("unit", (5, hexid), ("Sở Y tế",))
    # hostile or mismatched cursors mean "from the start", never an error
    for sort, after in (("unit", f"5:{hexid}"), ("newest", f"5:{hexid}:-"),
                        ("rule", f"5:{hexid}:k%%%"), ("rule", f"5:{hexid}:x" + "A" * 8),
                        ("rule", f"5:{hexid}:k" + "A" * 5000), ("rule", f"5:{hexid}:k_w")):
        q = query_from_params({"sort": sort, "after": after})
        assert (q.after, q.after_key) == (None, None), (sort, after)
    assert query_from_params({"sort": "drop table"}).sort == "newest"


async def test_the_queue_sorts_by_severity_and_pages_with_the_key(tmp_path: Path) -> None:
    async with console(tmp_path) as c:
        events = alerts(40)
        c.store.insert(events)
        await c.sign_in("viewer")
        text = await c.page("/alerts?sort=severity&size=15")
        assert '<option value="severity" selected>' in text
        ids = re.findall(r'href="/alerts/([0-9a-f]{40})"', text)
        critical = {e["event"]["hash"] for e in events if e["socd"]["severity"] == "critical"}
        assert set(ids[:10]) == critical  # 10 critical first, newest first
        nxt = re.search(r'href="([^"]+)" rel="next"', text)
        assert nxt is not None
        assert "sort=severity" in nxt.group(1)
        second = await c.page(html.unescape(nxt.group(1)))
        more = re.findall(r'href="/alerts/([0-9a-f]{40})"', second)
        high = [e for e in reversed(events) if e["socd"]["severity"] == "high"]
        assert more[:10] == [e["event"]["hash"] for e in high[5:]] + [
            e["event"]["hash"] for e in reversed(events)
            if e["socd"]["severity"] == "medium"][:5]
