"""The daemon: startup, serve, drain, shutdown; reload on SIGHUP.

Lifecycle (like uvicorn's ``Server``):

1. **startup**: build decoders, classifier and sinks from the config; start
   sinks (an unreachable Elasticsearch is not fatal: its runner retries);
   start the HTTP endpoint, the pipeline, then the collectors; tell systemd
   ``READY=1``.
2. **serve**: until SIGTERM/SIGINT, or until every one-shot collector has
   finished when ``exit_when_done`` is set. SIGHUP reloads.
3. **drain**: stop intake (cancel collectors: unacknowledged MQTT messages stay
   with the broker), push everything queued to the sinks within
   ``pipeline.drain_timeout_secs``; what still cannot be written then is
   dead-lettered, so nothing is lost either way.
4. **shutdown**: close sinks, stop HTTP, ``STOPPING=1``, restore signal handlers.

A second SIGINT/SIGTERM during the drain skips the wait (the drain-timeout
path runs at once, dead-lettering what is left).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import re
import resource
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

import structlog

from socd import __version__, metrics, systemd
from socd import config as config_mod
from socd.app.components import (
    Service,
    build_classifier,
    build_collector,
    build_decoders,
    build_notifications,
    build_services,
    build_sink,
    dead_letter_for,
)
from socd.app.journal import Journal
from socd.app.pipeline import Pipeline, SinkRunner
from socd.config import Config, Plugin
from socd.engine.classify import Classifier
from socd.errors import HealthCheckError, ListenError, SocdError, listen_hint
from socd.http import HttpListener, make_app
from socd.ioc.allowlist import load_allowlist
from socd.plugins import AllowlistAware, Collector, IocAware

if TYPE_CHECKING:
    from socd.app.cluster import ClusterRole
    from socd.notify.core import NotificationCore

log = structlog.get_logger("socd.server")

_HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# Open files socd asks for: every connection of every listener is one (the HTTP
# listeners' caps are 1024 each by default, syslog's 1000 per listener).
OPEN_FILES_WANTED = 65536


def raise_open_files_limit(wanted: int = OPEN_FILES_WANTED) -> int:
    """Raise the soft ``RLIMIT_NOFILE`` towards ``wanted`` (within the hard limit) and
    return it. Outside systemd the soft limit is often 1024, so a few hundred idle
    connections would exhaust descriptors and new clients could not even be accepted;
    the unit sets ``LimitNOFILE`` itself (and its seccomp filter forbids this call)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        log.warning("cannot raise the open files limit", soft=soft, hard=hard,
                    wanted=target, error=str(exc))
        return soft
    return target


def _log_collector_failure(name: str, exc: Exception, delay: float) -> None:
    """One log line for a failed collector. A failure the operator can fix (a port in
    use, a file it may not read: a SocdError or such an OSError) is logged with the
    address or file and the fix; anything else is a bug and keeps its traceback."""
    cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
    expected = isinstance(exc, SocdError) or (
        isinstance(exc, OSError) and exc.errno in _OPERATOR_ERRNOS)
    if not expected:
        log.error("collector failed; restarting", collector=name, retry_in_secs=delay,
                  exc_info=exc)
        return
    hint = getattr(exc, "hint", None)
    if hint is None and isinstance(cause, OSError):
        where = _LISTEN_URL.search(str(exc))
        hint = (listen_hint(where.group(1) if where else "", cause.errno)
                if cause.errno in _BIND_ERRNOS else None)
        if cause.errno in (errno.EACCES, errno.EPERM) and cause.filename:
            hint = f"make {cause.filename} readable by the user socd runs as"
    log.error("collector failed; restarting", collector=name, error=str(exc),
              **({"hint": hint} if hint else {}), retry_in_secs=delay)


_LISTEN_URL = re.compile(r"cannot listen on ([a-z]+://\S+?):\s")
_BIND_ERRNOS = frozenset({errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES})
_OPERATOR_ERRNOS = _BIND_ERRNOS | {errno.EPERM, errno.ENOENT}


