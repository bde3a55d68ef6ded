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

from datetime import datetime, timedelta, timezone
from typing import Any, Literal

import orjson
from pydantic import Field

from socd.config import DecoderConfig
from socd.config.mappings import load_mapping
from socd.decoders.base import BaseDecoder
from socd.errors import DecodeError
from socd.event import Event, get, node_at, put_parts
from socd.plugins import PluginContext
from socd.severity import SeverityTable
from socd.tz import parse_iso

_TIMES_CACHED = 4096  # vendor timestamp texts and their RFC 3339 form, per decoder
_TIME_CHARS_CACHED = 64


class MappingDecoder(BaseDecoder):
    """Vendor JSON in, events out, as a mapping file says."""

    class Config(DecoderConfig):
        type: Literal["mapping"]
        mapping: str = Field(description="A shipped mapping name or a path to a mapping file.")

    def __init__(self, config: Config, ctx: PluginContext) -> None:
        super().__init__(ctx.name, severity_table=config.severity_table,
                         keep_original=config.keep_original)
        self.path, self.spec = load_mapping(config.mapping, ctx.config_dir)
        # Hot path: each event starts as a copy of the constants (two levels of plain
        # values: dict copies; anything deeper: a parse of their JSON, as fresh as a
        # copy); fields are _FieldSteps; the parent objects of one event are kept in a
        # list by index (a tuple key would be hashed per field). A constant wins over a
        # field with the same destination, as the mapping format documents.
        template: Event = {}
        for dst, value in self.spec.constants.items():
            put_parts(template, dst.split("."), value)
        self._template = orjson.dumps(template)
        self._flat_template = list(template.items()) if all(
            type(v) is dict and not any(isinstance(x, dict | list) for x in v.values())
            for v in template.values()) else None
        constant_paths = set(self.spec.constants)
        parents: dict[tuple[str, ...], int] = {}
        self._fields = [_field_step(parents, dst, src)
                        for dst, src in self.spec.fields.items() if dst not in constant_paths]
        self._parents = len(parents)
        sev = self.spec.severity
        self._severity = (
            (sev.field, SeverityTable(self.spec.name, {k: v.value for k, v in sev.table.items()},
                                      sev.default)) if sev else None)
        ts = self.spec.timestamp
        self._tz = _parse_offset(ts.timezone) if ts else timezone(timedelta(hours=7))
        self._times: dict[str, str] = {}
        # Every path convert() writes: normalize() checks only the typed fields there.
        self.typed_plan([*self.spec.fields, *self.spec.constants, "@timestamp",
                         "socd.vendor_severity", "socd.severity", "socd.vendor"])

    def _fresh(self) -> Event:
        """A new event holding the constants."""
        flat = self._flat_template
        if flat is None:
            event: Event = orjson.loads(self._template)
            return event
        return {key: value.copy() for key, value in flat}

    def convert(self, obj: dict[str, Any]) -> Event:
        event = self._fresh()
        nodes: list[dict[str, Any] | None] = [None] * self._parents
        get_top = obj.get
        for i, parent, top, leaf, first, second, deeper in self._fields:
            value: Any = get_top(first)
            if second is not None:
                value = value.get(second) if isinstance(value, dict) else None
            elif deeper:
                for part in deeper:
                    if not isinstance(value, dict):
                        value = None
                        break
                    value = value.get(part)
            if value is None or value == "":
                continue
            node = nodes[i]
            if node is None:
                if top is None:
                    node = nodes[i] = node_at(event, parent)
                else:  # node_at(event, (top,)) without the call
                    node = event.get(top)
                    if not isinstance(node, dict):
                        node = event[top] = {}
                    nodes[i] = node
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
        if isinstance(value, str):
            # Records of one second share their timestamp text: its RFC 3339 form is
            # kept for short texts (a long one is no time; never a big cache key).
            text = self._times.get(value)
            if text is None:
                text = self._parse_time(value)
                if len(value) <= _TIME_CHARS_CACHED:
                    if len(self._times) >= _TIMES_CACHED:
                        self._times.clear()
                    self._times[value] = text
            # normalize() would parse this text again only to return it unchanged.
            self._own_timestamp = text
            return text
        return value

    def _parse_time(self, value: str) -> str:
        """RFC 3339 text of a vendor timestamp, read with the mapping's format (ISO 8601
        by default) in its time zone when the text has none."""
        fmt = self.spec.timestamp.format if self.spec.timestamp else None
        try:
            parsed = (datetime.strptime(value.strip(), fmt) if fmt
                      else parse_iso(value.strip(), naive=None))
        except ValueError as exc:
            raise DecodeError("invalid_field", f"timestamp {value[:64]!r} does not match "
                              f"{fmt or 'ISO 8601'}") from exc
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=self._tz)
        return parsed.isoformat()


# How convert() fills one destination: (index of the parent object, parent path, its key
# when it is a top-level object (made inline: most are), leaf key; the source path as
# its first part, its second when it has exactly two (most nested ones: inline), else
# the parts after the first).
_FieldStep = tuple[int, tuple[str, ...], str | None, str, str, str | None, tuple[str, ...]]


def _field_step(parents: dict[tuple[str, ...], int], dst: str, src: str) -> _FieldStep:
    """The step for ``dst: src``, numbering a new parent object in ``parents``."""
    *parent, leaf = dst.split(".")
    first, *rest = src.split(".")
    return (parents.setdefault(tuple(parent), len(parents)), tuple(parent),
            parent[0] if len(parent) == 1 else None, leaf, first,
            rest[0] if len(rest) == 1 else None, tuple(rest) if len(rest) > 1 else ())


def _parse_offset(text: str) -> timezone:
    sign = -1 if text.startswith("-") else 1
    hours, _, minutes = text.lstrip("+-").partition(":")
    return timezone(sign * timedelta(hours=int(hours), minutes=int(minutes or 0)))
