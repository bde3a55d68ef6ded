"""The Kafka side of the cluster roles: client settings and the repartition topics.

confluent_kafka is imported inside the functions: a process without ``cluster:`` never
loads it (start-up time, and `socd check-config` of a plain config)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog
from pydantic import ValidationError

from socd.config import Config
from socd.config.cluster import ClusterConfig
from socd.errors import ConfigError, ConfigProblem
from socd.kafka.client import KafkaClientConfig, librdkafka_logger, librdkafka_settings

log = structlog.get_logger("socd.cluster")

ADMIN_TIMEOUT_SECS = 30.0


def client_config(config: Config, cluster: ClusterConfig) -> KafkaClientConfig:
    """``cluster.kafka`` checked by the shared Kafka client model (bootstrap servers,
    TLS, SASL...); a bad key is a ConfigError naming ``cluster.kafka.<key>``. (The
    section is kept as a mapping in the config model: socd.config does not import the
    Kafka package, whose models build on it.)"""
    try:
        return KafkaClientConfig.model_validate(cluster.kafka)
    except ValidationError as exc:
        raise ConfigError([
            ConfigProblem(config.file, ".".join(["cluster", "kafka",
                                                 *(str(p) for p in err["loc"])]),
                          err["msg"].removeprefix("Value error, "),
                          "see the Kafka client keys in docs/configuration.md")
            for err in exc.errors()]) from None


def client_settings(config: Config, cluster: ClusterConfig) -> dict[str, Any]:
    """librdkafka settings of the cluster's admin client; librdkafka's own log lines go
    to socd's log (not stderr)."""
    settings: dict[str, Any] = dict(librdkafka_settings(
        client_config(config, cluster), client_id="socd-cluster",
        config_dir=config.config_dir))
    settings["logger"] = librdkafka_logger("cluster")
    return settings


def group_id(cluster: ClusterConfig) -> str:
    return f"{cluster.topic_prefix}.workers"


def ensure_topics(config: Config, cluster: ClusterConfig, settings: dict[str, Any],
                  topics: Sequence[str]) -> list[str]:
    """Create the repartition topics that do not exist (``cluster.partitions`` each) and
    check that the others have that many partitions: the partition count is fixed once
    keys were spread over it (a key would move and its state with it). Returns the
    names created. Blocking (run it in a thread)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    admin = AdminClient(settings)
    try:
        metadata = admin.list_topics(timeout=ADMIN_TIMEOUT_SECS)
    except KafkaException as exc:
        raise ConfigError([ConfigProblem(
            config.file, "cluster.kafka.bootstrap_servers",
            f"cannot reach Kafka at {settings['bootstrap.servers']}: {exc}",
            "start the brokers or fix the address")]) from exc
    missing = [t for t in topics if t not in metadata.topics]
    wrong = [(t, len(metadata.topics[t].partitions)) for t in topics
             if t in metadata.topics and len(metadata.topics[t].partitions) != cluster.partitions]
    if wrong:
        listed = ", ".join(f"{t} has {n}" for t, n in wrong)
        raise ConfigError([ConfigProblem(
            config.file, "cluster.partitions",
            f"{cluster.partitions} partitions configured but {listed}",
            "the partition count of a repartition topic is fixed: set cluster.partitions "
            "to the topics' count, or use a new cluster.topic_prefix (new topics, state "
            "rebuilt from the new ones)")])
    if not missing:
        return []
    futures = admin.create_topics(
        [NewTopic(t, num_partitions=cluster.partitions,
                  replication_factor=cluster.replication_factor) for t in missing],
        operation_timeout=ADMIN_TIMEOUT_SECS, request_timeout=ADMIN_TIMEOUT_SECS)
    created = []
    for name, future in futures.items():
        try:
            future.result()
            created.append(name)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" in str(exc):
                continue  # another process of the cluster created it meanwhile
            raise ConfigError([ConfigProblem(
                config.file, "cluster.replication_factor",
                f"cannot create topic {name}: {exc}",
                "check the brokers' count and the client's ACLs")]) from exc
    if created:
        log.info("repartition topics created", topics=created,
                 partitions=cluster.partitions,
                 replication_factor=cluster.replication_factor)
    # A topic created by another process meanwhile may have another count: check again.
    if len(created) != len(missing):
        return created + ensure_topics(config, cluster, settings,
                                       [t for t in missing if t not in created])
    return created
