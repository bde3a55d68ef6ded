"""Console follow-ups of issue 19: the favicon, the queue's sorts, the bulk form's size,
free text folded alike by both sources, ``console.alert_source``, and the documents'
placeholder warning."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml

from socd import cli
from socd import config as config_mod
from socd.errors import ConfigError

from ..console_alerts import alert
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
    ("blocker", "store", "sink 'blocker' has type blocker", "use one of auto, store, store"),
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
    db = sqlite3.connect(path)  # version 3: no search column, no rule index
    db.execute("DROP INDEX alerts_q_rule")
    db.execute("ALTER TABLE alerts DROP COLUMN search")
    db.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    store = AlertStore(str(path))
    try:
        assert store.schema_version() == "4"
        assert len(store.search(AlertQuery(text="ĐĂNG NHẬP"))) == 2
        [row] = store.query("SELECT search FROM alerts WHERE rule_name = ?", (_VI[0][0],))
        assert row[0].split("\x1f")[2:] == ["lỗi đăng nhập ssh", "máy-chủ-01", "sở y tế"]
        names = {r[0] for r in store.query("SELECT name FROM sqlite_master WHERE type='index'")}
        assert "alerts_q_rule" in names
    finally:
        store.close()
