"""The webhook collector's HTTP handling, against its own server on a free port."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import os
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from socd.app import deadletter
from socd.app.deadletter import DeadLetter
from socd.app.journal import Journal
from socd.app.pipeline import Pipeline
from socd.collectors import webhook as webhook_mod
from socd.collectors.webhook import BodyError, WebhookCollector, split_body
from socd.config import ClassificationConfig
from socd.engine.classify import Classifier
from socd.plugins import Ack, PluginContext, RawRecord

from .conftest import sample_value

pytestmark = pytest.mark.timeout(60)

TOKEN = "edr-token-0123456789abcdef"
IDS_TOKEN = "ids-token-0123456789abcdef"


class Received:
    def __init__(self) -> None:
        self.records: list[RawRecord] = []
        self.block = False

    async def emit(self, records: list[RawRecord], ack: Ack | None) -> None:
        if self.block:
            await asyncio.Event().wait()
        self.records.extend(records)


def config(**options: Any) -> WebhookCollector.Config:
    return WebhookCollector.Config.model_validate({
        "type": "webhook", "port": 0, "decoder": "json",
        "sources": {"edr": {"token": TOKEN, "decoder": "server_edr"},
                    "ids": {"token": IDS_TOKEN}},
        **options})


@contextlib.asynccontextmanager
async def serving(collector: WebhookCollector, emit: Any) -> AsyncIterator[str]:
    task = asyncio.create_task(collector.run(emit))
    for _ in range(500):
        if collector.ready or task.done():
            break
        await asyncio.sleep(0.01)
    if task.done():
        task.result()
    scheme = "https" if collector.config.tls else "http"
    try:
        yield f"{scheme}://127.0.0.1:{collector.port}/ingest"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def make(tmp_path: Path, dl: DeadLetter, name: str, **options: Any) -> WebhookCollector:
    return WebhookCollector(config(**options), PluginContext(
        name=name, dead_letter=dl, config_dir=str(tmp_path), state_dir=str(tmp_path)))


async def post(session: aiohttp.ClientSession, url: str, body: bytes, *,
               token: str | None = "", content_type: str | None = "application/json",
               **headers: str) -> tuple[int, dict[str, Any], Any]:
    h = dict(headers)
    if token == "":
        token = IDS_TOKEN if url.endswith("/ids") else TOKEN
    if token is not None:
        h["Authorization"] = f"Bearer {token}"
    if content_type is not None:
        h["Content-Type"] = content_type
    async with session.post(url, data=body, headers=h) as resp:
        return resp.status, dict(resp.headers), orjson.loads(await resp.read())


async def test_accepts_object_array_ndjson_and_gzip(tmp_path: Path, dead_letter: DeadLetter,
                                                    uid: str) -> None:
    received = Received()
    collector = make(tmp_path, dead_letter, uid)
    async with serving(collector, received.emit) as base, aiohttp.ClientSession() as s:
        assert collector.ready
        status, _, body = await post(s, f"{base}/edr", b'{"a": 1}')
        assert (status, body) == (202, {"accepted": 1})
        status, _, body = await post(s, f"{base}/ids", b'[{"b": 1}, {"b": 2}, 3]')
        assert (status, body) == (202, {"accepted": 3})
        status, _, body = await post(s, f"{base}/ids", b'{"c": 1}\n\n{"c": \n{"c": 3}\n',
                                     content_type="application/x-ndjson")
        assert (status, body) == (202, {"accepted": 3})
        status, _, body = await post(s, f"{base}/ids", gzip.compress(b'{"d": 1}\n{"d": 2}'),
                                     content_type="application/json",
                                     **{"Content-Encoding": "gzip"})
        assert (status, body) == (202, {"accepted": 2})
    data = [(r.data, r.decoder, r.source, r.collector) for r in received.records]
    assert data == [
        (b'{"a": 1}', "server_edr", "edr", uid),
        (b'{"b":1}', "json", "ids", uid), (b'{"b":2}', "json", "ids", uid),
        (b"3", "json", "ids", uid),
        (b'{"c": 1}', "json", "ids", uid), (b'{"c":', "json", "ids", uid),
        (b'{"c": 3}', "json", "ids", uid),
        (b'{"d": 1}', "json", "ids", uid), (b'{"d": 2}', "json", "ids", uid),
    ]
    assert sample_value("socd_webhook_requests_total", collector=uid, code="202") == 4
    assert not collector.ready


async def test_unknown_source_and_bad_token_look_the_same(tmp_path: Path,
                                                         dead_letter: DeadLetter, uid: str,
                                                         capsys: pytest.CaptureFixture[str],
                                                         ) -> None:
    received = Received()
    async with serving(make(tmp_path, dead_letter, uid), received.emit) as base, \
            aiohttp.ClientSession() as s:
        answers = [
            await post(s, f"{base}/edr", b"{}", token="wrong-token-0123456789"),
            await post(s, f"{base}/edr", b"{}", token=IDS_TOKEN),  # another source's token
            await post(s, f"{base}/nosuch", b"{}"),
            await post(s, f"{base}/edr", b"{}", token=None),
            await post(s, f"{base}/edr", b"{}", token=None, Authorization=f"Basic {TOKEN}"),
            await post(s, f"{base}/edr", b"{}", token=TOKEN[:-1]),
        ]
        for status, headers, body in answers:
            assert (status, body) == (401, {"error": "unauthorized"})
            assert headers["WWW-Authenticate"] == 'Bearer realm="socd"'
        async with s.get(f"{base}/edr") as resp:
            assert resp.status == 405
        async with s.post(f"{base}/edr/extra", data=b"{}") as resp:
            assert resp.status == 404
    assert received.records == []
    assert sample_value("socd_webhook_requests_total", collector=uid, code="401") == 6
    out = capsys.readouterr()
    assert TOKEN not in out.out + out.err
    assert "wrong-token" not in out.out + out.err


async def test_bad_bodies_get_400_and_are_dead_lettered(tmp_path: Path,
                                                        dead_letter: DeadLetter,
                                                        uid: str) -> None:
    received = Received()
    before = sample_value("socd_events_dropped_total", stage="collect", reason="invalid_utf8")
    async with serving(make(tmp_path, dead_letter, uid), received.emit) as base, \
            aiohttp.ClientSession() as s:
        empty = await post(s, f"{base}/ids", b" \n ")
        utf8 = await post(s, f"{base}/ids", b'{"a": "\xff"}')
        json_ = await post(s, f"{base}/ids", b"hello")
        lines = await post(s, f"{base}/ids", b"hello\nworld\n",
                           content_type="application/x-ndjson")
        gz = await post(s, f"{base}/ids", b"not gzip", **{"Content-Encoding": "gzip"})
        cut = await post(s, f"{base}/ids", gzip.compress(b'{"a": 1}')[:-6],
                         **{"Content-Encoding": "gzip"})
        brotli = await post(s, f"{base}/ids", b"{}", **{"Content-Encoding": "br"})
        xml = await post(s, f"{base}/ids", b"<a/>", content_type="application/xml")
    assert [(a[0], a[2]["error"]) for a in (empty, utf8, json_, lines, gz, cut, brotli, xml)] \
        == [(400, "empty_body"), (400, "invalid_utf8"), (400, "invalid_json"),
            (400, "invalid_json"), (400, "invalid_gzip"), (400, "invalid_gzip"),
            (415, "unsupported_encoding"), (415, "unsupported_media_type")]
    assert received.records == []
    dead_letter.close()
    entries = deadletter.read(dead_letter.path)
    assert [(e["reason"], e["raw"], e["source"], e["stage"]) for e in entries] == [
        ("invalid_utf8", b'{"a": "\xff"}', "ids", "collect"),
        ("invalid_json", b"hello", "ids", "collect"),
        ("invalid_json", b"hello\nworld\n", "ids", "collect"),
        ("invalid_gzip", b"not gzip", "ids", "collect"),
        ("invalid_gzip", gzip.compress(b'{"a": 1}')[:-6], "ids", "collect"),
    ]
    after = sample_value("socd_events_dropped_total", stage="collect", reason="invalid_utf8")
    assert after == before + 1
    assert sample_value("socd_events_received_total", collector=uid) == 5


async def test_too_large_bodies_get_413(tmp_path: Path, dead_letter: DeadLetter,
                                       uid: str) -> None:
    received = Received()
    async with serving(make(tmp_path, dead_letter, uid, max_body_bytes=4096),
                       received.emit) as base, aiohttp.ClientSession() as s:
        declared = await post(s, f"{base}/ids", b"[" + b"1," * 3000 + b"1]")

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(10):
                yield b" " * 1000

        async with s.post(f"{base}/ids", data=chunks(), headers={
                "Authorization": f"Bearer {IDS_TOKEN}",
                "Content-Type": "application/json"}) as resp:
            chunked = resp.status, orjson.loads(await resp.read())
        bomb = await post(s, f"{base}/ids", gzip.compress(b" " * 1_000_000),
                          **{"Content-Encoding": "gzip"})
        fits = await post(s, f"{base}/ids", gzip.compress(b'{"a": 1}' + b" " * 4000),
                          **{"Content-Encoding": "gzip"})
    assert (declared[0], declared[2]["error"]) == (413, "too_large")
    assert "4096" in declared[2]["detail"]
    assert chunked[0] == 413
    assert bomb[0] == 413
    assert fits[0] == 202
    assert len(received.records) == 1


async def test_full_pipeline_gets_429_with_retry_after(tmp_path: Path,
                                                       dead_letter: DeadLetter,
                                                       uid: str) -> None:
    # A pipeline that is never started: its intake holds one batch, then it is full.
    pipeline = Pipeline({}, Classifier.from_files(ClassificationConfig(), []), [],
                        dead_letter, queue_max_batches=1)
    collector = make(tmp_path, dead_letter, uid, queue_wait_secs=0.2, retry_after_secs=7)
    async with serving(collector, pipeline.submit) as base, aiohttp.ClientSession() as s:
        first = await post(s, f"{base}/ids", b'[{"a": 1}, {"a": 2}]')
        second = await post(s, f"{base}/ids", b'{"a": 3}')
    assert first[0] == 202
    assert (second[0], second[1]["Retry-After"], second[2]["error"]) == (429, "7",
                                                                         "pipeline_full")
    assert pipeline.intake.qsize() == 1
    assert pipeline.intake_events == 2
    assert sample_value("socd_webhook_requests_total", collector=uid, code="429") == 1
    assert sample_value("socd_events_received_total", collector=uid) == 2


async def test_request_waiting_for_room_gets_503_when_socd_stops(tmp_path: Path,
                                                                 dead_letter: DeadLetter,
                                                                 uid: str) -> None:
    pipeline = Pipeline({}, Classifier.from_files(ClassificationConfig(), []), [],
                        dead_letter, queue_max_batches=1)
    collector = make(tmp_path, dead_letter, uid, queue_wait_secs=30, retry_after_secs=3)
    task = asyncio.create_task(collector.run(pipeline.submit))
    while not collector.ready:
        await asyncio.sleep(0.01)
    url = f"http://127.0.0.1:{collector.port}/ingest/ids"
    async with aiohttp.ClientSession() as s:
        assert (await post(s, url, b"{}", token=IDS_TOKEN))[0] == 202
        waiting = asyncio.create_task(post(s, url, b"{}", token=IDS_TOKEN))
        await asyncio.sleep(0.2)
        task.cancel()
        status, headers, body = await waiting
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert (status, headers["Retry-After"], body["error"]) == (503, "3", "stopping")


async def test_202_only_once_journaled_and_429_while_the_journal_fails(
        tmp_path: Path, dead_letter: DeadLetter, uid: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """202 follows the journal's fsync; a batch the journal cannot confirm gets 503
    (queued, not acknowledged), and while it cannot write, requests get 429."""
    journal = Journal(str(tmp_path / "journal"), fsync_interval_ms=0)
    pipeline = Pipeline({}, Classifier.from_files(ClassificationConfig(), []), [],
                        dead_letter, journal=journal)
    await pipeline.recover()
    real_fdatasync = os.fdatasync
    failing = False

    def fdatasync(fd: int) -> None:
        if failing:
            raise OSError(5, "Input/output error")
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    monkeypatch.setattr(webhook_mod, "JOURNAL_WAIT_SECS", 0.5)
    collector = make(tmp_path, dead_letter, uid, queue_wait_secs=0.2, retry_after_secs=4)
    async with serving(collector, pipeline.submit) as base, aiohttp.ClientSession() as s:
        url = f"{base}/ids"
        assert (await post(s, url, b'{"n": 1}'))[0] == 202
        failing = True
        unconfirmed = await post(s, url, b'{"n": 2}')
        refused = await post(s, url, b'{"n": 3}')
        failing = False
        for _ in range(1000):
            if journal.healthy:
                break
            await asyncio.sleep(0.01)
        assert (await post(s, url, b'{"n": 4}'))[0] == 202
    assert (unconfirmed[0], unconfirmed[1]["Retry-After"], unconfirmed[2]["error"]) == \
        (503, "4", "journal_unavailable")
    assert (refused[0], refused[2]["error"]) == (429, "pipeline_full")
    journal.freeze()
    await journal.close()
    again = Journal(str(tmp_path / "journal"))
    await again.open()
    stored = [orjson.loads(r.data)["n"] async for _, batch in again.replay() for r in batch]
    await again.close()
    # The unconfirmed batch was queued and written once the disk came back: the
    # client, told 503, sends it again (a repeat, never a loss).
    assert stored == [1, 2, 4]


async def test_plain_emit_that_blocks_gets_429(tmp_path: Path, dead_letter: DeadLetter,
                                               uid: str) -> None:
    received = Received()
    received.block = True
    async with serving(make(tmp_path, dead_letter, uid, queue_wait_secs=0.1),
                       received.emit) as base, aiohttp.ClientSession() as s:
        status, headers, _ = await post(s, f"{base}/ids", b"{}", token=IDS_TOKEN)
    assert status == 429
    assert headers["Retry-After"] == "5"


async def test_tls(tmp_path: Path, dead_letter: DeadLetter, uid: str) -> None:
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",  # noqa: ASYNC221
                    "-keyout",
                    str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem"), "-days", "2",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    received = Received()
    collector = make(tmp_path, dead_letter, uid,
                     tls={"cert_file": "cert.pem", "key_file": "key.pem"})
    ctx = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
    async with serving(collector, received.emit) as base, \
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s:
        assert base.startswith("https://")
        assert (await post(s, f"{base}/edr", b"{}"))[0] == 202
    assert len(received.records) == 1


def test_config_checks_tokens_and_sources() -> None:
    with pytest.raises(ValueError, match="at least 16"):
        config(sources={"a": {"token": "short"}})
    with pytest.raises(ValueError):
        config(sources={})
    text = repr(config())
    assert TOKEN not in text


# -- body splitting ------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                 max_size=3),
    max_leaves=8)
objects = st.dictionaries(st.text(max_size=8), json_values, min_size=1, max_size=4)


@given(st.lists(objects, min_size=1, max_size=20), st.lists(st.sampled_from(
    [b"\n", b"\r\n", b"\n\n", b"\n  \n"]), min_size=20, max_size=20), st.booleans())
def test_ndjson_bodies_split_into_one_record_per_line(items: list[dict[str, Any]],
                                                      seps: list[bytes], ndjson: bool) -> None:
    body = b"".join(orjson.dumps(item) + sep for item, sep in zip(items, seps, strict=False))
    ctype = "application/x-ndjson" if ndjson else "application/json"
    records = split_body(body, ctype)
    if len(items) == 1 and not ndjson:
        assert [orjson.loads(r) for r in records] == items
    else:
        assert [orjson.loads(r) for r in records] == items


@given(st.lists(json_values, max_size=20))
def test_array_bodies_split_into_one_record_per_element(items: list[Any]) -> None:
    records = split_body(orjson.dumps(items), "application/json")
    assert [orjson.loads(r) for r in records] == items


@given(st.binary(max_size=200), st.sampled_from(["application/json", "application/x-ndjson"]))
def test_any_body_is_split_or_refused_with_400(body: bytes, ctype: str) -> None:
    refused: BodyError | None = None
    try:
        records = split_body(body, ctype)
    except BodyError as exc:
        refused, records = exc, []
    if refused is not None:
        assert refused.status == 400
        assert refused.reason in ("empty_body", "invalid_utf8", "invalid_json")
        assert (refused.raw is None) == (refused.reason == "empty_body")
    else:
        assert records
        assert all(r and r == r.strip() for r in records)
