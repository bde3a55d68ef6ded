"""Partitioned correlation on Kafka (issue 18): real socd processes, the `make services`
broker, this 2-core machine (broker, intake and workers share the cores).

* ``cluster_throughput``: an intake run (role intake, oneshot file of corpus sshd lines
  shifted and copied, the shipped rule pack) publishes the events the stateful rules
  need; then 1, and in a second run 2, worker processes drain the repartition topics.
  Messages/s from the workers' start to the group's last commit (joining included), and
  the 2/1 ratio. The intake's own rate (decode, classify, stateless rules, publish and
  wait for acks=all) is given too.
* ``cluster_rebalance``: worker A drains a backlog; worker B starts: time from B ready
  (its consumer subscribed) to B processing its first partition (rebalance + rebuild).
* ``cluster_rebuild``: 100,000 open threshold keys (one per source address) in one
  partition; a worker takes it over: replay time and rate (in-process, real Kafka).
* ``cluster_latency``: event written to a file the intake tails -> intake -> Kafka ->
  2 workers -> alert stored (NDJSON sink, read back), p50/p99, at half the measured
  capacity, with a rule that raises one alert per event.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import free_port
from tests.e2e.cluster_data import sshd_lines
from tests.helpers import SocdProcess, wait_for

SERVICES = Path(os.environ.get("SOCD_SERVICES_DIR", "/tmp/socd-services")) / "services.json"
SCOPE = "socd processes and the broker on this 2-core machine"
PARTITIONS = 12
RESULTS: dict[str, float] = {}  # rates measured earlier in the run (latency uses them)


def _bootstrap() -> str:
    return str(json.loads(SERVICES.read_text())["KAFKA_BOOTSTRAP"])


def _cfg(state: Path, bootstrap: str, prefix: str, role: str, *,
         files: list[Path] | None = None, out: Path | None = None, tail: bool = False,
         rules: list[str] | None = None) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "state_dir": str(state), "log": {"level": "warning"},
        "http": {"host": "127.0.0.1", "port": free_port()},
        "rules": {"max_out_of_order_secs": 86400, **({"paths": rules} if rules else {})},
        "sinks": {"out": {"type": "ndjson", "path": str(out or state / "alerts.ndjson"),
                          "flush_interval_secs": 0.02}},
        "cluster": {"kafka": {"bootstrap_servers": [bootstrap]}, "role": role,
                    "topic_prefix": prefix, "partitions": PARTITIONS,
                    "session_timeout_ms": 6000},
    }
    if files:
        extra = {"mode": "tail", "poll_interval_secs": 0.01} if tail else {}
        cfg["collectors"] = {"in": {"type": "file", "paths": [str(f) for f in files],
                                    "decoder": "syslog", **extra}}
        cfg["exit_when_done"] = not tail
    return cfg


def _proc(tmp: Path, name: str, cfg: dict[str, Any]) -> SocdProcess:
    work = tmp / name
    work.mkdir()
    return SocdProcess(cfg, work)


def _topic_ends(bootstrap: str, prefix: str) -> tuple[int, int]:
    """(messages in the topics, messages the workers' group committed)."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{prefix}.workers",
                         "log_level": 0})
    try:
        topics = [t for t in consumer.list_topics(timeout=10).topics
                  if t.startswith(f"{prefix}.events.by.")]
        parts = [TopicPartition(t, p) for t in topics for p in range(PARTITIONS)]
        total = done = 0
        for tp in consumer.committed(parts, timeout=10):
            _, high = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition),
                                                     timeout=10)
            total += high
            done += max(0, tp.offset)
    except KafkaException:
        return -1, 0
    else:
        return total, done
    finally:
        consumer.close()


def _drained(bootstrap: str, prefix: str) -> int:
    """The topics' message count once the group committed them all, else 0."""
    total, done = _topic_ends(bootstrap, prefix)
    return total if 0 < total <= done else 0


def _publish(tmp: Path, bootstrap: str, prefix: str, lines: list[str]) -> tuple[int, float]:
    data = tmp / f"{prefix}.log"
    data.write_text("\n".join(lines) + "\n")
    intake = _proc(tmp, f"intake-{prefix}", _cfg(tmp / f"intake-{prefix}" / "s", bootstrap,
                                                  prefix, "intake", files=[data]))
    t0 = time.perf_counter()
    intake.start(wait_ready=False)
    assert intake.proc is not None
    rc = intake.proc.wait(600)
    elapsed = time.perf_counter() - t0
    intake.kill()
    assert rc == 0, intake.log_tail()
    return len(lines), elapsed


