"""The ``cluster:`` section: partitioned correlation on Apache Kafka (docs/scaling.md).

Without it socd is one process and never imports a Kafka client. With it, a process
plays the role ``intake`` (collectors, decoding, enrichment, stateless rules; publishes
the events the stateful rules need to one repartition topic per group-by key), ``worker``
(consumes those topics in one consumer group and keeps rule state per partition) or
``all`` (both in one process); ``socd run --role`` overrides the role.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator

from socd.config.models import StrictModel

Role = Literal["intake", "worker", "all"]
_TOPIC_PART = re.compile(r"^[A-Za-z0-9._-]{1,100}$")


class ClusterConfig(StrictModel):
    """Where the repartition topics live and how this process takes part."""

    kafka: dict[str, Any] = Field(
        default_factory=dict, description="The Kafka client settings (bootstrap_servers, "
        "TLS, SASL...): the same keys as a `kafka` collector's client settings "
        "(docs/configuration.md, Kafka client).")
    role: Role = Field("all", description="`intake`, `worker` or `all` (both in one process); "
                       "`socd run --role` overrides it.")
    topic_prefix: str = Field("socd", description="Repartition topics are "
                              "`<topic_prefix>.events.by.<group-by fields>`; the workers' "
                              "consumer group is `<topic_prefix>.workers`.")
    partitions: int = Field(12, ge=1, le=10_000, description="Partitions of every repartition "
                            "topic, fixed when socd creates it: the most workers that can "
                            "share the work. At start socd refuses a topic that has another "
                            "count.")
    replication_factor: int = Field(1, ge=1, le=16, description="Replicas of each "
                                    "repartition topic socd creates (3 on a real cluster).")
    rebuild_slack_secs: float = Field(
        300.0, ge=0, le=86400, description="A worker taking over a partition replays its "
        "messages from now minus the longest window of the partition's rules minus this, "
        "alerts muted, to rebuild the rules' state.")
    batch_max_events: int = Field(5000, ge=1, le=100_000, description="Messages a worker "
                                  "takes per poll.")
    max_in_flight_batches: int = Field(8, ge=1, le=1000, description="Batches a worker has "
                                       "handed to the sinks and not yet seen stored; offsets "
                                       "are committed once a batch's alerts are stored.")
    session_timeout_ms: int = Field(10_000, ge=1000, le=300_000, description="How long the "
                                    "group waits for a silent (crashed) worker before giving "
                                    "its partitions to the others.")

    @field_validator("topic_prefix")
    @classmethod
    def _topic_name(cls, value: str) -> str:
        if not _TOPIC_PART.match(value):
            raise ValueError("use letters, digits, '.', '_' and '-' (at most 100)")
        return value
