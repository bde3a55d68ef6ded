"""The Sigma importer (socd.engine.sigma, docs/sigma.md) on the fixtures in
tests/fixtures/sigma/."""

from __future__ import annotations

import argparse
from pathlib import Path

import orjson
import pytest
import yaml

from socd import cli
from socd.cli import sigma as sigma_cli
from socd.engine import sigma
from socd.engine.engine import RuleEngine
from socd.engine.loader import load_text
from socd.engine.testing import run_tests
from socd.event import unflatten

REPO = Path(__file__).resolve().parents[2]
FIX = REPO / "tests" / "fixtures" / "sigma"
CONVERTIBLE = FIX / "convertible"
UNCONVERTIBLE = FIX / "unconvertible"
INVALID = FIX / "invalid"
EXPECTED = FIX / "expected" / "convertible.yaml"

OFFICE = "sigma-8d4b1c2e-6f0a-4c59-9a3e-2b7d1e5f0a11"
LOG_CLEARED = "sigma-2c1e9a0b-6d8c-4a57-8f3d-1e2a3b4c5d61"
RDP = "sigma-5a9c0e1d-3b7f-4e21-9c6a-7d8e9f0a1b22"
SPRAY = "sigma-0e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a802"
NEW_ADMIN = "sigma-7b8c9d0e-1f2a-4b3c-8d4e-5f6a7b8c9d03"
SQLI = "sigma-3d4e5f6a-7b8c-4d9e-8f0a-1b2c3d4e5f61"
BIG_RESPONSE = "sigma-3d4e5f6a-7b8c-4d9e-8f0a-1b2c3d4e5f62"
SMB_OUT = "sigma-9e0f1a2b-3c4d-4e5f-a6b7-c8d9e0f1a201"


@pytest.fixture(scope="module")
def converted() -> sigma.Conversion:
    return sigma.convert_paths([CONVERTIBLE])


def _by_id(conv: sigma.Conversion) -> dict[str, dict]:
    return {r["id"]: r for r in conv.rules}


def _engine(conv: sigma.Conversion) -> RuleEngine:
    rules, problems = load_text(sigma.to_yaml(conv), "converted.yaml")
    assert not problems, problems
    return RuleEngine(rules)


def _alerts(engine: RuleEngine, events: list[dict]) -> list[dict]:
    evs = [unflatten(e) for e in events]
    for i, e in enumerate(evs):
        e.setdefault("event", {}).setdefault("kind", "event")
        e["event"].setdefault("hash", f"h{i}")
    return engine.process(evs)[len(evs):]


# ------------------------------------------------------------------ what converts


def test_every_convertible_fixture_converts(converted: sigma.Conversion) -> None:
    assert converted.errors == []
    assert converted.skipped == []
    assert set(_by_id(converted)) == {OFFICE, LOG_CLEARED, RDP, SPRAY, NEW_ADMIN, SQLI,
                                      BIG_RESPONSE, SMB_OUT}
    # Rules referenced by correlations (generate: false) are not emitted on their own.
    assert not any(r["title"]["en"] in {"Failed RDP Logon", "User Account Created"}
                   for r in converted.rules)


def test_output_matches_the_expected_file(converted: sigma.Conversion) -> None:
    assert sigma.to_yaml(converted) == EXPECTED.read_text(encoding="utf-8")


def test_condition_modifiers_and_logsource(converted: sigma.Conversion) -> None:
    office = _by_id(converted)[OFFICE]
    assert office["severity"] == "high"
    assert office["tags"] == ["attack.execution", "attack.t1204.002", "attack.t1059.001"]
    assert "sigma:8d4b1c2e-6f0a-4c59-9a3e-2b7d1e5f0a11" in office["references"]
    index, parent, child, filt = office["match"]["all"]
    assert index == {"any": [
        {"all": [{"field": "winlog.channel", "equals": "Security"},
                 {"field": "event.code", "equals": "4688"}]},
        {"all": [{"field": "winlog.channel", "equals": "Microsoft-Windows-Sysmon/Operational"},
                 {"field": "event.code", "equals": "1"}]}]}
    assert parent == {"field": "process.parent.executable",
                      "suffix": ["\\WINWORD.EXE", "\\EXCEL.EXE", "\\POWERPNT.EXE"]}
    assert child["field"] == "process.executable"
    assert len(child["suffix"]) == 4
    assert filt == {"not": {"field": "process.command_line", "contains": "OfficeC2RClient"}}

    sqli = _by_id(converted)[SQLI]["match"]["all"]
    assert sqli[0] == {"field": "event.category", "equals": "web"}
    assert sqli[1] == {"any": [
        {"all": [{"field": "url.query", "contains": "union"},
                 {"field": "url.query", "contains": "select"}]},
        {"field": "url.query", "regex": r"(?i)sleep\(\d+\)|benchmark\(", "case": "sensitive"}]}
    assert sqli[2] == {"not": {"field": "source.ip", "cidr": ["10.10.0.0/24", "10.10.1.0/24"]}}
    big = _by_id(converted)[BIG_RESPONSE]["match"]["all"]
    assert {"field": "http.response.body.bytes", "gte": 52428800} in big
    smb = _by_id(converted)[SMB_OUT]["match"]["all"]
    assert {"field": "destination.port", "in": [445, 139, 3389]} in smb
    assert {"not": {"field": "event.action", "prefix": "deny"}} in smb


