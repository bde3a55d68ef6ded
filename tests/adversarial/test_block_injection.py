"""Findings 1, 2 and 10 of issue 12: crafted addresses against a real socd and real nft.

Each test runs ``socd run`` inside a private network namespace (A) with a
``blocker`` sink on the nftables backend; the attacker sends from namespace B.

* Finding 1: sshd lines naming ``2001:db8:bad::99%x`` (an IPv6 zone id) made nft
  reject every later batch, so no block was ever enforced again.
* Finding 2: a value with embedded newlines became several lines of the EDL
  feed and of ``socd block export``, one of them the SOC's own address.
* Finding 10: ``::ffff:203.0.113.0/120`` (an IPv4-mapped IPv6 network) passed
  the IPv4 allowlist 203.0.113.0/24.
"""

from __future__ import annotations

import secrets
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from socd import netaddr
from tests.adversarial.netns import PY, NetnsSocd, NsPair, ns_pair
from tests.conftest import free_port
from tests.helpers import metric, wait_for

pytestmark = pytest.mark.integration

EDL_TOKEN = "edl-" + "x" * 28
SYSLOG_PORT = 5514
ALLOWLISTED = "203.0.113.0/24"


def _blocker(table: str, **extra: Any) -> dict[str, Any]:
    return {"type": "blocker", "backend": "nftables", "table": table, "default_ttl": "1h",
            "expiry_interval_secs": 0.5, "flush_interval_secs": 0.2, **extra}


def _base_config(pair: NsPair, table: str, **sink: Any) -> dict[str, Any]:
    return {"state_dir": str(pair.workdir / "state"),
            "http": {"host": "127.0.0.1", "port": free_port()},
            "sinks": {"block": _blocker(table, **sink)}}


def _decisions(pair: NsPair) -> list[tuple[str, str, str]]:
    with sqlite3.connect(pair.workdir / "state" / "blocks.db") as db:
        return list(db.execute("SELECT value, kind, state FROM decisions"))


def _audit(pair: NsPair) -> list[tuple[str, str, str]]:
    with sqlite3.connect(pair.workdir / "state" / "blocks.db") as db:
        return list(db.execute("SELECT action, value, why FROM audit ORDER BY id"))


def _assert_canonical_lines(text: str, family: int | None = None) -> list[str]:
    """Every line of a feed is one canonical address or network (of ``family``)."""
    lines = text.splitlines()
    assert text == "".join(line + "\n" for line in lines), "feed not newline-terminated"
    for line in lines:
        assert netaddr.canonical(line, count=False) == line, f"feed line {line!r}"
        if family is not None:
            assert netaddr.parse_network(line, count=False).version == family, line
    return lines


# ------------------------------------------------------------------ finding 1 ----

def _sshd(ip: str, i: int) -> bytes:
    stamp = time.strftime("%b %d %H:%M:%S", time.gmtime())
    return (f"<38>{stamp} srv-adv-01 sshd[{1000 + i}]: Failed password for root from {ip} "
            f"port 4022 ssh2").encode()


ZONE_IDS = ["2001:db8:bad::99%x", "2001:db8:bad::98%eth0;flush", "fe80::1%lo"]


def test_zone_id_in_sshd_lines_cannot_stop_enforcement(tmp_path: Path) -> None:
    """Five UDP lines per zone-id address, then a clean attacker: the zone ids never reach
    blocks.db, socd's nft table stays whole and the clean attacker IS dropped."""
    with ns_pair(tmp_path) as pair:
        table = f"socdg{secrets.token_hex(2)}"
        cfg = _base_config(pair, table)
        # UDP senders can be forged (finding 8): blocks from this listener are enforced
        # only because the operator opted in; the zone ids must be refused anyway.
        cfg["collectors"] = {"syslog": {"type": "syslog", "listeners": [
            {"protocol": "udp", "host": "0.0.0.0", "port": SYSLOG_PORT}],
            "allow_unauthenticated_blocking": True}}
        socd = NetnsSocd(cfg, pair).start()
        try:
            bad = [_sshd(ip, i) for ip in ZONE_IDS for i in range(5)]
            pair.udp_send(SYSLOG_PORT, bad)
            wait_for(lambda: metric(socd.metrics(), "socd_events_decoded_total") >= len(bad),
                     30, "the zone-id lines decoded")
            pair.udp_send(SYSLOG_PORT, [_sshd(pair.addr_b, i) for i in range(5)])
            wait_for(lambda: pair.addr_b in pair.nft_set(table, "blocked4"), 30,
                     "the clean attacker's block in nft")
            assert not pair.connects(pair.addr_b), "the blocked attacker still connects"
            assert pair.connects(pair.addr_b2), "an address never blocked must pass"

            tables = pair.in_a("nft", "list", "tables").stdout
            assert f"inet {table}" in tables
            ruleset = pair.nft_table(table)
            assert "saddr @blocked4" in ruleset
            assert "saddr @blocked6" in ruleset
            for value, _, _ in _decisions(pair):
                assert netaddr.canonical(value, count=False) == value, value
            assert [v for v, _, _ in _decisions(pair)] == [pair.addr_b]
            refused = metric(socd.metrics(), "socd_addresses_refused_total", reason="scope_id")
            assert refused >= len(bad), "the refused zone ids are counted"
        finally:
            socd.stop()


