"""The Prometheus alerting rules in deploy/prometheus/ are valid and behave as tested.

``promtool check rules`` validates socd-alerts.yml (syntax, PromQL, templates) and
``promtool test rules`` runs socd-alerts.test.yml, which has a firing and a
not-firing case for every alert. promtool comes with the Debian ``prometheus``
package (which ``make services`` installs); without it these tests fail, never skip.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
PROM_DIR = REPO / "deploy" / "prometheus"
RULES = PROM_DIR / "socd-alerts.yml"
RULE_TESTS = PROM_DIR / "socd-alerts.test.yml"
VIETNAMESE = re.compile(r"[à-ỹÀ-ỸđĐ]")


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, ("promtool is not installed: install the Debian package `prometheus` "
                  "(apt-get install prometheus) to check deploy/prometheus/socd-alerts.yml")
    return path


def run_promtool(*args: str) -> None:
    result = subprocess.run([promtool(), *args], cwd=PROM_DIR, capture_output=True,
                            text=True, timeout=120, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"promtool {' '.join(args)} failed:\n{output}"
    assert "SUCCESS" in output, output


def test_rules_are_valid() -> None:
    run_promtool("check", "rules", RULES.name)


def test_rule_unit_tests_pass() -> None:
    run_promtool("test", "rules", RULE_TESTS.name)


def test_every_alert_has_tests_severity_and_vietnamese_annotations() -> None:
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    assert [g["name"] for g in rules["groups"]] == ["socd"]
    alerts = [r for r in rules["groups"][0]["rules"] if "alert" in r]
    tests = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))["tests"]
    evals = [e for t in tests for e in t["alert_rule_test"]]
    for rule in alerts:
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        for key in ("summary", "description"):
            assert VIETNAMESE.search(rule["annotations"][key]), f"{name}: {key} not Vietnamese"
        assert "English:" in rule["annotations"]["description"], name
        mine = [e for e in evals if e["alertname"] == name]
        assert any(e["exp_alerts"] for e in mine), f"{name}: no firing case in {RULE_TESTS.name}"
        assert any(not e["exp_alerts"] for e in mine), \
            f"{name}: no not-firing case in {RULE_TESTS.name}"