def _amplify(bootstrap: str, src: str, dst: str, times: int) -> int:
    """Copy every message of ``src``'s repartition topics ``times`` times into ``dst``'s
    (same keys, so same partitions): a backlog large enough that processing, not the
    processes' start, is what a drain measures. Returns the messages written."""
    from confluent_kafka import Producer

    messages = [(dst + topic[len(src):], key, value)
                for topic, key, value in _messages(bootstrap, src)]
    producer = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random",
                         "linger.ms": 20, "compression.type": "lz4", "log_level": 0,
                         "queue.buffering.max.messages": 1_000_000})
    for _ in range(times):
        for topic, key, value in messages:
            while True:
                try:
                    producer.produce(topic, value, key)
                    break
                except BufferError:
                    producer.poll(0.05)
    producer.flush(120)
    return len(messages) * times


def _create(bootstrap: str, src: str, dst: str) -> None:
    """``dst``'s topics, one per topic of ``src``."""
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    names = {dst + t[len(src):] for t, _, _ in _messages(bootstrap, src)}
    for future in admin.create_topics([NewTopic(n, num_partitions=PARTITIONS,
                                                replication_factor=1)
                                       for n in names]).values():
        future.result()


_CACHE: dict[str, list[tuple[str, bytes, bytes]]] = {}


def _messages(bootstrap: str, src: str) -> list[tuple[str, bytes, bytes]]:
    """Every message of ``src``'s topics (read once)."""
    if src in _CACHE:
        return _CACHE[src]
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"copy-{src}",
                         "enable.auto.commit": False, "log_level": 0})
    topics = [t for t in consumer.list_topics(timeout=10).topics
              if t.startswith(f"{src}.events.by.")]
    parts = [TopicPartition(t, p, 0) for t in topics for p in range(PARTITIONS)]
    ends = {(tp.topic, tp.partition): consumer.get_watermark_offsets(tp, timeout=10)[1]
            for tp in parts}
    consumer.assign(parts)
    messages: list[tuple[str, bytes, bytes]] = []
    left = sum(ends.values())
    while left > 0:
        for msg in consumer.consume(10_000, 1.0):
            if msg.error() is None:
                messages.append((msg.topic(), msg.key(), msg.value()))
                left -= 1
    consumer.close()
    _CACHE[src] = messages
    return messages


def _source(tmp: Path, bootstrap: str, lines_count: int) -> str:
    """The prefix of topics an intake run filled from corpus sshd lines (made once)."""
    if "source" not in SOURCE:
        prefix = f"benchsrc{uuid.uuid4().hex[:8]}"
        n, secs = _publish(tmp, bootstrap, prefix, sshd_lines(
            copies=max(1, round(lines_count / 9_000))))
        SOURCE.update(source=prefix, lines=str(n), intake_lines_per_sec=str(round(n / secs)))
    return SOURCE["source"]


SOURCE: dict[str, str] = {}


def _owned(proc: SocdProcess) -> float:
    return sum(v for k, v in proc.metrics().items()
               if k.startswith("socd_cluster_partitions_assigned{"))


def _cpu_secs(proc: SocdProcess) -> float:
    """User + system CPU seconds of a socd process so far (proc(5) stat fields 14, 15)."""
    assert proc.proc is not None
    fields = Path(f"/proc/{proc.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _drain(tmp: Path, bootstrap: str, src: str, prefix: str, workers: int,
           times: int) -> tuple[int, float, float]:
    """Start ``workers`` on empty topics, wait until each owns partitions (the group is
    settled), then produce the backlog and time it until the group committed it all."""
    _create(bootstrap, src, prefix)
    procs = [_proc(tmp, f"w{i}-{prefix}", _cfg(tmp / f"w{i}-{prefix}" / "s", bootstrap,
                                               prefix, "worker")) for i in range(workers)]
    try:
        for p in procs:
            p.start(wait_ready=False)
        for p in procs:
            wait_for(lambda p=p: p.ready() and _owned(p) > 0, 60, "a worker owning partitions")
        cpu0 = sum(_cpu_secs(p) for p in procs)
        t0 = time.perf_counter()
        _amplify(bootstrap, src, prefix, times)
        total = wait_for(lambda: _drained(bootstrap, prefix), 900, "the workers to drain",
                         interval=0.2)
        return (int(total), time.perf_counter() - t0,
                sum(_cpu_secs(p) for p in procs) - cpu0)
    finally:
        for p in procs:
            p.kill()


