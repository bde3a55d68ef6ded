"""Finding 12: what an alert quotes is shown, never obeyed, in every chat and e-mail.

A real ``socd run`` receives one webhook event whose host name, rule name, rule
description, message and command line carry markup an attacker would try: channel-wide
mentions (``@channel``, ``@all``, ``@here``, Slack's ``<!here>`` and ``<@U…>``), a
Markdown image and link, a Slack link (``<url|text>``), HTML tags, a fake heading and a
bare image URL. The alert is notified to Slack, Mattermost, Teams, Telegram, a JSON
webhook (loopback HTTP receivers standing in for the services) and by e-mail (a real
SMTP server). Each received payload is then read the way its service reads it:

* Slack: no ``<`` or ``>`` left (Slack's links and mentions all start with ``<``), no
  ``@channel``/``@here``/``@everyone`` word, unfurling off;
* Mattermost: first Mattermost's own Slack compatibility (``<!channel>`` → ``@channel``,
  ``<url|text>`` → a Markdown link), then its mention parser (words split as its server
  splits them), then Markdown: no link or image opener, no bare URL;
* Teams: no Markdown link in any text block;
* Telegram (``parse_mode: HTML``): the only tag is socd's ``<b>`` title; no ``@name``;
* e-mail HTML: none of the attacker's tags is a tag;
* webhook JSON: the values arrive exactly as sent (a machine channel, no markup).

In every channel the hostile values must still be readable (the analyst needs them).
Before the fix the Mattermost and Teams texts were not escaped at all, and Slack and
Telegram let the mentions through.
"""

from __future__ import annotations

import html
import json
import re
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.policy import default as default_policy
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiosmtpd.controller import Controller

from tests.conftest import free_port
from tests.helpers import SocdProcess, ecs_alert, wait_for

pytestmark = [pytest.mark.timeout(180)]

TOKEN = "adv-chat-escaping-token-5b7e21d0"
BOT_TOKEN = "123456:adv-chat-bot-token"

HOST = "srv-@channel-<!here>-<b>x</b>"
RULE_NAME = "@all ![x](http://evil.example/x.png) <!channel>"
DESCRIPTION = ("[Mở báo cáo](http://evil.example/login) <http://evil.example/a|bấm vào đây> "
               "<@U024BE7LH> <img src=http://evil.example/p.gif> www.evil.example")
MESSAGE = "# GIẢ MẠO\n@here <script>alert(1)</script> <a href='http://evil.example'>x</a>"
COMMAND_LINE = "powershell -enc @everyone <i>payload</i> | iex"
HOSTILE = (HOST, RULE_NAME, DESCRIPTION, MESSAGE, COMMAND_LINE)
# What an analyst must still be able to read in every channel (as plain characters).
READABLE = ("srv-@", "channel-<!here>-<b>x</b>", "![x](http://evil.example/x.png)",
            "[Mở báo cáo](http://evil.example/login)", "<http://evil.example/a|bấm vào đây>")


