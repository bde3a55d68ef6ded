"""Stopping the background tasks plugins and services run beside their main work
(retention sweeps, gauge refreshes, reminder loops)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def stop_task(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` and wait until it has finished, so nothing it does outlives
    the close that stops it; its CancelledError ends here. ``None`` (a task never
    started) does nothing."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
