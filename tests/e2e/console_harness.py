"""socd with its analyst console, for the browser tests and the console benchmark.

What is real here: socd runs as a process (``socd run``) with the console on a
loopback TLS listener whose certificate a CA made by ``openssl`` signed; the users
are made with the ``socd console`` commands (passwords from a file, never argv);
clients sign in through the login form like a person does.
"""

from __future__ import annotations

import http.client
import re
import shutil
import ssl
import subprocess
import sys
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.conftest import free_port
from tests.helpers import SocdProcess, wait_for

PASSWORDS = {"admin": "Quản-trị-viên 2026!", "analyst": "Phân-tích-viên 2026!",
             "viewer": "Người-xem 2026!"}
_CSRF_INPUT = re.compile(r'name="(?:csrf_token|_csrf|csrf)"\s+value="([^"]+)"'
                         r'|value="([^"]+)"\s+name="(?:csrf_token|_csrf|csrf)"')
_CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)"')


def _openssl(cwd: Path, *args: str) -> None:
    if shutil.which("openssl") is None:
        raise AssertionError("the openssl CLI is needed to make the console's test "
                             "certificate (Debian package openssl)")
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_tls(directory: Path) -> tuple[Path, Path, Path]:
    """A test CA and a certificate for 127.0.0.1 signed by it: (ca, cert, key)."""
    directory.mkdir(parents=True, exist_ok=True)
    _openssl(directory, "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
             "/CN=socd console test CA", "-keyout", "ca.key", "-out", "ca.crt")
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                                       "extendedKeyUsage=serverAuth\n")
    _openssl(directory, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "console.key",
             "-out", "console.csr")
    _openssl(directory, "x509", "-req", "-in", "console.csr", "-CA", "ca.crt", "-CAkey",
             "ca.key", "-CAcreateserial", "-days", "2", "-extfile", "san.ext",
             "-out", "console.crt")
    return directory / "ca.crt", directory / "console.crt", directory / "console.key"


def console_config(workdir: Path, *, sinks: dict[str, Any] | None = None,
                   **extra: Any) -> dict[str, Any]:
    """A socd config with the console on a free loopback port over TLS, the embedded
    SQLite store as its alert source, no rules (the tests choose their alerts)."""
    _, cert, key = make_tls(workdir / "tls")
    config: dict[str, Any] = {
        "state_dir": str(workdir / "state"),
        "log": {"format": "json"},
        "http": {"host": "127.0.0.1", "port": free_port()},
        "rules": {"paths": []},
        "sinks": sinks or {"store": {"type": "sqlite", "select": "alerts",
                                     "path": "alerts.db"}},
        "console": {"enabled": True, "host": "127.0.0.1", "port": free_port(),
                    "tls": {"cert_file": str(cert), "key_file": str(key)}},
    }
    config.update(extra)
    return config


def socd_cli(config: Path, *argv: str, stdin: str | None = None) -> str:
    """Run ``socd <argv> -c config`` as a process; fail with its output when it fails."""
    proc = subprocess.run([sys.executable, "-m", "socd", *argv, "-c", str(config)],
                          input=stdin, capture_output=True, text=True, timeout=120,
                          check=False)
    if proc.returncode != 0:
        raise AssertionError(f"socd {' '.join(argv)} exited with {proc.returncode}:\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def create_users(config: Path, workdir: Path) -> None:
    """The first administrator, then an analyst and a viewer, with the CLI."""
    for name, password in PASSWORDS.items():
        pw = workdir / f"{name}.pw"
        pw.write_text(password + "\n")
        pw.chmod(0o600)
        if name == "admin":
            socd_cli(config, "console", "create-admin", name, "--password-file", str(pw))
        else:
            socd_cli(config, "console", "user", "add", name, "--role", name,
                     "--password-file", str(pw))


@dataclass
class Console:
    """A running socd with the console: its process, URL and CA."""

    socd: SocdProcess
    url: str
    ca: Path
    config_path: Path
    state: Path
    extra: dict[str, Any] = field(default_factory=dict)

    def stop(self) -> None:
        self.socd.kill()


def start_console(workdir: Path, config: dict[str, Any]) -> Console:
    """Write ``config``, create the users, start socd, wait for the console's login
    page to answer over TLS."""
    socd = SocdProcess(config, workdir)
    create_users(socd.config_path, workdir)
    socd.start()
    console = Console(socd, f"https://127.0.0.1:{config['console']['port']}",
                      workdir / "tls" / "ca.crt", socd.config_path, Path(config["state_dir"]))
    client = HttpClient(console)
    try:
        wait_for(lambda: client.status("/login") == 200, 60, "the console's login page")
    finally:
        client.close()
    return console


class HttpClient:
    """A kept-alive HTTPS client that verifies the console's certificate against the
    test CA and keeps the session cookie (one signed-in analyst)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        parsed = urllib.parse.urlsplit(console.url)
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 443
        self.context = ssl.create_default_context(cafile=str(console.ca))
        self.conn = self._connect()
        self.cookies: dict[str, str] = {}
        self.csrf = ""

    def _connect(self) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(self.host, self.port, context=self.context,
                                           timeout=60)

    def close(self) -> None:
        self.conn.close()

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
        hdrs = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items()),
                **(headers or {})}
        if not self.cookies:
            hdrs.pop("Cookie")
        # A kept-alive connection the server closed while idle is reopened for a GET;
        # a POST is never sent twice.
        attempts = 2 if method == "GET" else 1
        for attempt in range(1, attempts + 1):
            try:
                self.conn.request(method, path, body=body, headers=hdrs)
                resp = self.conn.getresponse()
                text = resp.read().decode("utf-8", "replace")
                break
            except (ConnectionError, http.client.HTTPException, ssl.SSLError):
                self.conn.close()
                self.conn = self._connect()
                if attempt == attempts:
                    raise
        for name, value in resp.getheaders():
            if name.lower() == "set-cookie":
                key, _, rest = value.partition("=")
                self.cookies[key.strip()] = rest.split(";", 1)[0]
        found = _CSRF_META.search(text) or _CSRF_INPUT.search(text)
        if found:
            self.csrf = next(g for g in found.groups() if g)
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, text

    def status(self, path: str) -> int:
        try:
            return self.request("GET", path)[0]
        except OSError:
            return 0

    def get(self, path: str) -> tuple[int, str]:
        status, _, text = self.request("GET", path)
        return status, text

    def post_form(self, path: str, fields: list[tuple[str, str]] | dict[str, str],
                  ) -> tuple[int, dict[str, str], str]:
        items = list(fields.items()) if isinstance(fields, dict) else list(fields)
        body = urllib.parse.urlencode([*items, ("csrf_token", self.csrf)]).encode()
        return self.request("POST", path, body, {
            "Content-Type": "application/x-www-form-urlencoded", "X-CSRF-Token": self.csrf,
            "Origin": self.console.url, "Referer": self.console.url + path})

    def sign_in(self, user: str) -> None:
        status, _ = self.get("/login")
        assert status == 200, f"GET /login answered {status}"
        status, headers, text = self.post_form("/login", {"name": user,
                                                          "password": PASSWORDS[user]})
        assert status in (302, 303), f"sign-in of {user} answered {status}: {text[:300]}"
        self.get(headers.get("location", "/"))
