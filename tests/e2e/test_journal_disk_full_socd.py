"""A full disk under a running socd: intake stops with back-pressure, nothing is lost.

socd runs as a process in its own mount namespace (``unshare --mount``) with its
state_dir on a 16 MiB tmpfs, taking a webhook and an MQTT topic into
Elasticsearch. The test fills the tmpfs from inside that namespace (``nsenter``)
until the kernel answers ENOSPC, then checks what the issue asks for:

* socd stays up; ``/readyz`` answers 503 with ``"failing": "ENOSPC"`` in its
  journal details;
* the webhook acknowledges nothing: the request whose batch the journal could not
  write is answered 503 (``journal_unavailable``), the next ones 429 at once;
  MQTT messages are not PUBACKed (socd's submit waits for the journal);
* once the filler is removed, the journal resumes by itself, the clients' retries
  are answered 202 and every event, the MQTT ones included, reaches
  Elasticsearch once.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port
from tests.e2e.crash import base_config
from tests.helpers import (
    Publisher,
    SocdProcess,
    es_cleanup,
    es_client,
    es_count,
    server_edr_record,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

TOKEN = "disk-full-token-0123456789"
EXPECTED = 1 + 1 + 100 + 100 + 100  # distinct events posted and published


class NamespacedSocd(SocdProcess):
    """socd with its state_dir on a private tmpfs (a mount namespace of its own)."""

    def __init__(self, config: dict[str, Any], workdir: Path, size: str) -> None:
        super().__init__(config, workdir)
        self.state = Path(config["state_dir"])
        self.size = size

    def start(self, *, wait_ready: bool = True) -> SocdProcess:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("NOTIFY_SOCKET", None)
        self.state.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115
        shell = (f"mount -t tmpfs -o size={self.size},mode=0750 socd-test {self.state} && "
                 f"exec {sys.executable} -m socd run -c {self.config_path}")
        # unshare execs the shell, which execs socd: the process keeps one pid.
        self.proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", shell],
            stdout=self._log, stderr=subprocess.STDOUT, cwd=self.workdir, env=env)
        if wait_ready:
            wait_for(self.ready, 60, "socd /readyz")
        return self

    def inside(self, script: str) -> subprocess.CompletedProcess[str]:
        """Run a shell script in socd's mount namespace (it sees the tmpfs)."""
        assert self.proc is not None
        return subprocess.run(["nsenter", "--target", str(self.proc.pid), "--mount", "sh",
                               "-c", script], capture_output=True, text=True, timeout=60,
                              check=False)


def post(port: int, body: bytes) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/ingest/edr", data=body, method="POST",
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-ndjson"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def batch(unique: str, start: int, n: int = 100) -> bytes:
    return b"\n".join(json.dumps(server_edr_record(i, unique)).encode()
                      for i in range(start, start + n))


def readyz(socd: SocdProcess) -> tuple[int, dict[str, Any]]:
    status, body = socd._get("/readyz")
    return status, json.loads(body) if body else {}


def test_full_disk_stops_intake_and_loses_nothing(services: dict[str, Any], unique: str,
                                                 tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    for tool in ("unshare", "nsenter", "mount"):
        assert shutil.which(tool), f"{tool} is not installed (util-linux)"
    monkeypatch.setenv("SOCD_DISK_FULL_TOKEN", TOKEN)
    port = free_port()
    topic = f"socd-disk-full/{unique}"
    config = base_config(services["ES_URL"], unique, str(tmp_path / "state"), {
        "hook": {"type": "webhook", "host": "127.0.0.1", "port": port,
                 "decoder": "server_edr", "queue_wait_secs": 0.5, "retry_after_secs": 1,
                 "sources": {"edr": {"token": "${SOCD_DISK_FULL_TOKEN}"}}},
        "edr": {"type": "mqtt", "host": services["MQTT_HOST"],
                "port": int(services["MQTT_PORT"]), "client_id": f"socd-df-{unique}",
                "decoder": "server_edr", "topics": [topic]}})
    config["journal"] = {"max_bytes": 8 * 1024 * 1024, "segment_bytes": 1024 * 1024}
    es = es_client(services)
    index = f"socd-crash-{unique}-*"
    socd = NamespacedSocd(config, tmp_path, "16m")
    publisher = Publisher(services, client_id=f"pub-df-{unique}")
    try:
        socd.start()
        # One event each: when the journal finds the disk full it deletes its own
        # stored segments, which must not free room for the batches that follow.
        assert post(port, batch(unique, 0, 1))[0] == 202
        publisher.publish(topic, [batch(unique, 100, 1)])
        wait_for(lambda: es_count(es, index) == 2, 60, "the first 2 events")

        filled = socd.inside(f"cat /dev/zero > {socd.state}/filler; df -k {socd.state}")
        assert "No space left on device" in filled.stderr, filled
        # The journal finds the disk full on its next write: that batch is queued
        # but never acknowledged.
        status, body = post(port, batch(unique, 200))
        assert (status, body.get("error")) == (503, "journal_unavailable"), (body, filled)
        status, detail = readyz(socd)
        assert status == 503
        assert detail["journal"]["failing"] == "ENOSPC"
        started = time.monotonic()
        status, body = post(port, batch(unique, 300))
        assert (status, body["error"]) == (429, "pipeline_full")
        assert time.monotonic() - started < 10
        # MQTT: socd takes the message but cannot journal it, so it is not PUBACKed
        # (the broker keeps it in socd's session).
        publisher.publish(topic, [batch(unique, 400)])
        time.sleep(3)
        socd.assert_running()
        assert es_count(es, index) == 2 + 100  # the unacknowledged webhook batch only

        socd.inside(f"rm {socd.state}/filler")
        wait_for(lambda: readyz(socd)[0] == 200, 60, "the journal to resume")
        # The clients send again what was not answered 202.
        for start in (200, 300):
            def accepted(start: int = start) -> bool:
                return post(port, batch(unique, start))[0] == 202

            wait_for(accepted, 30, f"batch {start} accepted")
        wait_for(lambda: es_count(es, index) >= EXPECTED, 60, "every event in Elasticsearch")
        time.sleep(1)
        assert es_count(es, index) == EXPECTED
        log = socd.log_text()
        assert "journal write failed" in log
        assert "journal writes resumed" in log
        assert socd.stop() == 0
    finally:
        publisher.close()
        socd.kill()
        if socd.proc is not None:
            socd._log.close()
        es_cleanup(es, f"socd-crash-{unique}")
        es.close()
