"""structlog set-up: JSON lines for journald and files, readable output on a terminal."""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import MutableMapping
from typing import Any

import orjson

_SECRET_KEYS = re.compile(r"pass(word)?|secret|token|api_?key|authorization|credential",
                          re.IGNORECASE)
# URL credentials, "scheme://user:password@": what the pattern
# ``[a-z][a-z0-9+.-]*://[^/@\s:]+:[^/@\s]+@`` (case-insensitive) finds. Searched as
# one pattern it retried the scheme from every letter of a long run of letters
# (quadratic: 15 s for 64 KiB); a run of scheme characters is read once, from its
# start, and the scheme is its first letter onwards.
_SCHEME_RUN = re.compile(r"(?<![a-z0-9+.-])[a-z0-9+.-]*+://", re.IGNORECASE)
_SCHEME_LETTER = re.compile(r"[a-z]", re.IGNORECASE)
_USERINFO = re.compile(r"[^/@\s:]+:[^/@\s]+@")
REDACTED = "***"


def redact_url_credentials(text: str) -> str:
    """``text`` with the user and password of every URL replaced by ``***``
    (``https://u:p@host`` -> ``https://***@host``), in time linear in the text."""
    if "://" not in text or "@" not in text:
        return text
    parts: list[str] = []
    done = 0
    for run in _SCHEME_RUN.finditer(text):
        after = run.end()
        if run.start() < done or _SCHEME_LETTER.search(text, run.start(), after - 3) is None:
            continue
        userinfo = _USERINFO.match(text, after)
        if userinfo is None:
            continue
        parts += (text[done:after], REDACTED, "@")
        done = userinfo.end()
    if not parts:
        return text
    parts.append(text[done:])
    return "".join(parts)


def redact(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> Any:
    """Never log secrets: mask values of secret-looking keys and URL credentials."""
    for key, value in list(event_dict.items()):
        event_dict[key] = _redact_value(key, value, 0)
    return event_dict


def _redact_value(key: Any, value: Any, depth: int) -> Any:
    if isinstance(key, str) and _SECRET_KEYS.search(key) and value not in (None, ""):
        return REDACTED
    if isinstance(value, str):
        return redact_url_credentials(value)
    if depth < 4 and isinstance(value, dict):  # nested mappings (a config section, ...)
        return {k: _redact_value(k, v, depth + 1) for k, v in value.items()}
    if depth < 4 and isinstance(value, list | tuple):
        return [_redact_value("", v, depth + 1) for v in value]
    return value


def _json_dumps(obj: Any, **_kw: Any) -> str:
    return orjson.dumps(obj, default=str).decode()


class _JsonFormatter(logging.Formatter):
    """Library records as JSON lines too, so every journal line parses with jq."""

    # formatTime calls self.converter(t). A builtin never binds to the instance; the
    # staticmethod says so to the type checker, which would take it for a method.
    converter = staticmethod(time.gmtime)

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "event": redact_url_credentials(record.getMessage()),
            "level": record.levelname.lower(), "logger": record.name,
            "timestamp": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + "Z"}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return _json_dumps(entry)


class _Logger:
    """``structlog.get_logger(name)``, importing structlog at the first log call.

    structlog (with rich, which its tracebacks use when installed) takes ~45 ms to
    import, a sixth of what ``socd replay`` and ``socd check-config`` need to start, and
    they seldom log. Every attribute is the structlog logger's: the same lazy proxy
    :func:`structlog.get_logger` returns, so a later ``structlog.configure`` (setup, a
    test's ``capture_logs``) applies as before."""

    __slots__ = ("_logger", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._logger: Any = None

    def __getattr__(self, attr: str) -> Any:
        logger = self._logger
        if logger is None:
            import structlog

            logger = self._logger = structlog.get_logger(self._name)
        return getattr(logger, attr)


def get_logger(name: str) -> Any:
    """The logger of a module: :func:`structlog.get_logger`, structlog imported when
    the logger is first used (see :class:`_Logger`)."""
    return _Logger(name)


_factory: Any = None  # the logger factory setup() installed


def configured() -> bool:
    """Whether structlog is still configured by :func:`setup`, so log lines go to
    stderr (the journal). Code that also runs in the offline commands (the rules
    engine in ``socd replay`` and ``test-rules``) logs its per-record diagnostics only
    then: otherwise structlog prints to stdout, where those commands write data.

    Compared by identity with the factory setup() installed: a later
    ``structlog.configure`` (a reset, a test's ``capture_logs``) that leaves structlog
    "configured" with its default stdout logger does not count."""
    if _factory is None:
        return False  # before setup(): structlog need not even be imported
    import structlog

    return (structlog.is_configured()
            and structlog.get_config().get("logger_factory") is _factory)


def setup(level: str = "info", fmt: str = "auto") -> None:
    """Configure structlog and the stdlib logging of libraries we use."""
    import structlog

    global _factory  # noqa: PLW0603 - set by the one entry point that logs
    _factory = structlog.PrintLoggerFactory(file=sys.stderr)
    use_console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact,
    ]
    if not use_console:
        # Which module logged: lets `journalctl -o cat | jq 'select(.module == "pipeline")'`.
        shared.append(structlog.processors.CallsiteParameterAdder(
            {structlog.processors.CallsiteParameter.MODULE}))
    renderer: Any = (structlog.dev.ConsoleRenderer(colors=True) if use_console
                     else structlog.processors.JSONRenderer(serializer=_json_dumps))
    numeric = logging.getLevelName(level.upper())
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer]
        if not use_console else [*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=_factory,
        cache_logger_on_first_use=False,
    )
    # Libraries (elastic_transport, aiohttp, paho) log through stdlib logging;
    # keep them at WARNING so their request chatter does not flood the journal.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s")
                         if use_console else _JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
