"""The on-disk spool: FIFO order, durability across reopen and crash, the size cap."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from socd.app import spool as spool_mod
from socd.app.spool import Spool, SpoolClosedError
from socd.event import Event

from .conftest import REPO, sample_value

pytestmark = pytest.mark.timeout(60)

SAFETY = 10.0  # seconds; only a safety net, never what a test measures


def chunk(start: int, count: int, pad: int = 0) -> list[Event]:
    return [{"message": str(i), "event": {"kind": "alert", "hash": f"h{i}"}, "pad": "x" * pad}
            for i in range(start, start + count)]


def messages(events: list[Event]) -> list[str]:
    return [e["message"] for e in events]


def disk_usage(path: str) -> int:
    return os.path.getsize(path) + os.path.getsize(path + "-wal")


async def spin(times: int = 100) -> None:
    for _ in range(times):
        await asyncio.sleep(0)


async def until(predicate: Callable[[], bool], what: str) -> None:
    """Poll (a safety net of SAFETY seconds, not a measurement)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SAFETY
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


@pytest.fixture
async def opened(tmp_path: Path, uid: str) -> AsyncIterator[Callable[..., Awaitable[Spool]]]:
    spools: list[Spool] = []

    async def make(max_bytes: int = 1 << 30, warn_ratio: float = 0.8,
                   name: str = uid, path: Path | None = None) -> Spool:
        spool = Spool(str(path or tmp_path / "spool" / f"{name}.db"), name=name,
                      max_bytes=max_bytes, warn_ratio=warn_ratio)
        spools.append(spool)
        await spool.open()
        return spool

    yield make
    for spool in spools:
        await spool.close()


async def test_append_peek_remove_is_fifo(opened: Any, uid: str) -> None:
    spool = await opened()
    assert (spool.events, spool.bytes) == (0, 0)
    assert await spool.peek(100) == ([], [])
    await spool.append(chunk(0, 3))
    await spool.append(chunk(3, 2))
    await spool.append(chunk(5, 4))
    assert spool.events == 9
    assert spool.rows == 3
    assert spool.bytes == sum(len(Spool.encode(chunk(a, n))) for a, n in ((0, 3), (3, 2), (5, 4)))

    # Whole rows only, oldest first, never more than max_events ...
    seq_ids, events = await spool.peek(5)
    assert messages(events) == ["0", "1", "2", "3", "4"]
    assert len(seq_ids) == 2
    seq_small, events_small = await spool.peek(4)
    assert messages(events_small) == ["0", "1", "2"]
    # ... except that one row always comes, however big.
    _, events_one = await spool.peek(1)
    assert messages(events_one) == ["0", "1", "2"]
    assert events_one[0] == chunk(0, 1)[0]  # what went in comes out

    await spool.remove(seq_ids)
    assert spool.events == 4
    await spool.remove(seq_ids)  # idempotent: nothing counted twice
    assert spool.events == 4
    seq_rest, rest = await spool.peek(100)
    assert messages(rest) == ["5", "6", "7", "8"]
    await spool.remove(seq_rest)
    assert (spool.events, spool.bytes, spool.rows) == (0, 0, 0)
    assert await spool.peek(100) == ([], [])


async def test_reopen_continues_where_it_stopped(opened: Any, tmp_path: Path, uid: str) -> None:
    path = tmp_path / "state" / "spool" / "es.db"
    first = await opened(path=path)
    await first.append(chunk(0, 2))
    await first.append(chunk(2, 2))
    seq_ids, _ = await first.peek(2)
    await first.remove(seq_ids)
    size = first.bytes
    await first.close()
    with pytest.raises(SpoolClosedError):
        await first.peek(1)

    second = await opened(path=path)
    assert (second.events, second.bytes, second.rows) == (2, size, 1)
    await second.append(chunk(4, 1))
    _, events = await second.peek(100)
    assert messages(events) == ["2", "3", "4"]
    assert sample_value("socd_spool_events", sink=uid) == 3


