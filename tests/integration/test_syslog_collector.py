"""The syslog collector with real peers: util-linux `logger`, rsyslog over TLS, raw sockets.

The collector runs in-process with an ``emit`` that keeps the records; records are
decoded with the real ``syslog`` decoder. Dead letters are read back from the file.
Missing `logger`, `rsyslogd` or `openssl` make these tests FAIL (see
deploy/dev/apt-packages.txt; `scripts/services.sh up` installs them).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from socd import metrics
from socd.app.deadletter import DeadLetter
from socd.collectors.syslog import SyslogCollector
from socd.decoders.syslog import SyslogDecoder
from socd.errors import ListenError
from socd.plugins import PluginContext, RawRecord
from tests.conftest import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

DECODER = SyslogDecoder.create("syslog")


def need(command: str) -> str:
    path = shutil.which(command) or (f"/usr/sbin/{command}"
                                     if os.path.exists(f"/usr/sbin/{command}") else None)
    if path is None:
        pytest.fail(f"`{command}` not found: run `bash scripts/services.sh up` (installs the "
                    "packages in deploy/dev/apt-packages.txt)", pytrace=False)
    return path


class Received:
    def __init__(self) -> None:
        self.records: list[RawRecord] = []
        self.changed = asyncio.Event()
        self.gate: asyncio.Event | None = None
        self.calls = 0

    async def emit(self, records: list[RawRecord], ack: Any = None) -> None:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        self.records.extend(records)
        self.changed.set()

    async def wait_for(self, n: int, within: float = 30) -> None:
        async def loop() -> None:
            while len(self.records) < n:
                self.changed.clear()
                await self.changed.wait()
        try:
            await asyncio.wait_for(loop(), within)
        except TimeoutError:
            raise AssertionError(f"expected {n} records, got {len(self.records)}") from None

    def events(self) -> list[dict[str, Any]]:
        out = []
        for record in self.records:
            result = DECODER.decode(record)
            assert not result.failures, (record, result.failures)
            out.extend(result.events)
        return out


@contextlib.asynccontextmanager
async def running(tmp_path: Path, listeners: list[dict[str, Any]], received: Received,
                  **options: Any) -> AsyncIterator[tuple[SyslogCollector, DeadLetter]]:
    dl = DeadLetter(str(tmp_path / "dead"))
    name = f"syslog{os.urandom(4).hex()}"
    config = SyslogCollector.Config.model_validate(
        {"type": "syslog", "listeners": listeners, **options})
    collector = SyslogCollector(config, PluginContext(name=name, dead_letter=dl,
                                                      config_dir=str(tmp_path)))
    task = asyncio.create_task(collector.run(received.emit))
    try:
        async def ready() -> None:
            while not collector.ready:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        await asyncio.wait_for(ready(), 10)
        yield collector, dl
        assert not task.done(), "the collector stopped"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        dl.close()


def port_of(collector: SyslogCollector, protocol: str) -> int:
    return next(p for proto, _, p in collector.addresses if proto == protocol)


def dead_letters(dl: DeadLetter) -> list[dict[str, Any]]:
    path = Path(dl.path)
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def dropped(reason: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "socd_events_dropped_total", {"stage": "collect", "reason": reason})
    return value or 0.0


async def logger(*args: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        need("logger"), *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()


async def wait_until(predicate: Any, within: float, what: str) -> None:
    async def loop() -> None:
        while not predicate():
            await asyncio.sleep(0.02)
    try:
        await asyncio.wait_for(loop(), within)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


# -- logger: UDP and TCP, RFC 3164 and RFC 5424 -----------------------------------------

@pytest.mark.parametrize(("transport", "fmt", "extra"), [
    ("--udp", "--rfc3164", []),
    ("--udp", "--rfc5424", []),
    ("--tcp", "--rfc3164", []),
    ("--tcp", "--rfc5424", []),
    ("--tcp", "--rfc5424", ["--octet-count"]),
    ("--tcp", "--rfc3164", ["--octet-count"]),
])
async def test_logger_formats(tmp_path: Path, transport: str, fmt: str,
                              extra: list[str]) -> None:
    received = Received()
    listeners = [{"protocol": "udp", "host": "127.0.0.1", "port": free_port()},
                 {"protocol": "tcp", "host": "127.0.0.1", "port": free_port()}]
    async with running(tmp_path, listeners, received) as (collector, _dl):
        port = port_of(collector, "udp" if transport == "--udp" else "tcp")
        lines = [f"Failed password for invalid user u{i} from 203.0.113.{i} port {4000 + i} "
                 "ssh2" for i in range(1, 21)]
        msgfile = tmp_path / "lines.txt"
        msgfile.write_text("\n".join(lines) + "\n")
        await logger("--server", "127.0.0.1", "--port", str(port), transport, fmt, *extra,
                     "-t", "sshd", "--id=4242", "-p", "authpriv.info", "-f", str(msgfile))
        await received.wait_for(20)
        await asyncio.sleep(0.2)  # nothing extra may arrive
        events = received.events()
    assert len(events) == 20
    scheme = "udp" if transport == "--udp" else "tcp"
    for i, ev in enumerate(events, start=1):
        assert ev["socd"]["source"].startswith(f"{scheme}://127.0.0.1:")
        assert ev["log"]["syslog"]["facility"]["name"] == "authpriv"
        assert ev["log"]["syslog"]["severity"]["name"] == "informational"
        assert ev["process"] == {"name": "sshd", "pid": 4242}
        assert ev["event"]["action"] == "ssh_login"
        assert ev["event"]["outcome"] == "failure"
        assert ev["user"]["name"] == f"u{i}"
        assert ev["source"] == {"ip": f"203.0.113.{i}", "port": 4000 + i}
        assert ev["host"]["hostname"]
        if fmt == "--rfc5424":
            assert ev["log"]["syslog"]["version"] == 1
            assert "timeQuality" in ev["log"]["syslog"]["structured_data"]


async def test_logger_rfc5424_structured_data_udp(tmp_path: Path) -> None:
    received = Received()
    async with running(tmp_path, [{"protocol": "udp", "host": "127.0.0.1", "port": 0}],
                       received) as (collector, _dl):
        await logger("--server", "127.0.0.1", "--port", str(port_of(collector, "udp")),
                     "--udp", "--rfc5424", "--msgid", "LOGIN", "--sd-id", "soc@32473",
                     "--sd-param", 'unit="So TT&TT"', "--sd-param", 'level="3"',
                     "-t", "webapp", "Đăng nhập thất bại")
        await received.wait_for(1)
        ev = received.events()[0]
    assert ev["message"] == "Đăng nhập thất bại"
    assert ev["log"]["syslog"]["msgid"] == "LOGIN"
    assert ev["log"]["syslog"]["structured_data"]["soc@32473"] == {
        "unit": "So TT&TT", "level": "3"}


# -- TLS with a real rsyslog --------------------------------------------------------------

def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run([need("openssl"), *args], cwd=cwd, check=True, capture_output=True)


def make_pki(d: Path) -> None:
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
             "ca.pem", "-days", "2", "-subj", "/CN=socd-test-ca", cwd=d)
    for name, san in (("server", "DNS:localhost,IP:127.0.0.1"),
                      ("client", "DNS:rsyslog-client")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
                 f"{name}.csr", "-subj", f"/CN={san.split(',')[0][4:]}", cwd=d)
        (d / f"{name}.ext").write_text(f"subjectAltName={san}\n")
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile",
                 f"{name}.ext", cwd=d)


RSYSLOG_CONF = """
global(workDirectory="{work}"
       defaultNetstreamDriver="gtls"
       defaultNetstreamDriverCAFile="{pki}/ca.pem"
       defaultNetstreamDriverCertFile="{pki}/client.pem"
       defaultNetstreamDriverKeyFile="{pki}/client.key")
