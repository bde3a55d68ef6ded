"""The official layout of Decree 30/2020/NĐ-CP on the documents that leave the SOC (issue 19):
a weekly report and an incident notification, each as PDF and as Word, carry every fixed
part with the values of the `documents:` section, checked as a reader gets them: the PDF's
text from pdftotext (poppler-utils), the .docx read back with python-docx.

The expected texts are written out here, not taken from socd.reports.official. The clock
is frozen (time-machine) on 05/02/2026 local time, so the date line is known and shows
the decree's zero padding of a day below 10 and of the month 2.
"""

from __future__ import annotations

import html
import io
import re
import shutil
import subprocess
import unicodedata
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import time_machine

from socd.alerts.store import AlertStore
from socd.reports.testing import seed_events
from tests.unit.test_incident_cli import _commands, run, seeded_alerts  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("_commands")]

# 05/02/2026 03:00 UTC is 10:00 in Asia/Ho_Chi_Minh.
FROZEN = datetime(2026, 2, 5, 3, 0, tzinfo=UTC)
DOCUMENTS = """\
documents:
  parent_body: UBND tỉnh Khánh Hòa Thử
  issuing_body: Sở Thử Nghiệm Văn Bản
  issuer_code: STNVB
  report_type_code: BCX
  incident_type_code: TBX
  place: Ninh Hòa
  addressees: [Cục An toàn thông tin]
  recipients: [Như trên, "Cục ATTT (để b/c)", "Lưu: VT, TTGS-THỬ"]
  signer_title: [KT. GIÁM ĐỐC, PHÓ GIÁM ĐỐC]
  signer_name: Trần Thị Thử Nghiệm
  font_size_pt: 14
"""
LETTERHEAD = ["UBND TỈNH KHÁNH HÒA THỬ", "SỞ THỬ NGHIỆM VĂN BẢN",
              "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", "Độc lập - Tự do - Hạnh phúc",
              "Ninh Hòa, ngày 05 tháng 02 năm 2026"]
COMMON = ["Kính gửi: Cục An toàn thông tin",
          "Nơi nhận:", "- Như trên;", "- Cục ATTT (để b/c);", "- Lưu: VT, TTGS-THỬ.",
          "KT. GIÁM ĐỐC", "PHÓ GIÁM ĐỐC", "Trần Thị Thử Nghiệm"]
REPORT = [*COMMON, "BÁO CÁO",
          "Tóm tắt tình hình an toàn thông tin tuần 47/2026 (từ ngày 16/11/2026 đến ngày "
          "22/11/2026)"]
NOTICE = [*COMMON, "BÁO CÁO BAN ĐẦU SỰ CỐ AN TOÀN THÔNG TIN MẠNG",
          "Máy chủ bị cài mã độc kết nối C&C"]


def flat(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).split())


def _tool() -> str:
    tool = shutil.which("pdftotext")
    if tool is None:
        pytest.fail("pdftotext is missing: it is installed by `make services` "
                    "(poppler-utils)", pytrace=False)
    return tool


def pdf_text(path: Path) -> str:
    return flat(subprocess.run([_tool(), str(path), "-"], capture_output=True, check=True,
                               timeout=60).stdout.decode())


def _words(path: Path) -> list[tuple[float, float, float, float, str]]:
    """Page 1's words with their boxes (xMin, yMin, xMax, yMax), from pdftotext -bbox."""
    out = subprocess.run([_tool(), "-bbox", "-f", "1", "-l", "1", str(path), "-"],
                         capture_output=True, check=True, timeout=60).stdout.decode()
    return [(float(a), float(b), float(c), float(d), html.unescape(w)) for a, b, c, d, w in
            re.findall(r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" '
                       r'yMax="([\d.]+)">([^<]*)</word>', out)]


def _letterhead_blocks(path: Path, number: str) -> None:
    """Read as its two columns (plain pdftotext interleaves their wrapped lines): left,
    the parent and issuing bodies over the number; right, the national name and motto
    over the date line."""
    words = _words(path)
    split = next(w[0] for w in words if w[4] == "CỘNG")
    bottom = next(w[3] for w in words if w[4] == "Số:") + 3
    left = " ".join(w[4] for w in words if w[2] < split and w[3] <= bottom)
    right = " ".join(w[4] for w in words if w[0] >= split and w[3] <= bottom)
    assert flat(left) == f"UBND TỈNH KHÁNH HÒA THỬ SỞ THỬ NGHIỆM VĂN BẢN {number}"
    assert flat(right) == ("CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM Độc lập - Tự do - Hạnh phúc "
                           "Ninh Hòa, ngày 05 tháng 02 năm 2026")