class _CollectorTask:
    def __init__(self, plugin: Plugin, collector: Collector, task: asyncio.Task[None]) -> None:
        self.plugin = plugin
        self.collector = collector
        self.task = task
        self.finished = False


class Daemon:
    """One running socd. ``serve()`` returns when the daemon has stopped."""

    def __init__(self, config: Config, *,
                 on_idle: Callable[[Daemon], Awaitable[None] | None] | None = None,
                 role: str | None = None) -> None:
        self.config = config
        # The Kafka role (intake, worker, all) with a cluster: section, else None (one
        # process; the cluster modules, and confluent_kafka, are then never imported).
        self.cluster: ClusterRole | None = None
        if config.document.cluster is not None or role is not None:
            from socd.app.cluster import ClusterRole

            self.cluster = ClusterRole.from_config(config, role)
        self.on_idle = on_idle
        self.dead_letter = dead_letter_for(config)
        self.pipeline: Pipeline | None = None
        self.classifier: Classifier | None = None
        self.http: HttpListener | None = None
        self.collectors: dict[str, _CollectorTask] = {}
        self.sink_plugins: dict[str, Plugin] = {}
        self.runners: dict[str, SinkRunner] = {}
        # The notification core is fed like a sink, but is not one of config.sinks.
        self.notify_core: NotificationCore | None = None
        self.notify_runner: SinkRunner | None = None
        # Background services built from the config (incident reminders, report
        # schedules...): each has async start()/stop() and is rebuilt on reload.
        self.services: list[Service] = []
        self.should_exit = asyncio.Event()
        self.force_exit = False
        self.started_at = time.time()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._previous_handlers: dict[int, Any] = {}
        self._reload_lock = asyncio.Lock()
        self._idle_reported = False
        # Set once the journal is replayed and every collector is started: /readyz
        # answers from before then, when the collector list is still empty.
        self.started = False

    # -- lifecycle ---------------------------------------------------------

    async def serve(self) -> None:
        self._install_signal_handlers()
        try:
            try:
                await self.startup()
            except BaseException:
                await self._abandon_startup()
                raise
            await self.should_exit.wait()
            await self.shutdown()
        finally:
            self._restore_signal_handlers()

    async def _abandon_startup(self) -> None:
        """Start-up failed part way (a port in use): close what was started, so the
        failure the CLI logs is the only line (no "Unclosed client session" after it)."""
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                await self.cluster.stop(5.0)
        if self.pipeline is not None:
            with contextlib.suppress(Exception):
                await self.pipeline.close(5.0)  # nothing was received: returns at once
        sinks = [r.sink for r in self.runners.values()]
        if self.notify_core is not None:
            sinks.append(self.notify_core)
        for sink in sinks:
            with contextlib.suppress(Exception):
                await sink.close()
        await self._stop_services(self.services)
        if self.http is not None:
            with contextlib.suppress(Exception):
                await self.http.stop()
        for task in list(self._tasks):
            task.cancel()
        self.dead_letter.close()

    async def startup(self) -> None:
        cfg = self.config
        systemd.notify("STATUS=starting")
        raise_open_files_limit()
        decoders = build_decoders(cfg, self.dead_letter)
        classifier = build_classifier(cfg)
        self.classifier = classifier
        if self.cluster is not None:
            self.cluster.prepare(classifier)
            await self.cluster.start()
            await self.cluster.intake_runner(self.dead_letter)
        for name, plugin in cfg.sinks.items():
            self.runners[name] = await self._start_sink(plugin)
            self.sink_plugins[name] = plugin
        self.notify_core = build_notifications(cfg, self.dead_letter)
        if self.notify_core is not None:
            await self.notify_core.start()
            self.notify_runner = self._notification_runner(self.notify_core)
            self.notify_runner.mark_up(True)
        if not self.runners:
            log.warning("no sinks configured: every event will be dead-lettered"
                        if self.notify_core is None else
                        "no sinks configured: events are not stored, alerts only notified")
        self.pipeline = Pipeline(decoders, classifier, self._with_notifications(self.runners,
                                                                       self.notify_runner),
                                 self.dead_letter, cfg.document.pipeline.queue_max_batches,
                                 cfg.document.pipeline.max_buffered_bytes,
                                 journal=Journal.from_config(cfg.document.journal, cfg.state_dir)
                                 if cfg.document.journal.enabled and self._takes_input
                                 else None,
                                 warn_alertless_after_secs=cfg.document.pipeline
                                 .warn_alertless_after_secs)
        self.pipeline.start()
        if cfg.document.http.enabled:
            app = make_app(self.readiness, self.pipeline.update_gauges)
            http = cfg.document.http
            self.http = HttpListener(app, name="metrics", host=http.host, port=http.port,
                                     limits=http.limits)
            try:
                await self.http.start()
            except OSError as exc:
                # A port in use is the operator's to fix: say where and how (socd.cli logs
                # it as one line), not a traceback.
                raise ListenError(f"http://{http.host}:{http.port}", exc,
                                  key="http.port") from exc
            log.info("http endpoint listening", url=f"http://{self.http.host}:{self.http.port}",
                     paths=["/metrics", "/healthz", "/readyz"])
        # What a crash left in the journal is processed before any new input.
        await self.pipeline.recover()
        if self.cluster is not None:
            await self.cluster.start_worker(self.pipeline, self.dead_letter)
        for plugin in cfg.collectors.values() if self._takes_input else ():
            self._start_collector(plugin)
        self.started = True
        self.services = self._services(cfg)
        await self._start_services(self.services)
        self._spawn(self._heartbeat(), "heartbeat")
        log.info("socd started", version=__version__, config=cfg.file,
                 collectors=list(cfg.collectors), sinks=list(cfg.sinks),
                 notifiers=list(cfg.notifiers) if self.notify_core is not None else [])
        systemd.notify("READY=1", f"STATUS=running; {len(cfg.collectors)} collectors, "
                       f"{len(cfg.sinks)} sinks")
        if not self.collectors and self._takes_input:
            self._spawn(self._report_idle(), "idle")

    @property
    def _takes_input(self) -> bool:
        """Whether this process runs collectors (not a cluster worker only)."""
        return self.cluster is None or self.cluster.intake

    def _services(self, config: Config) -> list[Service]:
        """The background services (reminders, report schedules...): in one process, or
        in a cluster's intakes only: every worker running them would send each reminder
        and report once per worker."""
        return build_services(config, self.dead_letter) if self._takes_input else []

    async def shutdown(self) -> None:
        assert self.pipeline is not None
        systemd.notify("STOPPING=1", "STATUS=draining")
        log.info("stopping intake")
        await self._stop_collectors(list(self.collectors))
        timeout = 0.0 if self.force_exit else self.config.document.pipeline.drain_timeout_secs
        if self.cluster is not None:
            await self.cluster.stop(timeout)
        log.info("draining to sinks", timeout_secs=timeout,
                 queued_events=self.pipeline.intake_events
                 + sum(r.queued_events for r in self.runners.values()))
        lost = await self.pipeline.close(timeout)
        for task in list(self._tasks):
            task.cancel()
        extra = [self.cluster.runner] if self.cluster and self.cluster.runner else []
        for name, runner in [*self.runners.items(), *((r.name, r) for r in extra)]:
            try:
                await runner.sink.close()
            except Exception:
                log.exception("sink close failed", sink=name)
        if self.notify_runner is not None:
            # Pending groups and unsent messages stay in the queue file for the next start.
            try:
                await self.notify_runner.sink.close()
            except Exception:
                log.exception("notification core close failed")
        await self._stop_services(self.services)
        if self.http is not None:
            await self.http.stop()
        self.dead_letter.close()
        log.info("socd stopped", events=self.pipeline.events_processed, dead_lettered_at_exit=lost)

    def request_exit(self) -> None:
        if self.should_exit.is_set():
            self.force_exit = True
            if self.pipeline is not None:
                # Second signal: give up waiting for sinks; what is queued is dead-lettered.
                self.pipeline.abort()
        self.should_exit.set()

    # -- components ----------------------------------------------------------

    async def _start_sink(self, plugin: Plugin) -> SinkRunner:
        sink = build_sink(self.config, plugin, self.dead_letter)
        if isinstance(sink, AllowlistAware):
            # The blocker must honour the top-level allowlist of own infrastructure.
            sink.use_allowlist(load_allowlist(self.config))
        await sink.start()
        runner = SinkRunner(plugin.name, sink, plugin.config, self.dead_letter,
                            state_dir=self.config.state_dir)
        try:
            await sink.healthcheck()
            runner.mark_up(True)
        except HealthCheckError as exc:
            log.warning("sink health check failed at start; writes will retry", sink=plugin.name,
                        error=str(exc))
        return runner

    def _notification_runner(self, core: NotificationCore) -> SinkRunner:
        from socd.notify.core import RUNNER_NAME, runner_config

        return SinkRunner(RUNNER_NAME, core, runner_config(), self.dead_letter,
                          state_dir=self.config.state_dir)

    def _with_notifications(self, runners: dict[str, SinkRunner],
                            notify_runner: SinkRunner | None) -> list[SinkRunner]:
        """The runners the pipeline feeds: the sinks, the intake's Kafka publisher (in a
        cluster), then the notification core."""
        extra = [self.cluster.runner] if self.cluster and self.cluster.runner else []
        return [*runners.values(), *extra,
                *([notify_runner] if notify_runner is not None else [])]

    def _next_notify_runner(self, changed: bool, core: NotificationCore | None
                            ) -> SinkRunner | None:
        if not changed:
            return self.notify_runner
        return self._notification_runner(core) if core is not None else None

    async def _switch_notifications(self, new: Config, changed: bool,
                                    core: NotificationCore | None,
                                    runner: SinkRunner | None) -> None:
        """After a reload retired the old core (closed, its last batch written): start
        the new one on the same queue file, so nothing pending is lost. Unchanged: only
        re-read the operator's templates."""
        if not changed:
            if self.notify_core is not None and new.document.notifications.templates_dir:
                self.notify_core.reload_templates()
            return
        self.notify_core, self.notify_runner = core, runner
        if core is None or runner is None:
            return
        try:
            await core.start()
            runner.mark_up(True)
        except Exception as exc:  # its writes retry opening the queue
            log.error("notification core failed to start", error=str(exc))

    def _notifications_changed(self, new: Config) -> bool:
        old = self.config
        if (new.document.notifications != old.document.notifications
                or new.state_dir != old.state_dir or set(new.notifiers) != set(old.notifiers)):
            return True
        return any(not p.same_as(old.notifiers.get(n)) for n, p in new.notifiers.items())

    def _start_collector(self, plugin: Plugin) -> None:
        collector = build_collector(self.config, plugin, self.dead_letter)
        self._share_iocs(collector)
        task = asyncio.create_task(self._supervise(plugin.name, collector),
                                   name=f"collector/{plugin.name}")
        self.collectors[plugin.name] = _CollectorTask(plugin, collector, task)

    def _share_iocs(self, collector: Collector) -> None:
        """Give collectors with an IoC hook (:class:`~socd.plugins.IocAware`: the network
        sensor) the daemon's IoC store; one with lists of its own keeps them."""
        if isinstance(collector, IocAware) and self.classifier is not None:
            collector.use_ioc_lookup(self.classifier.iocs.match_ip)

    async def _supervise(self, name: str, collector: Collector) -> None:
        """Run a collector; restart it with backoff if it fails."""
        assert self.pipeline is not None
        delay = 1.0
        while True:
            try:
                await collector.run(self.pipeline.submit)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                metrics.ERRORS.labels(f"collector/{name}", type(exc).__name__).inc()
                metrics.COMPONENT_UP.labels("collector", name).set(0)
                _log_collector_failure(name, exc, delay)
                await asyncio.sleep(delay)
                delay = min(60.0, delay * 2)
                continue
            break
        entry = self.collectors.get(name)
        if entry is not None:
            entry.finished = True
        log.info("collector finished", collector=name)
        if all(c.finished for c in self.collectors.values()):
            self._spawn(self._report_idle(), "idle")

    async def _stop_collectors(self, names: list[str]) -> None:
        entries = [self.collectors.pop(n) for n in names if n in self.collectors]
        for entry in entries:
            entry.task.cancel()
        for entry in entries:
            with contextlib.suppress(asyncio.CancelledError):
                await entry.task
            metrics.COMPONENT_UP.labels("collector", entry.plugin.name).set(0)

    async def _report_idle(self) -> None:
        """Every collector is one-shot and done: wait until all is stored, then report."""
        if self._idle_reported or self.pipeline is None:
            return
        await self.pipeline.barrier()
        self._idle_reported = True
        log.info("all input processed", events=self.pipeline.events_processed)
        if self.on_idle is not None:
            result = self.on_idle(self)
            if result is not None:
                await result
        if self.config.document.exit_when_done:
            self.should_exit.set()

    def _restart_collectors(self, new: Config, changed: list[str]) -> None:
        """After a reload: share the new IoC index, start new and changed collectors,
        forget the series of removed ones."""
        for entry in self.collectors.values():
            self._share_iocs(entry.collector)
        for name, plugin in new.collectors.items():
            if name not in self.collectors:
                self._start_collector(plugin)
        for name in changed:
            if name not in new.collectors:
                # Removed for good: drop its "up" series so no alert keeps firing.
                with contextlib.suppress(KeyError):
                    metrics.COMPONENT_UP.remove("collector", name)

    async def _start_services(self, services: list[Service]) -> None:
        for service in services:
            try:
                await service.start()
            except Exception:  # a background service must not stop the daemon
                log.exception("background service failed to start",
                              service=type(service).__name__)

    async def _stop_services(self, services: list[Service]) -> None:
        for service in services:
            try:
                await service.stop()
            except Exception:
                log.exception("background service failed to stop",
                              service=type(service).__name__)

    # -- reload --------------------------------------------------------------

    def _reloaded_classifier(self, new: Config) -> Classifier:
        """The classifier of a reloaded config; in a cluster it keeps the running rule
        split (intake and workers must agree on the topics: a rule change needs a
        rolling restart of both, docs/scaling.md)."""
        classifier = build_classifier(new)
        if self.cluster is not None:
            self.cluster.adapt(classifier)
        return classifier

    async def reload(self) -> bool:
        """Reload config and rules atomically; a bad config keeps the old one."""
        async with self._reload_lock:
            try:
                new = config_mod.load(self.config.file)
                new.require_env()
                decoders = build_decoders(new, self.dead_letter)
                classifier = self._reloaded_classifier(new)
                if self.classifier is not None:
                    classifier.carry_state_from(self.classifier)
                notify_changed = self._notifications_changed(new)
                # Built, not started: the new core opens the queue file only once the
                # old one has written its last batch and closed.
                new_core = build_notifications(new, self.dead_letter) if notify_changed else None
                new_services = self._services(new)
            except Exception as exc:  # whatever goes wrong, the running config stays
                metrics.reloaded("failure")
                log.error("reload rejected; the running configuration stays in force",
                          config=self.config.file, error=str(exc))
                systemd.notify("STATUS=running; last reload rejected (see log)")
                return False
            assert self.pipeline is not None
            runners = dict(self.runners)
            started: list[str] = []
            try:
                for name, plugin in new.sinks.items():
                    if not plugin.same_as(self.sink_plugins.get(name)):
                        runners[name] = await self._start_sink(plugin)
                        started.append(name)
                for name in list(runners):
                    if name not in new.sinks:
                        del runners[name]
            except Exception as exc:
                metrics.reloaded("failure")
                log.error("reload rejected: a sink failed to start", error=str(exc))
                for name in started:  # the new sinks never saw an event: just close them
                    with contextlib.suppress(Exception):
                        await runners[name].sink.close()
                return False
            notify_runner = self._next_notify_runner(notify_changed, new_core)
            retired = await self.pipeline.replace(
                decoders=decoders, processor=classifier,
                runners=self._with_notifications(runners, notify_runner))
            for runner in retired:
                await runner.wait()
                await runner.sink.close()
            await self._switch_notifications(new, notify_changed, new_core, notify_runner)
            changed = [n for n, c in self.collectors.items()
                       if not c.plugin.same_as(new.collectors.get(n))]
            await self._stop_collectors(changed)
            await self._stop_services(self.services)
            self.services = new_services
            await self._start_services(self.services)
            self.config = new
            self.classifier = classifier
            self._restart_collectors(new, changed)
            self.runners = runners
            self.sink_plugins = dict(new.sinks)
            metrics.reloaded("success")
            log.info("configuration reloaded", restarted_collectors=changed,
                     restarted_sinks=started, retired_sinks=[r.name for r in retired],
                     restarted_notifications=notify_changed)
            for warning in new.warnings:  # as at start: a collector without decoder...
                log.warning("configuration warning", problem=str(warning))
            systemd.notify("STATUS=running; configuration reloaded")
            return True

    # -- health ----------------------------------------------------------------

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready: start-up is done (the journal replayed) and every configured collector
        is up (listening, subscribed...) or finished, every sink up. A collector of the
        configuration that has no task yet counts as not ready."""
        collectors = {n: self._collector_ready(n) for n in self.config.collectors
                      if self._takes_input}
        sinks = {n: r.up for n, r in self.runners.items()}
        if self.cluster is not None and self.cluster.runner is not None:
            sinks[self.cluster.runner.name] = self.cluster.runner.up
        if self.notify_runner is not None:
            sinks[self.notify_runner.name] = self.notify_runner.up
        ready = (self.started and self.pipeline is not None and not self.should_exit.is_set()
                 and all(collectors.values()) and all(sinks.values()))
        detail: dict[str, Any] = {"collectors": collectors, "sinks": sinks}
        if self.cluster is not None:
            detail["cluster"] = self.cluster.status()
        if not self.started:
            detail["starting"] = True
        journal = self.pipeline.journal_status() if self.pipeline is not None else None
        if journal is not None:
            # Depth and age of what sources were told is received but sinks lack;
            # a journal that cannot write stops intake, so socd is not ready then.
            detail["journal"] = journal
            ready = ready and "failing" not in journal
        return ready, detail

    def _collector_ready(self, name: str) -> bool:
        entry = self.collectors.get(name)
        return entry is not None and (entry.finished or entry.collector.ready)

    async def _heartbeat(self) -> None:
        interval = systemd.watchdog_interval()
        period = min(interval, 10.0) if interval else 10.0
        while True:
            await asyncio.sleep(period)
            if interval:
                systemd.notify("WATCHDOG=1")
            if self.pipeline is not None:
                self.pipeline.update_gauges()
                systemd.notify(f"STATUS=running; {self.pipeline.events_processed} events "
                               f"processed")

    # -- signals ---------------------------------------------------------------

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in _HANDLED:
            self._previous_handlers[sig] = signal.getsignal(sig)
            loop.add_signal_handler(sig, self._on_signal, sig)

    def _restore_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig, handler in self._previous_handlers.items():
            loop.remove_signal_handler(sig)
            signal.signal(sig, handler)
        self._previous_handlers.clear()

    def _on_signal(self, sig: int) -> None:
        if sig == signal.SIGHUP:
            log.info("SIGHUP received: reloading configuration")
            self._spawn(self.reload(), "reload")
            return
        log.info("signal received: shutting down", signal=signal.Signals(sig).name)
        self.request_exit()

    def _spawn(self, coro: Coroutine[Any, Any, object], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
