"""Reports from a real Elasticsearch (see `make services`) give exactly the numbers of
the embedded store: the same seeded alerts written by the real sqlite and
elasticsearch sinks, one ReportData from each backend, compared field by field."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from socd.alerting.elasticsearch import ElasticsearchSink
from socd.alerting.sqlite import SqliteSink
from socd.app.deadletter import DeadLetter
from socd.cli import main
from socd.plugins import PluginContext
from socd.reports.data import ElasticsearchBackend, StoreBackend, build_report
from socd.reports.periods import period_for
from socd.reports.testing import EXPECTED, seed_events
from tests.helpers import es_client
from tests.unit.test_report_data import check_numbers

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

NOW = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)


async def _write(sinks: list[Any], events: list[Any]) -> None:
    for sink in sinks:
        await sink.start()
    try:
        for i in range(0, len(events), 500):
            for sink in sinks:
                await sink.write(events[i:i + 500])
    finally:
        for sink in sinks:
            await sink.close()


@pytest.fixture(scope="module")
def seeded(services: dict[str, Any], tmp_path_factory: pytest.TempPathFactory):
    import asyncio
    import uuid

    prefix = f"socd-it-report-{uuid.uuid4().hex[:10]}"
    state = tmp_path_factory.mktemp("report-es")
    dead = DeadLetter(str(state / "dead-letter"))
    sqlite = SqliteSink(SqliteSink.Config(type="sqlite"),
                        PluginContext(name="store", dead_letter=dead, state_dir=str(state)))
    es = ElasticsearchSink(
        ElasticsearchSink.Config(type="elasticsearch", hosts=[services["ES_URL"]],
                                 index_prefix=prefix, refresh=True),
        PluginContext(name="es", dead_letter=dead, state_dir=str(state)))
    events = seed_events()
    try:
        asyncio.run(_write([sqlite, es], events))
    finally:
        dead.close()
    client = es_client(services)
    client.indices.refresh(index=f"{prefix}-*")
    stored = client.count(index=f"{prefix}-*")["count"]
    assert stored == len(events), "every seeded event must be in Elasticsearch"
    client.close()
    cfg = state / "socd.yaml"
    cfg.write_text(yaml.safe_dump({
        "state_dir": str(state),
        "sinks": {"store": {"type": "sqlite"},
                  "es": {"type": "elasticsearch", "hosts": [services["ES_URL"]],
                         "index_prefix": prefix, "request_timeout_secs": 20}}}))
    yield {"state": state, "prefix": prefix, "events": events, "config": str(cfg)}
    client = es_client(services)
    client.indices.delete(index=f"{prefix}-*", allow_no_indices=True)
    client.indices.delete_index_template(name=prefix)
    client.close()


def _es_backend(services: dict[str, Any], prefix: str) -> ElasticsearchBackend:
    cfg = ElasticsearchSink.Config(type="elasticsearch", hosts=[services["ES_URL"]],
                                   index_prefix=prefix, request_timeout_secs=20)
    return ElasticsearchBackend(cfg)


def test_es_numbers_equal_store(seeded: dict[str, Any], services: dict[str, Any]) -> None:
    week = period_for("weekly", "16/11/2026", "22/11/2026")
    es = _es_backend(services, seeded["prefix"])
    store = StoreBackend.open(str(seeded["state"] / "alerts.db"))
    try:
        from_es = build_report(es, week, now=NOW)
        from_store = build_report(store, week, now=NOW)
        by_unit_es = build_report(es, week, now=NOW, unit="Sở Y tế")
        by_unit_store = build_report(store, week, now=NOW, unit="Sở Y tế")
    finally:
        es.close()
        store.close()
    assert from_es.source == "elasticsearch"
    check_numbers(from_es, seeded["events"])  # every number, as in the store test
    assert from_es.numbers() == from_store.numbers()
    assert by_unit_es.total == 146
    assert by_unit_es.numbers() == by_unit_store.numbers()


def test_composite_paging(seeded: dict[str, Any], services: dict[str, Any]) -> None:
    # Pages of 7 buckets: many `after_key` round trips, the same groups.
    week = period_for("weekly", "16/11/2026", "22/11/2026")
    es = _es_backend(services, seeded["prefix"])
    paged = _es_backend(services, seeded["prefix"])
    paged.PAGE = 7
    try:
        dims = ("host_name", "destination_ip", "unit", "severity")
        groups = es.group(week, None, dims)
        assert paged.group(week, None, dims) == groups
        assert sum(groups.values()) == EXPECTED["total"]
        assert es.group(week, None, ()) == {(): EXPECTED["total"]}
    finally:
        es.close()
        paged.close()


def test_missing_indices_mean_no_alerts(services: dict[str, Any]) -> None:
    es = _es_backend(services, "socd-it-report-none")
    try:
        data = build_report(es, period_for("monthly", "01/11/2026"), now=NOW)
    finally:
        es.close()
    assert data.total == 0
    assert data.top_rules == []


def test_unreachable_elasticsearch_is_an_error(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import socd.cli as cli_mod
    from tests.conftest import free_port

    if "socd.cli.report" not in cli_mod._COMMAND_MODULES:
        monkeypatch.setattr(cli_mod, "_COMMAND_MODULES",
                            (*cli_mod._COMMAND_MODULES, "socd.cli.report"))
    cfg = tmp_path / "socd.yaml"
    cfg.write_text(yaml.safe_dump({
        "state_dir": str(tmp_path),
        "sinks": {"es": {"type": "elasticsearch", "request_timeout_secs": 3,
                         "hosts": [f"http://127.0.0.1:{free_port()}"]}}}))
    assert main(["report", "weekly", "-c", str(cfg)]) == 1
    assert "unreachable" in capsys.readouterr().err


def test_cli_sources_agree(seeded: dict[str, Any], capsys: pytest.CaptureFixture[str],
                           monkeypatch: pytest.MonkeyPatch) -> None:
    import socd.cli as cli_mod

    if "socd.cli.report" not in cli_mod._COMMAND_MODULES:
        monkeypatch.setattr(cli_mod, "_COMMAND_MODULES",
                            (*cli_mod._COMMAND_MODULES, "socd.cli.report"))
    outputs = {}
    for source in ("auto", "elasticsearch", "store"):
        assert main(["report", "weekly", "--from", "16/11/2026", "--to", "22/11/2026",
                     "-c", seeded["config"], "--format", "md", "--source", source]) == 0
        outputs[source] = capsys.readouterr().out
    assert outputs["auto"] == outputs["elasticsearch"] or _same_but_time(
        outputs["auto"], outputs["elasticsearch"])
    assert "nguồn số liệu: Elasticsearch" in outputs["auto"]  # auto prefers Elasticsearch
    es_lines = _numbers_only(outputs["elasticsearch"])
    store_lines = _numbers_only(outputs["store"])
    assert es_lines == store_lines
    # ... | false positives | acknowledged (đã tiếp nhận) | resolved (đã xử lý) |
    assert "| Tổng cộng | 1.305 | 155 | 23 | 6 | 1.489 | 30 | 239 | 34 |" in es_lines


def _numbers_only(text: str) -> list[str]:
    return [line for line in text.splitlines() if not line.startswith("Ngày lập:")]


def _same_but_time(a: str, b: str) -> bool:
    return _numbers_only(a) == _numbers_only(b)
