"""The ``incidents:`` config section (model only; ``DocumentConfig.incidents`` holds it)."""

from __future__ import annotations

from socd.config import ContactConfig, IncidentsConfig  # the models live in socd.config

__all__ = ["ContactConfig", "IncidentsConfig", "incidents_config"]


def incidents_config(document: object) -> IncidentsConfig:
    """The section from a DocumentConfig (the default before it has the field)."""
    value = getattr(document, "incidents", None)
    return value if isinstance(value, IncidentsConfig) else IncidentsConfig()