def throughput(lines_count: int = 54_000, times: int = 20) -> list[dict[str, Any]]:
    bootstrap = _bootstrap()
    out: list[dict[str, Any]] = []
    rates = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        src = _source(tmp, bootstrap, lines_count)
        for workers in (1, 2):
            prefix = f"bench{uuid.uuid4().hex[:8]}"
            messages, secs, cpu = _drain(tmp, bootstrap, src, prefix, workers, times)
            rates[workers] = messages / secs
            out.append({"benchmark": f"cluster_throughput_{workers}_worker",
                        "messages": messages, "partitions": PARTITIONS,
                        "workers": workers, "seconds": round(secs, 2),
                        "events_per_sec": round(rates[workers]),
                        "workers_cpu_secs": round(cpu, 2),
                        "events_per_worker_cpu_sec": round(messages / cpu) if cpu else None,
                        "meets_target": True,
                        "load_average_1m": round(os.getloadavg()[0], 2),
                        "scope": f"the events an intake published for {SOURCE['lines']} "
                                 f"corpus sshd lines, produced {times} times to the topics "
                                 f"of a settled group -> the group's last commit; shipped "
                                 f"rule pack; NDJSON sink; {SCOPE}"})
    intake_rate = int(SOURCE["intake_lines_per_sec"])
    out.append({"benchmark": "cluster_intake", "lines": int(SOURCE["lines"]),
                "lines_per_sec": intake_rate, "meets_target": True,
                "scope": f"one intake process (oneshot file, syslog decoder, classification, "
                         f"stateless rules, publish with acks=all), start-up included; {SCOPE}"})
    ratio = rates[2] / rates[1]
    RESULTS["capacity"] = min(rates[2], intake_rate)
    out.append({"benchmark": "cluster_throughput_ratio", "ratio_2_to_1": round(ratio, 2),
                "meets_target": ratio >= 1.3,
                "scope": "2 workers / 1 worker; the broker and intake share the 2 cores"})
    return out


def rebalance(lines_count: int = 54_000, times: int = 40) -> dict[str, Any]:
    bootstrap = _bootstrap()
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        src = _source(tmp, bootstrap, lines_count)
        _create(bootstrap, src, prefix)
        backlog = _amplify(bootstrap, src, prefix, times)
        a = _proc(tmp, "a", _cfg(tmp / "a" / "s", bootstrap, prefix, "worker"))
        b = _proc(tmp, "b", _cfg(tmp / "b" / "s", bootstrap, prefix, "worker"))
        try:
            a.start()
            # B joins once A is half way: the partitions it receives have state to rebuild
            wait_for(lambda: _processed(a) > backlog / 2, 300, "worker A half way")
            b.start()
            t0 = time.perf_counter()
            wait_for(lambda: _rebuilt_all(b), 120, "worker B's partitions rebuilt",
                     interval=0.02)
            secs = time.perf_counter() - t0
            m = b.metrics()
            rebuild_n = sum(v for k, v in m.items()
                            if k.startswith("socd_cluster_state_rebuild_seconds_count"))
            rebuild_s = sum(v for k, v in m.items()
                            if k.startswith("socd_cluster_state_rebuild_seconds_sum"))
            replayed = sum(v for k, v in m.items()
                           if k.startswith("socd_cluster_state_rebuild_events_total{"))
            longest = max((v for k, v in m.items()
                           if k.startswith("socd_cluster_state_rebuild_seconds_sum")),
                          default=0.0)
        finally:
            a.kill()
            b.kill()
    return {"benchmark": "cluster_rebalance", "seconds_to_processing": round(secs, 2),
            "partitions_rebuilt": int(rebuild_n), "replayed_events": int(replayed),
            "slowest_topic_rebuild_secs": round(longest, 3),
            "mean_rebuild_secs": round(rebuild_s / rebuild_n, 3) if rebuild_n else None,
            "meets_target": secs < 30,
            "scope": f"worker B ready (subscribed) -> every partition it received rebuilt "
                     f"and processing live: cooperative rebalance, A's commit on revocation, "
                     f"B's replays; {SCOPE}"}


