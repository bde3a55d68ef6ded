"""Chaos property: random bytes and random JSON on every listener never crash socd, never
block anything, and are counted.

One real ``socd run`` listens on loopback with every kind of listener: syslog over UDP and
TCP, a webhook collector, an MQTT collector on the real Mosquitto of ``make services``,
the ``/metrics`` endpoint, and the EDL feed of a blocker sink (backend ``none``: decisions
and feeds only) fed by the shipped rule pack. Hypothesis generates the inputs
(deterministically: ``derandomize=True``, no example database) - arbitrary bytes, arbitrary
JSON, and JSON built from the fields an attacker would aim at (``socd.actions.block``,
``socd.ioc``, ``socd.alert.status``, addresses with zone ids and newlines, ``::/0``) - and
each input is sent to every listener.

Afterwards socd must still answer ``/healthz``, no block decision may exist (metrics and
the EDL feeds are empty), and every record a collector received must be accounted for:
stored by the sink or dropped with a reason (``socd_events_dropped_total``, and the
dead-letter file holds exactly what that counter says).
"""

from __future__ import annotations

import contextlib
import json
import socket
import urllib.error
import urllib.request
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from socd.app import deadletter
from tests.conftest import free_port
from tests.helpers import Publisher, SocdProcess, metric, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

TOKEN = "adv-chaos-webhook-token-0123456789"
EDL_TOKEN = "adv-chaos-edl-token-0123456789abcd"
EXAMPLES = 250
_WS = b" \t\r\n\x00"

# --------------------------------------------------------------------- strategies --

HOSTILE_VALUES = ["2001:db8::5%x", "2001:db8:bad::99%eth0\n::/0", "::/0", "0.0.0.0/0",
                  "::ffff:203.0.113.0/120", "203.0.113.9\n10.0.0.1", "10.0.0.1", "::1",
                  "false_positive", "closed", "A" * 300, "\x00", "${SOCD_ADV_EDL_TOKEN}",
                  "<script>", "@channel", "((((((((((((((((((((a))))))))))))))))))))"]
HOSTILE_KEYS = ["socd", "actions", "block", "value", "ttl_secs", "ref", "ioc", "values",
                "alert", "status", "source", "destination", "ip", "address", "host", "event",
                "kind", "severity", "socd.actions.block", "socd.ioc", "socd.alert.status",
                "source.ip", "process", "command_line", "@timestamp", "message"]

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(),
                    st.text(max_size=40), st.sampled_from(HOSTILE_VALUES))
keys = st.one_of(st.sampled_from(HOSTILE_KEYS), st.text(max_size=12))
json_values = st.recursive(
    scalars, lambda children: st.one_of(st.lists(children, max_size=5),
                                        st.dictionaries(keys, children, max_size=6)),
    max_leaves=25)
block_orders = st.fixed_dictionaries({
    "socd": st.fixed_dictionaries({
        "actions": st.fixed_dictionaries({"block": st.lists(st.fixed_dictionaries({
            "value": st.sampled_from(HOSTILE_VALUES),
            "ttl_secs": st.integers(-1, 10**9), "reason": st.text(max_size=20),
            "ref": st.text(max_size=20)}), min_size=1, max_size=3)}),
        "ioc": st.fixed_dictionaries({"values": st.lists(st.sampled_from(HOSTILE_VALUES),
                                                          max_size=3)}),
        "alert": st.fixed_dictionaries({"status": st.sampled_from(["false_positive", "closed",
                                                                   "new"])})}),
    "source": st.fixed_dictionaries({"ip": st.sampled_from(HOSTILE_VALUES)}),
    "event": st.fixed_dictionaries({"kind": st.just("alert"),
                                    "severity": st.integers(0, 20)}),
})


def dumps(value: Any) -> bytes:
    # The standard library writes what orjson refuses: integers beyond 64 bits, and
    # Infinity/NaN (not JSON at all: what a sloppy or hostile sender may send).
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


payloads = st.one_of(
    st.binary(max_size=1024),
    json_values.map(dumps),
    block_orders.map(dumps),
    st.lists(json_values, min_size=1, max_size=4).map(
        lambda items: b"\n".join(dumps(i) for i in items)),  # NDJSON-ish
)

# ----------------------------------------------------------------------- senders --


