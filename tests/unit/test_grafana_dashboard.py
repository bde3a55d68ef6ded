"""The Grafana dashboard in deploy/grafana/ matches socd's metrics.

No services: the dashboard JSON is checked against socd's own registry (every
``socd_*`` name in every query is a series socd exports) and every query is parsed
offline by promtool, as the expression of a recording rule in a temporary rules file
(Grafana's ``$__rate_interval``/``$__range`` and dashboard variables are replaced
first). Whether the panels return data from a live Prometheus is an e2e concern.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from socd import metrics

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "socd-dashboard.json"
TITLE = "socd — Giám sát an toàn thông tin"
VIETNAMESE = re.compile(r"[à-ỹÀ-ỸđĐ]")
METRIC = re.compile(r"(?<![A-Za-z0-9_:])socd_[A-Za-z0-9_]*")
# Sample names per metric family type, as prometheus_client exposes them.
SUFFIXES = {"counter": ("_total", "_created"), "gauge": ("",), "info": ("_info",),
            "histogram": ("_bucket", "_count", "_sum", "_created"),
            "summary": ("", "_count", "_sum", "_created"), "stateset": ("",), "enum": ("",)}
GRAFANA_VARS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "6h"}


def load() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return dashboard


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # panels inside a collapsed row


def query_panels() -> list[dict[str, Any]]:
    return [p for p in panels(load()) if p["type"] != "row"]


KAFKA_ROW = "Mở rộng trên Kafka (Kafka scale-out)"


def row_panels(title: str) -> list[dict[str, Any]]:
    """The query panels of the row ``title``: those that follow it up to the next row."""
    found: list[dict[str, Any]] = []
    current = None
    for panel in load()["panels"]:
        if panel["type"] == "row":
            current = panel["title"]
            found += panel.get("panels", []) if current == title else []
        elif current == title:
            found.append(panel)
    return found


def exprs() -> list[str]:
    return [t["expr"] for p in query_panels() for t in p["targets"]]


def exported_series() -> set[str]:
    """Every sample name socd can export, with all plugin modules imported."""
    for name in ("socd.block.sink", "socd.engine.engine", "socd.ioc.store",
                 "socd.kafka.metrics", "socd.app.cluster_metrics"):
        importlib.import_module(name)
    import socd.collectors

    for module in pkgutil.iter_modules(socd.collectors.__path__):
        importlib.import_module(f"socd.collectors.{module.name}")
    names: set[str] = set()
    for family in metrics.REGISTRY.collect():
        names.update(family.name + s for s in SUFFIXES[family.type])
    return names


def test_title_uid_schema_and_datasource_variable() -> None:
    dashboard = load()
    assert dashboard["title"] == TITLE
    assert dashboard["schemaVersion"] == 39
    assert dashboard["uid"]
    assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    assert dashboard["__inputs"][0]["pluginId"] == "prometheus"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["datasource"]["current"]["value"] == "${DS_PROMETHEUS}"


def test_every_panel_has_a_vietnamese_title_and_a_promql_target() -> None:
    found = query_panels()
    assert len(found) >= 13
    titles = [p["title"] for p in found]
    assert len(set(titles)) == len(titles), "duplicate panel titles"
    ids = [p["id"] for p in found]
    assert len(set(ids)) == len(ids), "duplicate panel ids"
    for panel in found:
        assert VIETNAMESE.search(panel["title"]), f"panel title not Vietnamese: {panel['title']}"
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], f"{panel['title']}: no target"
        for target in panel["targets"]:
            assert target["expr"].strip(), f"{panel['title']}: empty expr"
            assert METRIC.search(target["expr"]), f"{panel['title']}: no socd metric"


def test_panels_cover_the_requested_metrics() -> None:
    used = {m for e in exprs() for m in METRIC.findall(e)}
    for name in ("socd_alerts_total", "socd_ioc_hits_total", "socd_blocks_active",
                 "socd_events_received_total", "socd_events_dropped_total", "socd_queue_depth",
                 "socd_sink_write_seconds_bucket", "socd_processing_latency_seconds_bucket",
                 "socd_component_up", "socd_config_reloads_total", "socd_rule_matches_total",
                 "socd_alerts_by_unit_total", "socd_spool_events", "socd_notification_alerts_total",
                 "socd_notifications_sent_total", "socd_notifications_failed_total",
                 "socd_notification_queue_depth", "socd_collector_lag_seconds_bucket",
                 "socd_collector_last_received_timestamp_seconds",
                 # The Kafka scale-out row (docs/scaling.md).
                 "socd_kafka_consumer_lag", "socd_kafka_rebalances_total",
                 "socd_kafka_produce_errors_total", "socd_cluster_partitions_assigned",
                 "socd_cluster_state_keys", "socd_cluster_state_rebuild_seconds_sum",
                 "socd_cluster_state_rebuild_seconds_count",
                 "socd_cluster_state_rebuild_events_total", "socd_cluster_rebuilds_total",
                 "socd_cluster_events_published_total",
                 "socd_cluster_events_processed_total"):
        assert name in used, f"no panel shows {name}"
    by = " ".join(exprs())
    for label in ("severity", "asset_kind", "layer"):
        assert f"sum by ({label}) (rate(socd_alerts_total" in by, f"no alerts-by-{label} panel"


def test_kafka_row_shows_the_scale_out_metrics() -> None:
    """The Kafka scale-out row holds the socd_kafka_* and socd_cluster_* panels, and
    only those (tests/e2e/test_grafana_panels.py runs them against a Kafka cluster)."""
    row = row_panels(KAFKA_ROW)
    assert len(row) >= 8
    for panel in query_panels():
        names = {m for t in panel["targets"] for m in METRIC.findall(t["expr"])}
        scale_out = {n for n in names if n.startswith(("socd_kafka_", "socd_cluster_"))}
        assert (panel in row) == bool(scale_out), panel["title"]
        if panel in row:
            assert names == scale_out, panel["title"]


def test_every_metric_in_a_query_exists() -> None:
    exported = exported_series()
    assert "socd_blocks_active" in exported
    assert "socd_rule_matches_total" in exported
    for expr in exprs():
        for name in METRIC.findall(expr):
            assert name in exported, f"{name} (in {expr!r}) is not a series socd exports"


def test_no_unknown_metric_is_accepted() -> None:
    exported = exported_series()
    for name in ("socd_alerts", "socd_alerts_bucket", "socd_queue_depth_total",
                 "socd_sink_write_seconds", "socd_rule_match_total"):
        assert name not in exported, name


def promql(expr: str) -> str:
    """The query with Grafana's variables replaced, as Prometheus would receive it."""
    for var, value in GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    return re.sub(r"\$\{?\w+\}?", ".*", expr)


