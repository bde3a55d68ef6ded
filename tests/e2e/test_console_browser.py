"""The analyst console in a real browser (issue 19).

Debian's Chromium, driven headless by Playwright (the system executable: never a
downloaded browser), works the console of a real ``socd run``: TLS on a loopback
port (a test CA; the browser is told to accept it), users made with ``socd
console``, alerts decoded by the real pipeline from the bundled sample week.
Assertions read page content with Playwright's auto-waiting ``expect``; the
store, the audit log and the block store are then checked directly. Screenshots
of every flow are kept as test artefacts in ``$SOCD_TEST_ARTIFACTS`` (default
``tests/artifacts/console/``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from socd.alerts.store import AlertStore
from tests.e2e.console_harness import (
    PASSWORDS,
    Console,
    console_config,
    socd_cli,
    start_console,
)
from tests.helpers import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "socd/default/sample"
ARTIFACTS = Path(os.environ.get("SOCD_TEST_ARTIFACTS") or REPO / "tests/artifacts") / "console"


def chromium_path() -> str:
    """Debian's Chromium; its absence fails the tests (scripts/services.sh installs it
    from deploy/dev/apt-packages.txt)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("chromium is not installed: the console's browser tests need Debian's "
                    "chromium (make services installs it from deploy/dev/apt-packages.txt)",
                    pytrace=False)
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=chromium_path(), headless=True)
        yield chromium
        chromium.close()


# The first records of the sample week, through the real file collector and decoders.
FEEDS = (("server_edr", "server-edr.ndjson", 40), ("workstation_edr", "workstation-edr.ndjson", 20))
# A server-EDR record whose attacker-controlled texts (host name, threat name as the
# rule, description as the message, command line) carry markup.
HOSTILE = {
    "alert_id": "SG-20261115-XSS", "detected_at": "2026-11-15T23:00:00+07:00",
    "hostname": "srv-<img src=x onerror=alert('host')>", "host_ip": "10.10.20.99",
    "os": "Ubuntu 22.04", "severity": "Trung bình", "category": "Suspicious process",
    "threat_name": "Webshell\"><svg onload=alert('rule')>",
    "description": "<script>alert('message')</script>Tải script lạ",
    "process": {"name": "bash", "pid": 4242, "user": "root",
                "command_line": "curl http://x/</pre><script>alert('cmd')</script> | bash"},
    "action": "detected", "agent_id": "SGA-XSS"}
FED = sum(n for _, _, n in FEEDS) + 1
OWN = "10.10.0.0/16"  # the province's own networks: never an IoC, never blocked
BLOCKED = "198.51.100.77"


def _feeds(workdir: Path) -> dict[str, Any]:
    collectors = {}
    for decoder, name, count in FEEDS:
        lines = (SAMPLE / name).read_bytes().splitlines(keepends=True)[:count]
        if decoder == "server_edr":
            lines.append(json.dumps(HOSTILE, ensure_ascii=False).encode() + b"\n")
        path = workdir / name
        path.write_bytes(b"".join(lines))
        collectors[decoder] = {"type": "file", "mode": "oneshot", "paths": [str(path)],
                               "start_at": "beginning", "decoder": decoder}
    return collectors


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """socd with the sample's first alerts in its store, a blocker (backend none: the
    decisions and their audit, no firewall) holding one active block, and the
    province's networks allowlisted."""
    workdir = tmp_path_factory.mktemp("console-browser")
    sinks = {"store": {"type": "sqlite", "select": "alerts", "path": "alerts.db"},
             "blocker": {"type": "blocker", "backend": "none", "path": "blocks.db",
                         "select": "alerts", "allowlist_cidrs": [OWN]}}
    config = console_config(workdir, sinks=sinks, collectors=_feeds(workdir),
                            allowlist={"cidrs": [OWN]})
    running = start_console(workdir, config)
    try:
        wait_for(lambda: _stored(running) >= FED, 60, f"{FED} alerts in the store")
        socd_cli(running.config_path, "block", "add", BLOCKED, "--sink", "blocker",
                 "--ttl", "7d", "--reason", "C&C theo công văn 941/CATTT-NCSC", "--no-push")
        yield running
    finally:
        running.stop()


