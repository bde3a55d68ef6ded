"""Hostile inputs of the official documents (issue 19): event fields that reach an incident
document (host and rule names with markup and control characters), configured texts of
the `documents:` section with markup, and bad `--number` values. The documents are made
(HTML escaped, the .docx readable, U+FFFD where XML cannot hold a character) or the
command refuses with a usage error; nothing crashes."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from socd.alerts.store import AlertStore
from socd.cli import main
from tests.unit.test_alert_cli import alert
from tests.unit.test_incident_cli import _commands  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("_commands")

MARKUP = '<img src=x onerror="alert(1)">'
CONTROL = "srv\x00\x1b[31m\x0b-7\ufffe"
HOSTILE_CONFIG = f"""\
documents:
  issuing_body: "Sở </style><script>alert(1)</script>"
  signer_name: "{MARKUP.replace('"', "'")}"
  recipients: ["</td></table><h1>giả</h1>"]
  addressees: ["<b>Cục</b>"]
"""


@pytest.fixture
def hostile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    for name in ("SOCD_CONFIG", "SUDO_USER", "SOCD_AUDIT_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("USER", "truc-ban")
    state = tmp_path / "state"
    cfg = tmp_path / "socd.yaml"
    cfg.write_text(f"state_dir: {state}\nsinks:\n  store:\n    type: sqlite\n{HOSTILE_CONFIG}",
                   encoding="utf-8")
    event: Any = alert(0)
    event["host"]["name"] = CONTROL
    event["rule"]["name"] = MARKUP + "\x07"
    store = AlertStore(str(state / "alerts.db"))
    store.insert([event])
    store.close()
    return str(cfg), event["event"]["hash"]


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def _open(capsys: pytest.CaptureFixture[str], cfg: str, alert_id: str) -> str:
    code, out, err = _run(capsys, "incident", "open", "--alert", alert_id, "--title",
                          f"Sự cố {MARKUP}", "--discovered", "2026-11-16T08:00", "-c", cfg)
    assert code == 0, err
    return out.split()[1]


def test_hostile_fields_and_config_in_html_and_docx(
        hostile: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import docx

    cfg, alert_id = hostile
    iid = _open(capsys, cfg, alert_id)
    outs = {fmt: tmp_path / f"doc.{fmt}" for fmt in ("html", "docx", "pdf")}
    for fmt, path in outs.items():
        code, _, err = _run(capsys, "incident", "doc", iid, "--kind", "notification",
                            "--format", fmt, "--number", "7", "--out", str(path), "-c", cfg)
        assert (code, err) == (0, ""), (fmt, err)
    html = outs["html"].read_text(encoding="utf-8")
    for raw in ("<script>", "</style><", "<img", "<h1>giả", "<b>cục"):
        assert raw not in html.lower(), raw
    assert "SỞ &lt;/STYLE&gt;&lt;SCRIPT&gt;ALERT(1)&lt;/SCRIPT&gt;" in html
    assert "&lt;img src=x onerror=" in html
    assert outs["pdf"].read_bytes().startswith(b"%PDF")
    doc = docx.Document(io.BytesIO(outs["docx"].read_bytes()))
    cells = [c.text for t in doc.tables for r in t.rows for c in r.cells]
    assert any(c == "srv\ufffd\ufffd[31m\ufffd-7\ufffd" for c in cells), cells
    assert any(c == MARKUP + "\ufffd" for c in cells)  # text in Word, not markup
    assert "SỞ </STYLE><SCRIPT>ALERT(1)</SCRIPT>" in doc.tables[0].cell(0, 0).text


@pytest.mark.parametrize("number", ["<b>1</b>", "1\n2", "x" * 21, "", "１２'; --", "12 34"])
def test_bad_numbers_are_usage_errors(hostile: tuple[str, str], number: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    cfg, alert_id = hostile
    iid = _open(capsys, cfg, alert_id)
    with pytest.raises(SystemExit) as info:
        main(["incident", "doc", iid, "--kind", "final", "--format", "docx", "--number",
              number, "-c", cfg])
    assert info.value.code == 2
    assert "a document number is 1-20 letters" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["report", "weekly", "--format", "html", "--number", number, "-c", cfg])
    assert info.value.code == 2
