"""``socd run`` (the daemon), ``socd check-config`` and ``socd replay`` (files decoded
and classified offline)."""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from socd import config as config_mod
from socd.cli import identity
from socd.cli.common import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    EXIT_OK,
    Subparsers,
    WithConfig,
    fail,
    json_line,
    no_collection,
    permission_message,
)
from socd.config import install
from socd.errors import ConfigError, ConfigProblem, HealthCheckError, SocdError

if TYPE_CHECKING:
    from socd.config import Config


def register(sub: Subparsers, with_config: WithConfig) -> None:
    run = sub.add_parser("run", help="run the daemon")
    with_config(run)
    run.add_argument("--role", choices=("intake", "worker", "all"),
                     help="with a cluster: section, this process's part (overrides "
                     "cluster.role): intake (collectors, stateless rules, publish to Kafka), "
                     "worker (stateful rules per partition) or all (docs/scaling.md)")
    run.set_defaults(handler=_daemon)

    check = sub.add_parser("check-config", help="validate a config file")
    with_config(check)
    check.add_argument("--connect", action="store_true",
                       help="also run every sink's health check (needs the services)")
    check.set_defaults(handler=_check)

    replay = sub.add_parser("replay", help="decode and classify files offline; NDJSON to stdout")
    with_config(replay)
    replay.add_argument("--format", "-f", required=True,
                        help="decoder name: a built-in one (json, server_edr, "
                        "workstation_edr, syslog, cef, suricata, wazuh, winlogbeat) or one "
                        "declared in the config")
    replay.add_argument("--alerts-only", action="store_true", help="write only alerts")
    replay.add_argument("--stats", action="store_true",
                        help="print counts and speed as JSON to stderr at the end")
    replay.add_argument("files", nargs="+", metavar="FILE", help="input files ('-' = stdin)")
    replay.set_defaults(handler=_replay)


def _daemon(args: argparse.Namespace) -> int:
    """The daemon. Whatever stops it from starting (a configuration problem, a port in
    use, a file it may not read) is one log line naming the key, address or file and
    the fix: JSON in the journal like every other line, never a traceback."""
    import structlog

    from socd import log
    from socd.app.server import Daemon

    log.setup("info", "auto")  # until the config's own settings are known
    logger = structlog.get_logger("socd")
    try:
        cfg = config_mod.load(args.config)
        cfg.require_env()
    except ConfigError as exc:
        _log_config_error(logger, exc)
        return EXIT_CONFIG
    log.setup(cfg.document.log.level, cfg.document.log.format)
    note = getattr(args, "config_note", None)
    if note:
        logger.warning(note, config=cfg.file)
    for warning in cfg.warnings:
        structlog.get_logger("socd.config").warning("configuration warning",
                                                    problem=str(warning))
    try:
        import asyncio  # here: replay and check-config start faster without it

        daemon = Daemon(cfg, on_idle=_print_summary, role=getattr(args, "role", None))
        asyncio.run(daemon.serve())
    except ConfigError as exc:  # a file the config names, found missing or unreadable
        _log_config_error(logger, exc)
        return EXIT_CONFIG
    except (SocdError, PermissionError) as exc:
        hint = getattr(exc, "hint", None)
        if isinstance(exc, PermissionError):
            exc, hint = SocdError(permission_message(exc)), None
        logger.error("cannot start", error=str(exc), **({"hint": hint} if hint else {}))
        return EXIT_FAILURE
    return EXIT_OK


def _log_config_error(logger: Any, exc: ConfigError) -> None:
    """One log line per problem, with its file, line, key and hint as fields."""
    for problem in exc.problems:
        fields = {"file": problem.file, "line": problem.line, "key": problem.path or None,
                  "hint": problem.hint}
        logger.error("configuration is invalid", problem=problem.message,
                     **{k: v for k, v in fields.items() if v is not None})


def _print_summary(daemon: Any) -> None:
    """After a one-shot replay: the alerts in the embedded store, by severity and kind."""
    from socd.alerting.sqlite import SqliteSink
    from socd.app import summary

    for name, runner in daemon.runners.items():
        sink = runner.sink
        if isinstance(sink, SqliteSink) and sink.store is not None:
            counts = sink.store.severity_by_asset()
            title = (f"Cảnh báo theo mức độ và loại tài sản — kho {name} ({sink.path}), "
                     f"{sum(counts.values()):,} cảnh báo".replace(",", "."))
            print(summary.render(counts, title=title), flush=True)
    http = daemon.http
    if http is not None and not daemon.config.document.exit_when_done:
        print(f"\nMetrics: http://{http.host}:{http.port}/metrics — press Ctrl+C to stop.",
              flush=True)


def _check(args: argparse.Namespace) -> int:
    with no_collection():  # a one-shot command that builds everything once
        return _check_config(args)


