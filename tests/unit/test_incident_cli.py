"""`socd incident ...` through socd.cli.main, on stores in tmp_path."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from socd import cli
from socd.alerts.store import AlertStore
from socd.cli import main
from socd.event import Event
from socd.incidents.store import IncidentStore
from socd.severity import Severity
from tests.unit.test_alert_cli import alert

TITLE = "Mã độc trên máy chủ Cổng thông tin điện tử"


@pytest.fixture(autouse=True)
def _commands(monkeypatch: pytest.MonkeyPatch) -> None:
    # Until socd.cli lists the module (then this is a no-op).
    if "socd.cli.incident" not in cli._COMMAND_MODULES:
        monkeypatch.setattr(cli, "_COMMAND_MODULES",
                            (*cli._COMMAND_MODULES, "socd.cli.incident"))


def seeded_alerts() -> list[Event]:
    events = [alert(0), alert(1, severity=Severity.CRITICAL, unit="UBND huyện Châu Thành"),
              alert(2, rule="R-2", severity=Severity.LOW)]
    events[0]["socd"]["ioc"] = {"values": ["185.220.101.7", "c2.example-bad.vn"],
                                "matched": True}
    events[0]["file"] = {"hash": {"sha256": "a" * 64}}
    return events


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, list[str], Path]:
    monkeypatch.delenv("SOCD_CONFIG", raising=False)
    monkeypatch.delenv("SUDO_USER", raising=False)
    monkeypatch.delenv("SOCD_AUDIT_KEY", raising=False)
    monkeypatch.setenv("USER", "truc-ban")
    state = tmp_path / "state"
    cfg = tmp_path / "socd.yaml"
    cfg.write_text(f"state_dir: {state}\nsinks:\n  store:\n    type: sqlite\n"
                   "    path: alerts.db\n", encoding="utf-8")
    events = seeded_alerts()
    store = AlertStore(str(state / "alerts.db"))
    store.insert(events)
    store.close()
    return str(cfg), [e["event"]["hash"] for e in events], state


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_lifecycle(env: tuple[str, list[str], Path], capsys: pytest.CaptureFixture[str]) -> None:
    cfg, ids, state = env
    code, out, err = run(capsys, "incident", "open", "--alert", ids[0][:8], "--title", TITLE,
                         "--discovered", "2025-11-10T08:00", "--system", "Cổng TTĐT tỉnh",
                         "--level", "4", "--description", "Phát hiện kết nối C&C", "-c", cfg)
    assert (code, err) == (0, "")
    assert out.startswith("opened SC-")
    year_id = out.split()[1]
    assert year_id.endswith("-0001")
    # 08:00 +07 = 01:00Z; the notification is due 5 days later
    inc = _get(state, year_id)
    assert inc.discovered_at == "2025-11-10T01:00:00Z"
    assert inc.notify_due == "2025-11-15T01:00:00Z"
    assert inc.report_due is None
    assert inc.severity == "high"
    assert inc.unit == "Sở Y tế"
    assert inc.opened_by == "truc-ban"

    code, out, _ = run(capsys, "incident", "add", year_id.lower(), "--alert", ids[1], "-c", cfg)
    assert code == 0
    assert "2 alerts linked" in out
    code, out, _ = run(capsys, "incident", "add", year_id, "--alert", ids[1], "-c", cfg)
    assert code == 0
    assert "nothing changed" in out
    assert _get(state, year_id).severity == "critical"  # the highest of its alerts

    assert run(capsys, "incident", "assign", year_id, "--to", "Nguyễn Văn An", "-c", cfg)[0] == 0
    code, out, _ = run(capsys, "incident", "action", year_id, "--layer", "1", "--text",
                       "Cách ly máy chủ khỏi mạng", "--by", "Trần Bình", "-c", cfg)
    assert code == 0
    assert "Lớp 1 (tại chỗ)" in out
    assert run(capsys, "incident", "action", year_id, "--layer", "2", "--text",
               "Chặn địa chỉ C&C trên tường lửa", "-c", cfg)[0] == 0
    code, out, _ = run(capsys, "incident", "impact", year_id, "--set",
                       "service_interruption", "--beyond-capacity", "-c", cfg)
    assert code == 0
    assert "SERIOUS" in out
    code, out, _ = run(capsys, "incident", "notified", year_id, "--at", "2025-11-11T09:00",
                       "-c", cfg)
    assert code == 0
    code, out, _ = run(capsys, "incident", "response-ended", year_id, "--at",
                       "2025-11-12T17:00", "-c", cfg)
    assert code == 0
    assert "response ended at 2025-11-12 17:00" in out

    inc = _get(state, year_id)
    assert inc.status == "response_ended"
    assert inc.report_due == "2025-11-17T10:00:00Z"
    assert inc.notified_at == "2025-11-11T02:00:00Z"
    assert inc.serious
    assert inc.impacts == ("service_interruption",)
    assert inc.assignee == "Nguyễn Văn An"
    assert [(a.layer, a.by) for a in inc.actions] == [(1, "Trần Bình"), (2, "truc-ban")]
    assert set(inc.alerts) == {ids[0], ids[1]}

    code, out, _ = run(capsys, "incident", "show", year_id, "--json", "-c", cfg)
    doc = orjson.loads(out)
    assert doc["compliance"]["notification"] == "on_time"
    assert [h["action"] for h in doc["history"]] == [
        "open", "add_alerts", "assign", "action", "action", "impact", "notified",
        "response_ended"]
    code, out, _ = run(capsys, "incident", "show", year_id, "-c", cfg)
    assert code == 0
    assert "YES — sự cố nghiêm trọng" in out
    assert "Chặn địa chỉ C&C" in out

    code, out, _ = run(capsys, "incident", "reported", year_id, "--at", "2025-11-14T08:00",
                       "-c", cfg)
    assert code == 0
    code, out, _ = run(capsys, "incident", "close", year_id, "-c", cfg)
    assert code == 0
    assert "closed" in out
    code, out, _ = run(capsys, "incident", "close", year_id, "-c", cfg)
    assert code == 0
    assert "nothing changed" in out
    assert _get(state, year_id).status == "closed"

    code, out, _ = run(capsys, "incident", "list", "--open", "-c", cfg)
    assert out.strip() == "no incidents match"
    code, out, _ = run(capsys, "incident", "list", "--json", "-c", cfg)
    (listed,) = [orjson.loads(line) for line in out.splitlines()]
    assert listed["id"] == year_id
    assert listed["compliance"]["final_report"] == "on_time"

    # every change is in the audit log, and the chain verifies
    code, out, err = run(capsys, "audit", "verify", "-c", cfg)
    assert code == 0, err
    assert "audit log OK: 10 records" in out


def test_second_incident_gets_next_id_and_overdue(env: tuple[str, list[str], Path],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    cfg, ids, _ = env
    first = run(capsys, "incident", "open", "--alert", ids[0], "--title", "A", "--discovered",
                "10d", "-c", cfg)[1].split()[1]
    second = run(capsys, "incident", "open", "--alert", ids[2], "--title", "B", "-c", cfg
                 )[1].split()[1]
    assert int(second.rsplit("-", 1)[1]) == int(first.rsplit("-", 1)[1]) + 1
    code, out, _ = run(capsys, "incident", "list", "--overdue", "-c", cfg)
    assert code == 0
    rows = out.splitlines()[1:]
    assert [r.split()[0] for r in rows] == [first]
    assert "notification" in rows[0]
    code, out, _ = run(capsys, "incident", "list", "--open", "-c", cfg)
    assert {r.split()[0] for r in out.splitlines()[1:]} == {first, second}


@pytest.mark.parametrize(("argv", "code", "message"), [
    (("incident", "show", "SC-2026-0099"), 1, "no incident SC-2026-0099"),
    (("incident", "show", "nonsense"), 1, "is not an incident id"),
    (("incident", "open", "--alert", "ffffffff", "--title", "x"), 1, "no alert id starts with"),
    (("incident", "open", "--alert", "zz", "--title", "x"), 1, "is not an alert id"),
    (("incident", "open", "--alert", "PREFIX", "--title", "x", "--discovered", "2099-01-01"),
     2, "in the future"),
    (("incident", "impact", "SC-2026-0001", "--set", "meteor"), 2, "unknown impact meteor"),
    (("incident", "reported", "SC-2026-0001"), 1, "first: socd incident response-ended"),
])
def test_errors(env: tuple[str, list[str], Path], capsys: pytest.CaptureFixture[str],
                argv: tuple[str, ...], code: int, message: str) -> None:
    cfg, ids, state = env
    store = IncidentStore(str(state / "incidents.db"))
    from datetime import UTC, datetime

    store.open_incident(title="t", by="x", alerts=[(ids[0], "high", None)],
                        now=datetime(2026, 11, 23, tzinfo=UTC))
    store.close()
    argv = tuple(a.replace("PREFIX", ids[0][:8]) for a in argv)
    got, _, err = run(capsys, *argv, "-c", cfg)
    assert got == code
    assert message in err


def test_no_sqlite_sink_is_a_usage_error(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "socd.yaml"
    cfg.write_text(f"state_dir: {tmp_path / 's'}\n", encoding="utf-8")
    code, _, err = run(capsys, "incident", "open", "--alert", "abcdef12", "--title", "x",
                       "--by", "a", "-c", str(cfg))
    assert code == 2
    assert "no `sqlite` sink" in err


def _get(state: Path, incident_id: str):  # type: ignore[no-untyped-def]
    store = IncidentStore(str(state / "incidents.db"))
    try:
        return store.get(incident_id)
    finally:
        store.close()


def _open_level(tmp_path: Path, capsys: pytest.CaptureFixture[str], events: list[Event],
                inventory: str | None = None) -> tuple[str, int | None]:
    """Open an incident on ``events`` without --level; its output and recorded level."""
    state = tmp_path / "state"
    text = f"state_dir: {state}\nsinks:\n  store:\n    type: sqlite\n    path: alerts.db\n"
    if inventory is not None:
        (tmp_path / "assets.yaml").write_text(inventory, encoding="utf-8")
        text += "enrichment:\n  assets_file: assets.yaml\n"
    cfg = tmp_path / "socd.yaml"
    cfg.write_text(text, encoding="utf-8")
    store = AlertStore(str(state / "alerts.db"))
    store.insert(events)
    store.close()
    code, out, err = run(capsys, "incident", "open", "--alert", events[0]["event"]["hash"],
                         "--title", TITLE, "-c", str(cfg))
    assert (code, err) == (0, "")
    return out, _get(state, out.split()[1]).system_level


def test_open_takes_the_system_level_of_the_alerts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Issue 14, point 13: the level (cấp độ) enrichment gave the alert feeds the
    # serious-incident check without --level.
    monkeypatch.setenv("USER", "truc-ban")
    event = alert(0)
    event["socd"]["system_level"] = 4
    out, level = _open_level(tmp_path, capsys, [event])
    assert level == 4
    assert "security level (cấp độ) 4 of the affected system, from the alerts" in out


def test_open_looks_the_level_up_in_the_inventory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # An alert stored before the inventory listed its host: the inventory decides.
    monkeypatch.setenv("USER", "truc-ban")
    event = alert(0)  # host.name srv-0, no socd.system_level
    out, level = _open_level(tmp_path, capsys, [event],
                             "- hostname: [SRV-0]\n  unit: Sở Y tế\n  system_level: 3\n")
    assert level == 3
    assert "from the asset inventory" in out


def test_open_without_any_level_records_none(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("USER", "truc-ban")
    out, level = _open_level(tmp_path, capsys, [alert(0)])
    assert level is None
    assert "security level" not in out