# ------------------------------------------------------------- findings 2, 10 ----

RULES = """
rules:
  - id: adv-block-destination
    title: {vi: "Thử nghiệm chặn", en: "adversarial block test"}
    severity: high
    actions:
      - block: {field: destination.address, ttl: 1h}
    match: {field: event.action, equals: adv-block}
"""

CLEAN4 = "198.51.100.20"
CLEAN6 = "2001:db8:beef::20"


@pytest.fixture(scope="module")
def feed_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """socd in namespace A: a file collector feeds events whose ``destination.address`` a
    rule blocks; blocks.db holds a row written before the address gate existed; EDL on."""
    workdir = tmp_path_factory.mktemp("feeds")
    with ns_pair(workdir) as pair:
        table = f"socdg{secrets.token_hex(2)}"
        injected = f"2001:db8::5%x\n{pair.addr_a}\n2001:db8:ffff::1"
        edl_port = 19798
        (workdir / "rules.yaml").write_text(RULES)
        cfg = _base_config(pair, table, allowlist_cidrs=[ALLOWLISTED],
                           edl={"host": "127.0.0.1", "port": edl_port, "token": EDL_TOKEN})
        cfg["rules"] = {"paths": [str(workdir / "rules.yaml")]}
        events = workdir / "events.ndjson"
        cfg["collectors"] = {"events": {"type": "file", "paths": [str(events)],
                                        "start_at": "beginning"}}
        _seed_old_store(workdir / "state" / "blocks.db", injected)
        values = [injected, "::ffff:203.0.113.0/120", "::ffff:203.0.113.9", " 10.0.0.1 ",
                  "2001:db8:bad::99%x", CLEAN4, CLEAN6]
        events.write_bytes(b"".join(orjson.dumps({
            "@timestamp": "2026-11-16T01:00:00Z", "event": {"kind": "event",
                                                           "action": "adv-block"},
            "destination": {"address": v}, "message": f"adversarial {i}"}) + b"\n"
            for i, v in enumerate(values)))
        socd = NetnsSocd(cfg, pair).start()
        try:
            edl = f"http://127.0.0.1:{edl_port}/edl"
            auth = {"Authorization": f"Bearer {EDL_TOKEN}"}
            wait_for(lambda: CLEAN4 in pair.http_get(f"{edl}/ipv4.txt", auth)[1]
                     and CLEAN6 in pair.http_get(f"{edl}/ipv6.txt", auth)[1],
                     30, "the clean values in the EDL feeds")
            yield {"pair": pair, "socd": socd, "table": table, "edl": edl, "auth": auth,
                   "injected": injected}
        finally:
            socd.stop()


def _seed_old_store(path: Path, value: str) -> None:
    """A blocks.db as socd wrote it before the address gate: the zone-id value stored."""
    from socd.block.decisions import SCHEMA

    path.parent.mkdir(parents=True, exist_ok=True)
    now = time.time()
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA)
        db.execute("INSERT INTO decisions VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                   (value, "ipv6", "seeded", "test", "", now, now, now + 86400, 1, "active",
                    now, 0))
        db.execute("INSERT INTO audit (ts, action, value, why, origin, ref, expires, count, "
                   "actor, dry_run) VALUES (?,?,?,?,?,?,?,?,?,?)",
                   (now, "add", value, "seeded", "test", "", now + 86400, 1, "socd", 0))


def _no_injected_lines(text: str, env: dict[str, Any]) -> None:
    pair: NsPair = env["pair"]
    assert pair.addr_a not in text, "the SOC's own address is served to firewalls"
    assert "2001:db8:ffff::1" not in text
    assert "%" not in text


def test_edl_feed_lines_are_one_canonical_address_each(feed_env: dict[str, Any]) -> None:
    pair: NsPair = feed_env["pair"]
    status4, v4 = pair.http_get(f"{feed_env['edl']}/ipv4.txt", feed_env["auth"])
    status6, v6 = pair.http_get(f"{feed_env['edl']}/ipv6.txt", feed_env["auth"])
    assert status4 == status6 == 200
    _no_injected_lines(v4 + v6, feed_env)
    assert _assert_canonical_lines(v4, 4) == [CLEAN4]
    assert _assert_canonical_lines(v6, 6) == [CLEAN6]


