"""The ``elasticsearch`` sink: alerts into daily indices with explicit mappings.

* Documents use ``event.hash`` as ``_id`` and the ``create`` operation into the
  index of their event day (``<prefix>-YYYY.MM.DD``, UTC): a retried bulk request
  gets ``409`` for what it already stored, which counts as success, so a retry
  never creates a duplicate and never overwrites an analyst's later changes.
* Why daily indices and not a data stream: a data stream only accepts ``create``,
  but its write index changes at every rollover, so a retry after a rollover
  lands in a new backing index where the ``_id`` is unknown and the alert is
  stored twice; deduplication by ``_id`` only holds while one index owns a day,
  which the event-day name guarantees. Data streams also need index lifecycle
  management (ILM) to roll over and expire, and the minimal distribution
  without X-Pack that socd is tested against has none. Daily indices named by
  event day are also what retention below works on.
* Index templates are installed (``PUT``, idempotent) at start and before the
  first write: component templates ``<prefix>-mappings`` (generated from
  :data:`socd.event.FIELDS`, so the mapping and the documented event model cannot
  drift apart) and ``<prefix>-settings``, composed by the index template
  ``<prefix>``. Their ``_meta`` carries ``socd_version`` and ``fields_hash``;
  the log says whether the stored template was missing, older or the same. A
  new mapping applies from the next index (tomorrow's, at the latest).
* Retention (``retention_days``, 0 keeps everything): when the server has ILM, a
  policy ``<prefix>-retention`` deletes an index ``retention_days`` after the
  day in its name. Without ILM socd deletes them itself, at start and every
  ``retention_check_interval_secs``: only indices named exactly
  ``<prefix>-YYYY.MM.DD`` whose day is older than that, and dead-letter indices
  whose whole month is; never anything else, never the current month's
  dead-letter index. A failed check (server down) is logged and tried again.
  A user without ILM privileges on a server with ILM gets a warning: socd then
  stores alerts but enforces no retention.
* Connection errors, 408, 429 and 5xx make the batch retry (idempotent, see
  above). So do 401 and 403: wrong credentials or missing privileges are an
  operator's mistake, not the alerts' fault; the sink logs an error at every
  failed attempt and keeps the batch (the pipeline retries with backoff and
  spools it) until the credentials are fixed, rather than dead-lettering alerts.
* A document Elasticsearch rejects for itself (a mapping conflict: any other 4xx)
  is never retried: it goes once to the dead-letter file and to the hidden
  dead-letter index ``<prefix>-deadletter-YYYY.MM`` (dynamic mapping off, the
  document as text in ``event.original``, so that write cannot be rejected in
  turn; ``expand_wildcards=all`` or a Kibana data view with hidden indices shows
  it). When that index cannot be written the file still has the document.
* A batch bigger than ``bulk_max_bytes`` is split; a large batch is split into
  ``bulk_concurrency`` bulk requests sent at once, so Elasticsearch indexes them
  on several threads while ``write`` still returns only when all are stored.

Supported servers: Elasticsearch 8.x and 9.x (the 8.x Python client talks to
both); tested against 8.19.
"""

from __future__ import annotations

import asyncio
import calendar
import hashlib
import math
import os
import re
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

import orjson
import structlog
from elastic_transport import ConnectionError as TransportConnectionError
from elastic_transport import ConnectionTimeout, TlsError, TransportError
from elasticsearch import ApiError, AsyncElasticsearch
from elasticsearch.serializer import NdjsonSerializer, OrjsonSerializer
from pydantic import Field, SecretStr, model_validator

from socd import __version__
from socd.config import SinkConfig, SpoolConfig
from socd.errors import HealthCheckError, SinkError
from socd.event import FIELDS, Event
from socd.plugins import PluginContext
from socd.tasks import stop_task
from socd.tz import parse_iso

log = structlog.get_logger("socd.alerting.elasticsearch")

_RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
# Credentials or privileges: fixed by an operator, so retried (and logged loudly).
_AUTH_STATUS = frozenset({401, 403})
# Per-document errors that are about the cluster, not the document.
_RETRYABLE_ERROR_TYPES = frozenset({"cluster_block_exception", "index_not_found_exception",
                                    "security_exception", "es_rejected_execution_exception"})
_REJECTED_MEMORY = 10_000  # event.hash values remembered as dead-lettered
_MIN_SPLIT_BYTES = 256 * 1024  # smaller batches go in one request
_DELETE_CHUNK = 50  # indices per DELETE request (URL length)
_TEMPLATE_PRIORITY = 200


# -- templates ---------------------------------------------------------------------------------


