"""Rule files: config errors, build_engine, the test-rules runner and `rules list`."""

from __future__ import annotations

from pathlib import Path

import pytest

from socd import config as config_mod
from socd.cli import main
from socd.engine import build_engine, load_paths
from socd.errors import ConfigError

BAD = """\
rules:
  - id: ok-rule
    title: ok
    severity: cao
    match: {field: a, equals: x}
  - id: Bad_ID
    title: x
    severity: hgh
    match: {field: a, equals: x}
  - id: ops
    title: x
    severity: low
    mach: {field: a, equals: x}
  - id: cond
    title: x
    severity: low
    match:
      all:
        - {field: a, regx: "x"}
        - {field: b, regex: "("}
        - {field: c, cidr: [10.0.0.0/33]}
        - {field: d, between: 3}
    threshold: {count: 3, window: 2x}
  - id: ok-rule
    title: dup
    severity: low
    match: {field: a, equals: x}
"""


def problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_paths([str(path)])
    return [str(p) for p in info.value.problems]


def test_config_errors_name_file_key_path_and_hint(tmp_path: Path) -> None:
    got = problems(tmp_path, BAD)
    text = "\n".join(got)
    f = str(tmp_path / "bad.yaml")
    assert all(p.startswith(f) for p in got)
    assert f"{f}:6: rules[1].id: invalid rule id 'Bad_ID'" in text
    assert "rules[1].severity: unknown severity 'hgh'" in text
    assert "rules[2].mach: unknown key 'mach' (hint: did you mean 'match'?)" in text
    assert "rules[3].match.all[0].regx: unknown key 'regx' (hint: did you mean 'regex'?)" in text
    assert "rules[3].match.all[1].regex: invalid regular expression" in text
    assert "rules[3].match.all[2].cidr[0]: invalid CIDR '10.0.0.0/33'" in text
    assert "rules[3].match.all[3].between: unknown key 'between'" in text
    assert "rules[3].threshold.window: invalid duration '2x' (hint: write a number with s" in text
    assert f"{f}:24: rules[4].id: duplicate rule id 'ok-rule' (hint: first defined at " \
        "rules[0])" in text


def test_duplicate_ids_across_files(tmp_path: Path) -> None:
    rule = "rules:\n  - {id: same, title: t, severity: low, match: {field: a, exists: true}}\n"
    (tmp_path / "a.yaml").write_text(rule)
    (tmp_path / "b.yaml").write_text(rule)
    with pytest.raises(ConfigError) as info:
        load_paths([str(tmp_path)])
    (p,) = info.value.problems
    assert p.file.endswith("b.yaml")
    assert p.path == "rules[0].id"
    assert "first defined at" in str(p.hint)
    assert "a.yaml:2" in str(p.hint)


def test_file_level_errors(tmp_path: Path) -> None:
    assert "unknown key 'rule' (hint: did you mean 'rules'?)" in problems(tmp_path,
                                                                          "rule: []\n")[0]
    assert "invalid YAML" in problems(tmp_path, "rules: [\n")[0]
    assert "need" in problems(tmp_path, "rules:\n  - {id: x, title: t, severity: low}\n")[0]


def write_config(tmp_path: Path, rules_dir: Path, extra: str = "") -> str:
    cfg = tmp_path / "socd.yaml"
    cfg.write_text(f"state_dir: {tmp_path / 'state'}\nrules:\n  paths: [{rules_dir}]\n{extra}")
    return str(cfg)


def test_build_engine_and_disabled(tmp_path: Path) -> None:
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (rules_dir / "a.yaml").write_text("""rules:
  - {id: one, title: t, severity: low, match: {field: a, exists: true}}
  - {id: two, title: t, severity: low, match: {field: a, exists: true}}
  - {id: three, title: t, severity: low, enabled: false, match: {field: a, exists: true}}
""")
    cfg = config_mod.load(write_config(tmp_path, rules_dir, "  disabled: [two]\n"))
    eng = build_engine(cfg)
    assert [r.id for r in eng.rules] == ["one"]
    out = eng.process([{"@timestamp": "2026-01-01T00:00:00Z", "a": 1,
                        "event": {"hash": "x"}, "socd": {}}])
    assert len(out) == 2
    cfg = config_mod.load(write_config(tmp_path, rules_dir, "  disabled: [tow]\n"))
    with pytest.raises(ConfigError) as info:
        build_engine(cfg)
    assert "rules.disabled[0]: no rule has id 'tow' (hint: did you mean 'two'?)" in str(
        info.value)


