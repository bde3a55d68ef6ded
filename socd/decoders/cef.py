"""The ``cef`` decoder: CEF records, with or without a syslog header.

It is the ``syslog`` decoder set to require a CEF payload (its parser is
:mod:`socd.decoders.cefformat`, shared by both); records that are not CEF are
dead-lettered as ``invalid_cef``. See ``docs/sources/syslog.md`` for the field mapping.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from socd.config import DecoderConfig
from socd.decoders.syslog import SyslogDecoder
from socd.plugins import DecodeResult, PluginContext, RawRecord
from socd.tz import ZoneOrOffset

if TYPE_CHECKING:
    from socd.zones import SenderZones


class CefDecoder:
    """CEF records, with or without a syslog header (``invalid_cef`` otherwise)."""

    class Config(DecoderConfig):
        type: Literal["cef"]
        timezone: ZoneOrOffset = Field(
            "Asia/Ho_Chi_Minh", description="Zone of times written without one (`rt`, the "
            "syslog header): an IANA name or an offset like `+07:00`. A collector's "
            "`timezone` and `sender_timezones` take precedence for its records.")

    def __init__(self, config: Config, ctx: PluginContext) -> None:
        self.name = ctx.name
        self._syslog = SyslogDecoder.create(
            ctx.name, timezone=config.timezone, parse_payloads=True,
            severity_table=config.severity_table or "cef", keep_original=config.keep_original,
            require="cef")

    def decode(self, record: RawRecord) -> DecodeResult:
        return self._syslog.decode(record)

    def assume_zones(self, zones: Mapping[str, SenderZones]) -> None:
        """The collectors' zones (:class:`~socd.plugins.ZoneAware`), as the syslog decoder."""
        self._syslog.assume_zones(zones)
