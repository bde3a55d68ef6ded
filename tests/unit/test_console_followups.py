"""Console follow-ups of issue 19: the favicon, the queue's sorts, the bulk form's size,
free text folded alike by both sources, ``console.alert_source``, and the documents'
placeholder warning."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from socd import cli
from socd import config as config_mod

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
