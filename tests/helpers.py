"""Helpers for the integration and end-to-end tests (real services only)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import yaml
from elasticsearch import Elasticsearch

REPO = Path(__file__).resolve().parent.parent
SEVERITIES_VI = ["Trung bình", "Cao", "Nghiêm trọng"]


def server_edr_record(i: int, run: str, severity: str = "Trung bình") -> dict[str, Any]:
    """A server-EDR alert in the vendor format of socd/default/mappings/server_edr.yaml."""
    return {
        "alert_id": f"{run}-{i:08d}",
        "detected_at": f"2026-11-16T{(i // 3600) % 24:02d}:{(i // 60) % 60:02d}:{i % 60:02d}+07:00",
        "hostname": f"srv-{i % 7:02d}",
        "host_ip": f"10.10.20.{i % 200 + 1}",
        "severity": severity,
        "category": "Suspicious process",
        "threat_name": "Suspicious.Linux.CurlPipeShell",
        "description": "Tiến trình tải và thực thi script từ Internet",
        "remote_ip": "198.51.100.7",
        "remote_port": 443,
        "direction": "outbound",
        "action": "detected",
        "agent_id": "SGA-0001",
    }


def ecs_alert(i: int, run: str, vendor_severity: int = 2) -> dict[str, Any]:
    """An ECS-shaped IDS alert for the `json` decoder with the suricata table."""
    return {
        "@timestamp": f"2026-11-16T01:{(i // 60) % 60:02d}:{i % 60:02d}.{i % 1000:03d}Z",
        "event": {"kind": "alert", "id": f"{run}-{i}", "module": "suricata",
                  "dataset": "suricata.eve"},
        "source": {"ip": "203.0.113.9", "port": 40000 + i % 20000},
        "destination": {"ip": "10.10.20.11", "port": 22},
        "rule": {"id": "2001219", "name": "ET SCAN Potential SSH Scan"},
        "observer": {"type": "ids", "product": "Suricata"},
        "socd": {"vendor_severity": vendor_severity},
        "message": f"scan {i}",
    }


class Publisher:
    """A QoS 1 MQTT publisher that waits for every PUBACK."""

    def __init__(self, services: dict[str, Any], client_id: str = "") -> None:
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.connect(services["MQTT_HOST"], int(services["MQTT_PORT"]))
        self.client.loop_start()

    def publish(self, topic: str, payloads: Iterable[bytes], qos: int = 1) -> int:
        infos = [self.client.publish(topic, p, qos=qos) for p in payloads]
        for info in infos:
            info.wait_for_publish(timeout=60)
            if not info.is_published():
                raise AssertionError(f"publish to {topic} not acknowledged")
        return len(infos)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def es_client(services: dict[str, Any]) -> Elasticsearch:
    return Elasticsearch(services["ES_URL"], request_timeout=30)


async def index_with_es_sink(es_url: str, prefix: str, events: list[dict[str, Any]],
                             state_dir: Path) -> None:
    """Write ``events`` through the real elasticsearch sink (its template, mapping and
    day indices, refreshed), as socd stores alerts; :func:`es_cleanup` removes them."""
    from socd.alerting.elasticsearch import ElasticsearchSink
    from socd.app.deadletter import DeadLetter
    from socd.plugins import PluginContext

    dead = DeadLetter(str(state_dir / "dead-letter"))
    sink = ElasticsearchSink(
        ElasticsearchSink.Config(type="elasticsearch", hosts=[es_url], index_prefix=prefix,
                                 refresh=True),
        PluginContext(name="es", dead_letter=dead, state_dir=str(state_dir)))
    await sink.start()
    try:
        await sink.write(events)
    finally:
        await sink.close()
        dead.close()


def es_cleanup(es: Elasticsearch, prefix: str) -> None:
    """Delete what an Elasticsearch sink with ``index_prefix=prefix`` created: its
    indices (the hidden dead-letter ones too), index and component templates."""
    with contextlib.suppress(Exception):
        es.indices.delete(index=f"{prefix}-*", allow_no_indices=True, expand_wildcards="all")
    for name in (prefix, f"{prefix}-deadletter"):
        with contextlib.suppress(Exception):
            es.indices.delete_index_template(name=name)
    for name in (f"{prefix}-mappings", f"{prefix}-settings"):
        with contextlib.suppress(Exception):
            es.cluster.delete_component_template(name=name)


def es_count(es: Elasticsearch, index: str) -> int:
    if not es.indices.exists(index=index):
        return 0
    es.indices.refresh(index=index)
    return int(es.count(index=index)["count"])


def wait_for(predicate: Callable[[], Any], timeout: float, what: str,
             interval: float = 0.25) -> Any:
    """Poll until ``predicate()`` is truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text format -> {'name{labels}': value} (labels as written)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        out[key] = float(value)
    return out