def _severity_counts(console: Console) -> dict[str, int]:
    store = AlertStore(str(console.state / "alerts.db"), readonly=True)
    try:
        rows = store.query("SELECT severity, count(*) FROM alerts GROUP BY severity")
    finally:
        store.close()
    counts = {"critical": 0, "high": 0, "medium": 0, "low": 0}
    counts.update({str(sev): int(n) for sev, n in rows})
    assert sum(counts.values()) == FED
    return counts


def _stored(console: Console) -> int:
    path = console.state / "alerts.db"
    if not path.exists():
        return 0
    store = AlertStore(str(path), readonly=True)
    try:
        return store.count()
    finally:
        store.close()


@pytest.fixture
def page(browser: Any, console: Console, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser context (no cookies) on the console, in Vietnamese."""
    context = browser.new_context(base_url=console.url, ignore_https_errors=True,
                                  locale="vi-VN", viewport={"width": 1366, "height": 900})
    context.set_default_timeout(15_000)
    tab = context.new_page()
    yield tab
    context.close()


def shot(page: Any, name: str) -> Path:
    """Keep a full-page screenshot as a test artefact."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def sign_in(page: Any, user: str) -> None:
    page.goto("/login")
    page.fill("input[name=name]", user)
    page.fill("input[name=password]", PASSWORDS[user])
    page.locator("form button[type=submit], form input[type=submit]").first.click()
    page.wait_for_url(re.compile(r"^(?!.*/login).*$"))


def test_sign_in(page: Any) -> None:
    from playwright.sync_api import expect

    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login"))
    shot(page, "01-login")
    page.fill("input[name=name]", "analyst")
    page.fill("input[name=password]", "not the password")
    page.locator("form button[type=submit], form input[type=submit]").first.click()
    expect(page).to_have_url(re.compile(r"/login"))
    expect(page.get_by_role("alert")).to_be_visible()
    shot(page, "01-login-refused")
    sign_in(page, "analyst")
    expect(page.locator("body")).to_contain_text("analyst")
    expect(page.locator("html")).to_have_attribute("lang", "vi")
    expect(page.locator("nav, header").first).to_contain_text("Cảnh báo")
    shot(page, "02-signed-in")
    # The English switch, kept from page to page.
    page.locator("a[hreflang=en]").first.click()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    page.goto("/alerts")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator("h1")).to_contain_text("Alerts")


def _open_first_alert(page: Any, **filters: str) -> str:
    """Open the first alert of the queue under ``filters`` (chosen in the filter form)
    by clicking it; its id."""
    from playwright.sync_api import expect

    page.goto("/alerts")
    for name, value in filters.items():
        field = page.locator(f"form.filters [name={name}]")
        if field.evaluate("e => e.tagName") == "SELECT":
            field.select_option(value)
        else:
            field.fill(value)
    page.locator("form.filters button[type=submit]").click()
    rows = page.locator("table.alerts tbody tr a")
    expect(rows.first).to_be_visible()
    href = rows.first.get_attribute("href") or ""
    rows.first.click()
    alert_id = href.rstrip("/").rsplit("/", 1)[-1]
    expect(page).to_have_url(re.compile(re.escape(alert_id)))
    return alert_id


