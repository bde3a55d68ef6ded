"""RELP server side for the syslog collector (``protocol: relp``).

RELP (Reliable Event Logging Protocol, rsyslog's ``omrelp``/``imrelp``) adds
application-level acknowledgements to syslog over TCP: the sender keeps every
frame until the server answers it, and sends again whatever was not answered
when the connection broke. socd answers a ``syslog`` frame only once the message
is in the intake journal (fsync'd), so a crash loses nothing a sender counted as
delivered; what was answered may be sent again (at least once).

Frames (https://github.com/rsyslog/librelp/blob/master/doc/relp.html)::

    TXNR SP COMMAND SP DATALEN [SP DATA] LF

``TXNR`` and ``DATALEN`` are 1-9 digits, ``COMMAND`` 1-32 letters. The server
answers each frame with ``TXNR rsp DATALEN CODE SP TEXT``, in the order of the
frames, and sends ``0 serverclose 0`` when it stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import deque
from collections.abc import Callable
from typing import NamedTuple

import structlog

log = structlog.get_logger("socd.collectors.relp")

# TXNR SP COMMAND SP DATALEN, then SP (data follows) or LF (no data).
_HEADER = re.compile(rb"([0-9]{1,9}) ([a-zA-Z]{1,32}) ([0-9]{1,9})([ \n])")
# What a header may look like before it is complete (anything else is garbage).
_PREFIX = re.compile(rb"[0-9]{0,9}|[0-9]{1,9} [a-zA-Z]{0,32}|[0-9]{1,9} [a-zA-Z]{1,32} [0-9]{0,9}")
HEADER_MAX = 9 + 1 + 32 + 1 + 9 + 1

OPEN_OFFER = b"200 OK\nrelp_version=0\nrelp_software=socd\ncommands=syslog"


class RelpFrame(NamedTuple):
    txnr: int
    command: str
    data: bytes  # at most the parser's max_data bytes
    oversize: int  # the announced DATALEN when it exceeded max_data (data truncated), else 0


class RelpParser:
    """Incremental RELP frame parser with bounded memory.

    :meth:`feed` returns the complete frames and, when the stream is not RELP (a
    bad header or trailer), an error text: the stream cannot be resynchronised, so
    the session ends. A frame whose DATALEN exceeds ``max_data`` keeps its first
    ``max_data`` bytes (to dead-letter them) and skips the rest as it arrives.
    """

    __slots__ = ("_buf", "_header", "_kept", "_kept_len", "_need", "max_data")

    def __init__(self, max_data: int) -> None:
        self.max_data = max_data
        self._buf = b""
        self._header: tuple[int, str, int] | None = None  # inside a frame's data/trailer
        self._need = 0
        self._kept: list[bytes] = []
        self._kept_len = 0

    @property
    def in_frame(self) -> bool:
        """Whether a frame has started and is not complete yet."""
        return self._header is not None or bool(self._buf)

    def feed(self, data: bytes) -> tuple[list[RelpFrame], str | None]:
        buf = self._buf + data if self._buf else data
        self._buf = b""
        frames: list[RelpFrame] = []
        pos, n = 0, len(buf)
        while pos < n:
            if self._header is None:
                match = _HEADER.match(buf, pos)
                if match is None:
                    rest = buf[pos:pos + HEADER_MAX]
                    if len(rest) >= HEADER_MAX or not _PREFIX.fullmatch(rest):
                        return frames, f"not a RELP frame header: {rest[:40]!r}"
                    self._buf = rest
                    break
                txnr, command, datalen, sep = match.groups()
                length = int(datalen)
                pos = match.end()
                if sep == b"\n":
                    if length:
                        return frames, f"frame {int(txnr)} announces {length} bytes but has none"
                    frames.append(RelpFrame(int(txnr), command.decode(), b"", 0))
                    continue
                self._header = (int(txnr), command.decode(), length)
                self._need = length
                self._kept, self._kept_len = [], 0
            if self._need:
                take = min(self._need, n - pos)
                room = self.max_data - self._kept_len
                if room > 0:
                    piece = buf[pos:pos + min(take, room)]
                    self._kept.append(piece)
                    self._kept_len += len(piece)
                self._need -= take
                pos += take
                if self._need or pos >= n:
                    break
            if buf[pos] != 0x0A:
                return frames, f"frame {self._header[0]} does not end with LF"
            pos += 1
            txnr_i, command_s, length = self._header
            self._header = None
            body = b"".join(self._kept)
            self._kept, self._kept_len = [], 0
            frames.append(RelpFrame(txnr_i, command_s, body,
                                    length if length > self.max_data else 0))
        return frames, None


def response(txnr: int, code: int, text: str, extra: bytes = b"") -> bytes:
    """``TXNR rsp DATALEN CODE SP TEXT[LF extra] LF``."""
    body = f"{code} {text}".encode() + (b"\n" + extra if extra else b"")
    return b"%d rsp %d %s\n" % (txnr, len(body), body)


SERVER_CLOSE = b"0 serverclose 0\n"

Submit = Callable[[list[bytes]], "asyncio.Future[None]"]
Drop = Callable[[str, bytes, str], None]


class _Answer:
    """One entry of a session's answer queue: bytes to send once ``done`` is done."""

    __slots__ = ("done", "frames", "payload")

    def __init__(self, payload: bytes, done: asyncio.Future[None] | None, frames: int) -> None:
        self.payload = payload
        self.done = done
        self.frames = frames


