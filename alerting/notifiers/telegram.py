"""The ``telegram`` notifier: Bot API ``sendMessage`` to a chat, group or channel.

The message uses ``parse_mode: HTML``: the title in ``<b>``, then the text, both
escaped with :func:`html.escape`, so ``<``, ``>`` and ``&`` in alert data can
never break the markup (Telegram rejects a message whose HTML does not parse), and
with every ``@name`` broken by an invisible word joiner (an alert cannot mention a
member of the chat; see :mod:`.markup`).
Telegram limits a message to 4096 characters after entity parsing, counted in
UTF-16 code units; longer texts are cut *before* escaping (so an entity is
never split) and end with ``…(+N)``, N being the characters left out.

Errors: Telegram answers ``{"ok": false, "error_code": N, "description": ...}``;
429 carries ``parameters.retry_after`` (seconds) and is retried after that
delay, as are 5xx and network errors. 400/403 (chat not found, bot blocked or
not a member) are not retryable. A group upgraded to a supergroup answers with
``parameters.migrate_to_chat_id``: the error says which ``chat_id`` to set.

The bot token is part of every URL; it is a secret and is replaced by
``<redacted>`` in all error texts. The health check calls ``getMe`` (sends
nothing to the chat).
"""

from __future__ import annotations

from typing import Any, Literal

import orjson
from pydantic import Field, SecretStr

from socd.errors import HealthCheckError, NotifyError
from socd.plugins import Notification, PluginContext

from . import markup
from .common import (
    dumps,
    is_retryable_status,
    parse_retry_after,
    redact,
    truncate_utf16,
    utf16_len,
)
from .httpclient import HttpClient, HttpNotifierConfig, Response, json_headers

MESSAGE_LIMIT = 4096
TITLE_LIMIT = 512


def telegram_text(title: str, text: str, limit: int = MESSAGE_LIMIT) -> str:
    """The HTML message: bold escaped title, escaped text, at most ``limit`` visible
    characters (UTF-16 code units)."""
    # Mentions are broken before cutting (the joiners count towards the limit), HTML is
    # escaped after (Telegram counts the characters entities stand for).
    title = truncate_utf16(" ".join(markup.break_mentions(title).split()), TITLE_LIMIT)
    text = markup.break_mentions(text)
    if not title:
        return markup.telegram(truncate_utf16(text, limit))
    room = max(0, limit - utf16_len(title) - 1)
    body = truncate_utf16(text, room)
    return f"<b>{markup.telegram(title)}</b>\n{markup.telegram(body)}"


def telegram_payload(notification: Notification, chat_id: str, *,
                     disable_web_page_preview: bool = True,
                     message_thread_id: int | None = None,
                     disable_notification: bool = False) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "chat_id": chat_id,
        "text": telegram_text(notification.title, notification.text),
        "parse_mode": "HTML",
        "disable_web_page_preview": disable_web_page_preview,
    }
    if message_thread_id is not None:
        payload["message_thread_id"] = message_thread_id
    if disable_notification:
        payload["disable_notification"] = True
    return payload


def telegram_error(what: str, status: int, answer: Any, secrets: list[str]) -> NotifyError:
    """The error for a Bot API answer that is not ``ok`` (pure, for tests)."""
    doc: dict[str, Any] = answer if isinstance(answer, dict) else {}
    error_code = doc.get("error_code")
    code: int = error_code if isinstance(error_code, int) else status
    description = redact(str(doc.get("description") or ""), secrets)[:200]
    raw_params = doc.get("parameters")
    params: dict[str, Any] = raw_params if isinstance(raw_params, dict) else {}
    retry_after = parse_retry_after(str(params.get("retry_after", "")) or None)
    message = f"{what}: Telegram error {code}" + (f": {description}" if description else "")
    migrate = params.get("migrate_to_chat_id")
    if migrate is not None:
        message += f" (the group became a supergroup: set chat_id to {migrate})"
        return NotifyError(message, retryable=False)
    retryable = is_retryable_status(code) or is_retryable_status(status)
    return NotifyError(message, retryable=retryable,
                       retry_after=retry_after if retryable else None)


class TelegramNotifier:
    """Sends each notification as one Telegram message."""

    class Config(HttpNotifierConfig):
        type: Literal["telegram"]
        bot_token: SecretStr = Field(description="The bot token from @BotFather "
                                     "(`123456:ABC...`).")
        chat_id: str = Field(min_length=1, description="Target chat: a numeric id (groups "
                             "are negative, `-100...`) or `@channelname`.")
        api_url: str = Field("https://api.telegram.org", pattern=r"^https?://",
                             description="Bot API server (a local Bot API server or a test "
                             "double).")
        message_thread_id: int | None = Field(None, description="Topic (thread) of a forum "
                                              "supergroup to post in.")
        disable_web_page_preview: bool = Field(True, description="No link previews under "
                                               "the message.")
        disable_notification: bool = Field(False, description="Deliver silently (no sound).")

    def __init__(self, config: Config, ctx: PluginContext) -> None:
        self.name = ctx.name
        self.config = config
        self.ctx = ctx
        self._token = config.bot_token.get_secret_value()
        self._base = f"{config.api_url.rstrip('/')}/bot{self._token}"
        self.http = HttpClient(f"telegram {ctx.name}", config, ctx.config_dir, [self._token])

    async def start(self) -> None:
        return None

    async def healthcheck(self) -> None:
        try:
            response = await self.http.request("GET", f"{self._base}/getMe")
        except NotifyError as exc:
            raise HealthCheckError(str(exc)) from None
        answer = _json(response)
        if not (response.ok and isinstance(answer, dict) and answer.get("ok") is True):
            error = telegram_error(self.http.what, response.status, answer, self.http.secrets)
            raise HealthCheckError(f"{error} (getMe)")

    async def send(self, notification: Notification) -> None:
        cfg = self.config
        payload = telegram_payload(notification, cfg.chat_id,
                                   disable_web_page_preview=cfg.disable_web_page_preview,
                                   message_thread_id=cfg.message_thread_id,
                                   disable_notification=cfg.disable_notification)
        response = await self.http.request("POST", f"{self._base}/sendMessage",
                                           body=dumps(payload), headers=json_headers())
        answer = _json(response)
        if response.ok and isinstance(answer, dict) and answer.get("ok") is True:
            return
        error = telegram_error(self.http.what, response.status, answer, self.http.secrets)
        if error.retry_after is None and error.retryable:
            error.retry_after = parse_retry_after(response.headers.get("Retry-After"))
        raise error

    async def close(self) -> None:
        await self.http.close()


def _json(response: Response) -> Any:
    try:
        return orjson.loads(response.text)
    except orjson.JSONDecodeError:
        return None
