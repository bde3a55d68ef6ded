"""The shipped rule pack (``rules/*.yaml``, package ``socd.rules``): shape and tests."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest
import yaml

import socd.rules

PACK_DIR = Path(socd.rules.__file__).parent
PACK_FILES = sorted(PACK_DIR.glob("*.yaml"))
VIETNAMESE = re.compile(r"[àáảãạăằắẳẵặâầấẩẫậèéẻẽẹêềếểễệìíỉĩịòóỏõọôồốổỗộơờớởỡợùúủũụưừứửữựỳýỷỹỵđ]",
                        re.IGNORECASE)


def _raw_rules() -> list[dict]:
    out = []
    for path in PACK_FILES:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert set(doc) == {"rules"}, path
        out.extend(doc["rules"])
    return out


RAW = _raw_rules()


def test_pack_has_at_least_40_rules() -> None:
    assert len(RAW) >= 40


def test_rule_ids_are_unique() -> None:
    ids = [r["id"] for r in RAW]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


@pytest.mark.parametrize("rule", RAW, ids=lambda r: r["id"])
def test_rule_is_documented_and_tested(rule: dict) -> None:
    title, desc = rule["title"], rule["description"]
    assert isinstance(title, dict)
    assert title.get("vi")
    assert title.get("en")
    assert isinstance(desc, dict)
    assert desc.get("vi")
    assert desc.get("en")
    # Vietnamese text has diacritics, and is stored NFC.
    assert VIETNAMESE.search(title["vi"]), title["vi"]
    assert unicodedata.normalize("NFC", title["vi"]) == title["vi"]
    assert rule["severity"] in {"low", "medium", "high", "critical"}
    assert rule["layer"] in {1, 2, 3, 4}
    assert rule.get("tests"), "every rule needs at least one test"
    assert any(t.get("expect") for t in rule["tests"]), "at least one positive test"
    assert all(t.startswith(("attack.", "wazuh")) for t in rule.get("tags", []))


def test_rules_are_listed_in_readme() -> None:
    readme = (PACK_DIR / "README.md").read_text(encoding="utf-8")
    missing = [r["id"] for r in RAW if f"`{r['id']}`" not in readme]
    assert not missing


def test_engine_runs_every_test_of_the_pack() -> None:
    from socd.engine.loader import load_paths
    from socd.engine.testing import run_tests

    compiled = load_paths([str(PACK_DIR)])
    assert len(compiled) == len(RAW)
    outcomes = run_tests(compiled)
    assert len(outcomes) == sum(len(r["tests"]) for r in RAW)
    failures = [f"{o.rule_id}: {o.name}: {o.error or ''} missing={o.missing} "
                f"unexpected={[{k: a.get(k) for k in ('rule', 'source')} for a in o.unexpected]}"
                for o in outcomes if not o.ok]
    assert not failures, "\n".join(failures)


def test_builtin_pack_is_the_default_rule_set() -> None:
    from socd.engine.loader import builtin_dir

    assert Path(builtin_dir()) == PACK_DIR
