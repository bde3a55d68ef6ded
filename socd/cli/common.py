"""What every ``socd`` command group shares, written once.

* **Exit codes**: :data:`EXIT_OK` (0), :data:`EXIT_FAILURE` (1: a runtime failure, a
  refused change, nothing found), :data:`EXIT_USAGE` (2: bad usage or configuration;
  :data:`EXIT_CONFIG` is the same code, named for configuration problems).
* **Errors to exit codes**: :class:`UsageError` for a command's own usage problems;
  :func:`fail` prints ``socd: <message>`` (and the error's ``hint``) and returns the
  code; :func:`run_guarded` runs a command's body with a table of error types and
  their codes (:class:`On`), so a group states its mapping instead of a ladder of
  ``except`` clauses.
* **The sink a command works on**: :func:`sinks_of_type` and :func:`choose_sink`
  (the only one of its type, or the one ``--sink`` names).
* **Options and output**: :func:`with_config` (``-c`` and ``--env-file``, which
  :func:`socd.cli.main` acts on before the command runs), :func:`table` for aligned
  columns, :func:`json_line` for one JSON object a line, :func:`write_output` and
  :func:`write_stdout` for what a command produces.

Library code never exits; this package is the only place errors become exit codes.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import sys
import unicodedata
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Generic, Protocol, TypeVar

import orjson

from socd.errors import SocdError

if TYPE_CHECKING:
    from socd.config import Config

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_USAGE: Final = 2
EXIT_CONFIG: Final = EXIT_USAGE
EXIT_INTERRUPTED: Final = 130  # Ctrl+C, as a shell reports SIGINT


class Subparsers(Protocol):
    """The object ``add_subparsers()`` returns, as the command modules use it."""

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser: ...


WithConfig = Callable[[argparse.ArgumentParser], None]


def with_config(parser: argparse.ArgumentParser) -> None:
    """``-c/--config`` and ``--env-file``: a command that has them runs after
    :func:`socd.cli.main` set up the environment file, the configuration and the user
    as the installed service has them."""
    parser.add_argument("-c", "--config", default=None,
                        help="YAML config file (default: $SOCD_CONFIG, else /etc/socd/socd.yaml "
                        "on an installed system, else the embedded demo)")
    parser.add_argument("--env-file", default=None, metavar="FILE",
                        help="NAME=value lines for the config's ${NAME}s, read as the unit's "
                        "EnvironmentFile (default: /etc/socd/socd.env on an installed "
                        "system); variables already set win")


# `--by` of the commands that record who changed an alert or an incident.
BY_HELP: Final = ("who acts, recorded in the history (default: $SUDO_USER, else the login "
                  "name; required when that is only the service account, as under runuser "
                  "-u socd)")


# -- errors and exit codes -----------------------------------------------------------------


class UsageError(SocdError):
    """A usage or configuration problem a command finds itself (no such sink, no
    store yet): ``socd: <message>``, exit 2."""


def fail(error: BaseException | str, code: int = EXIT_FAILURE, *, hint: str | None = None
         ) -> int:
    """Say what went wrong on stderr, ``socd: <error>``, then ``hint: <hint>``: the
    ``hint`` given, else the one the error carries (:class:`socd.alerts.lifecycle.AlertError` and
    others do); return ``code``."""
    print(f"socd: {error}", file=sys.stderr)
    hint = hint or getattr(error, "hint", None)
    if hint:
        print(f"hint: {hint}", file=sys.stderr)
    return code


TRY_AGAIN: Final = "try again; nothing was changed"  # a store locked past its busy timeout


E = TypeVar("E", bound=BaseException)


@dataclass(frozen=True, slots=True)
class On(Generic[E]):
    """One row of a command's error table: an error of type ``error`` ends the command
    with ``exit``, either a code (the error is reported with :func:`fail`) or a function
    that reports the error its own way and returns the code."""

    error: type[E]
    exit: int | Callable[[E], int]


@contextlib.contextmanager
def no_collection() -> Iterator[None]:
    """No garbage collection inside: for start-up (the parsers, the configuration, the
    rule pack, the decoders), which makes long-lived objects and almost no reference
    cycles, so a collection there only walks what will live until the end (about a
    tenth of the start-up of `socd replay`, issue 17). What garbage it leaves is
    collected as usual after. Collection is restored as it was (tests call main())."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def run_guarded(body: Callable[[], int], *errors: On[Any]) -> int:
    """Run a command's ``body``; an error listed in ``errors`` (the first row whose type
    matches) becomes its message and exit code, any other propagates to
    :func:`socd.cli.main` (which maps socd's own errors, or shows a traceback for a bug)."""
    try:
        return body()
    except BaseException as exc:  # KeyboardInterrupt too (main's table has it)
        for row in errors:
            if isinstance(exc, row.error):
                return row.exit(exc) if callable(row.exit) else fail(exc, row.exit)
        raise


