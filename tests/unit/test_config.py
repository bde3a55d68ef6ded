"""Configuration loading: every bad file names the file, key path and likely fix."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from socd import cli, config
from socd.errors import ConfigError

from .conftest import CONFIG_ERRORS_DIR, DEFAULT_DIR

ERROR_CASES = sorted(CONFIG_ERRORS_DIR.glob("*.yaml"))


def expectations(path: Path) -> list[str]:
    """The ``# expect: <substring>`` lines at the top of a case file."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        body = line[1:].strip()
        if body.startswith("expect:"):
            out.append(body.removeprefix("expect:").strip())
    return out


def test_there_are_error_cases() -> None:
    assert len(ERROR_CASES) >= 20
    for path in ERROR_CASES:
        assert expectations(path), f"{path.name} has no '# expect:' line"


@pytest.mark.parametrize("path", ERROR_CASES, ids=lambda p: p.stem)
def test_config_error_case(path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        # An unset ${VAR} is a problem once required (as run and check-config do).
        config.load(path, env={}).require_env()
    message = str(info.value)
    assert str(path) in message, message
    for expected in expectations(path):
        assert expected in message, f"{expected!r} not in:\n{message}"
    for problem in info.value.problems:
        assert problem.file == str(path)


@pytest.mark.parametrize("path", ERROR_CASES, ids=lambda p: p.stem)
def test_check_config_cli_rejects_error_case(path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOCD_UNIT_TEST_UNSET_SECRET", raising=False)
    assert cli.main(["check-config", "-c", str(path)]) == cli.EXIT_CONFIG
    err = capsys.readouterr().err
    assert "configuration is invalid" in err
    assert str(path) in err
    for expected in expectations(path):
        assert expected in err


def test_misspelled_key_problem_has_file_line_path_and_hint() -> None:
    path = CONFIG_ERRORS_DIR / "misspelled_nested_key.yaml"
    with pytest.raises(ConfigError) as info:
        config.load(path, env={})
    (problem,) = info.value.problems
    assert problem.file == str(path)
    assert problem.path == "http.prot"
    assert problem.line == 6
    assert problem.hint == "did you mean 'port'?"


def test_every_section_is_reported_in_one_run() -> None:
    with pytest.raises(ConfigError) as info:
        config.load(CONFIG_ERRORS_DIR / "every_section_at_once.yaml", env={})
    paths = {p.path for p in info.value.problems}
    assert {"http.prot", "collectors.bus.type", "sinks.es.index_prefx",
            "collectors.logs.decoder"} <= paths


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="cannot read") as info:
        config.load(path)
    assert str(path) in str(info.value)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"log:\n  level: info # \xe9\xe8\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        config.load(path)


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing\n")
    cfg = config.load(path, env={})
    assert cfg.document.http.port == 9797
    assert cfg.collectors == {}
    assert cfg.sinks == {}
    assert set(cfg.decoders) == set(config.BUILTIN_DECODERS)
    assert {"json", "server_edr", "workstation_edr", "syslog", "cef", "suricata", "wazuh",
            "winlogbeat"} <= set(cfg.decoders)


def test_env_default_substitution() -> None:
    text = 'state_dir: "${STATE:-/var/lib/socd}"\nhttp:\n  port: "${PORT:-9999}"\n'
    cfg = config.loads(text, env={})
    assert cfg.document.http.port == 9999
    assert cfg.state_dir == "/var/lib/socd"
    cfg = config.loads(text, env={"PORT": "1234", "STATE": "/srv/socd"})
    assert cfg.document.http.port == 1234
    assert cfg.state_dir == "/srv/socd"


def test_env_set_but_empty_wins_over_default() -> None:
    cfg = config.loads('log:\n  format: "${FMT:-json}"\n', env={"FMT": "console"})
    assert cfg.document.log.format == "console"


def test_env_substitution_inside_text_and_lists() -> None:
    text = ("collectors:\n  edr:\n    type: mqtt\n    host: ${HOST}\n"
            "    topics: ['${SITE:-tinh}/edr/#', plain]\n")
    cfg = config.loads(text, env={"HOST": "broker.local"})
    c = cfg.collectors["edr"].config
    assert c.host == "broker.local"
    assert c.topics == ["tinh/edr/#", "plain"]


def test_env_is_not_substituted_in_keys() -> None:
    with pytest.raises(ConfigError, match=r"unknown key '\$\{KEY\}'"):
        config.loads("${KEY}: 1\n", env={"KEY": "state_dir"})


SECRET = "s3cr3t-Hunter2-do-not-log"


def test_secret_never_rendered_in_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    # Another problem in the same plugin section must not echo the password back.
    text = ("collectors:\n  edr:\n    type: mqtt\n    username: socd\n"
            "    password: ${MQTT_PASSWORD}\n")
    with pytest.raises(ConfigError) as info:
        config.loads(text, file="socd.yaml", env={"MQTT_PASSWORD": SECRET})
    assert "set `topics` or `subscriptions`" in str(info.value)
    assert SECRET not in str(info.value)
    assert SECRET not in repr(info.value.problems)


def test_secret_of_wrong_type_is_not_echoed() -> None:
    text = ("sinks:\n  es:\n    type: elasticsearch\n    api_key: [\"${KEY}\"]\n"
            "    password: 12345\n")
    with pytest.raises(ConfigError) as info:
        config.loads(text, env={"KEY": SECRET})
    message = str(info.value)
    assert "sinks.es.api_key" in message
    assert "sinks.es.password" in message
    assert SECRET not in message
    assert "12345" not in message


def test_secret_not_in_plugin_config_repr_or_check_output(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "socd.yaml"
    path.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        "collectors:\n  edr:\n    type: mqtt\n    topics: [edr/#]\n"
        "    username: socd\n    password: ${MQTT_PASSWORD}\n"
        "sinks:\n  es:\n    type: elasticsearch\n    username: elastic\n"
        "    password: ${ES_PASSWORD}\n")
    monkeypatch.setenv("MQTT_PASSWORD", SECRET)
    monkeypatch.setenv("ES_PASSWORD", SECRET)
    cfg = config.load(path)
    mqtt = cfg.collectors["edr"].config
    es = cfg.sinks["es"].config
    assert mqtt.password.get_secret_value() == SECRET
    assert es.password.get_secret_value() == SECRET
    for rendered in (repr(mqtt), str(mqtt), repr(es), str(es), repr(cfg.collectors),
                     mqtt.model_dump_json()):
        assert SECRET not in rendered
    assert cli.main(["check-config", "-c", str(path)]) == cli.EXIT_OK
    out, err = capsys.readouterr()
    assert SECRET not in out + err


def test_shipped_default_config_loads(isolated_env: Path) -> None:
    cfg = config.load(None)
    assert cfg.file == config.default_config_path()
    assert Path(cfg.file).resolve() == (DEFAULT_DIR / "config.yaml").resolve()
    assert cfg.document.http.port == 9797
    assert set(cfg.collectors) == {"sample_server_edr", "sample_workstation_edr",
                                   "sample_ids", "sample_syslog"}
    assert set(cfg.sinks) == {"store"}
    assert {"json", "server_edr", "workstation_edr", "ids_ecs"} <= set(cfg.decoders)
    assert cfg.state_dir == str(isolated_env / "state" / "socd")
    for ioc in cfg.document.classification.ioc_files:
        assert os.path.isfile(cfg.resolve(ioc))


def test_shipped_default_config_port_from_env(isolated_env: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOCD_HTTP_PORT", "0")
    assert config.load(None).document.http.port == 0


def test_check_config_on_default(isolated_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check-config"]) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert "OK" in out
    assert "4 collectors" in out


def test_check_config_valid_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "socd.yaml"
    path.write_text(
        "state_dir: state\n"
        "collectors:\n  logs:\n    type: file\n    paths: [logs/*.ndjson]\n"
        "sinks:\n  out:\n    type: ndjson\n    path: out.ndjson\n    select: all\n")
    assert cli.main(["check-config", "-c", str(path)]) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert f"{path}: OK (1 collectors" in out


def test_check_config_missing_mapping_file(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "socd.yaml"
    path.write_text("decoders:\n  acme:\n    type: mapping\n    mapping: mappings/acme.yaml\n")
    assert cli.main(["check-config", "-c", str(path)]) == cli.EXIT_CONFIG
    err = capsys.readouterr().err
    assert str(tmp_path / "mappings" / "acme.yaml") in err
    assert "cannot read mapping" in err


def test_check_config_missing_ioc_file(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "socd.yaml"
    path.write_text("classification:\n  ioc_files: [missing-ioc.txt]\n")
    assert cli.main(["check-config", "-c", str(path)]) != cli.EXIT_OK
    err = capsys.readouterr().err
    assert "classification.ioc_files[0]" in err
    assert "no such file" in err


def test_check_config_subprocess_exit_codes(tmp_path: Path) -> None:
    import subprocess
    import sys

    good = tmp_path / "good.yaml"
    good.write_text("http:\n  port: 9797\n")
    bad = CONFIG_ERRORS_DIR / "misspelled_top_level_key.yaml"
    exe = [sys.executable, "-m", "socd"]
    ok = subprocess.run([*exe, "check-config", "-c", str(good)], capture_output=True,
                        text=True, check=False, timeout=60)
    assert ok.returncode == 0, ok.stderr
    res = subprocess.run([*exe, "check-config", "-c", str(bad)], capture_output=True,
                         text=True, check=False, timeout=60)
    assert res.returncode == 2
    assert str(bad) in res.stderr
    assert "colectors" in res.stderr
    assert "did you mean 'collectors'?" in res.stderr


def test_relative_paths_resolve_against_config_dir(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "socd.yaml"
    path.parent.mkdir()
    path.write_text("state_dir: ../var\n")
    cfg = config.load(path, env={})
    assert cfg.config_dir == str(tmp_path / "etc")
    assert cfg.state_dir == str(tmp_path / "var")
    assert cfg.resolve("ioc/a.txt") == str(tmp_path / "etc" / "ioc" / "a.txt")
    assert cfg.resolve("/abs/x") == "/abs/x"


def test_plugin_configs_are_typed_and_frozen() -> None:
    cfg = config.loads("sinks:\n  out:\n    type: ndjson\n    path: x.ndjson\n")
    plugin = cfg.sinks["out"]
    assert plugin.cls.__name__ == "NdjsonSink"
    assert plugin.config.batch_max_events == 1000
    assert plugin.config.select == "alerts"
    with pytest.raises(Exception, match="frozen"):
        plugin.config.path = "other"


def test_plugin_same_as() -> None:
    text = "sinks:\n  out:\n    type: ndjson\n    path: x.ndjson\n"
    a = config.loads(text).sinks["out"]
    b = config.loads(text).sinks["out"]
    c = config.loads(text.replace("x.ndjson", "y.ndjson")).sinks["out"]
    assert a.same_as(b)
    assert not a.same_as(c)
    assert not a.same_as(None)


def test_declared_decoder_overrides_builtin_of_same_name() -> None:
    cfg = config.loads("decoders:\n  json:\n    type: json\n    severity_table: wazuh\n")
    assert cfg.decoders["json"].config.severity_table == "wazuh"


def test_known_severity_tables_accepted() -> None:
    for table in ("vietnamese", "suricata", "wazuh", "cef", "sigma"):
        cfg = config.loads(f"decoders:\n  d:\n    type: json\n    severity_table: {table}\n")
        assert cfg.decoders["d"].config.severity_table == table
