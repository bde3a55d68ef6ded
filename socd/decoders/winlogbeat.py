"""The ``winlogbeat`` decoder: Windows events as shipped by Winlogbeat 8 (ECS JSON).

The record is passed through like the ``json`` decoder (nested or dotted keys), then
the Windows events the SOC watches are completed from ``winlog.event_data`` by
:mod:`socd.decoders.winevents` (the table of event ids is there; the
``windows_json`` decoder shares it, so the rules read the same fields from both).

Clearing the audit log (1102, high) and creating accounts (4720, medium) are alerts
by nature: both are rare, both are what an intruder does (hide tracks, keep access),
and a SOC wants every occurrence reviewed. Logons, failures and lockouts are events:
one alone means little, the rules engine counts them. ``socd.asset_kind`` is
``server`` when ``host.os`` names a Windows Server edition, else ``workstation``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from socd.config import DecoderConfig
from socd.decoders.base import BaseDecoder
from socd.decoders.coerce import as_dict
from socd.decoders.winevents import child, complete, is_server, mark_alert, text
from socd.errors import DecodeError
from socd.event import Event, unflatten
from socd.plugins import PluginContext
from socd.severity import Severity


class WinlogbeatDecoder(BaseDecoder):
    """Winlogbeat ECS JSON in, ECS events out (Security events completed)."""

    class Config(DecoderConfig):
        type: Literal["winlogbeat"]
        alert_event_ids: dict[str, Severity] = Field(
            default_factory=lambda: {"1102": Severity.HIGH, "4720": Severity.MEDIUM},
            description="Security event ids that are alerts by nature, with their severity.")

    def __init__(self, config: Config, ctx: PluginContext) -> None:
        super().__init__(ctx.name, severity_table=config.severity_table,
                         keep_original=config.keep_original)
        self.alert_ids = dict(config.alert_event_ids)

    def convert(self, obj: dict[str, Any]) -> Event:
        event: Event = unflatten(obj) if any("." in key for key in obj) else obj
        for key in ("event", "winlog", "socd"):
            if key in event and not isinstance(event[key], dict):
                raise DecodeError("invalid_field", f"{key} must be an object")
        ev = child(event, "event")
        winlog = child(event, "winlog")
        code = text(winlog.get("event_id")) or text(ev.get("code"))
        ev.setdefault("kind", "event")
        ev.setdefault("module", "windows")
        channel = text(winlog.get("channel"))
        if channel:
            ev.setdefault("dataset", f"windows.{channel.lower().replace('/', '_')}")
        socd = child(event, "socd")
        if "asset_kind" not in socd:
            socd["asset_kind"] = "server" if is_server(event) else "workstation"
        if code is None:
            return event
        winlog["event_id"] = code
        ev["code"] = code
        complete(event, code, channel, as_dict(winlog.get("event_data")), winlog)
        if channel is None or channel.lower() == "security":
            severity = self.alert_ids.get(code)
            if severity is not None:
                mark_alert(event, code, severity)
        return event
