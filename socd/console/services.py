"""What the console's pages read and change, found from the socd configuration.

The console works on the daemon's own files and services, as the CLI does, through
their owners' APIs (never SQL on their tables):

* alerts: the embedded store (``sqlite`` sink) is the record of the lifecycle; the
  queue reads it or Elasticsearch (``console.alert_source``: ``store``,
  ``elasticsearch``, ``auto`` = the store when there is one, or a sink's name; the
  loader refused a name of nothing), :mod:`socd.console.data`;
* incidents: ``incidents.db`` (:class:`socd.incidents.store.IncidentStore`), changes
  audited to ``audit.db`` beside the alert store (the chain alerts and incidents share);
* IoC lists: the IoC store and the allowlist (:mod:`socd.ioc`);
* blocks: the ``blocker`` sink's decisions (:mod:`socd.block.decisions`), decided with
  the same policy and guard (allowlist, own addresses) as ``socd block add``;
* reports and health: the config and the state directory.

Stores are opened when first used and kept open (their connections are thread-safe;
the pages call them through ``asyncio.to_thread``); :meth:`ConsoleServices.close`
closes them. A store whose file does not exist yet is "nothing yet", not an error.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from socd.config import Config, resolve_path

if TYPE_CHECKING:
    from socd.alerts.store import AlertStore
    from socd.block.decisions import BlockStore
    from socd.console.data import AlertSource
    from socd.incidents.store import IncidentStore
    from socd.ioc.store import IocStore

SourceName = Literal["auto", "store", "elasticsearch"]


class NotConfigured(Exception):
    """The page's subsystem is not set up in this configuration; the message says how."""


def _sinks(cfg: Config, kind: str) -> dict[str, Any]:
    return {name: plugin.config for name, plugin in cfg.sinks.items()
            if getattr(plugin.config, "type", None) == kind}


@dataclass
class ConsoleServices:
    """The data the pages use, found from ``config`` (see the module docstring)."""

    config: Config
    alert_source: str = "auto"  # a SourceName or a sink's name
    _open: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_config(cls, config: Config, alert_source: str | None = None
                    ) -> ConsoleServices:
        """``alert_source`` overrides ``console.alert_source`` (tests read both sources
        of one config)."""
        return cls(config, alert_source or config.document.console.alert_source)

    def _named(self, kind: str) -> tuple[str, Any] | None:
        """The ``kind`` sink ``alert_source`` names, else the first one, else ``None``."""
        sinks = _sinks(self.config, kind)
        if self.alert_source in sinks:
            return self.alert_source, sinks[self.alert_source]
        return next(iter(sinks.items()), None)

    # -- where things are -------------------------------------------------------------

    @property
    def state_dir(self) -> str:
        return self.config.state_dir

    @property
    def alert_store_path(self) -> str | None:
        """The ``sqlite`` sink's file (the record of the alert lifecycle): the one
        ``alert_source`` names, else the first."""
        named = self._named("sqlite")
        return None if named is None else resolve_path(self.state_dir, named[1].path)

    @property
    def es_sinks(self) -> list[tuple[str, Any]]:
        """``(name, config)`` of the ``elasticsearch`` sinks, in the config's order."""
        return list(_sinks(self.config, "elasticsearch").items())

    @property
    def audit_path(self) -> str:
        """``audit.db`` beside the alert store, where alert changes are chained."""
        from socd.alerts.audit import DB_NAME

        store = self.alert_store_path
        folder = os.path.dirname(store) if store else self.state_dir
        return os.path.join(folder, DB_NAME)

    @property
    def incidents_path(self) -> str:
        return resolve_path(self.state_dir, self.config.document.incidents.db_path)

    @property
    def ioc_path(self) -> str:
        return resolve_path(self.state_dir, self.config.document.ioc.db_path)

    @property
    def blocker(self) -> Any | None:
        """The first ``blocker`` sink's config, or ``None``."""
        return next(iter(_sinks(self.config, "blocker").values()), None)

    # -- opened stores ----------------------------------------------------------------

    def _opened(self, key: str, make: Any) -> Any:
        with self._lock:
            if key not in self._open:
                self._open[key] = make()
            return self._open[key]

    def alert_store(self) -> AlertStore:
        """The alert store; :class:`NotConfigured` without a ``sqlite`` sink or before the
        daemon stored its first alert."""
        from socd.alerts.store import AlertStore

        path = self.alert_store_path
        if path is None:
            raise NotConfigured("no `sqlite` sink: the console works on the embedded alert "
                                "store (docs/alerts.md)")
        if not os.path.exists(path):
            raise NotConfigured(f"the alert store {path} does not exist yet (the daemon "
                                "creates it when it stores the first alert)")
        store: AlertStore = self._opened("alerts", lambda: AlertStore(path))
        return store

    def reads_elasticsearch(self) -> bool:
        """Whether the queue reads Elasticsearch (else the store): see ``alert_source``."""
        wanted = self.alert_source
        if wanted == "auto":
            return not self.alert_store_path
        return wanted == "elasticsearch" or wanted in _sinks(self.config, "elasticsearch")

    def alerts(self) -> AlertSource:
        """The source the queue reads (see ``alert_source``)."""
        from socd.console.data import StoreAlertSource

        if self.reads_elasticsearch():
            named = self._named("elasticsearch")
            if named is None:
                raise NotConfigured("no `elasticsearch` sink to read alerts from")
            from socd.console.data_es import ElasticsearchAlertSource

            config = named[1]
            source: AlertSource = self._opened("es", lambda: ElasticsearchAlertSource(config))
            return source
        return StoreAlertSource(self.alert_store())

    def incidents(self) -> IncidentStore:
        from socd.incidents.store import IncidentStore

        store: IncidentStore = self._opened(
            "incidents", lambda: IncidentStore(self.incidents_path, self.audit_path))
        return store

    def iocs(self) -> IocStore:
        """The IoC store with the configured allowlist (its entries not loaded: the
        console reads and imports, the daemon matches)."""
        from socd.ioc.allowlist import load_allowlist
        from socd.ioc.store import IocStore

        def make() -> IocStore:
            return IocStore(self.ioc_path, allowlist=load_allowlist(self.config),
                            min_confidence=self.config.document.ioc.min_confidence,
                            create=True, load=False)

        store: IocStore = self._opened("ioc", make)
        return store

    def blocks(self) -> BlockStore:
        from socd.block.decisions import BlockStore

        cfg = self.blocker
        if cfg is None:
            raise NotConfigured("no `blocker` sink: blocking is not set up (docs/blocking.md)")
        path = resolve_path(self.state_dir, cfg.path)
        store: BlockStore = self._opened("blocks", lambda: BlockStore(path))
        return store

    def close(self) -> None:
        with self._lock:
            opened, self._open = self._open, {}
        for store in opened.values():
            store.close()