async def test_append_is_durable_when_the_process_dies_right_after(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    code = (
        "import asyncio, os, signal, sys\n"
        "from socd.app.spool import Spool\n"
        "async def main():\n"
        "    s = Spool(sys.argv[1], name='crash', max_bytes=1 << 30)\n"
        "    await s.open()\n"
        "    for i in range(5):\n"
        "        await s.append([{'message': str(i)}])\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "asyncio.run(main())\n")
    proc = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", code, str(path)], cwd=REPO, timeout=60,
        capture_output=True, check=False)
    assert proc.returncode == -9, proc.stderr.decode()
    spool = Spool(str(path), name="crash", max_bytes=1 << 30)
    try:
        await spool.open()
        assert spool.events == 5
        _, events = await spool.peek(100)
        assert messages(events) == ["0", "1", "2", "3", "4"]
    finally:
        await spool.close()


async def test_file_is_wal_with_synchronous_full(opened: Any, tmp_path: Path, uid: str) -> None:
    spool = await opened()
    await spool.append(chunk(0, 1))
    conn = sqlite3.connect(spool.path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT count(*), sum(count) FROM spool").fetchone() == (1, 1)
    finally:
        conn.close()
    sync = await spool._run(lambda: spool._db().execute("PRAGMA synchronous").fetchone()[0])
    assert sync == 2  # FULL
    assert (await asyncio.to_thread(os.stat, spool.path)).st_mode & 0o777 == 0o640


async def test_full_spool_makes_append_wait_until_space_is_freed(opened: Any,
                                                                 uid: str) -> None:
    one = len(Spool.encode(chunk(0, 1, pad=1000)))
    spool = await opened(max_bytes=2 * one + 10, warn_ratio=0.4)
    with capture_logs() as logs:
        await spool.append(chunk(0, 1, pad=1000))
        await spool.append(chunk(1, 1, pad=1000))
        blocked = asyncio.create_task(spool.append(chunk(2, 1, pad=1000)))
        await spin()
        assert not blocked.done(), "append went past the cap"
        assert spool.rows == 2
        also_blocked = asyncio.create_task(spool.append(chunk(3, 1, pad=1000)))
        await spin()
        assert not also_blocked.done()

        seq_ids, events = await spool.peek(1)
        assert messages(events) == ["0"]
        await spool.remove(seq_ids)
        await asyncio.wait_for(blocked, SAFETY)
        await spin()
        assert not also_blocked.done()
        seq_ids, _ = await spool.peek(1)
        await spool.remove(seq_ids)
        await asyncio.wait_for(also_blocked, SAFETY)
    _, events = await spool.peek(100)
    assert messages(events) == ["2", "3"]

    levels = [(e["log_level"], e["event"]) for e in logs]
    warnings = [e for e in levels if e[0] == "warning" and "filling up" in e[1]]
    errors = [e for e in levels if e[0] == "error" and "spool full" in e[1]]
    assert len(warnings) == 1, levels  # once per crossing, not once per append
    assert len(errors) == 1, levels  # re-armed only below the warning level


async def test_empty_spool_admits_an_oversized_chunk(opened: Any) -> None:
    spool = await opened(max_bytes=100)
    await asyncio.wait_for(spool.append(chunk(0, 10, pad=100)), SAFETY)
    assert spool.events == 10
    assert spool.bytes > spool.max_bytes
    assert not spool.append_blocking(chunk(10, 1))  # full: refused, nothing stored
    assert spool.events == 10


async def test_metrics_follow_appends_and_removes(opened: Any, uid: str) -> None:
    spool = await opened(max_bytes=5 << 20)
    assert sample_value("socd_spool_max_bytes", sink=uid) == 5 << 20
    assert sample_value("socd_spool_events", sink=uid) == 0
    await spool.append(chunk(0, 3))
    assert spool.append_blocking(chunk(3, 2))
    assert sample_value("socd_spool_events", sink=uid) == 5
    assert sample_value("socd_spool_bytes", sink=uid) == spool.bytes > 0
    assert sample_value("socd_spool_written_total", sink=uid) == 5
    seq_ids, _ = await spool.peek(3)
    await spool.remove(seq_ids)
    assert sample_value("socd_spool_events", sink=uid) == 2
    assert sample_value("socd_spool_bytes", sink=uid) == spool.bytes
    assert sample_value("socd_spool_written_total", sink=uid) == 5


async def test_emptied_spool_gives_disk_space_back(opened: Any) -> None:
    spool = await opened()
    for i in range(20):
        await spool.append(chunk(i * 100, 100, pad=1000))
    full = await asyncio.to_thread(disk_usage, spool.path)
    while spool.events:
        seq_ids, _ = await spool.peek(1000)
        await spool.remove(seq_ids)
    empty = await asyncio.to_thread(disk_usage, spool.path)
    assert empty < full / 10


async def test_acquire_shares_one_spool_per_file(tmp_path: Path, uid: str) -> None:
    path = str(tmp_path / "spool" / "x.db")
    a = spool_mod.acquire(path, name=uid, max_bytes=1 << 30)
    b = spool_mod.acquire(path, name=uid, max_bytes=2 << 30, warn_ratio=0.5)
    assert a is b
    assert a.max_bytes == 2 << 30  # the newest configuration wins
    await a.open()
    await b.open()
    await a.append(chunk(0, 1))
    await spool_mod.release(a)
    assert not b.closed
    await b.append(chunk(1, 1))
    await spool_mod.release(b)
    assert b.closed
    c = spool_mod.acquire(path, name=uid, max_bytes=1 << 30)
    assert c is not a
    await c.open()
    assert c.events == 2
    await spool_mod.release(c)


async def test_open_failure_is_reported(tmp_path: Path, uid: str) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    spool = Spool(str(blocker / "spool.db"), name=uid, max_bytes=1 << 30)
    with pytest.raises(OSError):
        await spool.open()
    assert not spool.is_open
    await spool.close()
