"""``socd console``: the console's users from the command line (issue 19)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from socd.alerts.audit import AuditLog
from socd.cli import main
from socd.console.roles import Role
from socd.console.users import UserStore

PASSWORD = "Mật khẩu quản trị 2026"


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    path = tmp_path / "socd.yaml"
    path.write_text(f"state_dir: {tmp_path / 'state'}\n", encoding="utf-8")
    monkeypatch.setenv("USER", "tester")
    return str(path)


def _store(config: str) -> UserStore:
    return UserStore(str(Path(config).parent / "state" / "console-users.db"))


def _stdin(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(text))


def test_create_admin_from_a_password_file(config: str, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD + "\nsecond line ignored\n", encoding="utf-8")
    assert main(["console", "create-admin", "QuanTri", "--display-name", "Quản trị",
                 "--password-file", str(pw), "-c", config]) == 0
    out = capsys.readouterr()
    assert "user quantri added (admin) by tester" in out.out
    assert PASSWORD not in out.out + out.err
    store = _store(config)
    try:
        user = store.get("quantri")
        assert user is not None
        assert user.role == Role.ADMIN
        assert user.display_name == "Quản trị"
        assert store.has_admin()
    finally:
        store.close()


def test_users_from_stdin_roles_and_list(config: str, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    _stdin(monkeypatch, PASSWORD + "\n")
    assert main(["console", "create-admin", "admin", "-c", config]) == 0
    _stdin(monkeypatch, "Mật khẩu của Lan 2026\n")
    assert main(["console", "user", "add", "lan", "--role", "analyst", "-c", config]) == 0
    assert main(["console", "user", "set-role", "lan", "viewer", "-c", config]) == 0
    assert main(["console", "user", "disable", "lan", "-c", config]) == 0
    capsys.readouterr()
    assert main(["console", "user", "list", "--json", "-c", config]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["name"], r["role"], r["state"]) for r in rows] == [
        ("admin", "admin", "active"), ("lan", "viewer", "disabled")]
    assert main(["console", "user", "enable", "lan", "-c", config]) == 0
    assert main(["console", "user", "list", "-c", config]) == 0
    table = capsys.readouterr().out
    assert "NAME" in table
    assert "lan" in table
    log = AuditLog(str(Path(config).parent / "state" / "audit.db"), use_env=False)
    try:
        actions = [(r.action, r.actor, r.object_id) for r in log.records()]
    finally:
        log.close()
    assert actions == [("user_add", "tester", "admin"), ("user_add", "tester", "lan"),
                       ("user_role", "tester", "lan"), ("user_disable", "tester", "lan"),
                       ("user_enable", "tester", "lan")]


def test_refusals(config: str, monkeypatch: pytest.MonkeyPatch,
                  capsys: pytest.CaptureFixture[str]) -> None:
    _stdin(monkeypatch, "short\n")
    assert main(["console", "create-admin", "admin", "-c", config]) == 1
    assert "at least 12 characters" in capsys.readouterr().err
    _stdin(monkeypatch, PASSWORD + "\n")
    assert main(["console", "create-admin", "admin", "-c", config]) == 0
    _stdin(monkeypatch, PASSWORD + "\n")
    assert main(["console", "create-admin", "admin", "-c", config]) == 1
    assert "exists" in capsys.readouterr().err
    assert main(["console", "user", "set-role", "admin", "analyst", "-c", config]) == 1
    assert main(["console", "user", "disable", "admin", "-c", config]) == 1
    assert "last enabled administrator" in capsys.readouterr().err
    assert main(["console", "user", "disable", "nobody", "-c", config]) == 1
    store = _store(config)
    try:
        store.upsert_directory_user("hoa", Role.VIEWER, "Lê Thị Hoa")
    finally:
        store.close()
    _stdin(monkeypatch, "whatever password\n")
    assert main(["console", "user", "passwd", "hoa", "-c", config]) == 1
    assert "directory" in capsys.readouterr().err


@pytest.mark.parametrize("option", ["--password", "--pass", "--password=x"])
def test_passwords_are_never_arguments(config: str, option: str,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    argv = [option] if "=" in option else [option, PASSWORD]
    with pytest.raises(SystemExit) as exit_:
        main(["console", "create-admin", "admin", *argv, "-c", config])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert PASSWORD not in err
    if option != "--pass":  # an ambiguous abbreviation: argparse refuses it itself
        assert "never taken on the command line" in err


def test_passwd_changes_the_password(config: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from socd.console.passwords import verify

    _stdin(monkeypatch, PASSWORD + "\n")
    assert main(["console", "create-admin", "admin", "-c", config]) == 0
    _stdin(monkeypatch, "Mật khẩu mới 2027 dài\n")
    assert main(["console", "user", "passwd", "admin", "-c", config]) == 0
    store = _store(config)
    try:
        user = store.get("admin")
        assert user is not None
        assert user.password_hash is not None
        assert verify(user.password_hash, "Mật khẩu mới 2027 dài")
        assert not verify(user.password_hash, PASSWORD)
    finally:
        store.close()
