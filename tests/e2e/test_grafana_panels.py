"""Every Grafana panel query returns data from a real Prometheus scraping socd.

The Kafka scale-out row's panels are run against a cluster on the real Kafka in
tests/e2e/test_grafana_kafka_panels.py; the others against one process here.

socd runs as a process with the features the dashboard shows switched on: MQTT
intake (server EDR and IDS topics, one malformed record a round), the shipped
rule pack, an IoC list, a blocker (decisions only), Elasticsearch with its spool,
and notifications to two webhooks (one answering, one not listening). The real
Prometheus of ``make services`` scrapes it every second. Then each query of
deploy/grafana/socd-dashboard.json is run as a range query over the traffic, with
Grafana's variables filled in the way Grafana would: it must be valid PromQL and
return at least one series with a number (not only NaN) in it.
"""

from __future__ import annotations

import json
import math
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port
from tests.e2e.conftest import daemon_config
from tests.helpers import Publisher, ecs_alert, server_edr_record, wait_for
from tests.unit.test_grafana_dashboard import KAFKA_ROW, query_panels, row_panels

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


class _Receiver(BaseHTTPRequestHandler):
    bodies: list[bytes] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        length = int(self.headers.get("Content-Length", "0"))
        type(self).bodies.append(self.rfile.read(length))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture
def webhook_receiver() -> Iterator[tuple[str, list[bytes]]]:
    handler = type("Receiver", (_Receiver,), {"bodies": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", handler.bodies
    server.shutdown()
    server.server_close()


def _prom(services: dict[str, Any], path: str, **params: str) -> dict[str, Any]:
    url = f"{services['PROMETHEUS_URL']}{path}?" + urllib.parse.urlencode(params)
    try:
        with urllib.request.urlopen(url, timeout=20) as resp:
            body: dict[str, Any] = json.load(resp)
    except urllib.error.HTTPError as exc:  # 400: the query does not parse
        body = json.loads(exc.read() or b"{}")
    return body


def _grafana_expr(expr: str, instance: str) -> str:
    """The query as Grafana sends it for this dashboard's variables."""
    return (expr.replace('instance=~"$instance"', f'instance=~"{instance}"')
            .replace("$__rate_interval", "30s").replace("$__range", "10m"))


def _has_number(result: list[dict[str, Any]]) -> bool:
    return any(not math.isnan(float(v)) for series in result for _, v in series["values"])


def test_every_dashboard_panel_returns_data(services, unique, socd_process, prometheus_target,
                                            webhook_receiver, tmp_path: Path):
    hook_url, received = webhook_receiver
    ioc_file = tmp_path / "ioc.txt"
    ioc_file.write_text("198.51.100.7\n")
    config = daemon_config(services, unique, tmp_path / "state")
    config["rules"] = {"paths": ["builtin"]}
    config["classification"] = {"ioc_files": [str(ioc_file)]}
    config["sinks"]["es"]["spool"] = {"enabled": True}
    config["sinks"]["blocks"] = {"type": "blocker", "backend": "none", "block_ioc_hits": True,
                                 "select": "all"}
    config["notifiers"] = {
        "irt_hook": {"type": "webhook", "url": hook_url},
        "broken_hook": {"type": "webhook", "url": f"http://127.0.0.1:{free_port()}/hook",
                        "retry_max_backoff_secs": 2},
    }
    config["notifications"] = {
        "grouping": {"group_wait_secs": 1, "group_interval_secs": 2},
        "routes": [{"name": "all", "notifiers": ["irt_hook", "broken_hook"]}],
    }
    socd = socd_process(config)
    prometheus_target(socd.http_port)
    instance = f"127.0.0.1:{socd.http_port}"
    server_topic, ids_topic = f"socd-e2e/{unique}/server", f"socd-e2e/{unique}/ids"

    start = time.time()
    with Publisher(services) as pub:
        for round_ in range(12):
            records = [server_edr_record(round_ * 40 + i, unique, "Cao") for i in range(40)]
            for record in records[:5]:  # the rule pack raises its own alert on these
                record.update(category="Webshell", threat_name="Backdoor.PHP.WebShell.gen")
            pub.publish(server_topic, [json.dumps(r).encode() for r in records])
            ids = [json.dumps(ecs_alert(round_ * 40 + i, unique)).encode() for i in range(40)]
            pub.publish(ids_topic, [b"\n".join(ids)])
            pub.publish(ids_topic, [b'{"event": {"kind": "alert"}, "source": '])  # malformed
            time.sleep(2)
    wait_for(lambda: received, 60, "a notification at the webhook receiver")
    # Let Prometheus take a few more scrapes of the final values.
    time.sleep(5)

    failures: list[str] = []
    # Every panel but the Kafka scale-out row's: this socd is one process without Kafka.
    kafka_row = row_panels(KAFKA_ROW)
    panels = [p for p in query_panels() if p not in kafka_row]
    assert kafka_row
    assert len(panels) >= 21
    for panel in panels:
        for target in panel["targets"]:
            expr = _grafana_expr(target["expr"], instance)
            body = _prom(services, "/api/v1/query_range", query=expr, start=f"{start:.3f}",
                         end=f"{time.time():.3f}", step="2")
            if body.get("status") != "success":
                failures.append(f"{panel['title']}: {expr}: {body.get('error')}")
            elif not _has_number(body["data"]["result"]):
                failures.append(f"{panel['title']}: {expr}: no data")
    assert not failures, "panels without data:\n" + "\n".join(failures)
    assert socd.stop() == 0
