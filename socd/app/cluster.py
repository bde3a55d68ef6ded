"""The daemon's roles on Kafka (``cluster:``; docs/scaling.md).

* **intake**: collectors, decoders, enrichment, classification and the stateless rules,
  as in one process; plus one more sink, :class:`~socd.app.cluster_intake.RepartitionSink`,
  that publishes the events the stateful rules need to their repartition topics.
* **worker**: no collectors; :class:`~socd.app.cluster_worker.ClusterWorker` runs the
  stateful rules per partition and hands their alerts to the sinks and notifiers.
* **all**: both in one process (the same path, so a 2-core host may run two).

Without ``cluster:`` :meth:`ClusterRole.from_config` returns None and nothing here runs:
the single process stays Kafka-free.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import structlog

from socd.app.cluster_intake import NAME as INTAKE_SINK
from socd.app.cluster_intake import RepartitionSink, producer_config
from socd.app.cluster_kafka import client_config, client_settings, ensure_topics, group_id
from socd.app.cluster_plan import ClusterPlan, build_plan
from socd.app.cluster_worker import AlertFinisher, ClusterWorker, consumer_config
from socd.app.deadletter import DeadLetter
from socd.app.pipeline import Pipeline, SinkRunner
from socd.config import Config, SinkConfig
from socd.config.cluster import ClusterConfig, Role
from socd.engine import CompiledRule, RuleEngine
from socd.engine.classify import Classifier
from socd.errors import ConfigError, ConfigProblem
from socd.plugins import Ack

log = structlog.get_logger("socd.cluster")

ROLES: tuple[Role, ...] = ("intake", "worker", "all")


def runner_config() -> SinkConfig:
    """How the intake batches events into Kafka: small waits, the spool on (a Kafka
    outage fills the spool on disk, not the sources' patience)."""
    return SinkConfig.model_validate({
        "type": INTAKE_SINK, "select": "all", "batch_max_events": 5000,
        "flush_interval_secs": 0.05, "queue_max_batches": 64,
        "retry_max_backoff_secs": 30.0, "spool": {"enabled": True}})


class ClusterRole:
    """What ``cluster:`` adds to a :class:`~socd.app.server.Daemon`."""

    def __init__(self, config: Config, cluster: ClusterConfig, role: Role) -> None:
        self.config = config
        self.cluster = cluster
        self.role = role
        self.intake = role in ("intake", "all")
        self.worker_role = role in ("worker", "all")
        self.client = client_config(config, cluster)
        self.settings = client_settings(config, cluster)
        self.plan: ClusterPlan | None = None
        self.stateless: RuleEngine | None = None
        self.runner: SinkRunner | None = None
        self.worker: ClusterWorker | None = None
        self._classifier: Classifier | None = None

    @classmethod
    def from_config(cls, config: Config, role: str | None = None) -> ClusterRole | None:
        """The role of this process, or None without ``cluster:`` (one process)."""
        cluster = config.document.cluster
        if cluster is None:
            if role is not None:
                raise ConfigError([ConfigProblem(
                    config.file, "cluster", f"--role {role} needs a cluster: section",
                    "add cluster: {kafka: {bootstrap_servers: [...]}} (docs/scaling.md), "
                    "or run without --role (one process)")])
            return None
        chosen = role if role is not None else cluster.role
        if chosen not in ROLES:
            raise ConfigError([ConfigProblem(config.file, "cluster.role",
                                             f"unknown role {chosen!r}",
                                             "intake, worker or all")])
        return cls(config, cluster, chosen)

    # -- wiring ----------------------------------------------------------------------

    def _engine(self, rules: Sequence[CompiledRule]) -> RuleEngine:
        """An engine over some of the pack's rules with the daemon's settings."""
        cfg = self.config.document.rules
        lookup = self._classifier.ioc_lookup if self._classifier is not None else None
        return RuleEngine(rules, ioc_lookup=lookup,
                          max_out_of_order_secs=cfg.max_out_of_order_secs,
                          max_field_bytes=cfg.max_field_bytes,
                          max_clock_skew_secs=cfg.max_clock_skew_secs)

    def prepare(self, classifier: Classifier) -> None:
        """Split the classifier's rules: it keeps the stateless ones (intake) or none
        (worker); the stateful ones go to the plan's topics."""
        self._classifier = classifier
        assert classifier.rules is not None
        self.plan = build_plan(classifier.rules.rules, self.cluster.topic_prefix, self._engine)
        self.stateless = self._engine(self.plan.stateless if self.intake else [])
        classifier.rules = self.stateless
        log.info("cluster rule split", role=self.role,
                 stateless_rules=len(self.plan.stateless),
                 topics={t.name: [r.id for r in t.rules] for t in self.plan.topics})

    def adapt(self, classifier: Classifier) -> None:
        """On reload: the running split stays (a change of the rules needs a rolling
        restart of intake and workers, which must agree on the topics)."""
        if self.stateless is not None and self.plan is not None:
            classifier.rules = self.stateless
            self._classifier = classifier
            # the running rules' `ioc` conditions read the reloaded IoC store
            for crule in [*self.stateless.rules, *(r for t in self.plan.topics
                                                   for r in t.rules)]:
                crule.ioc.lookup = classifier.ioc_lookup

    async def start(self) -> None:
        """Create or check the repartition topics; build the intake's sink runner."""
        assert self.plan is not None
        await asyncio.to_thread(ensure_topics, self.config, self.cluster, self.settings,
                                self.plan.topic_names)

    async def intake_runner(self, dead_letter: DeadLetter) -> SinkRunner | None:
        """The runner of the sink that publishes to Kafka (intake roles), started."""
        if not self.intake or self.plan is None:
            return None
        sink = RepartitionSink(self.plan, producer_config(self.client, self.config.config_dir),
                               dead_letter)
        await sink.start()
        runner = SinkRunner(INTAKE_SINK, sink, runner_config(), dead_letter,
                            state_dir=self.config.state_dir)
        try:
            await sink.healthcheck()
            runner.mark_up(True)
        except Exception as exc:
            log.warning("Kafka not reachable at start; publishing will retry", error=str(exc))
        self.runner = runner
        return runner

    async def start_worker(self, pipeline: Pipeline, dead_letter: DeadLetter) -> None:
        """Join the workers' group (worker roles)."""
        if not self.worker_role or self.plan is None:
            return
        async def deliver(alerts: list[Any], ack: Ack, received: float) -> None:
            await pipeline.submit_processed(alerts, ack, received)

        def refresh() -> None:
            classifier = self._classifier  # the reloaded one after a SIGHUP
            if classifier is not None:
                classifier.iocs.maybe_refresh()  # `ioc` conditions see imports and expiry

        settings = consumer_config(self.client, self.config.config_dir,
                                   group_id(self.cluster), self.cluster)
        self.worker = ClusterWorker(
            self.plan, settings, self.cluster, self._engine, deliver,
            AlertFinisher(self.config.document.classification), dead_letter,
            before_batch=refresh)
        await self.worker.start()

    async def stop(self, drain_secs: float) -> None:
        """Leave the group once the batches in flight are stored (their offsets
        committed; at most ``drain_secs``); the intake's runner stops with the pipeline."""
        worker, self.worker = self.worker, None
        if worker is not None:
            await worker.stop(drain_secs)

    def status(self) -> dict[str, Any]:
        """For /readyz: the role and, for a worker, its partitions."""
        out: dict[str, Any] = {"role": self.role}
        if self.worker is not None:
            out["partitions"] = len(self.worker.parts)
        return out