@dataclass
class Receiver:
    """One loopback HTTP server standing in for Slack, Mattermost, Teams, Telegram and a
    JSON webhook; it records each request body by path."""

    bodies: dict[str, list[Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path = self.path.split("?", 1)[0]
                outer.bodies.setdefault(path, []).append(json.loads(body))
                answer = b'{"ok": true, "result": {"message_id": 1}}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@dataclass
class Mailbox:
    messages: list[bytes] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.original_content or envelope.content)
        return "250 OK"


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    yield rec
    rec.close()


@pytest.fixture(scope="module")
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box, port = Mailbox(), free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


def config(tmp_path: Path, receiver: Receiver, smtp_port: int, wh_port: int) -> dict[str, Any]:
    base = receiver.base
    return {
        "state_dir": str(tmp_path / "state"),
        "rules": {"paths": []},
        "log": {"format": "json"},
        "http": {"host": "127.0.0.1", "port": free_port()},
        "collectors": {"hook": {"type": "webhook", "port": wh_port,
                                "sources": {"ids": {"token": TOKEN}}}},
        "sinks": {"store": {"type": "sqlite", "path": "alerts.db",
                            "flush_interval_secs": 0.1}},
        "notifiers": {
            "slack": {"type": "slack", "url": f"{base}/slack/T0/B0/secret"},
            "mattermost": {"type": "mattermost", "url": f"{base}/mattermost/hooks/x"},
            "teams": {"type": "teams", "url": f"{base}/teams/workflow"},
            "telegram": {"type": "telegram", "bot_token": BOT_TOKEN, "chat_id": "-1001",
                         "api_url": base},
            "json": {"type": "webhook", "url": f"{base}/json"},
            "mail": {"type": "email", "host": "127.0.0.1", "port": smtp_port,
                     "security": "none", "from_addr": "soc@so-tttt.example.vn",
                     "to": ["truc-ban@so-tttt.example.vn"]},
        },
        "notifications": {"routes": [{
            "name": "all", "notifiers": ["slack", "mattermost", "teams", "telegram", "json",
                                         "mail"],
            "grouping": {"group_wait_secs": 0}}]},
    }


def hostile_event() -> dict[str, Any]:
    event = ecs_alert(1, "chat")
    event["host"] = {"name": HOST}
    event["rule"] = {"id": "adv-chat-1", "name": RULE_NAME, "description": DESCRIPTION}
    event["message"] = MESSAGE
    event["process"] = {"command_line": COMMAND_LINE}
    event["user"] = {"name": "@channel"}
    return event


def post(port: int, body: bytes) -> int:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/ingest/ids", data=body,
                                 method="POST",
                                 headers={"Authorization": f"Bearer {TOKEN}",
                                          "Content-Type": "application/x-ndjson"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return int(resp.status)


@dataclass(frozen=True)
class Delivered:
    bodies: dict[str, list[Any]]
    mails: list[bytes]


@pytest.fixture(scope="module")
def delivered(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver,
              mailbox: tuple[Mailbox, int]) -> Delivered:
    """Run socd once, send the hostile event, return what every channel received."""
    tmp_path = tmp_path_factory.mktemp("chat")
    box, smtp_port = mailbox
    wh_port = free_port()
    socd = SocdProcess(config(tmp_path, receiver, smtp_port, wh_port), tmp_path)
    socd.start()
    try:
        assert post(wh_port, orjson.dumps(hostile_event()) + b"\n") == 202
        paths = ("/slack/T0/B0/secret", "/mattermost/hooks/x", "/teams/workflow",
                 f"/bot{BOT_TOKEN}/sendMessage", "/json")
        wait_for(lambda: all(p in receiver.bodies for p in paths) and box.messages, 90,
                 "the alert notified on every channel")
    finally:
        assert socd.stop() == 0
    return Delivered(receiver.bodies, box.messages)


# ----------------------------------------------------------------------- readers --

_WORD_BREAK = re.compile(r"[^\w:.\-@]")  # Mattermost: letters, digits, : . - _ @ make words
_SLACK_LINK = re.compile(r"<([^\n<|>]+)\|([^\n>]+)>")  # Mattermost's linkWithTextRegex
_MD_ESCAPED = re.compile(r"\\[!-/:-@\[-`{-~]")


def mattermost_sees(text: str) -> str:
    """The text after Mattermost's Slack compatibility of incoming webhooks."""
    for tag, mention in (("<!channel>", "@channel"), ("<!here>", "@here"),
                         ("<!all>", "@all")):
        text = text.replace(tag, mention)
    text = re.sub(r"<@([A-Za-z0-9]+)>", r"@\1", text)
    return _SLACK_LINK.sub(r"[\2](\1)", text)


def mentions(text: str) -> list[str]:
    """Words Mattermost's server (and Slack, Telegram) would read as mentions: its
    parser splits on what cannot be in a mention, then again on ``. - :``."""
    found = []
    for word in _WORD_BREAK.split(text):
        word = word.lstrip(":.-_")
        parts = [word] if word.startswith("@") else re.split(r"[.\-:]", word)
        found += [p.rstrip(".-:") for p in parts if p.startswith("@") and len(p) > 1]
    return found


def unescaped(text: str) -> str:
    """``text`` with Markdown's backslash escapes blanked out (what is left is live)."""
    return _MD_ESCAPED.sub("  ", text)


def md_readable(text: str) -> str:
    """What a Markdown renderer displays: escapes and entities resolved."""
    return html.unescape(re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", text)).replace("\u2060", "")


class Tags(HTMLParser):
    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.data: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.data.append(data)


def assert_readable(shown: str) -> None:
    shown = shown.replace("\u2060", "")
    for text in READABLE:
        assert text in shown, f"{text!r} is not readable in {shown!r}"


# ------------------------------------------------------------------------- tests --

def test_slack(delivered: Delivered) -> None:
    (slack,) = delivered.bodies["/slack/T0/B0/secret"]
    text = slack["text"]
    assert not {"<", ">"} & set(text), text
    assert mentions(text) == [], text
    assert (slack.get("unfurl_links"), slack.get("unfurl_media")) == (False, False)
    assert_readable(html.unescape(text))


def test_mattermost(delivered: Delivered) -> None:
    (mattermost,) = delivered.bodies["/mattermost/hooks/x"]
    text = mattermost["text"]
    seen = mattermost_sees(text)
    assert mentions(seen) == [], seen
    live = unescaped(seen)
    for opener in ("](", "][", "]:", "://", "www.", "\n#"):
        assert opener not in live, (opener, seen)
    assert_readable(md_readable(text))


def test_teams(delivered: Delivered) -> None:
    (teams,) = delivered.bodies["/teams/workflow"]
    blocks = [b["text"] for b in teams["attachments"][0]["content"]["body"] if "text" in b]
    for block in blocks:
        assert "](" not in unescaped(block), block
    assert_readable(md_readable("\n".join(blocks)))


def test_telegram(delivered: Delivered) -> None:
    (telegram,) = delivered.bodies[f"/bot{BOT_TOKEN}/sendMessage"]
    assert telegram["parse_mode"] == "HTML"
    parsed = Tags(telegram["text"])
    assert parsed.tags == ["b"], parsed.tags
    shown = "".join(parsed.data)
    assert mentions(shown) == [], shown
    assert_readable(shown)


def test_json_webhook_carries_the_values_as_sent(delivered: Delivered) -> None:
    (hook,) = delivered.bodies["/json"]
    (alert,) = hook["alerts"]
    assert (alert["host"]["name"], alert["rule"]["name"], alert["rule"]["description"],
            alert["message"], alert["process"]["command_line"]) == HOSTILE


def test_email_html(delivered: Delivered) -> None:
    (mail,) = delivered.mails
    message = message_from_bytes(mail, policy=default_policy)
    body = message.get_body(("html",))
    assert body is not None
    page = Tags(body.get_content())
    assert not {"img", "a", "script", "i"} & set(page.tags), page.tags
    assert_readable("".join(page.data))