def test_levels_map_to_severities(converted: sigma.Conversion) -> None:
    by_id = _by_id(converted)
    assert by_id[LOG_CLEARED]["severity"] == "medium"
    assert by_id[NEW_ADMIN]["severity"] == "critical"
    conv = sigma.convert_text(
        (CONVERTIBLE / "win_security_log_cleared.yml").read_text().replace(
            "level: medium", "level: informational"))
    assert conv.rules[0]["severity"] == "low"


def test_correlations(converted: sigma.Conversion) -> None:
    by_id = _by_id(converted)
    assert by_id[RDP]["threshold"] == {"window": "300s", "count": 10, "group_by": ["source.ip"]}
    assert by_id[RDP]["match"]["all"][-1] == {"field": "winlog.event_data.LogonType",
                                              "equals": 10}
    # value_count with gt 9 -> at least 10 distinct users
    assert by_id[SPRAY]["threshold"] == {"window": "900s", "group_by": ["source.ip"],
                                         "distinct": {"field": "user.name", "count": 10}}
    seq = by_id[NEW_ADMIN]["sequence"]
    assert seq["window"] == "1800s"
    assert seq["by"] == ["host.name"]
    assert [s["match"]["all"][1] for s in seq["steps"]] == [
        {"field": "event.code", "equals": 4720}, {"field": "event.code", "equals": 4732}]


def test_temporal_any_order_is_reported_as_ordered() -> None:
    text = (CONVERTIBLE / "win_new_admin_sequence.yml").read_text().replace(
        "type: temporal_ordered", "type: temporal")
    conv = sigma.convert_text(text)
    assert [r["id"] for r in conv.rules] == [NEW_ADMIN]
    assert any("temporal (any order)" in w for w in conv.warnings)


def test_wide_base64offset_converts_to_alternatives() -> None:
    conv = sigma.convert_text("""
title: Encoded IEX
id: 11111111-2222-4333-8444-555555555555
logsource: {product: windows, category: process_creation}
detection:
  selection:
    CommandLine|wide|base64offset|contains: 'IEX ('
  condition: selection
level: high
""")
    assert not conv.skipped, conv.skipped
    cond = conv.rules[0]["match"]["all"][1]
    assert cond["field"] == "process.command_line"
    assert len(cond["contains"]) == 3


# -------------------------------------------------------------- what does not convert


def test_unconvertible_rules_are_reported_with_reasons() -> None:
    conv = sigma.convert_paths([UNCONVERTIBLE])
    assert conv.errors == []
    assert conv.rules == []
    reasons = {s.title: s.reason for s in conv.skipped}
    assert reasons == {
        "Mimikatz Keywords": "keyword search (a value without a field)",
        "Process Runs as the Same User as its Parent":
            "unsupported modifier fieldref (comparing two fields) on field 'User'",
        "AWS CloudTrail Logging Stopped": "unmapped field 'eventSource'",
        "Logon by a Member of the Admins Placeholder":
            "unsupported modifier expand (placeholders) on field 'TargetUserName'",
        "UTF-16 Literal Without Base64": "UTF-16 value (wide modifier without base64)",
        "Missing Heartbeats":
            "correlation condition lt (socd thresholds fire at 'at least N')",
        "Many Shells Started":
            "referenced rule 'Auditd Execve of a Shell': linux log source 'auditd' has no "
            "socd decoder",
        "Curl Outside the Internal Repository":
            "regular expression not supported by the linear-time engine (RE2): lookahead or "
            "lookbehind ((?=, (?!, (?<=, (?<!) in 'curl\\\\s+(?!https?://repo\\\\.internal)' "
            "(RE2 matches in linear time and has no lookahead or lookbehind: match the text "
            "itself, or split the condition into all:/not: leaves)",
    }
    report = "\n".join(sigma.report_lines(conv))
    assert "0 of 8 Sigma rules converted, 8 not converted, 0 parse errors" in report


