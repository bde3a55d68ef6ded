"""Shared fixtures: the real services started by ``make services``.

Integration and end-to-end tests talk to a real Mosquitto, Elasticsearch and
Prometheus whose endpoints ``scripts/services.sh up`` writes to
``$SOCD_SERVICES_DIR/services.json``. When that file is missing or a service
does not answer, the tests that need it FAIL with a message saying how to
start them; they never skip.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

REPO = Path(__file__).resolve().parent.parent

# Property tests are deterministic (a flaky test is a bug): the same examples on every
# run, no example database carried between runs, and no per-example deadline on this
# shared 2-core machine. Explore with `--hypothesis-seed=random` / HYPOTHESIS_PROFILE=dev.
settings.register_profile("ci", derandomize=True, database=None, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
SERVICES_DIR = Path(os.environ.get("SOCD_SERVICES_DIR", "/tmp/socd-services"))


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def services() -> dict[str, Any]:
    """Endpoints of the running services; fails (never skips) when they are down."""
    path = SERVICES_DIR / "services.json"
    if not path.exists():
        pytest.fail(f"{path} not found: start the real services with `make services` "
                    "(make test does this)", pytrace=False)
    data: dict[str, Any] = json.loads(path.read_text())
    for name in ("MQTT", "ES", "PROMETHEUS"):
        host, port = data[f"{name}_HOST"], int(data[f"{name}_PORT"])
        if not _reachable(host, port):
            pytest.fail(f"{name} at {host}:{port} (from {path}) is not answering; "
                        "run `make services`", pytrace=False)
    return data


def _kafka_env() -> dict[str, Any]:
    """The KAFKA_* entries of services.json; fails (never skips) when Kafka is not up."""
    path = SERVICES_DIR / "services.json"
    if not path.exists():
        pytest.fail(f"{path} not found: start the real services with `make services` "
                    "(make test does this)", pytrace=False)
    data: dict[str, Any] = json.loads(path.read_text())
    if not data.get("KAFKA_BOOTSTRAP"):
        pytest.fail(f"no KAFKA_BOOTSTRAP in {path}: `make services` did not start Kafka",
                    pytrace=False)
    for key in ("KAFKA_BOOTSTRAP", "KAFKA_SASL_BOOTSTRAP", "KAFKA_TLS_BOOTSTRAP"):
        host, _, port = str(data[key]).rpartition(":")
        if not _reachable(host, int(port)):
            pytest.fail(f"Kafka {key}={data[key]} (from {path}) is not answering; "
                        "run `make services`", pytrace=False)
    return {k: v for k, v in data.items() if k.startswith("KAFKA_")}


@pytest.fixture(scope="session")
def kafka_services() -> dict[str, Any]:
    """Every KAFKA_* endpoint: plain, SASL (user, password) and TLS (CA file) listeners."""
    return _kafka_env()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_services: dict[str, Any]) -> str:
    """``host:port`` of the real dev broker's PLAINTEXT listener."""
    return str(kafka_services["KAFKA_BOOTSTRAP"])


@pytest.fixture
def unique() -> str:
    """A short unique name for this test's topic, index or collector."""
    return uuid.uuid4().hex[:10]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
