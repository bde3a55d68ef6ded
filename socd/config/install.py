"""Where an installed socd keeps its configuration, and its environment file.

The Debian package and ``scripts/install.sh`` install socd as a service: the
configuration in ``/etc/socd/socd.yaml``, the secrets it names as ``${VAR}`` in
``/etc/socd/socd.env`` (the unit's ``EnvironmentFile=``), the state in
``/var/lib/socd`` owned by the service user ``socd``. On such a system the ``socd``
command must work on that configuration, with those secrets and as that user, or an
operator's ``socd alert list`` shows the embedded demo's alerts and a read-only
command run as root leaves root-owned files that the daemon later cannot write.

A system is *installed* when the installer's marker (``<venv>/share/socd/install.env``,
written by both installers) exists, or when ``<etc>/socd.yaml`` exists. The marker holds
the defaults of the two variables below (``scripts/install.sh --etc`` may move the
folder); the environment overrides it, which is how tests point socd at an installed
layout below a temporary folder without touching ``/etc``:

``SOCD_ETC``
    the configuration folder (default ``/etc/socd``);
``SOCD_SERVICE_USER``
    the service account the unit runs as (default ``socd``).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Final

ETC_ENV: Final = "SOCD_ETC"
USER_ENV: Final = "SOCD_SERVICE_USER"
DEFAULT_ETC: Final = "/etc/socd"
DEFAULT_USER: Final = "socd"
CONFIG_NAME: Final = "socd.yaml"
ENV_NAME: Final = "socd.env"


def marker_path() -> str:
    """The installers' marker inside this socd's virtualenv."""
    return os.path.join(sys.prefix, "share", "socd", "install.env")


@dataclass(frozen=True, slots=True)
class Layout:
    """The files of an installed socd (or where they would be)."""

    etc_dir: str
    service_user: str
    installed: bool

    @property
    def config(self) -> str:
        return os.path.join(self.etc_dir, CONFIG_NAME)

    @property
    def env_file(self) -> str:
        return os.path.join(self.etc_dir, ENV_NAME)


def detect(environ: Mapping[str, str] | None = None, marker: str | None = None) -> Layout:
    """The install layout of this machine; ``installed`` says whether there is one."""
    env = os.environ if environ is None else environ
    marker = marker_path() if marker is None else marker
    defaults: dict[str, str] = {}
    has_marker = os.path.isfile(marker)
    if has_marker:
        try:
            defaults = parse_env_file(marker).values
        except OSError:
            defaults = {}
    etc_dir = env.get(ETC_ENV) or defaults.get(ETC_ENV) or DEFAULT_ETC
    user = env.get(USER_ENV) or defaults.get(USER_ENV) or DEFAULT_USER
    installed = has_marker or os.path.isfile(os.path.join(etc_dir, CONFIG_NAME))
    return Layout(os.path.abspath(etc_dir), user, installed)


# -- the environment file ----------------------------------------------------------------

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "$": "$", "`": "`"}


@dataclass(slots=True)
class EnvFile:
    """The variables of an environment file and the lines that were not assignments."""

    path: str
    values: dict[str, str] = field(default_factory=dict)
    bad_lines: list[int] = field(default_factory=list)


def parse_env_file(path: str) -> EnvFile:
    """Read ``NAME=value`` lines as systemd's ``EnvironmentFile=`` does: ``#`` and ``;``
    comments, blank lines, optional single or double quotes around the whole value, a
    trailing backslash continues a line. Raises :class:`OSError` when unreadable."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        text = fh.read()
    out = EnvFile(path)
    pending = ""
    for number, raw in enumerate(text.splitlines(), 1):
        line = pending + raw
        if line.endswith("\\") and not line.endswith("\\\\"):
            pending = line[:-1]
            continue
        pending = ""
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        name, sep, value = stripped.partition("=")
        name = name.strip()
        if not sep or not _NAME.fullmatch(name):
            out.bad_lines.append(number)
            continue
        out.values[name] = _unquote(value.strip())
    return out


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1]
    if len(value) >= 2 and value[0] == value[-1] == '"':
        body, out, i = value[1:-1], [], 0
        while i < len(body):
            ch = body[i]
            if ch == "\\" and i + 1 < len(body) and body[i + 1] in _ESCAPES:
                out.append(_ESCAPES[body[i + 1]])
                i += 2
                continue
            out.append(ch)
            i += 1
        return "".join(out)
    return value


@dataclass(frozen=True, slots=True)
class EnvFileResult:
    """What :func:`load_env_file` did: the file, the names it set, and why it could not
    be read (``None`` when it was read or there was none)."""

    path: str | None
    applied: tuple[str, ...] = ()
    error: str | None = None


def load_env_file(path: str | None, environ: MutableMapping[str, str] | None = None, *,
                  required: bool = False) -> EnvFileResult:
    """Add the file's variables to the environment, as the unit's ``EnvironmentFile=``
    does for the daemon. Variables already set win: ``NAME=x socd ...`` overrides the
    file for one command. A missing or unreadable file is an error only when
    ``required`` (the operator named it); otherwise the result says why it was not read,
    so a command that then lacks a variable can say where it would have come from."""
    env = os.environ if environ is None else environ
    if path is None:
        return EnvFileResult(None)
    try:
        parsed = parse_env_file(path)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if required:
            raise EnvFileError(path, reason) from exc
        if isinstance(exc, FileNotFoundError):
            return EnvFileResult(None)
        return EnvFileResult(path, error=reason)
    applied = []
    for name, value in parsed.values.items():
        if name not in env:
            env[name] = value
            applied.append(name)
    return EnvFileResult(path, tuple(applied))


class EnvFileError(OSError):
    """The environment file the operator named cannot be read."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot read the environment file {path}: {reason}")
        self.path = path