def mappings() -> dict[str, Any]:
    """The mappings of the alert indices, built from :data:`socd.event.FIELDS`."""
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
        "dynamic": True,
        "date_detection": False,
        # Vendor fields not in the model stay searchable as keywords.
        "dynamic_templates": [
            {"strings_as_keyword": {"match_mapping_type": "string",
                                    "mapping": {"type": "keyword", "ignore_above": 1024}}}],
        "properties": properties,
    }


def settings(*, shards: int = 1, replicas: int = 0, lifecycle: str | None = None,
             daily: bool = True) -> dict[str, Any]:
    """Index settings; ``lifecycle`` names the ILM policy when the server has ILM."""
    out: dict[str, Any] = {"number_of_shards": shards, "number_of_replicas": replicas,
                           "refresh_interval": "1s"}
    if lifecycle:
        out["index.lifecycle.name"] = lifecycle
        if daily:
            # ILM then counts an index's age from the day in its name
            # (``<prefix>-YYYY.MM.DD``), not from when a late alert created it.
            out["index.lifecycle.parse_origination_date"] = True
    return out


def dead_letter_mappings() -> dict[str, Any]:
    """A tiny fixed mapping that no document can conflict with (``dynamic: false``)."""
    return {
        "dynamic": False,
        "properties": {
            "@timestamp": {"type": "date"},
            "socd": {"properties": {"sink": {"type": "keyword"}}},
            "error": {"properties": {"type": {"type": "keyword"},
                                     "message": {"type": "text"}}},
            "event": {"properties": {"hash": {"type": "keyword"},
                                     "original": {"type": "keyword", "index": False,
                                                  "doc_values": False}}},
        },
    }


def index_template(prefix: str, *, shards: int = 1, replicas: int = 0,
                   lifecycle: str | None = None) -> dict[str, Any]:
    """The composable index template for ``<prefix>-*``, self-contained.

    :func:`templates` installs the same mappings and settings as component
    templates; this form is what the index template composes to.
    """
    return {
        "index_patterns": [f"{prefix}-*"],
        "priority": _TEMPLATE_PRIORITY,
        "template": {"settings": settings(shards=shards, replicas=replicas, lifecycle=lifecycle),
                     "mappings": mappings()},
        "_meta": {"managed_by": "socd", "description": "socd alerts (ECS + socd.*)"},
    }


def retention_policy(days: int) -> dict[str, Any]:
    """The ILM policy body: delete ``days`` days after the index's day."""
    return {"phases": {"delete": {"min_age": f"{days}d", "actions": {"delete": {}}}},
            "_meta": {"managed_by": "socd", "socd_version": __version__}}


