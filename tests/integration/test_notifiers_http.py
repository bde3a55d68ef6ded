"""HTTP notifiers (webhook, Slack, Mattermost, Teams, Telegram) against aiohttp
receivers run by the tests."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from socd.alerting.notifiers.chat import MattermostNotifier, SlackNotifier, TeamsNotifier
from socd.alerting.notifiers.telegram import TelegramNotifier
from socd.alerting.notifiers.webhook import WebhookNotifier
from socd.app.deadletter import DeadLetter
from socd.errors import HealthCheckError, NotifyError
from socd.plugins import PluginContext
from tests.conftest import free_port
from tests.integration.private_broker import make_pki
from tests.unit.test_notifiers import TEXT, TITLE, sample_notification

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

TOKEN = "123456789:AAHsecret-token_value"


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """An HTTP server that records requests and answers from a script."""

    url: str = ""
    requests: list[Seen] = field(default_factory=list)
    # (status, body, headers) answered in order; then 200 "ok".
    script: list[tuple[int, Any, dict[str, str]]] = field(default_factory=list)
    delay: float = 0.0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(Seen(request.method, request.path_qs, dict(request.headers), body))
        if self.delay:
            await asyncio.sleep(self.delay)
        status, payload, headers = self.script.pop(0) if self.script else (200, "ok", {})
        if isinstance(payload, dict | list):
            return web.json_response(payload, status=status, headers=headers)
        return web.Response(status=status, text=str(payload), headers=headers)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with _serve() as rec:
        yield rec


class _serve:
    def __init__(self, ssl_context: Any = None, handler: Any = None) -> None:
        self.ssl_context = ssl_context
        self.rec = Receiver()
        self.handler = handler

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handler or self.rec.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        port = free_port()
        site = web.TCPSite(self.runner, "127.0.0.1", port, ssl_context=self.ssl_context)
        await site.start()
        scheme = "https" if self.ssl_context else "http"
        self.rec.url = f"{scheme}://127.0.0.1:{port}"
        return self.rec

    async def __aexit__(self, *exc: object) -> None:
        await self.runner.cleanup()


def ctx(tmp_path: Path, name: str = "n1") -> PluginContext:
    return PluginContext(name=name, dead_letter=DeadLetter(str(tmp_path / "dl")),
                         config_dir=str(tmp_path))


def closed_url(scheme: str = "http") -> str:
    return f"{scheme}://127.0.0.1:{free_port()}"


# ----------------------------------------------------------------------- webhook --

async def test_webhook_delivers_signed_json(receiver: Receiver, tmp_path: Path) -> None:
    cfg = WebhookNotifier.Config.model_validate({
        "type": "webhook", "url": f"{receiver.url}/hooks/socd", "bearer_token": "bt-1",
        "hmac_secret": "hm-secret", "headers": {"X-Api-Key": "key-1"}})
    notifier = WebhookNotifier(cfg, ctx(tmp_path))
    await notifier.start()
    try:
        await notifier.healthcheck()
        assert receiver.requests == []  # the health check sends nothing
        notification = sample_notification(2, total=4)
        await notifier.send(notification)
    finally:
        await notifier.close()
    (seen,) = receiver.requests
    assert seen.method == "POST"
    assert seen.path == "/hooks/socd"
    assert seen.headers["Idempotency-Key"] == notification.id
    assert seen.headers["Authorization"] == "Bearer bt-1"
    assert seen.headers["X-Api-Key"] == "key-1"
    assert seen.headers["Content-Type"].startswith("application/json")
    assert int(seen.headers["X-Socd-Timestamp"]) > 1_700_000_000
    # The receiver's recipe of docs/notifications.md: HMAC of "<timestamp>.<body>".
    signed = seen.headers["X-Socd-Timestamp"].encode() + b"." + seen.body
    expected = hmac.new(b"hm-secret", signed, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(seen.headers["X-Socd-Signature"], f"sha256={expected}")
    body = seen.json()
    assert body["id"] == notification.id
    assert body["route"] == "critical-soc"
    assert body["group_key"] == notification.group_key
    assert body["severity"] == "critical"
    assert body["severity_label"] == "nghiêm trọng"
    assert body["title"] == TITLE
    assert body["text"] == TEXT
    assert body["total"] == 4
    assert body["created"].endswith("Z")
    assert [a["event"]["hash"] for a in body["alerts"]] == [
        a["event"]["hash"] for a in notification.alerts]


def verify_webhook(secret: bytes, headers: dict[str, str], body: bytes, now: float,
                   max_age: float = 300) -> bool:
    """The receiver's check of docs/notifications.md, "Verifying a webhook request"."""
    timestamp = headers.get("X-Socd-Timestamp", "")
    if not timestamp.isdigit() or abs(now - int(timestamp)) > max_age:
        return False  # too old (or from the future): a replay
    mac = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers.get("X-Socd-Signature", ""), "sha256=" + mac)


