"""The notification and final report documents: Markdown, HTML, and PDF text."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.unit.test_incident_cli import _commands, env, run  # noqa: F401 (fixtures)

pytestmark = pytest.mark.usefixtures("_commands")


@pytest.fixture
def incident(env: tuple[str, list[str], Path], capsys: pytest.CaptureFixture[str],  # noqa: F811
             tmp_path: Path) -> tuple[str, str]:
    cfg, ids, _ = env
    # the contact block comes from the incidents: section when the config has it; here
    # the defaults (empty) are used, so only the fixed texts are checked.
    code, out, _ = run(capsys, "incident", "open", "--alert", ids[0], "--alert", ids[1],
                       "--title", "Máy chủ bị cài mã độc kết nối C&C", "--discovered",
                       "2025-11-10T08:15", "--system", "Hệ thống một cửa điện tử",
                       "--level", "4", "--description", "Máy chủ srv-0 kết nối tới máy chủ "
                       "điều khiển", "-c", cfg)
    assert code == 0
    iid = out.split()[1]
    for argv in (("action", iid, "--layer", "1", "--text", "Ngắt kết nối mạng máy chủ"),
                 ("action", iid, "--layer", "2", "--text", "Phân tích mẫu mã độc, chặn IP"),
                 ("impact", iid, "--set", "service_interruption,integrity_loss",
                  "--beyond-capacity"),
                 ("response-ended", iid, "--at", "2025-11-12T16:00")):
        assert run(capsys, "incident", *argv, "-c", cfg)[0] == 0
    return cfg, iid


def _doc(capsys: pytest.CaptureFixture[str], cfg: str, iid: str, kind: str,
         fmt: str) -> str:
    code, out, err = run(capsys, "incident", "doc", iid, "--kind", kind, "--format", fmt,
                         "-c", cfg)
    assert (code, err) == (0, "")
    return out


def test_notification_markdown(incident: tuple[str, str],
                               capsys: pytest.CaptureFixture[str]) -> None:
    cfg, iid = incident
    md = _doc(capsys, cfg, iid, "notification", "md")
    assert md.startswith("# BÁO CÁO BAN ĐẦU SỰ CỐ AN TOÀN THÔNG TIN MẠNG")
    for text in (f"Mã sự cố: **{iid}**", "Thời điểm phát hiện: 08:15 ngày 10/11/2025",
                 "Hệ thống bị ảnh hưởng: Hệ thống một cửa điện tử",
                 "Cấp độ an toàn hệ thống thông tin: Cấp độ 4",
                 "Mô tả: Máy chủ srv-0 kết nối tới máy chủ điều khiển",
                 "- Gián đoạn dịch vụ của hệ thống", "- Mất tính toàn vẹn dữ liệu",
                 "Sự cố nghiêm trọng (Quyết định 05/2017/QĐ-TTg): **Có**",
                 "- ip: `185.220.101.7` (socd.ioc.values)",
                 "- domain: `c2.example-bad.vn` (socd.ioc.values)",
                 "- ip: `203.0.113.9` (source.ip)", "- ip: `10.10.20.11` (destination.ip)",
                 f"- hash: `{'a' * 64}` (file.hash.sha256)",
                 "Lớp 1 (tại chỗ) — truc-ban: Ngắt kết nối mạng máy chủ",
                 "Lớp 2 (SOC) — truc-ban: Phân tích mẫu mã độc, chặn IP",
                 "Trạng thái: đã kết thúc ứng cứu",
                 "Hạn báo cáo ban đầu: 08:15 ngày 15/11/2025", "Mức độ cảnh báo cao nhất: "
                 "nghiêm trọng"):
        assert text in md, text


def test_final_report_html(incident: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    cfg, iid = incident
    html = _doc(capsys, cfg, iid, "final", "html")
    assert "<h1>BÁO CÁO KẾT THÚC ỨNG CỨU SỰ CỐ AN TOÀN THÔNG TIN MẠNG</h1>" in html
    assert "Máy chủ bị cài mã độc kết nối C&amp;C" in html  # escaped
    assert "<td>16:00 ngày 12/11/2025</td>" in html  # the response ended
    assert "<td>16:00 ngày 17/11/2025</td>" in html  # the final report is due 5 days later
    assert "<code>185.220.101.7</code>" in html
    # the official layout's font, then fallbacks with Vietnamese glyphs (issue 19)
    assert 'font-family: "Times New Roman", "Liberation Serif", "DejaVu Serif", serif' in html


def test_pdf_keeps_vietnamese_text(incident: tuple[str, str], tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    pdftotext = shutil.which("pdftotext")
    if pdftotext is None:
        pytest.fail("pdftotext is missing: run `make services` (it installs poppler-utils)")
    cfg, iid = incident
    out = tmp_path / "final.pdf"
    code, stdout, err = run(capsys, "incident", "doc", iid, "--kind", "final", "--format",
                            "pdf", "--out", str(out), "-c", cfg)
    assert (code, err) == (0, "")
    assert str(out) in stdout
    assert out.read_bytes().startswith(b"%PDF")
    text = subprocess.run([pdftotext, str(out), "-"], capture_output=True,
                          check=True, timeout=60).stdout.decode()
    flat = " ".join(text.split())
    for phrase in ("BÁO CÁO KẾT THÚC ỨNG CỨU SỰ CỐ", "Máy chủ bị cài mã độc kết nối C&C",
                   "Hệ thống một cửa điện tử", "Cấp độ 4", "Gián đoạn dịch vụ của hệ thống",
                   "Ngắt kết nối mạng máy chủ", "Phân tích mẫu mã độc, chặn IP",
                   "185.220.101.7", "đã kết thúc ứng cứu", "nghiêm trọng", iid):
        assert phrase in flat, phrase
