"""/readyz: ready means the journal is replayed and every configured collector is up.

The metrics listener answers from early in start-up; while the intake journal is
replayed no collector exists yet, and a check over an empty collector list said
"ready" (a load balancer or a test would then send to a port nobody listens on).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from socd import config as config_mod
from socd.app.pipeline import Pipeline
from socd.app.server import Daemon

pytestmark = pytest.mark.timeout(60)


def _config(tmp_path: Path) -> config_mod.Config:
    text = {"state_dir": str(tmp_path / "state"), "http": {"enabled": False},
            "journal": {"enabled": True},
            "collectors": {"sys": {"type": "syslog", "listeners": [
                {"protocol": "udp", "host": "127.0.0.1", "port": 0}]}},
            "sinks": {"out": {"type": "ndjson", "path": "out.ndjson"}}}
    return config_mod.loads(orjson.dumps(text).decode(), file=str(tmp_path / "socd.yaml"))


async def _until(predicate: Any) -> None:
    while not predicate():
        await asyncio.sleep(0.01)


async def test_not_ready_during_replay_nor_before_every_collector_listens(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    daemon = Daemon(_config(tmp_path))
    during_replay: list[tuple[bool, dict[str, Any]]] = []
    replay = Pipeline.recover

    async def recover(self: Pipeline) -> Any:
        during_replay.append(daemon.readiness())
        return await replay(self)

    monkeypatch.setattr(Pipeline, "recover", recover)
    assert daemon.readiness()[0] is False  # nothing built yet
    await daemon.startup()
    try:
        [(ready, detail)] = during_replay
        assert ready is False
        assert detail["collectors"] == {"sys": False}
        # The collector's task exists but has not bound its socket yet.
        ready, detail = daemon.readiness()
        assert ready is False
        assert detail["collectors"] == {"sys": False}
        await asyncio.wait_for(_until(lambda: daemon.readiness()[0]), 10)
        assert daemon.readiness()[1]["collectors"] == {"sys": True}
    finally:
        daemon.request_exit()
        await daemon.shutdown()
