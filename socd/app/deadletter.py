"""The dead-letter file: where every record socd could not deliver ends up.

One JSON object a line, with the raw bytes base64-encoded so nothing about the
original input is lost (invalid UTF-8 and binary noise included). Writes are
synchronous: dead letters are rare, and a record is only counted as handled
once its line is on disk.
"""

from __future__ import annotations

import base64
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

import orjson

from socd import metrics
from socd.filemode import open_private
from socd.log import get_logger

log = get_logger("socd.deadletter")

LOG_INTERVAL_SECS = 10.0
_MAX_LOG_KEYS = 256  # stage and reason come from fixed sets; this is a safety bound


class DeadLetter:
    """Appends undeliverable records to ``<dir>/dead-letter.ndjson`` with rotation."""

    def __init__(self, directory: str, *, max_file_bytes: int = 256 * 1024 * 1024,
                 max_files: int = 20) -> None:
        self.directory = directory
        self.path = os.path.join(directory, "dead-letter.ndjson")
        self.max_file_bytes = max_file_bytes
        self.max_files = max_files
        self._lock = threading.Lock()
        self._fh: Any = None
        # (stage, reason) -> [window start, records dead-lettered but not logged]
        self._quiet: dict[tuple[str, str], list[float]] = {}

    def write(self, *, stage: str, reason: str, raw: bytes | None = None,
              event: Mapping[str, Any] | None = None, collector: str = "", source: str = "",
              detail: str = "") -> None:
        """Record one undeliverable item and count it as dropped."""
        entry: dict[str, Any] = {
            "time": time.time(),
            "stage": stage,
            "reason": reason,
            "collector": collector,
            "source": source,
            "detail": detail[:2000],
        }
        if raw is not None:
            entry["raw_b64"] = base64.b64encode(raw).decode("ascii")
            entry["raw_bytes"] = len(raw)
        if event is not None:
            entry["event"] = event
        line = orjson.dumps(entry, default=str) + b"\n"
        with self._lock:
            fh = self._open()
            fh.write(line)
            fh.flush()
            if fh.tell() >= self.max_file_bytes:
                self._rotate()
        metrics.EVENTS_DROPPED.labels(stage, reason).inc()
        metrics.DEAD_LETTERS.labels(stage).inc()
        self._log(stage, reason, collector, source, detail)

    def _log(self, stage: str, reason: str, collector: str, source: str, detail: str) -> None:
        """One warning per (stage, reason) every LOG_INTERVAL_SECS, saying how many more
        were dead-lettered meanwhile: whoever floods socd with garbage must not flood
        the journal too (every record is still counted and written to the file)."""
        now = time.monotonic()
        key = (stage, reason)
        window = self._quiet.get(key)
        if window is not None and now - window[0] < LOG_INTERVAL_SECS:
            window[1] += 1
            return
        suppressed = int(window[1]) if window is not None else 0
        if window is None and len(self._quiet) >= _MAX_LOG_KEYS:
            self._quiet.clear()
        self._quiet[key] = [now, 0]
        log.warning("record dead-lettered", stage=stage, reason=reason, collector=collector,
                    source=source, detail=detail[:200], file=self.path,
                    **({"more_since_last_log": suppressed} if suppressed else {}))

    def _open(self) -> Any:
        if self._fh is None:
            # raw input may hold credentials and personal data: 0640 whatever the umask
            self._fh = open_private(self.path)
        return self._fh

    def _rotate(self) -> None:
        self._fh.close()
        self._fh = None
        stamp = time.strftime("%Y%m%dT%H%M%S")
        # A sequence number keeps two rotations within one second from overwriting
        # each other; fixed width keeps the names in chronological order.
        prefix = f"dead-letter-{stamp}-"
        seqs = [int(f[len(prefix):].split(".")[0]) for f in os.listdir(self.directory)
                if f.startswith(prefix) and f[len(prefix):].split(".")[0].isdigit()]
        seq = max(seqs, default=-1) + 1
        os.replace(self.path, os.path.join(self.directory, f"{prefix}{seq:04d}.ndjson"))
        rotated = sorted(f for f in os.listdir(self.directory) if f.startswith("dead-letter-"))
        for old in rotated[: max(0, len(rotated) - self.max_files)]:
            os.unlink(os.path.join(self.directory, old))

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None


def read(path: str) -> list[dict[str, Any]]:
    """Parse a dead-letter file (tests, `socd` tooling), decoding the raw bytes."""
    out = []
    with open(path, "rb") as fh:
        for line in fh:
            entry = orjson.loads(line)
            if "raw_b64" in entry:
                entry["raw"] = base64.b64decode(entry["raw_b64"])
            out.append(entry)
    return out
