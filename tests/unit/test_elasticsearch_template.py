"""The Elasticsearch sink without a cluster: templates, retention selection, index
names, bulk splitting, error mapping, and the ILM branch (which the test server,
a distribution without X-Pack, cannot exercise) against a recording fake client."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from elastic_transport import ApiResponseMeta, HttpHeaders, NodeConfig
from elasticsearch import ApiError, BadRequestError, NotFoundError
from pydantic import ValidationError

from socd import __version__
from socd.alerting.elasticsearch import (
    ElasticsearchSink,
    dead_letter_index,
    expired_indices,
    index_template,
    retention_policy,
    templates,
)
from socd.errors import SinkError
from socd.event import FIELDS
from socd.plugins import PluginContext


def _sink(**options: Any) -> ElasticsearchSink:
    config = ElasticsearchSink.Config(type="elasticsearch", index_prefix="socd-x", **options)
    return ElasticsearchSink(config, PluginContext(name="es", dead_letter=None))


def _api_error(cls: type[ApiError], status: int, body: Any) -> ApiError:
    meta = ApiResponseMeta(status=status, http_version="1.1", headers=HttpHeaders(),
                           duration=0.0, node=NodeConfig("http", "localhost", 9200))
    message = body.get("error") if isinstance(body, dict) else str(body)
    if isinstance(message, dict):
        message = message.get("type", "")
    return cls(message=str(message), meta=meta, body=body)


# -- templates ---------------------------------------------------------------------------------


def test_index_template_is_composed_of_mapping_and_settings_components() -> None:
    components, indexes = templates("socd-alerts", shards=2, replicas=1)
    assert set(components) == {"socd-alerts-mappings", "socd-alerts-settings"}
    main = indexes["socd-alerts"]
    assert main["index_patterns"] == ["socd-alerts-*"]
    assert main["composed_of"] == ["socd-alerts-mappings", "socd-alerts-settings"]
    assert "template" not in main  # everything comes from the components
    settings = components["socd-alerts-settings"]["template"]["settings"]
    assert (settings["number_of_shards"], settings["number_of_replicas"]) == (2, 1)
    assert not any(key.startswith("index.lifecycle") for key in settings)
    props = components["socd-alerts-mappings"]["template"]["mappings"]["properties"]
    for field in FIELDS:
        node: Any = {"properties": props}
        for part in field.name.split("."):
            node = node["properties"][part]
        assert node["type"] == field.type, field.name
    # The self-contained form composes to the same mappings and settings.
    flat = index_template("socd-alerts", shards=2, replicas=1)
    assert flat["template"]["mappings"] == components["socd-alerts-mappings"]["template"][
        "mappings"]
    assert flat["template"]["settings"] == settings


def test_every_template_carries_meta_with_version_and_fields_hash() -> None:
    components, indexes = templates("socd-alerts")
    metas = [body["_meta"] for body in (*components.values(), *indexes.values())]
    assert len(metas) == 4
    for meta in metas:
        assert meta["managed_by"] == "socd"
        assert meta["socd_version"] == __version__
        assert len(meta["fields_hash"]) == 16
    assert len({meta["fields_hash"] for meta in metas}) == 1


def test_fields_hash_is_stable_and_follows_what_is_generated() -> None:
    def digest(**kw: Any) -> str:
        return str(templates("socd-alerts", **kw)[1]["socd-alerts"]["_meta"]["fields_hash"])

    assert digest() == digest()
    assert digest(shards=2) != digest()
    assert digest(lifecycle="socd-alerts-retention") != digest()
    assert digest(dead_letter_index=False) != digest()


def test_dead_letter_template_is_hidden_fixed_and_wins_over_the_alert_template() -> None:
    _, indexes = templates("socd-alerts", replicas=1)
    dl = indexes["socd-alerts-deadletter"]
    assert dl["index_patterns"] == ["socd-alerts-deadletter-*"]
    assert dl["priority"] > indexes["socd-alerts"]["priority"]
    assert dl["template"]["settings"]["hidden"] is True
    assert dl["template"]["settings"]["number_of_replicas"] == 1
    mappings = dl["template"]["mappings"]
    assert mappings["dynamic"] is False
    props = mappings["properties"]
    assert props["@timestamp"] == {"type": "date"}
    assert props["socd"]["properties"]["sink"] == {"type": "keyword"}
    assert props["error"]["properties"]["type"] == {"type": "keyword"}
    assert props["error"]["properties"]["message"] == {"type": "text"}
    assert props["event"]["properties"]["hash"] == {"type": "keyword"}
    original = props["event"]["properties"]["original"]
    assert original["index"] is False
    assert original["doc_values"] is False
    assert "socd-alerts-deadletter" not in templates("socd-alerts", dead_letter_index=False)[1]


def test_lifecycle_policy_and_settings_when_the_server_has_ilm() -> None:
    components, indexes = templates("socd-alerts", lifecycle="socd-alerts-retention")
    settings = components["socd-alerts-settings"]["template"]["settings"]
    assert settings["index.lifecycle.name"] == "socd-alerts-retention"
    # Daily names carry the day ILM counts from; the monthly dead-letter names do not
    # match that pattern, and ILM would refuse to create such an index.
    assert settings["index.lifecycle.parse_origination_date"] is True
    dl_settings = indexes["socd-alerts-deadletter"]["template"]["settings"]
    assert dl_settings["index.lifecycle.name"] == "socd-alerts-retention"
    assert "index.lifecycle.parse_origination_date" not in dl_settings
    policy = retention_policy(90)
    assert policy["phases"] == {"delete": {"min_age": "90d", "actions": {"delete": {}}}}
    assert policy["_meta"]["managed_by"] == "socd"


# -- retention selection -----------------------------------------------------------------------


def test_expired_indices_selects_only_old_daily_and_dead_letter_names() -> None:
    today = date(2026, 11, 23)
    names = [
        "socd-x-2026.08.24",  # 91 days old: expired
        "socd-x-2026.08.25",  # 90 days: kept (the cutoff day itself)
        "socd-x-2026.11.23",  # today
        "socd-x-2025.01.01",  # expired
        "socd-x-deadletter-2026.07",  # ended 2026-07-31, more than 90 days ago: expired
        "socd-x-deadletter-2026.08",  # ended 2026-08-31: kept
        "socd-x-deadletter-2026.11",  # the current month: never
        "socd-x-deadletter-2099.01",  # a future month: never
        "socd-x-2020.13.45",  # not a date
        "socd-x-2020.01.01-restored",  # not a name socd writes
        "socd-x-old-2020.01.01",  # another prefix
        "socd-xy-2020.01.01",  # another prefix
        "other-2020.01.01",
        "socd-x-2020.1.1",
        "socd-x-deadletter-2020.01.01",
    ]
    assert expired_indices(names, "socd-x", today, 90) == [
        "socd-x-2025.01.01", "socd-x-deadletter-2026.07", "socd-x-2026.08.24"]
    assert expired_indices(names, "socd-x", today, 0) == []


def test_expired_indices_never_selects_the_current_dead_letter_month() -> None:
    today = date(2026, 11, 1)
    names = ["socd-x-deadletter-2026.11", "socd-x-deadletter-2026.10"]
    assert expired_indices(names, "socd-x", today, 1) == []  # October ended yesterday
    assert expired_indices(names, "socd-x", date(2026, 11, 3), 1) == ["socd-x-deadletter-2026.10"]


def test_prefix_with_regex_characters_is_matched_literally() -> None:
    assert expired_indices(["socdxalerts-2020.01.01", "socd.alerts-2020.01.01"], "socd.alerts",
                           date(2026, 1, 1), 1) == ["socd.alerts-2020.01.01"]


def test_dead_letter_index_is_monthly() -> None:
    assert dead_letter_index("socd-x", datetime(2026, 2, 3, tzinfo=UTC)) == \
        "socd-x-deadletter-2026.02"


# -- index of an event -------------------------------------------------------------------------


@pytest.mark.parametrize(("ts", "index"), [
    ("2026-11-16T00:11:43+07:00", "socd-x-2026.11.15"),
    ("2026-11-16T07:00:00+07:00", "socd-x-2026.11.16"),
    ("2026-11-16T06:59:59.999999+07:00", "socd-x-2026.11.15"),
    ("2026-11-16T23:59:59Z", "socd-x-2026.11.16"),
    ("2026-11-16T23:59:59.123Z", "socd-x-2026.11.16"),
    ("2026-11-16T20:30:00-03:30", "socd-x-2026.11.17"),
    ("2026-11-16T05:29:00+05:30", "socd-x-2026.11.15"),
    ("2026-11-16T05:30:00+05:30", "socd-x-2026.11.16"),
])
def test_index_is_the_utc_day(ts: str, index: str) -> None:
    sink = _sink()
    assert sink._index_for({"@timestamp": ts}) == index
    assert sink._index_for({"@timestamp": ts}) == index  # from the cache


def test_index_cache_agrees_with_parsing_every_time() -> None:
    sink = _sink()
    rnd = random.Random(5)
    base = datetime(2026, 11, 16, tzinfo=UTC)
    for _ in range(20_000):
        offset = timedelta(minutes=rnd.choice((0, 420, -210, 330, 345, -600, 840)))
        moment = base + timedelta(seconds=rnd.randrange(-86400 * 2, 86400 * 2),
                                  microseconds=rnd.choice((0, 123000, 999999)))
        text = moment.astimezone(timezone(offset)).isoformat()
        if rnd.random() < 0.2 and offset == timedelta(0):
            text = text.replace("+00:00", "Z")
        assert sink._index_for({"@timestamp": text}) == f"socd-x-{moment:%Y.%m.%d}", text


def test_event_without_timestamp_goes_to_today() -> None:
    assert _sink()._index_for({}) == f"socd-x-{datetime.now(UTC):%Y.%m.%d}"


# -- bulk splitting ----------------------------------------------------------------------------


def _check_spans(spans: list[tuple[int, int]], sizes: list[int], limit: int) -> None:
    assert spans[0][0] == 0
    assert spans[-1][1] == len(sizes)
    for (_, hi), (lo, _) in zip(spans, spans[1:], strict=False):
        assert hi == lo
    for lo, hi in spans:
        assert hi > lo
        assert sum(sizes[lo:hi]) <= limit or hi - lo == 1


def test_a_large_batch_is_split_into_concurrent_parts() -> None:
    sink = _sink(bulk_concurrency=2)
    sizes = [1400] * 2000  # 2.8 MB
    spans = sink._split(sizes)
    assert spans == [(0, 1000), (1000, 2000)]


def test_a_small_batch_stays_one_request() -> None:
    assert _sink(bulk_concurrency=4)._split([1400] * 100) == [(0, 100)]
    assert _sink(bulk_concurrency=1)._split([1400] * 5000) == [(0, 5000)]


def test_parts_respect_bulk_max_bytes() -> None:
    sink = _sink(bulk_concurrency=3, bulk_max_bytes=64 * 1024)
    rnd = random.Random(1)
    sizes = [rnd.randrange(200, 5000) for _ in range(3000)] + [200_000] + [300] * 10
    _check_spans(sink._split(sizes), sizes, 64 * 1024)


# -- configuration -----------------------------------------------------------------------------


def test_defaults_keep_ninety_days_and_spool() -> None:
    config = ElasticsearchSink.Config(type="elasticsearch")
    assert config.retention_days == 90
    assert config.retention_check_interval_secs == 3600
    assert config.spool.enabled is True
    assert config.dead_letter_index is True


@pytest.mark.parametrize("options", [
    {"username": "socd", "password": "x", "api_key": "abc"},
    {"password": "x"},
])
def test_conflicting_credentials_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ElasticsearchSink.Config(type="elasticsearch", **options)


# -- error mapping -----------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "retryable"), [
    (401, True), (403, True), (408, True), (429, True), (500, True), (503, True),
    (400, False), (404, False), (413, False),
])
def test_request_errors_map_to_retryable_or_not(status: int, retryable: bool) -> None:
    error = _api_error(ApiError, status, {"error": {"type": "x", "reason": "y"}})
    result = _sink(username="socd", password="pw")._sink_error("bulk request failed", error)
    assert isinstance(result, SinkError)
    assert result.retryable is retryable
    if status == 401:
        assert "authentication failed (401): check username/password" in str(result)
        assert "pw" not in str(result)


# -- ILM branch with a recording client ----------------------------------------------------------


class FakeNamespace:
    def __init__(self, client: FakeClient, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    def __getattr__(self, name: str) -> Any:
        async def call(**kwargs: Any) -> Any:
            self.client.calls.append((f"{self.prefix}.{name}", kwargs))
            answer = self.client.answers.get(f"{self.prefix}.{name}")
            if isinstance(answer, Exception):
                raise answer
            return answer or {}
        return call


class FakeClient:
    """Records the calls the sink makes; ``answers`` maps "ns.method" to a result."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.ilm = FakeNamespace(self, "ilm")
        self.indices = FakeNamespace(self, "indices")
        self.cluster = FakeNamespace(self, "cluster")