def test_queries_are_balanced() -> None:
    pairs = {")": "(", "]": "[", "}": "{"}
    for expr in exprs():
        stack: list[str] = []
        in_string = False
        for char in expr:
            if char == '"':
                in_string = not in_string
            elif in_string:
                continue
            elif char in "([{":
                stack.append(char)
            elif char in pairs:
                assert stack, f"unbalanced: {expr}"
                assert stack.pop() == pairs[char], f"unbalanced: {expr}"
        assert not stack, f"unbalanced: {expr}"
        assert not in_string, f"unterminated string: {expr}"


def test_queries_parse_with_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, ("promtool is not installed: install the Debian package `prometheus` "
                      "to parse the dashboard's queries")
    records = [{"record": f"socd:dashboard_query_{i}", "expr": promql(e)}
               for i, e in enumerate(exprs())]
    rules = {"groups": [{"name": "dashboard", "rules": records}]}
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump(rules, allow_unicode=True), encoding="utf-8")
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                            text=True, timeout=60, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"a dashboard query does not parse:\n{output}"


@pytest.mark.parametrize(("expr", "expected"), [
    ('rate(x{instance=~"$instance"}[$__rate_interval])', 'rate(x{instance=~".*"}[5m])'),
    ("increase(x[$__range])", "increase(x[6h])"),
])
def test_promql_substitution(expr: str, expected: str) -> None:
    assert promql(expr) == expected