def permission_message(exc: PermissionError) -> str:
    """A file the command needs that the user it runs as may not open: which, whose it
    is and how to fix it (never a traceback)."""
    from socd import access
    from socd.cli import identity

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


# -- which sink ----------------------------------------------------------------------------


class SinkChoiceError(SocdError):
    """``--sink`` names no sink of the type, or the config has several and none was
    named. ``socd alert`` and ``socd incident`` report it as a usage error (exit 2);
    ``socd block`` leaves it to :func:`socd.cli.main` (exit 1), as it always has."""


def sinks_of_type(cfg: Config, kind: str) -> dict[str, Any]:
    """The configs of the sinks of type ``kind`` (``sqlite``, ``blocker``,
    ``elasticsearch``), by sink name, in the config's order."""
    return {name: plugin.config for name, plugin in cfg.sinks.items()
            if getattr(plugin.config, "type", None) == kind}


def choose_sink(cfg: Config, kind: str, name: str | None) -> Any | None:
    """The config of the sink a command works on: the one named ``name`` (``--sink``),
    else the only sink of type ``kind``; None when the config has none of that type
    (each command says in its own words what it needs). Raises
    :class:`SinkChoiceError` for an unknown name, or several sinks and no name."""
    found = sinks_of_type(cfg, kind)
    if name:
        if name not in found:
            raise SinkChoiceError(f"no {kind} sink named {name!r} in {cfg.file} "
                                  f"({kind} sinks: {', '.join(sorted(found)) or 'none'})")
        return found[name]
    if len(found) > 1:
        raise SinkChoiceError(f"{cfg.file} has several {kind} sinks; choose one with "
                              f"--sink: {', '.join(sorted(found))}")
    return next(iter(found.values()), None)


# -- output --------------------------------------------------------------------------------


def table(rows: Sequence[Sequence[str]], *, right: Collection[int] = (),
          indent: str = "") -> list[str]:
    """``rows`` (the heading first) as lines of aligned columns two spaces apart: each
    column as wide as its widest cell, left-aligned except the columns in ``right``;
    no trailing spaces."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [indent + "  ".join(cell.rjust(width) if i in right else cell.ljust(width)
                               for i, (cell, width) in enumerate(zip(row, widths, strict=True))
                               ).rstrip()
            for row in rows]


def in_zone(ts: str | None, zone: str) -> str:
    """An ISO time from a store (naive: UTC) in ``zone``, to the minute; ``-`` for none."""
    from zoneinfo import ZoneInfo

    from socd.tz import parse_iso

    return parse_iso(ts).astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M") if ts else "-"


def clean_text(value: str) -> str:
    """Text an operator typed (a title, a note, a name), as stored: trimmed, in NFC (a
    Vietnamese word typed on another keyboard compares equal)."""
    return unicodedata.normalize("NFC", value.strip())


def json_line(obj: Any) -> str:
    """``obj`` as compact JSON on one line (``--json`` output: one object a line)."""
    return orjson.dumps(obj).decode()


def write_output(path: str, data: bytes | str) -> None:
    """Write what a command produced to the operator's file ``path``, atomically (a
    ``.tmp`` beside it, then renamed), with the invoking user's rights: the file is the
    operator's, not socd's state (see :mod:`socd.cli.identity`)."""
    from socd.cli.identity import as_invoker

    body = data.encode("utf-8") if isinstance(data, str) else data
    tmp = f"{path}.tmp"
    with as_invoker():
        with open(tmp, "wb") as fh:
            fh.write(body)
        os.replace(tmp, path)


def write_stdout(data: bytes) -> None:
    """Bytes (a PDF, an XLSX, rendered Markdown) to stdout, after any text printed."""
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
