"""The ``elasticsearch`` sink: alerts into daily indices with explicit mappings.

* Documents use ``event.hash`` as ``_id`` and the ``create`` operation into the
  index of their event day (``<prefix>-YYYY.MM.DD``): a retried bulk request
  gets ``409`` for what it already stored, which counts as success, so a retry
  never creates a duplicate and never overwrites an analyst's later changes.
* The index template is generated from :data:`socd.event.FIELDS`, so the
  mapping and the documented event model cannot drift apart.
* Connection errors, 429 and 5xx make the whole batch retry (idempotent, see
  above); a document Elasticsearch rejects (mapping conflict) is dead-lettered
  and never retried.

Supported servers: Elasticsearch 8.x and 9.x (the 8.x Python client talks to
both); tested against 8.19.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
import structlog
from elastic_transport import ConnectionError as TransportConnectionError
from elastic_transport import ConnectionTimeout
from elasticsearch import ApiError, AsyncElasticsearch
from elasticsearch.serializer import OrjsonSerializer
from pydantic import Field, SecretStr

from socd.config import SinkConfig
from socd.errors import HealthCheckError, SinkError
from socd.event import FIELDS, Event
from socd.plugins import PluginContext

log = structlog.get_logger("socd.alerting.elasticsearch")

_RETRYABLE_STATUS = {429, 500, 502, 503, 504}


def index_template(prefix: str, *, shards: int = 1, replicas: int = 0) -> dict[str, Any]:
    """The composable index template for ``<prefix>-*`` built from the event model."""
    properties: dict[str, Any] = {}
    for spec in FIELDS:
        node = properties
        parts = spec.name.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {"properties": {}})["properties"]
        mapping: dict[str, Any] = {"type": spec.type}
        if spec.type == "keyword":
            mapping["ignore_above"] = 1024
        if spec.name == "event.original":
            mapping.update(index=False, doc_values=False)
        node[parts[-1]] = mapping
    return {
        "index_patterns": [f"{prefix}-*"],
        "priority": 200,
        "template": {
            "settings": {"number_of_shards": shards, "number_of_replicas": replicas,
                         "refresh_interval": "1s"},
            "mappings": {
                "dynamic": True,
                "date_detection": False,
                # Vendor fields not in the model stay searchable as keywords.
                "dynamic_templates": [
                    {"strings_as_keyword": {"match_mapping_type": "string",
                                            "mapping": {"type": "keyword",
                                                        "ignore_above": 1024}}}],
                "properties": properties,
            },
        },
        "_meta": {"managed_by": "socd", "description": "socd alerts (ECS + socd.*)"},
    }


class ElasticsearchSink:
    """Bulk-indexes alerts; see the module documentation for the guarantees."""

    class Config(SinkConfig):
        type: Literal["elasticsearch"]
        hosts: list[str] = Field(default_factory=lambda: ["http://127.0.0.1:9200"],
                                 min_length=1)
        index_prefix: str = Field("socd-alerts", pattern=r"^[a-z0-9][a-z0-9_.-]*$",
                                  description="Indices are `<prefix>-YYYY.MM.DD` (event day, UTC).")
        username: str | None = None
        password: SecretStr | None = None
        api_key: SecretStr | None = None
        ca_file: str | None = None
        verify_certs: bool = True
        request_timeout_secs: float = Field(30.0, gt=0)
        number_of_shards: int = Field(1, ge=1)
        number_of_replicas: int = Field(0, ge=0)
        refresh: bool = Field(False, description="Refresh after each bulk (tests only).")
        bulk_max_bytes: int = Field(
            8 * 1024 * 1024, ge=64 * 1024, le=100 * 1024 * 1024,
            description="Largest bulk request body; bigger writes are split. Keep it well "
            "under the server's http.max_content_length and indexing-pressure limit.")

    def __init__(self, config: Config, ctx: PluginContext) -> None:
        self.name = ctx.name
        self.config = config
        self.ctx = ctx
        self.client: AsyncElasticsearch | None = None
        self._template_ready = False
        # event.hash of recently dead-lettered documents (bounded, oldest evicted):
        # when a bulk is retried for other items, they are not dead-lettered twice.
        self._rejected: dict[str, None] = {}

    def _make_client(self) -> AsyncElasticsearch:
        cfg = self.config
        kwargs: dict[str, Any] = {
            "request_timeout": cfg.request_timeout_secs,
            "serializer": OrjsonSerializer(),
            "retry_on_timeout": False,
            "max_retries": 0,  # the pipeline retries with backoff; no hidden retries here
        }
        if cfg.username:
            pw = cfg.password.get_secret_value() if cfg.password else ""
            kwargs["basic_auth"] = (cfg.username, pw)
        if cfg.api_key:
            kwargs["api_key"] = cfg.api_key.get_secret_value()
        if cfg.ca_file:
            kwargs["ca_certs"] = cfg.ca_file
        if not cfg.verify_certs:
            kwargs["verify_certs"] = False
        return AsyncElasticsearch(cfg.hosts, **kwargs)

    async def start(self) -> None:
        self.client = self._make_client()
        try:
            await self._ensure_template()
        except SinkError as exc:
            # Elasticsearch may come up after socd; writes retry and install the
            # template first. Alerts wait in the pipeline meanwhile.
            log.warning("elasticsearch not reachable at start; will retry", sink=self.name,
                        error=str(exc))

    async def healthcheck(self) -> None:
        """Cluster reachable, not red, and a supported major version.

        Uses ``_cluster/health`` and ``_nodes/_local`` rather than ``GET /``: the
        latter is refused by some stripped or proxied deployments (and by the
        minimal distribution the tests use) while bulk indexing works.
        """
        client = self.client or self._make_client()
        try:
            health = await client.cluster.health()
            nodes = await client.nodes.info(node_id="_local", filter_path="nodes.*.version")
        except (ApiError, TransportConnectionError, ConnectionTimeout) as exc:
            raise HealthCheckError(f"elasticsearch {self.config.hosts}: {exc}") from exc
        finally:
            if self.client is None:
                await client.close()
        versions = [str(n.get("version", "")) for n in nodes.get("nodes", {}).values()]
        version = versions[0] if versions else "unknown"
        if not version[:1].isdigit() or int(version.split(".")[0]) not in (8, 9):
            raise HealthCheckError(f"elasticsearch {version} is not supported (8.x or 9.x)")
        if health.get("status") == "red":
            raise HealthCheckError(f"elasticsearch cluster {health.get('cluster_name')} is red")
        log.info("elasticsearch reachable", sink=self.name, version=version,
                 cluster_status=health.get("status"))

    async def _ensure_template(self) -> None:
        if self._template_ready:
            return
        assert self.client is not None
        cfg = self.config
        body = index_template(cfg.index_prefix, shards=cfg.number_of_shards,
                              replicas=cfg.number_of_replicas)
        try:
            await self.client.indices.put_index_template(name=cfg.index_prefix, **body)
        except (TransportConnectionError, ConnectionTimeout) as exc:
            raise SinkError(f"cannot install index template: {exc}") from exc
        except ApiError as exc:
            raise SinkError(f"cannot install index template: {exc}",
                            retryable=exc.status_code in _RETRYABLE_STATUS) from exc
        self._template_ready = True
        log.info("index template installed", sink=self.name, template=cfg.index_prefix)

    def _index_for(self, event: Event) -> str:
        ts: str = event["@timestamp"]
        # RFC 3339 "2026-11-16T08:12:44+07:00": the UTC day keeps one index per day
        # whatever offsets the sources use.
        if ts.endswith(("Z", "+00:00")):
            day = ts[:10]
        else:
            day = datetime.fromisoformat(ts).astimezone(UTC).date().isoformat()
        return f"{self.config.index_prefix}-{day.replace('-', '.')}"

    async def write(self, events: Sequence[Event]) -> None:
        if self.client is None:
            raise SinkError("client not started")
        await self._ensure_template()
        chunk: list[Event] = []
        parts: list[bytes] = []
        size = 0
        limit = self.config.bulk_max_bytes
        retry = 0
        for event in events:
            ev_hash = event["event"]["hash"]
            if ev_hash in self._rejected:
                continue
            action = orjson.dumps({"create": {"_index": self._index_for(event), "_id": ev_hash}})
            doc = orjson.dumps(event)
            if parts and size + len(action) + len(doc) + 2 > limit:
                retry += await self._bulk(chunk, parts)
                chunk, parts, size = [], [], 0
            chunk.append(event)
            parts += (action, doc)
            size += len(action) + len(doc) + 2
        if parts:
            retry += await self._bulk(chunk, parts)
        if retry:
            raise SinkError(f"{retry} documents were rejected temporarily (429/5xx)")

    async def _bulk(self, events: list[Event], parts: list[bytes]) -> int:
        """One bulk request; returns how many items must be retried."""
        assert self.client is not None
        body = b"\n".join(parts) + b"\n"
        try:
            resp = await self.client.bulk(
                operations=body,  # type: ignore[arg-type] # pre-serialized NDJSON is passed through
                refresh=self.config.refresh,
                filter_path="errors,items.*.status,items.*.error",
            )
        except (TransportConnectionError, ConnectionTimeout) as exc:
            raise SinkError(f"elasticsearch unreachable: {exc}") from exc
        except ApiError as exc:
            raise SinkError(f"bulk request failed: {exc}",
                            retryable=exc.status_code in _RETRYABLE_STATUS) from exc
        if not resp.get("errors"):
            return 0
        retry = 0
        for event, item in zip(events, resp["items"], strict=True):
            result = item.get("create", {})
            status = result.get("status", 0)
            if status < 300 or status == 409:
                continue  # stored now or by an earlier attempt
            if status in _RETRYABLE_STATUS:
                retry += 1
                continue
            error = result.get("error", {})
            if len(self._rejected) >= 10_000:
                del self._rejected[next(iter(self._rejected))]
            self._rejected[event["event"]["hash"]] = None
            self.ctx.dead_letter.write(
                stage=f"sink/{self.name}", reason="rejected_document", event=event,
                collector=event.get("socd", {}).get("collector", ""),
                detail=f"{status} {error.get('type', '')}: {error.get('reason', '')}")
        return retry

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
            self.client = None
