"""One event, one message: a real daemon, the shipped rules, real HTTP receivers.

socd runs as a process (``socd run``) with the shipped rule pack, the sample IoC list
and the **default** notification grouping. It reads two records from files, as an
operator's first day had them: a webshell alert of the server EDR (the record is an
alert itself, and four rules fire on it) and an sshd "Accepted password" line from an
address on the IoC list (an IoC match, and three rules). Both the ``webhook`` and the
``telegram`` notifier send to an aiohttp receiver run by this test.

Checked (issue 14, point 10): every alert the event caused, stored by the NDJSON
sink, carries the event's ``event.hash`` as ``socd.correlation_id``; each event
becomes **one** message per notifier (before: one per rule that fired, 4 and 4), and
that message stands for every alert of the event and names every rule that fired.
"""

from __future__ import annotations

import asyncio
import html
import json
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import REPO, free_port
from tests.helpers import SocdProcess, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

TOKEN = "123456789:AAHsecret-token_value"
IOC_FILE = REPO / "socd" / "default" / "ioc" / "ioc-sample.txt"
WEBSHELL = {
    "alert_id": "SG-20261121-000777", "detected_at": "2026-11-21T09:14:56+07:00",
    "hostname": "srv-web-tinh", "host_ip": "10.10.20.10", "os": "Ubuntu 22.04",
    "severity": "Nghiêm trọng", "category": "Webshell",
    "threat_name": "Webshell.PHP.ChinaChopper",
    "description": "Phát hiện webshell PHP trong thư mục upload: "
                   "/var/www/html/portal/uploads/2026/11/index1.php",
    "file": {"path": "/var/www/html/portal/uploads/2026/11/index1.php",
             # on the sample IoC list (letter 941/CATTT-NCSC)
             "sha256": "27ff16595312517deefc58fec38a21ce6a69dc5351c0cc4369d6b398c5192e23"},
    "action": "detected", "agent_id": "SGA-CBF49D33"}
# 77.90.185.20 is on the sample IoC list.
ACCEPTED = ("<38>Nov 21 09:20:01 srv-mail-01 sshd[4242]: Accepted password for root "
            "from 77.90.185.20 port 51234 ssh2")


class Receiver:
    """The webhook endpoint and a Telegram Bot API stand-in on one port, in a thread."""

    def __init__(self) -> None:
        self.port = free_port()
        self.hook: list[dict[str, Any]] = []
        self.telegram: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.json()
        with self._lock:
            self.hook.append(body)
        return web.Response(text="ok")

    async def _telegram(self, request: web.Request) -> web.Response:
        if request.match_info["method"] == "sendMessage":
            body = await request.json()
            with self._lock:
                self.telegram.append(body)
        return web.json_response({"ok": True, "result": {"message_id": 1}})

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        app.router.add_route("*", f"/bot{TOKEN}/{{method}}", self._telegram)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def counts(self) -> tuple[int, int]:
        with self._lock:
            return len(self.hook), len(self.telegram)

    def close(self) -> None:
        async def stop() -> None:
            if self._runner is not None:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


def config(tmp_path: Path, receiver: Receiver) -> dict[str, Any]:
    url = f"http://127.0.0.1:{receiver.port}"
    return {
        "state_dir": str(tmp_path / "state"),
        "http": {"host": "127.0.0.1", "port": free_port()},
        "classification": {"ioc_files": [str(IOC_FILE)]},
        "collectors": {
            "edr": {"type": "file", "paths": [str(tmp_path / "edr.ndjson")],
                    "decoder": "server_edr"},
            "auth": {"type": "file", "paths": [str(tmp_path / "auth.log")],
                     "decoder": "syslog"}},
        "sinks": {"alerts": {"type": "ndjson", "path": str(tmp_path / "alerts.ndjson"),
                             "select": "alerts"}},
        "notifiers": {
            "hook": {"type": "webhook", "url": f"{url}/hook", "rate_limit_per_minute": 6000,
                     "timeout_secs": 5, "retry_max_backoff_secs": 1},
            "irt": {"type": "telegram", "bot_token": TOKEN, "chat_id": "-100123",
                    "api_url": url, "rate_limit_per_minute": 6000, "timeout_secs": 5,
                    "retry_max_backoff_secs": 1}},
        # No `grouping:`: the default is what this test is about.
        "notifications": {"routes": [{"name": "all", "notifiers": ["hook", "irt"]}]},
    }


def stored_alerts(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_one_message_per_event_listing_every_rule(tmp_path: Path) -> None:
    (tmp_path / "edr.ndjson").write_text(json.dumps(WEBSHELL, ensure_ascii=False) + "\n")
    (tmp_path / "auth.log").write_text(ACCEPTED + "\n")
    receiver = Receiver()
    socd = SocdProcess(config(tmp_path, receiver), tmp_path)
    try:
        socd.start()
        wait_for(lambda: receiver.counts() == (2, 2), 60, "two messages per notifier")
        alerts = stored_alerts(tmp_path / "alerts.ndjson")
        # Every alert the two events caused went into those messages: none is pending.
        routed = socd.metrics().get('socd_notification_alerts_total{outcome="routed"}')
        assert routed == len(alerts)
    finally:
        socd.stop()
        receiver.close()

    incidents: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for alert in alerts:
        incidents[alert["socd"]["correlation_id"]].append(alert)
    assert len(incidents) == 2
    for correlation, members in incidents.items():
        own = [a for a in members if a["event"].get("dataset") != "socd.rules"]
        rules = [a for a in members if a["event"].get("dataset") == "socd.rules"]
        assert len(own) == 1
        assert own[0]["event"]["hash"] == correlation  # the event itself
        assert len(rules) >= 3  # the webshell: 4 rules; the IoC login: 3
        assert all(correlation in a["socd"]["rule"]["trigger_hashes"] for a in rules)

    assert receiver.counts() == (2, 2)  # nothing came after: one message per event
    for message in receiver.hook:
        [correlation] = {a["socd"]["correlation_id"] for a in message["alerts"]}
        members = incidents[correlation]
        assert message["total"] == len(members) == len(message["alerts"])
        assert {a["event"]["hash"] for a in message["alerts"]} == {
            a["event"]["hash"] for a in members}
        names = {a["rule"]["name"] for a in members if a["event"].get("dataset") == "socd.rules"}
        assert f"Quy tắc ({len(names) + 1}): " in message["text"]
        for name in names:
            assert name in message["text"]
    # Telegram gets the same two messages (title and text, as HTML).
    titles = {html.escape(m["title"], quote=False) for m in receiver.hook}
    shown = {t for m in receiver.telegram for t in titles if t in m["text"]}
    assert shown == titles
    assert any("Trùng khớp chỉ dấu IoC" in m["text"] for m in receiver.hook)
    assert not any("IoC match" in m["text"] for m in receiver.hook)
