"""The ``socd`` command line: :func:`main` (the ``socd`` console script) and its parser.

Where things are: one module per command group, each with ``register(sub,
with_config)`` adding its parsers (every leaf sets ``handler``, the function that runs
it); :data:`_COMMAND_MODULES` lists them in the order ``socd --help`` shows them.
What the groups share (exit codes, usage errors, the error table, the choice of a sink
with ``--sink``, tables and JSON lines, writing the operator's files) is
:mod:`socd.cli.common`. A new command is a new module here, listed in
:data:`_COMMAND_MODULES`, its commands in :data:`_GROUP_OF` (``socd <command>`` imports
only the module of its command, for start-up time).

This package is the only place errors become exit codes: 0 success, 1 runtime
failure, 2 bad configuration or usage.

Before a command that reads the configuration runs, :func:`_prepare` sets it up as
the installed service would run (see :mod:`socd.config.install`): the environment file of the
unit is read (``--env-file``), the configuration defaults to the installed one (a note
on stderr says when the embedded demo or ``$SOCD_CONFIG`` is used instead), and root
switches to the service user before touching state it owns (:mod:`socd.cli.identity`).
"""

from __future__ import annotations

import argparse
import importlib
import os
import pwd
import sys
from collections.abc import Sequence

from socd import __version__
from socd import config as config_mod
from socd.cli import identity
from socd.cli.common import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    On,
    UsageError,
    fail,
    no_collection,
    permission_message,
    run_guarded,
    with_config,
)
from socd.cli.identity import UnknownActor
from socd.config import install
from socd.config.install import EnvFileError, EnvFileResult
from socd.errors import ConfigError, HealthCheckError, PluginError, SocdError

__all__ = ["EXIT_CONFIG", "EXIT_FAILURE", "EXIT_OK", "EXIT_USAGE", "main"]

# The command groups, in the order of `socd --help` (and of the man page).
_COMMAND_MODULES = ("socd.cli.run", "socd.cli.rules", "socd.cli.ioc", "socd.cli.block",
                    "socd.cli.alert", "socd.cli.incident", "socd.cli.audit", "socd.cli.share",
                    "socd.cli.report", "socd.cli.console")

# The group of each command (what its module's register() adds; a unit test holds them
# equal): `socd <command>` imports that group's module only.
_GROUP_OF = {
    "run": "socd.cli.run", "check-config": "socd.cli.run", "replay": "socd.cli.run",
    "test-rules": "socd.cli.rules", "rules": "socd.cli.rules", "ioc": "socd.cli.ioc",
    "block": "socd.cli.block", "block-helper": "socd.cli.block", "alert": "socd.cli.alert",
    "incident": "socd.cli.incident", "audit": "socd.cli.audit", "share": "socd.cli.share",
    "report": "socd.cli.report", "console": "socd.cli.console",
}


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command or, when ``command`` (the first word of the command
    line) names one, of its group only: the groups import what their commands need
    (the rules engine, the stores, the firewall helper, the reports), and importing
    them all took more time than `socd replay` or `socd check-config` needs to start.
    Help, ``--version`` and an unknown command get every group."""
    parser = argparse.ArgumentParser(
        prog="socd", description="Security-operations monitoring daemon for a provincial SOC.")
    parser.add_argument("--version", action="version", version=f"socd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    group = _GROUP_OF.get(command or "")
    for module_name in (group,) if group in _COMMAND_MODULES else _COMMAND_MODULES:
        importlib.import_module(module_name).register(sub, with_config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    with no_collection():  # the command group's imports
        args = _parser(words[0] if words else None).parse_args(words)

    def command() -> int:
        if hasattr(args, "config"):
            _prepare(args)
        handler = getattr(args, "handler", None)
        return EXIT_FAILURE if handler is None else int(handler(args))

    return run_guarded(
        command,
        On(ConfigError, lambda exc: _config_error(exc, getattr(args, "env_result", None))),
        On(PluginError, EXIT_CONFIG),
        On(HealthCheckError, EXIT_CONFIG),
        On(UnknownActor, EXIT_USAGE),  # usage: who acts
        On(EnvFileError, EXIT_USAGE),  # usage: which env file
        On(UsageError, EXIT_USAGE),
        On(SocdError, EXIT_FAILURE),
        # A file the command needs that the user it runs as may not open: say which,
        # whose it is and how to fix it (never a traceback).
        On(PermissionError, lambda exc: fail(permission_message(exc))),
        On(KeyboardInterrupt, lambda _: EXIT_INTERRUPTED),
    )


def _config_error(exc: ConfigError, env: EnvFileResult | None = None) -> int:
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
    return EXIT_CONFIG


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
