"""The ``ndjson`` sink: one JSON event a line, to a file or stdout (debugging, tests)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence
from typing import IO, Literal

import orjson
from pydantic import Field

from socd.config import SinkConfig, resolve_path
from socd.errors import HealthCheckError, SinkError
from socd.event import Event
from socd.filemode import open_private
from socd.plugins import PluginContext


class NdjsonSink:
    """Appends events to ``path`` (``-`` is stdout), fsync'd per batch when asked."""

    class Config(SinkConfig):
        type: Literal["ndjson"]
        path: str = Field(description="File to append to, relative to state_dir; `-` for stdout.")
        fsync: bool = Field(False, description="fsync after every batch (durable, slower).")

    def __init__(self, config: Config, ctx: PluginContext) -> None:
        self.name = ctx.name
        self.config = config
        self.path = config.path if config.path == "-" else resolve_path(ctx.state_dir,
                                                                          config.path)
        self._fh: IO[bytes] | None = None

    async def start(self) -> None:
        if self.path == "-":
            self._fh = sys.stdout.buffer
            return
        # alerts are sensitive: 0640 in a 0750 folder whatever the umask (socd.filemode)
        self._fh = open_private(self.path)

    async def healthcheck(self) -> None:
        if self.path != "-" and not os.access(os.path.dirname(self.path) or ".", os.W_OK):
            raise HealthCheckError(f"cannot write to {self.path}")

    async def write(self, events: Sequence[Event]) -> None:
        if self._fh is None:
            raise SinkError("file not open")
        data = b"".join(orjson.dumps(e) + b"\n" for e in events)
        try:
            await asyncio.to_thread(self._append, data)
        except OSError as exc:
            raise SinkError(f"write to {self.path} failed: {exc}") from exc

    def _append(self, data: bytes) -> None:
        assert self._fh is not None
        self._fh.write(data)
        self._fh.flush()
        if self.config.fsync and self.path != "-":
            os.fsync(self._fh.fileno())

    async def close(self) -> None:
        if self._fh is not None and self.path != "-":
            self._fh.close()
        self._fh = None
