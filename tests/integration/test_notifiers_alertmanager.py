"""The ``alertmanager`` notifier against a real Prometheus Alertmanager."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from socd.alerting.notifiers.alertmanager import AlertmanagerNotifier
from socd.app.deadletter import DeadLetter
from socd.errors import HealthCheckError, NotifyError
from socd.plugins import PluginContext
from tests.conftest import free_port
from tests.integration.alertmanager import Alertmanager
from tests.unit.test_notifiers import TITLE, sample_notification

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Alertmanager]:
    with Alertmanager(tmp_path_factory.mktemp("alertmanager")) as am:
        yield am


def notifier(url: str, tmp_path: Path, **options: Any) -> AlertmanagerNotifier:
    cfg = AlertmanagerNotifier.Config.model_validate({"type": "alertmanager", "url": url,
                                                      **options})
    ctx = PluginContext(name="am", dead_letter=DeadLetter(str(tmp_path / "dl")),
                        config_dir=str(tmp_path))
    return AlertmanagerNotifier(cfg, ctx)


def _parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


async def test_alerts_arrive_with_labels_and_annotations(alertmanager: Alertmanager,
                                                         tmp_path: Path,
                                                         unique: str) -> None:
    n = sample_notification(2, total=5, id=f"n-{unique}")
    for i, alert in enumerate(n.alerts):
        alert["event"]["hash"] = f"{unique}-{i}"
        alert["host"]["name"] = f"srv-{unique}-{i}"
    am = notifier(alertmanager.url, tmp_path, generator_url="https://kibana.example.vn/a",
                  labels={"source": "socd-it"}, resolve_after_secs=600)
    try:
        await am.healthcheck()
        await am.send(n)
        await am.send(n)  # a retry refreshes the same alerts, no duplicates
    finally:
        await am.close()

    found = await asyncio.to_thread(alertmanager.alerts)
    mine = sorted((a for a in found if a["labels"].get("host", "").startswith(f"srv-{unique}")),
                  key=lambda a: a["labels"]["host"])
    assert len(mine) == 2
    first = mine[0]
    assert first["labels"] == {
        "alertname": "2001219", "severity": "critical", "severity_label": "nghiêm trọng",
        "unit": "Sở Tài chính", "layer": "2", "asset_kind": "server",
        "host": f"srv-{unique}-0", "rule_name": "ET SCAN Potential SSH Scan",
        "source": "socd-it"}
    assert first["annotations"]["summary"] == TITLE
    assert first["annotations"]["socd_id"] == f"{unique}-0"
    assert first["annotations"]["ioc"] == "203.0.113.9"
    assert first["annotations"]["socd_total"] == "5"
    assert first["annotations"]["description"].startswith("SSH scan 1 (host srv-")
    assert first["generatorURL"] == "https://kibana.example.vn/a"
    assert first["status"]["state"] == "active"
    assert _parse(first["startsAt"]) == datetime(2026, 11, 16, 1, 2, 1, tzinfo=UTC)
    remaining = (_parse(first["endsAt"]) - datetime.now(UTC)).total_seconds()
    assert 0 < remaining <= 600
    assert mine[1]["annotations"]["socd_id"] == f"{unique}-1"


async def test_unreachable_alertmanager(tmp_path: Path) -> None:
    am = notifier(f"http://127.0.0.1:{free_port()}", tmp_path)
    try:
        with pytest.raises(NotifyError) as info:
            await am.send(sample_notification())
        with pytest.raises(HealthCheckError, match="healthy"):
            await am.healthcheck()
    finally:
        await am.close()
    assert info.value.retryable


async def test_wrong_path_is_not_retryable(alertmanager: Alertmanager, tmp_path: Path) -> None:
    am = notifier(f"{alertmanager.url}/no-such-prefix", tmp_path)
    try:
        with pytest.raises(NotifyError) as info:
            await am.send(sample_notification())
    finally:
        await am.close()
    assert not info.value.retryable
    assert "HTTP 404" in str(info.value)
