"""The analyst console for in-process tests: the real listener on loopback, real users.

:func:`running_console` loads a real configuration (``console:`` section), creates
users in the real users file with Argon2id hashes, and starts
:class:`socd.console.listener.ConsoleListener` (the daemon's own service: the
HttpListener with its limits, TLS when configured). :class:`Browser` is an HTTP client
that keeps cookies itself (it sends ``Secure`` cookies over plain HTTP too, as a
browser behind the TLS-terminating proxy would see them), so tests can read every
cookie's flags and plant cookies.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from http.cookies import Morsel, SimpleCookie
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from socd import config as config_mod
from socd.console.listener import ConsoleListener
from socd.console.passwords import hash_password
from socd.console.roles import Role
from socd.console.users import UserStore

PASSWORDS = {"admin": "Quản-trị 2026 dài!", "analyst": "Phân-tích 2026 dài!",
             "viewer": "Người-xem 2026 dài!"}
_CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
_CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]*)"')


def console_yaml(tmp_path: Path, **console: Any) -> str:
    """A config: state under ``tmp_path``, the console on a free loopback port behind a
    (pretend) reverse proxy on 127.0.0.1, so cookies are Secure as in production."""
    section: dict[str, Any] = {"enabled": True, "host": "127.0.0.1", "port": 0,
                               "trusted_proxies": ["127.0.0.1/32"]}
    section.update(console)
    doc = {"state_dir": str(tmp_path / "state"), "http": {"enabled": False},
           "rules": {"paths": []},
           "sinks": {"store": {"type": "sqlite", "select": "alerts", "path": "alerts.db"}},
           "console": section}
    path = tmp_path / "socd.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return str(path)


@functools.cache
def _hash(password: str) -> str:
    """Argon2id costs ~0.3 s here: each test password is hashed once per run."""
    return hash_password(password)


def add_users(config: config_mod.Config, roles: Mapping[str, Role] | None = None) -> None:
    """admin, analyst and viewer (passwords in :data:`PASSWORDS`) in the users file."""
    cfg = config.document.console
    store = UserStore(str(Path(config.state_dir) / cfg.users_db))
    try:
        for name, role in (roles or {n: Role.parse(n) for n in PASSWORDS}).items():
            store.add_user(name, role, password_hash=_hash(PASSWORDS[name]),
                           display_name=name.title())
    finally:
        store.close()


@contextlib.asynccontextmanager
async def running_console(tmp_path: Path, *, users: bool = True,
                          **console: Any) -> AsyncIterator[ConsoleListener]:
    """The console of a fresh configuration, listening; stopped at the end."""
    config = config_mod.load(console_yaml(tmp_path, **console))
    if users:
        add_users(config)
    listener = ConsoleListener(config)
    await listener.start()
    try:
        yield listener
    finally:
        await listener.stop()


@dataclass
class Answer:
    status: int
    headers: Mapping[str, str]
    text: str
    cookies: dict[str, Morsel[str]]

    @property
    def location(self) -> str:
        return self.headers.get("Location", "")


@dataclass
class Browser:
    """An HTTP client with its own cookie store (see the module docstring)."""

    base: str
    session: aiohttp.ClientSession
    cookies: dict[str, str] = field(default_factory=dict)
    csrf: str = ""

    async def request(self, method: str, path: str, *, data: Any = None,
                      headers: Mapping[str, str] | None = None) -> Answer:
        sent = dict(headers or {})
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        async with self.session.request(method, self.base + path, data=data, headers=sent,
                                        allow_redirects=False, ssl=False) as resp:
            text = await resp.text(errors="replace")
            jar: SimpleCookie = SimpleCookie()
            for line in resp.headers.getall("Set-Cookie", []):
                jar.load(line)
            for name, morsel in jar.items():
                if morsel["max-age"] == "0" or not morsel.value or morsel.value == '""':
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value
            found = _CSRF_META.search(text) or _CSRF_FIELD.search(text)
            if found and found.group(1):
                self.csrf = found.group(1)
            return Answer(resp.status, resp.headers, text, dict(jar.items()))

    async def get(self, path: str, **kwargs: Any) -> Answer:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, data: Any = None, *, token: str | None = None,
                   headers: Mapping[str, str] | None = None) -> Answer:
        """POST with the page's CSRF token as a form field (``token`` overrides it;
        ``token=""`` sends none)."""
        use = self.csrf if token is None else token
        if isinstance(data, dict) and use:
            data = {**data, "csrf_token": use}
        elif data is None and use:
            data = {"csrf_token": use}
        return await self.request("POST", path, data=data, headers=headers)

    async def login(self, name: str, password: str | None = None) -> Answer:
        await self.get("/login")
        return await self.post("/login", {"name": name,
                                          "password": password or PASSWORDS[name]})


@contextlib.asynccontextmanager
async def browser(listener: ConsoleListener) -> AsyncIterator[Browser]:
    assert listener.url is not None
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        yield Browser(listener.url, session)
