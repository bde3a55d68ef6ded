"""Every exception socd raises on purpose lives here.

Library code raises these; only :mod:`socd.cli` turns them into exit codes and
messages for people.
"""

from __future__ import annotations

import os
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


class JournalError(SocdError):
    """The intake journal cannot be opened (in use, unreadable folder) or cannot take a
    batch (closed before it was on disk). Collectors that acknowledge their source
    once a batch is durable catch it (docs/architecture.md)."""


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


class StartupError(SocdError):
    """socd cannot start a component; ``hint`` says how to fix it (logged beside it)."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class ListenError(StartupError):
    """A listener cannot bind its address (``url``: ``http://127.0.0.1:9797``)."""

    def __init__(self, url: str, error: OSError, *, key: str | None = None) -> None:
        # asyncio's bind errors carry a long strerror; the errno's own text is the one
        # people search for ("Address already in use").
        reason = os.strerror(error.errno) if error.errno else str(error)
        super().__init__(f"cannot listen on {url}: {reason}",
                         hint=listen_hint(url, error.errno, key))
        self.url = url
        self.errno = error.errno


def listen_hint(url: str, errno_: int | None, key: str | None = None) -> str | None:
    """How to fix a failed bind, by its errno (None when there is nothing to say)."""
    import errno

    port = url.rsplit(":", 1)[-1].rstrip("/")
    option = f" ({key})" if key else ""
    if errno_ == errno.EADDRINUSE:
        return (f"another process (a second socd?) listens there: `ss -ltnup 'sport = :{port}'` "
                f"names it; stop it or choose another port{option}")
    if errno_ in (errno.EACCES, errno.EPERM):
        return (f"ports below 1024 need CAP_NET_BIND_SERVICE: listen on a port above 1023"
                f"{option} and redirect with nftables, or grant the capability in a drop-in")
    if errno_ == errno.EADDRNOTAVAIL:
        return f"the host is not an address of this machine (`ip -br addr`): fix it{option}"
    return None