def templates(prefix: str, *, shards: int = 1, replicas: int = 0,
              lifecycle: str | None = None, dead_letter_index: bool = True,
              ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """``(component templates, index templates)`` by name, ``_meta`` included.

    ``_meta.fields_hash`` is a digest of everything generated here (mappings from
    :data:`socd.event.FIELDS`, settings, the dead-letter template): equal hashes
    mean an upgrade changes nothing.
    """
    components = {
        f"{prefix}-mappings": {"template": {"mappings": mappings()}},
        f"{prefix}-settings": {"template": {"settings": settings(
            shards=shards, replicas=replicas, lifecycle=lifecycle)}},
    }
    indexes: dict[str, dict[str, Any]] = {
        prefix: {"index_patterns": [f"{prefix}-*"], "priority": _TEMPLATE_PRIORITY,
                 "composed_of": list(components)},
    }
    if dead_letter_index:
        dl_settings = settings(shards=1, replicas=replicas, lifecycle=lifecycle, daily=False)
        # Hidden: `<prefix>-*` searches (dashboards, `socd alert`) never see dead letters.
        dl_settings["hidden"] = True
        indexes[f"{prefix}-deadletter"] = {
            # The higher priority wins over `<prefix>-*` for these names.
            "index_patterns": [f"{prefix}-deadletter-*"], "priority": _TEMPLATE_PRIORITY + 1,
            "template": {"settings": dl_settings, "mappings": dead_letter_mappings()}}
    digest = hashlib.blake2b(orjson.dumps([components, indexes], option=orjson.OPT_SORT_KEYS),
                             digest_size=8).hexdigest()
    for name, body in (*components.items(), *indexes.items()):
        body["_meta"] = {"managed_by": "socd", "socd_version": __version__, "fields_hash": digest,
                         "description": "documents the socd sink could not store"
                         if name == f"{prefix}-deadletter" else "socd alerts (ECS + socd.*)"}
    return components, indexes


# -- index names -------------------------------------------------------------------------------


def daily_index(prefix: str, day: date) -> str:
    return f"{prefix}-{day:%Y.%m.%d}"


def dead_letter_index(prefix: str, when: datetime) -> str:
    return f"{prefix}-deadletter-{when:%Y.%m}"


def expired_indices(names: Sequence[str], prefix: str, today: date,
                    retention_days: int) -> list[str]:
    """The names in ``names`` that retention deletes, oldest first.

    Only ``<prefix>-YYYY.MM.DD`` with a day more than ``retention_days`` before
    ``today``, and ``<prefix>-deadletter-YYYY.MM`` whose last day is; any other
    name (another prefix, a restored copy, a typo) is never selected.
    """
    if retention_days <= 0:
        return []
    daily = re.compile(re.escape(prefix) + r"-(\d{4})\.(\d{2})\.(\d{2})")
    monthly = re.compile(re.escape(prefix) + r"-deadletter-(\d{4})\.(\d{2})")
    cutoff = today - timedelta(days=retention_days)
    found: list[tuple[date, str]] = []
    for name in names:
        try:
            if m := daily.fullmatch(name):
                day = date(int(m[1]), int(m[2]), int(m[3]))
            elif m := monthly.fullmatch(name):
                year, month = int(m[1]), int(m[2])
                if (year, month) >= (today.year, today.month):
                    continue  # the month being written
                day = date(year, month, calendar.monthrange(year, month)[1])
            else:
                continue
        except ValueError:  # 2026.13.45: not a name socd wrote
            continue
        if day < cutoff:
            found.append((day, name))
    return [name for _, name in sorted(found)]


def connection_options(cfg: ElasticsearchSink.Config) -> dict[str, Any]:
    """The client options of a sink's cluster that every client of it uses (the sink's,
    and the synchronous one of ``socd alert`` and the reports,
    :func:`socd.alerts.lifecycle.es_client`):
    the request timeout, no retries of the client's own, authentication and TLS
    (``ca_file`` as given, not resolved)."""
    kwargs: dict[str, Any] = {"request_timeout": cfg.request_timeout_secs,
                              "max_retries": 0, "retry_on_timeout": False}
    if cfg.username:
        password = cfg.password.get_secret_value() if cfg.password else ""
        kwargs["basic_auth"] = (cfg.username, password)
    if cfg.api_key:
        kwargs["api_key"] = cfg.api_key.get_secret_value()
    if cfg.ca_file:
        kwargs["ca_certs"] = cfg.ca_file
    if not cfg.verify_certs:
        kwargs["verify_certs"] = False
    return kwargs


def _safe_hosts(hosts: Sequence[str]) -> str:
    """Hosts for messages, without credentials embedded in a URL."""
    return ", ".join(re.sub(r"//[^/@]*@", "//", h) for h in hosts)


def _transport_text(exc: TransportError) -> str:
    # The transport replaces ``errors`` (the underlying exception) by the earlier
    # attempts, of which there are none without retries; ``message`` keeps its text.
    message = exc.message if isinstance(exc.message, str) else ""
    return message or str(exc)


def _error_type(exc: ApiError) -> str:
    body = exc.body
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            return str(err.get("type", ""))
        return str(err or "")
    return str(body or "")


class _ResponseSerializer(OrjsonSerializer):
    """orjson, but a bulk response that reports no errors is not parsed past that
    flag: its items (one status per document, 2,000 small objects a batch) are read
    only when some document failed, and parsing them was a sixth of the sink's CPU."""

    def json_loads(self, data: bytes) -> Any:
        if data.startswith(_BULK_WITHOUT_ERRORS):
            return {"errors": False}
        return orjson.loads(data)


# How a bulk response filtered to errors, items.*.status and items.*.error begins when
# every document was stored: "errors" is its first key (no other API answers with it).
_BULK_WITHOUT_ERRORS = b'{"errors":false,'


class _BulkBodySerializer(NdjsonSerializer):
    """Passes a pre-built NDJSON body through; the stock one copies it twice."""

    def dumps(self, data: Any) -> bytes:
        if isinstance(data, bytes) and data.endswith(b"\n"):
            return data
        return super().dumps(data)


class ElasticsearchSink:
    """Bulk-indexes alerts; see the module documentation for the guarantees."""

    class Config(SinkConfig):
        type: Literal["elasticsearch"]
        hosts: list[str] = Field(default_factory=lambda: ["http://127.0.0.1:9200"],
                                 min_length=1, description="Node URLs, `http://` or "
                                 "`https://` (TLS).")
        index_prefix: str = Field("socd-alerts", pattern=r"^[a-z0-9][a-z0-9_.-]*$",
                                  description="Indices are `<prefix>-YYYY.MM.DD` (event day, UTC).")
        username: str | None = Field(None, description="Basic authentication user.")
        password: SecretStr | None = Field(None, description="Basic authentication password; "
                                           "never logged.")
        api_key: SecretStr | None = Field(
            None, description="API key, the base64 `id:api_key` form Elasticsearch returns as "
            "`encoded` (instead of username/password); never logged.")
        ca_file: str | None = Field(
            None, description="PEM file of the CA that signed the server certificate of "
            "`https://` hosts; the system CAs otherwise. Used as given, not resolved against "
            "the config file's folder: write an absolute path.")
        verify_certs: bool = Field(True, description="Verify the server certificate (keep on).")
        request_timeout_secs: float = Field(30.0, gt=0, description="Timeout of one request "
                                            "(bulk, health check).")
        number_of_shards: int = Field(1, ge=1, description="Primary shards of each daily "
                                      "index (an index template setting).")
        number_of_replicas: int = Field(0, ge=0, description="Replicas of each daily index; "
                                        "0 suits a single node.")
        refresh: bool = Field(False, description="Refresh after each bulk (tests only).")
        bulk_max_bytes: int = Field(
            8 * 1024 * 1024, ge=64 * 1024, le=100 * 1024 * 1024,
            description="Largest bulk request body; bigger writes are split. Keep it well "
            "under the server's http.max_content_length and indexing-pressure limit.")
        bulk_concurrency: int = Field(
            2, ge=1, le=16, description="Bulk requests one write sends at once: a batch over "
            "256 KiB is split in up to this many, so the server indexes it on several threads. "
            "Writes stay in order; the parts of one write may be indexed in any order (set 1 "
            "when documents must be indexed strictly in arrival order).")
        retention_days: int = Field(
            90, ge=0, description="Delete daily indices whose day is older than this (and "
            "dead-letter indices whose month is); 0 keeps everything. An ILM policy does it "
            "when the server has ILM, socd itself otherwise.")
        retention_check_interval_secs: float = Field(
            3600.0, ge=1, description="How often socd looks for expired indices (without ILM).")
        dead_letter_index: bool = Field(
            True, description="Also store rejected documents in the hidden index "
            "`<prefix>-deadletter-YYYY.MM` (they always go to the dead-letter file).")
        spool: SpoolConfig = SpoolConfig(enabled=True)

        @model_validator(mode="after")
        def _one_kind_of_auth(self) -> ElasticsearchSink.Config:
            if self.api_key is not None and self.username:
                raise ValueError("set either api_key or username/password, not both")
            if self.password is not None and not self.username:
                raise ValueError("password is set but username is not")
            return self

    def __init__(self, config: Config, ctx: PluginContext) -> None:
        self.name = ctx.name
        self.config = config
        self.ctx = ctx
        self.client: AsyncElasticsearch | None = None
        self._started = False
        self._template_ready = False
        self._setup_lock = asyncio.Lock()
        self.ilm: bool | None = None  # whether the server has ILM; None until known
        self._retention_task: asyncio.Task[None] | None = None
        # event.hash of recently dead-lettered documents (bounded, oldest evicted):
        # when a bulk is retried for other items, they are not dead-lettered twice.
        self._rejected: dict[str, None] = {}
        # "<minute><offset>" of a timestamp -> its index; see _index_for.
        self._day_index: dict[str, str] = {}
        self._action_prefix: dict[str, bytes] = {}
        self._retry_reason = ""

    # -- lifecycle -------------------------------------------------------------------------

    def _make_client(self) -> AsyncElasticsearch:
        cfg = self.config
        if cfg.ca_file and not os.path.isfile(cfg.ca_file):
            raise HealthCheckError(f"elasticsearch {_safe_hosts(cfg.hosts)}: ca_file "
                                   f"{cfg.ca_file} is not a file")
        kwargs = connection_options(cfg)  # the pipeline retries with backoff, not the client
        kwargs["serializers"] = {OrjsonSerializer.mimetype: _ResponseSerializer(),
                                 NdjsonSerializer.mimetype: _BulkBodySerializer()}
        kwargs["http_compress"] = False  # local network: compression costs more CPU than it saves
        if not cfg.verify_certs:
            kwargs["ssl_show_warn"] = False
        try:
            return AsyncElasticsearch(cfg.hosts, **kwargs)
        except (OSError, ValueError) as exc:  # unreadable ca_file, bad URL
            raise HealthCheckError(f"elasticsearch {_safe_hosts(cfg.hosts)}: {exc}") from exc

    async def start(self) -> None:
        self._started = True
        try:
            await self._ensure_setup()
        except SinkError as exc:
            # Elasticsearch may come up after socd (or a bad ca_file be fixed): writes
            # retry and install the templates first. Alerts wait in the pipeline.
            log.warning("elasticsearch not ready at start; will retry", sink=self.name,
                        error=str(exc))
        if self.config.retention_days > 0:
            self._retention_task = asyncio.create_task(
                self._retention_loop(), name=f"sink/{self.name}/retention")

    def _ready_client(self) -> AsyncElasticsearch:
        if self.client is None:
            if not self._started:
                raise SinkError("client not started")
            try:
                self.client = self._make_client()
            except HealthCheckError as exc:
                raise SinkError(str(exc)) from exc
        return self.client

    async def healthcheck(self) -> None:
        """Cluster reachable, credentials accepted, not red, a supported major version.

        Uses ``_cluster/health`` and ``_nodes/_local`` rather than ``GET /``: the
        latter is refused by some stripped or proxied deployments (and by the
        minimal distribution the tests use) while bulk indexing works.
        """
        client = self.client or self._make_client()
        where = f"elasticsearch {_safe_hosts(self.config.hosts)}"
        try:
            health = await client.cluster.health()
            nodes = await client.nodes.info(node_id="_local", filter_path="nodes.*.version")
        except ApiError as exc:
            raise HealthCheckError(f"{where}: {self._describe_api_error(exc)}") from exc
        except TlsError as exc:
            raise HealthCheckError(f"{where}: TLS failed: {_transport_text(exc)}"
                                   f"{self._tls_hint(exc)}") from exc
        except (TransportConnectionError, ConnectionTimeout) as exc:
            raise HealthCheckError(f"{where}: unreachable: {_transport_text(exc)}") from exc
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

    def _describe_api_error(self, exc: ApiError) -> str:
        status = exc.status_code
        if status == 401:
            how = "api_key" if self.config.api_key else "username/password"
            return f"authentication failed (401): check {how}"
        if status == 403:
            return f"permission denied (403): {exc.message}; the user needs index and monitor " \
                   f"privileges on {self.config.index_prefix}-*"
        return f"{status} {exc.message}"

    def _tls_hint(self, exc: TransportError) -> str:
        text = _transport_text(exc)
        if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
            return (" (the server certificate is not trusted: set ca_file to the CA that "
                    "signed it)" if not self.config.ca_file else
                    f" (the server certificate is not signed by ca_file {self.config.ca_file})")
        return ""

    def _sink_error(self, what: str, exc: Exception) -> SinkError:
        """Turns a client exception into the SinkError the pipeline acts on."""
        if isinstance(exc, ApiError):
            status = exc.status_code
            if status in _AUTH_STATUS:
                log.error("elasticsearch refused the credentials; alerts are kept and retried "
                          "until the configuration is fixed", sink=self.name, status=status,
                          error=self._describe_api_error(exc))
                return SinkError(f"{what}: {self._describe_api_error(exc)}", retryable=True)
            return SinkError(f"{what}: {status} {exc.message}",
                             retryable=status in _RETRYABLE_STATUS)
        if isinstance(exc, TlsError):
            return SinkError(f"{what}: TLS failed: {_transport_text(exc)}{self._tls_hint(exc)}")
        if isinstance(exc, TransportError):
            return SinkError(f"elasticsearch unreachable: {_transport_text(exc)}")
        return SinkError(f"{what}: {exc}")

    async def close(self) -> None:
        await stop_task(self._retention_task)
        self._retention_task = None
        if self.client is not None:
            await self.client.close()
            self.client = None

    # -- templates and retention -----------------------------------------------------------

    async def _ensure_setup(self) -> None:
        self._ready_client()
        if self._template_ready:
            return
        async with self._setup_lock:
            if self._template_ready:
                return
            try:
                await self._install()
            except (ApiError, TransportError) as exc:
                error = self._sink_error("cannot install index templates", exc)
                if not error.retryable:
                    # A template the server refuses (say, overlapping prefixes of two
                    # sinks) is a configuration error: keep the alerts until it is fixed.
                    log.error("elasticsearch refused the index templates; alerts are kept "
                              "and retried until the configuration is fixed",
                              sink=self.name, error=str(error))
                    error.retryable = True
                raise error from exc
            self._template_ready = True

    async def _detect_ilm(self) -> bool:
        """Whether the server has the ILM API: a missing policy is a 404 about the
        policy; a server without ILM has no handler for the path at all."""
        assert self.client is not None
        try:
            await self.client.ilm.get_lifecycle(name=f"{self.config.index_prefix}-retention")
        except ApiError as exc:
            kind = _error_type(exc)
            if exc.status_code == 404 and kind.endswith(("resource_not_found_exception",
                                                         "index_not_found_exception")):
                return True
            text = f"{kind} {exc.message}".lower()
            if exc.status_code in (400, 404, 405, 410) and any(
                    s in text for s in ("no handler", "unrecognized", "incorrect http method",
                                        "no feature", "not found")):
                return False
            raise
        return True

    async def _install(self) -> None:
        assert self.client is not None
        cfg = self.config
        prefix = cfg.index_prefix
        lifecycle = None
        try:
            self.ilm = await self._detect_ilm()
            if self.ilm and cfg.retention_days > 0:
                lifecycle = f"{prefix}-retention"
                await self.client.ilm.put_lifecycle(name=lifecycle,
                                                    policy=retention_policy(cfg.retention_days))
        except ApiError as exc:
            if exc.status_code != 403:
                raise
            # A writer without ILM privileges can still store alerts: do that, and say
            # that retention is nobody's job until an operator decides.
            self.ilm, lifecycle = None, None
            log.warning("no privilege to manage ILM policies; retention is not enforced "
                        "(grant manage_ilm, or set retention_days: 0)", sink=self.name,
                        error=str(exc.message))
        components, indexes = templates(
            prefix, shards=cfg.number_of_shards, replicas=cfg.number_of_replicas,
            lifecycle=lifecycle, dead_letter_index=cfg.dead_letter_index)
        new_meta = indexes[prefix]["_meta"]
        try:
            stored = await self.client.indices.get_index_template(name=prefix)
            old_meta = stored["index_templates"][0]["index_template"].get("_meta", {})
        except ApiError as exc:
            if exc.status_code != 404:
                raise
            old_meta = None
        for name, body in components.items():
            await self.client.cluster.put_component_template(name=name, **body)
        for name, body in indexes.items():
            await self.client.indices.put_index_template(name=name, **body)
        fields = {"sink": self.name, "template": prefix, "socd_version": __version__,
                  "fields_hash": new_meta["fields_hash"],
                  "retention": self._retention_text(lifecycle)}
        if old_meta is None:
            log.info("index templates installed", **fields)
        elif (old_meta.get("fields_hash"), old_meta.get("socd_version")) != (
                new_meta["fields_hash"], __version__):
            log.info("index templates upgraded; new indices get the new mapping",
                     previous_version=old_meta.get("socd_version"),
                     previous_fields_hash=old_meta.get("fields_hash"), **fields)
        else:
            log.info("index templates unchanged", **fields)

    def _retention_text(self, lifecycle: str | None) -> str:
        days = self.config.retention_days
        if not days:
            return "forever"
        if lifecycle:
            return f"{days}d by ILM policy {lifecycle}"
        return f"{days}d by socd" if self.ilm is False else f"{days}d not enforced"

    async def enforce_retention(self, today: date | None = None) -> list[str]:
        """Delete the expired indices (see :func:`expired_indices`); returns their names."""
        client = self._ready_client()
        prefix = self.config.index_prefix
        rows = await client.cat.indices(index=f"{prefix}-*", h="index", format="json",
                                             expand_wildcards="open,closed,hidden")
        body: Any = rows.body
        names = [str(row["index"]) for row in body]
        today = today or datetime.now(UTC).date()
        expired = expired_indices(names, prefix, today, self.config.retention_days)
        for i in range(0, len(expired), _DELETE_CHUNK):
            chunk = expired[i:i + _DELETE_CHUNK]
            # Exact names, no wildcard: nothing but what was selected can go.
            await client.indices.delete(index=",".join(chunk), ignore_unavailable=True,
                                        expand_wildcards="none")
            log.info("expired indices deleted", sink=self.name, indices=chunk,
                     retention_days=self.config.retention_days)
        return expired

    async def _retention_loop(self) -> None:
        interval = self.config.retention_check_interval_secs
        while True:
            delay = interval
            try:
                await self._ensure_setup()
                if self.ilm is False:
                    await self.enforce_retention()
                else:
                    return  # ILM deletes; nothing for socd to do
            except asyncio.CancelledError:
                raise
            except (SinkError, ApiError, TransportError) as exc:
                delay = min(interval, 60.0)
                log.warning("retention check failed; will retry", sink=self.name,
                            error=str(exc), retry_in_secs=delay)
            except Exception:  # a bug must not end retention for good
                log.exception("retention check failed", sink=self.name)
            await asyncio.sleep(delay)

    # -- writes ----------------------------------------------------------------------------

    def _index_for(self, event: Event) -> str:
        ts = event.get("@timestamp")
        if not isinstance(ts, str):
            return daily_index(self.config.index_prefix, datetime.now(UTC).date())
        # RFC 3339 "2026-11-16T08:12:44+07:00": the UTC day keeps one index per day
        # whatever offsets the sources use. The day only depends on the minute and
        # the offset, so parsing once per minute and offset is enough.
        key = ts[:16] + ts[-6:]
        index = self._day_index.get(key)
        if index is None:
            if ts.endswith(("Z", "+00:00")):
                day = date.fromisoformat(ts[:10])
            else:
                # Without an offset (never written so): the machine's local time.
                day = parse_iso(ts, naive=None).astimezone(UTC).date()
            index = daily_index(self.config.index_prefix, day)
            if len(self._day_index) >= 4096:
                self._day_index.clear()
            self._day_index[key] = index
        return index

    def _action(self, index: str) -> bytes:
        prefix = self._action_prefix.get(index)
        if prefix is None:
            prefix = orjson.dumps({"create": {"_index": index}})[:-2] + b',"_id":'
            if len(self._action_prefix) >= 4096:  # one per day index: input picks days
                self._action_prefix.clear()
            self._action_prefix[index] = prefix
        return prefix

    def _serialize(self, events: Sequence[Event]) -> tuple[list[Event], list[bytes],
                                                           list[int]]:
        """The events to send (not refused before, serializable), their bulk lines
        (action, document, action, document...) and each pair's size."""
        kept: list[Event] = []
        lines: list[bytes] = []
        sizes: list[int] = []
        # Per event, the index and its action line from the caches by hand (_index_for
        # and _action are the misses): two calls per event less.
        refused, day_index, prefixes = self._rejected, self._day_index, self._action_prefix
        dumps = orjson.dumps
        for event in events:
            ev_hash = event["event"]["hash"]
            if ev_hash in refused:
                continue
            try:
                doc = dumps(event)
            except orjson.JSONEncodeError as exc:
                self._remember_rejected(ev_hash)
                self.ctx.dead_letter.write(
                    stage=f"sink/{self.name}", reason="unserializable", event=event,
                    collector=event.get("socd", {}).get("collector", ""), detail=str(exc))
                continue
            ts = event.get("@timestamp")
            index = day_index.get(ts[:16] + ts[-6:]) if type(ts) is str else None
            if index is None:
                index = self._index_for(event)
            prefix = prefixes.get(index)
            if prefix is None:
                prefix = self._action(index)
            action = prefix + dumps(ev_hash) + b"}}"
            kept.append(event)
            lines.append(action)
            lines.append(doc)
            sizes.append(len(action) + len(doc) + 2)
        return kept, lines, sizes

    async def write(self, events: Sequence[Event]) -> None:
        await self._ensure_setup()
        kept, lines, sizes = self._serialize(events)
        if not kept:
            return
        spans = self._split(sizes)
        if len(spans) == 1:
            results: list[Any] = [await self._bulk(lines, 0, len(kept))]
        else:
            gate = asyncio.Semaphore(self.config.bulk_concurrency)

            async def one(lo: int, hi: int) -> tuple[int, list[tuple[int, int, dict[str, Any]]]]:
                async with gate:
                    return await self._bulk(lines, lo, hi)

            results = await asyncio.gather(*(one(lo, hi) for lo, hi in spans),
                                           return_exceptions=True)
        retry = 0
        rejected: list[tuple[int, int, dict[str, Any]]] = []
        errors: list[BaseException] = []
        for result in results:
            if isinstance(result, BaseException):
                errors.append(result)
            else:
                retry += result[0]
                rejected += result[1]
        if rejected:
            await self._dead_letter(kept, lines, rejected)
        for err in errors:
            if not isinstance(err, SinkError):
                raise err
        if errors:
            # Any retryable failure retries the batch (stored documents answer 409).
            raise next((e for e in errors if getattr(e, "retryable", False)), errors[0])
        if retry:
            raise SinkError(f"{retry} documents were refused for now, to be retried "
                            f"(first: {self._retry_reason})")

    def _split(self, sizes: list[int]) -> list[tuple[int, int]]:
        """Index ranges of the bulk requests: ``bulk_concurrency`` about equal parts
        for a large batch, each cut further to stay under ``bulk_max_bytes``."""
        total = sum(sizes)
        limit = self.config.bulk_max_bytes
        parts = max(1, min(self.config.bulk_concurrency, total // _MIN_SPLIT_BYTES,
                           len(sizes)))
        per_part = math.ceil(len(sizes) / parts)
        spans: list[tuple[int, int]] = []
        for start in range(0, len(sizes), per_part):
            end = min(len(sizes), start + per_part)
            lo, size = start, 0
            for i in range(start, end):
                if i > lo and size + sizes[i] > limit:
                    spans.append((lo, i))
                    lo, size = i, 0
                size += sizes[i]
            spans.append((lo, end))
        return spans

    async def _bulk(self, lines: list[bytes], lo: int,
                    hi: int) -> tuple[int, list[tuple[int, int, dict[str, Any]]]]:
        """One bulk request for documents ``lo`` to ``hi`` of ``lines``; returns how
        many must be retried and the rejected ones as ``(position, status, error)``."""
        assert self.client is not None
        body = b"\n".join([*lines[2 * lo:2 * hi], b""])
        try:
            resp = await self.client.bulk(
                operations=body,  # type: ignore[arg-type] # pre-serialized NDJSON is passed through
                refresh=self.config.refresh,
                filter_path="errors,items.*.status,items.*.error",
            )
        except (ApiError, TransportError) as exc:
            raise self._sink_error("bulk request failed", exc) from exc
        if not resp.get("errors"):
            return 0, []
        retry = 0
        auth = 0
        rejected: list[tuple[int, int, dict[str, Any]]] = []
        for pos, item in zip(range(lo, hi), resp["items"], strict=True):
            result = item.get("create", {})
            status = result.get("status", 0)
            if status < 300 or status == 409:
                continue  # stored now or by an earlier attempt
            error = result.get("error", {})
            if (status in _RETRYABLE_STATUS or status in _AUTH_STATUS
                    or error.get("type") in _RETRYABLE_ERROR_TYPES):
                if not retry:
                    self._retry_reason = (f"{status} {error.get('type', '')}: "
                                          f"{error.get('reason', '')}")[:300]
                retry += 1
                auth += status in _AUTH_STATUS or error.get("type") == "security_exception"
                continue
            rejected.append((pos, status, error))
        if auth:
            log.error("elasticsearch refused documents for lack of privileges; they are kept "
                      "and retried until the configuration is fixed", sink=self.name,
                      documents=auth)
        return retry, rejected

    def _remember_rejected(self, ev_hash: str) -> None:
        if len(self._rejected) >= _REJECTED_MEMORY:
            del self._rejected[next(iter(self._rejected))]
        self._rejected[ev_hash] = None

    async def _dead_letter(self, events: list[Event], lines: list[bytes],
                           rejected: list[tuple[int, int, dict[str, Any]]]) -> None:
        """The file first (it is the record of truth), then the dead-letter index."""
        now = datetime.now(UTC)
        stamp = now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        docs: list[bytes] = []
        index = dead_letter_index(self.config.index_prefix, now)
        action = self._action(index)
        for pos, status, error in rejected:
            event = events[pos]
            ev_hash = event["event"]["hash"]
            self._remember_rejected(ev_hash)
            message = f"{status} {error.get('type', '')}: {error.get('reason', '')}"
            caused = error.get("caused_by")
            if isinstance(caused, dict) and caused.get("reason"):
                message += f" (caused by {caused.get('type', '')}: {caused['reason']})"
            self.ctx.dead_letter.write(
                stage=f"sink/{self.name}", reason="rejected_document", event=event,
                collector=event.get("socd", {}).get("collector", ""), detail=message)
            if self.config.dead_letter_index:
                docs += (action + orjson.dumps(ev_hash) + b"}}", orjson.dumps({
                    "@timestamp": stamp, "socd": {"sink": self.name},
                    "error": {"type": str(error.get("type", "")), "message": message},
                    "event": {"hash": ev_hash, "original": lines[2 * pos + 1].decode()}}))
        if docs:
            await self._write_dead_letter_index(index, docs)

    async def _write_dead_letter_index(self, index: str, docs: list[bytes]) -> None:
        assert self.client is not None
        try:
            resp = await self.client.bulk(
                operations=b"\n".join([*docs, b""]),  # type: ignore[arg-type]
                refresh=self.config.refresh, filter_path="errors,items.*.error")
        except (ApiError, TransportError) as exc:
            log.warning("dead-letter index not written; the dead-letter file has the documents",
                        sink=self.name, index=index, error=str(exc))
            return
        if resp.get("errors"):
            # A 409 means it is there already (dead-lettered before a restart).
            failed = [i["create"]["error"] for i in resp.get("items", []) if "create" in i
                      and i["create"]["error"].get("type") != "version_conflict_engine_exception"]
            if failed:
                log.warning("dead-letter index refused documents; the dead-letter file has "
                            "them", sink=self.name, index=index, documents=len(failed),
                            error=str(failed[0])[:300])
