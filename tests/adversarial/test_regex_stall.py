"""Finding 5: one event with long fields must not stall socd (super-linear regexes).

Before the fix, rule patterns ran on Python's backtracking ``re``: shipped patterns such as
``\\b(nc|ncat|netcat)\\b.*\\s-(e|c)\\s`` take time quadratic in the field, and one webhook
event with a 128k-character ``process.command_line`` kept the event loop busy for
close to a minute (``/healthz`` silent, then systemd's watchdog kills the daemon). Some
fixed decoder patterns (FortiGate and PAM key=value pairs, sudo lines) had the same flaw.

* A real ``socd run`` with the webhook collector and the full shipped rule pack is sent
  events whose text fields are 128 KiB and 1 MiB of tokens those patterns look for;
  ``/healthz`` is asked all along and must always answer within :data:`HEALTH_BOUND`;
  every event is stored whole, and the regex conditions read only the first
  ``rules.max_field_bytes`` (counted in ``socd_rule_fields_truncated_total``).
* Its syslog listener (TCP, messages up to 2 MiB) is sent 256 KiB lines built to make the
  decoder's patterns backtrack (FortiGate and PAM key=value pairs, sudo): same bound,
  every line stored and still parsed as what it is.
* In-process, one event whose text fields are 1 MiB each meets every shipped rule: bounded
  time (a generous 2 s: the benchmark ``classify_1mib_fields`` measures the 100 ms goal)
  and each regex-read field counted as truncated.
* A rule file with a lookahead or a backreference is refused at load by ``socd
  check-config`` and ``socd run``: file, line, key path, rule id and a hint.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from scripts.bench_rules import hostile_event
from socd.engine import RuleEngine, load_paths
from socd.engine.compiler import DEFAULT_MAX_FIELD_BYTES, RULE_FIELDS_TRUNCATED
from tests.conftest import free_port
from tests.helpers import SocdProcess, metric, wait_for

pytestmark = [pytest.mark.timeout(300)]

TOKEN = "adv-regex-token-0123456789abcdef"
KIB = 1024
MIB = 1024 * 1024
# /healthz must answer within this while hostile input is classified (the stall was ~56 s;
# the issue's own goal, 100 ms per event, is what the benchmark measures).
HEALTH_BOUND = 2.0
# Tokens that make a backtracking engine retry at every position of the shipped patterns.
HOSTILE = "nc curl | rm sh -x history /dev/tcp/a socket.socket( S-1-5-21- Nguyễn "


def hostile(size: int, salt: str) -> str:
    """``size`` UTF-8 bytes of :data:`HOSTILE`, starting with ``salt``."""
    text = salt + " " + HOSTILE * (size // len(HOSTILE) + 1)
    return text.encode()[:size].decode("utf-8", "ignore")


def webhook_event(i: int, size: int) -> dict[str, Any]:
    """A server-EDR alert the reverse-shell and log-clearing rules examine."""
    return {
        "@timestamp": f"2026-11-20T10:00:{i:02d}+07:00",
        "event": {"kind": "alert", "id": f"regex-stall-{i}", "module": "server_edr",
                  "category": ["process"]},
        "host": {"name": f"srv-stall-{i}"},
        "process": {"name": "bash", "command_line": hostile(size, f"cmd{i}")},
        "url": {"original": hostile(size, f"url{i}")},
        "file": {"path": hostile(size, f"path{i}")},
        "user": {"name": hostile(size, f"user{i}")},
        "rule": {"name": hostile(size, f"rule{i}")},
        "message": hostile(size, f"msg{i}"),
    }


def config(tmp_path: Path) -> dict[str, Any]:
    return {
        "state_dir": str(tmp_path / "state"),
        "log": {"format": "json"},
        "http": {"host": "127.0.0.1", "port": free_port()},
        "collectors": {
            "hook": {"type": "webhook", "host": "127.0.0.1", "port": free_port(),
                     "max_body_bytes": 16 * MIB, "sources": {"edr": {"token": TOKEN}}},
            "sys": {"type": "syslog", "max_message_bytes": 2 * MIB,
                    "flush_interval_secs": 0.05,
                    "listeners": [{"protocol": "tcp", "host": "127.0.0.1",
                                   "port": free_port(), "framing": "octet_counting"}]},
        },
        "sinks": {"out": {"type": "ndjson", "path": "out.ndjson", "select": "all",
                          "flush_interval_secs": 0.1}},
    }


def health_latency(proc: SocdProcess) -> float:
    """Seconds /healthz took to answer; fails when it does not answer in HEALTH_BOUND."""
    started = time.monotonic()
    try:
        with urllib.request.urlopen(proc.url + "/healthz", timeout=HEALTH_BOUND) as resp:
            resp.read()
    except (TimeoutError, urllib.error.URLError) as exc:
        raise AssertionError(f"/healthz did not answer within {HEALTH_BOUND} s while "
                             f"hostile input was classified: {exc}") from None
    return time.monotonic() - started


def stored(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "state" / "out.ndjson"
    if not path.exists():
        return []
    complete = path.read_bytes().split(b"\n")[:-1]  # the sink may be writing the last one
    return [orjson.loads(line) for line in complete if line.strip()]


def wait_stored(proc: SocdProcess, tmp_path: Path, done: Any, what: str) -> float:
    """Ask /healthz until ``done(stored events)``; returns the slowest answer."""
    slowest = 0.0
    deadline = time.monotonic() + 120
    while True:
        proc.assert_running()
        slowest = max(slowest, health_latency(proc))
        if done(stored(tmp_path)):
            return slowest
        assert time.monotonic() < deadline, f"{what} not stored within 120 s"
        time.sleep(0.05)


def post(proc: SocdProcess, port: int, event: dict[str, Any]) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/ingest/edr", data=orjson.dumps(event), method="POST",
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=HEALTH_BOUND * 5) as resp:
            return int(resp.status)
    except (TimeoutError, urllib.error.URLError) as exc:
        raise AssertionError(f"the webhook did not answer: {exc}") from None


def syslog_lines(size: int) -> list[bytes]:
    """Lines whose payloads made the syslog decoder's own patterns backtrack."""
    pad = "a" * size
    return [
        # FortiGate key=value: a key could start anywhere in a run without "="
        f"<189>date=2026-11-20 time=10:00:00 devname=\"FGT-STALL\" {pad}".encode(),
        # PAM key=value pairs after an sshd authentication failure
        ("<38>Nov 20 10:00:01 srv-stall sshd[1]: pam_unix(sshd:auth): authentication "
         f"failure; {pad}").encode(),
        # sudo: lazy groups retried for every "; TTY=" of the line
        ("<86>Nov 20 10:00:02 srv-stall sudo: alice : "
         + "x ; TTY=a ; PWD=b ; " * (size // 20)).encode(),
    ]


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def send_syslog(port: int, lines: list[bytes]) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        for line in lines:
            sock.sendall(str(len(line)).encode() + b" " + line)


def start_socd(tmp_path: Path) -> tuple[SocdProcess, int, int]:
    cfg = config(tmp_path)
    hook_port = cfg["collectors"]["hook"]["port"]
    syslog_port = cfg["collectors"]["sys"]["listeners"][0]["port"]
    proc = SocdProcess(cfg, tmp_path).start()
    for port in (hook_port, syslog_port):  # /readyz may answer before they listen
        wait_for(lambda port=port: listening(port), 30, f"a listener on {port}")
    return proc, hook_port, syslog_port


def test_webhook_events_with_huge_fields_keep_socd_answering(tmp_path: Path) -> None:
    proc, hook_port, _ = start_socd(tmp_path)
    sizes = [128 * KIB, 128 * KIB, MIB, MIB]
    slowest = 0.0
    try:
        for i, size in enumerate(sizes):
            assert post(proc, hook_port, webhook_event(i, size)) == 202
            ident = f"regex-stall-{i}"
            slowest = max(slowest, wait_stored(
                proc, tmp_path,
                lambda events, ident=ident: any(e.get("event", {}).get("id") == ident
                                                for e in events),
                f"webhook event {i} ({size} bytes)"))
        metrics = proc.metrics()
    finally:
        proc.stop()

    by_id = {e["event"]["id"]: e for e in stored(tmp_path) if "id" in e.get("event", {})}
    for i, size in enumerate(sizes):
        kept = by_id[f"regex-stall-{i}"]
        # stored whole: only what the regex conditions read is capped
        assert len(kept["process"]["command_line"].encode()) == size
    assert slowest < HEALTH_BOUND
    assert metric(metrics, "socd_rule_fields_truncated_total",
                  field="process.command_line") >= len(sizes)


def test_syslog_lines_built_to_backtrack_keep_socd_answering(tmp_path: Path) -> None:
    proc, _, syslog_port = start_socd(tmp_path)
    lines = syslog_lines(256 * KIB)
    try:
        send_syslog(syslog_port, lines)
        slowest = wait_stored(
            proc, tmp_path,
            lambda events: sum(e.get("socd", {}).get("decoder") == "syslog"
                               for e in events) >= len(lines),
            "syslog lines")
    finally:
        proc.stop()
    assert slowest < HEALTH_BOUND
    kinds = {e.get("observer", {}).get("vendor") or e.get("event", {}).get("action")
             for e in stored(tmp_path)}
    assert {"Fortinet", "ssh_pam_failure"} <= kinds  # still parsed as what they are


def test_one_event_of_1mib_fields_meets_every_shipped_rule_in_bounded_time() -> None:
    rules = load_paths(["builtin"])
    engine = RuleEngine(rules, ioc_lookup=lambda kind, value, source=None: False)
    event = hostile_event(rules, MIB, 0)
    read_by_regex = {leaf_field for r in rules for leaf_field in _regex_fields(r.rule)}
    present = {f for f in read_by_regex if _get(event, f) is not None}
    assert present, "the event must carry the fields the shipped regexes read"
    before = {f: RULE_FIELDS_TRUNCATED.labels(f)._value.get() for f in present}
    started = time.perf_counter()
    out = engine.process([event])
    seconds = time.perf_counter() - started
    assert len(out) > 1  # the hostile tokens fire rules: the fields were really read
    assert seconds < 2.0, f"{seconds:.2f} s for one event"
    counted = {f: RULE_FIELDS_TRUNCATED.labels(f)._value.get() - before[f] for f in present}
    # a field a regex read was cut to rules.max_field_bytes and counted once (a regex whose
    # rule fails earlier does not read its field)
    assert counted["process.command_line"] == 1
    assert set(counted.values()) <= {0, 1}, counted
    assert DEFAULT_MAX_FIELD_BYTES < MIB


def _regex_fields(rule: Any) -> set[str]:
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "regex" in node and isinstance(node.get("field"), str):
                found.add(node["field"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
    walk(rule.match)
    if rule.sequence is not None:
        walk([s.match for s in rule.sequence.steps])
    return found


def _get(event: dict[str, Any], path: str) -> Any:
    node: Any = event
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


BAD_RULES = """rules:
  - id: custom-curl-not-internal
    title: "curl tới địa chỉ ngoài"
    severity: medium
    match:
      all:
        - {field: event.module, equals: server_edr}
        - {field: process.command_line, regex: 'curl\\s+(?!https?://repo\\.internal)'}
  - id: custom-repeated-word
    title: "từ lặp lại"
    severity: low
    match: {field: message, regex: '\\b(\\w+)\\s+\\1\\b'}
"""


def test_a_rule_re2_cannot_run_is_refused_at_load(tmp_path: Path) -> None:
    rules_file = tmp_path / "custom.yaml"
    rules_file.write_text(BAD_RULES, encoding="utf-8")
    cfg = {"state_dir": str(tmp_path / "state"),
           "http": {"host": "127.0.0.1", "port": free_port()},
           "rules": {"paths": ["builtin", str(rules_file)]}}
    config_file = tmp_path / "socd.yaml"
    config_file.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    checked = subprocess.run([sys.executable, "-m", "socd", "check-config", "-c",
                              str(config_file)], capture_output=True, text=True,
                             timeout=120, check=False)
    assert checked.returncode != 0, checked.stdout + checked.stderr
    out = checked.stdout + checked.stderr
    assert f"{rules_file}:8: rules[0].match.all[1].regex: " in out, out
    assert "lookahead or lookbehind" in out
    assert "(rule 'custom-curl-not-internal')" in out
    assert f"{rules_file}:12: rules[1].match.regex: " in out, out
    assert "backreference \\1" in out
    assert "(rule 'custom-repeated-word')" in out
    assert out.count("(hint: RE2 ") == 2, out
    # the daemon refuses to start on the same file: nothing runs a pattern it cannot bound
    ran = subprocess.run([sys.executable, "-m", "socd", "run", "-c", str(config_file)],
                         capture_output=True, text=True, timeout=120, check=False)
    assert ran.returncode != 0
    assert "(rule 'custom-curl-not-internal')" in ran.stdout + ran.stderr
