"""The ``sqlite`` sink: the embedded alert store (:mod:`socd.alerts.store`).

* Alerts are inserted with ``INSERT OR IGNORE`` on ``event.hash``: a retried batch
  never duplicates and never resets the status, assignee or note that ``socd
  alert`` set meanwhile (the CLI and the daemon share the file; WAL mode and a busy
  timeout keep both transactions short and serialized).
* Opening a file of an older schema migrates it in place (see :mod:`socd.alerts.store`).
* Every 60 s the sink refreshes ``socd_alert_false_positives{sink,rule}`` from the
  store: one indexed query, at most :data:`FP_GAUGE_MAX_RULES` rules (those with the
  most false positives), so the series stay bounded. (The gauge is defined in
  :mod:`socd.alerts.lifecycle`: this file is importable as both ``alerting.sqlite`` and
  ``socd.alerting.sqlite``, and a metric must be registered once.)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Literal

import structlog
from pydantic import Field

from socd.alerts.lifecycle import ALERT_FALSE_POSITIVES
from socd.alerts.store import AlertStore
from socd.config import SinkConfig, resolve_path
from socd.errors import HealthCheckError, SinkError
from socd.event import Event
from socd.plugins import PluginContext
from socd.tasks import stop_task

log = structlog.get_logger("socd.alerting.sqlite")

FP_GAUGE_INTERVAL_SECS = 60.0
FP_GAUGE_MAX_RULES = 200


class SqliteSink:
    """Stores alerts in a SQLite file (``<state_dir>/alerts.db`` by default)."""

    class Config(SinkConfig):
        type: Literal["sqlite"]
        path: str = Field("alerts.db", description="Database file, relative to state_dir.")

    def __init__(self, config: Config, ctx: PluginContext) -> None:
        self.name = ctx.name
        self.path = resolve_path(ctx.state_dir, config.path)
        self.store: AlertStore | None = None
        self._gauge_task: asyncio.Task[None] | None = None
        self._gauge_rules: set[str] = set()

    async def start(self) -> None:
        self.store = await asyncio.to_thread(AlertStore, self.path)
        log.info("alert store open", sink=self.name, path=self.path)
        self._gauge_task = asyncio.create_task(self._refresh_gauge_forever(),
                                               name=f"sqlite-fp-gauge-{self.name}")

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

    async def refresh_gauge(self) -> None:
        """Set ``socd_alert_false_positives`` from the store now."""
        store = self.store
        if store is None:
            return
        counts = await asyncio.to_thread(store.false_positives_by_rule, FP_GAUGE_MAX_RULES)
        for rule in self._gauge_rules - counts.keys():
            with contextlib.suppress(KeyError):
                ALERT_FALSE_POSITIVES.remove(self.name, rule)
        for rule, count in counts.items():
            ALERT_FALSE_POSITIVES.labels(self.name, rule).set(count)
        self._gauge_rules = set(counts)

    async def _refresh_gauge_forever(self) -> None:
        while True:
            try:
                await self.refresh_gauge()
            except Exception as exc:  # a locked file clears; the next round retries
                log.warning("false-positive gauge not refreshed", sink=self.name,
                            error=str(exc))
            await asyncio.sleep(FP_GAUGE_INTERVAL_SECS)

    async def close(self) -> None:
        await stop_task(self._gauge_task)
        self._gauge_task = None
        for rule in self._gauge_rules:
            with contextlib.suppress(KeyError):
                ALERT_FALSE_POSITIVES.remove(self.name, rule)
        self._gauge_rules = set()
        if self.store is not None:
            self.store.close()
            self.store = None
