"""`socd share export|exchanges` through socd.cli.main (pushes: tests/integration)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import stix2

from socd.cli import main
from socd.sharing import records

from .test_sharing_seed import INCIDENT, IP_SRC, seed

SHARING = """sharing:
  organisation: {name: "SOC tỉnh Bến Tre"}
  targets:
    ncsc: {type: taxii, url: "https://taxii.example.vn/api1/", collection_id: c1,
           username: soc, password: "${TAXII_PASSWORD:-x}", recipient: "NCSC"}
"""


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOCD_CONFIG", raising=False)


def test_export_stix_to_file_and_stdout(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    seeded = seed(tmp_path, SHARING)
    out = tmp_path / "bundle.json"
    code, _, err = run(capsys, "share", "export", "-c", str(seeded.config), "--format", "stix",
                       "--from", "16/11/2026", "--to", "22/11/2026", "--out", str(out))
    assert code == 0, err
    assert "4 observed IoCs in 6 alerts" in err
    bundle = stix2.parse(out.read_text(encoding="utf-8"))
    assert sum(o.type == "sighting" for o in bundle.objects) == 4
    code, text, err = run(capsys, "share", "export", "-c", str(seeded.config), "-f", "stix",
                          "--from", "2026-11-16", "--to", "2026-11-22")
    assert code == 0, err
    assert text == out.read_text(encoding="utf-8")  # deterministic
    # An export is not an exchange.
    assert records.exchanges(str(seeded.state / "sharing.db")) == []


def test_export_misp_incident(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seeded = seed(tmp_path, SHARING)
    code, text, err = run(capsys, "share", "export", "-c", str(seeded.config), "-f", "misp",
                          "--incident", INCIDENT)
    assert code == 0, err
    event = json.loads(text)["Event"]
    assert IP_SRC in {a["value"] for a in event["Attribute"]}
    assert INCIDENT in event["info"]


def test_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seeded = seed(tmp_path, SHARING)
    cfg = str(seeded.config)
    code, _, err = run(capsys, "share", "export", "-c", cfg, "-f", "stix", "--from", "x",
                       "--to", "22/11/2026")
    assert code == 2
    assert "not a date" in err
    code, _, err = run(capsys, "share", "export", "-c", cfg, "-f", "stix",
                       "--incident", "SC-2026-0099")
    assert code == 2
    assert "SC-2026-0099 not found" in err
    code, _, err = run(capsys, "share", "push", "-c", cfg, "--target", "nobody",
                       "--incident", INCIDENT)
    assert code == 2
    assert "no sharing target 'nobody'" in err
    assert "ncsc" in err


def test_exchanges_listing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seeded = seed(tmp_path, SHARING)
    cfg = str(seeded.config)
    code, out, _ = run(capsys, "share", "exchanges", "-c", cfg)
    assert (code, out.strip()) == (0, "no exchanges yet")
    path = str(seeded.state / "sharing.db")
    records.record(path, records.Exchange(
        None, "2026-11-23T01:00:00Z", "stix", "ncsc", "NCSC", "2026-11-15T17:00:00Z",
        "2026-11-22T17:00:00Z", None, 17, "success", "TAXII status s1 complete"))
    records.record(path, records.Exchange(
        None, "2026-11-23T02:00:00Z", "stix", "ncsc", "NCSC", None, None, INCIDENT, 9,
        "failure", "TAXII server answered HTTP 401"))
    code, out, _ = run(capsys, "share", "exchanges", "-c", cfg)
    assert code == 0
    lines = out.splitlines()
    assert "failure" in lines[1]
    assert INCIDENT in lines[1]
    assert "2026-11-23 08:00" in lines[3]  # local time
    assert "2026-11-16 00:00 - 2026-11-23 00:00" in lines[3]
    assert "-> NCSC: TAXII status s1 complete" in lines[4]
    code, out, _ = run(capsys, "share", "exchanges", "-c", cfg, "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["result"] for r in rows] == ["failure", "success"]
    assert rows[1]["objects"] == 17
