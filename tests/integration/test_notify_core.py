"""The notification core in a real daemon: MQTT in, the `webhook` notifier out.

socd runs as a process (``socd run``) reading IDS alerts from the real Mosquitto
and notifying an aiohttp receiver run by this test. Checked: alerts arrive
grouped as configured; while the receiver answers 503, and while it is not
listening at all (across a restart of socd), nothing is lost and everything
arrives once it is back; every alert is counted in
``socd_notification_alerts_total``.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from tests.conftest import free_port
from tests.helpers import Publisher, SocdProcess, ecs_alert, metric, wait_for

pytestmark = pytest.mark.integration

OUTCOMES = ("routed", "unrouted", "deduplicated", "deferred_quiet")


class Receiver:
    """An HTTP endpoint on a fixed port, in its own thread and event loop. ``status``
    is what it answers; ``stop()`` closes the port (connection refused)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.status = 200
        self.accepted: list[dict[str, Any]] = []
        self.refused = 0
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        with self._lock:
            if self.status != 200:
                self.refused += 1
                return web.Response(status=self.status, text="try later")
            self.accepted.append({"body": body,
                                  "idempotency_key": request.headers.get("Idempotency-Key")})
        return web.Response(status=200, text="ok")

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def start(self) -> None:
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)

    def close(self) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def messages(self) -> list[dict[str, Any]]:
        """Accepted bodies, duplicates (same id, a retry after a lost answer) dropped."""
        with self._lock:
            seen: dict[str, dict[str, Any]] = {}
            for item in self.accepted:
                seen.setdefault(item["body"]["id"], item["body"])
            return list(seen.values())

    def totals(self) -> Counter[str]:
        """Alerts received, by rule id (a digest counts for every alert it stands for)."""
        out: Counter[str] = Counter()
        for body in self.messages():
            out[body["alerts"][0]["rule"]["id"]] += body["total"]
        return out


def alert(i: int, run: str, rule: str) -> bytes:
    record = ecs_alert(i, run, vendor_severity=1)  # suricata 1 = high
    record["rule"] = {"id": rule, "name": f"ET TEST {rule}"}
    record["source"]["ip"] = f"203.0.113.{i % 250 + 1}"
    return json.dumps(record).encode()


def config(services: dict[str, Any], unique: str, state: Path, hook_port: int) -> dict[str, Any]:
    return {
        "state_dir": str(state),
        "http": {"host": "127.0.0.1", "port": free_port()},
        "rules": {"paths": []},
        "decoders": {"ids": {"type": "json", "severity_table": "suricata"}},
        "collectors": {"mqtt": {
            "type": "mqtt", "host": services["MQTT_HOST"], "port": int(services["MQTT_PORT"]),
            "client_id": f"socd-notify-{unique}",
            "subscriptions": [{"topic": f"socd-notify/{unique}/ids", "decoder": "ids"}]}},
        "notifiers": {"hook": {
            "type": "webhook", "url": f"http://127.0.0.1:{hook_port}/hook",
            "rate_limit_per_minute": 6000, "timeout_secs": 5, "retry_max_backoff_secs": 1}},
        "notifications": {
            "grouping": {"group_by": ["rule.id"], "group_wait_secs": 3,
                         "group_interval_secs": 2, "repeat_interval_secs": 3600,
                         "dedup_by": ["event.hash"], "digest_max_alerts": 50},
            "routes": [{"name": "ids", "match": {"min_severity": "high"},
                        "notifiers": ["hook"]}],
        },
    }


def counted(socd: SocdProcess) -> float:
    m = socd.metrics()
    return sum(metric(m, "socd_notification_alerts_total", outcome=o) for o in OUTCOMES)


def notifier_up(socd: SocdProcess) -> float:
    # metric() takes the series name as `name`, which is also this metric's label.
    return socd.metrics()['socd_component_up{kind="notifier",name="hook"}']


