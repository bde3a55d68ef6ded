"""The official layout's texts (Decree 30/2020/NĐ-CP), the `documents:` section's checks,
and the daemon's scheduled reports carrying the configured fixed parts (issue 19)."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from socd import config as config_mod
from socd.alerts.store import AlertStore
from socd.config.documents import DocumentsConfig
from socd.errors import ConfigError
from socd.reports.official import (
    BLANK_NUMBER,
    date_line,
    letterhead,
    number_line,
    recipient_lines,
)
from socd.reports.periods import period_for
from socd.reports.testing import seed_events


@pytest.mark.parametrize(("day", "text"), [
    (date(2026, 2, 5), "Ninh Hòa, ngày 05 tháng 02 năm 2026"),  # day < 10 and month 2: 0
    (date(2026, 1, 31), "Ninh Hòa, ngày 31 tháng 01 năm 2026"),
    (date(2026, 3, 1), "Ninh Hòa, ngày 01 tháng 3 năm 2026"),  # months 3-12: no 0
    (date(2026, 12, 24), "Ninh Hòa, ngày 24 tháng 12 năm 2026"),
])
def test_date_line_pads_as_the_decree_says(day: date, text: str) -> None:
    assert date_line("Ninh Hòa", day) == text


def test_number_line_and_recipients() -> None:
    assert number_line("Số: {number}/{type}-{code}", "17", "BC", "STTTT") == "Số: 17/BC-STTTT"
    assert number_line("Số: {number}/{type}-{code}", None, "BC", "X") == \
        f"Số: {BLANK_NUMBER}/BC-X"
    assert number_line("Số {number}/{code}", " 5 ", "BC", "X") == "Số 5/X"
    assert recipient_lines(["Như trên;", "UBND tỉnh (b/c).", "Lưu: VT"]) == (
        "- Như trên;", "- UBND tỉnh (b/c);", "- Lưu: VT.")
    assert recipient_lines(["Lưu: VT, TTGS"]) == ("- Lưu: VT, TTGS.",)


def test_letterhead_from_defaults_and_values() -> None:
    when = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)
    default = letterhead(DocumentsConfig(), "report", title="Tiêu đề", when=when)
    assert default.number_line == f"Số: {BLANK_NUMBER}/BC-TTGS"
    assert default.recipients == ("- Như trên;", "- Lưu: VT, TTGS.")
    assert default.signer_title == ("GIÁM ĐỐC",)
    assert (default.national_name, default.motto) == ("CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM",
                                                      "Độc lập - Tự do - Hạnh phúc")
    cfg = DocumentsConfig(parent_body="Ubnd tỉnh Bình Định", issuing_body="sở khoa học",
                          incident_type_code="TB", signer_title=["kt. giám đốc"],
                          font_family="Liberation Serif")
    head = letterhead(cfg, "incident", title="T", doc_type="", number="9", when=when)
    assert (head.parent_body, head.issuing_body) == ("UBND TỈNH BÌNH ĐỊNH", "SỞ KHOA HỌC")
    assert head.number_line == "Số: 9/TB-TTGS"
    assert head.signer_title == ("KT. GIÁM ĐỐC",)
    assert head.doc_type == ""
    assert head.css_fonts == '"Liberation Serif", "DejaVu Serif", serif'


def _load_error(section: str) -> str:
    with pytest.raises(ConfigError) as info:
        config_mod.loads(f"sinks:\n  s:\n    type: sqlite\ndocuments:\n{section}",
                         file="socd.yaml", env={})
    return str(info.value)


@pytest.mark.parametrize(("section", "key", "message"), [
    ("  number_pattern: 'Số: {num}/{code}'\n", "documents.number_pattern", "unknown field"),
    ("  number_pattern: 'Số: {number.__class__}'\n", "documents.number_pattern",
     "unknown field"),
    ("  number_pattern: 'Số: {code}'\n", "documents.number_pattern", "must contain {number}"),
    ("  number_pattern: 'Số: {number'\n", "documents.number_pattern", "not a valid pattern"),
    ("  font_family: 'x\"; } body { color: red'\n", "documents.font_family", "pattern"),
    ("  font_size_pt: 12\n", "documents.font_size_pt", "13"),
    ("  recipients: []\n", "documents.recipients", "at least 1"),
    ("  signer_title: ['  ']\n", "documents.signer_title", "not blank"),
    ("  issuing_body: ''\n", "documents.issuing_body", "at least 1"),
    ("  colour: red\n", "documents.colour", "unknown key"),
])
def test_bad_documents_section(section: str, key: str, message: str) -> None:
    text = _load_error(section)
    assert "socd.yaml" in text
    assert key in text
    assert message in text


async def test_scheduled_report_carries_the_configured_layout(tmp_path: Path) -> None:
    """The daemon's scheduler (ReportScheduler.from_config) renders with `documents:`."""
    from socd.reports.schedule import ReportScheduler

    state = tmp_path / "state"
    state.mkdir()
    store = AlertStore(str(state / "alerts.db"))
    store.insert(seed_events())
    store.close()
    cfg = config_mod.loads(
        f"state_dir: {state}\nsinks:\n  store:\n    type: sqlite\n"
        "reports:\n  enabled: true\n  formats: [html, docx]\n"
        "documents:\n  issuing_body: Sở Lịch Trình Thử\n  place: Tuy Phước\n"
        "  signer_name: Lê Văn Lịch\n", file="socd.yaml", env={})

    def no_notifier(name: str) -> None:
        raise AssertionError(f"no notifier is configured, not even {name}")

    service = ReportScheduler.from_config(cfg, no_notifier)  # type: ignore[arg-type]
    assert service is not None
    result = await service.generate("weekly", period_for("weekly", "16/11/2026", "22/11/2026"))
    assert set(result.files) == {"html", "docx"}
    _check_scheduled(result.files)


def _check_scheduled(files: dict[str, str]) -> None:
    import docx

    html = Path(files["html"]).read_text(encoding="utf-8")
    assert "SỞ LỊCH TRÌNH THỬ" in html
    assert "Lê Văn Lịch" in html
    doc = docx.Document(io.BytesIO(Path(files["docx"]).read_bytes()))
    head = doc.tables[0]
    assert "SỞ LỊCH TRÌNH THỬ" in head.cell(0, 0).text
    assert head.cell(1, 1).text.startswith("Tuy Phước, ngày ")
    assert doc.tables[-1].cell(0, 1).paragraphs[-1].text == "Lê Văn Lịch"
