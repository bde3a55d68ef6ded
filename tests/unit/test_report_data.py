"""Reports from the embedded store: every number of the seeded week, the side stores
(IoC imports, block decisions, incidents, layer-4 exchanges), Markdown and XLSX."""

from __future__ import annotations

import io
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from socd.alerts.store import AlertStore
from socd.block.decisions import BlockStore, Guard, Policy, Request
from socd.cli import main
from socd.ioc.store import Entry, IocDatabase
from socd.reports.data import StoreBackend, build_report
from socd.reports.periods import Period, period_for
from socd.reports.render import render_markdown, render_xlsx
from socd.reports.sources import SideSources
from socd.reports.testing import EXPECTED, WEEK_FIRST, WEEK_LAST, expected_daily, seed_events
from socd.reports.vn import fmt_pct

NOW = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)


def ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    state = tmp_path_factory.mktemp("report-state")
    events = seed_events()
    store = AlertStore(str(state / "alerts.db"))
    assert store.insert(events) == len(events)
    store.close()
    return {"state": state, "events": events}


def week() -> Period:
    return period_for("weekly", "16/11/2026", "22/11/2026")


def report(state: Path, **kw: Any) -> Any:
    backend = StoreBackend.open(str(state / "alerts.db"))
    try:
        return build_report(backend, week(), now=NOW, **kw)
    finally:
        backend.close()


def check_numbers(data: Any, events: list[Any]) -> None:
    """Every number of the seeded week against EXPECTED (worked out by hand)."""
    assert data.title == EXPECTED["title"]
    assert data.total == EXPECTED["total"]
    assert data.by_severity == EXPECTED["by_severity"]
    kinds = {k.asset_kind: k for k in data.by_kind}
    assert list(kinds) == ["server", "workstation", "network"]
    for kind, (sev, total, fp, acknowledged, handled) in EXPECTED["by_kind"].items():
        row = kinds[kind]
        assert (row.by_severity, row.total, row.false_positives, row.acknowledged,
                row.handled) == (sev, total, fp, acknowledged, handled), kind
    assert data.kind_sentences() == EXPECTED["sentences"]
    assert data.by_status == EXPECTED["by_status"]
    assert (data.false_positives, data.acknowledged, data.handled) == (
        EXPECTED["false_positives"], EXPECTED["acknowledged"], EXPECTED["handled"])
    assert data.previous.first.isoformat() == "2026-11-09"
    assert data.previous_total == EXPECTED["previous_total"]
    for t in data.trend:
        previous, current, pct = EXPECTED["trend"][t.severity]
        assert (t.previous, t.current, fmt_pct(t.percent, signed=True)) == (
            previous, current, pct), t.severity
    assert [(r.rule_id, r.rule_name, r.severity, r.total, r.false_positives)
            for r in data.top_rules] == EXPECTED["top_rules"]
    assert [(r.system, r.unit, r.total, r.high) for r in data.top_systems] == \
        EXPECTED["top_systems"]
    assert [(r.unit, r.total, r.by_severity) for r in data.top_units] == EXPECTED["top_units"]
    daily = expected_daily(events)
    assert [d for d, _ in data.daily] == [f"2026-11-{d}" for d in range(16, 23)]
    assert dict(data.daily) == daily
    assert sum(sum(c.values()) for _, c in data.daily) == EXPECTED["total"]


def test_store_numbers(seeded: dict[str, Any]) -> None:
    data = report(seeded["state"])
    check_numbers(data, seeded["events"])
    assert data.source == "store"
    # No side store exists: every side section says "no data".
    available = (data.ioc.available, data.blocks.available, data.incidents.available,
                 data.exchanges.available)
    assert available == (False, False, False, False)


def test_unit_filter(seeded: dict[str, Any]) -> None:
    data = report(seeded["state"], unit="Sở Tài chính")
    assert data.total == 12
    assert data.by_severity == {"low": 0, "medium": 0, "high": 8, "critical": 4}
    assert data.title.endswith("— Sở Tài chính")
    assert [u.unit for u in data.top_units] == ["Sở Tài chính"]


def test_empty_period(seeded: dict[str, Any]) -> None:
    backend = StoreBackend.open(str(seeded["state"] / "alerts.db"))
    data = build_report(backend, period_for("monthly", "01/01/2025"), now=NOW)
    backend.close()
    assert (data.total, data.top_rules, len(data.daily)) == (0, [], 31)
    text = render_markdown(data)
    assert "Bản tin SOC tháng 1/2025" in text
    assert "tổng số 0 cảnh báo." in text


