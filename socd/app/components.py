"""Turns a loaded :class:`~socd.config.Config` into live plugin objects.

This is the daemon's wiring: the one module that knows how every part is built.
Nothing below it imports it; feature services get what they need injected (the
:data:`~socd.plugins.NotifierFactory` of :func:`notifier_factory`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from socd.access import read_problem
from socd.app.deadletter import DeadLetter
from socd.config import Config, Plugin
from socd.engine import build_engine
from socd.engine.classify import Classifier
from socd.engine.enrich import build_enricher
from socd.errors import ConfigError, ConfigProblem, PluginError
from socd.ioc.allowlist import load_allowlist
from socd.log import get_logger
from socd.metrics import init_decoder
from socd.plugins import (
    Collector,
    Decoder,
    Notifier,
    NotifierFactory,
    PluginContext,
    Sink,
    ZoneAware,
)
from socd.zones import collector_zones

if TYPE_CHECKING:
    import asyncio

    from socd.notify.core import NotificationCore

log = get_logger("socd.components")


def dead_letter_for(config: Config) -> DeadLetter:
    dl = config.document.dead_letter
    return DeadLetter(os.path.join(config.state_dir, dl.path), max_file_bytes=dl.max_file_bytes,
                      max_files=dl.max_files)


def context(config: Config, name: str, dead_letter: DeadLetter) -> PluginContext:
    return PluginContext(name=name, dead_letter=dead_letter, config_dir=config.config_dir,
                         state_dir=config.state_dir)


def instantiate(config: Config, plugin: Plugin, dead_letter: DeadLetter) -> object:
    """Build a plugin of any kind; a plugin whose section needs an unset ``${VAR}`` is a
    :class:`ConfigError` naming it (config.Plugin.unresolved). The typed builders below
    also check that it plays its role."""
    plugin.require_env()
    built: object = plugin.cls(plugin.config, context(config, plugin.name, dead_letter))
    return built


def _not_a(plugin: Plugin, role: str) -> PluginError:
    return PluginError(f"{plugin.name} ({type(plugin.config).__name__}) does not implement "
                       f"the {role} protocol of socd.plugins")


def build_collector(config: Config, plugin: Plugin, dead_letter: DeadLetter) -> Collector:
    collector = instantiate(config, plugin, dead_letter)
    if not isinstance(collector, Collector):
        raise _not_a(plugin, "Collector")
    return collector


def build_decoder(config: Config, plugin: Plugin, dead_letter: DeadLetter) -> Decoder:
    decoder = instantiate(config, plugin, dead_letter)
    if not isinstance(decoder, Decoder):
        raise _not_a(plugin, "Decoder")
    return decoder


def build_sink(config: Config, plugin: Plugin, dead_letter: DeadLetter) -> Sink:
    sink = instantiate(config, plugin, dead_letter)
    if not isinstance(sink, Sink):
        raise _not_a(plugin, "Sink")
    return sink


def build_notifier(config: Config, plugin: Plugin, dead_letter: DeadLetter) -> Notifier:
    notifier = instantiate(config, plugin, dead_letter)
    if not isinstance(notifier, Notifier):
        raise _not_a(plugin, "Notifier")
    return notifier


def notifier_factory(config: Config, dead_letter: DeadLetter) -> NotifierFactory:
    """Builds the notifiers of ``config`` by name, for the services that own notifier
    instances of their own (incident reminders, report schedules)."""
    def build(name: str) -> Notifier:
        return build_notifier(config, config.notifiers[name], dead_letter)
    return build


def build_decoders(config: Config, dead_letter: DeadLetter) -> dict[str, Decoder]:
    """All configured decoders (mapping files are read and checked here)."""
    decoders: dict[str, Decoder] = {}
    problems: list[ConfigProblem] = []
    for name, plugin in config.decoders.items():
        try:
            decoders[name] = decoder = build_decoder(config, plugin, dead_letter)
        except ConfigError as exc:
            problems.extend(exc.problems)
        else:
            if isinstance(decoder, ZoneAware):
                decoder.assume_zones(collector_zones(config.collectors, name))
        init_decoder(name)
    if problems:
        raise ConfigError(problems)
    return decoders


def build_classifier(config: Config) -> Classifier:
    """The classification step, with its IoC lists and asset inventory loaded."""
    cls_cfg = config.document.classification
    paths = [config.resolve(p) for p in cls_cfg.ioc_files]
    problems: list[ConfigProblem] = []
    for i, path in enumerate(paths):
        unreadable = read_problem(path)  # missing, or there but not readable: which one
        if unreadable is not None:
            problems.append(ConfigProblem(config.file, f"classification.ioc_files[{i}]",
                                          unreadable.message, unreadable.hint))
    enricher = None
    try:
        enricher = build_enricher(config)
    except ConfigError as exc:
        problems.extend(exc.problems)
    allowlist = None
    try:
        allowlist = load_allowlist(config)
    except (OSError, ValueError) as exc:
        problems.append(ConfigProblem(config.file, "allowlist.files", str(exc)))
    if problems:
        raise ConfigError(problems)
    ioc_cfg = config.document.ioc
    db_path = os.path.join(config.state_dir, ioc_cfg.db_path) if ioc_cfg.enabled else None
    classifier = Classifier.from_files(
        cls_cfg, paths, enricher=enricher, db_path=db_path, allowlist=allowlist,
        min_confidence=ioc_cfg.min_confidence, refresh_secs=ioc_cfg.refresh_interval_secs)
    classifier.rules = build_engine(config, ioc_lookup=classifier.ioc_lookup)
    return classifier


def build_notifications(config: Config, dead_letter: DeadLetter) -> NotificationCore | None:
    """The notification core with its notifiers, or None when no notifier or no route
    is configured. Nothing is opened or sent here: ``start()`` does that."""
    ncfg = config.document.notifications
    if not config.notifiers or not ncfg.routes:
        return None
    from socd.notify.core import NotificationCore, queue_path

    templates_dir = config.resolve(ncfg.templates_dir) if ncfg.templates_dir else None
    if templates_dir is not None and not os.path.isdir(templates_dir):
        raise ConfigError([ConfigProblem(config.file, "notifications.templates_dir",
                                         f"no such folder: {templates_dir}")])
    notifiers = {name: build_notifier(config, plugin, dead_letter)
                 for name, plugin in config.notifiers.items()}
    return NotificationCore(ncfg, notifiers,
                            {name: plugin.config for name, plugin in config.notifiers.items()},
                            path=queue_path(config.state_dir, ncfg), dead_letter=dead_letter,
                            templates_dir=templates_dir,
                            console_url=config.document.console.base_url)


class Service(Protocol):
    """A background service of the daemon (incident reminders, report schedules...):
    built from the config, started after the collectors, stopped and rebuilt on reload.
    ``start`` returns once the service runs (in its own task); ``stop`` is idempotent."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class Periodic:
    """A background service that runs a blocking function in a thread every
    ``interval`` seconds (first run at start); it logs errors and goes on."""

    def __init__(self, name: str, fn: Callable[[], object], interval: float) -> None:
        self.name = name
        self.fn = fn
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # asyncio imported here: only the daemon runs services, and replay and
        # check-config start faster without it (issue 17).
        import asyncio

        self._task = asyncio.create_task(self._loop(), name=self.name)

    async def _loop(self) -> None:
        import asyncio

        while True:
            try:
                await asyncio.to_thread(self.fn)
            except Exception:
                log.exception("periodic task failed", task=self.name)
            await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        if self._task is not None:
            import asyncio

            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


def build_services(config: Config, dead_letter: DeadLetter) -> list[Service]:
    """The daemon's background services for ``config`` (built, not started)."""
    # Imported here: only the daemon runs them (check-config, replay do not load them).
    from socd.console.listener import ConsoleListener
    from socd.incidents.reminders import ReminderService
    from socd.reports.schedule import ReportScheduler
    from socd.sharing.records import refresh_metrics

    notifiers = notifier_factory(config, dead_letter)
    services: list[Service] = [
        ReminderService.from_config(config, notifiers),
        # /metrics shows the last layer-4 exchange even when `socd share push` ran it.
        Periodic("sharing-metrics", lambda: refresh_metrics(config), 60.0),
    ]
    reports = ReportScheduler.from_config(config, notifiers)  # None unless reports.enabled
    if reports is not None:
        services.append(reports)
    console = ConsoleListener.from_config(config)  # None unless console.enabled
    if console is not None:
        services.append(console)
    return services
