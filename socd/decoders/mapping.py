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

import math
import re
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

import orjson
from pydantic import Field

from socd.codegen import Source
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
_SEVERITIES_CACHED = 256  # vendor severity texts and their code, per decoder
_MISSING = object()
_DIGITS = "0123456789"
# An ISO 8601 time to the second with a numeric offset, in the very form isoformat()
# writes an aware time (ASCII digits only: [0-9], not \d): such a text, once
# fromisoformat() accepts it, is its own RFC 3339 form; only "-00:00" is written "+00:00",
# and an offset's minutes past 59 are carried into its hours (fromisoformat() takes
# "+07:60" as +08:00), so they are left to the parse.
_RFC3339_SECONDS = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}[+-][0-9]{2}:[0-5][0-9]")


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
        self._minutes: set[str] = set()  # RFC 3339 texts without seconds, found valid
        self._iso = ts is None or ts.format is None
        self._severity_codes: dict[str, str | None] = {}
        # Every path convert() writes: normalize() checks only the typed fields there.
        self.typed_plan([*self.spec.fields, *self.spec.constants, "@timestamp",
                         "socd.vendor_severity", "socd.severity", "socd.vendor"])
        compiled = _compile_convert(self, template)
        if compiled is not None:
            self.convert = compiled  # type: ignore[method-assign,assignment]

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

    def _severity_code(self, vendor: Any) -> str | None:
        """The code of the table's severity for a vendor value (None: no severity);
        kept for up to 256 short texts (a vendor has a handful of labels; folding one
        costs about 0.5 us)."""
        assert self._severity is not None
        table = self._severity[1]
        if type(vendor) is not str or len(vendor) > _TIME_CHARS_CACHED:
            sev = table.lookup(vendor)
            return None if sev is None else sev.value
        code = self._severity_codes.get(vendor, _MISSING)
        if code is _MISSING:
            sev = table.lookup(vendor)
            code = None if sev is None else sev.value
            if len(self._severity_codes) >= _SEVERITIES_CACHED:
                self._severity_codes.clear()
            self._severity_codes[vendor] = code
        return code  # type: ignore[return-value]

    def _timestamp(self, value: Any) -> Any:
        if isinstance(value, str):
            if (self._iso and len(value) == 25 and value[:17] + value[19:] in self._minutes
                    and value[17] in "012345" and value[18] in _DIGITS):
                text = value  # of a minute found valid before: see _parse_time
            else:
                # Records of one second share their timestamp text: its RFC 3339 form is
                # kept for short texts (a long one is no time; never a big cache key).
                cached = self._times.get(value)
                if cached is None:
                    text = self._parse_time(value)
                    if len(value) <= _TIME_CHARS_CACHED:
                        if len(self._times) >= _TIMES_CACHED:
                            self._times.clear()
                        self._times[value] = text
                else:
                    text = cached
            # normalize() would parse this text again only to return it unchanged.
            self._own_timestamp = text
            return text
        return value

    def _parse_time(self, value: str) -> str:
        """RFC 3339 text of a vendor timestamp, read with the mapping's format (ISO 8601
        by default) in its time zone when the text has none."""
        fmt = self.spec.timestamp.format if self.spec.timestamp else None
        if fmt is None and len(value) == 25:
            # A minute already found valid in this form (the text without its seconds):
            # the text is valid exactly when its seconds are 00 to 59.
            minute = value[:17] + value[19:]
            if minute in self._minutes and value[17] in "012345" and value[18] in _DIGITS:
                return value
            if _RFC3339_SECONDS.fullmatch(value) and value[19:] != "-00:00":
                # Already the text isoformat() would write (what most vendors send): it
                # is checked (an impossible date or offset is refused as below) but not
                # formatted again (isoformat() is most of a parse's cost).
                try:
                    datetime.fromisoformat(value)
                except ValueError as exc:
                    raise DecodeError("invalid_field", f"timestamp {value[:64]!r} does "
                                      "not match ISO 8601") from exc
                if len(self._minutes) >= _TIMES_CACHED:
                    self._minutes.clear()
                self._minutes.add(minute)
                return value
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


# -- the compiled convert() ------------------------------------------------------------
#
# convert() above interprets the mapping: per field a loop step unpacks a tuple, tests
# which kind of source path it has and looks its parent object up in a list. The
# function below is the same work written out once per mapping, as Python source
# compiled at start-up: the constants' objects as one dict display, every field as a few
# straight lines. Nothing of the mapping file enters the source text: keys, source
# paths and constant values are bound names (socd.codegen), and every identifier comes
# from a counter of the writer's.

_SCALARS = (str, int, float, bool, type(None))


def _plain(value: Any) -> bool:
    """Whether ``value`` is JSON that a dict/list display rebuilds as both template
    copies do (the plain copy and the JSON parse): strings, numbers (finite: orjson
    writes NaN as null), booleans, null, and lists and objects of them."""
    kind = type(value)
    if kind is dict:
        return all(type(k) is str and _plain(v) for k, v in value.items())
    if kind is list:
        return all(_plain(v) for v in value)
    if kind is float:
        return math.isfinite(value)
    return kind in _SCALARS


def _parents(fields: list[tuple[list[str], list[str]]], template: Event,
             ) -> dict[tuple[str, ...], str] | None:
    """Every parent object of a field and its ancestors, each with the name of its
    variable; None when a destination (a field, or a constant that is not an object)
    lies at or above one, so that the object could be replaced while fields are filled."""
    leaves = {tuple(dst) for dst, _ in fields}
    parents: dict[tuple[str, ...], str] = {}
    for dst, _ in fields:
        for end in range(1, len(dst)):
            path = tuple(dst[:end])
            if path in leaves:
                return None
            node: Any = template
            for part in path:
                node = node.get(part, _MISSING) if type(node) is dict else _MISSING
            if node is not _MISSING and type(node) is not dict:
                return None
            parents.setdefault(path, f"_n{len(parents)}")
    return parents