_NO_POLICY = _api_error(NotFoundError, 404, {"error": {
    "type": "resource_not_found_exception", "reason": "Lifecycle policy not found: x"},
    "status": 404})
_NO_HANDLER = _api_error(BadRequestError, 400, {
    "error": "no handler found for uri [/_ilm/policy/x] and method [GET]"})
_NO_TEMPLATE = _api_error(NotFoundError, 404, {"error": {"type": "resource_not_found_exception",
                                                         "reason": "not found"}})


async def test_with_ilm_the_policy_is_installed_and_referenced() -> None:
    sink = _sink(retention_days=30)
    fake = FakeClient({"ilm.get_lifecycle": _NO_POLICY, "indices.get_index_template":
                       _NO_TEMPLATE})
    sink.client = fake  # type: ignore[assignment]
    await sink._ensure_setup()
    assert sink.ilm is True
    calls = dict(fake.calls)
    assert calls["ilm.put_lifecycle"] == {"name": "socd-x-retention",
                                          "policy": retention_policy(30)}
    settings_calls = [kw for name, kw in fake.calls if name == "cluster.put_component_template"
                      and kw["name"] == "socd-x-settings"]
    settings = settings_calls[0]["template"]["settings"]
    assert settings["index.lifecycle.name"] == "socd-x-retention"
    # Components first: the index template refers to them.
    order = [name for name, _ in fake.calls]
    assert order.index("cluster.put_component_template") < order.index(
        "indices.put_index_template")
    # ILM deletes: the retention loop has nothing to do and ends.
    await sink._retention_loop()


