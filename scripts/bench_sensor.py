"""Network sensor throughput and memory: pcap replay through the flow table and decoder.

A pcap of 200,000 packets over 20,000 TCP/UDP flows (10 packets each,
interleaved) is written with scapy's ``RawPcapWriter`` and replayed by the
``sensor`` collector; each emitted record is decoded with the ``json``
decoder and discarded. Every replay runs in a fresh process so that its peak
RSS is its own. Memory is also measured for a flood (every packet a new flow)
with a small ``max_flows`` and with a table large enough to hold every flow.

    .venv/bin/python -c "import scripts.bench_sensor as b; print(b.BENCHMARKS['sensor_pcap']())"
"""

from __future__ import annotations

import asyncio
import json
import random
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def _frame(src: int, sport: int, dst: int, dport: int, proto: int, flags: int,
           payload: int) -> bytes:
    eth = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x08\x00"
    l4 = (struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, flags, 65535, 0, 0)
          if proto == 6 else struct.pack("!HHHH", sport, dport, 8 + payload, 0))
    total = 20 + len(l4) + payload
    ip = struct.pack("!BBHHHBBHII", 0x45, 0, total, 0, 0, 64, proto, 0, src, dst)
    return eth + ip + l4 + b"\x00" * payload


def write_pcap(path: str, packets: int, flows: int, *, flood: bool = False) -> None:
    """``packets`` frames over ``flows`` flows (interleaved), or one flow per packet."""
    from scapy.utils import RawPcapWriter

    rng = random.Random(1)
    base = 0x0AC90000  # 10.201.0.0
    t0 = 1_763_251_200.0
    with RawPcapWriter(path, linktype=1, sync=False) as writer:
        writer.write_header(None)
        for i in range(packets):
            f = i if flood else i % flows
            client, server = base + 1 + f % 60000, base + 0x8000 + f % 7
            sport, dport = 1024 + f % 60000, (443, 53, 80, 22)[f % 4]
            proto = 17 if dport == 53 else 6
            forward = flood or (i // flows) % 2 == 0
            size = rng.randrange(0, 400)
            data = (_frame(client, sport, server, dport, proto, 0x18, size) if forward
                    else _frame(server, dport, client, sport, proto, 0x10, size))
            ts = t0 + i * 1e-4
            writer.write_packet(data, sec=int(ts), usec=round((ts % 1) * 1e6))


def _vm_hwm_mb() -> float:
    # VmHWM belongs to this process image; getrusage's ru_maxrss survives execve and
    # would report the parent's peak when the bench runs after other benchmarks.
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def _replay(path: str, max_flows: int) -> dict[str, Any]:
    from socd.collectors.sensor import SensorCollector
    from socd.decoders.json import JsonDecoder
    from socd.plugins import PluginContext

    config = SensorCollector.Config.model_validate({"type": "sensor", "pcap_files": [path],
                                                    "max_flows": max_flows})
    collector = SensorCollector(config, PluginContext(name="bench-sensor", dead_letter=None))
    decoder = JsonDecoder(JsonDecoder.Config(type="json"),
                          PluginContext(name="json", dead_letter=None))
    counts = {"events": 0, "failures": 0}

    async def emit(records: Any, ack: Any = None) -> None:
        for record in records:
            result = decoder.decode(record)
            counts["events"] += len(result.events)
            counts["failures"] += len(result.failures)

    started = time.perf_counter()
    await collector.run(emit)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "packets": collector.packets, **counts,
            "peak_rss_mb": _vm_hwm_mb()}


def _child() -> None:
    path, max_flows = sys.argv[1], int(sys.argv[2])
    print(json.dumps(asyncio.run(_replay(path, max_flows))))


def _run_child(path: str, max_flows: int) -> dict[str, Any]:
    code = "import sys, scripts.bench_sensor as b; b._child()"
    out = subprocess.run([sys.executable, "-c", code, path, str(max_flows)], cwd=REPO,
                         capture_output=True, text=True, check=True, timeout=1800)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def bench_sensor_pcap(packets: int = 200_000, flows: int = 20_000) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="socd-bench-sensor-") as tmp:
        normal = str(Path(tmp) / "flows.pcap")
        flood = str(Path(tmp) / "flood.pcap")
        write_pcap(normal, packets, flows)
        write_pcap(flood, packets, packets, flood=True)
        run = _run_child(normal, 100_000)
        small = _run_child(flood, 1_000)
        large = _run_child(flood, packets + 1)
    assert run["failures"] == 0, run
    return {
        "benchmark": "sensor_pcap",
        "packets": run["packets"],
        "flows": flows,
        "events": run["events"],
        "seconds": round(run["seconds"], 3),
        "packets_per_sec": round(run["packets"] / run["seconds"]),
        "peak_rss_mb": round(run["peak_rss_mb"], 1),
        "flood_packets": packets,
        "flood_max_flows_1000_peak_rss_mb": round(small["peak_rss_mb"], 1),
        "flood_max_flows_1000_packets_per_sec": round(small["packets"] / small["seconds"]),
        "flood_unbounded_peak_rss_mb": round(large["peak_rss_mb"], 1),
    }


BENCHMARKS = {"sensor_pcap": bench_sensor_pcap}
