"""The ``mapping`` decoder: vendor JSON turned into ECS by a YAML field mapping.

A new EDR product needs a mapping file, not code. The shipped mappings live in
``socd/default/mappings/``; a config may name one of them or a path::

    decoders:
      edr_servers:
        type: mapping
        mapping: server_edr              # or: /etc/socd/mappings/acme.yaml

Mapping file format (see docs/configuration.md, "Mapping files")::

    name: server_edr
    timestamp: {field: detected_at, format: "%d/%m/%Y %H:%M:%S", timezone: "+07:00"}
    fields: {host.name: hostname, source.ip: remote_ip}     # ECS path: vendor path
    severity: {field: severity, table: {cao: high}, default: medium}
    constants: {event.kind: alert, socd.asset_kind: server}
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from importlib import resources
from typing import Any, Literal

import orjson
import yaml
from pydantic import Field, ValidationError, field_validator

from socd.config import DecoderConfig, StrictModel, resolve_path
from socd.config.located import report
from socd.decoders.base import INPUT_SOCD_KEYS, BaseDecoder
from socd.errors import ConfigError, ConfigProblem, DecodeError
from socd.event import ASSET_KINDS, Event, get, node_at, put_parts
from socd.plugins import PluginContext
from socd.severity import Severity, SeverityTable
from socd.tz import parse_iso


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


def load_mapping(ref: str, config_dir: str) -> tuple[str, MappingSpec]:
    """Find and validate a mapping by shipped name or by path."""
    if os.sep in ref or ref.endswith((".yaml", ".yml")):
        path = resolve_path(config_dir, ref)
    else:
        path = str(resources.files("socd").joinpath(f"default/mappings/{ref}.yaml"))
    try:
        with open(path, encoding="utf-8") as fh:
            raw = yaml.safe_load(fh)
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


class MappingDecoder(BaseDecoder):
    """Vendor JSON in, events out, as a mapping file says."""

    class Config(DecoderConfig):
        type: Literal["mapping"]
        mapping: str = Field(description="A shipped mapping name or a path to a mapping file.")

    def __init__(self, config: Config, ctx: PluginContext) -> None:
        super().__init__(ctx.name, severity_table=config.severity_table,
                         keep_original=config.keep_original)
        self.path, self.spec = load_mapping(config.mapping, ctx.config_dir)
        # Hot path: constants are serialized once and each event starts as a parse of
        # them (faster than setting each one); fields are (parent path, leaf key,
        # top-level source key or None, source path). A constant wins over a field
        # with the same destination, as the mapping format documents.
        template: Event = {}
        for dst, value in self.spec.constants.items():
            put_parts(template, dst.split("."), value)
        self._template = orjson.dumps(template)
        constant_paths = set(self.spec.constants)
        self._fields = [
            (tuple(dst.split(".")[:-1]), dst.split(".")[-1],
             src if "." not in src else None, src.split("."))
            for dst, src in self.spec.fields.items() if dst not in constant_paths]
        sev = self.spec.severity
        self._severity = (
            (sev.field, SeverityTable(self.spec.name, {k: v.value for k, v in sev.table.items()},
                                      sev.default)) if sev else None)
        ts = self.spec.timestamp
        self._tz = _parse_offset(ts.timezone) if ts else timezone(timedelta(hours=7))

    def convert(self, obj: dict[str, Any]) -> Event:
        event: Event = orjson.loads(self._template)
        nodes: dict[tuple[str, ...], dict[str, Any]] = {(): event}
        for parent, leaf, key, src in self._fields:
            value: Any
            if key is not None:
                value = obj.get(key)
            else:
                value = obj
                for part in src:
                    if not isinstance(value, dict):
                        value = None
                        break
                    value = value.get(part)
            if value is None or value == "":
                continue
            node = nodes.get(parent)
            if node is None:
                node = nodes[parent] = node_at(event, parent)
            node[leaf] = value
        ts = self.spec.timestamp
        if ts is not None:
            raw_ts = get(obj, ts.field)
            if raw_ts is None:
                raise DecodeError("missing_field", f"timestamp field {ts.field!r} is missing")
            event["@timestamp"] = self._timestamp(raw_ts)
        if self._severity is not None:
            field, table = self._severity
            vendor = get(obj, field)
            socd = event.setdefault("socd", {})
            socd["vendor_severity"] = vendor
            sev = table.lookup(vendor)
            if sev is not None:
                socd["severity"] = sev.value
        if self.spec.keep_vendor:
            event.setdefault("socd", {})["vendor"] = obj
        return event

    def _timestamp(self, value: Any) -> Any:
        fmt = self.spec.timestamp.format if self.spec.timestamp else None
        if isinstance(value, str):
            try:
                parsed = (datetime.strptime(value.strip(), fmt) if fmt
                          else parse_iso(value.strip(), naive=None))
            except ValueError as exc:
                raise DecodeError("invalid_field",
                                  f"timestamp {value[:64]!r} does not match "
                                  f"{fmt or 'ISO 8601'}") from exc
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=self._tz)
            return parsed.isoformat()
        return value


def _parse_offset(text: str) -> timezone:
    sign = -1 if text.startswith("-") else 1
    hours, _, minutes = text.lstrip("+-").partition(":")
    return timezone(sign * timedelta(hours=int(hours), minutes=int(minutes or 0)))
