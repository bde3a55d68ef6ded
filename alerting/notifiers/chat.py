"""Chat notifiers through incoming webhooks: ``slack``, ``mattermost`` and ``teams``.

* **Slack**: an incoming-webhook URL; the payload is ``{"text": "*<title>*\\n<text>"}``
  in Slack's mrkdwn, with ``&``, ``<`` and ``>`` escaped as Slack requires (a
  ``<`` in an alert would otherwise start a link or a mention), and
  ``unfurl_links``/``unfurl_media`` off, so Slack fetches and shows nothing from a
  URL an alert quotes. Slack answers ``200 ok``; 429 comes with ``Retry-After``.
* **Mattermost**: an incoming-webhook URL, Slack-compatible payload; the title is
  ``**bold**`` (Markdown: a single ``*`` is italic in Mattermost). Optional
  ``username``, ``channel`` and ``icon_url`` override the webhook's defaults
  (the server must allow overrides).
* **Teams**: we post an *Adaptive Card* in the format of the Teams **Workflows**
  ("Post to a channel when a webhook request is received") webhook::

      {"type": "message",
       "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
                        "contentUrl": null,
                        "content": {"type": "AdaptiveCard", "version": "1.4", ...}}]}

  Microsoft retired the Office 365 connectors ("Incoming Webhook", MessageCard
  payloads) in favour of Workflows, which accept only this shape; an Adaptive
  Card is also what the remaining connectors render, so one format covers both.
  The card has the title (red for high/critical), a fact set (severity, alert
  count, route) and one text block per line of the text (Teams does not render
  single newlines inside one block). Workflows answer ``202 Accepted``.

Title and text are plain text quoting values from the events (host names, command
lines, user names): each payload turns them into its service's markup with
:mod:`.markup`, so an ``@channel``, an image, a link or HTML in an alert is shown as
the characters it is and pings, loads and links nothing.

The webhook URLs embed the credential, so they are secrets: never logged, and
replaced by ``<redacted>`` in error texts. Health checks open a TCP/TLS
connection to the host and post nothing. Long texts are cut to each service's
limit with a ``…(+N)`` marker.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator

from socd.plugins import Notification, PluginContext
from socd.severity import Severity

from . import markup
from .common import dumps, severity_of, truncate
from .httpclient import HttpClient, HttpNotifierConfig, json_headers

SLACK_TEXT_LIMIT = 39_000  # Slack truncates messages beyond 40,000 characters
MATTERMOST_TEXT_LIMIT = 16_000  # Mattermost's post limit is 16,383 characters
TEAMS_TEXT_LIMIT = 12_000  # Teams rejects messages over ~28 KB (UTF-8, with the JSON)
TEAMS_MAX_BLOCKS = 60


def slack_escape(text: str) -> str:
    """Plain text as Slack mrkdwn (see :func:`.markup.slack`)."""
    return markup.slack(text)


def slack_payload(notification: Notification) -> dict[str, Any]:
    text = f"*{markup.slack(notification.title)}*\n{markup.slack(notification.text)}"
    # Unfurling would make Slack fetch and show what a URL in an alert points to.
    return {"text": markup.fit(text, SLACK_TEXT_LIMIT, "slack"),
            "unfurl_links": False, "unfurl_media": False}


def mattermost_payload(notification: Notification, *, username: str | None = None,
                       channel: str | None = None,
                       icon_url: str | None = None) -> dict[str, Any]:
    text = f"**{markup.markdown(notification.title)}**\n{markup.markdown(notification.text)}"
    payload: dict[str, Any] = {"text": markup.fit(text, MATTERMOST_TEXT_LIMIT, "markdown")}
    if username:
        payload["username"] = username
    if channel:
        payload["channel"] = channel
    if icon_url:
        payload["icon_url"] = icon_url
    return payload


def teams_payload(notification: Notification) -> dict[str, Any]:
    """The Workflows message with one Adaptive Card (see the module docstring)."""
    severity = severity_of(notification)
    color = {Severity.CRITICAL: "Attention", Severity.HIGH: "Attention",
             Severity.MEDIUM: "Warning"}.get(severity, "Default")
    total = max(notification.total, len(notification.alerts))
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": markup.teams(notification.title), "weight": "Bolder",
         "size": "Medium", "color": color, "wrap": True, "style": "heading"},
        {"type": "FactSet", "facts": [
            {"title": "Mức độ", "value": severity.label},
            {"title": "Số cảnh báo", "value": str(total)},
            {"title": "Tuyến", "value": markup.teams(notification.route)},
        ]},
    ]
    # Cut the plain text (an escape is never split), then escape line by line: a line's
    # start is where Markdown looks for list markers.
    lines = [markup.teams(line)
             for line in truncate(notification.text, TEAMS_TEXT_LIMIT).splitlines()]
    if len(lines) > TEAMS_MAX_BLOCKS:
        lines = [*lines[:TEAMS_MAX_BLOCKS - 1], "\n\n".join(lines[TEAMS_MAX_BLOCKS - 1:])]
    body += [{"type": "TextBlock", "text": line or " ", "wrap": True, "spacing": "None"}
             for line in lines]
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "msteams": {"width": "Full"},
        "body": body,
    }
    return {"type": "message", "attachments": [
        {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None,
         "content": card}]}


class ChatConfig(HttpNotifierConfig):
    url: SecretStr = Field(description="The incoming-webhook URL (it embeds the "
                           "credential: keep it in an environment variable).")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith(("https://", "http://")):
            raise ValueError("must be an http(s):// URL")
        return value


class _ChatNotifier:
    """Posts one JSON payload to an incoming-webhook URL."""

    kind = "chat"
    config: ChatConfig

    def __init__(self, config: ChatConfig, ctx: PluginContext) -> None:
        self.name = ctx.name
        self.config = config
        self.ctx = ctx
        self.url = config.url.get_secret_value()
        self.http = HttpClient(f"{self.kind} {ctx.name}", config, ctx.config_dir, [self.url])

    def payload(self, notification: Notification) -> dict[str, Any]:
        raise NotImplementedError

    async def start(self) -> None:
        return None

    async def healthcheck(self) -> None:
        await self.http.probe(self.url)

    async def send(self, notification: Notification) -> None:
        await self.http.send("POST", self.url, body=dumps(self.payload(notification)),
                             headers=json_headers())

    async def close(self) -> None:
        await self.http.close()


class SlackNotifier(_ChatNotifier):
    """Slack incoming webhook (mrkdwn text)."""

    kind = "slack"

    class Config(ChatConfig):
        type: Literal["slack"]

    def payload(self, notification: Notification) -> dict[str, Any]:
        return slack_payload(notification)


class MattermostNotifier(_ChatNotifier):
    """Mattermost incoming webhook (Markdown text)."""

    kind = "mattermost"

    class Config(ChatConfig):
        type: Literal["mattermost"]
        username: str | None = Field(None, description="Post as this user name (the server "
                                     "must allow it: `EnablePostUsernameOverride`).")
        channel: str | None = Field(None, description="Channel name to post to instead of "
                                    "the webhook's default channel.")
        icon_url: str | None = Field(None, description="Avatar URL for the post (the server "
                                     "must allow it: `EnablePostIconOverride`).")

    config: Config

    def payload(self, notification: Notification) -> dict[str, Any]:
        cfg = self.config
        return mattermost_payload(notification, username=cfg.username, channel=cfg.channel,
                                  icon_url=cfg.icon_url)


class TeamsNotifier(_ChatNotifier):
    """Microsoft Teams Workflows webhook (Adaptive Card)."""

    kind = "teams"

    class Config(ChatConfig):
        type: Literal["teams"]

    def payload(self, notification: Notification) -> dict[str, Any]:
        return teams_payload(notification)