def test_triage_false_positive(page: Any, console: Console) -> None:
    """An analyst filters the queue, opens an alert and marks it a false positive with
    a reason: the page, the store and the hash-chained audit log all say so."""
    from playwright.sync_api import expect

    from socd.alerts.audit import opened, verify

    sign_in(page, "analyst")
    page.goto("/alerts")
    # One page of the newest 50 of the 61 fed, a link to the next, and the counts per
    # severity of all 61 as the store has them.
    expect(page.locator("table.alerts tbody tr")).to_have_count(50)
    expect(page.locator("a[rel=next]")).to_be_visible()
    for severity, count in _severity_counts(console).items():
        expect(page.locator(f".counts .sev-{severity} b")).to_have_text(str(count))
    shot(page, "03-queue")
    alert_id = _open_first_alert(page, severity="high")
    shot(page, "04-alert")
    reason = "Quét định kỳ của Đội ứng cứu sự cố, đã xác minh với Sở Y tế"
    form = page.locator("form:has(input[name=action][value=false_positive])")
    form.locator("input[name=note]").fill(reason)
    form.locator("button[type=submit]").click()
    expect(page.get_by_text("Đã đánh dấu cảnh báo nhầm.")).to_be_visible()
    expect(page.locator("main, body").first).to_contain_text(reason)
    shot(page, "05-alert-false-positive")

    store = AlertStore(str(console.state / "alerts.db"), readonly=True)
    try:
        stored = store.get(alert_id)
        history = store.history(alert_id)
    finally:
        store.close()
    assert stored is not None
    assert stored.severity == "high"
    assert (stored.status, stored.status_note, stored.status_by) == (
        "false_positive", reason, "analyst")
    assert [(h.action, h.status_to, h.by, h.note) for h in history][-1] == (
        "false_positive", "false_positive", "analyst", reason)
    audit_db = str(console.state / "audit.db")
    with opened(audit_db) as log:
        records = list(log.records(alert_id))
    assert records
    assert records[-1].actor == "analyst"
    assert records[-1].details["status_to"] == "false_positive"
    assert records[-1].details["note"] == reason
    assert verify(audit_db).ok