def test_export_lines_are_one_canonical_address_each(feed_env: dict[str, Any]) -> None:
    pair: NsPair = feed_env["pair"]
    config = str(pair.workdir / "socd.yaml")
    txt = pair.in_a(PY, "-m", "socd", "block", "export", "-c", config).stdout
    _no_injected_lines(txt, feed_env)
    assert sorted(_assert_canonical_lines(txt)) == sorted([CLEAN4, CLEAN6])
    csv = pair.in_a(PY, "-m", "socd", "block", "export", "--format", "csv", "-c",
                    config).stdout
    _no_injected_lines(csv, feed_env)
    rows = csv.splitlines()[1:]
    assert sorted(r.split(",", 1)[0] for r in rows) == sorted([CLEAN4, CLEAN6])


def test_old_bad_row_removed_at_start_and_audited(feed_env: dict[str, Any]) -> None:
    pair: NsPair = feed_env["pair"]
    values = [v for v, _, _ in _decisions(pair)]
    assert feed_env["injected"] not in values
    for value in values:
        assert netaddr.canonical(value, count=False) == value
    removals = [(a, v, w) for a, v, w in _audit(pair) if v == feed_env["injected"]
                and a == "remove"]
    assert removals, _audit(pair)
    assert removals[0][2] == "invalid_value"
    assert feed_env["socd"].log_text().count("invalid block values removed") == 1


def test_nft_enforces_every_clean_value(feed_env: dict[str, Any]) -> None:
    pair: NsPair = feed_env["pair"]
    table = feed_env["table"]
    wait_for(lambda: CLEAN4 in pair.nft_set(table, "blocked4"), 30, "the IPv4 block in nft")
    assert CLEAN6 in pair.nft_set(table, "blocked6")


def test_mapped_network_refused_by_rule_action(feed_env: dict[str, Any]) -> None:
    """Finding 10 through a rule's block action: ``::ffff:203.0.113.0/120`` is
    203.0.113.0/24, which is allowlisted, so it is refused (and so is the mapped address)."""
    pair: NsPair = feed_env["pair"]
    values = [v for v, _, _ in _decisions(pair)]
    assert not [v for v in values if v.startswith(("::ffff:", "203.0.113."))]
    refusals = [(v, w) for a, v, w in _audit(pair) if a == "refuse"]
    assert ("203.0.113.0/24", ) in [(v,) for v, _ in refusals], refusals
    assert ("203.0.113.9", ) in [(v,) for v, _ in refusals], refusals
    assert all("allowlisted" in w for v, w in refusals if v.startswith("203.0.113.")), refusals
    sets = pair.nft_set(feed_env["table"], "blocked4") + \
        pair.nft_set(feed_env["table"], "blocked6")
    assert "203.0.113" not in sets
    assert "ffff" not in sets


@pytest.mark.parametrize("value", ["::ffff:203.0.113.0/120", "::ffff:203.0.113.128/121",
                                   "::FFFF:203.0.113.7", "::ffff:cb00:7100/120"])
def test_mapped_network_refused_by_cli(feed_env: dict[str, Any], value: str) -> None:
    """Finding 10 through ``socd block add``: refused as allowlisted, nothing reaches nft."""
    pair: NsPair = feed_env["pair"]
    out = pair.in_a(PY, "-m", "socd", "block", "add", value, "--reason", "adversarial",
                    "-c", str(pair.workdir / "socd.yaml"), check=False)
    assert out.returncode == 1, out
    assert "allowlisted" in out.stderr, out.stderr
    sets = pair.nft_set(feed_env["table"], "blocked4") + \
        pair.nft_set(feed_env["table"], "blocked6")
    assert "203.0.113" not in sets
    assert "ffff" not in sets


def test_zone_id_refused_by_cli(feed_env: dict[str, Any]) -> None:
    pair: NsPair = feed_env["pair"]
    for value in ("2001:db8::7%x", "2001:db8::7%x\n::1", "10.0.0.1\n10.0.0.2"):
        out = pair.in_a(PY, "-m", "socd", "block", "add", value, "--reason", "adversarial",
                        "-c", str(pair.workdir / "socd.yaml"), check=False)
        assert out.returncode == 1, out
        assert "not an IP address" in out.stderr, out.stderr


def test_edl_token_is_a_secret(feed_env: dict[str, Any]) -> None:
    """The EDL token never appears in repr() of the loaded config (a secret type)."""
    pair: NsPair = feed_env["pair"]
    code = ("import sys; from socd import config; c = config.load(sys.argv[1]); "
            "print(repr(c.sinks['block'].config))")
    out = pair.in_a(PY, "-c", code, str(pair.workdir / "socd.yaml")).stdout
    assert EDL_TOKEN not in out
    assert yaml.safe_load((pair.workdir / "socd.yaml").read_text())["sinks"]["block"]["edl"][
        "token"] == EDL_TOKEN
