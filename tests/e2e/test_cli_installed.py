"""The real ``socd`` command on an installed layout, as root and as the service user
(issue 14, points 4-8).

An installed layout is built below a temporary folder, as the package lays it out:
``etc/socd/socd.yaml`` and ``socd.env`` (0640 root:<service group>), the state folder
(0750, owned by the service user). ``SOCD_ETC`` points the install detection at it
(socd.config.install), so nothing touches /etc. The service user is a system user created for
this module (``useradd --system``) and deleted after it. The CLI runs as processes:
``python -m socd`` as root, and under ``runuser -u <service user>`` as the docs say.

This checkout's interpreter may live below a folder other users cannot enter (pyenv in
/root, 0700); the service user must run it, and root's socd switches to that user before
it imports most of itself. Each command therefore runs in a private mount namespace
where that folder is replaced by a readable one holding only the interpreter's tree: the
installed package needs no such thing (/opt/socd and /usr/lib/python3 are readable).
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import socket
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

SAMPLE = REPO / "socd" / "default" / "sample" / "server-edr.ndjson"
TOKEN_VAR = "SOCD_E2E_TG_TOKEN"


def tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if path is None:
        pytest.fail(f"`{name}` not found: install util-linux/passwd", pytrace=False)
    return path


# -- who runs it ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def service_user() -> Iterator[pwd.struct_passwd]:
    """A system user and group of its own, deleted after the module."""
    assert os.geteuid() == 0, "this test creates a system user and runs socd as root"
    name = f"socd-e2e-{uuid.uuid4().hex[:6]}"
    subprocess.run([tool("useradd"), "--system", "--user-group", "--no-create-home",
                    "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name],
                   check=True)
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run([tool("userdel"), name], check=False)
        subprocess.run([tool("groupdel"), name], check=False, capture_output=True)


def _hidden_ancestor(path: Path) -> Path | None:
    """The first folder above ``path`` that other users cannot search."""
    for parent in reversed(path.parents):
        if parent != Path("/") and not parent.stat().st_mode & stat.S_IXOTH:
            return parent
    return None


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """The command prefix that makes this interpreter usable by every user (see the
    module docstring); empty when it already is."""
    python = Path(sys.executable).resolve()
    hidden = _hidden_ancestor(python)
    if hidden is None:
        yield []
        return
    child = hidden / python.relative_to(hidden).parts[0]
    view = Path(tempfile.mkdtemp(prefix="socd-e2e-view-", dir="/tmp"))
    view.chmod(0o755)
    script = (f"mkdir -p {view}/{child.name} && mount --bind {child} {view}/{child.name} && "
              f"mount --rbind {view} {hidden} && exec \"$@\"")
    try:
        yield [tool("unshare"), "--mount", "--propagation", "private", "sh", "-c", script, "sh"]
    finally:
        shutil.rmtree(view, ignore_errors=True)


# -- the installed layout ---------------------------------------------------------------------


@dataclass
class Installed:
    root: Path
    etc: Path
    state: Path
    private: Path  # root's own folder (0700), as an operator's home
    user: pwd.struct_passwd
    prefix: list[str]
    http_port: int

    @property
    def config(self) -> Path:
        return self.etc / "socd.yaml"

    def write_config(self, doc: Mapping[str, Any], name: str = "socd.yaml") -> Path:
        path = self.etc / name
        path.write_text(yaml.safe_dump(dict(doc), allow_unicode=True), encoding="utf-8")
        os.chown(path, 0, self.user.pw_gid)
        path.chmod(0o640)
        return path

    def env(self, **extra: str) -> dict[str, str]:
        return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
                "PYTHONDONTWRITEBYTECODE": "1", "SOCD_ETC": str(self.etc),
                "SOCD_SERVICE_USER": self.user.pw_name, "HOME": str(self.root),
                **({"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ
                   else {}), **extra}

    def socd(self, *argv: str, as_user: bool = False, timeout: float = 180,
             **env: str) -> subprocess.CompletedProcess[str]:
        """``python -m socd ARGV`` as root, or under ``runuser -u <service user>``."""
        command = [sys.executable, "-m", "socd", *argv]
        if as_user:
            command = [tool("runuser"), "-u", self.user.pw_name, "--", *command]
        if not as_user:
            # Root's own login name, as a root shell has it (the CLI records it).
            env = {"LOGNAME": "root", "USER": "root", **env}
        return subprocess.run([*self.prefix, *command], capture_output=True, text=True,
                              env=self.env(**env), cwd=self.root, timeout=timeout,
                              check=False)

    def root_owned(self) -> list[str]:
        """Files and folders below the state folder that the service user does not own."""
        bad = []
        for folder, dirs, files in os.walk(self.state):
            for name in [*dirs, *files]:
                path = Path(folder) / name
                if path.lstat().st_uid != self.user.pw_uid:
                    bad.append(f"{path} (uid {path.lstat().st_uid})")
        return bad


def base_config(inst: Installed) -> dict[str, Any]:
    """The shipped /etc/socd/socd.yaml's shape: the SQLite store, the rule pack, local
    rules in etc/rules.d, JSON logs; a one-shot import of EDR alerts instead of the
    syslog listener, and a Telegram notifier whose token is in socd.env (its route
    matches nothing: no message leaves the machine)."""
    return {
        "state_dir": f"${{STATE_DIRECTORY:-{inst.state}}}",
        "exit_when_done": True,
        "log": {"level": "info", "format": "json"},
        "http": {"host": "127.0.0.1", "port": inst.http_port},
        "rules": {"paths": ["builtin", str(inst.etc / "rules.d")]},
        "collectors": {"edr": {"type": "file", "paths": [str(inst.etc / "edr.ndjson")],
                               "decoder": "server_edr"}},
        "sinks": {"store": {"type": "sqlite", "select": "alerts", "path": "alerts.db"}},
        "notifiers": {"tg": {"type": "telegram", "bot_token": f"${{{TOKEN_VAR}}}",
                             "chat_id": "-100123", "api_url": "http://127.0.0.1:9"}},
        "notifications": {"routes": [{"name": "none", "match": {"rule": ["e2e-never"]},
                                      "notifiers": ["tg"]}]},
    }


@pytest.fixture
def installed(service_user: pwd.struct_passwd, runner: list[str]) -> Iterator[Installed]:
    root = Path(tempfile.mkdtemp(prefix="socd-e2e-inst-", dir="/tmp"))
    root.chmod(0o755)
    gid = service_user.pw_gid
    etc, state, private = root / "etc" / "socd", root / "var" / "lib" / "socd", root / "home"
    etc.mkdir(parents=True)
    (etc / "rules.d").mkdir()
    os.chown(etc, 0, gid)
    etc.chmod(0o750)
    state.mkdir(parents=True)
    os.chown(state, service_user.pw_uid, gid)
    state.chmod(0o750)
    private.mkdir(mode=0o700)
    inst = Installed(root, etc, state, private, service_user, runner, free_port())
    records = SAMPLE.read_text(encoding="utf-8").splitlines()[:20]
    (etc / "edr.ndjson").write_text("\n".join(records) + "\n", encoding="utf-8")
    (etc / "edr.ndjson").chmod(0o644)
    env_file = etc / "socd.env"
    env_file.write_text(f"# secrets\n{TOKEN_VAR}=123456:ABC-e2e\n", encoding="utf-8")
    os.chown(env_file, 0, gid)
    env_file.chmod(0o640)
    inst.write_config(base_config(inst))
    try:
        yield inst
    finally:
        shutil.rmtree(root, ignore_errors=True)


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"{result.args}\n{result.stdout}\n{result.stderr}"
    return result


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every stderr line of `socd run` is a JSON object (the journal recipes parse them)."""
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not a JSON line: {line!r}\n--- all:\n{text}")
    return out


