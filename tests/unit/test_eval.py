"""The corpus harness' scoring (scripts/eval.py): what counts as TP, FP and FN."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from scripts.eval import Case, CaseError, Outcome, judge, load_case

SHA = "0" * 64


def _case(**labels: object) -> Case:
    return Case.model_validate({
        "title": "t", "source": {"url": "u", "licence": "MIT"},
        "inputs": [{"file": "x.log", "sha256": SHA, "format": "syslog"}], **labels})


def _alert(rule: str, ip: str) -> dict[str, object]:
    return {"rule": {"id": rule}, "source": {"ip": ip}, "event": {"kind": "alert"}}


def test_expected_alert_is_a_true_positive() -> None:
    case = _case(expect=[{"rule": "r1", "entity": {"source.ip": "192.0.2.1"}, "why": "w"}])
    verdict = judge(Outcome("c", case, events=10, alerts=[_alert("r1", "192.0.2.1")]))
    assert (verdict.rules["r1"].tp, verdict.rules["r1"].fp, verdict.rules["r1"].fn) == (1, 0, 0)
    assert verdict.problems == []


def test_missed_expectation_and_count_bounds_are_false_negatives() -> None:
    case = _case(expect=[
        {"rule": "r1", "entity": {"source.ip": "192.0.2.1"}, "why": "w"},
        {"rule": "r2", "entity": {"source.ip": "192.0.2.2"}, "max": 1, "why": "once"}])
    alerts = [_alert("r2", "192.0.2.2"), _alert("r2", "192.0.2.2")]
    verdict = judge(Outcome("c", case, alerts=alerts))
    assert verdict.rules["r1"].fn == 1
    assert verdict.rules["r2"].fn == 1
    assert verdict.rules["r2"].alerts == 2
    assert len(verdict.problems) == 2


def test_unlabelled_and_forbidden_alerts_are_false_positives_per_entity() -> None:
    case = _case(must_not=[{"rule": "bad", "why": "refused connection"}])
    alerts = [_alert("bad", "192.0.2.9"), _alert("bad", "192.0.2.9"),
              _alert("other", "192.0.2.7"), _alert("other", "192.0.2.8")]
    verdict = judge(Outcome("c", case, alerts=alerts))
    assert verdict.rules["bad"].fp == 1  # one (rule, entity) group
    assert verdict.rules["other"].fp == 2
    assert any("must not fire" in p for p in verdict.problems)
    assert sum("unlabelled" in p for p in verdict.problems) == 2


def test_decode_failures_fail_the_case() -> None:
    verdict = judge(Outcome("c", _case(), failures=Counter({"bad_json": 3})))
    assert verdict.problems == ["c: decode failures: {'bad_json': 3}"]


def test_case_file_errors_name_the_key(tmp_path: Path) -> None:
    (tmp_path / "case.yaml").write_text(
        "title: t\nsource: {url: u, licence: l}\ninputs: [{file: a.log, sha256: abc}]\n")
    with pytest.raises(CaseError, match=r"inputs\.0\.sha256"):
        load_case(tmp_path)
