"""The ``windows_json`` decoder: Windows events as flat JSON (NXLog ``im_msvistalog``).

NXLog's ``to_json()`` on an ``im_msvistalog`` input, and pipelines built on it, write
one flat object per event: the system fields (``EventID``, ``Channel``, ``Hostname``,
``SourceName``, ``EventTime``, ``RecordNumber``, ``EventType``, ``Message``...) and the
event's own EventData/UserData fields side by side at the top level::

    {"EventTime": "2026-11-16 08:05:43", "Hostname": "SRV-AD-01.tinh.local",
     "EventID": 4625, "Channel": "Security", "SourceName":
     "Microsoft-Windows-Security-Auditing", "TargetUserName": "admin",
     "IpAddress": "::ffff:203.0.113.45", "LogonType": "3", "Status": "0xc000006d", ...}

The decoder builds the event Winlogbeat would have given (``event.code``,
``winlog.channel``, ``winlog.event_data``...) and completes it with
:mod:`socd.decoders.winevents`, so the same rules read both. Nothing in the record is
trusted: the event is built from scratch (an input cannot set ``event.kind``,
``rule.*`` or any ``socd.*`` key: ``socd`` / ``socd.*`` keys are dropped and counted
in ``socd_input_fields_stripped_total``), field names must look like Windows field
names, values are bounded in size and number, and addresses pass
:mod:`socd.netaddr`.

Time: ``@timestamp`` when a pipeline set one (ECS: the event's time), else NXLog's
``EventTime`` (with its offset, or read in the sender's zone: the collector's
``sender_timezones`` by address or ``Hostname``, its ``timezone``, else the decoder's
``timezone``), else ``TimeCreated`` (the event's SystemTime, UTC when written without an
offset), else ``EventReceivedTime``; none of them: the time socd received the record.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, tzinfo
from typing import Any, Literal

from pydantic import Field

from socd.config import DecoderConfig
from socd.decoders.base import BaseDecoder, count_stripped
from socd.decoders.winevents import SYSMON_CHANNEL, complete, mark_alert, text
from socd.errors import DecodeError
from socd.event import VENDOR_SOCD_KEYS, Event, parse_timestamp
from socd.plugins import DecodeResult, PluginContext, RawRecord
from socd.severity import Severity
from socd.tz import ZoneOrOffset, parse_iso, parse_zone
from socd.zones import SenderZones

# Windows' longest command line is 32,767 characters; a longer value is not a field
# any event has, and would bloat every index it reaches.
MAX_VALUE_CHARS = 32768
# Event ids with the most fields (4624, Sysmon 1) have about 30; NXLog adds about 20.
MAX_DATA_FIELDS = 256
MAX_NAME_CHARS = 255  # host, channel and provider names
TRUNCATED_TAG = "windows_json_truncated"

# NXLog's system fields and the keys a Logstash/NXLog pipeline adds: the event's
# envelope, mapped below or dropped; every other key is the event's own data.
_ENVELOPE = frozenset({
    "@timestamp", "@version", "EventTime", "EventReceivedTime", "TimeCreated", "EventID",
    "Channel", "Hostname", "SourceName", "ProviderName", "ProviderGuid", "RecordNumber",
    "EventType", "Severity", "SeverityValue", "Level", "Keywords", "Task", "Opcode",
    "OpcodeValue", "Version", "Category", "ActivityID", "RelatedActivityID",
    "ExecutionProcessID", "ThreadID", "SourceModuleName", "SourceModuleType", "Message",
    "host", "port", "tags", "type",
})
# Windows EventData names: letters, digits and underscores (NXLog keeps them as is).
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_OUTCOMES = {"audit_success": "success", "audit_failure": "failure"}
# The zone of the SOC's own servers (UTC+07:00), as the syslog decoder assumes.
DEFAULT_ZONE = "Asia/Ho_Chi_Minh"


class WindowsJsonDecoder(BaseDecoder):
    """Flat Windows event JSON (NXLog im_msvistalog) in, the winlogbeat decoder's ECS out."""

    socd_keys = VENDOR_SOCD_KEYS

    class Config(DecoderConfig):
        type: Literal["windows_json"]
        timezone: ZoneOrOffset = Field(
            DEFAULT_ZONE, description="Zone of `EventTime` values written without one "
            "(NXLog writes the sending host's local time): an IANA name or an offset. A "
            "collector's `timezone` and `sender_timezones` take precedence for its records.")
        alert_event_ids: dict[str, Severity] = Field(
            default_factory=dict,
            description="Security event ids the decoder itself marks as alerts, with their "
            "severity (as the winlogbeat decoder's `{\"1102\": high, \"4720\": medium}`). "
            "Empty by default: the shipped rules win-audit-log-cleared and "
            "win-user-created raise those alerts, and a second alert for the same event "
            "would only be noise.")

    def __init__(self, config: Config, ctx: PluginContext) -> None:
        super().__init__(ctx.name, severity_table=config.severity_table,
                         keep_original=config.keep_original)
        self.tz: tzinfo = parse_zone(config.timezone)
        self.alert_ids = dict(config.alert_event_ids)
        self._zones: dict[str, SenderZones] = {}
        # The sender zones of the record being decoded (set by decode, read by convert).
        self._senders: SenderZones | None = None
        self._source = ""

    def assume_zones(self, zones: Mapping[str, SenderZones]) -> None:
        """The zones of the collectors that name one (:class:`~socd.plugins.ZoneAware`)."""
        self._zones = dict(zones)

    def decode(self, record: RawRecord) -> DecodeResult:
        self._senders = self._zones.get(record.collector) if self._zones else None
        self._source = record.source
        return super().decode(record)

    def convert(self, obj: dict[str, Any]) -> Event:
        code = _event_id(obj.get("EventID"))
        channel = _name(obj.get("Channel"))
        ev: dict[str, Any] = {"kind": "event", "code": code,
                              "module": "sysmon" if _is_sysmon(channel) else "windows"}
        winlog: dict[str, Any] = {"event_id": code}
        event: Event = {"event": ev, "winlog": winlog}
        timestamp = self._timestamp(obj)
        if timestamp is not None:
            event["@timestamp"] = timestamp
        if channel:
            winlog["channel"] = channel
            ev["dataset"] = f"windows.{channel.lower().replace('/', '_')}"
        provider = _name(obj.get("SourceName")) or _name(obj.get("ProviderName"))
        if provider:
            ev["provider"] = winlog["provider_name"] = provider
        host = _name(obj.get("Hostname"))
        if host:
            event["host"] = {"name": host, "hostname": host}
            winlog["computer_name"] = host
        record = obj.get("RecordNumber")
        if isinstance(record, int) and not isinstance(record, bool):
            winlog["record_id"] = str(record)
        outcome = _OUTCOMES.get(str(obj.get("EventType", "")).lower())
        if outcome:
            ev["outcome"] = outcome
        level = _name(obj.get("Severity"))
        if level:
            event["log"] = {"level": level.lower()}
        truncated = False
        message = obj.get("Message")
        if isinstance(message, str) and message.strip():
            event["message"], truncated = _bounded(message)
        data, cut = self._event_data(obj)
        winlog["event_data"] = data
        if truncated or cut:
            event["tags"] = [TRUNCATED_TAG]
        complete(event, code, channel, data, winlog)
        severity = self.alert_ids.get(code)
        if severity is not None and (channel is None or channel.lower() == "security"):
            mark_alert(event, code, severity)
        return event

    def _timestamp(self, obj: dict[str, Any]) -> str | None:
        stamp = obj.get("@timestamp")
        if stamp is not None:
            return parse_timestamp(stamp)
        local = self._local_zone(obj)
        for key, zone in (("EventTime", local), ("TimeCreated", UTC),
                          ("EventReceivedTime", local)):
            value = obj.get(key)
            if value is not None:
                return _local_time(value, zone, key)
        return None

    def _local_zone(self, obj: dict[str, Any]) -> tzinfo:
        """The zone of the sending host's local time: listed for its Hostname or its
        address by the collector, the collector's, else the decoder's."""
        senders = self._senders
        if senders is None:
            return self.tz
        return (senders.for_host(_name(obj.get("Hostname")))
                or senders.for_source(self._source) or self.tz)

    def _event_data(self, obj: dict[str, Any]) -> tuple[dict[str, str], bool]:
        """The event's own fields as text (what Windows has: strings), bounded; and
        whether anything was cut or left out for size."""
        data: dict[str, str] = {}
        cut = False
        for key, value in obj.items():
            if key in _ENVELOPE:
                continue
            if key == "socd" or key.startswith("socd."):
                self._strip_socd(key, value)
                continue
            if _FIELD_NAME.fullmatch(key) is None:
                continue
            value_t = _scalar(value)
            if value_t is None:
                continue
            if len(data) >= MAX_DATA_FIELDS:
                cut = True
                break
            data[key], truncated = _bounded(value_t)
            cut = cut or truncated
        return data, cut

    def _strip_socd(self, key: str, value: Any) -> None:
        """socd.* belongs to socd (docs/threat-model.md): count what the input tried."""
        if key == "socd":
            for sub in value if isinstance(value, dict) else ("other",):
                count_stripped(self.name, str(sub))
        else:
            count_stripped(self.name, key[5:].split(".", 1)[0])


