"""Severity codes, Vietnamese labels, label folding and the built-in vendor tables."""

from __future__ import annotations

import unicodedata

import pytest

from socd.severity import BUILTIN_TABLES, LABELS_VI, Severity, SeverityTable, fold

VIETNAMESE = BUILTIN_TABLES["vietnamese"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Nghiêm trọng", "nghiem trong"),
        ("NGHIEM TRONG", "nghiem trong"),
        ("nghiem trong", "nghiem trong"),
        ("NGHIÊM_TRỌNG", "nghiem trong"),
        ("  Nghiêm   -  trọng ", "nghiem trong"),
        ("Trung bình", "trung binh"),
        ("thấp", "thap"),
        ("Đơn vị", "don vi"),
        ("đ", "d"),
    ],
)
def test_fold_ignores_case_diacritics_and_spacing(value: str, expected: str) -> None:
    assert fold(value) == expected


def test_fold_is_independent_of_unicode_normalization_form() -> None:
    nfc = unicodedata.normalize("NFC", "Nghiêm trọng")
    nfd = unicodedata.normalize("NFD", "Nghiêm trọng")
    assert nfc != nfd
    assert fold(nfc) == fold(nfd) == "nghiem trong"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Nghiêm trọng", Severity.CRITICAL),
        ("NGHIEM TRONG", Severity.CRITICAL),
        ("nghiem trong", Severity.CRITICAL),
        (unicodedata.normalize("NFD", "nghiêm trọng"), Severity.CRITICAL),
        ("Khẩn cấp", Severity.CRITICAL),
        ("critical", Severity.CRITICAL),
        ("Cao", Severity.HIGH),
        ("HIGH", Severity.HIGH),
        ("Trung bình", Severity.MEDIUM),
        ("TRUNG BINH", Severity.MEDIUM),
        ("moderate", Severity.MEDIUM),
        ("medium", Severity.MEDIUM),
        ("thấp", Severity.LOW),
        ("Thap", Severity.LOW),
        ("informational", Severity.LOW),
        ("info", Severity.LOW),
        ("low", Severity.LOW),
    ],
)
def test_vietnamese_table(value: str, expected: Severity) -> None:
    assert VIETNAMESE.lookup(value) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1, Severity.HIGH), (2, Severity.MEDIUM), (3, Severity.LOW), (4, Severity.LOW),
     ("1", Severity.HIGH), ("2", Severity.MEDIUM), (" 3 ", Severity.LOW), (1.0, Severity.HIGH)],
)
def test_suricata_table_one_is_most_severe(value: object, expected: Severity) -> None:
    assert BUILTIN_TABLES["suricata"].lookup(value) is expected


@pytest.mark.parametrize(
    ("level", "expected"),
    [(0, Severity.LOW), (3, Severity.LOW), (4, Severity.MEDIUM), (7, Severity.MEDIUM),
     (8, Severity.HIGH), (11, Severity.HIGH), (12, Severity.CRITICAL), (15, Severity.CRITICAL)],
)
def test_wazuh_ranges_cover_0_to_15(level: int, expected: Severity) -> None:
    table = BUILTIN_TABLES["wazuh"]
    assert table.lookup(level) is expected
    assert table.lookup(str(level)) is expected


def test_wazuh_every_level_has_a_severity_and_order_is_monotonic() -> None:
    table = BUILTIN_TABLES["wazuh"]
    ranks = [table.lookup(level).rank for level in range(16)]  # type: ignore[union-attr]
    assert ranks == sorted(ranks)
    assert table.lookup(16) is None
    assert table.lookup(-1) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, Severity.LOW), (3, Severity.LOW), (4, Severity.MEDIUM), (6, Severity.MEDIUM),
     (7, Severity.HIGH), (8, Severity.HIGH), (9, Severity.CRITICAL), (10, Severity.CRITICAL),
     ("Low", Severity.LOW), ("Medium", Severity.MEDIUM), ("High", Severity.HIGH),
     ("Very-High", Severity.CRITICAL), ("very high", Severity.CRITICAL),
     ("Unknown", Severity.LOW), ("10", Severity.CRITICAL)],
)
def test_cef_numbers_and_words(value: object, expected: Severity) -> None:
    assert BUILTIN_TABLES["cef"].lookup(value) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("informational", Severity.LOW), ("low", Severity.LOW), ("medium", Severity.MEDIUM),
     ("high", Severity.HIGH), ("critical", Severity.CRITICAL), ("CRITICAL", Severity.CRITICAL)],
)
def test_sigma_levels(value: str, expected: Severity) -> None:
    assert BUILTIN_TABLES["sigma"].lookup(value) is expected


def test_builtin_table_names() -> None:
    assert set(BUILTIN_TABLES) == {"vietnamese", "suricata", "wazuh", "cef", "sigma"}
    for name, table in BUILTIN_TABLES.items():
        assert table.name == name


@pytest.mark.parametrize("table", sorted(BUILTIN_TABLES))
@pytest.mark.parametrize("value", [None, True, False, "bogus", "", "99", 99, 99.5, -1, "nghiem"])
def test_unknown_values_give_none_without_a_default(table: str, value: object) -> None:
    assert BUILTIN_TABLES[table].lookup(value) is None


def test_unknown_values_give_the_table_default() -> None:
    table = SeverityTable("t", {"cao": "high", "1-3": "low"}, default=Severity.MEDIUM)
    assert table.lookup("không biết") is Severity.MEDIUM
    assert table.lookup(None) is Severity.MEDIUM
    assert table.lookup(True) is Severity.MEDIUM
    assert table.lookup(42) is Severity.MEDIUM
    assert table.lookup("CAO") is Severity.HIGH
    assert table.lookup(2) is Severity.LOW
    assert table.lookup("2.5") is Severity.LOW


def test_table_rejects_an_unknown_severity_code() -> None:
    with pytest.raises(ValueError):
        SeverityTable("bad", {"x": "severe"})


def test_labels_are_nfc_vietnamese() -> None:
    assert Severity.LOW.label == "thấp"
    assert Severity.MEDIUM.label == "trung bình"
    assert Severity.HIGH.label == "cao"
    assert Severity.CRITICAL.label == "nghiêm trọng"
    for sev in Severity:
        assert unicodedata.is_normalized("NFC", sev.label)
        assert LABELS_VI[sev] == sev.label


def test_codes_are_stable_and_ordered() -> None:
    assert [s.value for s in Severity] == ["low", "medium", "high", "critical"]
    assert [s.rank for s in Severity] == [0, 1, 2, 3]
    assert Severity("critical") is Severity.CRITICAL


def test_raised_caps_at_critical() -> None:
    assert Severity.LOW.raised() is Severity.MEDIUM
    assert Severity.MEDIUM.raised(2) is Severity.CRITICAL
    assert Severity.CRITICAL.raised() is Severity.CRITICAL
    assert Severity.LOW.raised(10) is Severity.CRITICAL
