"""``${VAR}`` in the configuration: substitution, and what an unset variable blocks.

Secrets are not written into the YAML: it names them as ``${VAR}`` (or
``${VAR:-default}`` for a value that is not secret), and the loader substitutes the
environment (for an installed socd, the unit's ``EnvironmentFile=``, which the ``socd``
command reads too: :mod:`socd.config.install`).

An unset variable is a problem only where its value is needed (:class:`UnsetVariables`),
so ``socd ioc import`` runs without the Telegram token that only the daemon uses.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, SecretStr

from socd.config.located import Lines, Loc, dotted, line_for, looks_secret
from socd.errors import ConfigError, ConfigProblem

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

# The sections whose entries are plugins: an unset variable there marks the plugin.
PLUGIN_SECTIONS = frozenset({"decoders", "collectors", "sinks", "notifiers"})


def substitute(value: Any, env: Mapping[str, str], loc: Loc,
               missing: list[tuple[Loc, str]]) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in string values (never in keys). An
    unset variable without a default stays as written and is added to ``missing``
    with its key path (see :class:`UnsetVariables`)."""
    if isinstance(value, str):
        def repl(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            missing.append((loc, name))
            return m.group(0)
        return _ENV.sub(repl, value) if "${" in value else value
    if isinstance(value, dict):
        return {k: substitute(v, env, (*loc, k), missing) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, env, (*loc, i), missing) for i, v in enumerate(value)]
    return value


class UnsetSecret(SecretStr):
    """A secret option whose ``${VAR}`` is not set. Reading it raises the
    :class:`ConfigError` that names the variable, so a command that never uses the
    secret runs without it and one that does fails saying what to set."""

    def __init__(self, problem: ConfigProblem) -> None:
        super().__init__("")
        self.problem = problem

    def get_secret_value(self) -> str:
        raise ConfigError([self.problem])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UnsetSecret) and other.problem == self.problem

    def __hash__(self) -> int:
        return hash(self.problem)

    def __len__(self) -> int:
        return 0


@dataclass(slots=True)
class UnsetVariables:
    """The ``${VAR}``s of one document that are not set, and what they block.

    Two steps, like the rest of validation: loading keeps going when a variable is
    unset, and the variable becomes a problem only where its value is needed. In a
    plugin section it marks the plugin (built only by ``run``/``check-config``, which
    require every variable, or by the command that uses it); in a secret option
    elsewhere (``sharing.misp.api_key``) the secret becomes an :class:`UnsetSecret`.
    Any other value (``state_dir``, a path) is needed by every command, so an unset
    variable there is a problem at once (``fatal``)."""

    file: str
    lines: Lines
    found: list[tuple[Loc, str]] = field(default_factory=list)
    fatal: list[ConfigProblem] = field(default_factory=list)
    deferred: list[ConfigProblem] = field(default_factory=list)

    @classmethod
    def substitute(cls, raw: dict[str, Any], env: Mapping[str, str], file: str,
                   lines: Lines) -> tuple[dict[str, Any], UnsetVariables]:
        """The document with its variables substituted, and what was left unset."""
        unset = cls(file, lines)
        return substitute(raw, env, (), unset.found), unset

    def covers(self, loc: Loc) -> bool:
        """A validation error at ``loc`` is the consequence of an unset variable."""
        return any(tuple(loc[:len(where)]) == where for where, _ in self.found)

    def under(self, prefix: Loc) -> list[tuple[Loc, str]]:
        return [(loc, name) for loc, name in self.found if loc[:len(prefix)] == prefix]

    def problem(self, loc: Loc, name: str, *, secret: bool) -> ConfigProblem:
        return ConfigProblem(self.file, dotted(loc), f"environment variable {name} is not set",
                             env_hint(name, loc, secret=secret), line_for(self.lines, loc))

    def defer(self, config: Any, prefix: Loc,
              missing: list[tuple[Loc, str]]) -> tuple[ConfigProblem, ...]:
        """The problems of a plugin's unset variables; its secrets that need them
        become :class:`UnsetSecret`."""
        out = []
        for loc, name in missing:
            slot = _secret_slot(config, loc[len(prefix):])
            problem = self.problem(loc, name, secret=slot is not None)
            if slot is not None:
                slot(UnsetSecret(problem))
            out.append(problem)
        self.deferred.extend(out)
        return tuple(out)

    def settle(self, doc: BaseModel | None) -> None:
        """Sort the unset variables outside plugin sections into deferred secrets and
        fatal problems (all fatal when the document did not validate)."""
        for loc, name in self.found:
            if loc and loc[0] in PLUGIN_SECTIONS and len(loc) >= 2:
                continue  # the plugin's own (loader.plugins / defer)
            slot = _secret_slot(doc, loc) if doc is not None else None
            problem = self.problem(loc, name, secret=slot is not None)
            if slot is not None:
                slot(UnsetSecret(problem))
                self.deferred.append(problem)
            else:
                self.fatal.append(problem)


def _secret_slot(root: Any, loc: Loc) -> typing.Callable[[SecretStr], None] | None:
    """A setter for the secret option at ``loc`` (models are frozen: their ``__dict__``
    is written directly), or None when the value there is no secret."""
    if not loc:
        return None
    parent: Any = root
    for part in loc[:-1]:
        if isinstance(parent, BaseModel):
            parent = getattr(parent, str(part), None)
        elif isinstance(parent, Mapping | list):
            try:
                parent = parent[part]
            except (KeyError, IndexError, TypeError):
                return None
        else:
            return None
    key = loc[-1]
    if isinstance(parent, BaseModel):
        value = getattr(parent, str(key), None)
        info = type(parent).model_fields.get(str(key))
        secret_field = info is not None and "SecretStr" in str(info.annotation)
        if not isinstance(value, SecretStr) and not (secret_field and isinstance(value, str)):
            return None
        return lambda new: parent.__dict__.__setitem__(str(key), new)
    if isinstance(parent, dict | list):
        try:
            value = parent[key]
        except (KeyError, IndexError, TypeError):
            return None
        if not isinstance(value, SecretStr):
            return None
        return lambda new: parent.__setitem__(key, new)
    return None


def env_hint(name: str, loc: Loc = (), *, secret: bool = False) -> str:
    """Where to set an unset variable. Never a default in the YAML for a secret: that
    would write the secret into a file meant to hold none."""
    from socd.config import install

    layout = install.detect()
    where = (f"add {name}=... to {layout.env_file} (the unit's EnvironmentFile; the socd "
             f"command reads it too) or export {name}=... for one command"
             if layout.installed else
             f"export {name}=..., or put {name}=... in an environment file and pass it "
             "with --env-file")
    if secret or looks_secret(name) or any(looks_secret(str(p)) for p in loc):
        return where
    return f"{where}; a value that is not secret may have a default: ${{{name}:-value}}"
