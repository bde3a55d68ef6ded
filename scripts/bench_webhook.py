"""Webhook collector throughput, from HTTP into the rules queue.

The collector runs in this process; a client in a separate process POSTs NDJSON
batches of 500 ECS events over 4 concurrent keep-alive connections. Measured:
the time from the first request until every event has been decoded by the
`json` decoder (events are discarded) and every request answered 202.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from socd.app.deadletter import DeadLetter
from socd.collectors.webhook import WebhookCollector
from socd.decoders.json import JsonDecoder
from socd.plugins import Ack, PluginContext, RawRecord
from tests.helpers import ecs_alert

TARGET = 20_000
TOKEN = "bench-token-0123456789abcdef"


def _client(port: int, batches: int, per_batch: int, concurrency: int,
            result: Any) -> None:
    import aiohttp

    bodies = [b"\n".join(orjson.dumps(ecs_alert(b * per_batch + i, "bench"))
                         for i in range(per_batch)) for b in range(min(batches, 20))]
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-ndjson"}
    url = f"http://127.0.0.1:{port}/ingest/bench"

    async def main() -> None:
        statuses: dict[int, int] = {}
        queue: asyncio.Queue[int] = asyncio.Queue()
        for b in range(batches):
            queue.put_nowait(b)
        async with aiohttp.ClientSession() as session:
            async def worker() -> None:
                while not queue.empty():
                    b = queue.get_nowait()
                    while True:
                        async with session.post(url, data=bodies[b % len(bodies)],
                                                headers=headers) as resp:
                            await resp.read()
                            statuses[resp.status] = statuses.get(resp.status, 0) + 1
                            if resp.status != 429:
                                break
                        await asyncio.sleep(0.01)
            t0 = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            result.put((time.perf_counter() - t0, statuses))

    asyncio.run(main())


async def _serve(tmp: Path, batches: int, per_batch: int, concurrency: int) -> dict[str, Any]:
    dead = DeadLetter(str(tmp / "dead-letter"))
    decoder = JsonDecoder(JsonDecoder.Config(type="json"), PluginContext(name="json",
                                                                          dead_letter=dead))
    config = WebhookCollector.Config.model_validate({
        "type": "webhook", "port": 0, "sources": {"bench": {"token": TOKEN}}})
    collector = WebhookCollector(config, PluginContext(name="bench_webhook", dead_letter=dead))
    expected = batches * per_batch
    events = 0
    done = asyncio.Event()
    started = 0.0

    async def emit(records: list[RawRecord], ack: Ack | None = None) -> None:
        nonlocal events, started
        if not started:
            started = time.perf_counter()
        for record in records:
            events += len(decoder.decode(record).events)
        if ack is not None:
            ack.done()
        if events >= expected:
            done.set()

    task = asyncio.create_task(collector.run(emit))
    while not collector.ready:  # noqa: ASYNC110 - the collector exposes a flag only
        await asyncio.sleep(0.01)
    ctx = multiprocessing.get_context("spawn")
    result = ctx.Queue()
    proc = ctx.Process(target=_client, args=(collector.port, batches, per_batch, concurrency,
                                             result))
    proc.start()
    await asyncio.wait_for(done.wait(), 600)
    elapsed = time.perf_counter() - started
    client_secs, statuses = await asyncio.to_thread(result.get, True, 60)
    await asyncio.to_thread(proc.join, 60)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    dead.close()
    return {"benchmark": "webhook", "events": events, "seconds": round(elapsed, 3),
            "events_per_sec": round(events / elapsed), "target": TARGET,
            "batch": per_batch, "concurrency": concurrency,
            "client_seconds": round(client_secs, 3),
            "statuses": {str(k): v for k, v in statuses.items()}}


def webhook(batches: int = 200, per_batch: int = 500, concurrency: int = 4) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="socd-bench-webhook-") as tmpdir:
        return asyncio.run(_serve(Path(tmpdir), batches, per_batch, concurrency))


BENCHMARKS = {"webhook": webhook}

if __name__ == "__main__":
    print(webhook())
