"""The console with real stores behind it, for the pages' tests: a socd config with the
embedded alert store (and, when asked, an Elasticsearch sink), the console's app built
as the daemon builds it, local users of each role, a signed-in aiohttp test client."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from aiohttp.test_utils import TestClient, TestServer

from socd import config as config_mod
from socd.alerts.store import AlertStore
from socd.console.app import build_app
from socd.console.passwords import hash_password
from socd.console.roles import Role
from socd.console.services import ConsoleServices, SourceName
from socd.console.users import UserStore

PASSWORD = "Mật-khẩu thử 2026!"  # noqa: S105 (a test user's)
_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)"')
_HASH = hash_password(PASSWORD)


def write_config(tmp: Path, *, es: dict[str, Any] | None = None,
                 extra: dict[str, Any] | None = None) -> Path:
    sinks: dict[str, Any] = {"store": {"type": "sqlite", "select": "alerts",
                                       "path": "alerts.db"},
                             "blocker": {"type": "blocker", "dry_run": True,
                                         "allowlist_cidrs": ["198.51.100.0/24"]}}
    if es:
        sinks["es"] = {"type": "elasticsearch", "select": "alerts", **es}
    cfg: dict[str, Any] = {"state_dir": str(tmp / "state"), "rules": {"paths": []},
                           "sinks": sinks, "allowlist": {"cidrs": ["198.51.100.0/24"]},
                           "console": {"enabled": True, "dev_plain_http": True,
                                       "host": "127.0.0.1", "port": 0}}
    cfg.update(extra or {})
    (tmp / "state").mkdir(parents=True, exist_ok=True)
    path = tmp / "socd.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return path


@dataclass
class Console:
    client: TestClient[Any, Any]
    services: ConsoleServices
    store: AlertStore
    state: Path
    csrf: str = ""

    async def sign_in(self, name: str) -> None:
        r = await self.client.get("/login")
        self.csrf = _csrf(await r.text()) or self.csrf
        r = await self.client.post("/login", data={"name": name, "password": PASSWORD,
                                                   "csrf_token": self.csrf},
                                   allow_redirects=False)
        assert r.status == 303, await r.text()
        r = await self.client.get("/")
        self.csrf = _csrf(await r.text())

    async def page(self, path: str, status: int = 200) -> str:
        r = await self.client.get(path)
        text = await r.text()
        assert r.status == status, f"GET {path}: {r.status} {text[:500]}"
        return text

    async def post(self, path: str, data: Any, *, csrf: bool = True) -> Any:
        fields = list(data.items()) if isinstance(data, dict) else list(data)
        if csrf:
            fields.append(("csrf_token", self.csrf))
        return await self.client.post(path, data=fields, allow_redirects=False,
                                      headers={"X-CSRF-Token": self.csrf} if csrf else {})


def _csrf(text: str) -> str:
    found = _CSRF.search(text)
    return found.group(1) if found else ""


@asynccontextmanager
async def console(tmp: Path, *, source: SourceName = "store",
                  es: dict[str, Any] | None = None) -> AsyncIterator[Console]:
    """The console over the stores of a fresh state directory, with users ``admin``,
    ``analyst`` and ``viewer``."""
    cfg = config_mod.load(str(write_config(tmp, es=es)))
    store = AlertStore(str(tmp / "state" / "alerts.db"))
    users = UserStore(str(tmp / "state" / "console-users.db"))
    for role in Role:
        users.add_user(role.label, role, password_hash=_HASH)
    services = ConsoleServices.from_config(cfg, source)
    app = build_app(cfg.document.console, services, users=users)
    try:
        async with TestClient(TestServer(app)) as client:
            yield Console(client, services, store, tmp / "state")
    finally:
        services.close()
        users.close()
        store.close()
