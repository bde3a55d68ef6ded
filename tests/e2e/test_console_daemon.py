"""The console in a real ``socd run`` (issue 19): off until an administrator exists.

socd starts with ``console.enabled`` and no user: it logs how to make one and opens no
console port. ``socd console create-admin`` (password from a file) then a reload
(SIGHUP) opens it, and the administrator signs in through the form; the sign-in is in
the audit log that ``socd audit verify`` checks.
"""

from __future__ import annotations

import http.client
import re
import signal
import socket
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.helpers import SocdProcess, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

PASSWORD = "Mật khẩu quản trị 2026"


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _cli(config: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "socd", *argv, "-c", str(config)],
                          capture_output=True, text=True, timeout=120, check=False,
                          env={"PATH": "/usr/bin:/bin", "USER": "tester"})


def _sign_in(port: int) -> tuple[int, str]:
    """The login form's round trip with http.client; (status, session cookie)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/login")
        page = conn.getresponse()
        body = page.read().decode()
        cookie = page.getheader("Set-Cookie", "").split(";", 1)[0]
        token = re.search(r'name="csrf_token" value="([^"]+)"', body)
        assert token is not None
        form = urllib.parse.urlencode({"name": "quantri", "password": PASSWORD,
                                       "csrf_token": token.group(1)})
        conn.request("POST", "/login", body=form, headers={
            "Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie})
        answer = conn.getresponse()
        answer.read()
        return answer.status, answer.getheader("Set-Cookie", "")
    finally:
        conn.close()


def test_console_opens_after_create_admin_and_reload(tmp_path: Path) -> None:
    port = free_port()
    config = {
        "state_dir": str(tmp_path / "state"),
        "log": {"format": "json"},
        "http": {"host": "127.0.0.1", "port": free_port()},
        "rules": {"paths": []},
        "sinks": {"store": {"type": "sqlite", "select": "alerts", "path": "alerts.db"}},
        "console": {"enabled": True, "host": "127.0.0.1", "port": port,
                    "dev_plain_http": True},
    }
    socd = SocdProcess(config, tmp_path).start()
    try:
        wait_for(lambda: "no administrator yet" in socd.log_text(), 30,
                 "the no-administrator log line")
        assert not _listening(port)

        (tmp_path / "pw").write_text(PASSWORD + "\n", encoding="utf-8")
        made = _cli(socd.config_path, "console", "create-admin", "quantri",
                    "--password-file", str(tmp_path / "pw"))
        assert made.returncode == 0, made.stderr
        assert PASSWORD not in made.stdout + made.stderr

        socd.signal(signal.SIGHUP)
        wait_for(lambda: _listening(port), 60, "the console's port after the reload")
        status, cookie = _sign_in(port)
        assert status == 303
        assert cookie.startswith("socd_session=")
        assert "HttpOnly" in cookie
        assert "SameSite=Strict" in cookie
        socd.assert_running()
    finally:
        socd.stop()
    verified = _cli(socd.config_path, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    shown = _cli(socd.config_path, "audit", "show")
    assert "user_add" in shown.stdout
    assert "login" in shown.stdout
    assert PASSWORD not in (tmp_path / "state" / "audit.db").read_bytes().decode(
        errors="replace")
