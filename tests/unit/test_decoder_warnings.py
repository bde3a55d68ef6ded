"""A collector without ``decoder:`` falls back to ``json``: check-config and the
start-up log say so (issue 14, point 1: 3 EDR alerts received, 0 stored, no word)."""

from __future__ import annotations

from pathlib import Path

import pytest

from socd import cli
from socd import config as config_mod

SINK_ALERTS = "sinks:\n  store: {type: ndjson, path: out.ndjson}\n"
SINK_ALL = "sinks:\n  store: {type: ndjson, path: out.ndjson, select: all}\n"


def warnings(collectors: str, sinks: str = SINK_ALERTS) -> list[config_mod.ConfigProblem]:
    return list(config_mod.loads(f"collectors:\n{collectors}{sinks}", file="socd.yaml").warnings)


def test_mqtt_without_decoder_is_named_with_its_line_and_the_fix() -> None:
    [warning] = warnings("  edr:\n    type: mqtt\n    topics: [edr/alerts]\n")
    assert warning.path == "collectors.edr"
    assert warning.line == 2
    assert "no decoder is set, so the records of its `topics` are read as ECS-shaped JSON" \
        in warning.message
    assert "plain events (event.kind: event)" in warning.message
    assert "every sink has select: alerts" in warning.message
    assert warning.hint is not None
    assert "server_edr, workstation_edr" in warning.hint


def test_with_a_sink_that_keeps_everything_the_events_are_not_lost() -> None:
    [warning] = warnings("  edr:\n    type: mqtt\n    topics: [edr/alerts]\n", SINK_ALL)
    assert "kept nowhere" not in warning.message


@pytest.mark.parametrize("collectors", [
    # an explicit decoder, even `json`
    "  edr:\n    type: mqtt\n    topics: [edr/alerts]\n    decoder: server_edr\n",
    "  ids:\n    type: file\n    paths: [eve.json]\n    decoder: json\n",
    # every input names its decoder
    "  edr:\n    type: mqtt\n    subscriptions: [{topic: edr/#, decoder: server_edr}]\n",
    "  hook:\n    type: webhook\n    sources:\n"
    "      edr: {token: '0123456789abcdef0123456789abcdef', decoder: workstation_edr}\n",
    # a default made for the records: syslog reads syslog, the sensor writes socd's JSON
    "  fw:\n    type: syslog\n    listeners: [{protocol: tcp, port: 5514}]\n",
    "  tap:\n    type: sensor\n    pcap_files: [x.pcap]\n",
])
def test_no_warning_when_the_decoder_is_chosen(collectors: str) -> None:
    assert warnings(collectors) == []


def test_each_input_without_decoder_is_listed() -> None:
    [mqtt, hook] = warnings(
        "  edr:\n    type: mqtt\n    subscriptions:\n"
        "      - {topic: edr/servers/#, decoder: server_edr}\n"
        "      - {topic: edr/workstations/#}\n"
        "  hook:\n    type: webhook\n    sources:\n"
        "      a: {token: '0123456789abcdef0123456789abcdef'}\n"
        "      b: {token: 'fedcba9876543210fedcba9876543210', decoder: wazuh}\n")
    assert "the records of topic 'edr/workstations/#'" in mqtt.message
    assert "edr/servers" not in mqtt.message
    assert "the records of source 'a'" in hook.message
    assert "source 'b'" not in hook.message


def test_check_config_prints_the_warning(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "socd.yaml"
    path.write_text(f"state_dir: {tmp_path}/state\ncollectors:\n  edr:\n    type: file\n"
                    f"    paths: [edr.ndjson]\n{SINK_ALERTS}", encoding="utf-8")
    assert cli.main(["check-config", "-c", str(path)]) == cli.EXIT_OK
    err = capsys.readouterr().err
    assert f"socd: warning: {path}:3: collectors.edr: no decoder is set" in err
    assert "kept nowhere" in err


def test_shipped_configs_name_their_decoders(isolated_env: Path) -> None:
    repo = Path(__file__).resolve().parents[2]
    for path in (config_mod.default_config_path(), repo / "deploy/systemd/socd.yaml"):
        cfg = config_mod.load(path, env={"STATE_DIRECTORY": str(isolated_env)})
        assert [w for w in cfg.warnings if "no decoder is set" in w.message] == [], path