async def test_webhook_signature_covers_the_timestamp(receiver: Receiver,
                                                      tmp_path: Path) -> None:
    # Issue 14, point 14: a captured request replayed later, with a fresh timestamp so
    # it passes the age check, must not verify.
    cfg = WebhookNotifier.Config.model_validate({
        "type": "webhook", "url": f"{receiver.url}/hook", "hmac_secret": "hm-secret"})
    notifier = WebhookNotifier(cfg, ctx(tmp_path))
    try:
        await notifier.send(sample_notification())
    finally:
        await notifier.close()
    (seen,) = receiver.requests
    sent_at = int(seen.headers["X-Socd-Timestamp"])
    assert verify_webhook(b"hm-secret", seen.headers, seen.body, now=sent_at + 1)
    assert not verify_webhook(b"hm-secret", seen.headers, seen.body, now=sent_at + 3600)
    replayed = {**seen.headers, "X-Socd-Timestamp": str(sent_at + 3600)}
    assert not verify_webhook(b"hm-secret", replayed, seen.body, now=sent_at + 3600)
    assert not verify_webhook(b"other", seen.headers, seen.body, now=sent_at + 1)
    assert not verify_webhook(b"hm-secret", seen.headers, seen.body + b" ", now=sent_at)


async def test_webhook_put(receiver: Receiver, tmp_path: Path) -> None:
    cfg = WebhookNotifier.Config.model_validate({"type": "webhook", "url": receiver.url,
                                                 "method": "PUT"})
    notifier = WebhookNotifier(cfg, ctx(tmp_path))
    try:
        await notifier.send(sample_notification())
    finally:
        await notifier.close()
    assert receiver.requests[0].method == "PUT"
    assert "X-Socd-Signature" not in receiver.requests[0].headers


@pytest.mark.parametrize(("status", "headers", "retryable", "after"), [
    (503, {"Retry-After": "7"}, True, 7.0),
    (429, {"Retry-After": "2"}, True, 2.0),
    (500, {}, True, None),
    (400, {}, False, None),
    (401, {}, False, None),
    (404, {"Retry-After": "5"}, False, None),
])
async def test_webhook_status_mapping(receiver: Receiver, tmp_path: Path, status: int,
                                      headers: dict[str, str], retryable: bool,
                                      after: float | None) -> None:
    receiver.script.append((status, "nope", headers))
    cfg = WebhookNotifier.Config.model_validate({"type": "webhook", "url": receiver.url})
    notifier = WebhookNotifier(cfg, ctx(tmp_path))
    try:
        with pytest.raises(NotifyError) as info:
            await notifier.send(sample_notification())
    finally:
        await notifier.close()
    assert info.value.retryable is retryable
    assert info.value.retry_after == after
    assert f"HTTP {status}: nope" in str(info.value)


async def test_webhook_unreachable_is_retryable(tmp_path: Path) -> None:
    cfg = WebhookNotifier.Config.model_validate({"type": "webhook", "url": closed_url()})
    notifier = WebhookNotifier(cfg, ctx(tmp_path))
    try:
        with pytest.raises(NotifyError) as info:
            await notifier.send(sample_notification())
        assert info.value.retryable
        with pytest.raises(HealthCheckError, match="cannot connect"):
            await notifier.healthcheck()
    finally:
        await notifier.close()


async def test_webhook_timeout_is_retryable(receiver: Receiver, tmp_path: Path) -> None:
    receiver.delay = 5
    cfg = WebhookNotifier.Config.model_validate({"type": "webhook", "url": receiver.url,
                                                 "timeout_secs": 0.3})
    notifier = WebhookNotifier(cfg, ctx(tmp_path))
    try:
        with pytest.raises(NotifyError, match="timed out") as info:
            await notifier.send(sample_notification())
    finally:
        await notifier.close()
    assert info.value.retryable


