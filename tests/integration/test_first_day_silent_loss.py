"""Issue 14, "Alerts lost or skipped without a word": each trap against a real `socd run`.

1. A collector without ``decoder:`` reads vendor EDR alerts as plain events, which a
   sink with ``select: alerts`` drops: the start-up log warns, the events are counted
   and a warning names the collector and its decoder.
2. RFC 3164 lines from a server whose clock runs in UTC, read as +07:00, look 7 hours
   old: with ``timezone: UTC`` the brute force is raised; without it the late events
   are counted and logged with a hint naming the collector and ``timezone`` (and, with
   the default ``rules.max_clock_skew_secs``, windowed at their arrival).
3. Two instances with one MQTT client id kick each other off: the error says so.
"""

from __future__ import annotations

import json
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port
from tests.helpers import SocdProcess, metric, server_edr_record, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


@pytest.fixture
def daemons() -> Iterator[list[SocdProcess]]:
    started: list[SocdProcess] = []
    yield started
    for proc in started:
        proc.stop()  # drains (closes its log file) or reaps one that has exited


def start(daemons: list[SocdProcess], workdir: Path, config: dict[str, Any]) -> SocdProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    config = {"state_dir": str(workdir / "state"),
              "http": {"host": "127.0.0.1", "port": free_port()},
              "log": {"format": "json"}, **config}
    proc = SocdProcess(config, workdir)
    daemons.append(proc)
    return proc.start()


def logged(proc: SocdProcess, event: str) -> list[dict[str, Any]]:
    return [e for e in proc.log_events() if e.get("event") == event]


def sink_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# -- 1. a collector without decoder: -------------------------------------------------


def edr_config(tmp: Path, **collector: Any) -> dict[str, Any]:
    feed = tmp / "edr.ndjson"
    feed.write_text("".join(json.dumps(server_edr_record(i, "first-day")) + "\n"
                            for i in range(3)))
    return {
        "pipeline": {"warn_alertless_after_secs": 1},
        "rules": {"paths": []},
        "collectors": {"edr": {"type": "file", "paths": [str(feed)], **collector}},
        "sinks": {"store": {"type": "ndjson", "path": str(tmp / "alerts.ndjson"),
                            "flush_interval_secs": 0.2}},
    }


def test_edr_alerts_read_without_decoder_are_named(tmp_path: Path,
                                                   daemons: list[SocdProcess]) -> None:
    proc = start(daemons, tmp_path, edr_config(tmp_path))
    [startup] = [e for e in logged(proc, "configuration warning")
                 if "no decoder is set" in e["problem"]]
    assert "collectors.edr" in startup["problem"]
    assert "kept nowhere" in startup["problem"]
    event = "records of a collector become no alert and no sink keeps plain events"
    [line] = wait_for(lambda: logged(proc, event), 30, "the alertless warning")
    assert line["level"] == "warning"
    assert (line["collector"], line["events"], line["decoders"]) == ("edr", 3, ["json"])
    assert "set `decoder:` to the vendor's" in line["hint"]
    m = proc.metrics()
    assert metric(m, "socd_events_received_total", collector="edr") == 3
    assert metric(m, "socd_collector_events_unselected_total", collector="edr") == 3
    assert metric(m, "socd_collector_alerts_total", collector="edr") == 0
    assert metric(m, "socd_events_sent_total", sink="store") == 0


def test_the_vendor_decoder_stores_them_and_nothing_is_said(tmp_path: Path,
                                                           daemons: list[SocdProcess]) -> None:
    proc = start(daemons, tmp_path, edr_config(tmp_path, decoder="server_edr"))
    wait_for(lambda: len(sink_lines(tmp_path / "alerts.ndjson")) == 3, 30, "3 stored alerts")
    m = proc.metrics()
    assert metric(m, "socd_collector_alerts_total", collector="edr") == 3
    assert metric(m, "socd_collector_events_unselected_total", collector="edr") == 0
    assert proc.stop() == 0
    assert not any("no decoder is set" in e.get("problem", "") for e in proc.log_events())
    assert not logged(proc, "records of a collector become no alert and no sink keeps "
                            "plain events")


def test_a_reload_that_drops_the_decoder_is_warned_about(tmp_path: Path,
                                                         daemons: list[SocdProcess]) -> None:
    config = edr_config(tmp_path, decoder="server_edr")
    proc = start(daemons, tmp_path, config)
    config["collectors"]["edr"].pop("decoder")
    config.update({"state_dir": str(tmp_path / "state"), "log": {"format": "json"},
                   "http": {"host": "127.0.0.1", "port": proc.http_port}})
    proc.write_config(config)
    proc.signal(signal.SIGHUP)
    wait_for(lambda: logged(proc, "configuration reloaded"), 30, "the reload")
    [warning] = wait_for(lambda: [e for e in logged(proc, "configuration warning")
                                  if "no decoder is set" in e["problem"]], 30,
                         "the warning after the reload")
    assert "collectors.edr" in warning["problem"]


# -- 2. the sender's time zone ---------------------------------------------------------


def syslog_config(tmp: Path, port: int, rules: dict[str, Any] | None = None,
                  **collector: Any) -> dict[str, Any]:
    return {
        "rules": {"paths": ["builtin"], **(rules or {})},
        "collectors": {"syslog": {"type": "syslog", "listeners": [
            {"protocol": "udp", "host": "127.0.0.1", "port": port}], **collector}},
        "sinks": {"store": {"type": "ndjson", "path": str(tmp / "alerts.ndjson"),
                            "flush_interval_secs": 0.2}},
    }


