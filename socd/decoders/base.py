"""What every decoder shares: JSON framing and the finishing touches on an event."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import orjson
from prometheus_client import Counter

from socd import metrics
from socd.errors import DecodeError
from socd.event import (
    FIELDS,
    INPUT_SOCD_KEYS,
    SEVERITY_CODE_LABEL,
    Event,
    TypedPlan,
    fingerprint_prefix,
    normalize,
    set_severity,
    typed_fields_at,
)
from socd.plugins import DecodeFailure, DecodeResult, RawRecord
from socd.severity import BUILTIN_TABLES, Severity, SeverityTable
from socd.vocabulary import ASSET_KINDS

_ISO_CACHE: dict[int, str] = {}
# An event's index in its record as the fingerprint hashes it (decimal, then NUL), made
# once for the indexes of a payload's usual size.
_INDEXES = 1024
_INDEX_PARTS: tuple[bytes, ...] = tuple(b"%d\x00" % i for i in range(_INDEXES))
# A code as the input spells it -> its Severity (a StrEnum: the members are their codes).
_SEVERITIES: dict[object, Severity] = {s.value: s for s in Severity}

# Every path BaseDecoder.finish() (with gate_socd, stamp_provenance and normalize's clock
# time) may write: a decoder that knows the paths its convert() writes checks only the
# typed fields under both (typed_fields_at); tests/unit/test_decoder_typed_plan.py holds
# finish to it.
FINISH_PATHS: frozenset[str] = frozenset({
    "@timestamp", "event.created", "event.hash", "event.ingested", "event.original",
    "socd.collector", "socd.decoder", "socd.source", "socd.transport", "socd.severity",
    "socd.severity_label", "socd.vendor_severity"})

MAX_UNIT_CHARS = 256  # an agency name; longer values are not one (and bloat every index)

# Label values of the stripped-fields counter: the documented socd keys, else "other",
# so an attacker cannot create series by inventing keys.
_KNOWN_SOCD_KEYS = frozenset(f.name.split(".")[1] for f in FIELDS if f.name.startswith("socd."))
INPUT_FIELDS_STRIPPED = Counter(
    "socd_input_fields_stripped_total",
    "socd.* keys a decoder dropped from its input (they belong to socd, or had a value "
    "outside their enum), by decoder and top-level key (`other` for undocumented keys).",
    ["decoder", "field"], registry=metrics.REGISTRY)


def count_stripped(decoder: str, key: str) -> None:
    """Count one ``socd.<key>`` dropped from an input (bounded labels)."""
    INPUT_FIELDS_STRIPPED.labels(decoder, key if key in _KNOWN_SOCD_KEYS else "other").inc()


def gate_socd(event: Event, decoder: str,
              allowed: frozenset[str] = INPUT_SOCD_KEYS) -> dict[str, Any]:
    """Keep only the ``socd`` keys a decoder may produce; return the ``socd`` object.

    Dropped keys are counted in ``socd_input_fields_stripped_total``. ``asset_kind``
    outside its enum and a ``unit`` that is not a short text are dropped too (they
    become metric labels and report columns); classification then applies its defaults.
    """
    socd = event.get("socd")
    if socd is None:
        socd = event["socd"] = {}
        return socd
    if not isinstance(socd, dict):
        raise DecodeError("invalid_field", "socd must be an object")
    if not allowed.issuperset(socd):  # the keys, walked in C: most events pass
        for key in [k for k in socd if k not in allowed]:
            del socd[key]
            count_stripped(decoder, key)
    kind = socd.get("asset_kind")
    if kind is not None and (not isinstance(kind, str) or kind not in ASSET_KINDS):
        del socd["asset_kind"]
        count_stripped(decoder, "asset_kind")
    unit = socd.get("unit")
    if unit is not None and (not isinstance(unit, str) or len(unit) > MAX_UNIT_CHARS):
        del socd["unit"]
        count_stripped(decoder, "unit")
    return socd


def stamp_provenance(socd: dict[str, Any], record: RawRecord, decoder: str) -> None:
    """Where the event came from, from the record only (after :func:`gate_socd`)."""
    socd["collector"] = record.collector
    socd["decoder"] = decoder
    if record.source:
        socd["source"] = record.source
    if not record.authenticated:
        # Read by the blocker sink: decisions caused by this event are refused unless
        # the collector opted in (allow_unauthenticated_blocking).
        socd["transport"] = {"authenticated": False,
                             "blocking": "allowed" if record.blocking_allowed else "refused"}


def _received_iso(received: float) -> str:
    # Many records of one batch share the same receive second; cache the text.
    key = int(received * 1000)
    text = _ISO_CACHE.get(key)
    if text is None:
        text = datetime.fromtimestamp(received, UTC).isoformat(timespec="milliseconds")
        text = text.replace("+00:00", "Z")
        if len(_ISO_CACHE) > 4096:
            _ISO_CACHE.clear()
        _ISO_CACHE[key] = text
    return text


def split_json(data: bytes) -> tuple[list[tuple[Any, bytes | None]], list[DecodeFailure]]:
    """Split a payload into JSON values: one object, an array, or NDJSON lines.

    Returns ``(value, raw_line)`` pairs (``raw_line`` set for NDJSON, so a bad
    line is dead-lettered alone) and failures for what could not be parsed.
    """
    error = ""
    if not _ndjson(data):
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            error = str(exc)
        else:
            if isinstance(value, list):
                return [(item, None) for item in value], []
            return [(value, None)], []
    stripped = data.strip()
    if b"\n" in stripped:
        items: list[tuple[Any, bytes | None]] = []
        failures: list[DecodeFailure] = []
        for line in stripped.split(b"\n"):
            line = line.strip()
            if not line:
                continue
            try:
                items.append((orjson.loads(line), line))
            except orjson.JSONDecodeError as line_exc:
                failures.append(DecodeFailure(_json_reason(line), line, str(line_exc)))
        return items, failures
    return [], [DecodeFailure(_json_reason(data), data, error)]


_JSON_SPACE = b" \t\r\n"


def _ndjson(data: bytes) -> bool:
    """True when ``data`` is a complete JSON value on its first line followed by more
    than JSON whitespace: then ``orjson.loads(data)`` fails, and its error, which holds
    the whole payload as text, costs as much as parsing a third of an NDJSON payload of
    100 lines. False says nothing (one value, or a first line that is not one)."""
    newline = data.find(b"\n")
    if newline < 0:
        return False
    end = len(data)
    while end > newline and data[end - 1] in _JSON_SPACE:
        end -= 1
    if end <= newline:
        return False  # one line, and whitespace after it
    try:
        orjson.loads(data[:newline])
    except orjson.JSONDecodeError:
        return False
    return True


def _raw_item(data: bytes, items: list[tuple[Any, bytes | None]], index: int,
              line: bytes | None) -> bytes:
    """The original bytes of one failed item, for the dead-letter file.

    Decoders may change the parsed object in place, so it is never re-serialized:
    an NDJSON line or a lone object is dead-lettered as received; an element of
    an array is taken from a fresh parse of the payload (failures are rare).
    """
    if line is not None:
        return line
    if len(items) == 1:
        return data
    try:
        return orjson.dumps(orjson.loads(data)[index])
    except (orjson.JSONDecodeError, IndexError, TypeError):
        return data


def _json_reason(data: bytes) -> str:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return "invalid_utf8"
    return "invalid_json"


class BaseDecoder:
    """Turns JSON values into events; subclasses implement :meth:`convert`.

    ``socd_keys`` is the decoder's allowlist of ``socd.*`` keys (see
    :data:`INPUT_SOCD_KEYS`); :meth:`finish` drops every other key, whether the input
    carried it or ``convert`` copied it over.
    """

    name: str
    socd_keys: frozenset[str] = INPUT_SOCD_KEYS
    _prefix_of: tuple[str, hashlib.blake2b] | None = None
    # normalize()'s typed-field plan (every typed field unless the decoder knows the
    # paths it writes: typed_plan) and the @timestamp text convert() formatted (or
    # checked) last.
    written_paths: frozenset[str] | None = None
    _typed: TypedPlan | None = None
    _own_timestamp: str | None = None

    def __init__(self, name: str, *, severity_table: str | None = None,
                 keep_original: bool = False) -> None:
        self.name = name
        self.keep_original = keep_original
        self.severity_table: SeverityTable | None = (
            BUILTIN_TABLES[severity_table] if severity_table else None)

    def convert(self, obj: dict[str, Any]) -> Event:
        raise NotImplementedError

    def typed_plan(self, convert_paths: Iterable[str]) -> None:
        """Check only the typed fields at or under ``convert_paths`` (every path
        :meth:`convert` may write, each value possibly an object) and
        :data:`FINISH_PATHS`; any other path of an event goes unchecked, so a decoder
        declares all of them or none."""
        self.written_paths = frozenset([*convert_paths, *FINISH_PATHS])
        self._typed = typed_fields_at(self.written_paths)

    def decode(self, record: RawRecord) -> DecodeResult:
        result = DecodeResult()
        items, result.failures = split_json(record.data)
        # Per record: the payload's digest, hashed into the fingerprint prefix once, and
        # the created/ingested times; per event only its index is hashed.
        prefix = self._prefix.copy()
        prefix.update(hashlib.blake2b(record.data, digest_size=16).digest())
        prefix.update(b"\x00")
        created = _received_iso(record.received)
        hashed = (prefix, _received_iso(time.time()))  # now_iso's text, per-ms cache
        convert, finish, events = self.convert, self.finish, result.events
        for index, (obj, line) in enumerate(items):
            if not isinstance(obj, dict):
                raw = _raw_item(record.data, items, index, line)
                result.failures.append(
                    DecodeFailure("not_an_object", raw, f"expected a JSON object, got "
                                  f"{type(obj).__name__}"))
                continue
            try:
                event = convert(obj)
                finish(event, record, created, hashed, index, line)
            except DecodeError as exc:
                raw = _raw_item(record.data, items, index, line)
                result.failures.append(DecodeFailure(exc.reason, raw, exc.detail))
                continue
            events.append(event)
        return result

    @property
    def _prefix(self) -> hashlib.blake2b:
        """The fingerprint hasher after the decoder's name (:func:`fingerprint_prefix`):
        ``fingerprint(name, digest, index)`` without hashing the name per event."""
        cached = self._prefix_of
        if cached is None or cached[0] != self.name:
            cached = self._prefix_of = (self.name, fingerprint_prefix(self.name))
        return cached[1]

    def finish(self, event: Event, record: RawRecord, created: str,
               hashed: tuple[hashlib.blake2b, str], index: int, line: bytes | None) -> None:
        """Drop the socd keys that are socd's own, stamp provenance, fingerprint and
        severity, then normalize types. ``hashed``: the fingerprint hasher after the
        decoder's name and the record's digest, and the record's ingested time."""
        ev = event.setdefault("event", {})
        if not isinstance(ev, dict):
            raise DecodeError("invalid_field", "event must be an object")
        ev.setdefault("created", created)
        prefix, ingested = hashed
        h = prefix.copy()
        h.update(_INDEX_PARTS[index] if index < _INDEXES else b"%d\x00" % index)
        ev["hash"] = h.hexdigest()
        ev["ingested"] = ingested
        if self.keep_original:
            ev["original"] = (line if line is not None else record.data).decode(
                "utf-8", "replace")
        socd = gate_socd(event, self.name, self.socd_keys)
        stamp_provenance(socd, record, self.name)
        if "severity" in socd:
            code = socd["severity"]
            try:
                severity = _SEVERITIES.get(code) or Severity(code)
            except (TypeError, ValueError) as exc:
                raise DecodeError("invalid_field", f"socd.severity {code!r} is not "
                                  "low, medium, high or critical") from exc
            # set_severity() without the call (socd is event["socd"]).
            socd["severity"], socd["severity_label"] = SEVERITY_CODE_LABEL[severity]
        elif self.severity_table is not None and socd.get("vendor_severity") is not None:
            sev = self.severity_table.lookup(socd["vendor_severity"])
            if sev is not None:
                set_severity(event, sev)
        vendor_severity = socd.get("vendor_severity")
        if vendor_severity is not None and type(vendor_severity) is not str:
            socd["vendor_severity"] = str(vendor_severity)
        normalize(event, typed=self._typed, own_timestamp=self._own_timestamp)


Factory = Callable[[dict[str, Any]], Event]
