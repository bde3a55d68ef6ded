"""Every decoder socd knows replays its fixtures through ``socd replay``.

For each decoder type in the registry and each built-in decoder name, the files of
``tests/fixtures/<decoder>/`` are replayed with the CLI. Convention for fixture files:

* a file whose name contains ``bad``, ``invalid`` or ``malformed`` holds known-bad
  lines (it may mix in good ones): the replay exits 1 (the CLI's "records failed")
  and reports each bad line on stderr as ``socd replay: <file>: <reason>: ...``;
  (the decoders of this repository each have one; see test_known_bad_fixtures_exist);
* every other file holds good lines only: exit 0, nothing reported, and every line
  yields at least one event;
* ``README.md`` describes the files and is not replayed.

A decoder without fixtures FAILS (it does not skip): every decoder ships fixtures.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from socd import cli
from socd.config import BUILTIN_DECODERS
from socd.plugins.registry import known_types
from socd.severity import LABELS_VI, Severity

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
BAD_MARKERS = ("bad", "invalid", "malformed")

# Decoder name -> (replay format, glob under tests/fixtures) pairs; default: <name>/*.
SPECIAL = {
    "server_edr": [("server_edr", "edr/server_edr*.ndjson")],
    "workstation_edr": [("workstation_edr", "edr/workstation_edr*.ndjson")],
    # The `mapping` type has no built-in instance of its own: the two shipped EDR
    # mappings are its instances.
    "mapping": [("server_edr", "edr/server_edr*.ndjson"),
                ("workstation_edr", "edr/workstation_edr*.ndjson")],
}
DECODERS = sorted(set(known_types("decoder")) | set(BUILTIN_DECODERS))


def fixture_sets(name: str) -> list[tuple[str, list[Path]]]:
    specs = SPECIAL.get(name, [(name, f"{name}/*")])
    return [(fmt, sorted(p for p in FIXTURES.glob(pattern)
                         if p.is_file() and p.suffix != ".md" and not p.name.startswith(".")))
            for fmt, pattern in specs]


def is_bad(path: Path) -> bool:
    return any(marker in path.name.lower() for marker in BAD_MARKERS)


def replay(capsysbinary: pytest.CaptureFixture[bytes], fmt: str,
           path: Path) -> tuple[int, list[dict], list[str], dict]:
    code = cli.main(["replay", "--stats", "--format", fmt, str(path)])
    out, err = capsysbinary.readouterr()
    events = [orjson.loads(line) for line in out.splitlines()]
    # Alerts of the shipped rules (event.dataset socd.rules) come on top of the decoded events.
    events = [e for e in events if e.get("event", {}).get("dataset") != "socd.rules"]
    err_lines = err.decode().splitlines()
    stats = orjson.loads(err_lines[-1]) if err_lines and err_lines[-1].startswith("{") else {}
    reported = [line for line in err_lines if line.startswith("socd replay: ")]
    return code, events, reported, stats


def test_every_decoder_is_covered() -> None:
    assert {"json", "mapping", "server_edr", "workstation_edr", "suricata", "wazuh",
            "winlogbeat"} <= set(DECODERS)


@pytest.mark.parametrize("name", DECODERS)
def test_decoder_replays_its_fixtures(name: str, isolated_env: Path,
                                      capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    sets = fixture_sets(name)
    for fmt, files in sets:
        if not files:
            pattern = dict(SPECIAL.get(name, [(name, f"{name}/*")]))[fmt]
            pytest.fail(f"decoder {name!r} has no fixtures: add files matching "
                        f"tests/fixtures/{pattern} (good lines, plus a *bad* file with "
                        "known-bad lines) and a README.md describing them", pytrace=False)
        assert any(not is_bad(p) for p in files), f"{name}: no file of good records"
        for path in files:
            rel = path.relative_to(REPO)
            records = [line for line in path.read_bytes().splitlines() if line.strip()]
            code, events, reported, stats = replay(capsysbinary, fmt, path)
            assert code != cli.EXIT_CONFIG, f"{rel}: replay --format {fmt} refused: {reported}"
            assert stats.get("records") == len(records), (rel, stats)
            if is_bad(path):
                assert code == cli.EXIT_FAILURE, f"{rel}: known-bad lines were not reported"
                assert reported, f"{rel}: exit 1 but nothing reported on stderr"
                assert all(f": {path}: " in line or f" {path}: " in line for line in reported)
                assert sum(stats["failed"].values()) == len(reported)
                assert len(events) + len(reported) >= len(records), (
                    f"{rel}: some lines gave neither an event nor a reported failure")
            else:
                assert code == cli.EXIT_OK, f"{rel}: good fixture failed: {reported[:5]}"
                assert not reported
                assert len(events) >= len(records), (
                    f"{rel}: {len(records)} good lines gave {len(events)} events")
            for event in events:
                assert event["socd"]["decoder"] == fmt
                assert event["socd"]["source"] == str(path)
                if event["event"]["kind"] == "alert":
                    severity = Severity(event["socd"]["severity"])
                    assert event["socd"]["severity_label"] == LABELS_VI[severity]


@pytest.mark.parametrize("name", ["json", "server_edr", "workstation_edr", "suricata", "wazuh",
                                  "winlogbeat", "windows_json"])
def test_known_bad_fixtures_exist(name: str) -> None:
    files = [p for _, paths in fixture_sets(name) for p in paths]
    assert any(is_bad(p) for p in files), f"{name}: no *bad* file of known-bad records"


def test_unknown_format_is_a_usage_error(isolated_env: Path,
                                         capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    path = FIXTURES / "json" / "ecs.ndjson"
    assert cli.main(["replay", "--format", "no_such_decoder", str(path)]) == cli.EXIT_CONFIG
    assert b"unknown format" in capsysbinary.readouterr().err
