"""The ``socd`` command line. The only place errors become exit codes.

Exit codes: 0 success, 1 runtime failure, 2 bad configuration or usage.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

from socd import __version__
from socd import config as config_mod
from socd.errors import ConfigError, HealthCheckError, PluginError, SocdError

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="socd", description="Security-operations monitoring daemon for a provincial SOC.")
    parser.add_argument("--version", action="version", version=f"socd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(p: argparse.ArgumentParser) -> None:
        p.add_argument("-c", "--config", default=os.environ.get("SOCD_CONFIG"),
                       help="YAML config file (default: $SOCD_CONFIG, else the embedded "
                       "default)")

    run = sub.add_parser("run", help="run the daemon")
    with_config(run)

    check = sub.add_parser("check-config", help="validate a config file")
    with_config(check)
    check.add_argument("--connect", action="store_true",
                       help="also run every sink's health check (needs the services)")

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

    # Command groups of the subsystems (rules, IoC store, blocking) live beside their
    # code: each module has register(sub, with_config), whose parsers set `handler`.
    for module_name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not module_name.startswith(exc.name):
                raise  # a missing dependency inside the module: a real error
            continue
        module.register(sub, with_config)
    return parser


_COMMAND_MODULES = ("socd.engine.cli", "socd.ioc.cli", "socd.block.cli", "socd.alert_cli",
                    "socd.incident_cli", "socd.share_cli", "socd.report_cli")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "check-config":
            return _check(args)
        if args.command == "replay":
            return _replay(args)
        handler = getattr(args, "handler", None)
        if handler is not None:
            return int(handler(args))
    except ConfigError as exc:
        _print_config_error(exc)
        return EXIT_CONFIG
    except (PluginError, HealthCheckError) as exc:
        print(f"socd: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except SocdError as exc:
        print(f"socd: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    return EXIT_FAILURE


def _print_config_error(exc: ConfigError) -> None:
    count = len(exc.problems)
    print(f"socd: configuration is invalid ({count} problem{'s' if count != 1 else ''}):",
          file=sys.stderr)
    for problem in exc.problems:
        print(f"  {problem}", file=sys.stderr)


def _run(args: argparse.Namespace) -> int:
    import structlog

    from socd import log
    from socd.server import Daemon

    cfg = config_mod.load(args.config)
    log.setup(cfg.document.log.level, cfg.document.log.format)
    for warning in cfg.warnings:
        structlog.get_logger("socd.config").warning("configuration warning",
                                                    problem=str(warning))
    daemon = Daemon(cfg, on_idle=_print_summary)
    asyncio.run(daemon.serve())
    return EXIT_OK


def _print_summary(daemon: Any) -> None:
    """After a one-shot replay: the alerts in the embedded store, by severity and kind."""
    from socd import summary
    from socd.alerting.sqlite import SqliteSink

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
    from socd.components import build_classifier, build_decoders, dead_letter_for, instantiate

    cfg = config_mod.load(args.config)
    # The second pass (files the config names) all at once, before the builds below,
    # each of which would stop at its first missing file.
    references = config_mod.reference_problems(cfg)
    if references:
        raise ConfigError(references)
    from socd.reports.render import check_formats

    check_formats(cfg)  # `pdf` in reports.formats needs WeasyPrint and its libraries
    dead_letter = dead_letter_for(cfg)
    build_decoders(cfg, dead_letter)
    build_classifier(cfg)
    sinks = [instantiate(cfg, plugin, dead_letter) for plugin in cfg.sinks.values()]
    collectors = [instantiate(cfg, plugin, dead_letter) for plugin in cfg.collectors.values()]
    from socd.components import build_notifications

    # Templates are local files: a broken one is a configuration error, found offline.
    core = build_notifications(cfg, dead_letter)
    template_problems = core.renderer.problems() if core is not None else []
    if template_problems:
        for problem in template_problems:
            print(f"socd: {cfg.file}: notifications: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    if args.connect:
        notifiers = list(core.notifiers.values()) if core is not None else []
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
    import orjson

    from socd.components import build_classifier, build_decoders, dead_letter_for
    from socd.replay import replay

    cfg = config_mod.load(args.config)
    decoders = build_decoders(cfg, dead_letter_for(cfg))
    decoder = decoders.get(args.format)
    if decoder is None:
        print(f"socd: unknown format {args.format!r}; known: {', '.join(sorted(decoders))}",
              file=sys.stderr)
        return EXIT_CONFIG
    for path in args.files:
        if path != "-" and not os.path.isfile(path):
            print(f"socd: no such file: {path}", file=sys.stderr)
            return EXIT_FAILURE
    stats = replay(args.files, decoder, build_classifier(cfg), sys.stdout.buffer,
                   alerts_only=args.alerts_only)
    if args.stats:
        print(orjson.dumps(stats).decode(), file=sys.stderr)
    return EXIT_OK if not stats["failed"] else EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
