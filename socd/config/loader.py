"""Loading and validating socd's one YAML configuration file.

Validation happens in two steps, as CrowdSec and Vector do: everything that
can be checked without I/O here (types, unknown keys, plugin types, decoder
references), then runtime checks (sink health checks) in ``check-config
--connect`` and at start-up. Every problem carries the file, the key path, the
line and, for a misspelled key, the key that was probably meant
(:mod:`socd.config.located`).

The document is :class:`~socd.config.document.DocumentConfig`; each plugin section
(decoders, collectors, sinks, notifiers) is validated against its plugin's own
``Config`` once its ``type`` is known, and the result is a :class:`Config`.
"""

from __future__ import annotations

import contextlib
import os
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from socd.access import read_problem
from socd.config.document import DocumentConfig
from socd.config.documents import placeholder_warnings
from socd.config.env import UnsetVariables
from socd.config.located import (
    Lines,
    Loc,
    MakeProblem,
    did_you_mean,
    line_index,
    parse,
    problem_at,
    report,
    strings_at,
)
from socd.config.models import (
    CollectorConfig,
    DecoderConfig,
    NotifierConfig,
    PluginConfig,
    SinkConfig,
)
from socd.config.paths import resolve_path
from socd.errors import ConfigError, ConfigProblem, PluginError
from socd.plugins.registry import Kind, known_types, lookup, unknown_type_message


@dataclass(frozen=True, slots=True)
class Plugin:
    """A configured plugin: its name, class and validated config."""

    name: str
    cls: Any
    config: Any  # an instance of cls.Config
    # `${VAR}`s of this plugin's section that are not set (see Config.unresolved): the
    # plugin cannot be built (socd.app.components.instantiate raises these), and its secrets
    # that need them are UnsetSecret.
    unresolved: tuple[ConfigProblem, ...] = ()

    def same_as(self, other: Plugin | None) -> bool:
        return other is not None and self.cls is other.cls and self.config == other.config

    def require_env(self) -> None:
        """Raise :class:`ConfigError` naming the unset variables this plugin needs."""
        if self.unresolved:
            raise ConfigError(self.unresolved)


@dataclass(frozen=True, slots=True)
class Config:
    """A loaded, fully validated configuration."""

    file: str
    document: DocumentConfig
    config_dir: str
    state_dir: str
    decoders: dict[str, Plugin] = field(default_factory=dict)
    collectors: dict[str, Plugin] = field(default_factory=dict)
    sinks: dict[str, Plugin] = field(default_factory=dict)
    notifiers: dict[str, Plugin] = field(default_factory=dict)
    # Valid but risky settings: `check-config` prints them, `socd run` logs them.
    warnings: tuple[ConfigProblem, ...] = ()
    # `${VAR}`s that are not set, in plugin sections or secrets: a command that does not
    # use them runs without them (`socd ioc import` needs no Telegram token); what uses
    # them fails naming the variable. `socd run` and `check-config` require them all.
    unresolved: tuple[ConfigProblem, ...] = ()

    def resolve(self, path: str) -> str:
        """A path from the config, relative to the config file's folder."""
        return resolve_path(self.config_dir, path)

    def require_env(self, *sections: str) -> None:
        """Raise :class:`ConfigError` for the unset variables below these dotted key
        paths (``sinks.es``, ``sharing``); every one when no section is given."""
        wanted = [p for p in self.unresolved
                  if not sections or any(p.path == s or p.path.startswith((f"{s}.", f"{s}["))
                                         for s in sections)]
        if wanted:
            raise ConfigError(wanted)


DEFAULT_CONFIG_NAME = "default/config.yaml"


def default_config_path() -> str:
    """The config shipped inside the package (the embedded default)."""
    return str(resources.files("socd").joinpath(DEFAULT_CONFIG_NAME))


# Decoders every config has without declaring them.
BUILTIN_DECODERS: Mapping[str, dict[str, Any]] = {
    "json": {"type": "json"},
    "server_edr": {"type": "mapping", "mapping": "server_edr"},
    "workstation_edr": {"type": "mapping", "mapping": "workstation_edr"},
    "syslog": {"type": "syslog"},
    "cef": {"type": "cef"},
    "suricata": {"type": "suricata"},
    "wazuh": {"type": "wazuh"},
    "winlogbeat": {"type": "winlogbeat"},
    "windows_json": {"type": "windows_json"},
}


