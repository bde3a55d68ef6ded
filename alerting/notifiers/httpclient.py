"""The thin HTTP layer of the HTTP notifiers (webhook, chat, Telegram, Alertmanager).

One :class:`aiohttp.ClientSession` per notifier, created on first use (inside
the running loop) and closed by ``close()``. A request is sent once: the
notification core owns retries, backoff and the overall timeout. What can go
wrong becomes a :class:`~socd.errors.NotifyError`:

* no connection, TLS failure, timeout, a reset mid-request: retryable;
* HTTP 429, 408 and 5xx: retryable, with ``Retry-After`` when the server sent one;
* any other non-2xx answer: not retryable (the message is dead-lettered).

Secrets that may appear in URLs or errors (a Telegram bot token, an incoming
webhook URL) are passed as ``secrets`` and replaced in every error text.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from multidict import CIMultiDict
from pydantic import Field

from socd import __version__
from socd.config import NotifierConfig
from socd.config.tls import client_context_for
from socd.errors import HealthCheckError, NotifyError

from .common import parse_retry_after, redact, status_error

USER_AGENT = f"socd/{__version__}"


class HttpNotifierConfig(NotifierConfig):
    """TLS options every HTTP notifier has."""

    ca_file: str | None = Field(None, description="CA bundle to verify the server with "
                                "(relative to the config file); default: the system store.")
    verify_certs: bool = Field(True, description="Verify the server certificate and name. "
                               "Turn off only for a test server.")


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    text: str
    headers: Mapping[str, str]

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class HttpClient:
    """Sends single HTTP requests for one notifier and maps failures to errors."""

    def __init__(self, what: str, config: HttpNotifierConfig, config_dir: str,
                 secrets: Sequence[str] = ()) -> None:
        self.what = what  # "webhook soc-siem": the prefix of every error text
        self.config = config
        self.config_dir = config_dir
        self.secrets = [s for s in secrets if s]
        self._ssl: ssl.SSLContext | None = None
        self._session: aiohttp.ClientSession | None = None

    def ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = client_context_for(self.config_dir, ca_file=self.config.ca_file,
                                           verify=self.config.verify_certs)
        return self._ssl

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self.ssl_context(), limit=8),
                timeout=aiohttp.ClientTimeout(total=self.config.timeout_secs),
                headers={"User-Agent": USER_AGENT},
                # Proxies come from the config, never from the environment.
                trust_env=False,
            )
        return self._session

    async def request(self, method: str, url: str, *, body: bytes | None = None,
                      headers: Mapping[str, str] | None = None,
                      auth: aiohttp.BasicAuth | None = None) -> Response:
        """Send one request; raise a retryable :class:`NotifyError` when no answer came."""
        try:
            async with self.session().request(method, url, data=body, headers=headers,
                                              auth=auth, allow_redirects=False) as resp:
                text = await resp.text(errors="replace")
                # Case-insensitive: proxies may lower-case `retry-after`.
                return Response(resp.status, text, CIMultiDict(resp.headers))
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise NotifyError(self._describe(exc), retryable=True) from None

    def check(self, response: Response) -> None:
        """Raise the :class:`NotifyError` an unsuccessful answer stands for."""
        if response.ok:
            return
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        error = status_error(self.what, response.status,
                             redact(response.text, self.secrets), retry_after=retry_after)
        raise error

    async def send(self, method: str, url: str, *, body: bytes,
                   headers: Mapping[str, str] | None = None,
                   auth: aiohttp.BasicAuth | None = None) -> Response:
        """:meth:`request` then :meth:`check`: returns only a 2xx answer."""
        response = await self.request(method, url, body=body, headers=headers, auth=auth)
        self.check(response)
        return response

    async def probe(self, url: str) -> None:
        """Open a TCP (and TLS, for https) connection to ``url``'s host; send nothing.

        The health check of plain webhooks: a request would post a message.
        """
        parts = urlsplit(url)
        secure = parts.scheme == "https"
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise HealthCheckError(f"{self.what}: not an http(s) URL")
        port = parts.port or (443 if secure else 80)
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(parts.hostname, port,
                                        ssl=self.ssl_context() if secure else None),
                self.config.timeout_secs)
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            raise HealthCheckError(
                f"{self.what}: cannot connect to {parts.hostname}:{port}: "
                f"{self._text(exc)}") from None
        writer.close()
        # A TLS peer may reset instead of closing cleanly.
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _text(self, exc: BaseException) -> str:
        text = str(exc) or type(exc).__name__
        return redact(text, self.secrets)

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, TimeoutError | asyncio.TimeoutError):
            return f"{self.what}: timed out after {self.config.timeout_secs:g}s"
        return f"{self.what}: {type(exc).__name__}: {self._text(exc)}"


def json_headers(extra: Mapping[str, str] | None = None) -> dict[str, Any]:
    headers = {"Content-Type": "application/json; charset=utf-8"}
    if extra:
        headers.update(extra)
    return headers
