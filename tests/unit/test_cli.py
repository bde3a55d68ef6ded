"""The command line: version, replay, exit codes."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from socd import __version__, cli

from .conftest import SAMPLE_DIR

SAMPLES = [
    ("server_edr", "server-edr.ndjson"),
    ("workstation_edr", "workstation-edr.ndjson"),
    ("json", "syslog.ndjson"),
    ("json", "ids.ndjson"),
]


def run_replay(capsysbinary: pytest.CaptureFixture[bytes], *args: str,
               rule_alerts: bool = False) -> tuple[int, list[dict], str]:
    """Run `socd replay`; the decoded events, or with ``rule_alerts`` only the alerts
    the shipped rules raised (event.dataset socd.rules)."""
    code = cli.main(["replay", *args])
    out, err = capsysbinary.readouterr()
    lines = [orjson.loads(line) for line in out.splitlines()]
    lines = [e for e in lines if (e["event"].get("dataset") == "socd.rules") == rule_alerts]
    return code, lines, err.decode()


def test_replay_runs_the_shipped_rules(isolated_env: Path,
                                      capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    path = str(SAMPLE_DIR / "server-edr.ndjson")
    code, alerts, _ = run_replay(capsysbinary, "--format", "server_edr", path,
                                 rule_alerts=True)
    assert code == 0
    assert alerts
    for alert in alerts:
        assert alert["event"]["kind"] == "alert"
        assert alert["rule"]["id"]
        assert alert["socd"]["severity_label"] in {"thấp", "trung bình", "cao", "nghiêm trọng"}
    # Replays are deterministic: the same input gives the same alert ids.
    _, again, _ = run_replay(capsysbinary, "--format", "server_edr", path, rule_alerts=True)
    assert [a["event"]["hash"] for a in again] == [a["event"]["hash"] for a in alerts]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"socd {__version__}"


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main([])
    assert info.value.code == 2
    assert "COMMAND" in capsys.readouterr().err


@pytest.mark.parametrize(("fmt", "sample"), SAMPLES)
def test_replay_sample_writes_ndjson(fmt: str, sample: str, isolated_env: Path,
                                     capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    path = SAMPLE_DIR / sample
    records = [line for line in path.read_bytes().splitlines() if line.strip()]
    code, events, err = run_replay(capsysbinary, "--format", fmt, str(path))
    assert code == 0, err
    # The shipped rules add alerts of their own (event.dataset socd.rules).
    events = [e for e in events if e["event"].get("dataset") != "socd.rules"]
    assert len(events) == len(records)
    for event in events:
        assert event["socd"]["decoder"] == fmt
        assert event["socd"]["collector"] == "replay"
        assert event["socd"]["source"] == str(path)
        if event["event"]["kind"] == "alert":
            assert event["socd"]["severity"] in {"low", "medium", "high", "critical"}
            assert event["socd"]["severity_label"]


@pytest.mark.parametrize(("fmt", "sample"), SAMPLES[:2])
def test_replay_edr_every_line_has_severity(fmt: str, sample: str, isolated_env: Path,
                                            capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    code, events, _ = run_replay(capsysbinary, "-f", fmt, str(SAMPLE_DIR / sample))
    assert code == 0
    assert events
    assert all("severity" in e["socd"] for e in events)


def test_replay_alerts_only(isolated_env: Path,
                            capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    path = str(SAMPLE_DIR / "syslog.ndjson")
    _, everything, _ = run_replay(capsysbinary, "--format", "json", path)
    code, alerts, _ = run_replay(capsysbinary, "--format", "json", "--alerts-only", path)
    assert code == 0
    assert 0 < len(alerts) < len(everything)
    assert all(e["event"]["kind"] == "alert" for e in alerts)
    assert all("severity" in e["socd"] for e in alerts)
    # The plain syslog events that became alerts did so through the IoC list.
    assert all(e["socd"]["ioc"]["matched"] for e in alerts)


def test_replay_stats(isolated_env: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    path = str(SAMPLE_DIR / "ids.ndjson")
    code, events, err = run_replay(capsysbinary, "--format", "json", "--stats", path, path)
    assert code == 0
    stats = orjson.loads(err.strip().splitlines()[-1])
    _, rule_alerts, _ = run_replay(capsysbinary, "--format", "json", path, path,
                                   rule_alerts=True)
    assert stats["records"] == len(events)
    assert stats["events"] == len(events) + len(rule_alerts)
    assert stats["failed"] == {}


def test_replay_missing_file(isolated_env: Path,
                             capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    missing = isolated_env / "nope.ndjson"
    code, events, err = run_replay(capsysbinary, "--format", "json", str(missing))
    assert code == cli.EXIT_FAILURE
    assert events == []
    assert f"no such file: {missing}" in err


def test_replay_unknown_format(isolated_env: Path,
                               capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    code, _, err = run_replay(capsysbinary, "--format", "leef2",
                              str(SAMPLE_DIR / "ids.ndjson"))
    assert code == cli.EXIT_CONFIG
    assert "unknown format 'leef2'" in err
    assert ("json, server_edr, suricata, syslog, wazuh, windows_json, winlogbeat, "
            "workstation_edr") in err


def test_replay_bad_lines_exit_non_zero_but_keep_good_ones(
        isolated_env: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    path = isolated_env / "mixed.ndjson"
    path.write_bytes(b'{"message": "a"}\n{broken\n\xff\xfe\n\n{"source": {"ip": "x"}}\n'
                     b'{"message": "b"}\n')
    code, events, err = run_replay(capsysbinary, "--format", "json", str(path))
    assert code == cli.EXIT_FAILURE
    assert [e["message"] for e in events] == ["a", "b"]
    assert f"{path}: invalid_json" in err
    assert f"{path}: invalid_utf8" in err
    assert f"{path}: invalid_field" in err


def test_replay_gzip(isolated_env: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    import gzip

    path = isolated_env / "ids.ndjson.gz"
    path.write_bytes(gzip.compress((SAMPLE_DIR / "ids.ndjson").read_bytes()))
    code, events, _ = run_replay(capsysbinary, "--format", "json", str(path))
    assert code == 0
    assert len(events) == 200


def test_replay_with_config_declared_decoder(
        tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    cfg = tmp_path / "socd.yaml"
    cfg.write_text("decoders:\n  wazuh_json:\n    type: json\n    severity_table: wazuh\n")
    data = tmp_path / "w.ndjson"
    data.write_bytes(b'{"event": {"kind": "alert"}, "socd": {"vendor_severity": 12}}\n')
    code, events, _ = run_replay(capsysbinary, "-c", str(cfg), "--format", "wazuh_json",
                                 str(data))
    assert code == 0
    assert events[0]["socd"]["severity"] == "critical"
    assert events[0]["socd"]["severity_label"] == "nghiêm trọng"


def test_replay_with_invalid_config(tmp_path: Path,
                                    capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    cfg = tmp_path / "socd.yaml"
    cfg.write_text("decoderz: {}\n")
    code, _, err = run_replay(capsysbinary, "-c", str(cfg), "--format", "json",
                              str(SAMPLE_DIR / "ids.ndjson"))
    assert code == cli.EXIT_CONFIG
    assert f"{cfg}:1: decoderz: unknown key 'decoderz' (hint: did you mean 'decoders'?)" in err


def test_socd_config_env_is_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "from-env.yaml"
    cfg.write_text("http:\n  port: 1\n")
    monkeypatch.setenv("SOCD_CONFIG", str(cfg))
    assert cli.main(["check-config"]) == 0
    assert f"{cfg}: OK" in capsys.readouterr().out


def test_check_config_rejects_a_broken_notification_template(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "title.vi.j2").write_text("{{ alerts[0].rule.name | no_such_filter }}")
    config = tmp_path / "socd.yaml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        "notifiers:\n  irt: {type: webhook, url: 'http://127.0.0.1:9/hook'}\n"
        f"notifications:\n  templates_dir: {templates}\n"
        "  routes: [{name: all, notifiers: [irt]}]\n")
    assert cli.main(["check-config", "-c", str(config)]) == 2
    err = capsys.readouterr().err
    assert "notifications: template title.vi.j2" in err
    assert "no_such_filter" in err
