"""The file collector's tail mode: rotation, copytruncate, checkpoints, partial lines."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from socd.app import deadletter
from socd.app.deadletter import DeadLetter
from socd.app.journal import Journal
from socd.app.pipeline import Pipeline
from socd.collectors.file import (
    _ACTIVE,
    Checkpoint,
    FileCollector,
    _File,
    dump_checkpoints,
    fingerprint,
    load_checkpoints,
)
from socd.config import ClassificationConfig
from socd.engine.classify import Classifier
from socd.plugins import Ack, PluginContext, RawRecord

pytestmark = pytest.mark.timeout(60)

FAST = {"poll_interval_secs": 0.02, "scan_interval_secs": 0.05, "rotate_wait_secs": 0.2,
        "checkpoint_interval_secs": 0}


class Sink:
    """An emit that stores records and acknowledges them (or holds the acks back)."""

    def __init__(self, *, hold: bool = False) -> None:
        self.records: list[RawRecord] = []
        self.hold = hold
        self.held: list[Ack] = []

    async def emit(self, records: list[RawRecord], ack: Ack | None) -> None:
        self.records.extend(records)
        if ack is not None:
            if self.hold:
                self.held.append(ack)
            else:
                ack.done()

    @property
    def lines(self) -> list[bytes]:
        return [r.data for r in self.records]


def make(tmp_path: Path, dl: DeadLetter, name: str, **options: Any) -> FileCollector:
    cfg = FileCollector.Config.model_validate({
        "type": "file", "mode": "tail", "paths": ["logs/*.log"], **FAST, **options})
    ctx = PluginContext(name=name, dead_letter=dl, config_dir=str(tmp_path),
                        state_dir=str(tmp_path / "state"))
    return FileCollector(cfg, ctx)


async def until(predicate: Callable[[], Any], what: str, within: float = 15) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


class Running:
    """Runs a collector; leaving it is a process restart unless ``reload`` (then a new
    instance in the same process waits for the old one's batches)."""

    def __init__(self, collector: FileCollector, sink: Sink, *, reload: bool = False) -> None:
        self.collector = collector
        self.sink = sink
        self.reload = reload
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Running:
        if self.task is None:
            self.task = asyncio.create_task(self.collector.run(self.sink.emit))
        await until(lambda: self.collector.ready or self.task.done(), "ready")
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        if not self.reload:
            _ACTIVE.pop(self.collector.checkpoint_path, None)

    async def wait_lines(self, n: int) -> None:
        await until(lambda: len(self.sink.records) >= n, f"{n} lines "
                    f"(have {len(self.sink.records)})")


def lines(prefix: str, start: int, stop: int) -> bytes:
    return b"".join(b'{"n": "%s-%d"}\n' % (prefix.encode(), i) for i in range(start, stop))


def expected(prefix: str, start: int, stop: int) -> list[bytes]:
    return [b'{"n": "%s-%d"}' % (prefix.encode(), i) for i in range(start, stop)]


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as fh:
        fh.write(data)


def checkpoint(tmp_path: Path, name: str) -> dict[str, Any]:
    return orjson.loads((tmp_path / "state" / "checkpoints" / f"{name}.json").read_bytes())


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    (tmp_path / "logs").mkdir()
    return tmp_path / "logs"


async def test_follows_growth_and_waits_for_a_partial_line(tmp_path: Path, logs: Path,
                                                          dead_letter: DeadLetter,
                                                          uid: str) -> None:
    log = logs / "app.log"
    log.write_bytes(lines("a", 0, 3) + b"\r\n  \n")
    sink = Sink()
    async with Running(make(tmp_path, dead_letter, uid), sink) as run:
        await run.wait_lines(3)
        append(log, b'{"n": "partial"')
        await asyncio.sleep(0.2)
        assert len(sink.records) == 3
        append(log, b"}\n" + lines("a", 3, 5))
        await run.wait_lines(6)
        new = logs / "new.log"
        new.write_bytes(lines("b", 0, 2))
        await run.wait_lines(8)
    assert sink.lines == [*expected("a", 0, 3), b'{"n": "partial"}', *expected("a", 3, 5),
                          *expected("b", 0, 2)]
    first = sink.records[0]
    assert (first.decoder, first.collector, first.source) == ("json", uid, str(log))


async def test_rotation_by_rename_reads_old_file_to_the_end(tmp_path: Path, logs: Path,
                                                            dead_letter: DeadLetter,
                                                            uid: str) -> None:
    log = logs / "app.log"
    log.write_bytes(lines("r", 0, 100))
    sink = Sink()
    async with Running(make(tmp_path, dead_letter, uid), sink) as run:
        await run.wait_lines(100)
        # The writer still has the old file open: lines written after the rename go
        # to the old inode, which is no longer matched by the glob.
        with open(log, "ab") as old:  # noqa: ASYNC230
            old.write(lines("r", 100, 150))
            os.rename(log, logs / "app.log.1")
            old.write(lines("r", 150, 200))
            log.write_bytes(lines("r", 200, 250))
            old.write(lines("r", 250, 260))
        await run.wait_lines(260)
        await until(lambda: len(run.collector.files_open) == 1, "old file closed")
        append(log, lines("r", 260, 300))
        await run.wait_lines(300)
        await asyncio.sleep(0.2)
    assert sorted(sink.lines) == sorted(expected("r", 0, 300))
    assert len(sink.lines) == 300
    files = checkpoint(tmp_path, uid)["files"]
    assert [f["path"] for f in files] == [str(log)]
    assert files[0]["offset"] == log.stat().st_size


async def test_copytruncate_reads_again_from_the_start(tmp_path: Path, logs: Path,
                                                       dead_letter: DeadLetter,
                                                       uid: str) -> None:
    log = logs / "app.log"
    log.write_bytes(lines("c", 0, 50))
    sink = Sink()
    async with Running(make(tmp_path, dead_letter, uid), sink) as run:
        await run.wait_lines(50)
        shutil.copy(log, logs / "app.log.1")  # not matched by *.log
        os.truncate(log, 0)
        await asyncio.sleep(0.1)
        append(log, lines("c", 50, 60))
        await run.wait_lines(60)
        # Truncated and regrown past the old offset before socd looked: the
        # fingerprint of the first bytes tells.
        os.truncate(log, 0)
        log.write_bytes(lines("d", 0, 80))
        await run.wait_lines(140)
        await asyncio.sleep(0.2)
    assert sink.lines == [*expected("c", 0, 60), *expected("d", 0, 80)]


async def test_restart_resumes_from_checkpoint_without_loss_or_duplicates(
        tmp_path: Path, logs: Path, dead_letter: DeadLetter, uid: str) -> None:
    log = logs / "app.log"
    log.write_bytes(lines("s", 0, 1000))
    first = Sink()
    async with Running(make(tmp_path, dead_letter, uid, batch_max_events=100), first) as run:
        await run.wait_lines(1000)
    assert checkpoint(tmp_path, uid)["files"][0]["offset"] == log.stat().st_size
    append(log, lines("s", 1000, 1500))
    # Batches handed over but not acknowledged when socd stops are read again.
    second = Sink(hold=True)
    async with Running(make(tmp_path, dead_letter, uid, batch_max_events=100), second) as run:
        await run.wait_lines(500)
        for ack in second.held[:2]:
            ack.done()
    assert second.lines == expected("s", 1000, 1500)
    third = Sink()
    async with Running(make(tmp_path, dead_letter, uid, batch_max_events=100), third) as run:
        await run.wait_lines(300)
        await asyncio.sleep(0.2)
    assert third.lines == expected("s", 1200, 1500)
    assert first.lines + second.lines[:200] + third.lines == expected("s", 0, 1500)


async def test_a_reloaded_collector_waits_for_the_batches_of_the_old_one(
        tmp_path: Path, logs: Path, dead_letter: DeadLetter, uid: str) -> None:
    log = logs / "app.log"
    log.write_bytes(lines("h", 0, 40))
    old = Sink(hold=True)
    async with Running(make(tmp_path, dead_letter, uid, batch_max_events=10), old,
                       reload=True) as run:
        await run.wait_lines(40)
    new = Sink()
    collector = make(tmp_path, dead_letter, uid, batch_max_events=10)
    task = asyncio.create_task(collector.run(new.emit))
    await asyncio.sleep(0.2)
    assert not collector.ready  # the old batches are still in the pipeline
    for ack in old.held:  # the pipeline stores them: the daemon drains in order
        ack.done()
    run = Running(collector, new)
    run.task = task
    async with run:
        append(log, lines("h", 40, 45))
        await run.wait_lines(5)
        await asyncio.sleep(0.1)
    assert new.lines == expected("h", 40, 45)


async def test_offsets_commit_in_read_order_whatever_the_ack_order(
        tmp_path: Path, logs: Path, dead_letter: DeadLetter, uid: str) -> None:
    log = logs / "app.log"
    log.write_bytes(lines("o", 0, 30))
    sink = Sink(hold=True)
    async with Running(make(tmp_path, dead_letter, uid, batch_max_events=10), sink) as run:
        await run.wait_lines(30)
        await until(lambda: len(sink.held) == 3, "3 batches")
        sink.held[2].done()
        sink.held[1].done()
        assert not (tmp_path / "state" / "checkpoints" / f"{uid}.json").exists() or \
            checkpoint(tmp_path, uid)["files"][0]["offset"] == 0
        sink.held[0].done()
        assert checkpoint(tmp_path, uid)["files"][0]["offset"] == log.stat().st_size


async def test_with_the_journal_offsets_commit_once_journaled(
        tmp_path: Path, logs: Path, dead_letter: DeadLetter, uid: str) -> None:
    """The checkpoint moves as soon as the lines are in the intake journal, not when
    the sinks have them (here never: nothing takes from the pipeline); what the
    checkpoint skips after a crash the journal replays."""
    log = logs / "app.log"
    log.write_bytes(lines("j", 0, 30))
    journal = Journal(str(tmp_path / "journal"), fsync_interval_ms=0)
    pipeline = Pipeline({}, Classifier.from_files(ClassificationConfig(), []), [],
                        dead_letter, journal=journal)
    await pipeline.recover()
    collector = make(tmp_path, dead_letter, uid, batch_max_events=10)
    task = asyncio.create_task(collector.run(pipeline.submit))
    try:
        await until(lambda: (tmp_path / "state" / "checkpoints" / f"{uid}.json").exists()
                    and checkpoint(tmp_path, uid)["files"][0]["offset"] == log.stat().st_size,
                    "the checkpoint at the end of the file")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        _ACTIVE.pop(collector.checkpoint_path, None)
    assert pipeline.events_processed == 0
    journal.freeze()
    await journal.close()
    again = Journal(str(tmp_path / "journal"))
    await again.open()
    replayed = [r.data async for _, batch in again.replay() for r in batch]
    await again.close()
    assert replayed == expected("j", 0, 30)


async def test_inode_reuse_is_detected_by_fingerprint(tmp_path: Path, logs: Path,
                                                      dead_letter: DeadLetter,
                                                      uid: str) -> None:
    log = logs / "app.log"
    log.write_bytes(lines("i", 0, 20))
    st = log.stat()
    # A checkpoint for the same device and inode, but of another file's content.
    other = lines("x", 0, 5)
    (tmp_path / "state" / "checkpoints").mkdir(parents=True)
    (tmp_path / "state" / "checkpoints" / f"{uid}.json").write_bytes(dump_checkpoints(uid, {
        (st.st_dev, st.st_ino): Checkpoint(str(log), st.st_dev, st.st_ino, len(other),
                                           fingerprint(other), len(other))}))
    sink = Sink()
    async with Running(make(tmp_path, dead_letter, uid), sink) as run:
        await run.wait_lines(20)
        await asyncio.sleep(0.1)
    assert sink.lines == expected("i", 0, 20)


async def test_gz_files_are_imported_once(tmp_path: Path, logs: Path, dead_letter: DeadLetter,
                                          uid: str) -> None:
    with gzip.open(logs / "old.log.gz", "wb") as fh:
        fh.write(lines("g", 0, 300))
    (logs / "app.log").write_bytes(lines("a", 0, 2))
    options = {"paths": ["logs/*.log", "logs/*.gz"], "batch_max_events": 50}
    sink = Sink()
    async with Running(make(tmp_path, dead_letter, uid, **options), sink) as run:
        await run.wait_lines(302)
        await asyncio.sleep(0.2)
    assert sorted(sink.lines) == sorted(expected("g", 0, 300) + expected("a", 0, 2))
    (gz,) = [f for f in checkpoint(tmp_path, uid)["files"] if f["gz"]]
    assert gz["done"] is True
    again = Sink()
    async with Running(make(tmp_path, dead_letter, uid, **options), again):
        append(logs / "app.log", lines("a", 2, 3))
        await until(lambda: again.records, "the new line")
        await asyncio.sleep(0.2)
    assert again.lines == expected("a", 2, 3)


async def test_interrupted_gz_import_resumes_where_it_stopped(tmp_path: Path, logs: Path,
                                                             dead_letter: DeadLetter,
                                                             uid: str) -> None:
    with gzip.open(logs / "old.log.gz", "wb") as fh:
        fh.write(lines("g", 0, 100))
    options = {"paths": ["logs/*.gz"], "batch_max_events": 10}
    first = Sink(hold=True)
    async with Running(make(tmp_path, dead_letter, uid, **options), first) as run:
        await run.wait_lines(100)
        for ack in first.held[:4]:
            ack.done()
    second = Sink()
    async with Running(make(tmp_path, dead_letter, uid, **options), second) as run:
        await run.wait_lines(60)
        await asyncio.sleep(0.1)
    assert second.lines == expected("g", 40, 100)


async def test_oversize_lines_are_dead_lettered(tmp_path: Path, logs: Path,
                                                dead_letter: DeadLetter, uid: str) -> None:
    log = logs / "app.log"
    log.write_bytes(b"x" * 300 + b"\n" + lines("o", 0, 1))
    sink = Sink()
    async with Running(make(tmp_path, dead_letter, uid, max_line_bytes=256), sink) as run:
        await run.wait_lines(1)
        # An oversize line arriving in pieces: dead-lettered once, as soon as it is too long.
        append(log, b"y" * 200)
        await asyncio.sleep(0.1)
        append(log, b"y" * 200)
        await asyncio.sleep(0.1)
        append(log, b"y" * 100 + b"\n" + lines("o", 1, 2))
        await run.wait_lines(2)
    assert sink.lines == expected("o", 0, 2)
    dead_letter.close()
    entries = deadletter.read(dead_letter.path)
    assert [(e["reason"], e["raw"]) for e in entries] == [
        ("oversize", b"x" * 300), ("oversize", b"y" * 256)]
    assert checkpoint(tmp_path, uid)["files"][0]["offset"] == log.stat().st_size


async def test_start_at_end_skips_existing_lines_on_the_first_run_only(
        tmp_path: Path, logs: Path, dead_letter: DeadLetter, uid: str) -> None:
    (logs / "app.log").write_bytes(lines("e", 0, 10) + b'{"n": "e-par')
    sink = Sink()
    async with Running(make(tmp_path, dead_letter, uid, start_at="end"), sink) as run:
        append(logs / "app.log", b'tial"}\n' + lines("e", 10, 11))
        await run.wait_lines(2)
        await asyncio.sleep(0.1)
    assert sink.lines == [b'{"n": "e-partial"}', *expected("e", 10, 11)]
    (logs / "later.log").write_bytes(lines("l", 0, 3))  # appeared while socd was stopped
    again = Sink()
    async with Running(make(tmp_path, dead_letter, uid, start_at="end"), again) as run:
        await run.wait_lines(3)
        await asyncio.sleep(0.1)
    assert again.lines == expected("l", 0, 3)


async def test_partial_line_is_taken_after_the_timeout(tmp_path: Path, logs: Path,
                                                       dead_letter: DeadLetter,
                                                       uid: str) -> None:
    (logs / "app.log").write_bytes(b'{"n": "no newline"}')
    sink = Sink()
    async with Running(make(tmp_path, dead_letter, uid, partial_line_timeout_secs=0.2),
                       sink) as run:
        await run.wait_lines(1)
        append(logs / "app.log", lines("p", 0, 1))
        await run.wait_lines(2)
    assert sink.lines == [b'{"n": "no newline"}', *expected("p", 0, 1)]


async def test_rotation_while_stopped_reads_the_rest_of_the_old_file(
        tmp_path: Path, logs: Path, dead_letter: DeadLetter, uid: str) -> None:
    log = logs / "app.log"
    log.write_bytes(lines("w", 0, 10))
    first = Sink()
    async with Running(make(tmp_path, dead_letter, uid), first) as run:
        await run.wait_lines(10)
    append(log, lines("w", 10, 20))
    os.rename(log, logs / "app.log.1")
    log.write_bytes(lines("w", 20, 30))
    second = Sink()
    async with Running(make(tmp_path, dead_letter, uid), second) as run:
        await run.wait_lines(20)
        await until(lambda: len(run.collector.files_open) == 1, "old file closed")
    assert sorted(second.lines) == sorted(expected("w", 10, 30))
    assert [f["path"] for f in checkpoint(tmp_path, uid)["files"]] == [str(log)]


async def test_deleted_file_is_forgotten(tmp_path: Path, logs: Path, dead_letter: DeadLetter,
                                         uid: str) -> None:
    (logs / "a.log").write_bytes(lines("a", 0, 1))
    (logs / "b.log").write_bytes(lines("b", 0, 1))
    sink = Sink()
    async with Running(make(tmp_path, dead_letter, uid), sink) as run:
        await run.wait_lines(2)
        (logs / "b.log").unlink()
        await until(lambda: len(run.collector.files_open) == 1, "b.log closed")
        await until(lambda: len(checkpoint(tmp_path, uid)["files"]) == 1, "b.log forgotten")


async def test_oneshot_stays_the_default(tmp_path: Path, logs: Path, uid: str) -> None:
    (logs / "app.log").write_bytes(lines("d", 0, 3))
    cfg = FileCollector.Config.model_validate({"type": "file", "paths": ["logs/*.log"]})
    assert cfg.mode == "oneshot"
    sink = Sink()
    collector = FileCollector(cfg, PluginContext(name=uid, dead_letter=None,
                                                 config_dir=str(tmp_path),
                                                 state_dir=str(tmp_path / "state")))
    await collector.run(sink.emit)  # finishes by itself
    assert sink.lines == expected("d", 0, 3)
    assert not (tmp_path / "state").exists()


def test_corrupt_checkpoint_file_is_set_aside(tmp_path: Path, uid: str) -> None:
    from socd.collectors.file import CheckpointStore

    path = tmp_path / "c.json"
    path.write_bytes(b"{not json")
    store = CheckpointStore(str(path), uid, 1.0)
    assert store.load() is False
    assert not path.exists()
    assert list(tmp_path.glob("c.json.corrupt-*"))


# -- properties --------------------------------------------------------------------------

checkpoints = st.builds(
    Checkpoint,
    path=st.text(min_size=1, max_size=40),
    dev=st.integers(0, 2**63),
    ino=st.integers(0, 2**63),
    offset=st.integers(0, 2**62),
    fp=st.text("0123456789abcdef", max_size=32),
    fp_len=st.integers(0, 1024),
    gz=st.booleans(),
    done=st.booleans(),
)


@given(st.lists(checkpoints, max_size=20))
def test_checkpoint_file_round_trip(entries: list[Checkpoint]) -> None:
    by_key = {c.key: c for c in entries}
    assert load_checkpoints(dump_checkpoints("c", by_key)) == by_key


@given(st.binary(max_size=300))
def test_checkpoint_loader_rejects_garbage_with_value_error(data: bytes) -> None:
    with contextlib.suppress(ValueError):
        load_checkpoints(data)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=200)
@given(data=st.lists(st.sampled_from([b"a", b"bc", b"\n", b"\r\n", b" ", b'{"x":1}']),
                     max_size=60).map(b"".join),
       cuts=st.lists(st.integers(0, 400), max_size=8))
def test_line_splitting_does_not_depend_on_read_boundaries(data: bytes, cuts: list[int]) -> None:
    cfg = FileCollector.Config.model_validate({"type": "file", "mode": "tail",
                                               "paths": ["x"]})
    collector = FileCollector(cfg, PluginContext(name="prop", dead_letter=None))
    f = _File((0, 0), "x", -1, 0)
    got: list[bytes] = []
    bounds = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    for a, b in zip(bounds, bounds[1:], strict=False):
        split = collector._split(f, data[a:b])
        if split is not None:
            pos, found, _ = split
            assert pos == f.line_pos
            got.extend(found)
            f.line_pos = pos + sum(len(x) + 1 for x in found)
    assert got == data.split(b"\n")[:-1]
    assert f.partial == data.split(b"\n")[-1]
    assert f.line_pos == len(data) - len(f.partial)