def _check_config(args: argparse.Namespace) -> int:
    from socd.app.components import build_classifier, build_decoders, dead_letter_for, instantiate

    cfg = config_mod.load(args.config)
    cfg.require_env()  # every ${VAR}, as `socd run` needs them
    # The second pass (files the config names) all at once, before the builds below,
    # each of which would stop at its first missing file.
    state = [*config_mod.reference_problems(cfg), *_state_problems(cfg)]
    if state:
        raise ConfigError(state)
    reports = cfg.document.reports
    if reports.enabled and "pdf" in reports.formats:
        # Only then can check_formats refuse; the report renderer takes ~70 ms to
        # import, a fifth of the check's start-up otherwise (issue 17).
        from socd.reports.render import check_formats

        check_formats(cfg)  # `pdf` in reports.formats needs WeasyPrint and its libraries
    dead_letter = dead_letter_for(cfg)
    build_decoders(cfg, dead_letter)
    build_classifier(cfg)
    if cfg.document.cluster is not None:  # the Kafka client keys (socd.kafka's model)
        from socd.app.cluster_kafka import client_config

        client_config(cfg, cfg.document.cluster)
    sinks = [instantiate(cfg, plugin, dead_letter) for plugin in cfg.sinks.values()]
    collectors = [instantiate(cfg, plugin, dead_letter) for plugin in cfg.collectors.values()]
    from socd.app.components import build_notifications

    # Templates are local files: a broken one is a configuration error, found offline.
    core = build_notifications(cfg, dead_letter)
    template_problems = core.renderer.problems() if core is not None else []
    if template_problems:
        for problem in template_problems:
            print(f"socd: {cfg.file}: notifications: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    if args.connect:
        notifiers = list(core.notifiers.values()) if core is not None else []
        import asyncio  # here: replay and check-config start faster without it

        failures = asyncio.run(_healthchecks(sinks, notifiers))
        if failures:
            for failure in failures:
                print(f"socd: health check failed: {failure}", file=sys.stderr)
            return EXIT_FAILURE
    for warning in cfg.warnings:
        print(f"socd: warning: {warning}", file=sys.stderr)
    print(f"{cfg.file}: OK ({len(collectors)} collectors, {len(cfg.decoders)} decoders, "
          f"{len(sinks)} sinks{', all reachable' if args.connect else ''})")
    return EXIT_OK


def _state_problems(cfg: Config) -> list[ConfigProblem]:
    """The state folder must be writable by the user the daemon runs as: the service
    user for the installed config (whoever runs check-config; root has switched to it
    already for the service's state, see socd.cli._switch_user), else this user. A file
    in it that user cannot write (an ``incidents.db`` a root command created) is a
    problem too: the daemon would fail on it later."""
    from socd import access

    who = access.Who.current()
    layout = install.detect()
    if layout.installed and os.path.abspath(cfg.file) == layout.config:
        # No such user yet (the package creates it): check for this user meanwhile.
        with contextlib.suppress(KeyError):
            who = access.Who.named(layout.service_user)
    return [ConfigProblem(cfg.file, "state_dir", p.message, p.hint)
            for p in access.write_problems(cfg.state_dir, who)]


async def _healthchecks(sinks: list[Any], notifiers: Sequence[Any] = ()) -> list[str]:
    failures = []
    for sink in sinks:
        try:
            await sink.healthcheck()
        except HealthCheckError as exc:
            failures.append(f"sink {sink.name}: {exc}")
    for notifier in notifiers:
        try:
            await notifier.healthcheck()
        except Exception as exc:  # a channel plugin's own error types are failures too
            failures.append(f"notifier {notifier.name}: {exc}")
        finally:
            try:
                await notifier.close()
            except Exception as exc:
                failures.append(f"notifier {notifier.name}: close failed: {exc}")
    return failures


def _replay(args: argparse.Namespace) -> int:
    with no_collection():
        from socd.app.components import build_classifier, build_decoders, dead_letter_for
        from socd.app.replay import replay

        cfg = config_mod.load(args.config)
        decoders = build_decoders(cfg, dead_letter_for(cfg))
        decoder = decoders.get(args.format)
        if decoder is None:
            return fail(f"unknown format {args.format!r}; known: "
                        f"{', '.join(sorted(decoders))}", EXIT_CONFIG)
        classifier = build_classifier(cfg)
    # What start-up built (the rule pack, the IoC lists: a million entries) lives until the
    # end: out of the collector's sight, the full collections do not walk it again.
    gc.freeze()
    from socd import access

    # The files are the operator's: read with the invoking user's rights (see identity).
    with identity.as_invoker():
        for path in args.files:
            problem = access.read_problem(path) if path != "-" else None
            if problem is not None:
                return fail(str(problem))
        stats = replay(args.files, decoder, classifier, sys.stdout.buffer,
                       alerts_only=args.alerts_only)
    if args.stats:
        print(json_line(stats), file=sys.stderr)
    return EXIT_OK if not stats["failed"] else EXIT_FAILURE
