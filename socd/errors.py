"""Every exception socd raises on purpose lives here.

Library code raises these; only :mod:`socd.cli` turns them into exit codes and
messages for people.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class SocdError(Exception):
    """Base class for errors socd reports to its operator."""


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One thing wrong with a configuration file.

    ``path`` is the key path inside the document (``collectors.edr.port``),
    ``line`` the 1-based line in ``file`` when it is known.
    """

    file: str
    path: str
    message: str
    hint: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        key = f" {self.path}:" if self.path else ""
        text = f"{where}:{key} {self.message}"
        if self.hint:
            text += f" (hint: {self.hint})"
        return text


class ConfigError(SocdError):
    """A configuration file cannot be used; carries every problem found."""

    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class PluginError(SocdError):
    """A plugin type is unknown or cannot be loaded."""


class DecodeError(SocdError):
    """A record cannot be turned into an event.

    ``reason`` is a short, bounded label used as a metric label
    (``invalid_json``, ``invalid_utf8``, ``not_an_object``, ...); ``detail`` is
    free text for logs and the dead-letter file.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class SinkError(SocdError):
    """A sink could not store a batch.

    ``retryable`` tells the pipeline whether the same batch may succeed later
    (a connection error, HTTP 429/5xx) or never will.
    """

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        self.retryable = retryable
        super().__init__(message)


class HealthCheckError(SocdError):
    """A sink or collector failed its start-up health check."""


class NotifyError(SocdError):
    """A notification could not be sent. ``retryable`` errors (timeouts, 5xx, 429,
    connection refused) keep the message in the send queue; the others (a 4xx
    that will never change, a template error) are dead-lettered."""

    def __init__(self, message: str, *, retryable: bool = True,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
