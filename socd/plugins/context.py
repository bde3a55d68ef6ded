"""What the daemon gives plugins and feature services besides their own config.

A plugin is built as ``cls(config, ctx)`` with a :class:`PluginContext`; a feature
service that owns notifier instances (incident reminders, report schedules) gets a
:data:`NotifierFactory`. Both are built by the daemon's wiring
(:mod:`socd.app.components`), which nothing below it imports.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from socd.plugins.protocols import Notifier

# Builds the configured notifier of that name (socd.app.components.notifier_factory).
NotifierFactory = Callable[[str], Notifier]


class DeadLetterWriter(Protocol):
    """Where a plugin records what it cannot deliver (:class:`socd.app.deadletter.DeadLetter`)."""

    def write(self, *, stage: str, reason: str, raw: bytes | None = None,
              event: Mapping[str, Any] | None = None, collector: str = "", source: str = "",
              detail: str = "") -> None:
        """Record one undeliverable item and count it as dropped."""
        ...


@dataclass(frozen=True, slots=True)
class PluginContext:
    """What every plugin may use besides its own config."""

    name: str
    dead_letter: DeadLetterWriter
    config_dir: str = "."
    state_dir: str = "."
