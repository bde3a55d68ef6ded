"""The CLI on an installed system (issue 14, points 4-8), without touching /etc.

An installed layout is a temporary folder named by ``SOCD_ETC`` (socd.config.install); the
service user is ``SOCD_SERVICE_USER``. Switching users cannot be undone in a process,
so here the decision is checked with ``identity.become`` recorded; the real switch,
the files it leaves and the start-up failures are checked end to end, as root and as
a real service user, in tests/e2e/test_cli_installed.py.
"""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from socd import access, cli, config, sqlite
from socd.cli import identity
from socd.config import UnsetSecret, install
from socd.errors import ConfigError, ListenError

NOBODY = "nobody"


@pytest.fixture(autouse=True)
def switches(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bool]]:
    """The user switches the CLI asked for. Never made for real here: it cannot be undone,
    and pytest itself would lose root."""
    calls: list[tuple[str, bool]] = []
    monkeypatch.setattr(identity, "become",
                        lambda user, *, keep_invoker=True: calls.append((user, keep_invoker)))
    return calls


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    """A folder every user can reach: pytest's own tmp_path is below a 0700 folder, which
    would hide everything from the service user ``nobody`` these tests check for."""
    path = Path(tempfile.mkdtemp(prefix="socd-unit-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, extra: str = "",
           env_file: str | None = "SOCD_TEST_TG_TOKEN=123456:ABC\n",
           user: str = NOBODY) -> Path:
    """An installed layout below tmp_path: etc/socd/socd.yaml (+ socd.env), state."""
    etc, state = tmp_path / "etc" / "socd", tmp_path / "state"
    etc.mkdir(parents=True)
    state.mkdir()
    try:
        entry = pwd.getpwnam(user)  # the state belongs to the service user, as installed
    except KeyError:
        pass
    else:
        os.chown(state, entry.pw_uid, entry.pw_gid)
    (etc / "socd.yaml").write_text(
        f"state_dir: {state}\n"
        "sinks:\n  store:\n    type: sqlite\n    path: alerts.db\n"
        "notifiers:\n  tg:\n    type: telegram\n    bot_token: ${SOCD_TEST_TG_TOKEN}\n"
        "    chat_id: '-100123'\n"
        "notifications:\n  routes:\n    - name: all\n      notifiers: [tg]\n" + extra,
        encoding="utf-8")
    if env_file is not None:
        (etc / "socd.env").write_text(env_file, encoding="utf-8")
    monkeypatch.setenv("SOCD_ETC", str(etc))
    monkeypatch.setenv("SOCD_SERVICE_USER", user)
    monkeypatch.delenv("SOCD_CONFIG", raising=False)
    monkeypatch.delenv("SOCD_TEST_TG_TOKEN", raising=False)
    return etc


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


# -- point 4: which configuration ----------------------------------------------------------


def test_detect_installed_layout(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    marker = tmp_path / "install.env"
    env = {"SOCD_ETC": str(etc)}
    assert not install.detect(env, marker=str(marker)).installed
    (etc / "socd.yaml").write_text("{}\n")
    found = install.detect(env, marker=str(marker))
    assert found.installed
    assert (found.config, found.env_file) == (str(etc / "socd.yaml"), str(etc / "socd.env"))
    assert found.service_user == "socd"
    # The installers' marker: installed even without the file, its folder and user
    # the defaults, the environment still wins.
    marker.write_text(f"SOCD_ETC={tmp_path / 'other'}\nSOCD_SERVICE_USER=svc\n")
    found = install.detect({}, marker=str(marker))
    assert (found.installed, found.etc_dir, found.service_user) == (
        True, str(tmp_path / "other"), "svc")
    assert install.detect(env, marker=str(marker)).etc_dir == str(etc)


def test_installed_config_is_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    etc = layout(tmp_path, monkeypatch)
    code, out, err = run(capsys, "check-config")
    assert code == 0, err
    assert out.startswith(f"{etc / 'socd.yaml'}: OK")
    assert "demo" not in err
    assert "SOCD_CONFIG" not in err


def test_embedded_demo_is_announced(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("SOCD_CONFIG", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    code, out, err = run(capsys, "check-config")
    assert code == 0
    assert "default/config.yaml: OK" in out
    assert "socd: using the embedded demo configuration" in err
    assert "not your alerts" in err
    # `socd run` logs it instead: its stderr is the journal, JSON lines only.
    args = cli._parser().parse_args(["run"])
    cli._prepare(args)
    assert capsys.readouterr().err == ""
    assert "embedded demo" in args.config_note


def test_socd_config_other_than_the_installed_one_is_announced(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    etc = layout(tmp_path, monkeypatch)
    other = tmp_path / "other.yaml"
    other.write_text(f"state_dir: {tmp_path / 'state'}\n")
    monkeypatch.setenv("SOCD_CONFIG", str(other))
    code, out, err = run(capsys, "check-config")
    assert code == 0
    assert out.startswith(f"{other}: OK")
    assert f"socd: using $SOCD_CONFIG={other}, not {etc / 'socd.yaml'}" in err
    # -c is what the operator asked for: no note.
    code, _, err = run(capsys, "check-config", "-c", str(other))
    assert (code, err) == (0, "")


# -- point 5: the environment file, and commands that need no secret ------------------------


def test_env_file_syntax(tmp_path: Path) -> None:
    path = tmp_path / "socd.env"
    path.write_text("# comment\n; also a comment\n\nA=1\nB = two words \nC='single $x'\n"
                    'D="dq \\"quoted\\" \\\\ \\n"\nE=line \\\ncontinued\nexport F=x\n'
                    "=nothing\n", encoding="utf-8")
    parsed = install.parse_env_file(str(path))
    assert parsed.values == {"A": "1", "B": "two words", "C": "single $x",
                             "D": 'dq "quoted" \\ \n', "E": "line continued"}
    assert parsed.bad_lines == [10, 11]


def test_env_file_fills_only_unset_variables(tmp_path: Path) -> None:
    path = tmp_path / "socd.env"
    path.write_text("A=from-file\nB=from-file\n")
    env = {"A": "exported"}
    result = install.load_env_file(str(path), env)
    assert env == {"A": "exported", "B": "from-file"}
    assert result.applied == ("B",)
    assert install.load_env_file(str(tmp_path / "none"), env).path is None
    with pytest.raises(install.EnvFileError, match="cannot read the environment file"):
        install.load_env_file(str(tmp_path / "none"), env, required=True)
    unreadable = install.load_env_file(str(tmp_path), env)  # a folder: not readable as one
    assert unreadable.path == str(tmp_path)
    assert unreadable.error


def test_commands_read_the_units_environment_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    layout(tmp_path, monkeypatch)
    code, out, err = run(capsys, "check-config")
    assert code == 0, err
    assert os.environ["SOCD_TEST_TG_TOKEN"] == "123456:ABC"


def test_a_missing_secret_blocks_only_what_needs_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    etc = layout(tmp_path, monkeypatch, env_file="")
    ioc = tmp_path / "letter.txt"
    ioc.write_text("203.0.113.7\nevil.example\n")
    code, out, err = run(capsys, "ioc", "import", str(ioc), "-f", "text", "-s", "letter")
    assert code == 0, err
    assert "2 new" in out
    code, out, err = run(capsys, "check-config")
    assert code == cli.EXIT_CONFIG
    assert "notifiers.tg.bot_token: environment variable SOCD_TEST_TG_TOKEN is not set" in err
    assert f"add SOCD_TEST_TG_TOKEN=... to {etc / 'socd.env'}" in err
    assert ":-" not in err  # never a default for a secret in the YAML


def test_explicit_env_file_must_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    layout(tmp_path, monkeypatch)
    code, _, err = run(capsys, "check-config", "--env-file", str(tmp_path / "nope.env"))
    assert code == cli.EXIT_CONFIG
    assert f"cannot read the environment file {tmp_path / 'nope.env'}" in err


def test_unset_variables_are_deferred_to_their_use(tmp_path: Path) -> None:
    text = ("state_dir: /tmp/x\n"
            "sinks:\n  es:\n    type: elasticsearch\n    hosts: ['http://127.0.0.1:9200']\n"
            "    api_key: ${SOCD_T_ES}\n"
            "notifiers:\n  slack:\n    type: slack\n    url: ${SOCD_T_SLACK}\n"
            "notifications:\n  routes:\n    - {name: all, notifiers: [slack]}\n")
    cfg = config.loads(text, file="t.yaml", env={})
    assert [p.path for p in cfg.unresolved] == ["sinks.es.api_key", "notifiers.slack.url"]
    secret = cfg.sinks["es"].config.api_key
    assert isinstance(secret, UnsetSecret)
    with pytest.raises(ConfigError, match="SOCD_T_ES is not set"):
        secret.get_secret_value()
    # A Slack URL must be a URL: invalid only because the variable is unset, it is kept.
    assert cfg.notifiers["slack"].unresolved
    with pytest.raises(ConfigError, match="SOCD_T_SLACK"):
        cfg.notifiers["slack"].require_env()
    cfg.require_env("sinks.store", "ioc")  # nothing unset there
    with pytest.raises(ConfigError) as info:
        cfg.require_env()
    assert len(info.value.problems) == 2
    from socd.app.components import instantiate

    with pytest.raises(ConfigError, match="SOCD_T_ES"):
        instantiate(cfg, cfg.sinks["es"], None)  # type: ignore[arg-type]


def test_unset_variable_every_command_needs_is_an_error_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        config.loads("state_dir: ${SOCD_T_STATE}\n", file="t.yaml", env={})
    (problem,) = info.value.problems
    assert problem.path == "state_dir"
    assert problem.hint is not None
    assert "${SOCD_T_STATE:-value}" in problem.hint


# -- point 6: state, users, read-only commands ----------------------------------------------


def test_readonly_open_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "incidents.db"
    with pytest.raises(sqlite.NoDatabase):
        sqlite.open_db(str(path), readonly=True)
    assert not (tmp_path / "sub").exists()
    db = sqlite.open_db(str(path))
    db.execute("CREATE TABLE t (x)")
    db.close()
    db = sqlite.open_db(str(path), readonly=True)
    with pytest.raises(sqlite.DatabaseAccessError, match="open for reading only"):
        db.execute("INSERT INTO t VALUES (1)")
    db.close()


def test_incident_list_without_a_store_creates_none(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    layout(tmp_path, monkeypatch)
    code, out, err = run(capsys, "incident", "list")
    assert code == 0, err
    assert f"no incidents yet ({tmp_path / 'state' / 'incidents.db'} does not exist)" in out
    code, _, err = run(capsys, "incident", "show", "SC-2026-0001")
    assert code == 1
    assert "no incident was opened yet" in err
    code, out, _ = run(capsys, "block", "list", "--state-dir", str(tmp_path / "state"))
    assert code == 0
    assert out.strip().endswith("0 decisions")
    assert os.listdir(tmp_path / "state") == []


def test_database_errors_name_the_file_and_the_fix(tmp_path: Path) -> None:
    db = tmp_path / "incidents.db"
    db.write_bytes(b"")
    os.chmod(db, 0o644)
    who = access.Who.named(NOBODY)
    problem = access.database_problem(str(db), who)
    assert str(db) in problem.message
    assert f"not writable by {NOBODY}" in problem.message
    assert "root:root 0644" in problem.message
    assert problem.hint is not None
    assert problem.hint.startswith(f"chown {NOBODY}:")
    # The wrapped sqlite3 error keeps its type for callers that catch sqlite3.Error.
    err = sqlite.DatabaseAccessError(str(db), OSError(13, "attempt to write a readonly "
                                                          "database"))
    assert isinstance(err, __import__("sqlite3").OperationalError)
    assert str(db) in str(err)
    assert "fix:" in str(err)


def test_check_config_requires_a_state_dir_the_service_user_can_write(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    layout(tmp_path, monkeypatch)
    state = tmp_path / "state"
    nobody = pwd.getpwnam(NOBODY)
    os.chown(state, nobody.pw_uid, nobody.pw_gid)
    code, _, err = run(capsys, "check-config")
    assert code == 0, err
    left = state / "incidents.db"  # what a root command used to leave behind
    left.write_bytes(b"")
    code, _, err = run(capsys, "check-config")
    assert code == cli.EXIT_CONFIG
    assert f"state_dir: {left} is not writable by {NOBODY} (root:root" in err
    assert f"hint: chown {NOBODY}:" in err
    left.unlink()
    os.chown(state, 0, 0)
    code, _, err = run(capsys, "check-config")
    assert code == cli.EXIT_CONFIG
    assert f"{state} is not writable by {NOBODY}" in err


@pytest.mark.parametrize(("argv", "state_owner", "switch"), [
    (["ioc", "list"], NOBODY, ("nobody", True)),
    (["run"], NOBODY, ("nobody", False)),
    (["check-config"], NOBODY, ("nobody", False)),
    (["ioc", "list"], "root", None),  # not the service's state: root's own test
    (["block", "sync", "--state-dir", "{state}"], NOBODY, None),  # needs root itself
])
def test_root_acts_as_the_service_user_on_its_state(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str], state_owner: str,
        switch: tuple[str, bool] | None, switches: list[tuple[str, bool]]) -> None:
    assert os.geteuid() == 0, "these tests run as root (the switch is what they check)"
    layout(tmp_path, monkeypatch)
    state = tmp_path / "state"
    entry = pwd.getpwnam(state_owner)
    os.chown(state, entry.pw_uid, entry.pw_gid)
    args = cli._parser().parse_args([a.replace("{state}", str(state)) for a in argv])
    cli._prepare(args)
    assert switches == ([switch] if switch else [])


def test_a_state_folder_not_created_yet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       switches: list[tuple[str, bool]]) -> None:
    """Named by the installed config: the service user creates it (root switches). Named
    by another config below root's folders: root's own test, no switch."""
    etc = layout(tmp_path, monkeypatch)
    (tmp_path / "state").rmdir()
    cli._prepare(cli._parser().parse_args(["ioc", "list"]))
    assert switches == [(NOBODY, True)]
    other = tmp_path / "other.yaml"
    other.write_text(f"state_dir: {tmp_path / 'not-yet' / 'state'}\n")
    cli._prepare(cli._parser().parse_args(["ioc", "list", "-c", str(other)]))
    assert switches == [(NOBODY, True)]
    assert etc.is_dir()


def test_not_installed_never_switches(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                      switches: list[tuple[str, bool]]) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    args = cli._parser().parse_args(["ioc", "list"])
    cli._prepare(args)
    assert switches == []


def test_unreadable_is_not_missing(tmp_path: Path) -> None:
    who = access.Who.named(NOBODY)
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    inside = private / "assets.yaml"
    inside.write_text("{}")
    secret = tmp_path / "secret.txt"
    secret.write_text("x")
    os.chmod(secret, 0o600)
    blocked = access.read_problem(str(inside), who)
    assert blocked is not None
    assert blocked.message.startswith(f"cannot read {inside}: permission denied: the folder "
                                      f"{private} (root:root 0700)")
    unreadable = access.read_problem(str(secret), who)
    assert unreadable is not None
    assert "permission denied (root:root 0600" in unreadable.message
    assert unreadable.hint is not None
    assert "chmod g+r" in unreadable.hint
    missing = access.read_problem(str(tmp_path / "nope"), who)
    assert missing is not None
    assert missing.message == f"no such file: {tmp_path / 'nope'}"
    assert access.read_problem(str(inside)) is None  # root reads it


# -- point 7: who is recorded ---------------------------------------------------------------


def test_actor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "getlogin", lambda: (_ for _ in ()).throw(OSError()))
    env = {"SUDO_USER": "lan", "LOGNAME": "socd", "USER": "socd"}
    assert identity.actor("thu", "socd", env) == "thu"
    assert identity.actor(None, "socd", env) == "lan"
    assert identity.actor(" ", "socd", env) == "lan"  # a blank --by counts as none
    with pytest.raises(identity.UnknownActor, match="service account 'socd'"):
        identity.actor(None, "socd", {"LOGNAME": "socd", "USER": "socd"})
    with pytest.raises(identity.UnknownActor, match="pass --by"):
        identity.actor(None, "socd", {})
    # The controlling terminal's login name comes before $LOGNAME (runuser changes that).
    monkeypatch.setattr(os, "getlogin", lambda: "an")
    assert identity.actor(None, "socd", {"LOGNAME": "socd"}) == "an"
    assert identity.actor(None, "socd", {"LOGNAME": "Nguyễn"}) == "an"


def test_ack_under_the_service_account_needs_by(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from socd.alerts.store import AlertStore
    from tests.unit.test_alert_cli import alert

    layout(tmp_path, monkeypatch, user="socd")
    store = AlertStore(str(tmp_path / "state" / "alerts.db"))
    store.insert([alert(1)])
    store.close()
    alert_id = alert(1)["event"]["hash"]
    monkeypatch.setattr(os, "getlogin", lambda: (_ for _ in ()).throw(OSError()))
    monkeypatch.delenv("SUDO_USER", raising=False)
    monkeypatch.setenv("LOGNAME", "socd")
    monkeypatch.setenv("USER", "socd")
    code, _, err = run(capsys, "alert", "ack", alert_id)
    assert code == 2
    assert "service account 'socd'" in err
    assert "--by" in err
    code, out, _ = run(capsys, "alert", "ack", alert_id, "--by", "lan")
    assert code == 0
    assert "by lan" in out
    monkeypatch.setenv("SUDO_USER", "thu")
    code, out, _ = run(capsys, "alert", "resolve", alert_id)
    assert code == 0
    assert "by thu" in out


# -- point 8: start-up failures --------------------------------------------------------------


def test_listen_error_names_the_address_and_the_fix() -> None:
    err = ListenError("http://127.0.0.1:9797", OSError(98, "error while attempting to bind "
                                                           "on address: in use"), key="http.port")
    assert str(err) == "cannot listen on http://127.0.0.1:9797: Address already in use"
    assert err.hint is not None
    assert "ss -ltnup 'sport = :9797'" in err.hint
    assert "(http.port)" in err.hint
    denied = ListenError("udp://0.0.0.0:514", PermissionError(13, "denied"))
    assert denied.hint is not None
    assert "CAP_NET_BIND_SERVICE" in denied.hint


def test_collector_failure_logs_the_address_without_a_traceback() -> None:
    from socd.app.server import _log_collector_failure
    from socd.errors import SocdError

    cause = OSError(98, "error while attempting to bind on address ('127.0.0.1', 5514): "
                        "address already in use")
    try:
        raise SocdError("syslog collector 'syslog': cannot listen on tcp://127.0.0.1:5514: "
                        "address already in use") from cause
    except SocdError as exc:
        with structlog.testing.capture_logs() as logs:
            _log_collector_failure("syslog", exc, 1.0)
    (entry,) = logs
    assert entry["event"] == "collector failed; restarting"
    assert "cannot listen on tcp://127.0.0.1:5514" in entry["error"]
    assert "sport = :5514" in entry["hint"]
    assert "exc_info" not in entry