def _event_id(value: Any) -> str:
    if value is None:
        raise DecodeError("missing_field", "no EventID: not a Windows event record")
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= 5:
        number = int(value.strip())
    if number is None or not 0 <= number <= 65535:
        raise DecodeError("invalid_field", f"EventID must be 0-65535, got {str(value)[:64]!r}")
    return str(number)


def _name(value: Any) -> str | None:
    name = text(value) if isinstance(value, str) else None
    return name if name is not None and len(name) <= MAX_NAME_CHARS else None


def _is_sysmon(channel: str | None) -> bool:
    return channel is not None and channel.lower() == SYSMON_CHANNEL


def _scalar(value: Any) -> str | None:
    """An EventData value as text; objects, lists and nulls are not Windows data."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return None


def _bounded(value: str) -> tuple[str, bool]:
    if len(value) <= MAX_VALUE_CHARS:
        return value, False
    return value[:MAX_VALUE_CHARS], True


def _local_time(value: Any, zone: tzinfo, key: str) -> str:
    """An NXLog time (``2026-11-16 08:05:43``, ISO with or without an offset, or epoch
    seconds) as RFC 3339; a time without an offset is in ``zone``."""
    if not isinstance(value, str):
        return parse_timestamp(value)
    try:
        return parse_iso(value.strip(), naive=zone).isoformat()
    except ValueError:
        raise DecodeError("invalid_field", f"{key} {value[:64]!r} is not a date") from None
