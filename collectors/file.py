"""The ``file`` collector: reads files line by line and hands each line to a decoder.

In ``oneshot`` mode every matching file is read once from the start (``.gz``
files are decompressed) and the collector then finishes; this is how the
embedded default replays its sample data and how old logs are imported.
"""

from __future__ import annotations

import glob
import gzip
import os
import time
from typing import IO, Literal

import structlog
from pydantic import Field

from socd import metrics
from socd.config import CollectorConfig, resolve_path
from socd.plugins import Emit, PluginContext, RawRecord

log = structlog.get_logger("socd.collectors.file")


class FileCollector:
    """Reads JSON-lines or text files; one record per non-empty line."""

    class Config(CollectorConfig):
        type: Literal["file"]
        paths: list[str] = Field(min_length=1, description="Files or glob patterns, relative "
                                 "to the config file's folder.")
        mode: Literal["oneshot"] = Field("oneshot", description="`oneshot`: read each file "
                                         "once and finish.")
        max_line_bytes: int = Field(1024 * 1024, ge=256,
                                    description="Longer lines are dead-lettered.")

    def __init__(self, config: Config, ctx: PluginContext) -> None:
        self.name = ctx.name
        self.config = config
        self.ctx = ctx
        self._ready = False
        metrics.init_collector(self.name)

    @property
    def ready(self) -> bool:
        return self._ready

    def files(self) -> list[str]:
        found: list[str] = []
        for pattern in self.config.paths:
            full = resolve_path(self.ctx.config_dir, pattern)
            matches = sorted(glob.glob(full)) if glob.has_magic(full) else [full]
            found.extend(m for m in matches if os.path.isfile(m))
        return found

    async def run(self, emit: Emit) -> None:
        files = self.files()
        if not files:
            log.warning("no file matches the configured paths", collector=self.name,
                        paths=self.config.paths)
        self._ready = True
        metrics.COMPONENT_UP.labels("collector", self.name).set(1)
        for path in files:
            await self._read(path, emit)
        log.info("files read", collector=self.name, files=len(files))

    async def _read(self, path: str, emit: Emit) -> None:
        limit = self.config.batch_max_events
        max_bytes = self.config.batch_max_bytes
        size = 0
        max_line = self.config.max_line_bytes
        batch: list[RawRecord] = []
        opener = gzip.open if path.endswith(".gz") else open
        fh: IO[bytes]
        with opener(path, "rb") as fh:
            now = time.time()
            for line in fh:
                line = line.rstrip(b"\r\n")
                if not line.strip():
                    continue
                if len(line) > max_line:
                    metrics.EVENTS_RECEIVED.labels(self.name).inc()
                    self.ctx.dead_letter.write(stage="collect", reason="oversize", raw=line,
                                               collector=self.name, source=path)
                    continue
                batch.append(RawRecord(line, self.config.decoder, self.name, path, now))
                size += len(line)
                if len(batch) >= limit or size >= max_bytes:
                    await emit(batch, None)
                    batch = []
                    size = 0
                    now = time.time()
        if batch:
            await emit(batch, None)
