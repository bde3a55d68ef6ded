"""The cluster's Kafka clients and its memory of event hashes (issue 18)."""

from __future__ import annotations

from pathlib import Path

from socd import config as config_mod
from socd.app.cluster import ClusterRole
from socd.app.cluster_intake import producer_config
from socd.app.cluster_kafka import group_id
from socd.app.cluster_seen import PUBLISH_HEADER, SeenEvents, publish_id
from socd.app.cluster_worker import consumer_config


def test_a_repeat_is_an_event_read_before_from_another_write() -> None:
    seen = SeenEvents(window_ms=1000)
    assert not seen.repeated("a", "t0", b"w1", 10_000)
    assert not seen.repeated("a", "t0", b"w1", 10_000)  # the same bytes twice in one write
    assert seen.repeated("a", "t0", b"w2", 10_500)  # the write published again
    assert not seen.repeated("a", "t1", b"w2", 10_500)  # received again later: counted
    assert not seen.repeated("b", "t0", None, 10_600)


def test_a_repeat_counts_only_within_the_window() -> None:
    seen = SeenEvents(window_ms=1000)
    assert not seen.repeated("a", "t", b"w1", 10_000)
    assert seen.repeated("a", "t", b"w2", 11_000)  # exactly the window: still remembered
    assert not seen.repeated("b", "t", b"w2", 11_001)  # forgets "a"
    assert not seen.repeated("a", "t", b"w3", 11_002)  # forgotten, then remembered anew
    assert seen.repeated("a", "t", b"w4", 11_003)
    assert len(seen) == 2


def test_the_memory_is_bounded_oldest_first() -> None:
    seen = SeenEvents(window_ms=10**9, limit=3)
    for h in "abcd":
        assert not seen.repeated(h, "t", b"w1", 1)
    assert len(seen) == 3
    assert not seen.repeated("a", "t", b"w2", 1)  # the oldest went first
    assert seen.repeated("d", "t", b"w2", 1)


def test_events_without_a_text_hash_are_never_repeats() -> None:
    seen = SeenEvents(window_ms=1000)
    for value in (None, 7, None, 7, b"x", b"x"):
        assert not seen.repeated(value, "t", b"w1", 1)
        assert not seen.repeated(value, "t", b"w2", 1)
    assert len(seen) == 0


def test_the_publish_header_is_found_among_others() -> None:
    assert publish_id(None) is None
    assert publish_id([]) is None
    assert publish_id([("x", b"1"), (PUBLISH_HEADER, b"w")]) == b"w"


def test_the_runtime_clients_honour_tls_and_sasl(tmp_path: Path) -> None:
    """The admin, producer and consumer settings a cluster process runs with are built
    from cluster.kafka through KafkaClientConfig: TLS files (relative to the config's
    directory), SASL mechanism and credentials, not only the bootstrap servers."""
    path = tmp_path / "socd.yaml"
    path.write_text(
        f"state_dir: {tmp_path}/state\ncluster:\n  topic_prefix: k4\n  kafka:\n"
        "    bootstrap_servers: ['kafka-1.example:9093']\n"
        "    tls: {ca_file: tls/ca.pem}\n"
        "    sasl: {mechanism: SCRAM-SHA-512, username: socd, password: s3cret}\n")
    cfg = config_mod.load(str(path))
    role = ClusterRole.from_config(cfg, "all")
    assert role is not None
    clients = {
        "admin": role.settings,
        "producer": producer_config(role.client, cfg.config_dir),
        "consumer": consumer_config(role.client, cfg.config_dir, group_id(role.cluster),
                                    role.cluster),
    }
    for name, settings in clients.items():
        assert settings["bootstrap.servers"] == "kafka-1.example:9093", name
        assert settings["security.protocol"] == "SASL_SSL", name
        assert settings["ssl.ca.location"] == str(tmp_path / "tls" / "ca.pem"), name
        assert (settings["sasl.mechanism"], settings["sasl.username"],
                settings["sasl.password"]) == ("SCRAM-SHA-512", "socd", "s3cret"), name
    assert clients["consumer"]["group.id"] == "k4.workers"
    assert clients["producer"]["acks"] == "all"


def test_copies_are_counted_per_write() -> None:
    """A write that failed part-way (one of two identical copies delivered) and its retry
    (both copies) count two, as one process counts the source's two identical records;
    a third write with both copies adds nothing."""
    seen = SeenEvents(window_ms=60_000)
    first, retry, again = b"w1", b"w2", b"w3"
    assert not seen.repeated("h" * 32, "t", first, 1)
    assert seen.repeated("h" * 32, "t", retry, 2)  # the retry's first copy: counted
    assert not seen.repeated("h" * 32, "t", retry, 3)  # its second: new
    assert seen.repeated("h" * 32, "t", again, 4)
    assert seen.repeated("h" * 32, "t", again, 5)
    assert not seen.repeated("h" * 32, "t", again, 6)  # a third copy is new again


def test_writes_remembered_per_event_are_bounded() -> None:
    seen = SeenEvents(window_ms=60_000)
    for i in range(1000):
        seen.repeated("h" * 32, "t", b"%d" % i, i)
    copies = next(iter(seen._by_key.values()))
    assert len(copies.writes) <= 8