module(load="imtcp")
input(type="imtcp" address="127.0.0.1" port="{in_port}")
action(type="omfwd" target="127.0.0.1" port="{out_port}" protocol="tcp"
       StreamDriver="gtls" StreamDriverMode="1" StreamDriverAuthMode="x509/name"
       StreamDriverPermittedPeers="localhost"
       TCP_Framing="{framing}" template="RSYSLOG_SyslogProtocol23Format")
"""


@pytest.mark.parametrize("framing", ["octet-counted", "traditional"])
async def test_rsyslog_tls_forwarding(tmp_path: Path, framing: str) -> None:
    rsyslogd = need("rsyslogd")
    pki = tmp_path / "pki"
    pki.mkdir()
    make_pki(pki)
    received = Received()
    listeners = [{"protocol": "tls", "host": "127.0.0.1", "port": free_port(),
                  "tls": {"cert_file": "pki/server.pem", "key_file": "pki/server.key",
                          "ca_file": "pki/ca.pem", "require_client_cert": True}}]
    async with running(tmp_path, listeners, received) as (collector, _dl):
        work = tmp_path / "rsyslog"
        work.mkdir()
        in_port = free_port()
        conf = tmp_path / "rsyslog.conf"
        conf.write_text(RSYSLOG_CONF.format(work=work, pki=pki, in_port=in_port,
                                            out_port=port_of(collector, "tls"),
                                            framing=framing))
        log_file = open(tmp_path / "rsyslogd.out", "wb")  # noqa: SIM115, ASYNC230
        argv = [rsyslogd, "-n", "-f", str(conf), "-i", str(tmp_path / "rsyslogd.pid")]
        proc = subprocess.Popen(argv, stdout=log_file,  # noqa: ASYNC220 - a daemon
                                stderr=subprocess.STDOUT)
        try:
            def up() -> bool:
                assert proc.poll() is None, (tmp_path / "rsyslogd.out").read_text()
                with contextlib.suppress(OSError), socket.create_connection(
                        ("127.0.0.1", in_port), timeout=0.5):
                    return True
                return False
            await wait_until(up, 30, "rsyslogd to listen")
            msgfile = tmp_path / "lines.txt"
            msgfile.write_text("".join(
                f"Accepted publickey for admin{i} from 10.10.20.{i} port {5000 + i} ssh2\n"
                for i in range(50)))
            await logger("--server", "127.0.0.1", "--port", str(in_port), "--tcp",
                         "--rfc5424", "-t", "sshd", "--id=77", "-p", "auth.notice",
                         "-f", str(msgfile))
            await received.wait_for(50, within=60)
            await asyncio.sleep(0.3)
        finally:
            proc.terminate()
            proc.wait(10)
            log_file.close()
        events = received.events()
    assert len(events) == 50
    assert {e["user"]["name"] for e in events} == {f"admin{i}" for i in range(50)}
    for ev in events:
        assert ev["socd"]["source"].startswith("tls://127.0.0.1:")
        assert ev["event"]["outcome"] == "success"
        assert ev["process"]["name"] == "sshd"
        assert ev["log"]["syslog"]["facility"]["name"] == "auth"


async def test_tls_client_without_certificate_is_refused(tmp_path: Path) -> None:
    import ssl

    pki = tmp_path / "pki"
    pki.mkdir()
    make_pki(pki)
    received = Received()
    listeners = [{"protocol": "tls", "host": "127.0.0.1", "port": 0,
                  "tls": {"cert_file": "pki/server.pem", "key_file": "pki/server.key",
                          "ca_file": "pki/ca.pem", "require_client_cert": True}}]
    async with running(tmp_path, listeners, received) as (collector, _dl):
        ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        port = port_of(collector, "tls")
        with contextlib.suppress(ssl.SSLError, ConnectionError, OSError):
            _reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx,
                                                            server_hostname="localhost")
            writer.write(b"<13>Oct 11 22:14:15 h app: should not arrive\n")
            await writer.drain()
            await asyncio.sleep(0.3)
            writer.close()
        ctx.load_cert_chain(str(pki / "client.pem"), str(pki / "client.key"))
        _reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx,
                                                        server_hostname="localhost")
        writer.write(b"<13>Oct 11 22:14:15 h app: with a certificate\n")
        await writer.drain()
        writer.close()
        await received.wait_for(1)
        await asyncio.sleep(0.2)
    assert [r.data for r in received.records] == [b"<13>Oct 11 22:14:15 h app: with a certificate"]


# -- garbage, limits, allowlist ---------------------------------------------------------

async def test_garbage_never_stops_the_collector(tmp_path: Path) -> None:
    received = Received()
    listeners = [{"protocol": "udp", "host": "127.0.0.1", "port": 0},
                 {"protocol": "tcp", "host": "127.0.0.1", "port": 0, "framing": "newline"},
                 {"protocol": "tcp", "host": "127.0.0.1", "port": 0,
                  "framing": "octet_counting"},
                 {"protocol": "tcp", "host": "127.0.0.1", "port": 0, "framing": "auto"}]
    before = {r: dropped(r) for r in ("oversize", "truncated_frame", "framing_error")}
    async with running(tmp_path, listeners, received, max_message_bytes=4096) as (c, dl):
        udp = port_of(c, "udp")
        newline, octet, auto = (p for proto, _, p in c.addresses if proto == "tcp")

        def blast() -> None:
            # Random bytes with no newline: ends up as oversize chunks, then EOF.
            with socket.create_connection(("127.0.0.1", newline)) as s:
                s.sendall(os.urandom(100_000).replace(b"\n", b"x"))
            # A 10 MB line followed by a valid one on the same connection.
            with socket.create_connection(("127.0.0.1", newline)) as s:
                s.sendall(b"<13>" + b"A" * 10_000_000 + b"\n<13>Oct 11 22:14:15 h app: after\n")
            # Invalid UTF-8 and binary noise, newline-framed.
            with socket.create_connection(("127.0.0.1", auto)) as s:
                s.sendall(b"<13>Oct 11 22:14:15 h app: caf\xe9\n\xff\xfe\x00\x01\n")
            # Octet counting: closed in the middle of a frame.
            with socket.create_connection(("127.0.0.1", octet)) as s:
                s.sendall(b"100 <13>Oct 11 22:14:15 h app: cut short")
            # Octet counting: a bogus length, then newline-framed text.
            with socket.create_connection(("127.0.0.1", octet)) as s:
                s.sendall(b"12x4 junk\n<13>Oct 11 22:14:15 h app: resynced\n")
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.sendto(os.urandom(1000), ("127.0.0.1", udp))
                u.sendto(b"<13>" + b"B" * 5000, ("127.0.0.1", udp))
                u.sendto(b"\xff\xfe garbage \x00", ("127.0.0.1", udp))

        await asyncio.to_thread(blast)

        def good_count() -> int:
            return sum(1 for r in received.records if b"h app:" in r.data)
        await wait_until(lambda: good_count() == 3, 30, "the valid lines")
        # Still alive: a valid message on every listener.
        await logger("--server", "127.0.0.1", "--port", str(udp), "--udp", "alive-udp")
        for port in (newline, octet, auto):
            extra = ["--octet-count"] if port == octet else []
            await logger("--server", "127.0.0.1", "--port", str(port), "--tcp", *extra,
                         f"alive-{port}")
        await wait_until(lambda: sum(1 for r in received.records if b"alive-" in r.data) == 4,
                         30, "the alive messages")
        letters = dead_letters(dl)
    reasons = [e["reason"] for e in letters]
    # One each: the newline-less random blob, the 10 MB line, the 5000-byte datagram.
    assert reasons.count("oversize") == 3
    assert "truncated_frame" in reasons
    assert "framing_error" in reasons
    assert all(e["stage"] == "collect" for e in letters)
    assert all(e["raw_bytes"] <= 4096 for e in letters)
    cut = next(e for e in letters if e["reason"] == "truncated_frame")
    assert base64.b64decode(cut["raw_b64"]) == b"100 <13>Oct 11 22:14:15 h app: cut short"
    assert dropped("oversize") - before["oversize"] == reasons.count("oversize")
    assert dropped("truncated_frame") - before["truncated_frame"] == 1
    # Decoding: the binary noise is a decode failure, the Latin-1 line an event.
    results = [DECODER.decode(r) for r in received.records]
    failures = [f.reason for res in results for f in res.failures]
    assert set(failures) <= {"invalid_utf8", "invalid_syslog"}
    assert failures  # the UDP noise and the \xff\xfe line
    cafe = [e for res in results for e in res.events if e["message"].startswith("caf")]
    assert cafe
    assert "invalid_utf8" in cafe[0]["tags"]


async def test_allowed_senders(tmp_path: Path) -> None:
    received = Received()
    listeners = [{"protocol": "udp", "host": "0.0.0.0", "port": 0},  # noqa: S104
                 {"protocol": "tcp", "host": "0.0.0.0", "port": 0}]  # noqa: S104
    before = dropped("sender_not_allowed")
    async with running(tmp_path, listeners, received,
                       allowed_senders=["127.0.0.1/32", "10.0.0.0/8"]) as (c, dl):
        udp, tcp = port_of(c, "udp"), port_of(c, "tcp")

        def send() -> None:
            for src in ("127.0.0.2", "127.0.0.1"):
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                    u.bind((src, 0))
                    u.sendto(f"<13>Oct 11 22:14:15 h app: udp from {src}".encode(),
                             ("127.0.0.1", udp))
                s = socket.socket()
                s.bind((src, 0))
                s.connect(("127.0.0.1", tcp))
                with contextlib.suppress(OSError):
                    s.sendall(f"<13>Oct 11 22:14:15 h app: tcp from {src}\n".encode())
                s.close()
        await asyncio.to_thread(send)
        await received.wait_for(2)
        await wait_until(lambda: dropped("sender_not_allowed") - before >= 2, 10,
                         "the refused senders to be counted")
        await asyncio.sleep(0.2)
        letters = dead_letters(dl)
    assert sorted(r.data.decode().split()[-1] for r in received.records) == [
        "127.0.0.1", "127.0.0.1"]
    refused = [e for e in letters if e["reason"] == "sender_not_allowed"]
    assert len(refused) == 2
    assert {e["source"].split("://")[0] for e in refused} == {"udp", "tcp"}
    assert all("127.0.0.2" in e["source"] for e in refused)
    assert dropped("sender_not_allowed") - before == 2


async def test_tcp_backpressure_and_udp_overflow(tmp_path: Path) -> None:
    received = Received()
    received.gate = asyncio.Event()
    listeners = [{"protocol": "udp", "host": "127.0.0.1", "port": 0},
                 {"protocol": "tcp", "host": "127.0.0.1", "port": 0}]
    before = dropped("udp_overflow")
    async with running(tmp_path, listeners, received, batch_max_events=10,
                       udp_buffer_records=100) as (c, dl):
        tcp, udp = port_of(c, "tcp"), port_of(c, "udp")
        total = 250_000  # ~42 MB: more than the kernel's socket buffers can hold
        line = b"<13>Oct 11 22:14:15 h app: backpressure %06d " + b"x" * 150 + b"\n"
        done = threading.Event()

        def sender() -> None:
            with socket.create_connection(("127.0.0.1", tcp)) as s:
                s.sendall(b"".join(line % i for i in range(total)))
            done.set()

        thread = threading.Thread(target=sender, daemon=True)
        thread.start()
        await wait_until(lambda: received.calls >= 1, 10, "the first emit")
        await asyncio.sleep(0.5)
        # emit is blocked: the collector stopped reading, so 42 MB cannot all be sent.
        assert not done.is_set()
        assert received.records == []
        # UDP meanwhile: the bounded buffer fills, the rest is dead-lettered.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            for i in range(1000):
                u.sendto(b"<13>Oct 11 22:14:15 h app: udp %d" % i, ("127.0.0.1", udp))
        await wait_until(lambda: dropped("udp_overflow") - before >= 900, 10,
                         "the UDP overflow drops")
        received.gate.set()
        await received.wait_for(total + 100, within=60)
        await asyncio.to_thread(thread.join, 30)
        assert done.is_set()
        await asyncio.sleep(0.2)
    tcp_records = [r for r in received.records if r.source.startswith("tcp://")]
    udp_records = [r for r in received.records if r.source.startswith("udp://")]
    assert len(tcp_records) == total
    assert [int(r.data.split()[6]) for r in tcp_records] == list(range(total))
    assert len(udp_records) == 100
    assert dropped("udp_overflow") - before == 900


async def test_tcp_reads_on_only_once_the_batch_is_handed_over(tmp_path: Path) -> None:
    """A connection reads nothing more until ``emit`` took what it read (with the
    intake journal: fsync'd), even when the batch is far from full: what socd read
    is never only in its memory when it crashes."""
    received = Received()
    received.gate = asyncio.Event()
    listeners = [{"protocol": "tcp", "host": "127.0.0.1", "port": 0}]
    async with running(tmp_path, listeners, received) as (c, _dl):
        line = b"<13>Oct 11 22:14:15 h app: held %d\n"
        with socket.create_connection(("127.0.0.1", port_of(c, "tcp"))) as s:
            s.sendall(b"".join(line % i for i in range(5)))
            await wait_until(lambda: received.calls == 1, 10, "the first emit")
            s.sendall(b"".join(line % i for i in range(5, 10)))
            await asyncio.sleep(0.5)
            assert c._batch == []  # the second write was not read
            assert received.calls == 1
            received.gate.set()
            await received.wait_for(10)
    assert [r.data.split()[-1] for r in received.records] == [b"%d" % i for i in range(10)]
    assert received.calls == 2


async def test_bind_failure_is_clear(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        received = Received()
        dl = DeadLetter(str(tmp_path / "dead"))
        config = SyslogCollector.Config.model_validate(
            {"type": "syslog", "listeners": [{"protocol": "tcp", "host": "127.0.0.1",
                                              "port": port}]})
        collector = SyslogCollector(config, PluginContext(name="bindfail", dead_letter=dl))
        with pytest.raises(ListenError) as caught:
            await asyncio.wait_for(collector.run(received.emit), 10)
        # The message docs/sources/syslog.md promises, not asyncio's long text.
        assert str(caught.value) == (
            f"cannot listen on tcp://127.0.0.1:{port}: Address already in use")
        assert caught.value.hint is not None
        assert f"ss -ltnup 'sport = :{port}'" in caught.value.hint
        assert "collectors.bindfail.listeners[].port" in caught.value.hint
        assert not collector.ready
        dl.close()
