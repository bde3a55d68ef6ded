"""The ``json`` decoder: records that are already ECS-shaped JSON.

Objects may be nested (``{"source": {"ip": ...}}``) or use dotted keys
(``{"source.ip": ...}``), or mix both. Payloads may hold one object, an array
of objects, or NDJSON.

Of the ``socd`` namespace, a record may set only ``severity``, ``vendor_severity``,
``layer``, ``asset_kind``, ``unit``, ``system_level`` and ``vendor`` (checked against
their enums); every other ``socd.*`` key (actions, IoC marks, alert status, rule
metadata, provenance...) is socd's own and is dropped and counted
(:data:`socd.decoders.base.INPUT_SOCD_KEYS`).
"""

from __future__ import annotations

from typing import Any, Literal

from socd.config import DecoderConfig
from socd.decoders.base import BaseDecoder
from socd.event import Event, unflatten
from socd.plugins import PluginContext


class JsonDecoder(BaseDecoder):
    """ECS JSON in, events out."""

    class Config(DecoderConfig):
        type: Literal["json"]

    def __init__(self, config: Config, ctx: PluginContext) -> None:
        super().__init__(ctx.name, severity_table=config.severity_table,
                         keep_original=config.keep_original)

    def convert(self, obj: dict[str, Any]) -> Event:
        if any("." in key for key in obj):
            return unflatten(obj)
        return obj
