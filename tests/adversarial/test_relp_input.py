"""Hostile input on a RELP listener (``protocol: relp``): garbage, a huge DATALEN,
oversize frames, unknown commands, slow senders and connection floods never stop
the collector, are counted, and leave it serving real RELP sessions.

A real listener (the syslog collector on a loopback port) and real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path

from socd import metrics
from tests.integration.test_syslog_collector import Received, dropped, port_of, running

OFFER = b"relp_version=0\nrelp_software=test\ncommands=syslog"
OPEN = b"1 open %d %s\n" % (len(OFFER), OFFER)


def errors(collector: str, reason: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "socd_errors_total", {"component": f"collector/{collector}", "error_type": reason})
    return value or 0.0


async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def answers(reader: asyncio.StreamReader, count: int) -> list[bytes]:
    """``count`` RELP answers (``TXNR rsp DATALEN [SP DATA] LF``), each whole."""
    out = []
    async with asyncio.timeout(10):
        for _ in range(count):
            head = await reader.readuntil(b" rsp ")
            length = b""
            while (c := await reader.readexactly(1)).isdigit():
                length += c
            rest = await reader.readexactly(int(length) + 1) if c == b" " else b""
            out.append(head + length + c + rest)
    return out


async def closed(reader: asyncio.StreamReader) -> bytes:
    """Read until the server closes; returns what it sent."""
    async with asyncio.timeout(10):
        return await reader.read()


async def good_session(port: int, received: Received, tag: bytes) -> None:
    """A well-behaved client still gets its messages answered and delivered."""
    reader, writer = await connect(port)
    before = len(received.records)
    msgs = [b"<13>1 - host app - - - %s %d" % (tag, i) for i in range(3)]
    writer.write(OPEN + b"".join(b"%d syslog %d %s\n" % (i + 2, len(m), m)
                                 for i, m in enumerate(msgs)))
    got = await answers(reader, 4)
    assert got[0].startswith(b"1 rsp ")
    assert b"200 OK\nrelp_version=0" in got[0]
    assert got[1:] == [b"2 rsp 6 200 OK\n", b"3 rsp 6 200 OK\n", b"4 rsp 6 200 OK\n"]
    writer.write(b"5 close 0\n")
    assert await closed(reader) == b"5 rsp 0\n"
    writer.close()
    await received.wait_for(before + 3)
    assert [r.data for r in received.records[-3:]] == msgs


async def test_garbage_and_bad_frames_are_counted_and_close_the_session(
        tmp_path: Path) -> None:
    received = Received()
    listeners = [{"protocol": "relp", "host": "127.0.0.1", "port": 0}]
    async with running(tmp_path, listeners, received) as (collector, _dl):
        port = port_of(collector, "relp")
        before = dropped("framing_error")
        for garbage in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\x16\x03\x01\x02\x00\x01",
                        OPEN + b"2 syslog 3 abcdef\n", b"1 syslog 5\n",
                        b"9" * 10 + b" syslog 1 a\n", b"\x00" * 4096):
            reader, writer = await connect(port)
            writer.write(garbage)
            sent_back = await closed(reader)
            assert b"rsp 6 200 OK" not in sent_back, (garbage, sent_back)
            writer.close()
        assert dropped("framing_error") - before == 6
        assert errors(collector.name, "relp_framing_error") >= 6
        await good_session(port, received, b"after-garbage")



async def test_huge_datalen_and_oversize_frames_are_bounded_and_answered(
        tmp_path: Path) -> None:
    received = Received()
    listeners = [{"protocol": "relp", "host": "127.0.0.1", "port": 0}]
    async with running(tmp_path, listeners, received,
                       max_message_bytes=1024) as (collector, dl):
        port = port_of(collector, "relp")
        oversize, truncated = dropped("oversize"), dropped("truncated_frame")
        reader, writer = await connect(port)
        writer.write(OPEN)
        await answers(reader, 1)
        # 2 MiB announced and sent: skipped as it arrives, answered 500, dead-lettered.
        writer.write(b"2 syslog 2097152 ")
        for _ in range(32):
            writer.write(b"z" * 65536)
            await writer.drain()
        writer.write(b"\n3 syslog 5 small\n")
        assert await answers(reader, 2) == [b"2 rsp 21 500 message too large\n",
                                            b"3 rsp 6 200 OK\n"]
        assert dropped("oversize") - oversize == 1
        # The largest DATALEN RELP allows, then the sender gives up half way.
        writer.write(b"4 syslog 999999999 " + b"y" * 100_000)
        await writer.drain()
        writer.close()
        await asyncio.sleep(0.3)
        assert dropped("truncated_frame") - truncated == 1
        await received.wait_for(1)
        assert [r.data for r in received.records] == [b"small"]
        await good_session(port, received, b"after-oversize")


async def test_unknown_commands_and_syslog_before_open_get_500(tmp_path: Path) -> None:
    received = Received()
    listeners = [{"protocol": "relp", "host": "127.0.0.1", "port": 0}]
    async with running(tmp_path, listeners, received) as (collector, _dl):
        port = port_of(collector, "relp")
        reader, writer = await connect(port)
        writer.write(b"1 syslog 3 abc\n2 starttls 0\n")
        assert await answers(reader, 2) == [b"1 rsp 20 500 session not open\n",
                                            b"2 rsp 28 500 unknown command starttls\n"]
        writer.write(OPEN.replace(b"1 open", b"3 open") + b"4 syslog 3 def\n5 close 0\n")
        got = await answers(reader, 3)
        assert got[1:] == [b"4 rsp 6 200 OK\n", b"5 rsp 0\n"]
        assert await closed(reader) == b""
        writer.close()
        assert errors(collector.name, "relp_unknown_command") == 1
        assert errors(collector.name, "relp_not_open") == 1
        await received.wait_for(1)
        assert [r.data for r in received.records] == [b"def"]


async def test_slowloris_is_closed_even_while_it_trickles(tmp_path: Path) -> None:
    received = Received()
    listeners = [{"protocol": "relp", "host": "127.0.0.1", "port": 0}]
    async with running(tmp_path, listeners, received, idle_timeout_secs=1.0,
                       max_connections_per_ip=4) as (collector, _dl):
        port = port_of(collector, "relp")
        loop = asyncio.get_running_loop()
        clients = [await connect(port) for _ in range(4)]
        # A fifth connection from the same address is refused and counted.
        refused = await connect(port)
        assert await closed(refused[0]) == b""
        refused[1].close()
        assert errors(collector.name, "too_many_from_address") == 1
        started = loop.time()
        frame = OPEN + b"2 syslog 100 " + b"s" * 100 + b"\n"
        for i in range(len(frame)):  # one byte every 0.2 s: each read is "recent"
            for _, writer in clients:
                with contextlib.suppress(ConnectionError):
                    writer.write(frame[i:i + 1])
            await asyncio.sleep(0.2)
            if all(reader.at_eof() for reader, _ in clients):
                break
            for reader, _ in clients:
                with contextlib.suppress(TimeoutError, ConnectionError):
                    async with asyncio.timeout(0.001):
                        await reader.read(4096)
        elapsed = loop.time() - started
        assert elapsed < 3.5, f"slow senders held their connections for {elapsed:.1f} s"
        for _, writer in clients:
            writer.close()
        assert errors(collector.name, "relp_timeout") >= 4
        await asyncio.sleep(0.1)
        assert collector.connections == 0
        await good_session(port, received, b"after-slowloris")


async def test_a_client_that_never_reads_answers_is_bounded(tmp_path: Path) -> None:
    received = Received()
    listeners = [{"protocol": "relp", "host": "127.0.0.1", "port": 0}]
    async with running(tmp_path, listeners, received, relp_window_frames=8,
                       idle_timeout_secs=1.0) as (collector, _dl):
        port = port_of(collector, "relp")
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock)
        total = 500_000  # 8 MiB of frames, more answers than the socket buffers hold
        writer.write(OPEN + b"".join(b"%d syslog 1 a\n" % i for i in range(2, total + 2)))
        with contextlib.suppress(ConnectionError, TimeoutError):
            async with asyncio.timeout(10):
                await writer.drain()
        await asyncio.sleep(1.5)
        # The answers filled both socket buffers (the kernel's, bounded by tcp_wmem),
        # socd stopped reading once a window was unanswered and closed the session
        # after idle_timeout_secs.
        assert collector.connections == 0
        assert len(received.records) < total, len(received.records)
        assert errors(collector.name, "relp_timeout") == 1
        writer.transport.abort()
        await good_session(port, received, b"after-deaf-client")