def import_sample(inst: Installed) -> list[str]:
    """`socd run` as root (no -c): the one-shot import; the ids of the stored alerts."""
    result = ok(inst.socd("run"))
    assert "demo" not in result.stderr
    db = sqlite3.connect(f"file:{inst.state / 'alerts.db'}?mode=ro", uri=True)
    try:
        ids = [row[0] for row in db.execute("SELECT id FROM alerts ORDER BY ts")]
    finally:
        db.close()
    assert ids, result.stderr
    return ids


# -- point 4 and 6: root works on the installed config, as the service user --------------------


def test_root_uses_the_installed_config_and_leaves_no_root_owned_state(
        installed: Installed) -> None:
    inst = installed
    # Read-only commands create no database (before the daemon ever ran).
    incidents = ok(inst.socd("incident", "list"))
    assert "no incidents yet" in incidents.stdout
    ok(inst.socd("block", "list", "--state-dir", str(inst.state)))
    ok(inst.socd("ioc", "list"))
    assert list(inst.state.iterdir()) == []

    ids = import_sample(inst)
    listed = ok(inst.socd("alert", "list"))
    assert ids[-1][:10] in listed.stdout
    assert listed.stderr == ""  # the installed config: nothing to announce

    # The operator's appendix in root's own 0700 folder is read with root's rights; the
    # store it goes to is the service user's.
    letter = inst.private / "letter-941.txt"
    letter.write_text("203.0.113.7\nevil-update.example\n", encoding="utf-8")
    letter.chmod(0o600)
    imported = ok(inst.socd("ioc", "import", str(letter), "-f", "text", "-s", "letter",
                            "-r", "941/CATTT-NCSC"))
    assert "2 new" in imported.stdout

    # The operator names an output file in root's folder: written as root.
    out = inst.private / "block.txt"
    ok(inst.socd("block", "export", "--state-dir", str(inst.state), "-o", str(out)))
    assert out.stat().st_uid == 0

    checked = ok(inst.socd("check-config"))
    assert checked.stdout.startswith(f"{inst.config}: OK")
    assert (inst.state / "ioc.db").stat().st_uid == inst.user.pw_uid
    assert inst.root_owned() == []

    # Without an installed layout the embedded demo is used, and said so.
    demo = ok(inst.socd("ioc", "stats", SOCD_ETC="/nonexistent",
                        XDG_STATE_HOME=str(inst.root / "demo-state")))
    assert "socd: using the embedded demo configuration" in demo.stderr


