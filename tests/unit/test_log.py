"""Logging: JSON lines with secrets redacted."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import structlog
from pydantic import SecretStr

from socd import log

SECRET = "hunter2-T0ken-value"


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        structlog.reset_defaults()
        root.handlers[:] = handlers
        root.setLevel(level)


def json_logger(level: str = "debug") -> Any:
    # Called in the test body: structlog binds sys.stderr (capsys's stream) at set-up.
    log.setup(level, "json")
    return structlog.get_logger("socd.test")


def lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    err = capsys.readouterr().err
    return [orjson.loads(line) for line in err.splitlines() if line.strip()]


@pytest.mark.parametrize("key", ["password", "passwd", "pass", "mqtt_password", "token",
                                 "api_key", "apikey", "API_KEY", "secret", "client_secret",
                                 "authorization", "credentials"])
def test_secret_keys_are_redacted(capsys: pytest.CaptureFixture[str], key: str) -> None:
    json_logger().info("connecting", **{key: SECRET}, host="broker")
    (entry,) = lines(capsys)
    assert entry[key] == log.REDACTED
    assert entry["host"] == "broker"
    assert SECRET not in orjson.dumps(entry).decode()


def test_secretstr_is_masked_under_any_key(capsys: pytest.CaptureFixture[str]) -> None:
    json_logger().warning("config", value=SecretStr(SECRET), password=None)
    (entry,) = lines(capsys)
    assert SECRET not in entry["value"]
    assert entry["password"] is None  # nothing to hide


def test_url_credentials_are_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    json_logger().error(
        "elasticsearch unreachable", hosts=f"https://elastic:{SECRET}@es.local:9200/",
        error=f"cannot connect to mqtt://socd:{SECRET}@broker:1883")
    (entry,) = lines(capsys)
    assert entry["hosts"] == "https://***@es.local:9200/"
    assert entry["error"] == "cannot connect to mqtt://***@broker:1883"
    assert entry["level"] == "error"
    assert entry["event"] == "elasticsearch unreachable"
    assert "timestamp" in entry


def test_plain_values_are_kept(capsys: pytest.CaptureFixture[str]) -> None:
    json_logger().info("ok", user="an@example.gov.vn", count=3, label="nghiêm trọng")
    (entry,) = lines(capsys)
    assert entry["user"] == "an@example.gov.vn"
    assert entry["count"] == 3
    assert entry["label"] == "nghiêm trọng"


def test_level_filtering(capsys: pytest.CaptureFixture[str]) -> None:
    logger = json_logger("warning")
    logger.info("hidden")
    logger.warning("shown", token=SECRET)
    entries = lines(capsys)
    assert [e["event"] for e in entries] == ["shown"]
    assert entries[0]["token"] == log.REDACTED


def test_console_format_also_redacts(capsys: pytest.CaptureFixture[str]) -> None:
    log.setup("info", "console")
    structlog.get_logger("t").info("connecting", password=SECRET)
    err = capsys.readouterr().err
    assert "connecting" in err
    assert SECRET not in err


def test_redact_processor_directly() -> None:
    event = {"event": "x", "password": SECRET, "empty_token": "", "url": "http://a:b@c/",
             "other": 1}
    out = log.redact(None, "info", event)
    assert out == {"event": "x", "password": "***", "empty_token": "",
                   "url": "http://***@c/", "other": 1}