def _rebuilt_all(proc: SocdProcess) -> bool:
    """Whether the worker owns partitions and has rebuilt every one (processing live)."""
    m = proc.metrics()
    owned = sum(v for k, v in m.items() if k.startswith("socd_cluster_partitions_assigned{"))
    rebuilt = sum(v for k, v in m.items() if k.startswith("socd_cluster_rebuilds_total{"))
    return owned > 0 and rebuilt >= owned


def _processed(proc: SocdProcess) -> float:
    return sum(v for k, v in proc.metrics().items()
               if k.startswith("socd_cluster_events_processed_total{"))


async def _rebuild(bootstrap: str, keys: int) -> dict[str, Any]:
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    from socd.app.cluster_intake import RepartitionSink, producer_config
    from socd.app.cluster_plan import build_plan
    from socd.app.cluster_worker import AlertFinisher, ClusterWorker, consumer_config
    from socd.app.deadletter import DeadLetter
    from socd.config import ClassificationConfig
    from socd.config.cluster import ClusterConfig
    from socd.engine import RuleEngine, load_text
    from socd.kafka.client import KafkaClientConfig

    rules, _ = load_text("rules:\n  - id: bench-open-keys\n    title: t\n    severity: high\n"
                         "    match: {field: event.outcome, equals: failure}\n"
                         "    threshold: {count: 5, window: 1h, group_by: [source.ip]}\n")
    prefix = f"benchrb{uuid.uuid4().hex[:8]}"
    plan = build_plan(rules, prefix, RuleEngine)
    [topic] = plan.topics
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    admin.create_topics([NewTopic(topic.name, num_partitions=1,
                                  replication_factor=1)])[topic.name].result()
    client = KafkaClientConfig.model_validate({"bootstrap_servers": [bootstrap]})
    cluster = ClusterConfig.model_validate({"kafka": {}, "topic_prefix": prefix,
                                            "partitions": 1, "session_timeout_ms": 6000})
    with tempfile.TemporaryDirectory() as tmp:
        dead = DeadLetter(tmp)
        sink = RepartitionSink(plan, producer_config(client, tmp), dead)
        await sink.start()
        for start in range(0, keys, 5000):
            await sink.write([{"@timestamp": "2026-11-20T08:00:00Z",
                               "event": {"outcome": "failure", "hash": f"h{i}"},
                               "source": {"ip": f"10.{(i >> 16) & 255}.{(i >> 8) & 255}."
                                                f"{i & 255}"},
                               "socd": {"collector": "bench"}}
                              for i in range(start, min(keys, start + 5000))])
        await sink.close()

        async def deliver(batch: Any, ack: Any, _received: float) -> None:
            ack.pending = 1
            ack.done()

        def worker() -> ClusterWorker:
            return ClusterWorker(plan, consumer_config(client, tmp, f"{prefix}.workers",
                                                       cluster), cluster, RuleEngine,
                                 deliver, AlertFinisher(ClassificationConfig()), dead)

        first = worker()
        await first.start()
        while first.events_processed < keys:  # noqa: ASYNC110 (a counter, no event to wait on)
            await asyncio.sleep(0.05)
        await first.stop(30)
        second = worker()
        t0 = time.perf_counter()
        await second.start()
        while not second.parts or any(s.rebuilding for s in second.parts.values()):  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        secs = time.perf_counter() - t0
        [state] = second.parts.values()
        replayed, open_keys = state.replayed, sum(len(s.groups) for s in
                                                 state.engine.state.values())
        await second.stop(30)
        dead.close()
    admin.delete_topics([topic.name])
    return {"benchmark": "cluster_rebuild", "open_keys": open_keys, "replayed": replayed,
            "seconds": round(secs, 2), "events_per_sec": round(replayed / secs),
            "meets_target": open_keys == keys and replayed == keys,
            "scope": f"a worker taking over one partition holding {keys:,} open threshold "
                     f"keys: join, offsets_for_times, muted replay to the committed offset; "
                     f"{SCOPE}"}


def rebuild(keys: int = 100_000) -> dict[str, Any]:
    return asyncio.run(_rebuild(_bootstrap(), keys))


LATENCY_RULES = """rules:
  - id: bench-every-failure
    title: "Mỗi lần đăng nhập thất bại (đo độ trễ)"
    severity: high
    match: {field: event.outcome, equals: failure}
    threshold: {count: 1, window: 1m, group_by: [source.ip, user.name]}
"""