def test_keep_unmapped_keeps_raw_field_names() -> None:
    conv = sigma.convert_paths([UNCONVERTIBLE / "cloudtrail_unmapped.yml"], keep_unmapped=True)
    rule = conv.rules[0]
    assert rule["match"] == {"all": [{"field": "eventSource", "equals": "cloudtrail.amazonaws.com"},
                                     {"field": "eventName", "equals": "StopLogging"}]}
    assert any("unmapped field 'eventSource' kept as is" in w for w in conv.warnings)


def test_parse_errors_are_errors() -> None:
    conv = sigma.convert_paths([INVALID])
    assert len(conv.errors) == 2
    assert not conv.ok
    assert any("bad_yaml.yml" in e for e in conv.errors)
    assert any("containz" in e for e in conv.errors)


def test_account_events_map_target_user_to_user_target() -> None:
    conv = sigma.convert_text("""
title: Account Created
id: 11111111-2222-4333-8444-555555555556
logsource: {product: windows, service: security}
detection:
  selection: {EventID: 4720, TargetUserName|startswith: 'tmp'}
  condition: selection
level: medium
""")
    assert {"field": "user.target.name", "prefix": "tmp"} in conv.rules[0]["match"]["all"]


# --------------------------------------------------------------- with the engine


def test_converted_rules_load_and_their_tests_pass(converted: sigma.Conversion) -> None:
    rules, problems = load_text(sigma.to_yaml(converted), "converted.yaml")
    assert not problems, problems
    assert len(rules) == len(converted.rules)
    outcomes = run_tests(rules)
    assert len(outcomes) == 4
    assert all(o.ok for o in outcomes), [(o.rule_id, o.name) for o in outcomes if not o.ok]


def test_converted_rules_match_decoded_winlogbeat_events(
        converted: sigma.Conversion, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["replay", "--format", "winlogbeat",
                     str(REPO / "tests" / "fixtures" / "winlogbeat" / "security.ndjson")])
    assert code == 0
    events = [orjson.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    alerts = _engine(converted).process(events)[len(events):]
    fired = sorted((a["rule"]["id"], a["host"]["name"]) for a in alerts)
    assert (OFFICE, "pc-sgddt-017") in fired          # WINWORD -> powershell (4688)
    assert (LOG_CLEARED, "pc-ubndct-058") in fired    # 1102


def test_converted_correlations_fire_in_the_engine(converted: sigma.Conversion) -> None:
    engine = _engine(converted)
    t0 = "2026-11-20T22:40:{:02d}+07:00"
    events = [{"@timestamp": t0.format(i), "event.dataset": "system.auth",
               "event.action": "ssh_login", "event.outcome": "failure",
               "source.ip": "198.51.100.23", "user.name": f"user{i}"} for i in range(10)]
    alerts = _alerts(engine, events)
    assert [(a["rule"]["id"], a["source"]["ip"]) for a in alerts] == [(SPRAY, "198.51.100.23")]

    events = [
        {"@timestamp": "2026-11-16T02:30:00Z", "event.code": "4720",
         "winlog.channel": "Security", "host.name": "srv-ad-01"},
        {"@timestamp": "2026-11-16T02:31:00Z", "event.code": "4732",
         "winlog.channel": "Security", "host.name": "srv-ad-01",
         "winlog.event_data.TargetSid": "S-1-5-32-544"},
    ]
    alerts = _alerts(_engine(converted), events)
    assert [(a["rule"]["id"], a["socd"]["severity"]) for a in alerts] == [(NEW_ADMIN, "critical")]


# ---------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="socd")
    sub = parser.add_subparsers(dest="command", required=True)
    sigma_cli.register(sub, None)
    return parser


def _run(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    return int(args.handler(args))


def test_cli_writes_output_and_reports(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sigma.yaml"
    code = _run(["rules", "import-sigma", str(CONVERTIBLE), str(UNCONVERTIBLE), "-o", str(out)])
    assert code == 0
    doc = yaml.safe_load(out.read_text(encoding="utf-8"))
    assert len(doc["rules"]) == 8
    err = capsys.readouterr().err
    assert "8 of 16 Sigma rules converted, 8 not converted, 0 parse errors" in err
    assert "not converted:" in err
    assert "keyword search" in err


def test_cli_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["rules", "import-sigma", str(INVALID)]) == 1
    assert _run(["rules", "import-sigma", str(FIX / "nonexistent")]) == 2
    assert _run(["rules", "import-sigma", "-q", str(UNCONVERTIBLE)]) == 0
    captured = capsys.readouterr()
    assert captured.out.count("rules: []") == 2
