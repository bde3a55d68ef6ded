"""`socd alert ...` through socd.cli.main, on a store in tmp_path (no Elasticsearch)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from socd.alerts.store import AlertStore
from socd.cli import main
from socd.event import Event, fingerprint, normalize, set_severity
from socd.severity import Severity


def alert(i: int, *, rule: str = "2001219", severity: Severity = Severity.HIGH,
          unit: str = "Sở Y tế", ts: str | None = None) -> Event:
    event: Event = {
        "@timestamp": ts or f"2026-11-16T01:{i:02d}:00Z",
        "event": {"kind": "alert", "hash": fingerprint("cli", str(i)), "module": "suricata"},
        "host": {"name": f"srv-{i}"},
        "source": {"ip": "203.0.113.9", "port": 40000 + i},
        "destination": {"ip": "10.10.20.11", "port": 22},
        "rule": {"id": rule, "name": "ET SCAN Potential SSH Scan",
                 "description": "Quét SSH từ Internet"},
        "socd": {"layer": 2, "asset_kind": "server", "unit": unit,
                 "alert": {"status": "new"}},
        "message": f"scan {i}",
    }
    set_severity(event, severity)
    return normalize(event)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, list[str]]:
    monkeypatch.delenv("SOCD_CONFIG", raising=False)
    monkeypatch.delenv("SUDO_USER", raising=False)
    monkeypatch.setenv("USER", "truc-ban")
    state = tmp_path / "state"
    cfg = tmp_path / "socd.yaml"
    cfg.write_text(f"state_dir: {state}\nsinks:\n  store:\n    type: sqlite\n"
                   "    path: db/alerts.db\n", encoding="utf-8")
    events = [alert(0), alert(1, severity=Severity.CRITICAL, unit="UBND huyện Châu Thành"),
              alert(2, rule="R-2", severity=Severity.LOW)]
    store = AlertStore(str(state / "db" / "alerts.db"))
    store.insert(events)
    store.close()
    return str(cfg), [e["event"]["hash"] for e in events]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_list_table_and_filters(env: tuple[str, list[str]],
                                capsys: pytest.CaptureFixture[str]) -> None:
    cfg, ids = env
    code, out, err = run(capsys, "alert", "list", "-c", cfg)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "TIME", "(+07)", "SEVERITY", "UNIT", "RULE", "HOST/IP",
                                "STATUS", "ASSIGNEE"]
    assert [line.split()[0] for line in lines[1:]] == [ids[2][:10], ids[1][:10], ids[0][:10]]
    assert "2026-11-16 08:01" in lines[2]  # 01:01Z shown in Asia/Ho_Chi_Minh
    assert "nghiêm trọng" in lines[2]
    assert "UBND huyện Châu Thành" in lines[2]
    assert "new (mới)" in lines[1]
    assert "srv-2" in lines[1]

    code, out, _ = run(capsys, "alert", "list", "--severity", "critical", "-c", cfg)
    assert [line.split()[0] for line in out.splitlines()[1:]] == [ids[1][:10]]
    code, out, _ = run(capsys, "alert", "list", "--rule", "R-2", "--json", "-c", cfg)
    docs = [orjson.loads(line) for line in out.splitlines()]
    assert [d["event"]["hash"] for d in docs] == [ids[2]]
    assert docs[0]["socd"]["alert"]["status"] == "new"
    code, out, _ = run(capsys, "alert", "list", "--unit", "Sở Y tế", "--limit", "1", "-c", cfg)
    assert len(out.splitlines()) == 2
    # Units match as severities do: case and diacritics do not matter (issue 14, point 13).
    for spelling in ("so y te", "SỞ Y TẾ", "So  Y-te"):
        code, out, _ = run(capsys, "alert", "list", "--unit", spelling, "--json", "-c", cfg)
        assert [orjson.loads(line)["event"]["hash"] for line in out.splitlines()] == [
            ids[2], ids[0]], spelling
    code, out, _ = run(capsys, "alert", "list", "--unit", "ubnd huyen chau thanh", "-c", cfg)
    assert [line.split()[0] for line in out.splitlines()[1:]] == [ids[1][:10]]
    code, out, _ = run(capsys, "alert", "list", "--status", "resolved", "-c", cfg)
    assert (code, out.strip()) == (0, "no alerts match")
    code, out, _ = run(capsys, "alert", "list", "--since", "2026-11-16T08:01", "--json",
                       "-c", cfg)
    assert len(out.splitlines()) == 2  # since 08:01 local = 01:01Z
    code, _, err = run(capsys, "alert", "list", "--since", "hôm qua", "-c", cfg)
    assert code == 2
    assert "use a duration" in err


def test_ack_false_positive_resolve_and_show(env: tuple[str, list[str]],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    cfg, ids = env
    code, out, err = run(capsys, "alert", "ack", ids[0][:8], "--note", "đang xác minh",
                         "-c", cfg)
    assert (code, err) == (0, "")
    assert out.strip() == (f"alert {ids[0][:10]}: new (mới) -> acknowledged (đã tiếp nhận), "
                           "by truc-ban, assigned to truc-ban")

    code, out, _ = run(capsys, "alert", "ack", ids[0], "--by", "an", "-c", cfg)
    assert code == 0
    assert "already acknowledged (đã tiếp nhận) by truc-ban" in out

    code, out, _ = run(capsys, "alert", "false-positive", ids[0][:6], "--by", "an",
                       "--note", "máy quét của Sở", "-c", cfg)
    assert code == 0
    assert "-> false_positive (cảnh báo nhầm)" in out

    code, out, err = run(capsys, "alert", "resolve", ids[0][:6], "-c", cfg)
    assert code == 1
    assert out == ""
    assert "cannot become resolved (đã xử lý) directly" in err
    assert f"hint: reopen it first with `socd alert ack {ids[0][:10]}`" in err

    code, out, _ = run(capsys, "alert", "assign", ids[0][:6], "--to", "bình", "-c", cfg)
    assert code == 0
    assert "assigned to bình (was truc-ban)" in out

    code, out, _ = run(capsys, "alert", "show", ids[0][:7], "-c", cfg)
    assert code == 0
    assert out.splitlines()[0] == f"Alert {ids[0]}"
    assert "false_positive (cảnh báo nhầm)" in out
    assert "Assignee:     bình" in out
    assert "2026-11-16 08:00:00 (Asia/Ho_Chi_Minh" in out
    assert "Source:       203.0.113.9:40000" in out
    assert "Quét SSH từ Internet" in out
    history = out.split("History:\n")[1].splitlines()
    assert [h.split()[2] for h in history] == ["ack", "false_positive", "assign"]
    assert '"máy quét của Sở"' in history[1]

    code, out, _ = run(capsys, "alert", "show", ids[0][:7], "--json", "-c", cfg)
    doc = orjson.loads(out)
    assert doc["event"]["socd"]["alert"]["status"] == "false_positive"
    assert doc["event"]["socd"]["alert"]["assignee"] == "bình"
    assert doc["event"]["socd"]["alert"]["updated_by"] == "truc-ban"
    assert [h["action"] for h in doc["history"]] == ["ack", "false_positive", "assign"]
    assert doc["history"][1] | {"ts": None} == {
        "ts": None, "action": "false_positive", "status_from": "acknowledged",
        "status_to": "false_positive", "by": "an", "note": "máy quét của Sở"}

    code, out, _ = run(capsys, "alert", "resolve", ids[1][:6], "--by", "an", "-c", cfg)
    assert code == 0
    assert "new (mới) -> resolved (đã xử lý)" in out


def test_stats(env: tuple[str, list[str]], capsys: pytest.CaptureFixture[str]) -> None:
    cfg, ids = env
    run(capsys, "alert", "false-positive", ids[0], "-c", cfg)
    run(capsys, "alert", "ack", ids[1], "-c", cfg)
    code, out, _ = run(capsys, "alert", "stats", "-c", cfg)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "Alerts: 3"
    assert lines[1].split() == ["new", "(mới)", "1"]
    assert lines[3].split() == ["false_positive", "(cảnh", "báo", "nhầm)", "1"]
    assert lines[-2].split() == ["RULE", "NAME", "FP", "TOTAL", "FP", "RATIO"]
    assert lines[-1].split() == ["2001219", "ET", "SCAN", "Potential", "SSH", "Scan", "1", "2",
                                 "50.0%"]
    code, out, _ = run(capsys, "alert", "stats", "--json", "--all-rules", "-c", cfg)
    doc = orjson.loads(out)
    assert doc["by_status"] == {"new": 1, "acknowledged": 1, "false_positive": 1,
                                "resolved": 0}
    assert doc["false_positives_by_rule"] == [
        {"rule_id": "2001219", "rule_name": "ET SCAN Potential SSH Scan", "false_positives": 1,
         "total": 2, "ratio": 0.5},
        {"rule_id": "R-2", "rule_name": "ET SCAN Potential SSH Scan", "false_positives": 0,
         "total": 1, "ratio": 0.0}]
    code, out, _ = run(capsys, "alert", "stats", "--since", "1h", "-c", cfg)
    assert out.splitlines()[0].startswith("Alerts since ")
    assert out.splitlines()[0].endswith(": 0")


def test_errors_and_exit_codes(env: tuple[str, list[str]], tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    cfg, ids = env
    code, _, err = run(capsys, "alert", "show", "0123456789", "-c", cfg)
    assert code == 1
    assert "no alert id starts with 0123456789" in err
    code, _, err = run(capsys, "alert", "ack", "abc", "-c", cfg)
    assert code == 1
    assert "at least 6 hex digits" in err

    # An ambiguous prefix lists the candidates.
    store = AlertStore(str(tmp_path / "state" / "db" / "alerts.db"))
    twins = []
    for n in (1, 2):
        event = alert(10 + n)
        event["event"]["hash"] = "beefbeef" + str(n) * 32
        twins.append(event["event"]["hash"])
    store.insert([alert(11) | {"event": {"kind": "alert", "hash": twins[0]}},
                  alert(12) | {"event": {"kind": "alert", "hash": twins[1]}}])
    store.close()
    code, _, err = run(capsys, "alert", "ack", "beefbeef", "-c", cfg)
    assert code == 1
    assert "alert id prefix 'beefbeef' is ambiguous; it matches 2 alerts" in err
    assert f"  {twins[0][:10]}" in err
    assert f"  {twins[1][:10]}" in err
    assert "hint: give more characters of the id" in err

    no_sink = tmp_path / "no-sink.yaml"
    no_sink.write_text(f"state_dir: {tmp_path / 'state'}\n", encoding="utf-8")
    code, _, err = run(capsys, "alert", "list", "-c", str(no_sink))
    assert code == 2
    assert "has no `sqlite` sink" in err

    two = tmp_path / "two.yaml"
    two.write_text(f"state_dir: {tmp_path / 'state'}\nsinks:\n  a: {{type: sqlite}}\n"
                   "  b: {type: sqlite, path: db/alerts.db}\n", encoding="utf-8")
    code, _, err = run(capsys, "alert", "list", "-c", str(two))
    assert code == 2
    assert "choose one with --sink: a, b" in err
    code, out, _ = run(capsys, "alert", "list", "--sink", "b", "-c", str(two))
    assert code == 0
    assert ids[0][:10] in out
    code, _, err = run(capsys, "alert", "list", "--sink", "a", "-c", str(two))
    assert code == 2
    assert "does not exist yet" in err

    code, _, err = run(capsys, "alert", "list", "-c", str(tmp_path / "missing.yaml"))
    assert code == 2
    with pytest.raises(SystemExit) as info:
        main(["alert", "ack"])
    assert info.value.code == 2


def test_by_defaults_to_sudo_user(env: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    cfg, ids = env
    monkeypatch.setenv("SUDO_USER", "lan")
    code, out, _ = run(capsys, "alert", "ack", ids[2], "-c", cfg)
    assert code == 0
    assert out.strip().endswith("by lan, assigned to lan")
    monkeypatch.delenv("SUDO_USER")
    monkeypatch.delenv("USER")
    monkeypatch.setenv("LOGNAME", "thu")  # the login name comes last
    code, out, _ = run(capsys, "alert", "resolve", ids[2], "-c", cfg)
    assert code == 0
    assert out.strip().endswith("by thu, assigned to lan")
    code, _, err = run(capsys, "alert", "assign", ids[2], "--to", "lan", "--by", " ",
                       "-c", cfg)
    assert code == 0  # nothing to change: who asked does not matter


def test_show_names_file_hashes_and_process_of_an_edr_alert(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Issue 14, point 13: an EDR alert's file, hashes and process are what the analyst
    # acts on; `alert show` lists them (and the incident it belongs to).
    monkeypatch.delenv("SOCD_CONFIG", raising=False)
    state = tmp_path / "state"
    cfg = tmp_path / "socd.yaml"
    cfg.write_text(f"state_dir: {state}\nsinks:\n  store:\n    type: sqlite\n",
                   encoding="utf-8")
    event = alert(0)
    event["file"] = {"path": "/var/www/html/portal/uploads/2026/11/tmp01.php",
                     "name": "tmp01.php",
                     "hash": {"sha256": "f6e27048" + "0" * 56, "md5": "bc273380" + "0" * 24}}
    event["process"] = {"executable": "/usr/sbin/php-fpm8.1", "name": "php-fpm8.1",
                        "pid": 4242, "command_line": "php-fpm: pool www",
                        "parent": {"name": "php-fpm8.1"}}
    event["user"] = {"name": "www-data"}
    event["socd"]["correlation_id"] = event["event"]["hash"]
    store = AlertStore(str(state / "alerts.db"))
    store.insert([event, alert(1)])
    store.close()
    code, out, _ = run(capsys, "alert", "show", event["event"]["hash"][:8], "-c", str(cfg))
    assert code == 0
    for line in ("User:         www-data",
                 "File:         /var/www/html/portal/uploads/2026/11/tmp01.php",
                 f"SHA-256:      f6e27048{'0' * 56}",
                 f"MD5:          bc273380{'0' * 24}",
                 "Process:      /usr/sbin/php-fpm8.1 (pid 4242)",
                 "Command line: php-fpm: pool www",
                 "Parent:       php-fpm8.1",
                 f"Incident:     {event['event']['hash']}"):
        assert f"  {line}" in out.splitlines(), (line, out)
    # An IDS alert has none of these: no empty rows for them.
    code, out, _ = run(capsys, "alert", "show", alert(1)["event"]["hash"][:8], "-c", str(cfg))
    assert code == 0
    assert not any(line.split(":")[0].strip() in {"File", "SHA-256", "Process", "User"}
                   for line in out.splitlines())