class RelpSession:
    """One RELP connection: reads frames, hands ``syslog`` messages to ``submit``
    (whose future completes once they are journaled) and answers in TXNR order.

    Bounded: at most ``window`` syslog frames unanswered (the session stops
    reading past it, so the sender's TCP window closes), one frame of at most
    ``max_data`` bytes, and a frame or an answer that takes longer than
    ``idle_timeout`` ends the session (slow senders, senders that do not read).
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                 submit: Submit, drop: Drop, count: Callable[[str], None], max_data: int,
                 window: int, idle_timeout: float, source: str) -> None:
        self.reader = reader
        self.writer = writer
        self.submit = submit
        self.drop = drop
        self.count = count
        self.parser = RelpParser(max_data)
        self.window = window
        self.idle_timeout = idle_timeout
        self.source = source
        self.opened = False
        self.closing = False
        self.unanswered = 0
        self._answers: deque[_Answer] = deque()
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._failed: str | None = None
        self._aborted = False

    async def run(self) -> None:
        writer_task = asyncio.create_task(self._answer_loop())
        try:
            await self._read_loop()
            # Answer what was read before ending (a client's close, or the end of
            # its stream): the answer loop stops once the queue is empty.
            self.closing = True
            self._wake.set()
            if not self._aborted:
                async with asyncio.timeout(self.idle_timeout):
                    await asyncio.shield(writer_task)
        except asyncio.CancelledError:
            # The collector stops: tell the sender (it resends what is unanswered).
            with contextlib.suppress(Exception):
                self.writer.write(SERVER_CLOSE)
            raise
        except TimeoutError:
            log.info("RELP session closed: answers not taken", source=self.source)
            self._abort()
        finally:
            writer_task.cancel()
            with contextlib.suppress(BaseException):
                await writer_task

    async def _read_loop(self) -> None:
        loop = asyncio.get_running_loop()
        frame_started = 0.0
        while not self.closing and self._failed is None:
            # A frame must arrive whole within idle_timeout of its first byte: a
            # sender trickling a byte at a time (slowloris) does not hold a slot.
            now = loop.time()
            deadline = (frame_started if self.parser.in_frame else now) + self.idle_timeout
            try:
                async with asyncio.timeout_at(deadline):
                    await self._room.wait()
                    data = await self.reader.read(65536)
            except TimeoutError:
                log.info("RELP session closed: idle, slow frame or unread answers",
                         source=self.source, idle_secs=self.idle_timeout)
                self._abort()
                return
            if not data:
                if self.parser.in_frame:
                    self.drop("truncated_frame", b"", "RELP connection closed inside a frame")
                return
            if not self.parser.in_frame:
                frame_started = loop.time()
            frames, error = self.parser.feed(data)
            self._handle(frames)
            if error is not None:
                self.drop("framing_error", data[:256], error)
                self.count("relp_framing_error")
                self.closing = True
                return

    def _abort(self) -> None:
        """Drop the connection at once, counted once. Not close(): it would wait for
        unsent answers to drain, which a sender that does not read never lets
        happen."""
        if self._aborted:
            return
        self._aborted = True
        self.closing = True
        self.count("relp_timeout")
        self.writer.transport.abort()

    def _handle(self, frames: list[RelpFrame]) -> None:
        messages: list[bytes] = []
        txnrs: list[int] = []
        for frame in frames:
            if frame.command == "syslog" and self.opened and not frame.oversize:
                messages.append(frame.data)
                txnrs.append(frame.txnr)
                continue
            self._submit(messages, txnrs)
            messages, txnrs = [], []
            self._command(frame)
            if self.closing:
                break
        self._submit(messages, txnrs)

    def _submit(self, messages: list[bytes], txnrs: list[int]) -> None:
        if not messages:
            return
        done = self.submit(messages)
        payload = b"".join(b"%d rsp 6 200 OK\n" % t for t in txnrs)
        self._queue(_Answer(payload, done, len(txnrs)))

    def _command(self, frame: RelpFrame) -> None:
        txnr, command = frame.txnr, frame.command
        if command == "open":
            self.opened = True
            self._queue(_Answer(b"%d rsp %d %s\n" % (txnr, len(OPEN_OFFER), OPEN_OFFER),
                                None, 0))
        elif command == "close":
            self._queue(_Answer(b"%d rsp 0\n" % txnr, None, 0))
            self.closing = True
        elif command == "syslog" and frame.oversize:
            self.drop("oversize", frame.data, f"RELP frame of {frame.oversize} bytes > "
                      f"{self.parser.max_data}")
            self._queue(_Answer(response(txnr, 500, "message too large"), None, 1))
        elif command == "syslog":
            self.count("relp_not_open")
            self._queue(_Answer(response(txnr, 500, "session not open"), None, 1))
        else:
            self.count("relp_unknown_command")
            self._queue(_Answer(response(txnr, 500, f"unknown command {command[:32]}"),
                                None, 0))

    def _queue(self, answer: _Answer) -> None:
        self._answers.append(answer)
        self.unanswered += answer.frames
        if self.unanswered >= self.window:
            self._room.clear()
        self._wake.set()

    async def _answer_loop(self) -> None:
        """Send the answers in order, each once its messages are journaled; a batch
        that could not be journaled ends the session unanswered (the sender sends
        it again)."""
        answers = self._answers
        while True:
            if not answers:
                if self.closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            answer = answers[0]
            if answer.done is not None and not answer.done.done():
                await asyncio.wait([answer.done])
            if answer.done is not None and (answer.done.cancelled()
                                            or answer.done.exception() is not None):
                self._failed = "not journaled"
                self.closing = True
                self.writer.transport.abort()
                return
            answers.popleft()
            # Everything ready in order goes out in one write.
            payload = [answer.payload]
            freed = answer.frames
            while answers and (answers[0].done is None or (
                    answers[0].done.done() and not answers[0].done.cancelled()
                    and answers[0].done.exception() is None)):
                nxt = answers.popleft()
                payload.append(nxt.payload)
                freed += nxt.frames
            self.writer.write(b"".join(payload))
            async with asyncio.timeout(self.idle_timeout):
                await self.writer.drain()
            self.unanswered -= freed
            if self.unanswered < self.window:
                self._room.set()
