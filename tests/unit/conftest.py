"""Fixtures shared by the unit tests: no network services, files under tmp_path."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from socd import metrics
from socd.app.deadletter import DeadLetter

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DIR = REPO / "socd" / "default"
SAMPLE_DIR = DEFAULT_DIR / "sample"
CONFIG_ERRORS_DIR = REPO / "tests" / "config_errors"


def sample_value(metric: str, /, **labels: str) -> float:
    """Current value of one series in socd's registry (0 when it does not exist)."""
    value = metrics.REGISTRY.get_sample_value(metric, labels)
    return 0.0 if value is None else value


def series_exists(metric: str, /, **labels: str) -> bool:
    return metrics.REGISTRY.get_sample_value(metric, labels) is not None


@pytest.fixture(autouse=True)
def _no_installed_socd(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests never see a socd installed on this machine (socd.config.install): no default
    /etc/socd/socd.yaml, no environment file, and root is never switched to its user."""
    monkeypatch.setenv("SOCD_ETC", "/nonexistent/socd-unit-tests")


@pytest.fixture
def uid() -> str:
    """A short unique name, so tests sharing the global metrics registry do not collide."""
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture
def dead_letter(tmp_path: Path) -> Iterator[DeadLetter]:
    dl = DeadLetter(str(tmp_path / "dead-letter"))
    yield dl
    dl.close()


@pytest.fixture
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No SOCD_CONFIG from the caller; state goes below tmp_path."""
    monkeypatch.delenv("SOCD_CONFIG", raising=False)
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.delenv("SOCD_HTTP_PORT", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path