def send_utc_server_burst(port: int) -> None:
    """A line with a zone from a server with a correct clock (the newest event time),
    then six failed SSH logins from a server whose clock runs in UTC (RFC 3164: no
    zone in the line)."""
    now = time.time()
    lines = [time.strftime("<38>1 %Y-%m-%dT%H:%M:%SZ fw01 sshd 1 - - Connection from "
                           "192.0.2.1 port 5000", time.gmtime(now)).encode()]
    for i in range(6):
        stamp = time.gmtime(now + i)
        lines.append(f"<38>{time.strftime('%b', stamp)} {stamp.tm_mday:2d} "
                     f"{time.strftime('%H:%M:%S', stamp)} web01 sshd[4242]: Failed password "
                     f"for root from 203.0.113.77 port {40000 + i} ssh2".encode())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for line in lines:
            sock.sendto(line, ("127.0.0.1", port))


def brute_force_alerts(path: Path) -> list[dict[str, Any]]:
    return [a for a in sink_lines(path) if a.get("rule", {}).get("id") == "ssh-bruteforce"]


def received(proc: SocdProcess, n: int) -> None:
    wait_for(lambda: metric(proc.metrics(), "socd_events_received_total",
                            collector="syslog") >= n, 30, f"{n} syslog lines received")


def test_utc_sender_with_timezone_utc_raises_the_brute_force(
        tmp_path: Path, daemons: list[SocdProcess]) -> None:
    port = free_port()
    proc = start(daemons, tmp_path, syslog_config(tmp_path, port, timezone="UTC"))
    send_utc_server_burst(port)
    [alert] = wait_for(lambda: brute_force_alerts(tmp_path / "alerts.ndjson"), 30,
                       "the ssh-bruteforce alert")
    assert alert["source"]["ip"] == "203.0.113.77"
    assert alert["socd"]["rule"]["count"] == 5
    m = proc.metrics()
    assert metric(m, "socd_rules_late_events_total", collector="syslog") == 0
    assert metric(m, "socd_rules_clock_skew_events_total", collector="syslog") == 0


def test_without_timezone_late_events_are_counted_and_the_hint_names_the_option(
        tmp_path: Path, daemons: list[SocdProcess]) -> None:
    port = free_port()
    proc = start(daemons, tmp_path, syslog_config(tmp_path, port,
                                                  rules={"max_clock_skew_secs": 0}))
    send_utc_server_burst(port)
    event = "late events left out of threshold and sequence rules"
    [line] = wait_for(lambda: logged(proc, event), 30, "the late-events warning")
    assert line["collector"] == "syslog"
    assert line["events"] == 6
    assert round(line["off_by_secs"] / 3600) == -7
    assert "7.0 h behind their arrival" in line["hint"]
    assert "set `timezone:` (or `sender_timezones:` per sender) on collector 'syslog'" \
        in line["hint"]
    assert metric(proc.metrics(), "socd_rules_late_events_total", collector="syslog") == 6
    assert proc.stop() == 0  # drained: whatever the rules raised is in the sink
    assert brute_force_alerts(tmp_path / "alerts.ndjson") == []


def test_by_default_a_zone_error_is_windowed_at_arrival_and_said(
        tmp_path: Path, daemons: list[SocdProcess]) -> None:
    port = free_port()
    proc = start(daemons, tmp_path, syslog_config(tmp_path, port))
    send_utc_server_burst(port)
    wait_for(lambda: brute_force_alerts(tmp_path / "alerts.ndjson"), 30,
             "the ssh-bruteforce alert")
    event = "event times far from their arrival: rule windows use the arrival time"
    [line] = wait_for(lambda: logged(proc, event), 30, "the clock-skew warning")
    assert line["collector"] == "syslog"
    assert "on collector 'syslog'" in line["hint"]
    m = proc.metrics()
    assert metric(m, "socd_rules_clock_skew_events_total", collector="syslog") == 6
    assert metric(m, "socd_rules_late_events_total", collector="syslog") == 0


# -- 3. one MQTT client id, two instances ------------------------------------------------


def test_two_instances_with_one_client_id_are_told_apart_from_a_broker_restart(
        tmp_path: Path, daemons: list[SocdProcess], services: dict[str, Any],
        unique: str) -> None:
    config = {
        "rules": {"paths": []},
        "collectors": {"edr": {
            "type": "mqtt", "host": services["MQTT_HOST"], "port": int(services["MQTT_PORT"]),
            "client_id": f"socd-it-shared-{unique}", "decoder": "server_edr",
            "topics": [f"it/{unique}/edr"]}},
        "sinks": {"store": {"type": "ndjson", "path": "alerts.ndjson"}},
    }
    first = start(daemons, tmp_path / "a", config)
    second = start(daemons, tmp_path / "b", config)
    event = "MQTT session taken over again and again: another client uses the same client id"

    def error_lines() -> list[dict[str, Any]]:
        return [*logged(first, event), *logged(second, event)]

    lines = wait_for(error_lines, 90, "the shared client id error")
    line = lines[0]
    assert line["level"] == "error"
    assert line["collector"] == "edr"
    assert line["client_id"] == f"socd-it-shared-{unique}"
    assert line["short_connections"] >= 3
    assert "Give every instance its own `client_id`" in line["hint"]
    assert "$share subscriptions each replica still needs its own id" in line["hint"]
    reconnects = sum(metric(p.metrics(), "socd_collector_reconnects_total", collector="edr")
                     for p in (first, second))
    assert reconnects >= 3
    # The lost connections say why now, not only "Disconnected during message iteration".
    lost = [e for p in (first, second) for e in logged(p, "broker connection lost; reconnecting")]
    assert any("Disconnected during message iteration: " in e["error"] for e in lost)
    assert all("connected_secs" in e for e in lost)
