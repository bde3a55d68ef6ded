"""What the cluster worker tests share (issue 18): a repartition topic on the real broker
(the `make services` Kafka), the worker's configuration around it, a delivery that
keeps the alerts, and polling without fixed sleeps.

A test builds a :class:`WorkerRig` from its rule text, makes workers (and publishing
sinks) from it and closes it at the end: the dead-letter store is closed and the
topic deleted.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from socd.app.cluster_intake import RepartitionSink, producer_config
from socd.app.cluster_plan import build_plan
from socd.app.cluster_worker import AlertFinisher, ClusterWorker, consumer_config
from socd.app.deadletter import DeadLetter
from socd.config import ClassificationConfig
from socd.config.cluster import ClusterConfig
from socd.engine import CompiledRule, RuleEngine, load_text
from socd.event import Event
from socd.kafka.client import KafkaClientConfig
from socd.plugins import Ack


async def until(condition: Callable[[], bool], what: str, limit_secs: float = 60) -> None:
    """Poll a state (no fixed sleep decides anything): fail after ``limit_secs``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_secs
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def delete_topics(bootstrap: str, prefix: str, timeout_secs: float = 30) -> None:
    """Delete the topics whose names start with ``prefix`` and wait for the broker's
    answer: the shared test broker would otherwise keep every test's topics while it
    runs (``delete_topics`` only sends the request when the client lives long enough)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    names = [t for t in admin.list_topics(timeout=timeout_secs).topics if t.startswith(prefix)]
    if names:
        for future in admin.delete_topics(names, operation_timeout=timeout_secs).values():
            future.result()


def threshold_rules(rule_id: str) -> str:
    """A rule file with one windowed rule on the repartition path the tests use: 5
    failures of one ``source.ip`` within 10 minutes (its plan: one topic, by source.ip)."""
    return f"""
rules:
  - id: {rule_id}
    title: "Dò mật khẩu (kiểm thử)"
    severity: high
    match: {{field: event.outcome, equals: failure}}
    threshold: {{count: 5, window: 10m, group_by: [source.ip]}}
"""


def make_engine(subset: Any) -> RuleEngine:
    return RuleEngine(subset)


def one_process(rules: list[CompiledRule], events: list[Event]) -> list[Event]:
    """The alerts one RuleEngine raises for ``events`` (copies: the engine stamps them)."""
    given = [dict(e) for e in events]
    return RuleEngine(rules).process(given)[len(given):]


class WorkerRig:
    """The single repartition topic of a one-rule plan, created with ``partitions``
    partitions under a fresh prefix, and the worker configuration for it."""

    def __init__(self, bootstrap: str, tmp_path: Path, rules_text: str, tag: str,
                 partitions: int = 1) -> None:
        from confluent_kafka.admin import AdminClient
        from confluent_kafka.cimpl import NewTopic

        rules, problems = load_text(rules_text)
        assert not problems
        self.rules = rules
        self.bootstrap = bootstrap
        self.tmp_path = tmp_path
        self.prefix = f"{tag}{uuid.uuid4().hex[:8]}"
        self.group = f"{self.prefix}.workers"
        self.plan = build_plan(rules, self.prefix, make_engine)
        [self.topic] = self.plan.topics
        self.admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
        self.admin.create_topics([NewTopic(self.topic.name, num_partitions=partitions,
                                           replication_factor=1)])[self.topic.name].result()
        self.client = KafkaClientConfig.model_validate({"bootstrap_servers": [bootstrap]})
        self.cluster = ClusterConfig.model_validate(
            {"kafka": {}, "topic_prefix": self.prefix, "partitions": partitions,
             "session_timeout_ms": 6000})
        self.dead = DeadLetter(str(tmp_path / "dead-letter"))
        self.alerts: list[Event] = []

    async def deliver(self, batch: list[Event], ack: Ack, _received: float) -> None:
        self.alerts.extend(batch)
        ack.pending = 1
        ack.done()

    def worker(self) -> ClusterWorker:
        return ClusterWorker(self.plan, consumer_config(self.client, str(self.tmp_path),
                                                        self.group, self.cluster),
                             self.cluster, make_engine, self.deliver,
                             AlertFinisher(ClassificationConfig()), self.dead)

    def sink(self) -> RepartitionSink:
        """A publishing sink: one producer session, as one intake run."""
        return RepartitionSink(self.plan, producer_config(self.client, str(self.tmp_path)),
                               self.dead)

    def close(self) -> None:
        self.dead.close()
        delete_topics(self.bootstrap, self.prefix)