# -- point 5: the unit's environment file; a missing secret blocks only what needs it ---------


def test_environment_file_and_a_missing_secret(installed: Installed) -> None:
    inst = installed
    ok(inst.socd("check-config"))
    ok(inst.socd("check-config", as_user=True))  # socd.env is 0640 root:<service group>

    (inst.etc / "socd.env").write_text("# the token is not set yet\n", encoding="utf-8")
    letter = inst.root / "letter.txt"
    letter.write_text("198.51.100.23\n", encoding="utf-8")
    imported = ok(inst.socd("ioc", "import", str(letter), "-f", "text", "-s", "letter"))
    assert "1 new" in imported.stdout
    ok(inst.socd("ioc", "list", as_user=True))
    for as_user in (False, True):
        failed = inst.socd("check-config", as_user=as_user)
        assert failed.returncode == 2, failed.stderr
        assert (f"notifiers.tg.bot_token: environment variable {TOKEN_VAR} is not set"
                in failed.stderr)
        assert f"add {TOKEN_VAR}=... to {inst.etc / 'socd.env'}" in failed.stderr
        assert ":-" not in failed.stderr  # never a default for a secret in the YAML
    run = inst.socd("run")
    assert run.returncode == 2
    (line,) = [e for e in json_lines(run.stderr) if e["event"] == "configuration is invalid"]
    assert line["key"] == "notifiers.tg.bot_token"
    assert TOKEN_VAR in line["problem"]


# -- point 7: who is recorded --------------------------------------------------------------


def test_runuser_records_the_analyst_not_the_service_account(installed: Installed) -> None:
    inst = installed
    ids = import_sample(inst)
    refused = inst.socd("alert", "ack", ids[0], as_user=True)
    assert refused.returncode == 2
    assert f"service account {inst.user.pw_name!r}" in refused.stderr
    assert "--by" in refused.stderr

    acked = ok(inst.socd("alert", "ack", ids[0], "--by", "lan", as_user=True))
    assert "by lan" in acked.stdout
    resolved = ok(inst.socd("alert", "resolve", ids[0], as_user=True, SUDO_USER="thu"))
    assert "by thu" in resolved.stdout

    refused = inst.socd("incident", "open", "--alert", ids[1], "--title", "Dò mật khẩu",
                        as_user=True)
    assert refused.returncode == 2
    assert "service account" in refused.stderr
    opened = ok(inst.socd("incident", "open", "--alert", ids[1], "--title", "Dò mật khẩu",
                          as_user=True, SUDO_USER="thu"))
    assert "SC-" in opened.stdout
    shown = ok(inst.socd("incident", "show", opened.stdout.split()[1].rstrip(":")))
    assert "by thu" in shown.stdout

    # Root acting directly (sudo -i, or a root login) is recorded as root.
    by_root = ok(inst.socd("alert", "ack", ids[2]))
    assert "by root" in by_root.stdout
    assert inst.root_owned() == []


# -- point 6: a root-owned database is named, with the fix ----------------------------------


