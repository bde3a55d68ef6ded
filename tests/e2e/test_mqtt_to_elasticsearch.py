"""socd as a process: Mosquitto -> socd -> Elasticsearch, scraped by Prometheus."""

from __future__ import annotations

import base64
import json
import signal
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import daemon_config
from tests.helpers import (
    SEVERITIES_VI,
    Publisher,
    TcpProxy,
    ecs_alert,
    es_client,
    es_count,
    metric,
    server_edr_record,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode()


def _prom_query(services: dict[str, Any], query: str) -> list[dict[str, Any]]:
    url = f"{services['PROMETHEUS_URL']}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = json.load(resp)
    assert body["status"] == "success", body
    return body["data"]["result"]  # type: ignore[no-any-return]


def test_n_events_arrive_exactly_once_with_the_right_fields(
        services, unique, socd_process, prometheus_target):
    socd = socd_process()
    label = prometheus_target(socd.http_port)
    server_topic, ids_topic = f"socd-e2e/{unique}/server", f"socd-e2e/{unique}/ids"

    # 900 server-EDR alerts as single objects (300 of each vendor severity),
    # 1000 as JSON arrays of 100, 1000 IDS alerts as NDJSON batches of 50.
    singles = [server_edr_record(i, unique, SEVERITIES_VI[i % 3]) for i in range(900)]
    arrays = [[server_edr_record(900 + j * 100 + k, unique, "Cao") for k in range(100)]
              for j in range(10)]
    ndjson = [b"\n".join(_dumps(ecs_alert(j * 50 + k, unique, vendor_severity=1 + k % 3))
                         for k in range(50)) + b"\n" for j in range(20)]
    expected = len(singles) + 100 * len(arrays) + 50 * len(ndjson)
    with Publisher(services) as pub:
        pub.publish(server_topic, (_dumps(r) for r in singles))
        pub.publish(server_topic, (_dumps(a) for a in arrays))
        pub.publish(ids_topic, ndjson)

    es = es_client(services)
    index = f"socd-e2e-{unique}-*"
    wait_for(lambda: es_count(es, index) >= expected, 90, f"{expected} documents in {index}")
    time.sleep(1.5)  # a duplicate would show up now
    assert es_count(es, index) == expected

    # Explicit mappings from the index template, not dynamic guesses.
    mapping = next(iter(es.indices.get_mapping(index=index).body.values()))["mappings"]
    props = mapping["properties"]
    assert props["@timestamp"]["type"] == "date"
    assert props["host"]["properties"]["ip"]["type"] == "ip"
    assert props["destination"]["properties"]["ip"]["type"] == "ip"
    assert props["source"]["properties"]["port"]["type"] in ("long", "integer")
    socd_props = props["socd"]["properties"]
    assert socd_props["severity"]["type"] == "keyword"
    assert socd_props["layer"]["type"] in ("byte", "short", "integer", "long")

    # Field values: vendor severity kept, mapped and labelled in Vietnamese.
    resp = es.search(index=index, query={"term": {"event.id": f"{unique}-00000002"}})
    doc = resp["hits"]["hits"][0]["_source"]
    assert doc["socd"]["vendor_severity"] == "Nghiêm trọng"
    assert doc["socd"]["severity"] == "critical"
    assert doc["socd"]["severity_label"] == "nghiêm trọng"
    assert doc["socd"]["asset_kind"] == "server"
    assert doc["socd"]["layer"] == 2
    assert doc["host"]["name"] == "srv-02"
    assert doc["destination"]["ip"] == "198.51.100.7"
    assert doc["@timestamp"].startswith("2026-11-16T00:00:02")
    assert doc["_id" if "_id" in doc else "event"]["hash"]

    def severity_count(sev: str, asset: str) -> int:
        return int(es.count(index=index, query={"bool": {"filter": [
            {"term": {"socd.severity": sev}}, {"term": {"socd.asset_kind": asset}}]}})["count"])

    assert severity_count("medium", "server") == 300
    assert severity_count("high", "server") == 300 + 1000
    assert severity_count("critical", "server") == 300
    # Suricata priority 1 = high, 2 = medium, 3 = low.
    ids_high = int(es.count(index=index, query={"term": {"rule.id": "2001219"}})["count"])
    assert ids_high == 1000

    # socd's own counters agree with Elasticsearch ...
    m = socd.metrics()
    assert metric(m, "socd_events_received_total", collector="mqtt") == 900 + 10 + 20
    assert metric(m, "socd_events_sent_total", sink="es") == expected
    assert metric(m, "socd_alerts_total") == expected
    assert metric(m, "socd_alerts_total", severity="critical", asset_kind="server") == 300
    assert metric(m, "socd_events_dropped_total") == 0
    assert metric(m, "socd_processing_latency_seconds_count", sink="es") >= 1

    # ... and so does a real Prometheus scraping socd.
    def scraped() -> bool:
        res = _prom_query(services, f'sum(socd_events_sent_total{{test="{label}",sink="es"}})')
        return bool(res) and float(res[0]["value"][1]) == expected

    wait_for(scraped, 60, "Prometheus to scrape the final socd_events_sent_total")
    res = _prom_query(services, f'sum by (severity) (socd_alerts_total{{test="{label}"}})')
    by_sev = {r["metric"]["severity"]: float(r["value"][1]) for r in res}
    # IDS: vendor severity 1 + k % 3 over k = 0..49 in each of 20 batches.
    ids = {"high": 17 * 20, "medium": 17 * 20, "low": 16 * 20}
    assert by_sev == {"medium": 300 + ids["medium"], "high": 1300 + ids["high"],
                      "critical": 300, "low": ids["low"]}
    res = _prom_query(services, f'up{{test="{label}"}}')
    assert res
    assert res[0]["value"][1] == "1"

    assert socd.stop() == 0


BAD_INPUTS: dict[str, bytes] = {
    "invalid_json": b'{"alert_id": "x", "severity": ',
    "invalid_utf8": b'{"alert_id": "\xff\xfe\xfa"}',
    "wrong_type": b'"just a string"',
    "wrong_field_type": json.dumps({"@timestamp": "2026-11-16T00:00:00Z",
                                    "event": {"kind": "alert"},
                                    "source": {"ip": "not-an-ip"}}).encode(),
    "oversize": b'{"pad": "' + b"x" * (10 * 1024 * 1024) + b'"}',
}


def test_bad_input_is_counted_and_dead_lettered_never_crashes(
        services, unique, socd_process, tmp_path: Path):
    socd = socd_process()
    ids_topic = f"socd-e2e/{unique}/ids"
    good = [_dumps(ecs_alert(i, unique)) for i in range(10)]
    with Publisher(services) as pub:
        pub.publish(ids_topic, [good[0], *BAD_INPUTS.values(), *good[1:]])

    es = es_client(services)
    index = f"socd-e2e-{unique}-*"
    wait_for(lambda: es_count(es, index) >= 10, 60, "the 10 good events in Elasticsearch")
    socd.assert_running()

    m = socd.metrics()
    assert metric(m, "socd_events_dropped_total") == len(BAD_INPUTS)
    assert metric(m, "socd_events_dropped_total", reason="oversize") == 1
    assert metric(m, "socd_events_dropped_total", reason="invalid_json") >= 1
    assert metric(m, "socd_events_dropped_total", reason="invalid_utf8") == 1
    assert metric(m, "socd_events_received_total", collector="mqtt") == 10 + len(BAD_INPUTS)

    # Every bad payload is in the dead-letter file, byte for byte.
    dead = tmp_path / "state" / "dead-letter" / "dead-letter.ndjson"
    entries = [json.loads(line) for line in dead.read_text().splitlines()]
    raws = {base64.b64decode(e["raw_b64"]) for e in entries if "raw_b64" in e}
    for name, payload in BAD_INPUTS.items():
        assert payload in raws, f"{name} payload missing from the dead-letter file"
    assert all(e["reason"] and e["stage"] for e in entries)

    assert socd.stop() == 0


def test_sigterm_under_load_drains_and_loses_nothing(services, unique, socd_process):
    socd = socd_process()
    topic = f"socd-e2e/{unique}/server"
    total = 6000
    payloads = [_dumps([server_edr_record(j * 20 + k, unique) for k in range(20)])
                for j in range(total // 20)]
    with Publisher(services) as pub:
        # First half with socd running, then SIGTERM while it is busy, then the rest
        # while socd is down: the broker keeps them for socd's persistent session.
        pub.publish(topic, payloads[: len(payloads) // 2])
        wait_for(lambda: metric(socd.metrics(), "socd_events_received_total") > 0, 30,
                 "socd to start consuming")
        socd.signal(signal.SIGTERM)
        assert socd.stop(timeout=90, send_signal=False) == 0
        pub.publish(topic, payloads[len(payloads) // 2:])

    events = socd.log_events()
    stopped = [e for e in events if e.get("event") == "socd stopped"]
    assert stopped
    assert stopped[-1]["dead_lettered_at_exit"] == 0

    # Restart with the same persistent session: everything arrives, exactly once.
    again = socd_process()
    es = es_client(services)
    index = f"socd-e2e-{unique}-*"
    wait_for(lambda: es_count(es, index) >= total, 120, f"{total} documents after restart")
    time.sleep(1.5)
    assert es_count(es, index) == total
    assert again.stop() == 0


def test_sighup_with_a_broken_config_keeps_the_old_one(services, unique, socd_process,
                                                       tmp_path: Path):
    config = daemon_config(services, unique, tmp_path / "state")
    socd = socd_process(config)
    good_text = socd.config_path.read_text()
    socd.write_config(good_text.replace("index_prefix:", "index_prefx:"))
    socd.signal(signal.SIGHUP)
    wait_for(lambda: any(e.get("event", "").startswith("reload rejected")
                         for e in socd.log_events()), 30, "the reload to be rejected")
    rejected = next(e for e in socd.log_events() if e.get("event", "").startswith("reload"))
    assert "index_prefx" in rejected["error"]
    assert "did you mean" in rejected["error"]
    socd.assert_running()

    # The old configuration still works end to end.
    with Publisher(services) as pub:
        pub.publish(f"socd-e2e/{unique}/ids", [_dumps(ecs_alert(i, unique)) for i in range(5)])
    es = es_client(services)
    wait_for(lambda: es_count(es, f"socd-e2e-{unique}-*") == 5, 60, "5 documents")
    assert metric(socd.metrics(), "socd_config_reloads_total", result="failure") == 1

    # A valid change is applied: an NDJSON sink is added without a restart.
    out = tmp_path / "copy.ndjson"
    config["sinks"]["copy"] = {"type": "ndjson", "path": str(out), "select": "all",
                               "flush_interval_secs": 0.2}
    socd.write_config(config)
    socd.signal(signal.SIGHUP)
    wait_for(lambda: metric(socd.metrics(), "socd_config_reloads_total", result="success") == 1,
             30, "a successful reload")
    with Publisher(services) as pub:
        pub.publish(f"socd-e2e/{unique}/ids",
                    [_dumps(ecs_alert(100 + i, unique)) for i in range(3)])
    wait_for(lambda: out.exists() and len(out.read_text().splitlines()) == 3, 30,
             "3 events in the new NDJSON sink")
    wait_for(lambda: es_count(es, f"socd-e2e-{unique}-*") == 8, 60, "8 documents")
    assert socd.stop() == 0


def test_elasticsearch_outage_loses_nothing(services, unique, socd_process, tmp_path: Path):
    es_host, es_port = services["ES_HOST"], int(services["ES_PORT"])
    proxy = TcpProxy(es_host, es_port)
    proxy.set_down(True)
    try:
        config = daemon_config(services, unique, tmp_path / "state")
        config["sinks"]["es"]["hosts"] = [proxy.url]
        config["sinks"]["es"]["retry_max_backoff_secs"] = 1
        socd = socd_process(config, start=False).start(wait_ready=False)
        wait_for(lambda: socd._get("/healthz")[0] == 200, 60, "socd /healthz")
        # /readyz is 503 while the sink is down: wait for the MQTT subscription itself,
        # or messages published before the broker has it reach no subscriber.
        wait_for(lambda: socd.metrics().get(
            'socd_component_up{kind="collector",name="mqtt"}') == 1, 60, "the MQTT subscription")
        with Publisher(services) as pub:
            pub.publish(f"socd-e2e/{unique}/ids",
                        [_dumps(ecs_alert(i, unique)) for i in range(500)])
        wait_for(lambda: metric(socd.metrics(), "socd_errors_total", component="sink/es") >= 3,
                 60, "failed writes to be retried")
        assert socd._get("/readyz")[0] == 503  # not ready while a sink is down
        assert metric(socd.metrics(), "socd_events_sent_total", sink="es") == 0

        proxy.set_down(False)
        es = es_client(services)
        wait_for(lambda: es_count(es, f"socd-e2e-{unique}-*") >= 500, 60,
                 "500 documents after the outage")
        wait_for(socd.ready, 30, "socd ready again")
        assert es_count(es, f"socd-e2e-{unique}-*") == 500
        assert metric(socd.metrics(), "socd_events_dropped_total") == 0
        assert socd.stop() == 0
    finally:
        proxy.close()


def test_a_stuck_sink_pushes_back_to_the_broker_with_bounded_memory(
        services, unique, socd_process, tmp_path: Path):
    proxy = TcpProxy(services["ES_HOST"], int(services["ES_PORT"]))
    proxy.set_down(True)
    try:
        config = daemon_config(services, unique, tmp_path / "state")
        config["pipeline"]["max_buffered_bytes"] = 256 * 1024
        config["sinks"]["es"]["hosts"] = [proxy.url]
        config["sinks"]["es"]["retry_max_backoff_secs"] = 1
        # A full spool (1 MiB, the smallest allowed) pushes back like a full queue.
        config["sinks"]["es"]["spool"] = {"enabled": True, "max_bytes": 1024 * 1024}
        socd = socd_process(config, start=False).start(wait_ready=False)
        wait_for(lambda: socd._get("/healthz")[0] == 200, 60, "socd /healthz")
        # /readyz is 503 while the sink is down: wait for the MQTT subscription itself,
        # or messages published before the broker has it reach no subscriber.
        wait_for(lambda: socd.metrics().get(
            'socd_component_up{kind="collector",name="mqtt"}') == 1, 60, "the MQTT subscription")
        total = 20_000  # ~9 MB of alerts, 35 times the memory budget
        payloads = [_dumps(server_edr_record(i, unique)) for i in range(total)]
        pub = Publisher(services)
        # Publishing does not wait for socd: the broker queues what socd does not take.
        infos = [pub.client.publish(f"socd-e2e/{unique}/server", p, qos=1) for p in payloads]
        for info in infos:
            info.wait_for_publish(60)
        time.sleep(3)
        m = socd.metrics()
        taken = metric(m, "socd_events_received_total", collector="mqtt")
        assert 0 < taken < total / 4, "socd kept taking messages although nothing drains"
        assert metric(m, "socd_events_dropped_total") == 0

        proxy.set_down(False)
        es = es_client(services)
        wait_for(lambda: es_count(es, f"socd-e2e-{unique}-*") >= total, 120,
                 f"{total} documents once Elasticsearch is back")
        assert es_count(es, f"socd-e2e-{unique}-*") == total
        pub.close()
        assert socd.stop() == 0
    finally:
        proxy.close()


def test_rule_alerts_reach_elasticsearch(services, unique, socd_process, tmp_path: Path):
    config = daemon_config(services, unique, tmp_path / "state")
    config["rules"] = {"paths": ["builtin"]}
    socd = socd_process(config)
    # A critical server-EDR alert that the EDR could not clean: the shipped pack
    # raises its own alert on top of the vendor's.
    records = [server_edr_record(i, unique, "Nghiêm trọng") for i in range(3)]
    for r in records:
        r["action"] = "detected"
        r["category"] = "Webshell"
        r["threat_name"] = "Backdoor.PHP.WebShell.gen"
    with Publisher(services) as pub:
        pub.publish(f"socd-e2e/{unique}/server", [_dumps(r) for r in records])
    es = es_client(services)
    index = f"socd-e2e-{unique}-*"
    wait_for(lambda: es_count(es, index) > 3, 60, "rule alerts in Elasticsearch")
    time.sleep(1)
    res = es.search(index=index, query={"term": {"event.dataset": "socd.rules"}}, size=50)
    hits = [h["_source"] for h in res["hits"]["hits"]]
    assert hits
    for alert in hits:
        assert alert["rule"]["id"]
        assert alert["socd"]["severity"] in {"low", "medium", "high", "critical"}
        assert alert["host"]["name"].startswith("srv-")
    assert socd.stop() == 0