def test_default_config_loads_the_shipped_pack() -> None:
    eng = build_engine(config_mod.load())
    assert isinstance(eng.rules, list)


PACK = """rules:
  - id: brute
    title: {vi: "Dò mật khẩu", en: Brute force}
    severity: high
    match: {field: event.outcome, equals: failure}
    threshold: {count: 3, window: 1m, group_by: [source.ip]}
    tests:
      - name: three failures
        events:
          - {"@timestamp": 2026-01-05T10:00:00+07:00, event.outcome: failure,
             source.ip: 203.0.113.9, repeat: 3, step: 5s}
        expect:
          - {rule.id: brute, source.ip: 203.0.113.9, socd.rule.count: 3,
             "@timestamp": "2026-01-05T03:00:10Z"}
      - name: two are not enough
        events:
          - {event.outcome: failure, source.ip: 203.0.113.9, repeat: 2}
        expect: []
  - id: ioc
    title: IoC
    severity: high
    match: {field: destination.ip, ioc: ip}
    tests:
      - name: listed
        iocs: {ip: [198.51.100.0/24]}
        events: [{destination.ip: 198.51.100.7}, {destination.ip: 192.0.2.1}]
        expect: [{rule.id: ioc, destination.ip: 198.51.100.7}]
"""

FAILING = PACK.replace("expect: []", "expect: [{rule.id: brute}]").replace(
    "repeat: 3, step: 5s", "repeat: 3, step: 50s")


def test_test_rules_passing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "pack.yaml"
    path.write_text(PACK, encoding="utf-8")
    assert main(["test-rules", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == ["ok    brute: three failures", "ok    brute: two are not enough",
                   "ok    ioc: listed", "2 rules, 3 tests, 0 failures"]
    assert main(["test-rules", str(path), "-k", "IOC"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "2 rules, 1 test, 0 failures"


def test_test_rules_failing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "pack.yaml"
    path.write_text(FAILING, encoding="utf-8")
    assert main(["test-rules", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"FAIL  brute: three failures  ({path}:2)" in out
    assert "expected 1 alert, got 0:" in out
    assert "- {rule.id: brute, source.ip: 203.0.113.9, socd.rule.count: 3" in out
    assert "FAIL  brute: two are not enough" in out
    assert out.strip().endswith("2 rules, 3 tests, 2 failures")


def test_test_rules_unexpected_alert_shown(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "pack.yaml"
    path.write_text(PACK.replace("repeat: 2}", "repeat: 4}"), encoding="utf-8")
    assert main(["test-rules", str(path)]) == 1
    out = capsys.readouterr().out
    assert "expected 0 alerts, got 1:" in out
    assert "+ {rule.id: brute, @timestamp: " in out
    assert "socd.rule.count: 3" in out


def test_test_rules_invalid_pack_exits_2(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "pack.yaml"
    path.write_text(BAD, encoding="utf-8")
    assert main(["test-rules", str(path)]) == 2
    assert "rules[3].match.all[1].regex" in capsys.readouterr().err


def test_test_rules_uses_config_paths(tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    rules_dir = tmp_path / "r"
    rules_dir.mkdir()
    (rules_dir / "pack.yaml").write_text(PACK, encoding="utf-8")
    assert main(["test-rules", "-c", write_config(tmp_path, rules_dir)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "2 rules, 3 tests, 0 failures"


def test_rules_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules_dir = tmp_path / "r"
    rules_dir.mkdir()
    (rules_dir / "pack.yaml").write_text(PACK, encoding="utf-8")
    cfg = write_config(tmp_path, rules_dir, "  disabled: [ioc]\n")
    assert main(["rules", "list", "-c", cfg]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ID", "SEVERITY", "LAYER", "ENABLED", "FILE"]
    assert lines[1].split()[:4] == ["brute", "high", "2", "yes"]
    assert lines[2].split()[:4] == ["ioc", "high", "2", "no"]
    assert lines[2].split()[4].endswith("pack.yaml:19")


def test_shipped_pack_tests_pass(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["test-rules"]) == 0, capsys.readouterr().out
