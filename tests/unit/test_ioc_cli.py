"""`socd ioc ...` through socd.cli.main."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from socd.cli import main

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ioc"


@pytest.fixture
def cfg(tmp_path: Path) -> str:
    path = tmp_path / "socd.yaml"
    path.write_text(f"state_dir: {tmp_path / 'state'}\nallowlist:\n  cidrs: [198.51.100.64/28]\n"
                    "  hosts: [tinh.gov.vn]\n", encoding="utf-8")
    return str(path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_import_check_list_stats_expire(cfg: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "ioc", "import", str(FIXTURES / "list.txt"), "-f", "text",
                       "-s", "ncsc", "--confidence", "80", "--expires", "30d", "-c", cfg)
    assert code == 0
    assert out.splitlines()[0].endswith("7 new, 0 updated, 0 refused (allowlist), 2 rejected")
    assert "line 11: 999.1.1.1" in out

    code, out, _ = run(capsys, "ioc", "import", str(FIXTURES / "misp-event.json"), "-f", "misp",
                       "-s", "misp", "-c", cfg)
    assert code == 0
    assert "1 refused (allowlist)" in out  # 198.51.100.66 is ours
    assert "198.51.100.66 is in the allowlist (198.51.100.64/28)" in out

    code, out, _ = run(capsys, "ioc", "check", "198.51.100.200", "-c", cfg)
    assert code == 0
    assert "MATCH" in out
    assert "198.51.100.128/25" in out
    assert "ref=1298/CATTT-NCSC" in out
    assert "confidence=80" in out

    code, out, _ = run(capsys, "ioc", "check", "203.0.113.99", "-c", cfg)
    assert (code, out.strip()) == (1, "ip 203.0.113.99: not found")

    code, out, _ = run(capsys, "ioc", "check", "x.wild.example", "--json", "-c", cfg)
    doc = orjson.loads(out)
    assert code == 0
    assert doc["matched"]
    assert doc["entries"][0]["value"] == "*.wild.example"

    code, out, _ = run(capsys, "ioc", "list", "--kind", "hash", "--source", "misp", "-c", cfg)
    assert code == 0
    assert len(out.splitlines()) == 3

    code, out, _ = run(capsys, "ioc", "list", "--limit", "2", "--json", "-c", cfg)
    assert len(out.splitlines()) == 2
    assert orjson.loads(out.splitlines()[0])["source"]

    code, out, _ = run(capsys, "ioc", "stats", "--json", "-c", cfg)
    stats = orjson.loads(out)
    assert stats["by_source"] == {"misp": 8, "ncsc": 7}
    code, out, _ = run(capsys, "ioc", "stats", "-c", cfg)
    assert "stored: 15 entries" in out

    code, out, _ = run(capsys, "ioc", "expire", "-c", cfg)
    assert (code, out.strip()) == (0, "expired 0 entries")
    code, out, _ = run(capsys, "ioc", "delete", "--source", "misp", "-c", cfg)
    assert out.strip() == "deleted 8 entries"


def test_import_options(cfg: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "ioc", "import", str(FIXTURES / "iocs.csv"), "-f", "csv",
                       "-s", "letter", "--column", "kind=type,ref=letter", "--dry-run", "-c", cfg)
    assert code == 0
    assert out.startswith("would import")
    assert "3 valid" in out
    assert "1 refused" in out
    assert "row 7: 203.0.113.6: confidence 150" in out
    code, out, _ = run(capsys, "ioc", "list", "-c", cfg)
    assert out.strip() == "the IoC store is empty (nothing imported yet)"

    code, _, err = run(capsys, "ioc", "import", str(FIXTURES / "iocs.csv"), "-f", "csv",
                       "-s", "x", "--column", "value=nope", "-c", cfg)
    assert code == 1
    assert "no column 'nope'" in err
    code, _, err = run(capsys, "ioc", "import", str(tmp_path / "missing.txt"), "-f", "text",
                       "-s", "x", "-c", cfg)
    assert code == 1
    assert "no such file" in err
    code, _, err = run(capsys, "ioc", "import", str(FIXTURES / "list.txt"), "-f", "text",
                       "-s", "x", "--expires", "whenever", "-c", cfg)
    assert code == 2
    assert "not a date" in err
    code, _, err = run(capsys, "ioc", "check", "not a thing!", "-c", cfg)
    assert code == 2

    code, out, _ = run(capsys, "ioc", "import", str(FIXTURES / "ipsum-sample.txt"), "-f",
                       "ipsum", "-s", "ipsum", "--min-count", "8", "--show", "1", "-c", cfg)
    assert "3 new" in out
    assert "... and 1 more" in out
    code, out, _ = run(capsys, "ioc", "check", "77.90.185.20", "-c", cfg)
    assert code == 0
    assert "confidence=100" in out
    assert "tags=lists:10" in out


def test_expired_entries_reported_not_matched(cfg: str, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from socd.ioc.store import Entry, IocStore

    store = IocStore(str(tmp_path / "state" / "ioc.db"))
    store.import_entries([Entry("ip", "192.0.2.1", "old", "R", expires=1000)])
    store.close()
    code, out, _ = run(capsys, "ioc", "check", "192.0.2.1", "-c", cfg)
    assert code == 1
    assert "only expired entries" in out
    assert "(EXPIRED)" in out
    code, out, _ = run(capsys, "ioc", "expire", "-c", cfg)
    assert out.strip() == "expired 1 entry"


def test_import_letter_appendices(cfg: str, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A letter's appendix as sent: title rows, defanged values, URLs, an XLSX workbook."""
    code, out, _ = run(capsys, "ioc", "import", str(FIXTURES / "letter-941-appendix.csv"),
                       "-f", "csv", "-s", "ncsc", "-c", cfg)
    assert code == 0, out
    assert out.splitlines()[0].endswith("8 new, 0 updated, 0 refused (allowlist), 3 rejected")
    assert "letter numbers: 941/CATTT-NCSC (8 entries)" in out
    assert "row 15: attacker@evil-update.example: unknown indicator kind 'email'" in out
    code, out, _ = run(capsys, "ioc", "import", str(FIXTURES / "letter-1298-appendix.xlsx"),
                       "-f", "xlsx", "-s", "ncsc", "-c", cfg)
    assert code == 0, out
    assert "8 new" in out
    assert "letter numbers: 1298/CATTT-NCSC (8 entries)" in out

    # A defanged value or URL is checked as the letter writes it.
    code, out, _ = run(capsys, "ioc", "check", "hxxp://evil-update[.]example/x.exe", "-c", cfg)
    assert code == 0, out
    assert out.startswith("domain evil-update.example: MATCH")
    assert "ref=941/CATTT-NCSC" in out
    assert "url:http://evil-update.example/download/update.exe" in out

    # No recognised column: the error lists what the file has.
    odd = tmp_path / "odd.csv"
    odd.write_text("Phụ lục\nSTT,Nội dung\n1,192.0.2.9\n", encoding="utf-8")
    code, _, err = run(capsys, "ioc", "import", str(odd), "-f", "csv", "-s", "x", "-c", cfg)
    assert code == 1
    assert "'STT', 'Nội dung'" in err
    assert "--column value=" in err