def test_incident_from_two_alerts(page: Any, console: Console) -> None:
    """Two alerts ticked in the queue become one incident; its page shows the Circular
    20 deadlines (the notification's countdown or overdue mark, the final report not
    started) and both alerts in its timeline."""
    from playwright.sync_api import expect

    from socd.incidents.store import IncidentStore

    sign_in(page, "analyst")
    page.goto("/alerts?severity=medium")
    boxes = page.locator("table.alerts tbody input[type=checkbox][name=id]")
    expect(boxes.nth(1)).to_be_visible()
    chosen = [boxes.nth(i).get_attribute("value") or "" for i in (0, 1)]
    for i in (0, 1):
        boxes.nth(i).check()
    bulk = page.locator("fieldset.bulk-actions")
    bulk.locator("select[name=action]").select_option("incident_new")
    title = "Mã độc đánh cắp mật khẩu trên máy chủ dịch vụ công"
    bulk.locator("input[name=title]").fill(title)
    shot(page, "06-queue-two-selected")
    bulk.locator("button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"/incidents/[^/]+$"))
    expect(page.locator("h1")).to_contain_text(title)
    deadlines = page.locator("dl").first
    expect(deadlines).to_contain_text("Báo cáo ban đầu (5 ngày)")
    expect(deadlines).to_contain_text("Báo cáo kết thúc (5 ngày)")
    expect(deadlines.locator(".deadline.pending, .deadline.overdue")).to_have_count(1)
    expect(deadlines.locator(".deadline").first).to_have_text(
        re.compile(r"(còn|quá hạn) \d+ ngày \d+ giờ"))
    expect(deadlines).to_contain_text("chưa tính (chưa kết thúc ứng cứu)")
    for alert_id in chosen:
        expect(page.locator(f"a[href$='{alert_id}']").first).to_be_visible()
    shot(page, "07-incident")

    incident_id = page.url.rstrip("/").rsplit("/", 1)[-1]
    store = IncidentStore(str(console.state / "incidents.db"))
    try:
        incident = store.get(incident_id)
    finally:
        store.close()
    assert incident.title == title
    assert sorted(incident.alerts) == sorted(chosen)
    assert incident.opened_by == "analyst"
    assert incident.notify_due
    assert incident.report_due is None


# A letter's appendix as the authority sends it (one indicator a line); 10.10.20.11 is
# the province's own portal server, listed by mistake: the allowlist refuses it.
APPENDIX = """# Phụ lục: danh sách IoC kèm Công văn 941/CATTT-NCSC
45.137.21.9
185.220.101.47
10.10.20.11
update-kaspersky-cdn.com
"""
LETTER = "941/CATTT-NCSC"


def test_ioc_import_refuses_allowlisted(page: Any, console: Console,
                                        tmp_path: Path) -> None:
    """An administrator uploads a letter's appendix; the import report names the
    allowlisted address it refused and why; the IoC store has the rest, with the
    letter's number, and not the refused address."""
    from playwright.sync_api import expect

    from socd.ioc.store import IocDatabase

    appendix = tmp_path / "phu-luc-941.txt"
    appendix.write_text(APPENDIX, encoding="utf-8")
    sign_in(page, "admin")
    page.goto("/iocs")
    form = page.locator("form[action$='/iocs/import']")
    form.locator("input[name=file]").set_input_files(str(appendix))
    form.locator("select[name=format]").select_option("text")
    form.locator("input[name=ref]").fill(LETTER)
    form.locator("input[name=letter_date]").fill("2026-11-20")
    form.locator("input[name=source]").fill("NCSC")
    form.locator("button[type=submit]").click()
    report = page.locator("#import-report")
    expect(report).to_be_visible()
    expect(report).to_contain_text("phu-luc-941.txt")
    refused = report.locator("table.refused tbody tr")
    expect(refused).to_have_count(1)
    expect(refused.first).to_contain_text("10.10.20.11")
    expect(refused.first).to_contain_text("thuộc danh sách cho phép")
    expect(report).to_contain_text(LETTER)
    shot(page, "08-ioc-import-report")

    db = IocDatabase(str(console.state / "ioc.db"), readonly=True)
    try:
        entries = {e.value: e for e in db.find(source="NCSC")}
    finally:
        db.close()
    assert set(entries) == {"45.137.21.9", "185.220.101.47", "update-kaspersky-cdn.com"}
    assert {e.ref for e in entries.values()} == {LETTER}


def test_unblock_with_reason(page: Any, console: Console) -> None:
    """An administrator lifts the active block on an address with a reason: the list
    empties, the audit trail on the page names the administrator and the reason, and
    the blocker's store (read by ``socd block``) no longer enforces it."""
    from playwright.sync_api import expect

    sign_in(page, "admin")
    page.goto("/blocks")
    row = page.locator("table.blocks tbody tr", has_text=BLOCKED)
    expect(row).to_have_count(1)
    expect(row).to_contain_text("941/CATTT-NCSC")
    shot(page, "09-blocks")
    reason = "Công văn 1020/CATTT-NCSC: địa chỉ đã được thu hồi, gỡ chặn"
    row.locator("input[name=reason]").fill(reason)
    row.locator("button[type=submit]").click()
    expect(page.locator("table.blocks tbody tr", has_text=BLOCKED)).to_have_count(0)
    trail = page.locator("table", has_text=reason)
    expect(trail).to_be_visible()
    expect(trail.locator("tr", has_text=reason).first).to_contain_text("admin")
    shot(page, "10-unblocked")

    active = socd_cli(console.config_path, "block", "list", "--sink", "blocker", "--json")
    assert BLOCKED not in active
    audit = socd_cli(console.config_path, "block", "audit", "--sink", "blocker")
    lifted = [line for line in audit.splitlines() if f" remove  {BLOCKED} " in line]
    assert len(lifted) == 1, audit
    assert "by console:admin" in lifted[0]
    assert lifted[0].endswith(reason)


def test_viewer_reads_without_actions(page: Any) -> None:
    """A viewer sees the queue and an alert but is offered no change: no row to tick,
    no bulk form, no action forms (the routes refuse a viewer as well: the security
    tests check that over HTTP)."""
    from playwright.sync_api import expect

    sign_in(page, "viewer")
    page.goto("/alerts")
    expect(page.locator("table.alerts tbody tr")).to_have_count(50)
    expect(page.locator("table.alerts input[type=checkbox]")).to_have_count(0)
    expect(page.locator("fieldset.bulk-actions")).to_have_count(0)
    page.locator("table.alerts tbody tr a").first.click()
    expect(page.locator("h1")).to_be_visible()
    expect(page.locator("form[method=post]:not([action$='/logout'])")).to_have_count(0)
    shot(page, "11-viewer-alert")


def test_downloads_incident_notice_and_weekly_report(page: Any, console: Console,
                                                     tmp_path: Path) -> None:
    """The browser downloads an incident's notification as PDF from the incident's page
    and the weekly report of the sample's week as Word from the reports page; the files
    are real documents (pdftotext and python-docx read them) about what was shown."""
    import subprocess

    import docx
    from playwright.sync_api import expect

    sign_in(page, "analyst")
    page.goto("/alerts?severity=low")
    boxes = page.locator("table.alerts tbody input[type=checkbox][name=id]")
    boxes.first.check()
    bulk = page.locator("fieldset.bulk-actions")
    bulk.locator("select[name=action]").select_option("incident_new")
    bulk.locator("input[name=title]").fill("Phần mềm không mong muốn trên máy trạm")
    bulk.locator("button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"/incidents/[^/]+$"))
    incident_id = page.url.rstrip("/").rsplit("/", 1)[-1]
    with page.expect_download() as pdf_download:
        page.locator("a[href*='/documents/'][href$='.pdf']").first.click()
    pdf = tmp_path / "notice.pdf"
    pdf_download.value.save_as(pdf)
    assert pdf.read_bytes().startswith(b"%PDF-")
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True,
                          text=True, check=True, timeout=60).stdout
    assert incident_id in text
    assert "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM" in text

    page.goto("/reports")
    shot(page, "12-reports")
    form = page.locator("form[action$='/reports/download']")
    form.locator("select[name=kind]").select_option("weekly")
    form.locator("select[name=format]").select_option("docx")
    form.locator("input[name=from]").fill("2026-11-16")
    with page.expect_download() as docx_download:
        form.locator("button[type=submit]").click()
    word = tmp_path / "weekly.docx"
    docx_download.value.save_as(word)
    assert docx_download.value.suggested_filename.endswith(".docx")
    document = docx.Document(str(word))
    body = "\n".join(p.text for p in document.paragraphs)
    cells = "\n".join(c.text for t in document.tables for r in t.rows for c in r.cells)
    assert "16/11/2026" in body + cells
    assert "Độc lập - Tự do - Hạnh phúc" in body + cells


def test_hostile_event_text_is_inert(page: Any) -> None:
    """Markup an attacker put in an event (host name, rule text, message, command line)
    is shown as text in the queue and on the alert's page: Chromium runs none of it
    (no dialog), builds no element from it, and the pages have no inline script."""
    from playwright.sync_api import expect

    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    sign_in(page, "analyst")
    page.goto("/alerts?q=Webshell")
    rows = page.locator("table.alerts tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(HOSTILE["hostname"])
    expect(rows.first).to_contain_text(HOSTILE["threat_name"])
    rows.first.locator("a").first.click()
    expect(page.locator("h1")).to_contain_text(HOSTILE["threat_name"])
    body = page.locator("body")
    for text in (HOSTILE["hostname"], HOSTILE["description"],
                 HOSTILE["process"]["command_line"]):
        expect(body).to_contain_text(text)
    shot(page, "13-hostile-alert")
    for injected in ("img[src=x]", "svg[onload]", "script:not([src])"):
        expect(page.locator(injected)).to_have_count(0)
    assert dialogs == []
