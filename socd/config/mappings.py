"""Decoder mapping files: the YAML format that turns a vendor's JSON into ECS for the
``mapping`` decoder (socd/decoders/mapping.py), and how a file is found and checked.

Configuration data, like the asset inventory: ``socd check-config`` checks each mapping
a config names (file, key path, hint) before any decoder is built. Format::

    name: server_edr
    timestamp: {field: detected_at, format: "%d/%m/%Y %H:%M:%S", timezone: "+07:00"}
    fields: {host.name: hostname, source.ip: remote_ip}     # ECS path: vendor path
    severity: {field: severity, table: {cao: high}, default: medium}
    constants: {event.kind: alert, socd.asset_kind: server}
"""

from __future__ import annotations

import os
from importlib import resources
from typing import Any, TextIO

import yaml
from pydantic import Field, ValidationError, field_validator

from socd.config.located import read_fast, report
from socd.config.models import StrictModel
from socd.config.paths import resolve_path
from socd.errors import ConfigError, ConfigProblem
from socd.event import INPUT_SOCD_KEYS
from socd.severity import Severity
from socd.vocabulary import ASSET_KINDS


class TimestampSpec(StrictModel):
    field: str
    format: str | None = Field(None, description="strptime format; ISO 8601 when unset.")
    timezone: str = Field("+07:00", pattern=r"^[+-]?([01]?\d|2[0-3])(:[0-5]\d)?$",
                          description="Offset for timestamps that carry none.")


class SeveritySpec(StrictModel):
    field: str
    table: dict[str, Severity]
    default: Severity | None = None


class MappingSpec(StrictModel):
    """The content of a mapping file."""

    name: str
    description: str = ""
    timestamp: TimestampSpec | None = None
    fields: dict[str, str] = Field(default_factory=dict)
    severity: SeveritySpec | None = None
    constants: dict[str, Any] = Field(default_factory=dict)
    keep_vendor: bool = Field(True, description="Keep the whole vendor record in socd.vendor.")

    @field_validator("fields", "constants")
    @classmethod
    def _own_socd_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        """A mapping may fill only the socd keys a decoder may set (INPUT_SOCD_KEYS):
        the rest of the namespace is socd's own (actions, IoC marks, alert status...)."""
        for dst in value:
            parts = dst.split(".")
            if parts[0] == "socd" and (len(parts) < 2 or parts[1] not in INPUT_SOCD_KEYS):
                raise ValueError(f"{dst!r} is socd's own field; a mapping may set only "
                                 + ", ".join(f"socd.{k}" for k in sorted(INPUT_SOCD_KEYS)))
        kind = value.get("socd.asset_kind")
        if kind is not None and isinstance(kind, str) and kind not in ASSET_KINDS:
            raise ValueError(f"socd.asset_kind {kind!r} is not one of "
                             + ", ".join(sorted(ASSET_KINDS)))
        return value


def _safe_load(fh: TextIO) -> Any:
    """``yaml.safe_load(fh)``: read by libyaml when it reads the text as PyYAML does
    (:func:`~socd.config.located.read_fast`; the shipped EDR mappings, at every start:
    ~5 ms less), else by PyYAML from the file, for its errors, which name the file."""
    try:
        text: str | None = fh.read()
    except UnicodeDecodeError:
        text = None  # PyYAML's reading raises it as before
    fast = read_fast(text) if text is not None else None
    if fast is not None:
        return fast[0]
    fh.seek(0)
    return yaml.safe_load(fh)


def load_mapping(ref: str, config_dir: str) -> tuple[str, MappingSpec]:
    """Find and validate a mapping by shipped name or by path."""
    if os.sep in ref or ref.endswith((".yaml", ".yml")):
        path = resolve_path(config_dir, ref)
    else:
        path = str(resources.files("socd").joinpath(f"default/mappings/{ref}.yaml"))
    try:
        with open(path, encoding="utf-8") as fh:
            raw = _safe_load(fh)
    except OSError as exc:
        raise ConfigError([ConfigProblem(path, "", f"cannot read mapping: {exc.strerror}",
                                         "name a shipped mapping (server_edr, workstation_edr) "
                                         "or a path to a YAML file")]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([ConfigProblem(path, "", f"invalid YAML: {exc}")]) from exc
    problems: list[ConfigProblem] = []
    try:
        spec = MappingSpec.model_validate(raw)
    except ValidationError as exc:
        report(exc, MappingSpec, (),
               lambda loc, msg, hint=None: problems.append(
                   ConfigProblem(path, ".".join(map(str, loc)), msg, hint)))
        raise ConfigError(problems) from None
    return path, spec
