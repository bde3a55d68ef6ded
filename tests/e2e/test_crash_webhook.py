"""Crash test: nothing socd answered 202 to is ever lost.

Two vendor-like clients POST 100,000 server-EDR alerts to the webhook collector in
NDJSON batches of 100 and, as vendors do, send a batch again after a connection
error, a 5xx or a 429 until it is answered 202. socd is SIGKILLed at random moments
(seeded) and restarted each time. Every alert must end up in Elasticsearch (the
``_id`` is the event hash, written with ``create``): the test asserts 100,000
documents and prints how many deliveries were repeats.

Before issue 13, phase 2, the webhook answered 202 once the batch was queued in
memory and the journal wrote it a few milliseconds later: a kill in between lost an
acknowledged batch. Now 202 follows the journal's fsync.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port
from tests.e2e.crash import (
    Gate,
    assert_journal_empties,
    base_config,
    kill_and_restart,
    kill_during_stream,
    repeats,
    replayed_records,
)
from tests.helpers import SocdProcess, es_cleanup, es_client, es_count, server_edr_record, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

EVENTS = 100_000
PER_REQUEST = 100
CLIENTS = 2
KILLS = 6
MIN_KILLS = 5
SEED = 1302
PAUSE_SECS = 0.01  # between two batches of a client: the stream outlasts the kills
TOKEN = "crash-webhook-token-0123456789"


class Client:
    """Posts its share of the batches one by one; a batch is done once answered 202."""

    def __init__(self, port: int, bodies: list[bytes], gate: Gate) -> None:
        self.port = port
        self.bodies = bodies
        self.gate = gate
        self.accepted = 0
        self.resent = 0  # batches sent again after a connection error or a 5xx/429
        self.unexpected: list[str] = []
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        for number, body in enumerate(self.bodies):
            self.gate.wait(number / len(self.bodies))
            while not self._post(body):
                self.resent += 1
            time.sleep(PAUSE_SECS)

    def _post(self, body: bytes) -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("POST", "/ingest/edr", body, {
                "Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-ndjson"})
            resp = conn.getresponse()
            answer = resp.read()
        except (OSError, http.client.HTTPException):
            time.sleep(0.1)  # socd is down or restarting
            return False
        finally:
            conn.close()
        if resp.status == 202:
            self.accepted += json.loads(answer)["accepted"]
            return True
        if resp.status not in (429, 500, 502, 503, 504):
            self.unexpected.append(f"{resp.status} {answer[:200]!r}")
        time.sleep(0.2)
        return False


def _bodies(unique: str) -> list[bytes]:
    records = [json.dumps(server_edr_record(i, unique), ensure_ascii=False).encode()
               for i in range(EVENTS)]
    return [b"\n".join(records[i:i + PER_REQUEST]) + b"\n"
            for i in range(0, EVENTS, PER_REQUEST)]


def test_sigkill_while_clients_post_loses_nothing_answered_202(
        services: dict[str, Any], unique: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOCD_CRASH_WEBHOOK_TOKEN", TOKEN)
    port = free_port()
    config = base_config(services["ES_URL"], unique, str(tmp_path / "state"), {
        "hook": {"type": "webhook", "host": "127.0.0.1", "port": port,
                 "decoder": "server_edr", "retry_after_secs": 1,
                 "sources": {"edr": {"token": "${SOCD_CRASH_WEBHOOK_TOKEN}"}}}})
    es = es_client(services)
    index = f"socd-crash-{unique}-*"
    socd = SocdProcess(config, tmp_path)
    try:
        socd.start()
        bodies = _bodies(unique)
        gate = Gate()
        clients = [Client(port, bodies[k::CLIENTS], gate) for k in range(CLIENTS)]
        for client in clients:
            client.thread.start()
        kills = kill_during_stream(gate, KILLS, SEED, lambda: kill_and_restart(socd),
                                   (0.2, 1.0))
        for client in clients:
            client.thread.join(120)
            assert not client.thread.is_alive(), "a client did not finish"
        assert [u for c in clients for u in c.unexpected] == []
        assert sum(c.accepted for c in clients) == EVENTS
        assert kills >= MIN_KILLS, f"only {kills} kills happened while the clients posted"

        def stored() -> int:
            return es_count(es, index)

        resent = sum(c.resent for c in clients)
        try:
            wait_for(lambda: stored() >= EVENTS, 120, f"{EVENTS} documents in {index}",
                     interval=1.0)
        finally:
            count = stored()
            print(f"\nwebhook crash test: sent {EVENTS}, stored {count}, lost {EVENTS - count}, "
                  f"repeated deliveries {repeats(es, index)} (batches resent by the clients: "
                  f"{resent}; records replayed from the journal: {replayed_records(socd)}), "
                  f"kills {kills}")
        assert count == EVENTS
        assert_journal_empties(socd)
        assert socd.stop() == 0
        assert not list((tmp_path / "state" / "journal").glob("*.seg"))
    finally:
        socd.kill()
        if socd.proc is not None:
            socd._log.close()
        es_cleanup(es, f"socd-crash-{unique}")
        es.close()