def _side_stores(state: Path) -> SideSources:
    """Real IoC and block stores, and incidents/sharing files with the planned tables."""
    ioc = IocDatabase(str(state / "ioc.db"))
    in_week = int(ts("2026-11-17T09:00:00+07:00"))
    before = int(ts("2026-11-02T09:00:00+07:00"))
    ioc.upsert([Entry("ip", f"198.51.100.{i}", "ncsc", "941/CATTT-NCSC") for i in range(40)]
               + [Entry("domain", f"bad{i}.example", "ncsc", "941/CATTT-NCSC")
                  for i in range(5)], now=in_week)
    ioc.upsert([Entry("ip", f"203.0.113.{i}", "ipsum", "") for i in range(7)], now=before)
    ioc.upsert([Entry("hash", "a" * 64, "vncert", "1298/CATTT-NCSC")],
               now=int(ts("2026-11-21T15:00:00+07:00")))
    ioc.close()

    blocks = BlockStore(str(state / "blocks.db"))
    guard = Guard()
    policy = Policy(default_ttl=30 * 86400)
    t1 = ts("2026-11-18T10:00:00+07:00")
    blocks.decide([Request(f"198.51.100.{i}", "IoC", "ioc:ncsc", "941/CATTT-NCSC")
                   for i in range(6)], policy, guard, now=t1)
    blocks.decide([Request("198.51.100.0", "IoC", "ioc:ncsc", "941/CATTT-NCSC")],
                  policy, guard, now=t1 + 7200)  # an extension: still one address
    blocks.decide([Request("192.0.2.50", "brute force", "rule:R-SSH")], policy, guard,
                  now=ts("2026-11-10T10:00:00+07:00"))  # the week before
    blocks.decide([Request("127.0.0.1", "oops", "cli")], policy, guard, now=t1)  # refused
    blocks.close()

    db = sqlite3.connect(state / "incidents.db")
    db.execute("CREATE TABLE incidents (id TEXT PRIMARY KEY, opened_at TEXT, discovered_at "
               "TEXT, closed_at TEXT, response_ended_at TEXT, status TEXT, severity TEXT, "
               "system_level INTEGER, serious INTEGER, notify_due TEXT, report_due TEXT, "
               "notified_at TEXT, reported_at TEXT)")
    rows = [  # opened, closed, severity, serious, notify_due, report_due, notified, reported
        ("I1", "2026-11-16T08:00:00+07:00", "2026-11-19T10:00:00+07:00", "high", 0,
         "2026-11-21T08:00:00+07:00", "2026-11-24T10:00:00+07:00",
         "2026-11-17T09:00:00+07:00", None),
        ("I2", "2026-11-18T08:00:00+07:00", None, "critical", 1,
         "2026-11-20T08:00:00+07:00", None, "2026-11-21T09:00:00+07:00", None),
        ("I3", "2026-11-02T08:00:00+07:00", "2026-11-20T12:00:00+07:00", "medium", 0,
         "2026-11-07T08:00:00+07:00", "2026-11-21T12:00:00+07:00",
         "2026-11-03T08:00:00+07:00", "2026-11-20T15:00:00+07:00"),
        ("I4", "2026-11-14T08:00:00+07:00", None, "high", 0,
         "2026-11-19T08:00:00+07:00", None, None, None),
    ]
    for i, o, c, sev, ser, nd, rd, na, ra in rows:
        db.execute("INSERT INTO incidents (id, opened_at, discovered_at, closed_at, status, "
                   "severity, serious, notify_due, report_due, notified_at, reported_at) "
                   "VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                   (i, o, o, c, "closed" if c else "open", sev, ser, nd, rd, na, ra))
    db.commit()
    db.close()

    db = sqlite3.connect(state / "sharing.db")
    db.execute("CREATE TABLE exchanges (id INTEGER PRIMARY KEY, ts REAL, kind TEXT, target "
               "TEXT, recipient TEXT, objects INTEGER, result TEXT, detail TEXT)")
    db.executemany("INSERT INTO exchanges (ts, kind, target, recipient, objects, result) "
                   "VALUES (?,?,?,?,?,?)", [
                       (ts("2026-11-10T08:00:00+07:00"), "taxii", "taxii-ncsc", "NCSC", 10,
                        "ok"),
                       (ts("2026-11-17T08:00:00+07:00"), "taxii", "taxii-ncsc", "NCSC", 25,
                        "ok"),
                       (ts("2026-11-20T08:00:00+07:00"), "misp", "misp-ncsc", "NCSC", 3,
                        "error"),
                       (ts("2026-11-24T08:00:00+07:00"), "taxii", "taxii-ncsc", "NCSC", 1,
                        "ok"),  # after the week
                   ])
    db.commit()
    db.close()
    return SideSources(ioc_db=str(state / "ioc.db"), blocks_db=str(state / "blocks.db"),
                       incidents_db=str(state / "incidents.db"),
                       sharing_db=str(state / "sharing.db"))


def test_side_sources(tmp_path: Path) -> None:
    sides = _side_stores(tmp_path)
    p = week()
    ioc = sides.ioc(p)
    assert ioc.available
    assert [(b.source, b.ref, b.entries, b.new_entries, b.by_kind) for b in ioc.batches] == [
        ("ncsc", "941/CATTT-NCSC", 45, 45, {"domain": 5, "ip": 40}),
        ("vncert", "1298/CATTT-NCSC", 1, 1, {"hash": 1}),
    ]
    assert ioc.batches[0].received == ts("2026-11-17T09:00:00+07:00")

    blocks = sides.blocks(p)
    assert (blocks.available, blocks.blocked, blocks.new, blocks.refused) == (True, 6, 6, 1)
    assert blocks.by_ref == {"941/CATTT-NCSC": 6}
    assert blocks.active_at_end == 7  # 6 this week + 1 from the week before, 30-day TTL

    inc = sides.incidents(p)
    assert (inc.opened, inc.closed, inc.open_at_end, inc.serious) == (2, 2, 2, 1)
    # Notifications: I1 on time, I2 late, I4 overdue (due 19/11, never sent).
    assert (inc.notify_on_time, inc.notify_late, inc.notify_overdue) == (1, 1, 1)
    # Final reports: I3 on time; I1's is due after the week (not counted).
    assert (inc.report_on_time, inc.report_late, inc.report_overdue) == (1, 0, 0)
    assert inc.by_severity == {"critical": 1, "high": 1}

    ex = sides.exchanges(p)
    assert (ex.total, ex.succeeded, ex.failed, ex.objects) == (2, 1, 1, 25)
    assert ex.by_kind == {"misp": 1, "taxii": 1}
    assert ex.last_success == ts("2026-11-17T08:00:00+07:00")
    assert ex.last_success_recipient == "NCSC"


def test_side_sources_missing_tables(tmp_path: Path) -> None:
    # A file of another shape (a subsystem not migrated yet) is "no data", not a crash.
    sqlite3.connect(tmp_path / "incidents.db").execute("CREATE TABLE other (x)").connection \
        .close()
    sides = SideSources(ioc_db=str(tmp_path / "none.db"),
                        incidents_db=str(tmp_path / "incidents.db"))
    assert not sides.incidents(week()).available
    assert not sides.ioc(week()).available
    assert not (tmp_path / "none.db").exists()  # read-only: never created


def test_markdown(seeded: dict[str, Any], tmp_path: Path) -> None:
    data = report(seeded["state"], sides=_side_stores(tmp_path))
    text = render_markdown(data)
    assert text.startswith(f"# {EXPECTED['title']}\n")
    assert ("tổng số 1.489 cảnh báo, gồm 1.305 cảnh báo mức độ thấp, 155 cảnh báo mức độ "
            "trung bình, 23 cảnh báo mức độ cao và 6 cảnh báo mức độ nghiêm trọng.") in text
    for sentence in EXPECTED["sentences"]:
        assert f"- {sentence}" in text
    # ... | false positives | acknowledged (đã tiếp nhận) | resolved (đã xử lý) |: đã xử lý
    # is resolved only, as in `socd alert` (it counted acknowledged alerts too: 273).
    assert "| Giám sát mạng | 1.234 | 0 | 0 | 2 | 1.236 | 0 | 234 | 0 |" in text
    assert "| Tổng cộng | 1.305 | 155 | 23 | 6 | 1.489 | 30 | 239 | 34 |" in text
    assert "Số cảnh báo đã xử lý: 34; đã tiếp nhận, đang xử lý: 239; cảnh báo nhầm: 30" in text
    assert "| Thấp | 31 | 1.305 | 1.274 | +4.109,7 % |" in text
    assert "| 1 | 2002911 | ET SCAN Potential VNC Scan 5900-5920 | thấp | 1.234 | 0 |" in text
    assert "| 2 | R-SSH | Dò mật khẩu SSH | trung bình | 120 | 20 |" in text
    assert "| 1 | 10.10.20.12 | Trung tâm Tích hợp dữ liệu | 619 | 2 |" in text
    assert "| 1 | Trung tâm Tích hợp dữ liệu | 1.234 | 0 | 0 | 2 | 1.236 |" in text
    assert "cảnh báo nhầm: 30 (2,0 % tổng số cảnh báo)" in text
    assert "| 1 | ncsc | 941/CATTT-NCSC | 09:00 17/11/2026 | 45 | 45 |" in text
    assert "| Địa chỉ bị chặn trong kỳ | 6 |" in text
    assert "| Sự cố mới trong kỳ | 2 |" in text
    assert "| Thông báo sự cố quá hạn chưa gửi | 1 |" in text
    assert "| Lần trao đổi thành công gần nhất | 08:00 17/11/2026 (NCSC) |" in text
    assert "| 16/11/2026 |" in text


def test_xlsx(seeded: dict[str, Any]) -> None:
    from openpyxl import load_workbook

    data = report(seeded["state"])
    wb = load_workbook(io.BytesIO(render_xlsx(data)))
    assert wb.sheetnames == ["Tổng hợp", "Theo hệ thống giám sát", "Xu hướng", "Theo ngày",
                             "Luật phát hiện", "Hệ thống bị ảnh hưởng", "Đơn vị", "IoC",
                             "Chặn địa chỉ", "Sự cố", "Chia sẻ lớp 4"]
    summary = wb["Tổng hợp"]
    assert summary["A1"].value == EXPECTED["title"]
    values = {r[0]: r[1] for r in summary.iter_rows(values_only=True) if len(r) > 1}
    assert values["Tổng số cảnh báo"] == 1489
    assert values["Cảnh báo mức độ nghiêm trọng"] == 6
    assert values["Cảnh báo nhầm"] == 30
    # Đã xử lý is resolved only, as in `socd alert` (it counted acknowledged too: 273).
    assert values["Cảnh báo đã tiếp nhận"] == 239
    assert values["Cảnh báo đã xử lý"] == 34
    texts = [r[0] for r in summary.iter_rows(values_only=True)]
    assert EXPECTED["sentences"][2] in texts

    kinds = list(wb["Theo hệ thống giám sát"].iter_rows(values_only=True))
    assert kinds[1] == ("Hệ thống giám sát", "Thấp", "Trung bình", "Cao", "Nghiêm trọng",
                        "Tổng số", "Cảnh báo nhầm", "Đã tiếp nhận", "Đã xử lý")
    assert kinds[2] == ("Giám sát máy chủ", 0, 120, 15, 4, 139, 20, 5, 34)
    assert kinds[-1] == ("Tổng cộng", 1305, 155, 23, 6, 1489, 30, 239, 34)
    assert isinstance(kinds[2][2], int)  # numbers as numbers

    rules = list(wb["Luật phát hiện"].iter_rows(values_only=True))[2:]
    assert [(r[1], r[4], r[5]) for r in rules] == [
        (rid or None, n, fp) for rid, _, _, n, fp in EXPECTED["top_rules"]]
    systems = list(wb["Hệ thống bị ảnh hưởng"].iter_rows(values_only=True))[2:]
    assert [(r[1], r[3]) for r in systems] == [(s, n) for s, _, n, _ in EXPECTED["top_systems"]]
    assert list(wb["Sự cố"].iter_rows(values_only=True))[1][0].startswith("Chưa có dữ liệu")


def _config(tmp_path: Path, state: Path) -> str:
    path = tmp_path / "socd.yaml"
    path.write_text(yaml.safe_dump({"state_dir": str(state),
                                    "sinks": {"store": {"type": "sqlite"}}}))
    return str(path)


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> Any:
    """`socd ...` in-process, with `socd report` registered even before socd.cli lists it."""
    import socd.cli as cli_mod

    if "socd.cli.report" not in cli_mod._COMMAND_MODULES:
        monkeypatch.setattr(cli_mod, "_COMMAND_MODULES",
                            (*cli_mod._COMMAND_MODULES, "socd.cli.report"))
    return main


def test_cli_formats(seeded: dict[str, Any], tmp_path: Path, cli: Any,
                     capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _config(tmp_path, seeded["state"])
    assert cli(["report", "weekly", "--from", "16/11/2026", "--to", "2026-11-22",
                "-c", cfg, "--format", "md"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"# {EXPECTED['title']}")
    assert "1.489 cảnh báo" in out
    for fmt, magic in (("html", b"<!DOCTYPE html>"), ("xlsx", b"PK"), ("pdf", b"%PDF")):
        target = tmp_path / f"r.{fmt}"
        assert cli(["report", "weekly", "--from", "16/11/2026", "--to", "22/11/2026",
                    "-c", cfg, "--format", fmt, "--out", str(target)]) == 0
        assert target.read_bytes().startswith(magic)
        assert "1.489 alerts" in capsys.readouterr().err
    # Usage errors: exit 2 with a message.
    assert cli(["report", "weekly", "--from", "31/02/2026", "-c", cfg]) == 2
    assert "not a date" in capsys.readouterr().err
    assert cli(["report", "weekly", "--source", "elasticsearch", "-c", cfg]) == 2
    assert "no elasticsearch sink" in capsys.readouterr().err


def test_cli_missing_store(tmp_path: Path, cli: Any,
                           capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _config(tmp_path, tmp_path / "empty-state")
    assert cli(["report", "monthly", "-c", cfg]) == 2
    assert "does not exist yet" in capsys.readouterr().err


def test_week_bounds() -> None:
    assert (week().first, week().last) == (WEEK_FIRST, WEEK_LAST)


def test_real_incident_and_sharing_files(tmp_path: Path) -> None:
    """The files as the incidents and sharing subsystems create them (their own code)."""
    from socd.incidents.store import IncidentStore
    from socd.sharing.records import Exchange, record

    IncidentStore(str(tmp_path / "incidents.db")).close()
    path = str(tmp_path / "sharing.db")
    for ts_, result in (("2026-11-17T01:00:00Z", "success"), ("2026-11-18T01:00:00Z",
                                                               "failure")):
        record(path, Exchange(None, ts_, "stix", "taxii-ncsc", "NCSC", None, None, None, 12,
                              result, ""))
    sides = SideSources(incidents_db=str(tmp_path / "incidents.db"), sharing_db=path)
    inc = sides.incidents(week())
    assert (inc.available, inc.opened, inc.closed) == (True, 0, 0)
    ex = sides.exchanges(week())
    assert (ex.total, ex.succeeded, ex.failed, ex.objects) == (2, 1, 1, 12)
    assert ex.last_success == ts("2026-11-17T01:00:00+00:00")
    assert ex.last_success_target == "taxii-ncsc"


def test_index_and_scan_plans_agree(seeded: dict[str, Any]) -> None:
    # The week spans most of the seeded data (a table scan); forcing the time index
    # must give the same numbers.
    indexed = StoreBackend.open(str(seeded["state"] / "alerts.db"))
    indexed.SCAN_FRACTION = 2.0  # never scan
    try:
        a = build_report(indexed, week(), now=NOW)
    finally:
        indexed.close()
    assert a.numbers() == report(seeded["state"]).numbers()


def test_pdf_without_weasyprint_names_the_fix(seeded: dict[str, Any],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from socd.reports.render import RenderError, render

    monkeypatch.setitem(sys.modules, "weasyprint", None)  # import fails
    with pytest.raises(RenderError, match=r"pip install 'socd\[pdf\]'.*libpango"):
        render(report(seeded["state"]), "pdf")


def test_unit_matches_whatever_its_case_and_diacritics(seeded: dict[str, Any]) -> None:
    # Issue 14, point 13: `--unit` finds a unit as severities are found.
    exact = report(seeded["state"], unit="Sở Y tế")
    assert exact.total == 120 + 15 + 11
    for spelling in ("so y te", "SỞ Y TẾ", "So Y-te"):
        data = report(seeded["state"], unit=spelling)
        assert data.numbers() == exact.numbers(), spelling
        assert data.title.endswith(" — Sở Y tế")  # the stored spelling, not the typed one
    unknown = report(seeded["state"], unit="Sở Không Có")
    assert (unknown.total, unknown.unit) == (0, "Sở Không Có")
