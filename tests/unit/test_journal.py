"""The intake journal: durability, release, replay, torn frames, back-pressure.

Crashes are real: a child process appends and is SIGKILLed, then this process
reads the folder it left."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from socd.app import journal as journal_mod
from socd.app.journal import Journal, decode, encode
from socd.config import JournalConfig
from socd.plugins import RawRecord

from .conftest import REPO, sample_value

pytestmark = pytest.mark.timeout(60)

SAFETY = 10.0  # seconds; only a safety net, never what a test measures


def batch(start: int, count: int = 3, pad: int = 0) -> list[RawRecord]:
    return [RawRecord(b'{"n": %d}' % i + b" " * pad, "json", "mqtt", f"topic/{i}", 1000.0 + i)
            for i in range(start, start + count)]


def numbers(records: list[RawRecord]) -> list[int]:
    return [json.loads(r.data)["n"] for r in records]


def segments(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("*.seg"))


async def until(predicate: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SAFETY
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


async def replayed(journal: Journal) -> list[tuple[int, list[int]]]:
    return [(seq, numbers(records)) async for seq, records in journal.replay()]


@pytest.fixture
async def opened(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Journal]]]:
    journals: list[Journal] = []

    async def make(directory: Path | None = None, **options: Any) -> Journal:
        journal = Journal(str(directory or tmp_path / "journal"), **options)
        await journal.open()
        journals.append(journal)
        return journal

    yield make
    for journal in journals:
        await journal.close()


def test_frame_round_trip_keeps_every_field() -> None:
    records = [RawRecord(b"\xff\x00binary", "server_edr", "edr", "sự-kiện/ü", 12.5),
               RawRecord(b"", "json", "syslog", "", 13.0)]
    frame = encode(7, records)
    back = decode(frame[journal_mod._HEADER.size:])
    assert back == records


async def test_append_returns_the_seq_once_on_disk(opened: Any, tmp_path: Path) -> None:
    journal = await opened()
    seqs = [await journal.append(batch(i * 3)) for i in range(3)]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == 3
    status = journal.status()
    assert status["records"] == 9
    assert status["batches"] == 3
    assert status["bytes"] > 0
    assert status["oldest_age_seconds"] > 0  # the records say they came at t=1000
    assert sample_value("socd_journal_fsync_seconds_count") >= 1


def test_appended_batch_survives_sigkill_right_after(tmp_path: Path) -> None:
    """The child prints each seq once append() returned, then is killed; every printed
    seq must be read back (a kill during the next append's fsync included)."""
    directory = tmp_path / "journal"
    code = textwrap.dedent("""
        import asyncio, os, sys
        from socd.app.journal import Journal
        from socd.plugins import RawRecord

        async def main():
            journal = Journal(sys.argv[1], fsync_interval_ms=0)
            await journal.open()
            i = 0
            while True:
                recs = [RawRecord(b'{"n": %d}' % (i * 10 + k), "json", "t", "s")
                        for k in range(10)]
                seq = await journal.append(recs)
                print(seq, flush=True)
                i += 1

        asyncio.run(main())
    """)
    child = subprocess.Popen([sys.executable, "-c", code, str(directory)], cwd=REPO,
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    acknowledged = [int(child.stdout.readline()) for _ in range(200)]
    child.send_signal(signal.SIGKILL)
    rest = child.stdout.read()
    child.stdout.close()
    child.wait()
    acknowledged += [int(line) for line in rest.split()]

    async def read_back() -> set[int]:
        journal = Journal(str(directory))
        await journal.open()
        try:
            return {seq for seq, _ in await replayed(journal)}
        finally:
            await journal.close()

    assert set(acknowledged) <= asyncio.run(read_back())


async def test_release_deletes_full_segments_but_not_the_active_one(opened: Any,
                                                                  tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    journal = await opened(segment_bytes=64 * 1024)
    seqs = [await journal.append(batch(i, count=10, pad=1000)) for i in range(20)]
    assert len(segments(directory)) >= 3
    for seq in seqs[:-1]:
        journal.release(seq)
    await until(lambda: len(segments(directory)) == 1, "released segments to be deleted")
    assert journal.status()["records"] == 10
    journal.release(seqs[-1])
    assert journal.status() | {"bytes": 0} == {
        "records": 0, "batches": 0, "bytes": 0, "max_bytes": journal.max_bytes,
        "oldest_age_seconds": 0.0}
    await journal.close()
    assert segments(directory) == []  # closing drops the active segment once it is released


async def test_restart_replays_unreleased_batches_in_order(opened: Any) -> None:
    journal = await opened(segment_bytes=64 * 1024)
    seqs = [await journal.append(batch(i * 10, count=10, pad=500)) for i in range(30)]
    for seq in seqs[::3]:
        journal.release(seq)
    await journal.close()

    again = await opened(segment_bytes=64 * 1024)
    assert again.scan.entries == 20
    got = await replayed(again)
    assert [seq for seq, _ in got] == [s for i, s in enumerate(seqs) if i % 3]
    assert got[0][1] == list(range(10, 20))
    # New appends continue after the old seqs, so the checkpoint never hides them.
    assert await again.append(batch(999)) > seqs[-1]


async def test_checkpoint_keeps_released_batches_from_being_replayed(opened: Any,
                                                                   tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    journal = await opened()
    seqs = [await journal.append(batch(i * 3)) for i in range(5)]
    for seq in seqs[:3]:
        journal.release(seq)
    # The segment stays (it is the active one); only the checkpoint says 0..2 are done.
    await until(lambda: (directory / "checkpoint").exists()
                and (directory / "checkpoint").read_text().split() == [str(seqs[3])],
                "the checkpoint to name the first unreleased seq")
    journal.freeze()  # a crash from here on: nothing more is released
    await journal.close()
    again = await opened()
    assert [seq for seq, _ in await replayed(again)] == seqs[3:]
    assert again.scan.skipped_released == 3


async def test_unreadable_checkpoint_replays_everything(opened: Any, tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    journal = await opened()
    seqs = [await journal.append(batch(i * 3)) for i in range(3)]
    journal.freeze()
    await journal.close()
    (directory / "checkpoint").write_text("garbage")
    again = await opened()
    assert [seq for seq, _ in await replayed(again)] == seqs


async def test_torn_last_frame_is_skipped_and_counted(opened: Any, tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    journal = await opened()
    seqs = [await journal.append(batch(i * 3)) for i in range(3)]
    await journal.close()
    (name,) = segments(directory)
    path = directory / name
    os.truncate(path, path.stat().st_size - 7)  # a crash in the middle of the last write
    before = sample_value("socd_journal_torn_records_total")

    again = await opened()
    assert again.scan.torn == 1
    assert sample_value("socd_journal_torn_records_total") == before + 1
    assert [seq for seq, _ in await replayed(again)] == seqs[:2]
    # The torn file is never appended to: new batches go to a new segment.
    new = await again.append(batch(100))
    assert len(segments(directory)) == 2
    await again.close()
    third = await opened()
    assert [seq for seq, _ in await replayed(third)] == [*seqs[:2], new]


async def test_corrupt_frame_in_the_middle_is_skipped(opened: Any, tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    journal = await opened()
    seqs = [await journal.append(batch(i * 3)) for i in range(3)]
    await journal.close()
    (name,) = segments(directory)
    path = directory / name
    data = bytearray(path.read_bytes())
    second = data.find(journal_mod.MAGIC, 1)
    data[second + journal_mod._HEADER.size + 10] ^= 0xFF  # one bit rot in frame 2
    path.write_bytes(bytes(data))

    again = await opened()
    assert again.scan.torn == 1
    got = await replayed(again)
    assert [seq for seq, _ in got] == [seqs[0], seqs[2]]
    assert got[1][1] == [6, 7, 8]


async def test_garbage_and_empty_segments_never_crash(opened: Any, tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    directory.mkdir()
    (directory / f"{5:020d}.seg").write_bytes(os.urandom(3000))
    (directory / f"{9:020d}.seg").write_bytes(b"")
    (directory / "notes.txt").write_text("not a segment")
    journal = await opened()
    assert await replayed(journal) == []
    assert journal.scan.torn >= 1
    assert segments(directory) == []  # nothing live in them: removed
    assert await journal.append(batch(0)) >= 10  # after every seq named on disk


async def test_full_journal_makes_append_wait_until_a_release(opened: Any) -> None:
    journal = await opened(max_bytes=256 * 1024, segment_bytes=64 * 1024)
    seqs: list[int] = []
    while journal.status()["bytes"] + 12_000 <= 256 * 1024:
        seqs.append(await journal.append(batch(len(seqs), count=10, pad=1000)))
    assert journal.try_append(batch(0, count=10, pad=1000)) is None
    waiting = asyncio.create_task(journal.append(batch(500, count=10, pad=1000)))
    await asyncio.sleep(0.2)
    assert not waiting.done()  # back-pressure, nothing dropped
    for seq in seqs[: len(seqs) // 2]:
        journal.release(seq)
    await asyncio.wait_for(waiting, SAFETY)
    assert journal.status()["bytes"] <= 256 * 1024


async def test_empty_journal_admits_an_oversized_batch(opened: Any) -> None:
    journal = await opened(max_bytes=64 * 1024, segment_bytes=16 * 1024)
    seq = await asyncio.wait_for(journal.append(batch(0, count=10, pad=20_000)), SAFETY)
    journal.release(seq)
    seq = await asyncio.wait_for(journal.append(batch(0, count=10, pad=20_000)), SAFETY)
    assert seq == 1


async def test_cancelled_append_is_released(opened: Any) -> None:
    journal = await opened(fsync_interval_ms=200)
    await journal.append(batch(0))  # the next fsync waits for the interval
    task = asyncio.create_task(journal.append(batch(3)))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert journal.status()["batches"] == 1


async def test_write_error_blocks_intake_and_recovers(opened: Any, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Fault injection for EIO (the real ENOSPC test uses a tmpfs, see
    tests/integration/test_journal_disk_full.py)."""
    journal = await opened()
    first = await journal.append(batch(0))
    real_fdatasync = os.fdatasync
    failing = True

    def fdatasync(fd: int) -> None:
        if failing:
            raise OSError(5, "Input/output error")
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    before = sample_value("socd_errors_total", component="journal", error_type="EIO")
    task = asyncio.create_task(journal.append(batch(3)))
    await until(lambda: not journal.healthy, "the journal to report the failure")
    await asyncio.sleep(0.1)
    assert not task.done()  # never acknowledged while the disk refuses it
    assert journal.status()["failing"] == "EIO"
    assert sample_value("socd_errors_total", component="journal", error_type="EIO") > before
    failing = False
    second = await asyncio.wait_for(task, SAFETY)
    assert journal.healthy
    journal.freeze()
    await journal.close()
    again = await opened()
    assert [seq for seq, _ in await replayed(again)] == [first, second]


async def test_release_before_the_frame_is_written(opened: Any, tmp_path: Path) -> None:
    """try_append queues at once; the pipeline may release before the fsync."""
    journal = await opened(fsync_interval_ms=50)
    await journal.append(batch(0))
    appended = journal.try_append(batch(3))
    assert appended is not None
    seq, durable = appended
    journal.release(seq)
    await asyncio.wait_for(durable, SAFETY)
    assert journal.status()["batches"] == 1


async def test_a_second_process_cannot_open_the_same_journal(opened: Any,
                                                             tmp_path: Path) -> None:
    await opened()
    code = ("import asyncio, sys\n"
            "from socd.app.journal import Journal, JournalError\n"
            "try:\n"
            "    asyncio.run(Journal(sys.argv[1]).open())\n"
            "except JournalError as exc:\n"
            "    print(exc)\n"
            "    sys.exit(3)\n")
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, str(tmp_path / "journal"), cwd=REPO,
        stdout=asyncio.subprocess.PIPE)
    out, _ = await child.communicate()
    assert child.returncode == 3
    assert b"in use by another socd process" in out


def test_config_keeps_segments_below_a_quarter_of_the_cap() -> None:
    with pytest.raises(ValueError, match="quarter"):
        JournalConfig.model_validate({"max_bytes": 8 * 1024 * 1024})
    assert JournalConfig.model_validate({"max_bytes": 8 * 1024 * 1024,
                                         "segment_bytes": 2 * 1024 * 1024})
    journal = Journal.from_config(JournalConfig.model_validate({}), "/var/lib/socd")
    assert journal.directory == "/var/lib/socd/journal"


def test_frames_keep_each_records_provenance() -> None:
    """A UDP syslog line replayed after a crash must stay unauthenticated (issue 12,
    finding 8): the frame keeps authenticated and blocking_allowed per record."""
    records = [
        RawRecord(b"udp", "syslog", "udp514", "198.51.100.7", 1.0, authenticated=False),
        RawRecord(b"udp-opt-in", "syslog", "udp515", "", 2.0, authenticated=False,
                  blocking_allowed=True),
        RawRecord(b"mqtt", "json", "edr", "edr/x", 3.0),
    ]
    back = decode(encode(1, records)[journal_mod._HEADER.size:])
    assert [(r.data, r.authenticated, r.blocking_allowed) for r in back] == [
        (b"udp", False, False), (b"udp-opt-in", False, True), (b"mqtt", True, False)]
