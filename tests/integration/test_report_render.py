"""`socd report` on the embedded default's data, in every format, checked the way a
reader sees it: the HTML in a real headless Chromium (screenshot and DOM), the PDF's
text extracted with pdftotext (diacritics intact), the XLSX read back; and a scheduled
report e-mailed through the real e-mail notifier to a real SMTP server (aiosmtpd).

Chromium and pdftotext are Debian packages (deploy/dev/apt-packages.txt) installed by
`make services`; without them these tests fail, they never skip.
"""

from __future__ import annotations

import email
import email.policy
import io
import os
import shutil
import subprocess
import sys
import unicodedata
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from socd.alerts.store import AlertStore
from socd.cli import main

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
TITLE = ("Tóm tắt tình hình an toàn thông tin tuần 47/2026 (từ ngày 16/11/2026 đến ngày "
         "22/11/2026)")
SEV = ("low", "medium", "high", "critical")
LABEL = {"low": "thấp", "medium": "trung bình", "high": "cao", "critical": "nghiêm trọng"}


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: it is installed by `make services` "
                    "(deploy/dev/apt-packages.txt)", pytrace=False)
    return path


def vi_int(n: int) -> str:
    return f"{n:,}".replace(",", ".")


def sentence(counts: dict[str, int]) -> str:
    """The provincial reports' sentence, built here independently of socd.reports."""
    parts = [f"{vi_int(counts[s])} cảnh báo mức độ {LABEL[s]}" for s in SEV if counts.get(s)]
    return ", ".join(parts[:-1]) + " và " + parts[-1] if len(parts) > 1 else parts[0]


def flat(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).split())