def test_a_root_owned_database_is_named_with_its_fix(installed: Installed) -> None:
    inst = installed
    ids = import_sample(inst)
    # What an older socd left after `socd incident list` as root (the daemon had not
    # created the store yet: it does at its start, so this one is replaced).
    trap = inst.state / "incidents.db"
    for old in inst.state.glob("incidents.db*"):
        old.unlink()
    sqlite3.connect(trap).close()
    trap.chmod(0o640)
    assert trap.stat().st_uid == 0

    failed = inst.socd("incident", "open", "--alert", ids[0], "--title", "x", "--by", "lan",
                       as_user=True)
    assert failed.returncode == 1
    assert str(trap) in failed.stderr
    assert f"not writable by {inst.user.pw_name} (root:root 0640)" in failed.stderr
    assert f"chown {inst.user.pw_name}:" in failed.stderr

    checked = inst.socd("check-config")
    assert checked.returncode == 2
    assert f"state_dir: {trap} is not writable by {inst.user.pw_name}" in checked.stderr
    assert "hint: chown" in checked.stderr


# -- point 8: start-up failures -----------------------------------------------------------------


@contextlib.contextmanager
def held_port(kind: int = socket.SOCK_STREAM) -> Iterator[int]:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        if kind == socket.SOCK_STREAM:
            sock.listen()
        yield sock.getsockname()[1]


def test_http_port_in_use_is_one_json_line(installed: Installed) -> None:
    inst = installed
    with held_port() as port:
        config = {**base_config(inst), "http": {"host": "127.0.0.1", "port": port}}
        path = inst.write_config(config, "http-taken.yaml")
        result = inst.socd("run", "-c", str(path))
    assert result.returncode == 1
    lines = json_lines(result.stderr)
    (failure,) = [e for e in lines if e["level"] == "error"]
    assert failure["event"] == "cannot start"
    assert failure["error"] == f"cannot listen on http://127.0.0.1:{port}: Address already in use"
    assert f"ss -ltnup 'sport = :{port}'" in failure["hint"]
    assert "(http.port)" in failure["hint"]


def test_syslog_port_in_use_names_the_address(installed: Installed) -> None:
    inst = installed
    with held_port() as port:
        config = {**base_config(inst), "exit_when_done": False,
                  "collectors": {"syslog": {"type": "syslog", "decoder": "syslog",
                                            "listeners": [{"protocol": "tcp",
                                                           "host": "127.0.0.1",
                                                           "port": port}]}}}
        path = inst.write_config(config, "syslog-taken.yaml")
        log = inst.root / "syslog-taken.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(  # noqa: S603 - a fixed command line
                [*inst.prefix, sys.executable, "-m", "socd", "run", "-c", str(path)],
                stdout=subprocess.DEVNULL, stderr=out, env=inst.env(), cwd=inst.root)
        try:
            deadline = time.monotonic() + 60
            failures: list[dict[str, Any]] = []
            while not failures:
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                text = log.read_text()
                complete = text[:text.rfind("\n") + 1]
                failures = [e for e in json_lines(complete)
                            if e["event"] == "collector failed; restarting"]
                time.sleep(0.2)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    failure = failures[0]
    assert failure["collector"] == "syslog"
    assert failure["error"] == f"cannot listen on tcp://127.0.0.1:{port}: Address already in use"
    assert f"ss -ltnup 'sport = :{port}'" in failure["hint"]
    assert "exception" not in failure  # no traceback for an operator's problem
    json_lines(log.read_text())  # and every line of the run is JSON


def test_unreadable_file_is_not_reported_missing(installed: Installed) -> None:
    inst = installed
    inventory = inst.private / "assets.yaml"  # root's 0700 folder: the service user is kept out
    inventory.write_text("assets: []\n", encoding="utf-8")
    for path, expected in ((inventory, "permission denied"),
                           (inst.etc / "missing-assets.yaml", "no such file")):
        config = {**base_config(inst), "enrichment": {"assets_file": str(path)}}
        config_file = inst.write_config(config, "assets.yaml")
        checked = inst.socd("check-config", "-c", str(config_file))
        assert checked.returncode == 2, checked.stderr
        assert "enrichment.assets_file:" in checked.stderr
        assert f"{expected}" in checked.stderr
        if expected == "permission denied":
            assert "no such file" not in checked.stderr
        result = inst.socd("run", "-c", str(config_file))
        assert result.returncode == 2, result.stderr
        (problem,) = [e for e in json_lines(result.stderr)
                      if e["event"] == "configuration is invalid"]
        assert problem["key"] == "enrichment.assets_file"
        assert expected in problem["problem"]
        assert str(path) in problem["problem"]
        if expected == "permission denied":
            assert "no such file" not in problem["problem"]
            assert f"{inst.private} (root:root 0700)" in problem["problem"]
            assert "hint" in problem
