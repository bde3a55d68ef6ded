"""``socd replay``: decode and classify files offline, write NDJSON to stdout.

The analyst's counterpart of ``wazuh-logtest`` and ``fail2ban-regex``: the same
decoders and classification as the daemon, no services, no state.
"""

from __future__ import annotations

import gc
import gzip
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import BinaryIO

import orjson

from socd.engine.classify import Classifier
from socd.plugins import Decoder, RawRecord

BATCH = 1000


def _lines(path: str) -> Iterator[bytes]:
    fh: Iterable[bytes]  # stdin, a GzipFile or a BufferedReader: all iterate lines
    if path == "-":
        fh = sys.stdin.buffer
        yield from (line.rstrip(b"\r\n") for line in fh)
        return
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as fh:
        for line in fh:
            yield line.rstrip(b"\r\n")


def replay(paths: Iterable[str], decoder: Decoder, classifier: Classifier, out: BinaryIO,
           *, alerts_only: bool = False) -> dict[str, object]:
    """Replay ``paths`` through ``decoder`` and ``classifier``; returns statistics."""
    stats: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    started = time.perf_counter()
    write = out.write
    for path in paths:
        batch: list[RawRecord] = []
        now = time.time()
        for line in _lines(path):
            if not line.strip():
                continue
            stats["records"] += 1
            batch.append(RawRecord(line, decoder.name, "replay", path, now))
            if len(batch) >= BATCH:
                _run(batch, decoder, classifier, write, stats, failures, alerts_only)
                batch = []
        if batch:
            _run(batch, decoder, classifier, write, stats, failures, alerts_only)
    out.flush()
    elapsed = time.perf_counter() - started
    return {"records": stats["records"], "events": stats["events"], "alerts": stats["alerts"],
            "failed": dict(failures), "seconds": round(elapsed, 3),
            "records_per_sec": round(stats["records"] / elapsed) if elapsed else None}


def _run(batch: list[RawRecord], decoder: Decoder, classifier: Classifier, write: object,
         stats: Counter[str], failures: Counter[str], alerts_only: bool) -> None:
    # A batch makes no reference cycles, but its thousands of new dicts trigger young
    # collections that also walk what survived them; collecting once per batch instead
    # costs the same memory bound (one batch) and about a tenth of the replay's CPU
    # (docs/performance.md, "Compiled hot path: measured").
    if not gc.isenabled():
        _run_batch(batch, decoder, classifier, write, stats, failures, alerts_only)
        return
    gc.disable()
    try:
        _run_batch(batch, decoder, classifier, write, stats, failures, alerts_only)
    finally:
        gc.enable()


def _run_batch(batch: list[RawRecord], decoder: Decoder, classifier: Classifier,
               write: object, stats: Counter[str], failures: Counter[str],
               alerts_only: bool) -> None:
    events = []
    for record in batch:
        result = decoder.decode(record)
        events.extend(result.events)
        for failure in result.failures:
            failures[failure.reason] += 1
            print(f"socd replay: {record.source}: {failure.reason}: {failure.detail[:200]}",
                  file=sys.stderr)
    events = classifier.process(events)
    stats["events"] += len(events)
    chunks = []
    for event in events:
        is_alert = event["event"].get("kind") == "alert"
        stats["alerts"] += is_alert
        if alerts_only and not is_alert:
            continue
        chunks.append(orjson.dumps(event))
    if chunks:
        write(b"\n".join(chunks) + b"\n")  # type: ignore[operator]
