"""The ``socd`` command line. The only place errors become exit codes.

Exit codes: 0 success, 1 runtime failure, 2 bad configuration or usage.

Before a command that reads the configuration runs, :func:`_prepare` sets it up as
the installed service would run (see :mod:`socd.install`): the environment file of the
unit is read (``--env-file``), the configuration defaults to the installed one (a note
on stderr says when the embedded demo or ``$SOCD_CONFIG`` is used instead), and root
switches to the service user before touching state it owns (:mod:`socd.identity`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import os
import pwd
import sys
from collections.abc import Sequence
from typing import Any

from socd import __version__, identity, install
from socd import config as config_mod
from socd.errors import ConfigError, ConfigProblem, HealthCheckError, PluginError, SocdError
from socd.identity import UnknownActor
from socd.install import EnvFileError, EnvFileResult

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="socd", description="Security-operations monitoring daemon for a provincial SOC.")
    parser.add_argument("--version", action="version", version=f"socd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(p: argparse.ArgumentParser) -> None:
        p.add_argument("-c", "--config", default=None,
                       help="YAML config file (default: $SOCD_CONFIG, else /etc/socd/socd.yaml "
                       "on an installed system, else the embedded demo)")
        p.add_argument("--env-file", default=None, metavar="FILE",
                       help="NAME=value lines for the config's ${NAME}s, read as the unit's "
                       "EnvironmentFile (default: /etc/socd/socd.env on an installed "
                       "system); variables already set win")

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
        if hasattr(args, "config"):
            _prepare(args)
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
        _print_config_error(exc, getattr(args, "env_result", None))
        return EXIT_CONFIG
    except (PluginError, HealthCheckError) as exc:
        print(f"socd: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except (UnknownActor, EnvFileError) as exc:  # usage: who acts, which env file
        print(f"socd: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except SocdError as exc:
        print(f"socd: {exc}", file=sys.stderr)
        hint = getattr(exc, "hint", None)
        if hint:
            print(f"hint: {hint}", file=sys.stderr)
        return EXIT_FAILURE
    except PermissionError as exc:
        # A file the command needs that the user it runs as may not open: say which,
        # whose it is and how to fix it (never a traceback).
        print(f"socd: {_permission_message(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    return EXIT_FAILURE


def _print_config_error(exc: ConfigError, env: EnvFileResult | None = None) -> None:
    count = len(exc.problems)
    print(f"socd: configuration is invalid ({count} problem{'s' if count != 1 else ''}):",
          file=sys.stderr)
    for problem in exc.problems:
        print(f"  {problem}", file=sys.stderr)
    if env is not None and env.error and any("environment variable" in p.message
                                             for p in exc.problems):
        print(f"socd: note: the environment file {env.path} was not read ({env.error}): "
              "its variables are missing; run the command as root (sudo) or as the "
              "service user", file=sys.stderr)


def _permission_message(exc: PermissionError) -> str:
    from socd import access

    switched = identity.switched()
    path = exc.filename if isinstance(exc.filename, str) else None
    if path is None:
        return str(exc)
    problem = access.read_problem(path) or access.Problem(f"{path}: {exc.strerror}")
    text = str(problem)
    if switched is not None:
        text += (f" (socd switched to the service user {switched.user} for its state; "
                 "give that user access, or pass the file on stdin where the command "
                 "takes '-')")
    return text


# -- the installed system ------------------------------------------------------------------


def _prepare(args: argparse.Namespace) -> None:
    """Environment file, configuration and user, as the installed service has them."""
    layout = install.detect()
    explicit = getattr(args, "env_file", None)
    env_path = explicit or (layout.env_file if layout.installed else None)
    args.env_result = install.load_env_file(env_path, required=explicit is not None)
    args.config, args.config_note = _choose_config(args.config, layout)
    if args.config_note and args.command != "run":  # `run` logs it (stderr is JSON there)
        print(f"socd: {args.config_note}", file=sys.stderr)
    _switch_user(args, layout)


def _state_owner(state_dir: str, config: str | None, layout: install.Layout,
                 service_uid: int) -> int:
    """Who owns the state folder. One not created yet is the service's when the
    installed config names it (the service user must create it, not root), else its
    nearest existing folder's owner decides."""
    path = os.path.abspath(state_dir)
    try:
        return os.stat(path).st_uid
    except FileNotFoundError:
        pass
    if config is not None and os.path.abspath(config) == layout.config:
        return service_uid
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return os.stat(path).st_uid


