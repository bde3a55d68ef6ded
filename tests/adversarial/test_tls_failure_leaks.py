"""Finding 14: a failed TLS handshake must not leak a socket, in any client socd has.

Every client (SMTP with STARTTLS and with implicit TLS, the HTTP notifiers, the MQTT
notifier and collector, the Elasticsearch sink, TAXII and MISP pushes) is pointed at a
real TLS server in a child process (:mod:`tests.adversarial.tls_peer`) whose self-signed
certificate no trust store knows. Each client then fails its handshake many times, as a
retry loop would make it. After every failed attempt:

* ``gc.collect()`` runs: a socket object dropped without ``close()`` warns
  (``ResourceWarning`` as an unraisable exception) and pytest turns that into a failure;
* this process's open file descriptors (``/proc/self/fd``; the servers live in the child,
  so only the client's sockets count) must be back at the baseline as soon as the call
  has returned: a socket closed "on a later loop iteration" is still open when the
  daemon's loop stops, which is how the e-mail test failed in CI.

Before the fix the SMTP clients left the socket open until the loop ran again and paho
(MQTT) dropped its TLS socket unclosed.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import select
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from socd import metrics
from socd.alerting.elasticsearch import ElasticsearchSink
from socd.alerting.notifiers.email import EmailNotifier
from socd.alerting.notifiers.mqtt import MqttNotifier
from socd.alerting.notifiers.webhook import WebhookNotifier
from socd.app.deadletter import DeadLetter
from socd.collectors.mqtt import MqttCollector
from socd.config.sharing import SharingConfig
from socd.errors import HealthCheckError, NotifyError, SinkError
from socd.plugins import PluginContext
from socd.sharing.data import Dataset, Scope
from socd.sharing.push import push
from tests.adversarial.tls_peer import make_untrusted_cert
from tests.conftest import REPO
from tests.unit.test_notifiers import sample_alert, sample_notification

pytestmark = [pytest.mark.timeout(180)]

ATTEMPTS = 12


@dataclass(frozen=True)
class Peer:
    smtp: int  # SMTP requiring STARTTLS
    smtp_plain: int  # SMTP offering no STARTTLS
    tls: int  # bare TLS (HTTPS, MQTT over TLS, Elasticsearch, TAXII, MISP)


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    cert, key = make_untrusted_cert(tmp_path_factory.mktemp("untrusted"))
    proc = subprocess.Popen([sys.executable, "-m", "tests.adversarial.tls_peer",
                             str(cert), str(key)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        assert ready, "the TLS peer did not start within 30 s"
        ports = json.loads(proc.stdout.readline())
        yield Peer(smtp=ports["smtp"], smtp_plain=ports["smtp_plain"], tls=ports["tls"])
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def ctx(tmp_path: Path, name: str = "leak") -> PluginContext:
    return PluginContext(name=name, dead_letter=DeadLetter(str(tmp_path / "dl")),
                         config_dir=str(tmp_path))


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def settle() -> int:
    """Collect garbage (an unclosed socket warns here), then count descriptors."""
    gc.collect()
    return open_fds()


async def fails_without_leaking(attempt: Callable[[], Awaitable[Any]],
                                error: type[BaseException] | tuple[type[BaseException], ...],
                                ) -> None:
    """Run ``attempt`` (which must raise ``error``) ATTEMPTS times; right after each
    failure the descriptor count must be what it was before the first attempt (a
    socket closed one loop pass late shows as one more descriptor)."""
    baseline = settle()
    growth = []
    for _ in range(ATTEMPTS):
        with pytest.raises(error):
            await attempt()
        growth.append(settle() - baseline)
    assert growth == [0] * ATTEMPTS, f"open descriptors after each failed attempt: {growth}"


def sync_fails_without_leaking(attempt: Callable[[], Any]) -> None:
    """:func:`fails_without_leaking` for blocking calls that report failure by value."""
    baseline = settle()
    growth = []
    for _ in range(ATTEMPTS):
        attempt()
        growth.append(settle() - baseline)
    assert growth == [0] * ATTEMPTS, f"open descriptors after each failed attempt: {growth}"


# ------------------------------------------------------------------------------- SMTP --

def email(port: int, security: str, tmp_path: Path, **options: Any) -> EmailNotifier:
    cfg = EmailNotifier.Config.model_validate({
        "type": "email", "host": "127.0.0.1", "port": port, "security": security,
        "from_addr": "soc@so-tttt.example.vn", "to": ["analyst@so-tttt.example.vn"],
        "timeout_secs": 20, **options})
    return EmailNotifier(cfg, ctx(tmp_path))


@pytest.mark.parametrize("server", ["starttls", "tls", "no-starttls", "no-auth"])
async def test_smtp_untrusted_certificate(peer: Peer, tmp_path: Path, server: str) -> None:
    """STARTTLS and implicit TLS against the untrusted certificate; then the failures
    next to them: a server that offers no STARTTLS (aiosmtplib closes that connection
    itself) and one that offers no AUTH over a plain connection (the session is open
    when the login fails). A socket released one loop pass late counts as a leak."""
    port = {"starttls": peer.smtp, "tls": peer.tls}.get(server, peer.smtp_plain)
    security = {"tls": "tls", "no-auth": "none"}.get(server, "starttls")
    auth = {"username": "soc", "password": "x"} if server == "no-auth" else {}
    mail = email(port, security, tmp_path, **auth)
    try:
        await fails_without_leaking(lambda: mail.send(sample_notification()), NotifyError)
        await fails_without_leaking(mail.healthcheck, HealthCheckError)
    finally:
        await mail.close()


# ------------------------------------------------------------------------------- HTTP --

async def test_http_notifier_untrusted_certificate(peer: Peer, tmp_path: Path) -> None:
    cfg = WebhookNotifier.Config.model_validate({
        "type": "webhook", "url": f"https://127.0.0.1:{peer.tls}/hook", "timeout_secs": 20})
    hook = WebhookNotifier(cfg, ctx(tmp_path))
    try:
        await fails_without_leaking(lambda: hook.send(sample_notification()), NotifyError)
        await fails_without_leaking(hook.healthcheck, HealthCheckError)
    finally:
        await hook.close()


# ------------------------------------------------------------------------------- MQTT --

async def test_mqtt_notifier_untrusted_certificate(peer: Peer, tmp_path: Path) -> None:
    cfg = MqttNotifier.Config.model_validate({
        "type": "mqtt", "host": "127.0.0.1", "port": peer.tls, "tls": {},
        "timeout_secs": 20})
    notifier = MqttNotifier(cfg, ctx(tmp_path))
    try:
        await fails_without_leaking(lambda: notifier.send(sample_notification()),
                                    NotifyError)
        await fails_without_leaking(notifier.healthcheck, HealthCheckError)
    finally:
        await notifier.close()


async def test_mqtt_collector_untrusted_certificate(peer: Peer, tmp_path: Path) -> None:
    """Each ``run()`` fails its first connection, then waits 60 s to reconnect: it is
    cancelled in that wait, so every round is exactly one failed handshake."""
    cfg = MqttCollector.Config.model_validate({
        "type": "mqtt", "host": "127.0.0.1", "port": peer.tls, "tls": {},
        "topics": ["socd/leak"], "decoder": "ecs", "reconnect_min_secs": 60,
        "reconnect_max_secs": 60})
    collector = MqttCollector(cfg, ctx(tmp_path, "leak-mqtt"))
    failures = metrics.ERRORS.labels("collector/leak-mqtt", "MqttError")

    async def emit(*_: Any) -> None:
        raise AssertionError("nothing can arrive over a refused handshake")

    async def one_round() -> None:
        before = failures._value.get()
        task = asyncio.create_task(collector.run(emit))
        try:
            async with asyncio.timeout(30):
                while failures._value.get() == before:
                    await asyncio.sleep(0.01)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        raise ConnectionRefusedError("one failed connection")

    await fails_without_leaking(one_round, ConnectionRefusedError)


# ---------------------------------------------------------------------- Elasticsearch --

async def test_elasticsearch_untrusted_certificate(peer: Peer, tmp_path: Path) -> None:
    cfg = ElasticsearchSink.Config.model_validate({
        "type": "elasticsearch", "hosts": [f"https://127.0.0.1:{peer.tls}"],
        "request_timeout_secs": 20, "spool": {"enabled": False}})
    sink = ElasticsearchSink(cfg, ctx(tmp_path, "leak-es"))
    try:
        await fails_without_leaking(sink.healthcheck, HealthCheckError)
        await sink.start()
        await fails_without_leaking(lambda: sink.write([sample_alert()]), SinkError)
    finally:
        await sink.close()


# ------------------------------------------------------------------------- TAXII, MISP --

@pytest.mark.parametrize("kind", ["taxii", "misp"])
def test_sharing_push_untrusted_certificate(peer: Peer, tmp_path: Path, kind: str) -> None:
    url = f"https://127.0.0.1:{peer.tls}/api/"
    target = ({"type": "taxii", "url": url, "collection_id": "c", "token": "t",
               "timeout_secs": 20} if kind == "taxii" else
              {"type": "misp", "url": url, "api_key": "k", "timeout_secs": 20})
    sharing = SharingConfig.model_validate({"targets": {"national": target}})
    data = Dataset(scope=Scope(incident="INC-LEAK"))

    def attempt() -> None:
        result = push(data, sharing, "national", config_dir=str(tmp_path),
                      log_path=str(tmp_path / "sharing.db"))
        assert not result.ok
        assert "certificate" in result.detail.lower() or "ssl" in result.detail.lower()

    sync_fails_without_leaking(attempt)