async def test_webhook_https_with_ca_file(tmp_path: Path) -> None:
    import ssl

    pki = make_pki(tmp_path / "pki")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(pki["server.crt"], pki["server.key"])
    async with _serve(ssl_context=server_ctx) as rec:
        # ca_file relative to the config directory.
        cfg = WebhookNotifier.Config.model_validate({
            "type": "webhook", "url": f"{rec.url}/x", "ca_file": "pki/ca.crt"})
        notifier = WebhookNotifier(cfg, ctx(tmp_path))
        try:
            await notifier.healthcheck()
            await notifier.send(sample_notification())
        finally:
            await notifier.close()
        assert len(rec.requests) == 1
        # Without the CA the certificate is not trusted: retryable (it may be fixed),
        # and the health check fails.
        cfg2 = WebhookNotifier.Config.model_validate({"type": "webhook", "url": rec.url})
        untrusted = WebhookNotifier(cfg2, ctx(tmp_path))
        try:
            with pytest.raises(NotifyError, match="(?i)certificate"):
                await untrusted.send(sample_notification())
            with pytest.raises(HealthCheckError):
                await untrusted.healthcheck()
        finally:
            await untrusted.close()
        assert len(rec.requests) == 1


# -------------------------------------------------------------------------- chat --

async def test_slack_payload_and_errors(receiver: Receiver, tmp_path: Path) -> None:
    url = f"{receiver.url}/services/T000/B000/XXXXsecretXXXX"
    cfg = SlackNotifier.Config.model_validate({"type": "slack", "url": url})
    notifier = SlackNotifier(cfg, ctx(tmp_path))
    receiver.script += [(200, "ok", {}), (429, "rate_limited", {"Retry-After": "30"}),
                        (404, f"no_service for {url}", {})]
    try:
        await notifier.healthcheck()
        await notifier.send(sample_notification())
        with pytest.raises(NotifyError) as limited:
            await notifier.send(sample_notification())
        with pytest.raises(NotifyError) as gone:
            await notifier.send(sample_notification())
    finally:
        await notifier.close()
    text = receiver.requests[0].json()["text"]
    assert text.startswith(f"*{TITLE}*\n")
    assert "&lt;Potential&gt; SSH Scan &amp; brute-force" in text
    assert receiver.requests[0].path == "/services/T000/B000/XXXXsecretXXXX"
    assert limited.value.retryable
    assert limited.value.retry_after == 30
    assert not gone.value.retryable
    assert "XXXXsecretXXXX" not in str(gone.value)
    assert "<redacted>" in str(gone.value)


async def test_slack_unreachable_hides_url(tmp_path: Path) -> None:
    url = f"{closed_url()}/services/T/B/XXXXsecretXXXX"
    notifier = SlackNotifier(SlackNotifier.Config.model_validate({"type": "slack",
                                                                  "url": url}), ctx(tmp_path))
    try:
        with pytest.raises(NotifyError) as info:
            await notifier.send(sample_notification())
        with pytest.raises(HealthCheckError) as health:
            await notifier.healthcheck()
    finally:
        await notifier.close()
    assert info.value.retryable
    assert "XXXXsecretXXXX" not in str(info.value)
    assert "XXXXsecretXXXX" not in str(health.value)


async def test_mattermost_payload(receiver: Receiver, tmp_path: Path) -> None:
    cfg = MattermostNotifier.Config.model_validate({
        "type": "mattermost", "url": f"{receiver.url}/hooks/abc", "username": "socd",
        "channel": "soc-canh-bao", "icon_url": "https://example.vn/socd.png"})
    notifier = MattermostNotifier(cfg, ctx(tmp_path))
    receiver.script += [(200, "ok", {}), (400, "Unable to parse incoming data", {})]
    try:
        await notifier.send(sample_notification())
        with pytest.raises(NotifyError) as info:
            await notifier.send(sample_notification())
    finally:
        await notifier.close()
    assert receiver.requests[0].json() == {
        "text": f"**{TITLE}**\n{TEXT}", "username": "socd", "channel": "soc-canh-bao",
        "icon_url": "https://example.vn/socd.png"}
    assert not info.value.retryable


async def test_teams_adaptive_card(receiver: Receiver, tmp_path: Path) -> None:
    receiver.script.append((202, "", {}))
    receiver.script.append((502, "Bad Gateway", {}))
    cfg = TeamsNotifier.Config.model_validate({"type": "teams",
                                               "url": f"{receiver.url}/workflows/x?sig=s"})
    notifier = TeamsNotifier(cfg, ctx(tmp_path))
    try:
        await notifier.send(sample_notification())
        with pytest.raises(NotifyError) as info:
            await notifier.send(sample_notification())
    finally:
        await notifier.close()
    payload = receiver.requests[0].json()
    assert receiver.requests[0].path == "/workflows/x?sig=s"
    assert payload["type"] == "message"
    card = payload["attachments"][0]["content"]
    assert payload["attachments"][0]["contentType"] == \
        "application/vnd.microsoft.card.adaptive"
    assert card["type"] == "AdaptiveCard"
    texts = [b.get("text") for b in card["body"]]
    assert TITLE in texts
    assert "Luật: ET SCAN <Potential> SSH Scan & brute-force" in texts
    assert info.value.retryable
    assert "sig=s" not in str(info.value)


