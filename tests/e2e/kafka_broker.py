"""A private Apache Kafka broker (KRaft, one node) for tests that stop and restart the
broker; the shared one from `make services` is left alone.

It runs from the jars `scripts/services.sh fetch` downloads from Maven Central into
``$SOCD_CACHE/kafka-<version>/libs`` (the same the shared broker uses), on free loopback
ports, with its data in the test's directory so a restart keeps every topic.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from tests.conftest import free_port

CACHE = Path(os.environ.get("SOCD_CACHE", str(Path.home() / ".cache" / "socd")))


def kafka_libs() -> Path:
    """The broker's jar folder; fails (never skips) when `make services` did not fetch it."""
    found = sorted(CACHE.glob("kafka-4*/libs"))
    if not found or not shutil.which("java"):
        raise AssertionError(f"no Kafka jars under {CACHE} (or no java): run `make services`")
    return found[-1]


class PrivateKafka:
    """One KRaft broker+controller on free loopback ports, restartable."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.libs = kafka_libs()
        self.port = free_port()
        self.controller_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.dir / "kafka.log"
        self.conf = self.dir / "server.properties"
        self.conf.write_text("\n".join([
            "process.roles=broker,controller", "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
            "controller.listener.names=CONTROLLER",
            f"listeners=PLAINTEXT://127.0.0.1:{self.port},"
            f"CONTROLLER://127.0.0.1:{self.controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name=PLAINTEXT",
            f"log.dirs={self.dir / 'data'}",
            "num.partitions=1", "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=4", "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1", "group.initial.rebalance.delay.ms=0",
            "share.coordinator.state.topic.replication.factor=1",
            "auto.create.topics.enable=false", ""]))
        self._java("kafka.tools.StorageTool", "format", "-t", "socd-test-k2-cluster-0",
                   "-c", str(self.conf))

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _java(self, *args: str) -> None:
        with self.log.open("ab") as out:
            subprocess.run(["java", "-Xmx256m", "-cp", f"{self.libs}/*", *args],
                           stdout=out, stderr=subprocess.STDOUT, check=True)

    def start(self, timeout: float = 90.0) -> PrivateKafka:
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            ["java", "-Xms384m", "-Xmx384m", "-XX:+UseG1GC", "-Djava.awt.headless=true",
             "-cp", f"{self.libs}/*", "kafka.Kafka", str(self.conf)],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        out.close()
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + timeout
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"kafka exited at start; see {self.log}")
            try:
                md = admin.list_topics(timeout=2)
                if md.brokers and md.controller_id >= 0:
                    return
            except Exception:  # noqa: BLE001 (not up yet)
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"kafka did not answer within {timeout} s; see {self.log}")
            time.sleep(0.3)

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