def _choose_config(explicit: str | None, layout: install.Layout) -> tuple[str | None, str | None]:
    """The config file (None: the embedded demo) and, when it is not the one the
    operator would expect, a note saying which it is."""
    if explicit:
        return explicit, None
    from_env = os.environ.get("SOCD_CONFIG")
    if from_env:
        if layout.installed and os.path.abspath(from_env) != layout.config:
            return from_env, f"using $SOCD_CONFIG={from_env}, not {layout.config}"
        return from_env, None
    if layout.installed:
        return layout.config, None
    return None, ("using the embedded demo configuration (a fictional province's sample "
                  "data, not your alerts): pass -c FILE or set $SOCD_CONFIG")


def _switch_user(args: argparse.Namespace, layout: install.Layout) -> None:
    """Root on an installed system acts as the service user on the service's state: a
    state folder owned by that user (or not created yet) is never written by root. The
    commands that need root itself (``block sync``) say so with ``as_root``."""
    if os.geteuid() != 0 or not layout.installed or getattr(args, "as_root", False):
        return
    try:
        service = pwd.getpwnam(layout.service_user)
    except KeyError:
        return  # no service user (yet): nothing to protect from root
    state_dir = getattr(args, "state_dir", None)
    if state_dir is None:
        try:
            state_dir = config_mod.load(args.config).state_dir
        except ConfigError:
            return  # the command reports it; it cannot get far enough to write state
    owner = _state_owner(state_dir, args.config, layout, service.pw_uid)
    if owner != service.pw_uid:
        return  # not the service's state (a test config of root's own)
    identity.become(layout.service_user,
                    keep_invoker=args.command not in ("run", "check-config"))


def _run(args: argparse.Namespace) -> int:
    """The daemon. Whatever stops it from starting (a configuration problem, a port in
    use, a file it may not read) is one log line naming the key, address or file and
    the fix: JSON in the journal like every other line, never a traceback."""
    import structlog

    from socd import log
    from socd.server import Daemon

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
    daemon = Daemon(cfg, on_idle=_print_summary)
    try:
        asyncio.run(daemon.serve())
    except ConfigError as exc:  # a file the config names, found missing or unreadable
        _log_config_error(logger, exc)
        return EXIT_CONFIG
    except (SocdError, PermissionError) as exc:
        hint = getattr(exc, "hint", None)
        if isinstance(exc, PermissionError):
            exc, hint = SocdError(_permission_message(exc)), None
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
    cfg.require_env()  # every ${VAR}, as `socd run` needs them
    # The second pass (files the config names) all at once, before the builds below,
    # each of which would stop at its first missing file.
    state = [*config_mod.reference_problems(cfg), *_state_problems(cfg)]
    if state:
        raise ConfigError(state)
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


def _state_problems(cfg: Any) -> list[ConfigProblem]:
    """The state folder must be writable by the user the daemon runs as: the service
    user for the installed config (whoever runs check-config; root has switched to it
    already for the service's state, see _switch_user), else this user. A file in it
    that user cannot write (an ``incidents.db`` a root command created) is a problem
    too: the daemon would fail on it later."""
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
    classifier = build_classifier(cfg)
    from socd import access

    # The files are the operator's: read with the invoking user's rights (see identity).
    with identity.as_invoker():
        for path in args.files:
            problem = access.read_problem(path) if path != "-" else None
            if problem is not None:
                print(f"socd: {problem}", file=sys.stderr)
                return EXIT_FAILURE
        stats = replay(args.files, decoder, classifier, sys.stdout.buffer,
                       alerts_only=args.alerts_only)
    if args.stats:
        print(orjson.dumps(stats).decode(), file=sys.stderr)
    return EXIT_OK if not stats["failed"] else EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