class Listeners:
    """socd's listeners and what the test sent to each."""

    def __init__(self, socd: SocdProcess, ports: dict[str, int], publisher: Publisher,
                 topic: str) -> None:
        self.socd = socd
        self.ports = ports
        self.publisher = publisher
        self.topic = topic
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sent: Counter[str] = Counter()
        self.webhook_codes: Counter[int] = Counter()
        self.webhook_accepted = 0
        self.webhook_errors: Counter[str] = Counter()

    def send_everywhere(self, payload: bytes) -> None:
        self.syslog_udp(payload)
        self.syslog_tcp(payload)
        self.webhook(payload)
        self.mqtt(payload)
        self.raw_http("metrics", payload)
        self.raw_http("edl", payload)

    def syslog_udp(self, payload: bytes) -> None:
        if payload.strip(_WS):  # socd skips a datagram of whitespace alone
            self.udp.sendto(payload, ("127.0.0.1", self.ports["udp"]))
            self.sent["udp"] += 1

    def syslog_tcp(self, payload: bytes) -> None:
        with socket.create_connection(("127.0.0.1", self.ports["tcp"]), timeout=10) as sock:
            sock.sendall(payload)
        self.sent["tcp"] += 1

    def webhook(self, payload: bytes) -> None:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.ports['webhook']}/ingest/chaos", data=payload,
            method="POST", headers={"Authorization": f"Bearer {TOKEN}",
                                    "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                code, body = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            code, body = exc.code, exc.read()
        assert code in (202, 400), (code, body, payload)
        answer = orjson.loads(body)
        self.webhook_codes[code] += 1
        if code == 202:
            self.webhook_accepted += answer["accepted"]
        else:
            self.webhook_errors[answer["error"]] += 1
        self.sent["webhook"] += 1

    def mqtt(self, payload: bytes) -> None:
        self.publisher.publish(self.topic, [payload])
        self.sent["mqtt"] += 1

    def raw_http(self, name: str, payload: bytes) -> None:
        """Garbage as an HTTP request, and as the headers of a valid request line:
        socd answers (400 or otherwise) or closes."""
        for request in (payload + b"\r\n\r\n",
                        b"GET /edl/ipv4.txt HTTP/1.1\r\nHost: socd\r\n" + payload + b"\r\n\r\n"):
            with socket.create_connection(("127.0.0.1", self.ports[name]), timeout=10) as sock:
                sock.sendall(request)
                sock.shutdown(socket.SHUT_WR)
                answer = b""
                with contextlib.suppress(ConnectionResetError):
                    while chunk := sock.recv(65536):
                        answer += chunk
            assert not answer or answer.startswith(b"HTTP/1."), answer[:100]
        self.sent[name] += 1


# -------------------------------------------------------------------------- test --


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def received(metrics: dict[str, float], collector: str) -> float:
    return metric(metrics, "socd_events_received_total", collector=collector)


def settled(socd: SocdProcess, listeners: Listeners,
            history: list[tuple[float, ...]]) -> dict[str, float] | None:
    """The metrics once socd took in what was sent, every decoded event reached the
    sink, and nothing changed since the previous poll."""
    m = socd.metrics()
    if (received(m, "mqtt") < listeners.sent["mqtt"]
            or received(m, "syslog") < listeners.sent["udp"]):
        return None
    decoded = metric(m, "socd_events_decoded_total")
    if metric(m, "socd_events_sent_total", sink="out") != decoded:
        return None
    snapshot = (decoded, metric(m, "socd_events_dropped_total"),
                *(received(m, c) for c in ("syslog", "hook", "mqtt")))
    stable = bool(history) and history[-1] == snapshot
    history.append(snapshot)
    return m if stable else None


def test_random_input_on_every_listener(tmp_path: Path, services: dict[str, Any],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOCD_ADV_WEBHOOK_TOKEN", TOKEN)
    monkeypatch.setenv("SOCD_ADV_EDL_TOKEN", EDL_TOKEN)
    unique = uuid.uuid4().hex[:10]
    topic = f"socd-chaos/{unique}"
    ports = {"udp": free_port(), "tcp": free_port(), "webhook": free_port(),
             "metrics": free_port(), "edl": free_port()}
    state = tmp_path / "state"
    config = {
        "state_dir": str(state),
        "log": {"format": "json"},
        "http": {"host": "127.0.0.1", "port": ports["metrics"]},
        "collectors": {
            "syslog": {"type": "syslog", "listeners": [
                {"protocol": "udp", "host": "127.0.0.1", "port": ports["udp"]},
                {"protocol": "tcp", "host": "127.0.0.1", "port": ports["tcp"]}]},
            "hook": {"type": "webhook", "port": ports["webhook"],
                     "sources": {"chaos": {"token": "${SOCD_ADV_WEBHOOK_TOKEN}"}}},
            "mqtt": {"type": "mqtt", "host": services["MQTT_HOST"],
                     "port": int(services["MQTT_PORT"]), "client_id": f"socd-chaos-{unique}",
                     "decoder": "json", "topics": [topic]},
        },
        "sinks": {
            "out": {"type": "ndjson", "path": "out.ndjson", "select": "all",
                    "flush_interval_secs": 0.1},
            "block": {"type": "blocker", "backend": "none", "select": "alerts",
                      "block_ioc_hits": True,
                      "edl": {"host": "127.0.0.1", "port": ports["edl"],
                              "token": "${SOCD_ADV_EDL_TOKEN}"}},
        },
    }
    socd = SocdProcess(config, tmp_path).start()
    publisher = Publisher(services, client_id=f"socd-chaos-pub-{unique}")
    listeners = Listeners(socd, ports, publisher, topic)
    try:
        @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
        @given(payloads)
        def send(payload: bytes) -> None:
            listeners.send_everywhere(payload)

        send()
        sent = listeners.sent
        assert sent["tcp"] == sent["webhook"] == sent["mqtt"] == sent["metrics"] == sent["edl"]
        assert sent["tcp"] >= EXAMPLES // 2

        # Every record a collector took in is stored or dropped with a reason.
        history: list[tuple[float, ...]] = []
        metrics = wait_for(lambda: settled(socd, listeners, history), 60,
                           "socd to process everything it was sent")
        taken = sum(received(metrics, c) for c in ("syslog", "hook", "mqtt"))
        stored = metric(metrics, "socd_events_sent_total", sink="out")
        dropped = metric(metrics, "socd_events_dropped_total")
        # A record may become several events or drops (NDJSON lines): at least one each.
        assert stored + dropped >= taken, (stored, dropped, taken)
        socd.assert_running()
        assert get(socd.url + "/healthz") == (200, b"ok\n")

        # Counted: what socd was given is what its counters say.
        assert received(metrics, "mqtt") == listeners.sent["mqtt"]
        assert received(metrics, "syslog") >= listeners.sent["udp"]
        # An empty body is answered 400 with nothing to keep; every other 400 body is
        # counted and dead-lettered whole.
        errors = listeners.webhook_errors
        assert set(errors) <= {"empty_body", "invalid_json", "invalid_utf8"}, errors
        refused = sum(n for reason, n in errors.items() if reason != "empty_body")
        assert received(metrics, "hook") == listeners.webhook_accepted + refused
        for reason in ("invalid_json", "invalid_utf8"):
            assert metric(metrics, "socd_events_dropped_total", stage="collect",
                          reason=reason) == errors[reason]
        dropped = metric(metrics, "socd_events_dropped_total")
        assert dropped > 0
        dead = deadletter.read(str(state / "dead-letter" / "dead-letter.ndjson"))
        assert len(dead) == metric(metrics, "socd_dead_letters_total")
        assert {e.get("collector") for e in dead} >= {"syslog", "hook", "mqtt"}

        # Requests that cannot be parsed are counted per listener (and logged without
        # a traceback: see the log check below).
        for listener in ("metrics", "edl/block"):
            assert metric(metrics, "socd_http_connections_closed_total", listener=listener,
                          reason="bad_request") > 0

        # Nothing blocked: no decision, empty feeds.
        for action in ("add", "extend"):
            assert metric(metrics, "socd_block_decisions_total", action=action) == 0
        assert metric(metrics, "socd_blocks_active") == 0
        for family in ("ipv4", "ipv6", "domains"):
            status, body = get(f"http://127.0.0.1:{ports['edl']}/edl/{family}.txt",
                               {"Authorization": f"Bearer {EDL_TOKEN}"})
            assert (status, body) == (200, b""), family
    finally:
        publisher.close()
        listeners.udp.close()
        assert socd.stop(60) == 0
    # Hostile input is refused and counted, never an error of socd itself.
    levels = Counter(e.get("level") for e in socd.log_events())
    assert levels["error"] == levels["critical"] == 0, levels
    assert "Traceback" not in socd.log_text()
