"""The ``sqlite`` sink: the embedded alert store."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Literal

import structlog
from pydantic import Field

from socd.config import SinkConfig, resolve_path
from socd.errors import HealthCheckError, SinkError
from socd.event import Event
from socd.plugins import PluginContext
from socd.store import AlertStore

log = structlog.get_logger("socd.alerting.sqlite")


class SqliteSink:
    """Stores alerts in a SQLite file (``<state_dir>/alerts.db`` by default)."""

    class Config(SinkConfig):
        type: Literal["sqlite"]
        path: str = Field("alerts.db", description="Database file, relative to state_dir.")

    def __init__(self, config: Config, ctx: PluginContext) -> None:
        self.name = ctx.name
        self.path = resolve_path(ctx.state_dir, config.path)
        self.store: AlertStore | None = None

    async def start(self) -> None:
        self.store = await asyncio.to_thread(AlertStore, self.path)
        log.info("alert store open", sink=self.name, path=self.path)

    async def healthcheck(self) -> None:
        store = self.store
        try:
            if store is None:
                store = await asyncio.to_thread(AlertStore, self.path)
            await asyncio.to_thread(store.count)
        except Exception as exc:
            raise HealthCheckError(f"sqlite store {self.path}: {exc}") from exc
        finally:
            if store is not None and store is not self.store:
                await asyncio.to_thread(store.close)

    async def write(self, events: Sequence[Event]) -> None:
        if self.store is None:
            raise SinkError("store not open")
        try:
            await asyncio.to_thread(self.store.insert, events)
        except Exception as exc:
            # A locked or full disk may clear; the runner retries with backoff.
            raise SinkError(f"sqlite insert failed: {exc}") from exc

    async def close(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None