def test_alerts_are_grouped_and_survive_receiver_outage(services: dict[str, Any], unique: str,
                                                        tmp_path: Path) -> None:
    hook_port = free_port()
    receiver = Receiver(hook_port)
    receiver.start()
    socd = SocdProcess(config(services, unique, tmp_path / "state", hook_port), tmp_path)
    topic = f"socd-notify/{unique}/ids"
    published: Counter[str] = Counter()
    try:
        socd.start()
        with Publisher(services) as pub:
            # 1. Receiver up: 12 alerts of one rule, 5 of another, one exact repeat.
            payloads = [alert(i, unique, "9000001") for i in range(12)]
            payloads += [alert(100 + i, unique, "9000002") for i in range(5)]
            payloads.append(payloads[0])
            pub.publish(topic, payloads)
            published.update({"9000001": 12, "9000002": 5})
            wait_for(lambda: receiver.totals() == published, 60, "the first digests")
            first = receiver.messages()
            # Grouped by rule.id: fewer messages than alerts, none mixes two rules.
            assert len(first) < 17
            for body in first:
                assert {a["rule"]["id"] for a in body["alerts"]} == {
                    body["group_key"].removeprefix("rule.id=")}
                assert body["total"] == len(body["alerts"])
            assert all(item["idempotency_key"] == item["body"]["id"]
                       for item in receiver.accepted)
            wait_for(lambda: counted(socd) == 18, 30, "18 alerts counted")
            m = socd.metrics()
            assert metric(m, "socd_notification_alerts_total", outcome="deduplicated") == 1
            assert metric(m, "socd_notifications_grouped_alerts_total", notifier="hook") \
                == 17 - len(first)

            # 2. Receiver answers 503: messages stay queued and are retried.
            receiver.status = 503
            pub.publish(topic, [alert(200 + i, unique, "9000003") for i in range(6)])
            published["9000003"] += 6
            wait_for(lambda: metric(socd.metrics(), "socd_notifications_failed_total",
                                    notifier="hook", outcome="retry") >= 2, 60,
                     "failed attempts while the receiver answers 503")
            assert notifier_up(socd) == 0

            # 3. Receiver not listening at all, and socd restarted meanwhile.
            receiver.stop()
            pub.publish(topic, [alert(300 + i, unique, "9000004") for i in range(4)])
            published["9000004"] += 4
            wait_for(lambda: counted(socd) == 28, 30, "28 alerts counted")
            before_restart = counted(socd)
            assert socd.stop() == 0
            socd.start()
            pub.publish(topic, [alert(400 + i, unique, "9000004") for i in range(3)])
            published["9000004"] += 3
            wait_for(lambda: counted(socd) == 3, 30, "3 alerts counted after the restart")
            assert before_restart + counted(socd) == 31  # every alert published, once

            # 4. Back: everything arrives, nothing twice.
            receiver.status = 200
            receiver.start()
            wait_for(lambda: receiver.totals() == published, 90,
                     "every alert after the outage")
            wait_for(lambda: metric(socd.metrics(), "socd_notification_queue_depth",
                                    notifier="hook") == 0, 30, "an empty send queue")
            m = socd.metrics()
            assert notifier_up(socd) == 1
            assert metric(m, "socd_notifications_failed_total", notifier="hook",
                          outcome="dead_letter") == 0
        hashes = [a["event"]["hash"] for body in receiver.messages() for a in body["alerts"]]
        assert len(hashes) == len(set(hashes)) == 30
        assert socd.stop() == 0
    finally:
        socd.kill()
        receiver.close()


def test_reload_restarts_notifications_without_losing_pending(
        services: dict[str, Any], unique: str, tmp_path: Path) -> None:
    hook_port = free_port()
    receiver = Receiver(hook_port)
    receiver.start()
    cfg = config(services, unique, tmp_path / "state", hook_port)
    cfg["notifications"]["grouping"]["group_wait_secs"] = 3600  # held for an hour...
    socd = SocdProcess(cfg, tmp_path)
    try:
        socd.start()
        with Publisher(services) as pub:
            pub.publish(f"socd-notify/{unique}/ids",
                        [alert(i, unique, "9000010") for i in range(7)])
        wait_for(lambda: counted(socd) == 7, 30, "7 alerts counted")
        assert receiver.messages() == []
        # ...until a reload shortens group_wait: the new core finds the pending group.
        cfg["notifications"]["grouping"]["group_wait_secs"] = 1
        socd.write_config(cfg)
        socd.signal(signal.SIGHUP)
        wait_for(lambda: metric(socd.metrics(), "socd_config_reloads_total",
                                result="success") == 1, 30, "the reload")
        wait_for(lambda: receiver.totals() == {"9000010": 7}, 30, "the pending digest")
        assert len(receiver.messages()) == 1
        assert any(e.get("restarted_notifications") for e in socd.log_events()
                   if e.get("event") == "configuration reloaded")
        assert socd.stop() == 0
    finally:
        socd.kill()
        receiver.close()


def test_check_config_connect_runs_notifier_healthchecks(services: dict[str, Any],
                                                         unique: str, tmp_path: Path) -> None:
    hook_port = free_port()
    path = tmp_path / "socd.yaml"
    path.write_text(yaml.safe_dump(config(services, unique, tmp_path / "state", hook_port)))

    def check() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "socd", "check-config", "--connect",
                               "-c", str(path)], capture_output=True, text=True, timeout=60,
                              check=False)

    down = check()
    assert down.returncode == 1, down.stderr
    assert "health check failed: notifier hook" in down.stderr
    receiver = Receiver(hook_port)
    receiver.start()
    try:
        up = check()
        assert up.returncode == 0, up.stderr
        assert "all reachable" in up.stdout
        assert receiver.accepted == []  # a health check sends nothing
    finally:
        receiver.close()
