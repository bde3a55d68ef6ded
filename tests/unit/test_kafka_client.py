"""The Kafka client settings (socd.kafka.client), the offset ledger and the lag
arithmetic: what socd's delivery guarantee rests on, checked without a broker (the
integration tests run them against the real one)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from socd.kafka.client import (
    KafkaClientConfig,
    consumer_settings,
    librdkafka_settings,
    producer_settings,
    redacted,
)
from socd.kafka.metrics import CONSUMER_LAG, LagGauge, partition_lag
from socd.kafka.offsets import OffsetLedger
from socd.metrics import REGISTRY


def _cfg(**extra: object) -> KafkaClientConfig:
    return KafkaClientConfig.model_validate({"bootstrap_servers": "k1:9092, k2:9093", **extra})


def test_plaintext_settings() -> None:
    settings = librdkafka_settings(_cfg(), client_id="socd-edr")
    assert settings == {
        "bootstrap.servers": "k1:9092,k2:9093", "client.id": "socd-edr",
        "security.protocol": "PLAINTEXT", "socket.timeout.ms": "30000",
        "socket.connection.setup.timeout.ms": "10000"}


@pytest.mark.parametrize(("tls", "sasl", "protocol"), [
    (None, None, "PLAINTEXT"), ({}, None, "SSL"),
    (None, {"username": "u", "password": "p"}, "SASL_PLAINTEXT"),
    ({}, {"username": "u", "password": "p"}, "SASL_SSL")])
def test_security_protocol_follows_tls_and_sasl(tls: object, sasl: object,
                                                protocol: str) -> None:
    cfg = _cfg(**({"tls": tls} if tls is not None else {}),
               **({"sasl": sasl} if sasl is not None else {}))
    assert librdkafka_settings(cfg, client_id="x")["security.protocol"] == protocol


def test_tls_and_sasl_settings_resolve_files_and_hold_the_password() -> None:
    cfg = _cfg(client_id="fixed", tls={"ca_file": "ca.pem", "cert_file": "/abs/c.pem",
                                       "key_file": "k.pem"},
               sasl={"mechanism": "SCRAM-SHA-256", "username": "socd", "password": "s3cret"})
    settings = librdkafka_settings(cfg, client_id="ignored", config_dir="/etc/socd")
    assert settings["client.id"] == "fixed"
    assert settings["ssl.ca.location"] == "/etc/socd/ca.pem"
    assert settings["ssl.certificate.location"] == "/abs/c.pem"
    assert settings["ssl.key.location"] == "/etc/socd/k.pem"
    assert settings["enable.ssl.certificate.verification"] == "true"
    assert settings["ssl.endpoint.identification.algorithm"] == "https"
    assert (settings["sasl.mechanism"], settings["sasl.username"],
            settings["sasl.password"]) == ("SCRAM-SHA-256", "socd", "s3cret")
    assert redacted(settings)["sasl.password"] == "***"
    assert "s3cret" not in repr(cfg)
    assert "s3cret" not in str(cfg.model_dump())


def test_unverified_tls_turns_both_checks_off() -> None:
    settings = librdkafka_settings(_cfg(tls={"verify": False}), client_id="x")
    assert settings["enable.ssl.certificate.verification"] == "false"
    assert settings["ssl.endpoint.identification.algorithm"] == "none"


@pytest.mark.parametrize("bad", [
    {"bootstrap_servers": []}, {"bootstrap_servers": "k1"},
    {"bootstrap_servers": "k1:99999"}, {"bootstrap_servers": "k 1:9092"},
    {"sasl": {"mechanism": "GSSAPI", "username": "u", "password": "p"}},
    {"sasl": {"username": "", "password": "p"}},
    {"tls": {"cert_file": "c.pem"}},
    {"librdkafka": {"enable.auto.commit": "true"}},
    {"librdkafka": {"acks": "1"}}, {"librdkafka": {"enable.idempotence": "false"}},
    {"librdkafka": {"ssl.ca.location": "/x"}}, {"librdkafka": {"sasl.password": "x"}},
    {"unknown": 1}])
def test_bad_client_config_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        KafkaClientConfig.model_validate({"bootstrap_servers": "k1:9092", **bad})


def test_pass_through_settings_are_kept_but_cannot_weaken_delivery() -> None:
    cfg = _cfg(librdkafka={"linger.ms": "50", "compression.type": "lz4"})
    producer = producer_settings(cfg, client_id="p", delivery_timeout_secs=12)
    assert producer["linger.ms"] == "50"
    assert producer["compression.type"] == "lz4"
    assert (producer["enable.idempotence"], producer["acks"],
            producer["message.timeout.ms"]) == ("true", "all", "12000")
    consumer = consumer_settings(cfg, group_id="g", client_id="c",
                                 max_poll_interval_secs=60)
    assert consumer["enable.auto.commit"] == "false"
    assert consumer["enable.auto.offset.store"] == "false"
    assert consumer["partition.assignment.strategy"] == "cooperative-sticky"
    assert consumer["group.id"] == "g"
    assert consumer["max.poll.interval.ms"] == "60000"
    assert "group.instance.id" not in consumer
    static = consumer_settings(cfg, group_id="g", client_id="c", instance_id="socd-worker-0")
    assert static["group.instance.id"] == "socd-worker-0"


def test_ledger_releases_offsets_in_consume_order() -> None:
    ledger = OffsetLedger()
    first = ledger.add({("t", 0): 10, ("t", 1): 5}, parts=2)
    second = ledger.add({("t", 0): 20})
    ledger.done(second)  # stored first, but the older batch is not: nothing yet
    assert ledger.take() == {}
    ledger.done(first)
    assert ledger.take() == {}  # one of its two parts is still out
    ledger.done(first)
    assert ledger.take() == {("t", 0): 20, ("t", 1): 5}
    assert ledger.take() == {}
    assert ledger.pending == 0


def test_ledger_drops_revoked_partitions() -> None:
    ledger = OffsetLedger()
    done = ledger.add({("t", 0): 3, ("t", 1): 4}, parts=0)  # all dead-lettered: done now
    pending = ledger.add({("t", 0): 9, ("t", 1): 9})
    assert ledger.take([("t", 1)]) == {("t", 1): 4}
    ledger.drop([("t", 0)])
    ledger.done(pending)
    assert ledger.take() == {("t", 1): 9}
    assert done.remaining == 0


@pytest.mark.parametrize(("low", "high", "offset", "lag"), [
    (0, 100, 40, 60), (0, 100, 100, 0), (0, 100, -1001, 100), (50, 100, 10, 50),
    (0, 100, 120, 0), (-1001, -1001, 5, 0)])
def test_partition_lag(low: int, high: int, offset: int, lag: int) -> None:
    assert partition_lag(low, high, offset) == lag


def test_lag_series_exist_only_for_owned_partitions() -> None:
    gauge = LagGauge("unit-test-group")
    gauge.set("t", 0, 7)
    gauge.set("t", 1, 3)
    assert REGISTRY.get_sample_value("socd_kafka_consumer_lag", {
        "group": "unit-test-group", "topic": "t", "partition": "0"}) == 7
    gauge.forget([("t", 0)])
    assert REGISTRY.get_sample_value("socd_kafka_consumer_lag", {
        "group": "unit-test-group", "topic": "t", "partition": "0"}) is None
    gauge.forget_all()
    assert not [s for m in CONSUMER_LAG.collect() for s in m.samples
                if s.labels.get("group") == "unit-test-group"]


def test_config_check_does_not_load_librdkafka() -> None:
    code = ("import sys, socd.kafka.client, socd.kafka.metrics, socd.kafka.offsets, "
            "socd.collectors.kafka, socd.alerting.kafka; "
            "assert 'confluent_kafka' not in sys.modules, 'imported at module level'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
