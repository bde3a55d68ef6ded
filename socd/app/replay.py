"""``socd replay``: decode and classify files offline, write NDJSON to stdout.

The analyst's counterpart of ``wazuh-logtest`` and ``fail2ban-regex``: the same
decoders and classification as the daemon, no services, no state.
"""

from __future__ import annotations

import gc
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from io import BufferedIOBase
from typing import BinaryIO, cast

import orjson

from socd.engine.classify import Classifier
from socd.event import Event
from socd.plugins import DecodeFailure, Decoder, LineDecoder, RawRecord

BATCH = 1000
BLOCK = 1 << 16  # bytes read at a time


def _open(path: str) -> AbstractContextManager[BufferedIOBase]:
    """The file: stdin, a GzipFile or a BufferedReader (all have ``read1``)."""
    if path == "-":
        return nullcontext(cast(BufferedIOBase, sys.stdin.buffer))
    if path.endswith(".gz"):
        import gzip  # only for .gz inputs: start-up of every other replay

        return gzip.open(path, "rb")  # a GzipFile
    return open(path, "rb")  # the caller's with closes it


def _line_blocks(path: str) -> Iterator[list[bytes]]:
    """The non-blank lines of ``path`` without their line ends, a block's worth at a time.

    The lines of iterating the file, from one ``split`` a block: ``\n`` ends a line,
    ``\r`` and ``\n`` at its end are dropped, and a line whose ``strip()`` is empty
    (the same ASCII white space as ``isspace()``) is left out. A line longer than a
    block is gathered from its pieces (joined once: a hostile line without line ends
    costs its length, not its length squared). ``read1`` returns what the file has
    (a pipe's lines are not held back until a block is full)."""
    with _open(path) as fh:
        read = fh.read1
        head: list[bytes] = []  # the start of a line that began in an earlier block
        while block := read(BLOCK):
            if b"\n" not in block:
                head.append(block)
                continue
            if head:
                head.append(block)
                block = b"".join(head)
                head = []
            lines = block.split(b"\n")
            tail = lines.pop()
            if tail:
                head.append(tail)
            if b"\r" in block:
                lines = [line.rstrip(b"\r") for line in lines]
            yield [line for line in lines if line and not line.isspace()]
        last = b"".join(head).rstrip(b"\r")
        if last and not last.isspace():
            yield [last]


def replay(paths: Iterable[str], decoder: Decoder, classifier: Classifier, out: BinaryIO,
           *, alerts_only: bool = False) -> dict[str, object]:
    """Replay ``paths`` through ``decoder`` and ``classifier``; returns statistics."""
    failures: Counter[str] = Counter()
    started = time.perf_counter()
    run = _Run(decoder, classifier, out, failures, alerts_only)
    records = 0
    for path in paths:
        batch: list[bytes] = []
        now = time.time()
        for lines in _line_blocks(path):
            batch += lines
            while len(batch) >= BATCH:
                records += BATCH
                run(batch[:BATCH], path, now)
                del batch[:BATCH]
        if batch:
            records += len(batch)
            run(batch, path, now)
    out.flush()
    elapsed = time.perf_counter() - started
    return {"records": records, "events": run.events, "alerts": run.alerts,
            "failed": dict(failures), "seconds": round(elapsed, 3),
            "records_per_sec": round(records / elapsed) if elapsed else None}


class _Run:
    """Decodes, classifies and writes one batch of lines; counts events and alerts."""

    def __init__(self, decoder: Decoder, classifier: Classifier, out: BinaryIO,
                 failures: Counter[str], alerts_only: bool) -> None:
        self.decoder = decoder
        # A decoder that reads a batch of lines in one call (the syslog decoder) gives
        # what one decode() a line gives, without a record, a call and a result a line.
        self.decode_lines = decoder.decode_lines if isinstance(decoder, LineDecoder) else None
        self.classifier = classifier
        self.write = out.write
        self.failures = failures
        self.alerts_only = alerts_only
        self.events = 0
        self.alerts = 0

    def __call__(self, lines: list[bytes], path: str, now: float) -> None:
        # A batch makes no reference cycles, but its thousands of new dicts trigger young
        # collections that also walk what survived them; collecting once per batch instead
        # costs the same memory bound (one batch) and about a tenth of the replay's CPU
        # (docs/performance.md, "Compiled hot path: measured").
        if not gc.isenabled():
            self._batch(lines, path, now)
            return
        gc.disable()
        try:
            self._batch(lines, path, now)
        finally:
            gc.enable()

    def _batch(self, lines: list[bytes], path: str, now: float) -> None:
        events: list[Event]
        if self.decode_lines is not None:
            events, failures = self.decode_lines(lines, "replay", path, now)
            for failure in failures:
                self._failed(failure, path)
        else:
            decoder = self.decoder
            decode = decoder.decode
            name = decoder.name
            events = []
            for line in lines:
                result = decode(RawRecord(line, name, "replay", path, now))
                events += result.events
                if result.failures:
                    for failure in result.failures:
                        self._failed(failure, path)
        events = self.classifier.process(events)
        self.events += len(events)
        # One orjson call an event, each line ending in its newline (OPT_APPEND_NEWLINE:
        # no copy of the event's bytes to add it), one write a batch.
        dumps, option = orjson.dumps, orjson.OPT_APPEND_NEWLINE
        if self.alerts_only:
            chunks = [dumps(event, None, option) for event in events
                      if event["event"].get("kind") == "alert"]
            self.alerts += len(chunks)
        else:
            chunks = [dumps(event, None, option) for event in events]
            self.alerts += [event["event"].get("kind") for event in events].count("alert")
        if chunks:
            self.write(b"".join(chunks))

    def _failed(self, failure: DecodeFailure, path: str) -> None:
        self.failures[failure.reason] += 1
        print(f"socd replay: {path}: {failure.reason}: {failure.detail[:200]}", file=sys.stderr)
