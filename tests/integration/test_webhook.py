"""The webhook collector in a real socd process, posted to over real HTTP."""

from __future__ import annotations

import gzip
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from socd.app import deadletter
from tests.conftest import free_port
from tests.helpers import SocdProcess, ecs_alert, metric, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

TOKEN = "it-webhook-token-0123456789abcdef"


def post(url: str, body: bytes, *, token: str = TOKEN,
         content_type: str = "application/x-ndjson",
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], dict[str, Any]]:
    req = urllib.request.Request(url, data=body, method="POST", headers={
        "Authorization": f"Bearer {token}", "Content-Type": content_type, **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), orjson.loads(exc.read())


def socd_config(tmp_path: Path, wh_port: int, *, sink: dict[str, Any] | None = None,
                pipeline: dict[str, Any] | None = None, **webhook: Any) -> dict[str, Any]:
    return {
        "state_dir": str(tmp_path / "state"),
        "rules": {"paths": []},  # count the posted events only; rules are tested elsewhere
        "log": {"format": "json"},
        "http": {"host": "127.0.0.1", "port": free_port()},
        **({"pipeline": pipeline} if pipeline else {}),
        "collectors": {"hook": {
            "type": "webhook", "port": wh_port,
            "sources": {"ids": {"token": "${SOCD_IT_WEBHOOK_TOKEN}"}}, **webhook}},
        "sinks": {"out": sink or {"type": "ndjson", "path": "out.ndjson", "select": "all",
                                  "flush_interval_secs": 0.1}},
    }


def count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with open(path, "rb") as fh:
        return sum(1 for _ in fh)


@pytest.fixture
def token_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOCD_IT_WEBHOOK_TOKEN", TOKEN)


def ndjson(run: str, start: int, n: int) -> bytes:
    return b"\n".join(orjson.dumps(ecs_alert(i, run)) for i in range(start, start + n))


@pytest.mark.usefixtures("token_env")
def test_batches_are_stored_and_bad_requests_refused(tmp_path: Path, unique: str) -> None:
    port = free_port()
    socd = SocdProcess(socd_config(tmp_path, port, max_body_bytes=16 * 1024 * 1024), tmp_path)
    socd.start()
    url = f"http://127.0.0.1:{port}/ingest/ids"
    out = tmp_path / "state" / "out.ndjson"
    try:
        for b in range(10):
            status, _, body = post(url, ndjson(unique, b * 500, 500))
            assert (status, body) == (202, {"accepted": 500})
        status, _, body = post(url, gzip.compress(orjson.dumps(
            [ecs_alert(i, unique) for i in range(5000, 5100)])),
            content_type="application/json", headers={"Content-Encoding": "gzip"})
        assert (status, body) == (202, {"accepted": 100})
        wait_for(lambda: count_lines(out) >= 5100, 60, "5100 events in the sink")

        assert post(url, b"{}", token="nope-nope-nope-nope")[0] == 401
        assert post(url.replace("/ids", "/other"), b"{}")[0] == 401
        assert post(url, b"")[0] == 400
        garbage = os.urandom(10 * 1024 * 1024)
        status, _, body = post(url, garbage)
        assert (status, body["error"]) == (400, "invalid_utf8")
        assert post(url, b'{"a": "\xc3\x28"}', content_type="application/json")[0] == 400
        assert post(url, b"x" * (17 * 1024 * 1024))[0] == 413
        # One bad line in a batch: the batch is accepted, the line dead-lettered alone.
        status, _, body = post(url, ndjson(unique, 6000, 2) + b"\n{broken\n")
        assert (status, body) == (202, {"accepted": 3})
        wait_for(lambda: count_lines(out) >= 5102, 30, "5102 events")
        socd.assert_running()

        metrics = socd.metrics()
        assert metric(metrics, "socd_events_dropped_total", stage="collect",
                      reason="invalid_utf8") == 2
        assert metric(metrics, "socd_events_dropped_total", stage="decode",
                      reason="invalid_json") == 1
        assert metric(metrics, "socd_webhook_requests_total", collector="hook",
                      code="202") == 12
        assert metric(metrics, "socd_webhook_requests_total", collector="hook",
                      code="401") == 2
        assert metric(metrics, "socd_webhook_requests_total", collector="hook",
                      code="413") == 1
    finally:
        assert socd.stop() == 0
    assert TOKEN not in socd.log_text()
    seen = [orjson.loads(line)["event"]["id"] for line in out.read_bytes().splitlines()]
    assert sorted(seen) == sorted(f"{unique}-{i}" for i in [*range(5100), 6000, 6001])
    dead = deadletter.read(str(tmp_path / "state" / "dead-letter" / "dead-letter.ndjson"))
    reasons = sorted((e["stage"], e["reason"]) for e in dead)
    assert reasons == [("collect", "invalid_utf8"), ("collect", "invalid_utf8"),
                       ("decode", "invalid_json")]
    assert any(e.get("raw") == garbage for e in dead)


@pytest.mark.usefixtures("token_env")
def test_full_pipeline_answers_429_with_retry_after(tmp_path: Path, unique: str) -> None:
    port = free_port()
    # Elasticsearch on a closed port and no spool: the sink never drains, the small
    # pipeline fills up, and the drain timeout dead-letters what was accepted.
    config = socd_config(
        tmp_path, port, queue_wait_secs=0.5, retry_after_secs=9,
        pipeline={"queue_max_batches": 1, "max_buffered_bytes": 65536,
                  "drain_timeout_secs": 1},
        sink={"type": "elasticsearch", "hosts": ["http://127.0.0.1:9"], "select": "all",
              "queue_max_batches": 1, "batch_max_events": 100,
              "request_timeout_secs": 1, "retry_max_backoff_secs": 1,
              "spool": {"enabled": False}})
    socd = SocdProcess(config, tmp_path)
    socd.start(wait_ready=False)
    url = f"http://127.0.0.1:{port}/ingest/ids"

    def listening() -> bool:
        socd.assert_running()
        try:
            return post(url, b"{}", token="x" * 20)[0] == 401
        except OSError:
            return False

    wait_for(listening, 60, "the webhook port")
    accepted = 0
    answers: list[tuple[int, dict[str, str], dict[str, Any]]] = []
    try:
        for b in range(60):
            answer = post(url, ndjson(unique, b * 100, 100))
            answers.append(answer)
            if answer[0] == 202:
                accepted += answer[2]["accepted"]
            if answer[0] == 429:
                break
        status, headers, body = answers[-1]
        assert status == 429, [a[0] for a in answers]
        assert headers["Retry-After"] == "9"
        assert body["error"] == "pipeline_full"
        assert all(a[0] == 202 for a in answers[:-1])
        socd.assert_running()
        metrics = socd.metrics()
        assert metric(metrics, "socd_events_received_total", collector="hook") == accepted
    finally:
        assert socd.stop() == 0
    # What was accepted but could not be stored is dead-lettered at shutdown, not lost.
    dead = deadletter.read(str(tmp_path / "state" / "dead-letter" / "dead-letter.ndjson"))
    assert sum(1 for e in dead if e["reason"] == "shutdown_timeout") == accepted
