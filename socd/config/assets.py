"""The asset inventory: the file (YAML or CSV) that names each asset's unit, security
level and kind, how it is read and checked, and the lookups enrichment makes in it.

Configuration data, like a decoder's mapping file: ``socd check-config`` checks it
(file, row or key, hint) and :mod:`socd.engine.enrich` looks events up in it. Lookups
are dictionary lookups: exact IPs and host names in one dict each, CIDRs in one dict
per prefix length keyed by the network's integer, probed from the longest prefix down,
so an event costs a handful of dict probes whatever the inventory size
(docs/enrichment.md).
"""

from __future__ import annotations

import contextlib
import csv
import functools
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from socd import netaddr
from socd.config.located import did_you_mean, parse
from socd.config.models import StrictModel
from socd.errors import ConfigError, ConfigProblem
from socd.severity import BUILTIN_TABLES, Severity

AssetKind = Literal["server", "workstation", "network", "application"]
KEY_COLUMNS = ("ip", "cidr", "hostname")


class AssetEntry(StrictModel):
    """One row of the inventory: keys (ip / cidr / hostname) and what they map to."""

    ip: list[str] = Field(default_factory=list, description="Exact addresses of the asset.")
    cidr: list[str] = Field(default_factory=list, description="Networks (longest prefix wins).")
    hostname: list[str] = Field(default_factory=list,
                                description="Host names (case-insensitive).")
    unit: str | None = Field(None, description="Owning agency (đơn vị), e.g. 'Sở Tài chính'.")
    system_level: int | None = Field(None, ge=1, le=5,
                                     description="Security level (cấp độ) 1-5.")
    asset_kind: AssetKind | None = None
    owner: str | None = Field(None, description="Person or team responsible.")
    criticality: Severity | None = Field(
        None, description="low, medium, high or critical (Vietnamese labels accepted).")
    description: str | None = Field(None, description="Free text; not copied to events.")

    @field_validator("ip", "cidr", "hostname", mode="before")
    @classmethod
    def _as_list(cls, value: Any) -> Any:
        if value is None:
            return []
        if isinstance(value, str):
            return [part for part in (p.strip() for p in value.replace(";", " ").split())
                    if part]
        if isinstance(value, int | float) and not isinstance(value, bool):
            return [str(value)]
        return value

    @field_validator("unit", "owner", "description", mode="before")
    @classmethod
    def _nfc(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = unicodedata.normalize("NFC", value.strip())
            return value or None
        return value

    @field_validator("criticality", mode="before")
    @classmethod
    def _criticality(cls, value: Any) -> Any:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        sev = BUILTIN_TABLES["vietnamese"].lookup(value) if isinstance(value, str) else None
        if sev is None:
            raise ValueError("criticality must be low, medium, high or critical "
                             "(or thấp, trung bình, cao, nghiêm trọng)")
        return sev

    @field_validator("system_level", "asset_kind", mode="before")
    @classmethod
    def _blank(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip()
            return value or None
        return value

    @model_validator(mode="after")
    def _has_key_and_value(self) -> AssetEntry:
        if not (self.ip or self.cidr or self.hostname):
            raise ValueError("an entry needs an ip, cidr or hostname")
        if all(v is None for v in (self.unit, self.system_level, self.asset_kind, self.owner,
                                   self.criticality)):
            raise ValueError("an entry sets nothing: give unit, system_level, asset_kind, "
                             "owner or criticality")
        return self


@dataclass(frozen=True, slots=True)
class Asset:
    """What the inventory says about one key."""

    key: str
    matched_by: str  # ip | cidr | hostname
    unit: str | None
    system_level: int | None
    asset_kind: str | None
    owner: str | None
    criticality: str | None


def _parse_ip(text: str) -> tuple[int, int, str] | None:
    """(version, integer, canonical text) of an address, or None."""
    text = text.strip()  # an inventory cell may carry spaces around the address
    if len(text) > netaddr.MAX_LENGTH:
        return None  # never an address, and never a cache key (it comes from input)
    return _parse_ip_text(text)


@functools.lru_cache(maxsize=65536)
def _parse_ip_text(text: str) -> tuple[int, int, str] | None:
    try:  # nothing but the address may be in the cell
        addr = netaddr.parse_address(text, count=False)
    except netaddr.AddressError:
        return None
    return addr.version, int(addr), str(addr)


def fold_hostname(name: str) -> str:
    return unicodedata.normalize("NFC", name).strip().casefold().rstrip(".")


class Inventory:
    """Asset lookups by exact IP, CIDR (longest prefix) and host name."""

    def __init__(self, source: str = "") -> None:
        self.source = source
        self.ips: dict[str, Asset] = {}
        self.hosts: dict[str, Asset] = {}
        self._short_hosts: dict[str, Asset | None] = {}
        self._nets: dict[int, dict[int, dict[int, Asset]]] = {4: {}, 6: {}}
        self._prefixes: dict[int, list[int]] = {4: [], 6: []}

    def __len__(self) -> int:
        return (len(self.ips) + len(self.hosts)
                + sum(len(d) for nets in self._nets.values() for d in nets.values()))

    # -- building ----------------------------------------------------------------------

    def add(self, entry: AssetEntry) -> None:
        """Index an entry whose keys were validated by :func:`_check_keys`."""
        def asset(key: str, matched_by: str) -> Asset:
            return Asset(key, matched_by, entry.unit, entry.system_level, entry.asset_kind,
                         entry.owner, entry.criticality.value if entry.criticality else None)

        for text in entry.ip:
            parsed = _parse_ip(text)
            if parsed is not None:
                self.ips[parsed[2]] = asset(parsed[2], "ip")
        for text in entry.cidr:
            net = netaddr.parse_network(text.strip(), strict=True, count=False)
            bits = 32 if net.version == 4 else 128
            shift = bits - net.prefixlen
            table = self._nets[net.version].setdefault(net.prefixlen, {})
            table[int(net.network_address) >> shift] = asset(str(net), "cidr")
            self._prefixes[net.version] = sorted(self._nets[net.version], reverse=True)
        for text in entry.hostname:
            folded = fold_hostname(text)
            self.hosts[folded] = asset(text.strip(), "hostname")
            short = folded.split(".", 1)[0]
            if short != folded:
                # An FQDN also answers to its short name, unless two FQDNs share it.
                self._short_hosts[short] = (
                    None if short in self._short_hosts else self.hosts[folded])

    # -- lookups -----------------------------------------------------------------------

    def exact_ip(self, text: str) -> Asset | None:
        hit = self.ips.get(text)
        if hit is not None or not self.ips:
            return hit
        parsed = _parse_ip(text)
        return self.ips.get(parsed[2]) if parsed is not None else None

    def cidr(self, text: str) -> Asset | None:
        parsed = _parse_ip(text)
        if parsed is None:
            return None
        version, number, _ = parsed
        bits = 32 if version == 4 else 128
        nets = self._nets[version]
        for prefixlen in self._prefixes[version]:
            hit = nets[prefixlen].get(number >> (bits - prefixlen))
            if hit is not None:
                return hit
        return None

    def match_ip(self, text: str) -> Asset | None:
        """Exact address first, then the longest CIDR that contains it."""
        return self.exact_ip(text) or self.cidr(text)

    def match_host(self, name: str) -> Asset | None:
        folded = fold_hostname(name)
        hit = self.hosts.get(folded)
        if hit is not None:
            return hit
        short = folded.split(".", 1)[0]
        if short != folded:
            hit = self.hosts.get(short)
            if hit is not None:
                return hit
        return self._short_hosts.get(folded)


# -- loading ---------------------------------------------------------------------------


def load_inventory(path: str) -> Inventory:
    """Read and validate an inventory file (``.yaml``/``.yml`` or ``.csv``)."""
    lower = path.lower()
    if lower.endswith((".yaml", ".yml")):
        rows = _yaml_rows(path)
    elif lower.endswith(".csv"):
        rows = _csv_rows(path)
    else:
        raise ConfigError([ConfigProblem(path, "", "unknown inventory format",
                                         "name the file .yaml, .yml or .csv")])
    inventory = Inventory(path)
    problems: list[ConfigProblem] = []
    seen: dict[tuple[str, str], int | None] = {}
    for where, line, raw in rows:
        if isinstance(raw, _RowError):
            problems.append(ConfigProblem(path, where, str(raw), line=line))
            continue
        if not isinstance(raw, Mapping):
            problems.append(ConfigProblem(path, where, "an entry must be a mapping of "
                                          "keys to values", line=line))
            continue
        try:
            entry = AssetEntry.model_validate(dict(raw))
        except ValidationError as exc:
            problems.extend(_entry_problems(path, where, line, exc))
            continue
        key_problems = _check_keys(path, where, line, entry, seen)
        if key_problems:
            problems.extend(key_problems)
            continue
        inventory.add(entry)
    if problems:
        raise ConfigError(problems)
    return inventory


Row = tuple[str, int | None, Any]


class _RowError(str):
    """A CSV row that cannot become an entry (the message says why)."""

    __slots__ = ()


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            return fh.read()
    except OSError as exc:
        raise ConfigError([ConfigProblem(path, "", f"cannot read asset inventory: "
                                         f"{exc.strerror}")]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError([ConfigProblem(path, "", "not UTF-8 text",
                                         "save the file as UTF-8 (Excel: CSV UTF-8)")]) from exc


def _yaml_rows(path: str) -> list[Row]:
    located = parse(_read_text(path), path)
    data = located.data
    prefix: tuple[Any, ...] = ()
    if isinstance(data, Mapping) and "assets" in data:
        extra = sorted(set(data) - {"assets"})
        if extra:
            raise ConfigError([ConfigProblem(path, str(extra[0]), "unknown top-level key",
                                             "the file holds an `assets:` list only",
                                             located.line((extra[0],)))])
        data, prefix = data["assets"], ("assets",)
    if data is None:
        return []
    if not isinstance(data, list):
        raise ConfigError([ConfigProblem(path, "", "the inventory must be a list of entries "
                                         "(or a mapping with an `assets:` list)", line=1)])
    return [(f"{'assets' if prefix else ''}[{i}]", located.line((*prefix, i)), item)
            for i, item in enumerate(data)]


def _csv_rows(path: str) -> list[Row]:
    text = _read_text(path)
    lines = text.splitlines()
    # Comment lines (# ...) and blank lines are skipped; line numbers stay the file's.
    numbered = [(n, line) for n, line in enumerate(lines, 1)
                if line.strip() and not line.lstrip().startswith("#")]
    if not numbered:
        return []
    reader = csv.reader([line for _, line in numbered])
    try:
        records = list(reader)
    except csv.Error as exc:
        raise ConfigError([ConfigProblem(path, "", f"invalid CSV: {exc}")]) from exc
    header = [h.strip().lower() for h in records[0]]
    known = set(AssetEntry.model_fields)
    problems = []
    for column in header:
        if column not in known:
            problems.append(ConfigProblem(
                path, f"column {column!r}", "unknown column",
                did_you_mean(column, known) or f"columns: {', '.join(sorted(known))}",
                numbered[0][0]))
    if not set(header) & set(KEY_COLUMNS):
        problems.append(ConfigProblem(path, "header", "no key column",
                                      "the header needs ip, cidr or hostname",
                                      numbered[0][0]))
    if problems:
        raise ConfigError(problems)
    rows: list[Row] = []
    for (line_no, _), record in zip(numbered[1:], records[1:], strict=False):
        if len(record) > len(header):
            rows.append((f"row {line_no}", line_no,
                         _RowError(f"too many cells ({len(record)} for {len(header)} "
                                   "columns); quote cells that contain a comma")))
            continue
        values = {h: (v.strip() or None) for h, v in zip(header, record, strict=False)}
        rows.append((f"row {line_no}", line_no, values))
    return rows


def _entry_problems(path: str, where: str, line: int | None,
                    exc: ValidationError) -> list[ConfigProblem]:
    problems = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if not isinstance(p, int))
        key = f"{where}.{loc}" if loc else where
        if err["type"] == "extra_forbidden":
            name = str(err["loc"][-1])
            problems.append(ConfigProblem(
                path, key, f"unknown key {name!r}",
                did_you_mean(name, AssetEntry.model_fields)
                or f"valid keys: {', '.join(AssetEntry.model_fields)}", line))
            continue
        message = str(err["msg"]).removeprefix("Value error, ")
        value = err.get("input")
        got = "" if isinstance(value, dict | list) or value is None else f" (got {value!r:.60})"
        hint = {"system_level": "security levels (cấp độ) are 1 to 5",
                "asset_kind": "server, workstation, network or application"}.get(loc)
        problems.append(ConfigProblem(path, key, message + got, hint, line))
    return problems


def _check_keys(path: str, where: str, line: int | None, entry: AssetEntry,
                seen: dict[tuple[str, str], int | None]) -> list[ConfigProblem]:
    problems = []
    keys: list[tuple[str, str]] = []
    for text in entry.ip:
        parsed = _parse_ip(text)
        if parsed is None:
            hint = "use the cidr column for a network" if "/" in text else None
            problems.append(ConfigProblem(path, f"{where}.ip",
                                          f"not an IP address: {text!r:.60}", hint, line))
        else:
            keys.append(("ip", parsed[2]))
    for text in entry.cidr:
        try:
            net = netaddr.parse_network(text.strip(), strict=True, count=False)
        except netaddr.AddressError as exc:
            hint = None
            with contextlib.suppress(netaddr.AddressError):
                hint = f"did you mean {netaddr.canonical(text.strip(), count=False)}?"
            problems.append(ConfigProblem(path, f"{where}.cidr",
                                          f"not a network: {text!r:.60} ({exc})", hint, line))
            continue
        keys.append(("cidr", str(net)))
    for text in entry.hostname:
        if any(ch.isspace() for ch in text) or "/" in text:
            problems.append(ConfigProblem(path, f"{where}.hostname",
                                          f"not a host name: {text!r:.60}", None, line))
        else:
            keys.append(("hostname", fold_hostname(text)))
    for key in keys:
        if key in seen:
            first = seen[key]
            problems.append(ConfigProblem(
                path, f"{where}.{key[0]}", f"{key[1]} is listed twice",
                f"first listed on line {first}" if first else "each key may appear once",
                line))
        else:
            seen[key] = line
    return problems
