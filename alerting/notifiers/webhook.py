"""The ``webhook`` notifier: the notification as JSON to any HTTP endpoint (SIEM, SOAR,
ticketing).

The body is :func:`~socd.alerting.notifiers.common.notification_body` (see that
module for its shape). Every request carries:

* ``Idempotency-Key: <notification id>``: the id is stable across retries, so a
  receiver that stores it drops the duplicate a retry after a lost answer sends;
* ``X-Socd-Timestamp: <unix seconds>`` of this attempt and, with ``hmac_secret``,
  ``X-Socd-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">``: the
  timestamp is signed with the exact body bytes, so a receiver that refuses old
  timestamps refuses a captured request replayed later (``hmac_input: body`` signs
  the body alone, as socd did before, for receivers not updated yet);
* ``Authorization: Bearer <bearer_token>`` when one is set, plus ``headers``.

Any 2xx answer is success. 429/5xx (with ``Retry-After``) and network errors
are retried by the notification core; other answers are dead-lettered. The
health check opens a TCP/TLS connection to the host and sends nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import Literal

from pydantic import Field, SecretStr

from socd.plugins import Notification, PluginContext

from .common import dumps, notification_body
from .httpclient import HttpClient, HttpNotifierConfig, json_headers

# What the HMAC covers (the `hmac_input` option): "<X-Socd-Timestamp>.<body>", or the
# body alone as before the timestamp was signed.
HmacInput = Literal["timestamp.body", "body"]


def signature(secret: str, body: bytes, timestamp: str | None = None) -> str:
    """The ``X-Socd-Signature`` value: ``sha256=`` and the hex HMAC-SHA256 of
    ``<timestamp>.<body>`` (of ``body`` alone when ``timestamp`` is None)."""
    signed = body if timestamp is None else timestamp.encode("ascii") + b"." + body
    return "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def webhook_headers(notification_id: str, body: bytes, *, now: float,
                    bearer_token: str | None = None, hmac_secret: str | None = None,
                    extra: Mapping[str, str] | None = None,
                    hmac_input: HmacInput = "timestamp.body") -> dict[str, str]:
    """The request headers of one webhook call (pure, for tests)."""
    headers = json_headers(extra)
    headers["Idempotency-Key"] = notification_id
    timestamp = str(int(now))
    headers["X-Socd-Timestamp"] = timestamp
    if bearer_token:
        headers["Authorization"] = f"Bearer {bearer_token}"
    if hmac_secret:
        headers["X-Socd-Signature"] = signature(
            hmac_secret, body, timestamp if hmac_input == "timestamp.body" else None)
    return headers


class WebhookNotifier:
    """POSTs (or PUTs) the notification JSON to ``url``."""

    class Config(HttpNotifierConfig):
        type: Literal["webhook"]
        url: str = Field(pattern=r"^https?://", description="Endpoint the JSON is sent to.")
        method: Literal["POST", "PUT"] = Field("POST", description="HTTP method.")
        headers: dict[str, SecretStr] = Field(
            default_factory=dict, description="Extra request headers (for example an API "
            "key); their values are treated as secrets.")
        bearer_token: SecretStr | None = Field(
            None, description="Sent as `Authorization: Bearer <token>`.")
        hmac_secret: SecretStr | None = Field(
            None, description="Signs every request: `X-Socd-Signature: sha256=<hex "
            "HMAC-SHA256 of <X-Socd-Timestamp>.<body>>`; the receiver recomputes it to "
            "authenticate socd and refuses old timestamps to stop replays "
            "(docs/notifications.md, \"Verifying a webhook request\").")
        hmac_input: HmacInput = Field(
            "timestamp.body", description="What the HMAC covers: `timestamp.body` (the "
            "`X-Socd-Timestamp` value, a dot, the body) or `body` (the body alone, as "
            "before socd signed the timestamp: a replayed request then still verifies; "
            "only for receivers not updated yet).")

    def __init__(self, config: Config, ctx: PluginContext) -> None:
        self.name = ctx.name
        self.config = config
        self.ctx = ctx
        secrets = [v.get_secret_value() for v in config.headers.values()]
        self.http = HttpClient(f"webhook {ctx.name}", config, ctx.config_dir, secrets)

    async def start(self) -> None:
        return None

    async def healthcheck(self) -> None:
        await self.http.probe(self.config.url)

    async def send(self, notification: Notification) -> None:
        cfg = self.config
        body = dumps(notification_body(notification))
        headers = webhook_headers(
            notification.id, body, now=time.time(),
            bearer_token=cfg.bearer_token.get_secret_value() if cfg.bearer_token else None,
            hmac_secret=cfg.hmac_secret.get_secret_value() if cfg.hmac_secret else None,
            extra={k: v.get_secret_value() for k, v in cfg.headers.items()},
            hmac_input=cfg.hmac_input)
        await self.http.send(cfg.method, cfg.url, body=body, headers=headers)

    async def close(self) -> None:
        await self.http.close()
