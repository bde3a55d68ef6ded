"""Deadline reminders through the real webhook notifier to an aiohttp receiver."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from socd.alerting.notifiers.webhook import WebhookNotifier
from socd.config import IncidentsConfig
from socd.incidents.reminders import Reminders
from socd.incidents.store import IncidentStore
from tests.integration.test_notifiers_http import Receiver, ctx, receiver  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

T0 = datetime(2026, 5, 4, 2, 0, tzinfo=UTC)


async def test_reminders_reach_a_webhook_once(receiver: Receiver,  # noqa: F811
                                              tmp_path: Path) -> None:
    store = IncidentStore(str(tmp_path / "incidents.db"))
    inc = store.open_incident(title="Tấn công DDoS cổng dịch vụ công", by="an", alerts=[],
                              discovered=T0, system_name="Cổng dịch vụ công", system_level=4,
                              now=T0)
    cfg = WebhookNotifier.Config.model_validate({"type": "webhook",
                                                 "url": f"{receiver.url}/soc",
                                                 "hmac_secret": "s3"})
    notifier = WebhookNotifier(cfg, ctx(tmp_path, "soc-webhook"))
    await notifier.start()
    now = {"t": T0}
    reminders = Reminders(store, IncidentsConfig(notifiers=["soc-webhook"]),
                          {"soc-webhook": notifier}, clock=lambda: now["t"])
    due = T0 + timedelta(days=5)
    try:
        for at in (due - timedelta(hours=47), due - timedelta(hours=46),
                   due - timedelta(hours=20), due + timedelta(hours=1),
                   due + timedelta(hours=5)):
            now["t"] = at
            await reminders.tick()
    finally:
        await notifier.close()
        store.close()
    bodies = [r.json() for r in receiver.requests]
    assert [b["id"].split(":")[3] for b in bodies] == ["before_48h", "before_24h", "overdue"]
    assert len({r.headers["Idempotency-Key"] for r in receiver.requests}) == 3
    first, last = bodies[0], bodies[-1]
    assert first["route"] == "incidents"
    assert first["group_key"] == f"incident={inc.id}"
    assert first["title"] == (f"[{inc.id}] Nhắc hạn: Báo cáo ban đầu sự cố (thông báo cho cơ "
                              "quan chức năng) — Tấn công DDoS cổng dịch vụ công")
    # due 02:00Z on 9 May = 09:00 in Asia/Ho_Chi_Minh
    assert "Thời hạn: 09:00 ngày 09/05/2026 (giờ Asia/Ho_Chi_Minh)" in first["text"]
    assert f"socd incident notified {inc.id}" in first["text"]
    assert last["title"].startswith(f"[{inc.id}] QUÁ HẠN")
    assert "ĐÃ QUÁ HẠN 1 giờ" in last["text"]


async def test_service_from_config(receiver: Receiver, tmp_path: Path) -> None:  # noqa: F811
    """What the daemon runs: ReminderService built from a loaded config."""
    from socd import config as config_mod
    from socd.app.components import notifier_factory
    from socd.app.deadletter import DeadLetter
    from socd.errors import ConfigError
    from socd.incidents.reminders import ReminderService

    cfg = config_mod.loads(f"state_dir: {tmp_path}\nnotifiers:\n  soc:\n    type: webhook\n"
                           f"    url: {receiver.url}/r\n", file=str(tmp_path / "socd.yaml"))
    section = IncidentsConfig(notifiers=["soc"], check_interval_secs=0.2)
    # the section as DocumentConfig.incidents holds it
    cfg = replace(cfg, document=cfg.document.model_copy(update={"incidents": section}))
    store = IncidentStore(str(tmp_path / "incidents.db"))
    now = datetime.now(UTC)
    store.open_incident(title="Quá hạn", by="an", alerts=[], discovered=now - timedelta(days=6),
                        now=now)
    store.close()
    service = ReminderService.from_config(
        cfg, notifier_factory(cfg, DeadLetter(str(tmp_path / "dl"))))
    await service.start()
    try:
        await wait_for_async(lambda: len(receiver.requests) >= 1)
        await asyncio.sleep(0.5)  # more checks: nothing is sent twice
    finally:
        await service.stop()
    assert len(receiver.requests) == 1
    assert receiver.requests[0].json()["title"].endswith("— Quá hạn")

    bad = replace(cfg, document=cfg.document.model_copy(
        update={"incidents": IncidentsConfig(notifiers=["nope"])}))
    with pytest.raises(ConfigError, match="unknown notifier nope"):
        ReminderService.from_config(bad, notifier_factory(bad, DeadLetter(str(tmp_path / "dl"))))


async def wait_for_async(predicate: Callable[[], bool]) -> None:
    deadline = asyncio.get_running_loop().time() + 30.0
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail("condition not met in 30 s")
        await asyncio.sleep(0.05)