class _ConvertWriter(Source):
    """Writes one mapping's convert() (:class:`socd.codegen.Source`: keys, paths and
    constant values are bound names, never source text)."""

    def __init__(self, parents: dict[tuple[str, ...], str]) -> None:
        super().__init__()
        self.parents = parents
        self.bound: set[tuple[str, ...]] = set()  # parents made with the constants

    def display(self, value: Any, path: tuple[str, ...]) -> str:
        """A display building ``value`` afresh; a parent object in it is also bound to
        its variable."""
        if type(value) is dict:
            items = ", ".join(f"{self.const(k)}: {self.display(v, (*path, k))}"
                              for k, v in value.items())
            name = self.parents.get(path) if path else None
            if name is None:
                return f"{{{items}}}"
            self.bound.add(path)
            return f"({name} := {{{items}}})"
        if type(value) is list:
            return "[" + ", ".join(self.display(v, ()) for v in value) + "]"
        return self.const(value)

    def ensure(self, path: tuple[str, ...], depth: int) -> None:
        """Lines that make the parent object at ``path`` when it is still missing (it
        cannot exist then: no destination lies at or above it)."""
        if path in self.bound:
            return
        self.add(depth, f"if {self.parents[path]} is None:")
        if len(path) > 1:
            self.ensure(path[:-1], depth + 1)
        above = self.parents[path[:-1]] if len(path) > 1 else "event"
        self.add(depth + 1, f"{self.parents[path]} = {above}[{self.const(path[-1])}] = {{}}")

    def field(self, dst: list[str], source: list[str]) -> None:
        self.add(1, f"v = get({self.const(source[0])})")
        for part in source[1:]:
            self.add(1, f"v = v.get({self.const(part)}) if isinstance(v, dict) else None")
        self.add(1, 'if v is not None and v != "":')
        parent = tuple(dst[:-1])
        if parent:
            self.ensure(parent, 2)
            self.add(2, f"{self.parents[parent]}[{self.const(dst[-1])}] = v")
        else:
            self.add(2, f"event[{self.const(dst[-1])}] = v")

    def read(self, path: str) -> str:
        """An expression reading a source path (a dotted one through event.get, which
        also walks Mappings, as convert() does)."""
        if "." in path:
            return f"_get(obj, {self.const(path)})"
        return f"get({self.const(path)})"

    def severity(self, decoder: MappingDecoder, socd: str) -> None:
        assert decoder._severity is not None
        self.bind(_codes=decoder._severity_codes, _severity_code=decoder._severity_code)
        self.add(1, f"vendor = {self.read(decoder._severity[0])}")
        self.add(1, f"{socd}[{self.const('vendor_severity')}] = vendor")
        # A text seen before: its code from the decoder's cache, else the table.
        self.add(1, "code = _codes.get(vendor) if type(vendor) is str else None")
        self.add(1, "if code is None:")
        self.add(2, "code = _severity_code(vendor)")
        self.add(1, "if code is not None:")
        self.add(2, f"{socd}[{self.const('severity')}] = code")


def _compile_convert(decoder: MappingDecoder,
                     template: Event) -> Callable[[dict[str, Any]], Event] | None:
    """``decoder.convert`` as one generated function, or None where the mapping has what
    only the interpreted loop handles alike: constants that are not plain JSON, or a
    destination at or above the parent object of a field (see :func:`_parents`)."""
    spec = decoder.spec
    fields = [(dst.split("."), src.split(".")) for dst, src in spec.fields.items()
              if dst not in spec.constants]
    parents = _parents(fields, template) if _plain(template) else None
    if parents is None:
        return None
    severity = decoder._severity is not None
    if ((severity or spec.keep_vendor) and type(template.get("socd")) is dict
            and all(dst != ["socd"] for dst, _ in fields)):
        parents.setdefault(("socd",), f"_n{len(parents)}")  # the severities' object
    out = _ConvertWriter(parents)
    out.add(1, "get = obj.get")
    out.add(1, f"event = {out.display(template, ())}")
    for path, name in parents.items():
        if path not in out.bound:
            out.add(1, f"{name} = None")
    for dst, source in fields:
        out.field(dst, source)
    out.bind(_get=get, _DecodeError=DecodeError, _timestamp=decoder._timestamp)
    ts = spec.timestamp
    if ts is not None:
        out.add(1, f"t = {out.read(ts.field)}")
        out.add(1, "if t is None:")
        reason, message = "missing_field", f"timestamp field {ts.field!r} is missing"
        out.add(2, f"raise _DecodeError({out.const(reason)}, {out.const(message)})")
        out.add(1, f"event[{out.const('@timestamp')}] = _timestamp(t)")
    socd = parents.get(("socd",), "")
    if (severity or spec.keep_vendor) and ("socd",) not in out.bound:
        socd = "socd"
        out.add(1, f"socd = event.setdefault({out.const('socd')}, {{}})")
    if severity:
        out.severity(decoder, socd)
    if spec.keep_vendor:
        out.add(1, f"{socd}[{out.const('vendor')}] = obj")
    out.add(1, "return event")
    function: Callable[[dict[str, Any]], Event] = out.build("convert", "obj",
                                                            f"mapping {decoder.name}")
    return function