@pytest.fixture(autouse=True)
def report_command(monkeypatch: pytest.MonkeyPatch) -> None:
    import socd.cli as cli_mod

    if "socd.cli.report" not in cli_mod._COMMAND_MODULES:
        monkeypatch.setattr(cli_mod, "_COMMAND_MODULES",
                            (*cli_mod._COMMAND_MODULES, "socd.cli.report"))


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The embedded default (`make run`) run to completion into a temporary state dir:
    the shipped config and sample data, with only state_dir, exit_when_done and the
    HTTP endpoint (off) changed."""
    root = tmp_path_factory.mktemp("default-run")
    conf_dir = root / "default"
    shutil.copytree(REPO / "socd" / "default", conf_dir)
    doc = yaml.safe_load((conf_dir / "config.yaml").read_text(encoding="utf-8"))
    doc.update({"state_dir": str(root / "state"), "exit_when_done": True,
                "http": {"enabled": False}})
    (conf_dir / "config.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True),
                                          encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "socd", "run", "-c",
                           str(conf_dir / "config.yaml")], capture_output=True, text=True,
                          timeout=300, cwd=root, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    store = AlertStore(str(root / "state" / "alerts.db"))
    try:
        counts = store.severity_by_asset()
    finally:
        store.close()
    assert sum(counts.values()) > 1000, counts
    by_kind: dict[str, dict[str, int]] = {}
    for (sev, kind), n in counts.items():
        by_kind.setdefault(kind, {})[sev] = n
    return {"root": root, "config": str(conf_dir / "config.yaml"), "by_kind": by_kind,
            "total": sum(counts.values())}


@pytest.fixture(scope="module")
def reports(default_run: dict[str, Any]) -> dict[str, Path]:
    """`socd report weekly --from 16/11/2026 --to 22/11/2026` in every format."""
    import socd.cli as cli_mod

    added = "socd.cli.report" not in cli_mod._COMMAND_MODULES
    if added:
        saved = cli_mod._COMMAND_MODULES
        cli_mod._COMMAND_MODULES = (*saved, "socd.cli.report")
    out: dict[str, Path] = {}
    try:
        for fmt in ("md", "html", "pdf", "xlsx"):
            path = default_run["root"] / f"weekly.{fmt}"
            code = main(["report", "weekly", "--from", "16/11/2026", "--to", "22/11/2026",
                         "-c", default_run["config"], "--format", fmt, "--out", str(path)])
            assert code == 0, fmt
            out[fmt] = path
    finally:
        if added:
            cli_mod._COMMAND_MODULES = saved
    return out


def expected_lines(run: dict[str, Any]) -> list[str]:
    total = {s: sum(k.get(s, 0) for k in run["by_kind"].values()) for s in SEV}
    lines = [f"tổng số {vi_int(run['total'])} cảnh báo, gồm {sentence(total)}."]
    for kind, subject in (("server", "Hệ thống giám sát máy chủ"),
                          ("workstation", "Hệ thống giám sát máy trạm")):
        lines.append(f"{subject} có {sentence(run['by_kind'][kind])}.")
    return lines


def test_markdown_of_the_sample_week(default_run: dict[str, Any],
                                     reports: dict[str, Path]) -> None:
    text = reports["md"].read_text(encoding="utf-8")
    assert text.startswith(f"# {TITLE}\n")
    for line in expected_lines(default_run):
        assert line in text, line
    server = default_run["by_kind"]["server"]
    row = ("| Giám sát máy chủ | " + " | ".join(vi_int(server.get(s, 0)) for s in SEV)
           + f" | {vi_int(sum(server.values()))} |")
    assert row in text
    # The sample's days, every one with alerts.
    for day in range(16, 23):
        assert f"| {day}/11/2026 |" in text


def _png_colours(path: Path) -> int:
    from PIL import Image

    with Image.open(path) as img:
        rgb = img.convert("RGB")
        colours = rgb.getcolors(maxcolors=1 << 20)
        assert rgb.size[0] >= 1000
    return len(colours) if colours is not None else 1 << 20


def _chromium(args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(home)}
    return subprocess.run([tool("chromium"), "--headless", "--no-sandbox", "--disable-gpu",
                           "--no-first-run", f"--user-data-dir={home / 'profile'}", *args],
                          capture_output=True, text=True, timeout=180, env=env, check=False)


def test_html_in_headless_chromium(default_run: dict[str, Any], reports: dict[str, Path],
                                   tmp_path: Path) -> None:
    html = reports["html"].read_text(encoding="utf-8")
    assert "<meta charset=\"utf-8\">" in html
    assert "src=\"data:image/png;base64," in html  # self-contained charts
    assert "http://" not in html
    assert "https://" not in html
    url = reports["html"].as_uri()
    shot = tmp_path / "report.png"
    proc = _chromium([f"--screenshot={shot}", "--window-size=1200,2400",
                      "--hide-scrollbars", url], tmp_path)
    assert shot.exists(), proc.stderr[-2000:]
    # A rendered page: text, tables and charts in many colours, not a blank or one-colour
    # image (a failed load is white; a crash page is two or three colours).
    assert _png_colours(shot) > 200
    dom = _chromium(["--dump-dom", url], tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    text = flat(dom.stdout)
    assert f'<h1 id="title">{TITLE}</h1>' in text
    for line in expected_lines(default_run):
        assert line in text, line
    assert text.count("<img ") == 3


def test_pdf_text_keeps_diacritics(default_run: dict[str, Any],
                                   reports: dict[str, Path]) -> None:
    pdf = reports["pdf"].read_bytes()
    assert pdf.startswith(b"%PDF")
    proc = subprocess.run([tool("pdftotext"), "-layout", "-enc", "UTF-8", str(reports["pdf"]),
                           "-"], capture_output=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    text = flat(proc.stdout.decode("utf-8"))
    assert TITLE in text
    for line in expected_lines(default_run):
        assert line in text, line
    assert "nghiêm trọng" in text
    assert "Tình hình chung" in text


def test_xlsx_of_the_sample_week(default_run: dict[str, Any],
                                 reports: dict[str, Path]) -> None:
    from openpyxl import load_workbook

    wb = load_workbook(io.BytesIO(reports["xlsx"].read_bytes()))
    summary = wb["Tổng hợp"]
    assert summary["A1"].value == TITLE
    values = {r[0]: r[1] for r in summary.iter_rows(values_only=True) if len(r) > 1}
    assert values["Tổng số cảnh báo"] == default_run["total"]
    rows = {r[0]: r for r in wb["Theo hệ thống giám sát"].iter_rows(values_only=True)}
    server = default_run["by_kind"]["server"]
    assert rows["Giám sát máy chủ"][1:6] == (*(server.get(s, 0) for s in SEV),
                                             sum(server.values()))


def test_all_formats_agree_on_the_total(default_run: dict[str, Any],
                                        reports: dict[str, Path]) -> None:
    total = f"tổng số {vi_int(default_run['total'])} cảnh báo"
    assert total in reports["md"].read_text(encoding="utf-8")
    assert total in flat(reports["html"].read_text(encoding="utf-8"))


# -- the scheduled report, e-mailed --------------------------------------------------------


@pytest.fixture
def smtp() -> Iterator[tuple[int, list[bytes]]]:
    from aiosmtpd.controller import Controller

    from tests.conftest import free_port

    received: list[bytes] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            received.append(envelope.original_content or envelope.content)
            return "250 2.0.0 queued"

    port = free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, received
    finally:
        controller.stop()


async def test_scheduled_report_is_emailed(default_run: dict[str, Any], tmp_path: Path,
                                           smtp: tuple[int, list[bytes]]) -> None:
    import asyncio

    from socd.alerting.notifiers.email import EmailNotifier
    from socd.app.deadletter import DeadLetter
    from socd.plugins import PluginContext
    from socd.reports.data import StoreBackend
    from socd.reports.schedule import ReportScheduler, ReportsConfig, ScheduleConfig
    from socd.reports.vn import local_zone

    port, received = smtp
    dead = DeadLetter(str(tmp_path / "dl"))
    mail = EmailNotifier(EmailNotifier.Config.model_validate({
        "type": "email", "host": "127.0.0.1", "port": port, "security": "none",
        "from_addr": "SOC Tỉnh <soc@so-tttt.example.vn>",
        "to": ["lanh-dao@so-tttt.example.vn"], "subject_prefix": "[SOC]"}),
        PluginContext(name="mail", dead_letter=dead, config_dir=str(tmp_path)))

    class Clock:
        t = datetime(2026, 11, 23, 6, 59, tzinfo=local_zone())

        def now(self) -> datetime:
            return self.t

        async def sleep(self, seconds: float) -> None:
            from datetime import timedelta

            self.t += timedelta(seconds=seconds)
            await asyncio.sleep(0)

    store = str(default_run["root"] / "state" / "alerts.db")
    config = ReportsConfig(enabled=True, schedules=[ScheduleConfig(kind="weekly")],
                           formats=["html", "pdf"], notifiers=["mail"])
    sched = ReportScheduler(config, state_dir=str(tmp_path),
                            backend_factory=lambda: StoreBackend.open(store),
                            notifiers={"mail": mail}, clock=Clock())
    task = asyncio.create_task(sched.run())
    try:
        for _ in range(12000):
            if sched.history or task.done():
                break
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        dead.close()
    assert sched.history, "the weekly report was not generated"
    result = sched.history[0]
    assert (result.slug, result.sent, result.failed) == ("weekly-2026-W47", ["mail"], {})
    assert (tmp_path / "reports" / "weekly-2026-W47.pdf").read_bytes().startswith(b"%PDF")
    assert len(received) == 1
    msg = email.message_from_bytes(received[0], policy=email.policy.default)
    assert msg["Subject"] == f"[SOC] {TITLE}"
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    plain = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert f'<h1 id="title">{TITLE}</h1>' in html
    assert f"Tổng số {vi_int(default_run['total'])} cảnh báo" in plain
    for line in expected_lines(default_run)[1:]:
        assert line in flat(html)