def load(path: str | os.PathLike[str] | None = None,
         env: Mapping[str, str] | None = None) -> Config:
    """Read, substitute and validate a config file; raise :class:`ConfigError`."""
    file = str(path) if path is not None else default_config_path()
    environ = os.environ if env is None else env
    try:
        text = Path(file).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([ConfigProblem(file, "", f"cannot read: {exc.strerror}")]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError([ConfigProblem(file, "", "not UTF-8 text")]) from exc
    return loads(text, file=file, env=environ)


def loads(text: str, *, file: str = "<string>", env: Mapping[str, str] | None = None) -> Config:
    """Validate a config's text (``file`` names it in problems); raise :class:`ConfigError`."""
    environ = os.environ if env is None else env
    parsed = parse(text, file)
    lines, raw = parsed.lines, parsed.data
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([ConfigProblem(file, "", "the top level must be a mapping", line=1)])

    problems: list[ConfigProblem] = []
    raw, unset = UnsetVariables.substitute(raw, environ, file, lines)
    make = problem_at(file, lines)

    def problem(loc: Loc, message: str, hint: str | None = None) -> None:
        # One caused by an unset ${VAR} is reported as that (see UnsetVariables).
        problems.extend([] if unset.covers(loc) else [make(loc, message, hint)])

    doc: DocumentConfig | None = None
    try:
        doc = DocumentConfig.model_validate(raw)
    except ValidationError as exc:
        report(exc, DocumentConfig, (), problem)

    def section(name: str) -> Mapping[str, Any]:
        # Plugin sections are checked even when the rest of the document is not
        # valid, so one run of check-config reports every problem.
        value = getattr(doc, name) if doc is not None else raw.get(name)
        return value if isinstance(value, Mapping) else {}

    decoders_raw = {**BUILTIN_DECODERS, **section("decoders")}
    user_decoders = set(section("decoders"))
    decoders = _plugins("decoder", "decoders", decoders_raw, DecoderConfig, problem,
                        optional=set(BUILTIN_DECODERS) - user_decoders, unset=unset)
    collectors = _plugins("collector", "collectors", section("collectors"), CollectorConfig,
                          problem, unset=unset)
    sinks = _plugins("sink", "sinks", section("sinks"), SinkConfig, problem, unset=unset)
    for name, plugin in collectors.items():
        _check_zones(name, plugin.config, decoders, problem)
    _check_decoder_refs(section("collectors"), collectors, decoders, decoders_raw, problem)
    config_dir = os.path.dirname(os.path.abspath(file))
    unset.settle(doc)
    if doc is None:
        # The second pass too (files the config names), so one run lists everything.
        raise ConfigError([*problems, *_reference_problems(
            raw, config_dir, {n: decoders[n] for n in user_decoders if n in decoders},
            make), *unset.fatal])

    state_dir = resolve_path(config_dir, doc.state_dir)
    notifiers = _plugins("notifier", "notifiers", section("notifiers"), NotifierConfig, problem,
                         unset=unset)
    for i, route in enumerate(doc.notifications.routes):
        for j, ref in enumerate(route.notifiers):
            if ref not in notifiers and ref not in section("notifiers"):
                hint = did_you_mean(ref, section("notifiers")) or (
                    "declare it under notifiers:" if not section("notifiers") else
                    f"use one of {', '.join(sorted(section('notifiers')))}")
                problem(("notifications", "routes", i, "notifiers", j),
                        f"unknown notifier {ref!r}", hint)
    for j, ref in enumerate(doc.incidents.notifiers):
        if ref not in section("notifiers"):
            problem(("incidents", "notifiers", j), f"unknown notifier {ref!r}",
                    "declare it under notifiers:")

    _check_alert_source(doc.console.alert_source, sinks, problem)

    if problems or unset.fatal:
        # Every problem at once, the unset variables a later command would need included,
        # and those of the second pass (reference_problems), which otherwise come only
        # once these are fixed.
        raise ConfigError([*problems, *_reference_problems(
            doc, config_dir, {n: decoders[n] for n in user_decoders if n in decoders},
            make), *unset.fatal, *unset.deferred])
    warnings = tuple(make(loc, message, hint) for loc, message, hint in [
        *_blocking_warnings(collectors, sinks), *_decoder_warnings(collectors, sinks),
        # Only a written `documents:` section (copied from the shipped file): a config
        # without one makes no official documents worth warning about at every start.
        *(placeholder_warnings(doc.documents) if "documents" in doc.model_fields_set
          else [])])
    return Config(file=file, document=doc, config_dir=config_dir, state_dir=state_dir,
                  decoders=decoders, collectors=collectors, sinks=sinks, notifiers=notifiers,
                  warnings=warnings, unresolved=tuple(unset.deferred))


def _check_alert_source(wanted: str, sinks: Mapping[str, Plugin],
                        problem: typing.Callable[..., None]) -> None:
    """``console.alert_source`` must name something that exists: a console reading
    nothing would show an empty queue instead of the alerts the daemon stores."""
    kinds = {"store": "sqlite", "elasticsearch": "elasticsearch"}
    readable = {name: p.config.type for name, p in sinks.items()
                if p.config.type in kinds.values()}
    if wanted == "auto" or wanted in readable or kinds.get(wanted) in readable.values():
        return
    options = list(dict.fromkeys(["auto", *(k for k, t in kinds.items()
                                            if t in readable.values()), *sorted(readable)]))
    if wanted in kinds:
        message = f"alert_source is {wanted!r} but no sink has type {kinds[wanted]}"
    elif wanted in sinks:
        message = (f"sink {wanted!r} has type {sinks[wanted].config.type}: the console "
                   "reads alerts from a sqlite or elasticsearch sink")
    else:
        message = f"no sink named {wanted!r} to read alerts from"
    problem(("console", "alert_source"), message,
            did_you_mean(wanted, options) or f"use one of {', '.join(options)}")


def _blocking_warnings(collectors: Mapping[str, Plugin], sinks: Mapping[str, Plugin]
                       ) -> list[tuple[Loc, str, str]]:
    """A blocker sink beside a collector whose senders are not authenticated: either
    its blocks are refused (say so) or anyone who can send to it can block addresses."""
    blockers = sorted(name for name, p in sinks.items() if p.config.type == "blocker")
    if not blockers:
        return []
    which = ", ".join(blockers)
    out: list[tuple[Loc, str, str]] = []
    for name, plugin in collectors.items():
        inputs = plugin.config.unauthenticated_inputs()
        if not inputs:
            continue
        listed = ", ".join(inputs)
        hint = plugin.config.unauthenticated_hint()
        if plugin.config.allows_unauthenticated_blocking():
            out.append((("collectors", name, "allow_unauthenticated_blocking"),
                        f"allow_unauthenticated_blocking is on: anyone who can send to "
                        f"{listed} (senders can be forged) can make the blocker "
                        f"({which}) block any address that is not allowlisted",
                        f"{hint}, and turn the option off"))
        else:
            out.append((("collectors", name),
                        f"{listed} cannot authenticate its senders: block decisions caused "
                        f"by its messages are refused (unauthenticated_source) by the "
                        f"blocker ({which})",
                        f"{hint}, or set allow_unauthenticated_blocking: true to "
                        "enforce them anyway"))
    return out


def _decoder_warnings(collectors: Mapping[str, Plugin], sinks: Mapping[str, Plugin]
                      ) -> list[tuple[Loc, str, str]]:
    """A collector whose records fall back to the generic ``json`` decoder because
    no ``decoder:`` is set: a vendor's alerts then decode as plain events, which a
    sink with ``select: alerts`` drops without a word (3 EDR alerts received, 0 stored)."""
    alerts_only = bool(sinks) and all(
        getattr(p.config, "select", "all") == "alerts" for p in sinks.values())
    out: list[tuple[Loc, str, str]] = []
    for name, plugin in collectors.items():
        config: CollectorConfig = plugin.config
        if (type(config).default_decoder_fits or "decoder" in config.model_fields_set
                or type(config).model_fields["decoder"].default != "json"):
            continue
        users = config.default_decoder_users()
        if not users:
            continue
        kept = ("; no sink stores plain events (every sink has select: alerts), so they "
                "are kept nowhere" if alerts_only else "")
        out.append((("collectors", name),
                    f"no decoder is set, so {', '.join(users)} are read as ECS-shaped JSON "
                    f"(the default `json`): a vendor's alerts then become plain events "
                    f"(event.kind: event){kept}",
                    "name the source's decoder (server_edr, workstation_edr, suricata, "
                    "wazuh, winlogbeat, windows_json, cef or one declared under "
                    "decoders:); write `decoder: json` if the records really are ECS JSON"))
    return out


def _check_zones(name: str, config: CollectorConfig, decoders: Mapping[str, Plugin],
                 problem: typing.Callable[..., None]) -> None:
    """``timezone`` / ``sender_timezones`` on a collector whose decoders never read a
    time without a zone would be silently ignored: refuse it."""
    keys = [k for k, value in (("timezone", config.timezone),
                               ("sender_timezones", config.sender_timezones)) if value]
    if not keys:
        return
    refs = [ref for _, ref in config.decoder_refs() if ref in decoders]
    if not refs or any("timezone" in type(decoders[ref].config).model_fields for ref in refs):
        return
    for key in keys:
        problem(("collectors", name, key),
                f"{key} has no effect: decoder {', '.join(repr(r) for r in sorted(set(refs)))} "
                "reads no timestamps without a zone",
                "only the syslog, cef and windows_json decoders (and decoders of their types) "
                "use it; a mapping file sets its zone under timestamp.timezone")


def _check_decoder_refs(raw: Mapping[str, Any], valid: Mapping[str, Plugin],
                        decoders: Mapping[str, Plugin], declared: Mapping[str, Any],
                        problem: typing.Callable[..., None]) -> None:
    """Every decoder a collector names must exist. A collector whose own section is
    invalid (a misspelled key) is checked too, from its raw keys, against every declared
    decoder: in this run, not in the next one after the key is fixed."""
    every_field: list[tuple[str, ...]] | None = None
    for name, body in raw.items():
        if name in valid:
            config: CollectorConfig = valid[name].config
            refs, known = config.decoder_refs(), decoders
        elif isinstance(body, Mapping):
            # Its type may be the misspelled part: read it where any collector names
            # decoders (CollectorConfig.decoder_fields of every type).
            every_field = every_field if every_field is not None else _every_decoder_field()
            refs, known = strings_at(body, every_field), declared
        else:
            continue
        for loc, ref in refs:
            if ref not in known:
                hint = did_you_mean(ref, known) or (
                    f"declare it under decoders: or use one of {', '.join(sorted(decoders))}")
                problem(("collectors", name, *loc), f"unknown decoder {ref!r}", hint)


def _every_decoder_field() -> list[tuple[str, ...]]:
    """Where the collector types name decoders, each key path once, in the order of the
    types (:attr:`CollectorConfig.decoder_fields`); types that cannot be loaded here
    add none."""
    fields = list(CollectorConfig.decoder_fields)
    for type_ in known_types("collector"):
        with contextlib.suppress(PluginError):
            model = lookup("collector", type_).load().Config
            fields += [f for f in model.decoder_fields if f not in fields]
    return fields


# -- the second pass: what the configuration names in other files ----------------------

def _value(source: Any, *path: str) -> Any:
    """``source.a.b`` of a validated document, or ``source["a"]["b"]`` of a raw one."""
    node = source
    for key in path:
        node = node.get(key) if isinstance(node, Mapping) else getattr(node, key, None)
        if node is None:
            return None
    return node


def _strings(value: Any) -> list[str]:
    return [v if isinstance(v, str) else "" for v in value] if isinstance(value, list) else []


def reference_problems(config: Config) -> list[ConfigProblem]:
    """The second validation pass of a valid document (``socd check-config``): every
    file it names must exist and be valid (IoC lists, mapping files, the asset
    inventory, GeoIP databases, the templates folder, allowlist files). All are
    reported at once; loading a document with other problems reports them too."""
    lines: Lines = {}
    with contextlib.suppress(OSError, UnicodeDecodeError, yaml.YAMLError):
        node = yaml.compose(Path(config.file).read_text(encoding="utf-8"),
                            Loader=yaml.SafeLoader)
        lines = line_index(node) if node is not None else {}
    return _reference_problems(config.document, config.config_dir, config.decoders,
                               problem_at(config.file, lines))


def _reference_problems(source: Any, config_dir: str, decoders: Mapping[str, Plugin],
                        make: MakeProblem) -> list[ConfigProblem]:
    """Files named by ``source`` (a validated document or the raw one) that are missing
    or invalid; ``decoders`` are the declared ones (their mapping files are read)."""
    out: list[ConfigProblem] = []
    hint = "paths are relative to the config file's folder"

    def unreadable(loc: Loc, path: str, what: str = "file") -> bool:
        # Missing, or there but not readable by this user (said so, never "no such file").
        problem = read_problem(resolve_path(config_dir, path), what=what)
        if problem is not None:
            out.append(make(loc, problem.message, problem.hint or hint))
        return problem is not None

    for i, path in enumerate(_strings(_value(source, "classification", "ioc_files"))):
        if path:
            unreadable(("classification", "ioc_files", i), path)
    for i, path in enumerate(_strings(_value(source, "allowlist", "files"))):
        if path:
            unreadable(("allowlist", "files", i), path)
    for key in ("assets_file", "geoip_city_db", "geoip_asn_db"):
        path = _value(source, "enrichment", key)
        if isinstance(path, str) and path:
            full = resolve_path(config_dir, path)
            if not unreadable(("enrichment", key), path) and key == "assets_file":
                from socd.config.assets import load_inventory

                try:
                    load_inventory(full)
                except ConfigError as exc:
                    out.extend(exc.problems)
    folder = _value(source, "notifications", "templates_dir")
    if (isinstance(folder, str) and folder
            and not unreadable(("notifications", "templates_dir"), folder, "folder")
            and not os.path.isdir(resolve_path(config_dir, folder))):
        out.append(make(("notifications", "templates_dir"),
                        f"not a folder: {resolve_path(config_dir, folder)}", hint))
    for name, plugin in decoders.items():
        ref = getattr(plugin.config, "mapping", None)
        if getattr(plugin.config, "type", None) != "mapping" or not isinstance(ref, str):
            continue
        from socd.config.mappings import load_mapping

        try:
            load_mapping(ref, config_dir)
        except ConfigError as exc:
            for p in exc.problems:
                where = f"{p.file}" + (f" {p.path}" if p.path else "")
                out.append(make(("decoders", name, "mapping"), f"mapping {where}: {p.message}",
                                p.hint))
    return out


def _plugins(kind: Kind, section: str, raw: Mapping[str, Any], base: type[PluginConfig],
             problem: typing.Callable[..., None],
             optional: set[str] | None = None, *, unset: UnsetVariables | None = None
             ) -> dict[str, Plugin]:
    """Validate each plugin section; names in ``optional`` (built-in decoders) are
    left out quietly when their module cannot be imported. A section with unset
    ``${VAR}``s is kept, marked (:attr:`Plugin.unresolved`), when nothing else is wrong
    with it."""
    out: dict[str, Plugin] = {}
    for name, body in raw.items():
        loc: Loc = (section, name)
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}", str(name)):
            problem(loc, f"invalid {kind} name {name!r}",
                    "use letters, digits, '_', '-' or '.'; names become metric labels")
            continue
        if not isinstance(body, Mapping):
            problem(loc, f"a {kind} must be a mapping with a 'type' key")
            continue
        type_ = body.get("type")
        if not isinstance(type_, str):
            problem((*loc, "type"), f"missing 'type'; known {kind} types: "
                    f"{', '.join(known_types(kind))}")
            continue
        try:
            cls = lookup(kind, type_).load()
        except PluginError as exc:
            if optional and name in optional:
                continue
            message = str(exc)
            if "unknown" in message:
                message = unknown_type_message(kind, type_)
            problem((*loc, "type"), message)
            continue
        model: type[BaseModel] = cls.Config
        missing = unset.under(loc) if unset is not None else []
        try:
            config = model.model_validate(dict(body))
        except ValidationError as exc:
            report(exc, model, loc, problem)
            if not missing or not all(unset is not None and unset.covers((*loc, *e["loc"]))
                                      for e in exc.errors()):
                continue
            # Invalid only because a ${VAR} is unset (`url: ${SLACK_URL}` is no URL): keep
            # it unvalidated; it is never built (instantiate raises its problems).
            config = model.model_construct(**dict(body))
        assert unset is not None or not missing
        unresolved = unset.defer(config, loc, missing) if unset is not None else ()
        out[str(name)] = Plugin(str(name), cls, config, unresolved)
    return out