def metric(metrics: dict[str, float], name: str, **labels: str) -> float:
    """Sum of the series of ``name`` whose labels include ``labels``."""
    total = 0.0
    want = [f'{k}="{v}"' for k, v in labels.items()]
    for key, value in metrics.items():
        base = key.split("{", 1)[0]
        if base != name:
            continue
        if all(w in key for w in want):
            total += value
    return total


class SocdProcess:
    """socd run as a separate process, with its JSON log captured."""

    def __init__(self, config: dict[str, Any], workdir: Path) -> None:
        self.workdir = workdir
        self.config_path = workdir / "socd.yaml"
        self.write_config(config)
        self.log_path = workdir / "socd.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.http_port = int(config["http"]["port"])

    def write_config(self, config: dict[str, Any] | str) -> None:
        text = config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False)
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.config_path)

    def start(self, *, wait_ready: bool = True) -> SocdProcess:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("NOTIFY_SOCKET", None)
        self._log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "socd", "run", "-c", str(self.config_path)],
            stdout=self._log, stderr=subprocess.STDOUT, cwd=self.workdir, env=env)
        if wait_ready:
            wait_for(self.ready, 60, "socd /readyz")
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def _get(self, path: str) -> tuple[int, str]:
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError:
            return 0, ""

    def ready(self) -> bool:
        self.assert_running()
        return self._get("/readyz")[0] == 200

    def metrics(self) -> dict[str, float]:
        status, text = self._get("/metrics")
        assert status == 200, f"/metrics returned {status}"
        return parse_metrics(text)

    def assert_running(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"socd exited with {self.proc.returncode}:\n{self.log_tail()}")

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 60, *, send_signal: bool = True) -> int:
        """SIGTERM (unless already sent: a second one forces the exit) and wait."""
        assert self.proc is not None
        if send_signal and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            tail = self.log_tail()
            raise AssertionError(f"socd did not stop within {timeout}s:\n{tail}") from None
        self._log.close()
        return rc

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])

    def kill(self) -> None:
        """Kill socd if it still runs and close its log (a test that failed before
        stop() must not leave the file to be collected during the next test)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc is not None and not self._log.closed:
            self._log.close()


def run_in_thread(fn: Callable[[], Any]) -> threading.Thread:
    t = threading.Thread(target=fn, daemon=True)
    t.start()
    return t


class TcpProxy:
    """A loopback TCP proxy in front of a real service that can simulate an outage:
    while ``down``, new connections are closed at once and open ones are cut."""

    def __init__(self, target_host: str, target_port: int) -> None:
        import socket

        self.target = (target_host, target_port)
        self.down = False
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._server.getsockname()[1]
        self._conns: list[Any] = []
        self._lock = threading.Lock()
        self._stop = False
        run_in_thread(self._accept)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set_down(self, down: bool) -> None:
        self.down = down
        if down:
            with self._lock:
                for sock in self._conns:
                    self._close(sock)
                self._conns.clear()

    @staticmethod
    def _close(sock: Any) -> None:
        import contextlib
        import socket

        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            sock.close()

    def _accept(self) -> None:
        import socket

        while not self._stop:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if self.down:
                self._close(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                self._close(client)
                continue
            with self._lock:
                self._conns += [client, upstream]
            run_in_thread(lambda a=client, b=upstream: self._pipe(a, b))
            run_in_thread(lambda a=upstream, b=client: self._pipe(a, b))

    def _pipe(self, src: Any, dst: Any) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        self._close(src)
        self._close(dst)

    def close(self) -> None:
        self._stop = True
        self._close(self._server)
        self.set_down(True)