async def test_without_ilm_no_policy_and_socd_enforces_retention() -> None:
    sink = _sink(retention_days=30)
    fake = FakeClient({"ilm.get_lifecycle": _NO_HANDLER,
                       "indices.get_index_template": _NO_TEMPLATE})
    sink.client = fake  # type: ignore[assignment]
    await sink._ensure_setup()
    assert sink.ilm is False
    assert "ilm.put_lifecycle" not in dict(fake.calls)
    for name, kw in fake.calls:
        if name == "cluster.put_component_template":
            assert "index.lifecycle.name" not in str(kw)


async def test_an_existing_policy_also_means_ilm() -> None:
    sink = _sink(retention_days=0)
    fake = FakeClient({"ilm.get_lifecycle": {"socd-x-retention": {}},
                       "indices.get_index_template": _NO_TEMPLATE})
    sink.client = fake  # type: ignore[assignment]
    await sink._ensure_setup()
    assert sink.ilm is True
    # retention_days: 0 keeps everything: no policy is referenced.
    assert "ilm.put_lifecycle" not in dict(fake.calls)
    assert "lifecycle" not in str(dict(fake.calls)["cluster.put_component_template"])


async def test_an_unexpected_ilm_answer_is_a_retryable_setup_error() -> None:
    sink = _sink()
    sink.client = FakeClient({"ilm.get_lifecycle": _api_error(  # type: ignore[assignment]
        ApiError, 503, {"error": {"type": "unavailable", "reason": "busy"}})})
    with pytest.raises(SinkError) as info:
        await sink._ensure_setup()
    assert info.value.retryable
    assert sink._template_ready is False


async def test_no_ilm_privilege_stores_alerts_without_retention() -> None:
    sink = _sink(retention_days=30)
    fake = FakeClient({"ilm.get_lifecycle": _api_error(ApiError, 403, {"error": {
        "type": "security_exception", "reason": "action [cluster:admin/ilm/get] is unauthorized"}}),
        "indices.get_index_template": _NO_TEMPLATE})
    sink.client = fake  # type: ignore[assignment]
    await sink._ensure_setup()
    assert sink._template_ready is True
    assert sink.ilm is None
    assert "lifecycle" not in str(dict(fake.calls)["cluster.put_component_template"])
    await sink._retention_loop()  # nothing socd may do: ends at once
