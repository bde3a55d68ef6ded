"""The syslog_cef sink against a real syslog receiver: socd's own syslog collector
(UDP, TCP with octet counting or newline framing, TLS with a CA made by openssl).

What arrives is decoded with socd's `cef` decoder and compared with the alerts sent;
a receiver that is down makes ``write`` raise a retryable SinkError, and the sink
reconnects once it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from socd.alerting.cef import SyslogCefSink
from socd.app.deadletter import DeadLetter
from socd.collectors.syslog import SyslogCollector
from socd.decoders.cef import CefDecoder
from socd.errors import SinkError
from socd.event import Event, fingerprint, normalize, set_severity
from socd.plugins import PluginContext, RawRecord
from socd.severity import Severity
from tests.conftest import free_port
from tests.integration.test_syslog_collector import make_pki

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

DECODER = CefDecoder(CefDecoder.Config(type="cef"), PluginContext(name="cef", dead_letter=None))
SEVERITIES = (Severity.LOW, Severity.MEDIUM, Severity.HIGH, Severity.CRITICAL)


def alerts(n: int) -> list[Event]:
    out = []
    for i in range(n):
        event: Event = {
            "@timestamp": f"2026-11-23T08:{i % 60:02d}:00Z",
            "event": {"kind": "alert", "hash": fingerprint("fwd", str(i))},
            "source": {"ip": f"203.0.113.{i % 250}", "port": 40000 + i},
            "destination": {"ip": "10.10.20.11", "port": 443},
            "rule": {"id": f"R-{i}", "name": f"Cảnh báo số {i} | thử=nghiệm"},
            "socd": {"layer": 2, "unit": "Sở Tài chính", "asset_kind": "server"},
            "message": f"dòng 1 = {i}\ndòng 2 \\ {i}",
        }
        set_severity(event, SEVERITIES[i % 4])
        out.append(normalize(event))
    return out


class Received:
    def __init__(self) -> None:
        self.records: list[RawRecord] = []

    async def emit(self, records: list[RawRecord], ack: Any = None) -> None:
        self.records.extend(records)

    async def wait_for(self, n: int, within: float = 60) -> None:
        async def loop() -> None:
            while len(self.records) < n:
                await asyncio.sleep(0.02)
        try:
            await asyncio.wait_for(loop(), within)
        except TimeoutError:
            raise AssertionError(f"expected {n} records, got {len(self.records)}") from None

    def events(self) -> list[Event]:
        out = []
        for record in self.records:
            result = DECODER.decode(record)
            assert not result.failures, (record, result.failures)
            out.extend(result.events)
        return out


@contextlib.asynccontextmanager
async def collector(tmp_path: Path, listener: dict[str, Any],
                    received: Received) -> AsyncIterator[None]:
    dl = DeadLetter(str(tmp_path / f"dead-{os.urandom(3).hex()}"))
    config = SyslogCollector.Config.model_validate({"type": "syslog", "decoder": "cef",
                                                    "listeners": [listener]})
    coll = SyslogCollector(config, PluginContext(name=f"sys{os.urandom(3).hex()}",
                                                 dead_letter=dl, config_dir=str(tmp_path)))
    task = asyncio.create_task(coll.run(received.emit))
    try:
        async def ready() -> None:
            while not coll.ready:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        await asyncio.wait_for(ready(), 10)
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        dl.close()


def make_sink(tmp_path: Path, **options: Any) -> SyslogCefSink:
    config = SyslogCefSink.Config.model_validate({"type": "syslog_cef", "host": "127.0.0.1",
                                                  **options})
    return SyslogCefSink(config, PluginContext(name="siem", dead_letter=None,
                                               config_dir=str(tmp_path)))


def check(sent: list[Event], got: list[Event]) -> None:
    assert len(got) == len(sent)
    by_id = {e["event"]["id"]: e for e in got}
    for alert in sent:
        event = by_id[alert["event"]["hash"]]
        assert event["rule"]["name"] == alert["rule"]["name"]
        assert event["message"] == alert["message"]
        assert event["source"]["ip"] == alert["source"]["ip"]
        assert event["source"]["port"] == alert["source"]["port"]
        assert event["socd"]["vendor"]["cef_labels"]["unit"] == "Sở Tài chính"
        expected = {"low": "3", "medium": "5", "high": "8", "critical": "10"}
        assert event["socd"]["vendor_severity"] == expected[alert["socd"]["severity"]]


@pytest.mark.parametrize(("protocol", "framing", "header"), [
    ("tcp", "octet-counting", "rfc5424"), ("tcp", "newline", "rfc3164"),
    ("udp", "octet-counting", "rfc5424")])
async def test_forward_plain(tmp_path: Path, protocol: str, framing: str, header: str) -> None:
    port = free_port()
    listener = {"protocol": protocol, "host": "127.0.0.1", "port": port}
    if protocol == "tcp":
        listener["framing"] = framing.replace("-", "_")
    received = Received()
    sent = alerts(40)
    async with collector(tmp_path, listener, received):
        sink = make_sink(tmp_path, port=port, protocol=protocol, framing=framing,
                         header=header)
        await sink.start()
        await sink.healthcheck()
        await sink.write(sent[:25])
        await sink.write(sent[25:])
        await received.wait_for(len(sent))
        await sink.close()
    check(sent, received.events())


async def test_forward_tls(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    pki.mkdir()
    make_pki(pki)
    port = free_port()
    listener = {"protocol": "tls", "host": "127.0.0.1", "port": port, "framing": "octet_counting",
                "tls": {"cert_file": "pki/server.pem", "key_file": "pki/server.key"}}
    received = Received()
    sent = alerts(30)
    async with collector(tmp_path, listener, received):
        sink = make_sink(tmp_path, port=port, protocol="tls", ca_file="pki/ca.pem",
                         server_name="localhost")
        await sink.healthcheck()
        await sink.write(sent)
        await received.wait_for(len(sent))
        await sink.close()
        # A sink that does not trust the CA cannot connect.
        untrusting = make_sink(tmp_path, port=port, protocol="tls", server_name="localhost")
        with pytest.raises(SinkError) as err:
            await untrusting.write(sent[:1])
        assert err.value.retryable
        assert "CERTIFICATE_VERIFY_FAILED" in str(err.value)
    check(sent, received.events())


async def test_receiver_down_then_back(tmp_path: Path) -> None:
    port = free_port()
    sink = make_sink(tmp_path, port=port, protocol="tcp", connect_timeout_secs=5)
    sent = alerts(10)
    with pytest.raises(SinkError) as err:
        await sink.write(sent[:5])
    assert err.value.retryable
    assert f"tcp://127.0.0.1:{port}" in str(err.value)
    received = Received()
    listener = {"protocol": "tcp", "host": "127.0.0.1", "port": port}
    async with collector(tmp_path, listener, received):
        await sink.write(sent[:5])  # the pipeline's retry
        await received.wait_for(5)
    # The receiver went away: the sink notices the closed connection and fails the batch
    # (a first write into a just-closed socket may still be accepted by the kernel).
    async def write_until_it_fails() -> None:
        for _ in range(50):
            await sink.write(sent[5:])
            await asyncio.sleep(0.1)

    with pytest.raises(SinkError):
        await write_until_it_fails()
    received2 = Received()
    async with collector(tmp_path, listener, received2):
        await sink.write(sent[5:])
        await received2.wait_for(5)
    await sink.close()
    assert {e["event"]["id"] for e in received.events()} == {
        a["event"]["hash"] for a in sent[:5]}
    assert {a["event"]["hash"] for a in sent[5:]} <= {
        e["event"]["id"] for e in received2.events()}