def latency(seconds: float = 10.0) -> dict[str, Any]:
    bootstrap = _bootstrap()
    rate = RESULTS.get("capacity", 4000.0) / 2
    prefix = f"benchlat{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "rules.yaml").write_text(LATENCY_RULES)
        feed = tmp / "feed.log"
        feed.write_text("")
        outs = [tmp / f"w{i}.ndjson" for i in range(2)]
        rules = [str(tmp / "rules.yaml")]
        workers = [_proc(tmp, f"w{i}", _cfg(tmp / f"w{i}" / "s", bootstrap, prefix, "worker",
                                            out=outs[i], rules=rules)) for i in range(2)]
        intake = _proc(tmp, "intake", _cfg(tmp / "intake" / "s", bootstrap, prefix, "intake",
                                           files=[feed], tail=True, rules=rules))
        sent: dict[str, float] = {}
        seen: dict[str, float] = {}
        try:
            for p in (*workers, intake):
                p.start()
            # A first line, then wait until both workers own partitions and it went through.
            _write_lines(feed, sent, 0, 1)
            wait_for(lambda: _read_alerts(outs, seen) >= 1, 120, "the first alert")
            total = int(rate * seconds)
            writer = threading.Thread(target=_paced, args=(feed, sent, rate, total))
            writer.start()
            deadline = time.monotonic() + seconds + 120
            while len(seen) < total + 1 and time.monotonic() < deadline:
                _read_alerts(outs, seen)
                time.sleep(0.005)
            writer.join()
        finally:
            for p in (*workers, intake):
                p.kill()
    lat = sorted(seen[k] - sent[k] for k in seen if k in sent and k != "u0")
    if not lat:
        return {"benchmark": "cluster_latency", "meets_target": False, "alerts": 0}
    p50, p99 = lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    return {"benchmark": "cluster_latency", "events_per_sec": round(rate),
            "alerts": len(lat), "expected": total, "p50_ms": round(p50 * 1000, 1),
            "p99_ms": round(p99 * 1000, 1), "meets_target": len(lat) == total,
            "scope": f"line appended to a tailed file -> intake (decode, publish, acks=all) "
                     f"-> 2 workers -> alert in the NDJSON sink read back; half the "
                     f"measured capacity; {SCOPE}"}


def _line(seq: int) -> str:
    return (f"Nov 20 08:00:00 bench-host sshd[1]: Failed password for u{seq} from "
            f"10.9.{seq >> 8 & 255}.{seq & 255} port 22 ssh2\n")


def _write_lines(feed: Path, sent: dict[str, float], first: int, count: int) -> None:
    text = "".join(_line(first + i) for i in range(count))
    now = time.time()
    with feed.open("a") as out:
        out.write(text)
    for i in range(count):
        sent[f"u{first + i}"] = now


def _paced(feed: Path, sent: dict[str, float], rate: float, total: int) -> None:
    """Append ``total`` lines at ``rate`` a second, in slices of 10 ms."""
    t0 = time.monotonic()
    done = 0
    while done < total:
        due = min(total, int((time.monotonic() - t0) * rate) + 1)
        if due > done:
            _write_lines(feed, sent, 1 + done, due - done)
            done = due
        time.sleep(0.01)


_OFFSETS: dict[str, int] = {}


def _read_alerts(outs: list[Path], seen: dict[str, float]) -> int:
    for path in outs:
        if not path.exists():
            continue
        with path.open("rb") as f:
            f.seek(_OFFSETS.get(str(path), 0))
            data = f.read()
        end = data.rfind(b"\n") + 1
        _OFFSETS[str(path)] = _OFFSETS.get(str(path), 0) + end
        now = time.time()
        for raw in data[:end].splitlines():
            user = json.loads(raw).get("user", {}).get("name")
            if isinstance(user, str):
                seen.setdefault(user, now)
    return len(seen)


BENCHMARKS = {
    "cluster_throughput": throughput,
    "cluster_rebalance": rebalance,
    "cluster_rebuild": rebuild,
    "cluster_latency": latency,
}

if __name__ == "__main__":
    results = []
    for bench in BENCHMARKS.values():
        got = bench()
        for item in got if isinstance(got, list) else [got]:
            print(json.dumps(item, ensure_ascii=False), flush=True)
            results.append(item)
    raise SystemExit(0 if all(r.get("meets_target") for r in results) else 1)