# ---------------------------------------------------------------------- telegram --

class FakeBotApi:
    """The two Bot API methods socd uses, with Telegram's answer shapes."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.script: list[tuple[int, dict[str, Any]]] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        bot, _, method = path.strip("/").partition("/")
        if bot != f"bot{TOKEN}":
            return web.json_response({"ok": False, "error_code": 401,
                                      "description": "Unauthorized"}, status=401)
        if method == "getMe":
            return web.json_response({"ok": True, "result": {
                "id": 123456789, "is_bot": True, "first_name": "socd", "username": "socd_bot"}})
        if method != "sendMessage":
            return web.json_response({"ok": False, "error_code": 404,
                                      "description": "Not Found"}, status=404)
        if self.script:
            status, answer = self.script.pop(0)
            return web.json_response(answer, status=status)
        payload = await request.json()
        self.messages.append(payload)
        return web.json_response({"ok": True, "result": {
            "message_id": len(self.messages), "chat": {"id": payload["chat_id"]},
            "text": payload["text"]}})


@pytest.fixture
async def bot_api() -> AsyncIterator[tuple[FakeBotApi, str]]:
    api = FakeBotApi()
    async with _serve(handler=api.handle) as rec:
        yield api, rec.url


def telegram(url: str, tmp_path: Path, token: str = TOKEN) -> TelegramNotifier:
    cfg = TelegramNotifier.Config.model_validate({
        "type": "telegram", "bot_token": token, "chat_id": "-1001234567890",
        "api_url": url})
    return TelegramNotifier(cfg, ctx(tmp_path))


async def test_telegram_sends_escaped_html(bot_api: tuple[FakeBotApi, str],
                                           tmp_path: Path) -> None:
    api, url = bot_api
    notifier = telegram(url, tmp_path)
    try:
        await notifier.healthcheck()
        assert api.messages == []
        await notifier.send(sample_notification(text="a < b & c > d\n" + "x" * 5000))
    finally:
        await notifier.close()
    (message,) = api.messages
    assert message["chat_id"] == "-1001234567890"
    assert message["parse_mode"] == "HTML"
    assert message["disable_web_page_preview"] is True
    assert message["text"].startswith(f"<b>{TITLE}</b>\na &lt; b &amp; c &gt; d\nxxx")
    assert message["text"].endswith(")")
    assert "…(+" in message["text"]


async def test_telegram_rate_limit_and_errors(bot_api: tuple[FakeBotApi, str],
                                              tmp_path: Path) -> None:
    api, url = bot_api
    api.script += [
        (429, {"ok": False, "error_code": 429,
               "description": "Too Many Requests: retry after 17",
               "parameters": {"retry_after": 17}}),
        (400, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}),
        (500, {"ok": False, "error_code": 500, "description": "Internal Server Error"}),
    ]
    notifier = telegram(url, tmp_path)
    errors = []
    try:
        for _ in range(3):
            with pytest.raises(NotifyError) as info:
                await notifier.send(sample_notification())
            errors.append(info.value)
    finally:
        await notifier.close()
    limited, not_found, internal = errors
    assert limited.retryable
    assert limited.retry_after == 17
    assert not not_found.retryable
    assert "chat not found" in str(not_found)
    assert internal.retryable
    for err in errors:
        assert TOKEN not in str(err)
        assert "123456789:" not in str(err)


async def test_telegram_wrong_token(bot_api: tuple[FakeBotApi, str], tmp_path: Path) -> None:
    _, url = bot_api
    notifier = telegram(url, tmp_path, token="999:wrong-token-value")
    try:
        with pytest.raises(HealthCheckError) as health:
            await notifier.healthcheck()
        with pytest.raises(NotifyError) as info:
            await notifier.send(sample_notification())
    finally:
        await notifier.close()
    assert "401" in str(health.value)
    assert not info.value.retryable
    assert "wrong-token-value" not in str(health.value) + str(info.value)


async def test_telegram_unreachable_hides_token(tmp_path: Path) -> None:
    notifier = telegram(closed_url(), tmp_path)
    try:
        with pytest.raises(NotifyError) as info:
            await notifier.send(sample_notification())
        with pytest.raises(HealthCheckError) as health:
            await notifier.healthcheck()
    finally:
        await notifier.close()
    assert info.value.retryable
    assert TOKEN not in str(info.value)
    assert TOKEN not in str(health.value)
    assert info.value.__cause__ is None  # no chained exception that could hold the URL
