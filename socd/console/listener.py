"""The console as one of the daemon's background services: its own HTTP listener.

Built by :func:`socd.app.components.build_services` when ``console.enabled``; started
after the collectors, stopped and rebuilt on reload (sessions live in the users file,
so a reload signs nobody out). The listener starts only once an enabled administrator
exists: until ``socd console create-admin NAME`` has run, the daemon logs how to make
one and serves no console, so a fresh install never exposes a sign-in page nobody can
use nor an open first-user form. It is served by :class:`socd.http.HttpListener`
(header and body timeouts, connection caps), over TLS when ``console.tls`` is set.
Expired sessions are purged every few minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os

import structlog

from socd.config import Config
from socd.console.app import build_app, users_db_path
from socd.console.services import ConsoleServices
from socd.console.users import UserStore
from socd.errors import ListenError
from socd.http import HttpListener

log = structlog.get_logger("socd.console")

_PURGE_SECS = 300.0


class ConsoleListener:
    """Serves the console of ``config`` (see the module docstring)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.cfg = config.document.console
        self.http: HttpListener | None = None
        self.url: str | None = None
        self._users: UserStore | None = None
        self._services: ConsoleServices | None = None
        self._purge: asyncio.Task[None] | None = None

    @classmethod
    def from_config(cls, config: Config) -> ConsoleListener | None:
        """The service, or None when the console is off."""
        return cls(config) if config.document.console.enabled else None

    async def start(self) -> None:
        path = users_db_path(self.cfg, self.config.state_dir)
        users = await asyncio.to_thread(self._admin_store, path)
        if users is None:
            log.warning("console enabled but not served: no administrator yet; create one "
                        "with `socd console create-admin NAME` and reload socd",
                        users_db=path)
            return
        self._users = users
        self._services = ConsoleServices.from_config(self.config)
        try:
            await self._listen()
        except ListenError as exc:
            # The daemon goes on without its console (alerts keep flowing); the log
            # says what to fix, and a reload tries again.
            log.error("console not served", error=str(exc), hint=exc.hint)
            await self.stop()
            return
        except BaseException:
            await self.stop()
            raise
        self._purge = asyncio.create_task(self._purge_loop(), name="console/purge")

    @staticmethod
    def _admin_store(path: str) -> UserStore | None:
        if not os.path.exists(path):
            return None
        users = UserStore(path)
        if users.has_admin():
            return users
        users.close()
        return None

    async def _listen(self) -> None:
        cfg = self.cfg
        assert self._users is not None
        assert self._services is not None
        app = build_app(cfg, self._services, users=self._users)
        ssl_context = cfg.tls.context(self.config.config_dir) if cfg.tls else None
        scheme = "https" if ssl_context else "http"
        self.http = HttpListener(app, name="console", host=cfg.host, port=cfg.port,
                                 limits=cfg.limits, ssl_context=ssl_context)
        try:
            await self.http.start()
        except OSError as exc:
            raise ListenError(f"{scheme}://{cfg.host}:{cfg.port}", exc,
                              key="console.port") from exc
        host = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
        self.url = f"{scheme}://{host}:{self.http.port}"
        log.info("console listening", url=self.url, base_url=cfg.base_url,
                 ldap=cfg.ldap is not None)

    async def _purge_loop(self) -> None:
        session = self.cfg.session
        while True:
            await asyncio.sleep(_PURGE_SECS)
            users = self._users
            if users is None:
                return
            try:
                await asyncio.to_thread(users.purge_sessions,
                                        idle_secs=session.idle_timeout_secs,
                                        absolute_secs=session.absolute_timeout_secs)
            except Exception:  # a locked file: the next round tries again
                log.exception("console session purge failed")

    async def stop(self) -> None:
        if self._purge is not None:
            self._purge.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purge
            self._purge = None
        if self.http is not None:
            await self.http.stop()
            self.http = None
        if self._services is not None:
            await asyncio.to_thread(self._services.close)
            self._services = None
        if self._users is not None:
            self._users.close()
            self._users = None