def docx_text(path: Path) -> tuple[str, Any]:
    import docx

    doc = docx.Document(io.BytesIO(path.read_bytes()))
    parts = [p.text for p in doc.paragraphs]
    for table in doc.tables:
        parts += [cell.text for row in table.rows for cell in row.cells]
    return flat("\n".join(parts)), doc


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    import socd.cli as cli_mod

    if "socd.cli.report" not in cli_mod._COMMAND_MODULES:
        monkeypatch.setattr(cli_mod, "_COMMAND_MODULES",
                            (*cli_mod._COMMAND_MODULES, "socd.cli.report"))
    for name in ("SOCD_CONFIG", "SUDO_USER", "SOCD_AUDIT_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("USER", "truc-ban")
    state = tmp_path / "state"
    cfg = tmp_path / "socd.yaml"
    cfg.write_text(f"state_dir: {state}\nsinks:\n  store:\n    type: sqlite\n"
                   f"    path: alerts.db\n{DOCUMENTS}", encoding="utf-8")
    store = AlertStore(str(state / "alerts.db"))
    store.insert([*seed_events(), *seeded_alerts()])
    store.close()
    with time_machine.travel(FROZEN, tick=False):
        yield str(cfg), tmp_path


def _report(capsys: pytest.CaptureFixture[str], cfg: str, out: Path, fmt: str,
            *number: str) -> Path:
    code, _, err = run(capsys, "report", "weekly", "--from", "16/11/2026", "--to",
                       "22/11/2026", "--format", fmt, *number, "--out", str(out), "-c", cfg)
    assert code == 0, err
    return out


def _notice(capsys: pytest.CaptureFixture[str], cfg: str, folder: Path,
            *number: str) -> dict[str, Path]:
    ids = [e["event"]["hash"] for e in seeded_alerts()]
    code, out, err = run(capsys, "incident", "open", "--alert", ids[0], "--alert", ids[1],
                         "--title", "Máy chủ bị cài mã độc kết nối C&C", "--discovered",
                         "2026-02-04T08:15", "-c", cfg)
    assert code == 0, err
    iid = out.split()[1]
    paths = {}
    for fmt in ("pdf", "docx"):
        paths[fmt] = folder / f"notice.{fmt}"
        code, _, err = run(capsys, "incident", "doc", iid, "--kind", "notification",
                           "--format", fmt, *number, "--out", str(paths[fmt]), "-c", cfg)
        assert (code, err) == (0, ""), err
    return paths


def _every_part(text: str, expected: list[str]) -> None:
    missing = [part for part in expected if part not in text]
    assert not missing, f"missing {missing} in {text[:1500]}"


def test_weekly_report_pdf_and_docx(setup: tuple[str, Path],
                                    capsys: pytest.CaptureFixture[str]) -> None:
    cfg, tmp = setup
    path = _report(capsys, cfg, tmp / "weekly.pdf", "pdf", "--number", "17")
    _letterhead_blocks(path, "Số: 17/BCX-STNVB")
    pdf = pdf_text(path)
    _every_part(pdf, REPORT)
    assert "2. Cảnh báo theo hệ thống giám sát và mức độ" in pdf  # the body is the report's
    text, doc = docx_text(_report(capsys, cfg, tmp / "weekly.docx", "docx", "--number", "17"))
    _every_part(text, [*LETTERHEAD, *REPORT, "Số: 17/BCX-STNVB"])
    assert "2. Cảnh báo theo hệ thống giám sát và mức độ" in text
    _docx_layout(doc)
    # the body's tables are Word tables with the same rows as the other formats
    grids = [t for t in doc.tables if t.style is not None and t.style.name == "Table Grid"]
    assert [c.text for c in grids[0].rows[0].cells][:2] == ["Hệ thống giám sát", "Thấp"]
    assert [c.text for c in grids[0].rows[-1].cells][0] == "Tổng cộng"


def _docx_layout(doc: Any) -> None:
    """The letterhead is a 2x2 borderless Word table; font and size as configured; the
    date line italic, the signer bold."""
    from docx.shared import Pt

    head = doc.tables[0]
    assert (len(head.rows), len(head.columns)) == (2, 2)
    assert head.style is None or head.style.name != "Table Grid"
    assert "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM" in head.cell(0, 1).text
    assert head.cell(1, 0).text.startswith("Số: ")
    date_run = head.cell(1, 1).paragraphs[0].runs[0]
    assert date_run.text == "Ninh Hòa, ngày 05 tháng 02 năm 2026"
    assert date_run.italic
    normal = doc.styles["Normal"]
    assert (normal.font.name, normal.font.size) == ("Times New Roman", Pt(14))
    section = doc.sections[0]
    assert (round(section.page_width.mm), round(section.page_height.mm)) == (210, 297)
    sign = doc.tables[-1]
    assert sign.cell(0, 0).paragraphs[0].text == "Nơi nhận:"
    name = sign.cell(0, 1).paragraphs[-1]
    assert name.text == "Trần Thị Thử Nghiệm"
    assert name.runs[0].bold


def test_incident_notice_pdf_and_docx(setup: tuple[str, Path],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    cfg, tmp = setup
    paths = _notice(capsys, cfg, tmp, "--number", "42")
    _letterhead_blocks(paths["pdf"], "Số: 42/TBX-STNVB")
    pdf = pdf_text(paths["pdf"])
    _every_part(pdf, NOTICE)
    assert "185.220.101.7" in pdf  # the body: the IoCs of the linked alerts
    text, doc = docx_text(paths["docx"])
    _every_part(text, [*LETTERHEAD, *NOTICE, "Số: 42/TBX-STNVB"])
    assert "185.220.101.7" in text
    _docx_layout(doc)


def test_number_left_blank_for_the_clerk(setup: tuple[str, Path],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Without --number the Số line keeps its type and issuer codes and a gap for the
    number the clerk writes when registering the outgoing document."""
    cfg, tmp = setup
    paths = _notice(capsys, cfg, tmp)
    text, doc = docx_text(paths["docx"])
    line = doc.tables[0].cell(1, 0).text
    assert line.startswith("Số:")
    assert line.endswith("/TBX-STNVB")
    assert not any(ch.isdigit() for ch in line)
    _letterhead_blocks(_report(capsys, cfg, tmp / "weekly.pdf", "pdf"), "Số: /BCX-STNVB")
