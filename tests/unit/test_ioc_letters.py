"""IoC appendices as national letters really send them (issue 14, point 12): defanged
values, URLs, a title above the header row with the letter number, Vietnamese headers,
XLSX workbooks, and an error that lists the headers found when none is recognised."""

from __future__ import annotations

from pathlib import Path

import pytest

from socd.ioc.importers import Options, parse_csv, parse_file, parse_text, refang

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ioc"
OPTS = Options(source="ncsc", now=1_800_000_000)


def by_value(entries: list) -> dict[str, object]:
    return {e.value: e for e in entries}


@pytest.mark.parametrize(("defanged", "plain"), [
    ("evil-update[.]example", "evil-update.example"),
    ("1.2.3[.]4", "1.2.3.4"),
    ("hxxp://a[.]example/x", "http://a.example/x"),
    ("hXXps://a[.]example", "https://a.example"),
    ("hxxp[:]//a(.)example", "http://a.example"),
    ("hxxps[://]a{.}example", "https://a.example"),
    ("a[dot]b[DOT]example", "a.b.example"),
    ("a(dot)example", "a.example"),
    ("2001[:]db8[:][:]1", "2001:db8::1"),
    ("fxp://files[.]example", "ftp://files.example"),
    ("\u200b 192.0.2.1\xa0", "192.0.2.1"),
    ("plain.example", "plain.example"),
])
def test_refang(defanged: str, plain: str) -> None:
    assert refang(defanged) == plain


def test_letter_csv_with_title_defanged_values_and_urls() -> None:
    entries, rejected = parse_file(str(FIXTURES / "letter-941-appendix.csv"), "csv", OPTS)
    found = by_value(entries)
    assert {(e.kind, e.value) for e in entries} == {
        ("domain", "evil-update.example"), ("ip", "203.0.113.77"), ("ip", "198.51.100.23"),
        ("hash", "44d88612fea8a8f36de82e1278abb02f"), ("domain", "cdn-static.evil.example"),
        ("domain", "login-portal.evil.example"), ("ip", "2001:db8:bad::1"),
        ("ip", "203.0.113.78")}
    # The letter number comes from the title row above the header.
    assert {e.ref for e in entries} == {"941/CATTT-NCSC"}
    # URLs give their host; the URLs themselves are kept as tags of that entry (the store
    # has no URL kind), the two of one host merged into one entry.
    assert found["evil-update.example"].tags == (  # type: ignore[attr-defined]
        "url:http://evil-update.example/download/update.exe",
        "url:http://evil-update.example/download/patch.exe")
    assert found["198.51.100.23"].tags == (  # type: ignore[attr-defined]
        "url:https://198.51.100.23:8443/gate.php",)
    assert found["203.0.113.77"].tags == ()  # type: ignore[attr-defined]
    # Nothing is dropped silently: the e-mail, the typo and the total row are reported.
    assert [(where, reason.split(":")[0]) for where, reason in rejected] == [
        ("row 15: attacker@evil-update.example", "unknown indicator kind 'email' (use ip, "
         "domain, hash or url)"),
        ("row 16: 203.0.113[.]999", "not an IP address or CIDR (syntax)"),
        ("row 17", "empty value")]


def test_letter_xlsx_title_sheets_and_indicator_columns() -> None:
    entries, rejected = parse_file(str(FIXTURES / "letter-1298-appendix.xlsx"), "xlsx", OPTS)
    found = by_value(entries)
    assert {(e.kind, e.value) for e in entries} == {
        ("ip", "192.0.2.45"), ("domain", "c2-panel.bad.example"), ("ip", "192.0.2.128/25"),
        ("hash", "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f"),
        ("ip", "192.0.2.46"), ("domain", "update.bad.example"),
        ("domain", "files.bad.example"), ("ip", "192.0.2.47")}
    assert {e.ref for e in entries} == {"1298/CATTT-NCSC"}
    assert found["192.0.2.47"].tags == ("url:http://192.0.2.47/shell.php",)  # type: ignore
    assert rejected == [
        ("sheet 'IP - Tên miền - Mã băm' row 8",
         "no indicator in the columns Địa chỉ IP, Tên miền, Mã băm (SHA256): 'I. Mẫu mã độc'"),
        ("sheet 'Ghi chú'", "no header row recognised in the first 30 rows; headers found "
         "(row 1): 'Đề nghị các đơn vị rà soát và chặn các dấu hiệu trên.'")]


def test_no_recognised_column_lists_the_headers_found() -> None:
    text = "DANH SÁCH IoC\nSTT;Nội dung;Ghi chú\n1;192.0.2.1;x\n"
    with pytest.raises(ValueError) as info:
        parse_csv(text, OPTS)
    message = str(info.value)
    assert "'STT', 'Nội dung', 'Ghi chú'" in message
    assert "--column value=" in message
    # The operator's mapping finds the header below the title.
    entries, rejected = parse_csv(text, OPTS, {"value": "Nội dung"})
    assert [(e.kind, e.value) for e in entries] == [("ip", "192.0.2.1")]
    assert rejected == []


def test_reference_precedence_row_then_title_then_option() -> None:
    text = ("Công văn số 77/CV-SOC\n"
            "Indicator,Type,Letter\n"
            "192.0.2.1,ip,\n"
            "192.0.2.2,ip,5/CATTT-NCSC\n")
    entries, _ = parse_csv(text, Options(source="s", ref="1/OPT"))
    assert [e.ref for e in entries] == ["77/CV-SOC", "5/CATTT-NCSC"]
    entries, _ = parse_csv("value\n192.0.2.1\n", Options(source="s", ref="1/OPT"))
    assert entries[0].ref == "1/OPT"


def test_headers_without_diacritics_and_english() -> None:
    entries, _ = parse_csv("Gia tri,Loai\nbad[.]example,Ten mien\n", OPTS)
    assert [(e.kind, e.value) for e in entries] == [("domain", "bad.example")]
    entries, _ = parse_csv("IOC Type,IOC Value\nURL,hxxp://x[.]bad[.]example/a\n", OPTS)
    assert [(e.kind, e.value, e.tags) for e in entries] == [
        ("domain", "x.bad.example", ("url:http://x.bad.example/a",))]


def test_text_list_reads_defanged_values_and_urls() -> None:
    entries, rejected = parse_text(
        ["evil-update[.]example", "1.2.3[.]4", "hxxps://bad[.]example/login # phishing",
         "bad[.]example/other"], OPTS)
    assert [(e.kind, e.value, e.tags) for e in entries] == [
        ("domain", "evil-update.example", ()), ("ip", "1.2.3.4", ()),
        ("domain", "bad.example", ("url:https://bad.example/login", "url:bad.example/other"))]
    assert rejected == []
