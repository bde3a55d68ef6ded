"""Block decisions, the guard, interval flattening, nft/ipset scripts, feeds and EDL."""

from __future__ import annotations

import base64
import ipaddress
import sqlite3
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from socd import config as config_mod
from socd.block.decisions import (
    BlockStore,
    Guard,
    OverlapIndex,
    Policy,
    Request,
    flatten,
    format_duration,
    normalise,
    parse_duration,
)
from socd.block.feeds import EdlServer, render_csv, render_txt, select
from socd.block.ipset import IpsetBackend
from socd.block.nft import NftBackend, classify_error
from socd.block.sink import BlockerConfig, requests_from

T0 = 1_800_000_000.0


@pytest.fixture
def store(tmp_path: Path) -> BlockStore:
    s = BlockStore(str(tmp_path / "blocks.db"))
    yield s
    s.close()


def guard(**kw: object) -> Guard:
    return Guard(own=["192.0.2.10", "2001:db8::10"], **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(("raw", "want"), [
    ("10.0.0.7", ("10.0.0.7", "ipv4")),
    ("10.0.0.7/32", ("10.0.0.7", "ipv4")),
    ("10.0.0.7/24", ("10.0.0.0/24", "ipv4")),
    ("2001:DB8::1", ("2001:db8::1", "ipv6")),
    ("::ffff:198.51.100.7", ("198.51.100.7", "ipv4")),
    ("2001:db8::1/32", ("2001:db8::/32", "ipv6")),
    ("Evil.Example.COM.", ("evil.example.com", "domain")),
])
def test_normalise(raw: str, want: tuple[str, str]) -> None:
    assert normalise(raw) == want


@pytest.mark.parametrize("bad", ["", "not a value!", "1.2.3.4.5/99", "a..b"])
def test_normalise_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        normalise(bad)


def test_durations() -> None:
    assert parse_duration("24h") == 86400
    assert parse_duration("2s") == 2
    assert parse_duration(90) == 90
    assert parse_duration("7d") == 7 * 86400
    with pytest.raises(ValueError):
        parse_duration("-1h")
    with pytest.raises(ValueError):
        parse_duration("soon")
    assert format_duration(90061) == "1d1h1m"


def test_escalation_math() -> None:
    p = Policy(default_ttl=3600, max_ttl=86400, factor=2)
    assert [p.ttl(None, n) for n in (1, 2, 3, 4, 5, 6)] == [3600, 7200, 14400, 28800, 57600,
                                                            86400]
    assert Policy(escalation=False, default_ttl=60).ttl(None, 9) == 60
    assert p.ttl(10, 1) == 10


def test_repeat_offender_escalates_and_burst_counts_once(store: BlockStore) -> None:
    p = Policy(default_ttl=3600, max_ttl=10 * 3600, recount_after=600, forget_after=86400)
    req = Request("198.51.100.7", "scan", "rule-1", "941/CATTT-NCSC")
    out = store.decide([req, req, req], p, guard(), now=T0)
    assert [c.action for c in out.changes] == ["add"]
    assert out.changes[0].decision.expires == T0 + 3600
    # Within recount_after: the same offence, nothing decided.
    assert store.decide([req], p, guard(), now=T0 + 60).changes == []
    # Later, while still blocked: offence 2, ttl doubled, extended.
    ch = store.decide([req], p, guard(), now=T0 + 700).changes[0]
    assert (ch.action, ch.decision.count, ch.decision.expires) == ("extend", 2, T0 + 700 + 7200)
    assert ch.decision.created == T0
    # After expiry, a re-offence adds again with offence 3.
    assert [c.action for c in store.expire(now=T0 + 20000)] == ["expire"]
    ch = store.decide([req], p, guard(), now=T0 + 30000).changes[0]
    assert (ch.action, ch.decision.count) == ("add", 3)
    assert ch.decision.expires == T0 + 30000 + 4 * 3600
    # After forget_after without offences the count restarts.
    store.expire(now=T0 + 200000)
    ch = store.decide([req], p, guard(), now=T0 + 300000).changes[0]
    assert ch.decision.count == 1
    actions = [r["action"] for r in store.audit("198.51.100.7")]
    assert actions == ["add", "expire", "add", "expire", "extend", "add"]


def test_max_ttl_caps(store: BlockStore) -> None:
    p = Policy(default_ttl=3600, max_ttl=7200)
    ch = store.decide([Request("198.51.100.8", "r", "o", ttl=10**6)], p, guard(), now=T0)
    assert ch.changes[0].decision.expires == T0 + 7200


@pytest.mark.parametrize(("value", "why"), [
    ("127.0.0.1", "always-protected"),
    ("169.254.1.1", "always-protected"),
    ("fe80::1", "always-protected"),
    ("::1", "always-protected"),
    ("192.0.2.10", "own address"),
    ("192.0.2.0/24", "own address"),
    ("203.0.113.9", "allowlist_cidrs"),
    ("203.0.0.0/16", "allowlist_cidrs"),  # a network overlapping the allowlist
    ("1.0.0.0/4", "too broad"),
    ("cdn.gov.vn", "allowlist_domains"),
])
def test_guard_refuses(store: BlockStore, value: str, why: str) -> None:
    g = guard(cidrs=["203.0.113.0/24"], domains=["gov.vn"])
    out = store.decide([Request(value, "r", "o")], Policy(), g, now=T0)
    assert out.changes == []
    assert why in out.refused[0][1]
    audit = store.audit()
    assert audit[0]["action"] == "refuse"
    assert audit[0]["why"].startswith(("allowlisted", "too broad"))
    assert store.active(now=T0) == []


def test_private_ranges_protected_only_when_configured(store: BlockStore) -> None:
    req = [Request("10.1.2.3", "lateral movement", "rule")]
    assert store.decide(req, Policy(), guard(protect_private=True), now=T0).refused
    assert store.decide(req, Policy(), guard(), now=T0).changes


class FakeAllowlist:
    def is_allowed(self, value: str) -> bool:
        return value in ("198.51.100.77", "partner.example")

    def covers(self, cidr: str) -> bool:
        return ipaddress.ip_network("198.51.100.77").overlaps(ipaddress.ip_network(cidr))


def test_external_allowlist(store: BlockStore) -> None:
    g = guard(external=FakeAllowlist())
    for value in ("198.51.100.77", "198.51.100.0/24", "partner.example"):
        assert store.decide([Request(value, "r", "o")], Policy(), g, now=T0).refused
    assert store.decide([Request("198.51.100.78", "r", "o")], Policy(), g, now=T0).changes


def test_audit_is_append_only(store: BlockStore) -> None:
    store.decide([Request("198.51.100.7", "r", "o")], Policy(), guard(), now=T0)
    db = sqlite3.connect(store.path)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("UPDATE audit SET why = 'x'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("DELETE FROM audit")
    db.close()


def test_remove_and_dry_run(store: BlockStore) -> None:
    store.decide([Request("198.51.100.7", "r", "o")], Policy(), guard(), now=T0, dry_run=True)
    assert store.audit()[0]["dry_run"] == 1
    ch = store.remove("198.51.100.7", actor="cli:test", now=T0 + 5)
    assert ch is not None
    assert ch.action == "remove"
    assert store.active(now=T0 + 6) == []
    assert store.remove("198.51.100.7", actor="cli:test", now=T0 + 7) is None
    assert store.audit()[0]["actor"] == "cli:test"


def test_flatten_disjoint_is_unchanged() -> None:
    entries = [("10.0.0.1", 10.0), ("10.0.1.0/24", 20.0), ("2001:db8::/32", 5.0)]
    assert [(str(n), e) for n, e in flatten(entries)] == [
        ("10.0.0.1/32", 10.0), ("10.0.1.0/24", 20.0), ("2001:db8::/32", 5.0)]


def test_flatten_gives_each_address_its_latest_expiry() -> None:
    entries = [("10.0.0.0/24", 60.0), ("10.0.0.5", 600.0), ("10.0.0.0/16", 30.0),
               ("10.0.0.5", 100.0)]
    flat = flatten(entries)
    nets = [n for n, _ in flat]
    for i, a in enumerate(nets):  # disjoint
        assert not any(a.overlaps(b) for b in nets[i + 1:])
    def expiry(addr: str) -> float:
        ip = ipaddress.ip_address(addr)
        return next(e for n, e in flat if ip in n)
    assert expiry("10.0.0.5") == 600.0
    assert expiry("10.0.0.6") == 60.0
    assert expiry("10.0.200.1") == 30.0
    total = sum(n.num_addresses for n in nets)
    assert total == 2 ** 16


def test_flatten_longer_cover_swallows_inner() -> None:
    flat = flatten([("10.0.0.0/24", 600.0), ("10.0.0.5", 60.0)])
    assert [(str(n), e) for n, e in flat] == [("10.0.0.0/24", 600.0)]


def test_overlap_index() -> None:
    idx = OverlapIndex(["10.0.0.0/24", "192.0.2.7", "2001:db8::/48"])
    assert idx.overlaps("10.0.0.9")
    assert idx.overlaps("10.0.0.0/16")
    assert idx.overlaps("192.0.2.0/24")
    assert not idx.overlaps("192.0.2.8")
    assert not idx.overlaps("10.0.0.0/24")  # identical: not an overlap
    assert idx.overlaps("2001:db8::1")
    assert not idx.overlaps("2001:db9::1")


def _decisions(store: BlockStore) -> list:  # type: ignore[type-arg]
    reqs = [Request("198.51.100.7", "r", "o", ttl=3600), Request("203.0.113.0/24", "r", "o",
            ttl=60), Request("2001:db8:1::/48", "r", "o", ttl=90), Request("evil.example", "r",
            "o")]
    store.decide(reqs, Policy(), guard(), now=T0)
    return store.active(now=T0)


def test_nft_full_script(store: BlockStore) -> None:
    script = NftBackend(table="socdx", priority=-5).full_script(_decisions(store), T0)
    assert script.startswith("add table inet socdx\ndelete table inet socdx\n")
    assert "set blocked4 { type ipv4_addr; flags interval, timeout; }" in script
    assert "set blocked6 { type ipv6_addr; flags interval, timeout; }" in script
    assert "type filter hook input priority -5; policy accept;" in script
    assert "ip saddr @blocked4 counter drop" in script
    assert "ip6 daddr @blocked6 counter drop" in script
    assert ("add element inet socdx blocked4 { 198.51.100.7 timeout 3600s, "
            "203.0.113.0/24 timeout 60s }") in script
    assert "add element inet socdx blocked6 { 2001:db8:1::/48 timeout 90s }" in script
    assert "evil.example" not in script  # domains go to feeds only
    inbound = NftBackend(direction="inbound").definition()
    assert "daddr" not in inbound
    assert "hook output" not in inbound


def test_nft_script_batches_thousands_per_statement() -> None:
    from socd.block.decisions import Decision

    ds = [Decision(f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}", "ipv4", "r", "o", "", T0, T0,
                   T0 + 60, 1) for i in range(1, 12001)]
    script = NftBackend().full_script(ds, T0)
    assert script.count("add element") == 3  # 5000 per statement, one transaction


def test_nft_incremental_script(store: BlockStore) -> None:
    ds = _decisions(store)
    from socd.block.decisions import Change

    by = {d.value: d for d in ds}
    changes = [Change("add", by["198.51.100.7"]), Change("extend", by["203.0.113.0/24"]),
               Change("remove", by["2001:db8:1::/48"])]
    script = NftBackend().incremental_script(changes, T0)
    lines = script.splitlines()
    assert lines[0] == "delete element inet socd blocked4 { 203.0.113.0/24 }"
    assert lines[1] == "delete element inet socd blocked6 { 2001:db8:1::/48 }"
    assert "add element inet socd blocked4 { 198.51.100.7 timeout 3600s, " \
           "203.0.113.0/24 timeout 60s }" in lines[2]


def test_nft_error_classes() -> None:
    assert classify_error("Error: Operation not permitted", 1).kind == "permission"
    # The hint names the remedy: the privileged helper (the daemon never holds the capability).
    assert "socd-blocker.socket" in str(classify_error("Operation not permitted", 1))
    assert classify_error("Error: interval overlaps with an existing one", 1).kind == "conflict"
    assert classify_error("Error: element does not exist", 1).kind == "conflict"
    assert classify_error("netlink: Error: Device or resource busy", 1).retryable
    with pytest.raises(ValueError):
        NftBackend(table="bad name; flush ruleset")


def test_nft_missing_binary_is_clear() -> None:
    import asyncio

    from socd.block.nft import NftError

    with pytest.raises(NftError, match="nftables") as info:
        asyncio.run(NftBackend(nft="/nonexistent/nft").run("list tables\n"))
    assert info.value.kind == "missing"


def test_ipset_scripts(store: BlockStore) -> None:
    ds = _decisions(store)
    script = IpsetBackend(set_name="blk").full_script(ds, T0)
    assert "create blk4 hash:net family inet timeout 0" in script
    assert "create blk6-new hash:net family inet6 timeout 0" in script
    assert "add blk4-new 198.51.100.7 timeout 3600 -exist" in script
    assert "swap blk4-new blk4" in script
    assert "evil.example" not in script
    from socd.block.decisions import Change

    inc = IpsetBackend().incremental_script([Change("remove", ds[0])], T0)
    assert inc == "del socd4 198.51.100.7 -exist\n"


def test_feeds(store: BlockStore) -> None:
    ds = _decisions(store)
    assert render_txt(select(ds, 4)) == "198.51.100.7\n203.0.113.0/24\n"
    assert render_txt(select(ds, "6")) == "2001:db8:1::/48\n"
    assert render_txt(select(ds, "domains")) == "evil.example\n"
    text = render_csv(select(ds, 4))
    assert text.splitlines()[0] == "value,reason,origin,ref,expires"
    assert text.splitlines()[1].startswith("198.51.100.7,r,o,,")
    store.decide([Request("198.51.100.9", "=HYPERLINK(1)", "o")], Policy(), guard(), now=T0)
    assert "'=HYPERLINK(1)" in render_csv(store.active(now=T0))


TOKEN = "s3cret-token-0123456789"


async def test_edl_auth_etag(store: BlockStore) -> None:
    ds = _decisions(store)
    server = EdlServer(lambda: ds, host="127.0.0.1", port=0, token=TOKEN,
                       last_change=lambda: T0)
    async with TestClient(TestServer(server.app())) as client:
        r = await client.get("/edl/ipv4.txt")
        assert r.status == 401
        r = await client.get("/edl/ipv4.txt?token=wrong")
        assert r.status == 401
        r = await client.get(f"/edl/ipv4.txt?token={TOKEN}")
        assert r.status == 200
        assert await r.text() == "198.51.100.7\n203.0.113.0/24\n"
        etag, modified = r.headers["ETag"], r.headers["Last-Modified"]
        r = await client.get("/edl/ipv6.txt", headers={"Authorization": f"Bearer {TOKEN}"})
        assert await r.text() == "2001:db8:1::/48\n"
        basic = base64.b64encode(f"fortigate:{TOKEN}".encode()).decode()
        r = await client.get("/edl/domains.txt", headers={"Authorization": f"Basic {basic}"})
        assert await r.text() == "evil.example\n"
        r = await client.get(f"/edl/ipv4.txt?token={TOKEN}", headers={"If-None-Match": etag})
        assert r.status == 304
        r = await client.get(f"/edl/ipv4.txt?token={TOKEN}",
                             headers={"If-Modified-Since": modified})
        assert r.status == 304
        r = await client.get("/edl/ipv4.txt", headers={"If-None-Match": etag})
        assert r.status == 401  # no token, no 304 either


def test_edl_token_too_short() -> None:
    with pytest.raises(ValueError):
        EdlServer(list, host="127.0.0.1", port=0, token="short")


def _cfg(**kw: object) -> BlockerConfig:
    return BlockerConfig(type="blocker", **kw)  # type: ignore[arg-type]


def test_requests_from_alerts() -> None:
    rule = {"event": {"kind": "alert"}, "rule": {"id": "r1", "name": "SSH brute force"},
            "socd": {"actions": {"block": [{"value": "198.51.100.7", "ttl_secs": 600,
                                            "reason": "brute"}]}}}
    ioc = {"event": {"kind": "alert"}, "rule": {"id": "socd-ioc-match", "name": "IoC match"},
           "host": {"ip": "10.10.20.11"}, "source": {"ip": "10.10.20.11"},
           "socd": {"ioc": {"matched": True, "refs": ["941/CATTT-NCSC"],
                            "values": ["203.0.113.50", "10.10.20.11", "evil.example",
                                       "d41d8cd98f00b204e9800998ecf8427e"]}}}
    reqs = requests_from([rule, ioc], _cfg())
    assert [(r.value, r.origin, r.ttl) for r in reqs] == [("198.51.100.7", "r1", 600.0)]
    reqs = requests_from([rule, ioc], _cfg(block_ioc_hits=True, ioc_ttl="7d"))
    values = [r.value for r in reqs]
    assert values == ["198.51.100.7", "203.0.113.50", "evil.example"]  # never the own host
    assert reqs[1].ref == "941/CATTT-NCSC"
    assert reqs[1].ttl == 7 * 86400


def test_config_section(tmp_path: Path) -> None:
    text = f"""
state_dir: {tmp_path}
sinks:
  block:
    type: blocker
    backend: none
    default_ttl: 24h
    max_ttl: 30d
    escalation: {{factor: 3, recount_after: 10m}}
    allowlist_cidrs: [203.0.113.0/24]
    edl: {{port: 0, token: "{TOKEN}"}}
"""
    cfg = config_mod.loads(text)
    sink_cfg = cfg.sinks["block"].config
    assert sink_cfg.default_ttl == 86400
    assert sink_cfg.escalation.recount_after == 600
    bad = text.replace("203.0.113.0/24", "not-a-cidr")
    with pytest.raises(Exception, match="allowlist_cidrs"):
        config_mod.loads(bad)


async def test_sink_dry_run_records_without_pushing(tmp_path: Path) -> None:
    from socd.block.sink import BLOCK_DECISIONS, BlockerSink
    from socd.plugins import PluginContext

    cfg = _cfg(backend="nftables", nft_path="/nonexistent/nft", dry_run=True,
               block_ioc_hits=True, edl={"port": 0, "token": TOKEN})
    sink = BlockerSink(cfg, PluginContext("blk", None, str(tmp_path), str(tmp_path)))
    before = BLOCK_DECISIONS.labels("add")._value.get()
    await sink.start()
    try:
        await sink.healthcheck()  # dry-run: nft is not needed
        alert = {"event": {"kind": "alert"}, "rule": {"id": "r1"},
                 "socd": {"actions": {"block": [{"value": "198.51.100.7", "ttl_secs": 60,
                                                 "reason": "x"}]}}}
        await sink.write([alert])
        assert sink.store is not None
        assert [d.value for d in sink.store.active()] == ["198.51.100.7"]
        assert BLOCK_DECISIONS.labels("add")._value.get() == before + 1
        assert sink.edl is not None
        assert sink.edl.port > 0
        await sink.tick()
    finally:
        await sink.close()


async def test_sink_missing_nft_fails_healthcheck(tmp_path: Path) -> None:
    from socd.block.sink import BlockerSink
    from socd.errors import HealthCheckError, SinkError
    from socd.plugins import PluginContext

    sink = BlockerSink(_cfg(nft_path="/nonexistent/nft"),
                       PluginContext("blk", None, str(tmp_path), str(tmp_path)))
    with pytest.raises(HealthCheckError, match="nftables"):
        await sink.healthcheck()
    await sink.start()  # logs; does not stop the daemon
    try:
        alert = {"event": {"kind": "alert"}, "rule": {"id": "r1"},
                 "socd": {"actions": {"block": [{"value": "198.51.100.7"}]}}}
        with pytest.raises(SinkError, match="nftables") as info:
            await sink.write([alert])
        assert not info.value.retryable  # a missing binary will not fix itself
        assert sink.store is not None
        assert sink.store.get("198.51.100.7") is not None  # the decision is kept
    finally:
        await sink.close()


def test_cli_refuses_top_level_allowlist(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                         ) -> None:
    from socd.cli import main

    cfg = tmp_path / "socd.yaml"
    cfg.write_text(f"""
state_dir: {tmp_path}
allowlist: {{cidrs: [198.51.100.0/24], hosts: [tinh.gov.vn]}}
sinks:
  block: {{type: blocker, backend: none}}
""")
    assert main(["block", "add", "198.51.100.0/23", "--reason", "x", "-c", str(cfg)]) == 1
    assert "IoC allowlist" in capsys.readouterr().err
    assert main(["block", "add", "mail.tinh.gov.vn", "--reason", "x", "-c", str(cfg)]) == 1
    assert main(["block", "add", "203.0.113.7", "--ttl", "2h", "--reason", "C&C", "--ref",
                 "941/CATTT-NCSC", "-c", str(cfg)]) == 0
    capsys.readouterr()
    assert main(["block", "export", "--format", "csv", "--family", "4", "-c", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "203.0.113.7,C&C,cli,941/CATTT-NCSC," in out
    assert main(["block", "list", "-c", str(cfg)]) == 0
    assert "203.0.113.7" in capsys.readouterr().out
    assert main(["block", "remove", "203.0.113.7", "-c", str(cfg)]) == 0
    assert main(["block", "audit", "-c", str(cfg)]) == 0
    audit = capsys.readouterr().out
    assert "remove" in audit
    assert "refuse" in audit


async def test_sink_uses_daemon_allowlist(tmp_path: Path) -> None:
    from socd.block.sink import BlockerSink
    from socd.ioc.allowlist import Allowlist
    from socd.plugins import PluginContext

    sink = BlockerSink(_cfg(backend="none"), PluginContext("blk", None, str(tmp_path),
                                                           str(tmp_path)))
    sink.use_allowlist(Allowlist(["198.51.100.0/24"]))
    await sink.start()
    try:
        alert = {"event": {"kind": "alert"}, "rule": {"id": "r1"},
                 "socd": {"actions": {"block": [{"value": "198.51.100.0/16"},
                                                {"value": "203.0.113.9"}]}}}
        await sink.write([alert])
        assert sink.store is not None
        assert [d.value for d in sink.store.active()] == ["203.0.113.9"]
        assert sink.store.audit()[-1]["action"] == "refuse"
    finally:
        await sink.close()


# -- dry run (issue 14, point 11) --------------------------------------------------------


def test_enforced_leaves_out_dry_run_decisions(store: BlockStore) -> None:
    store.decide([Request("198.51.100.7", "r", "o")], Policy(), guard(), now=T0, dry_run=True)
    store.decide([Request("198.51.100.8", "r", "o")], Policy(), guard(), now=T0)
    assert [d.value for d in store.active(now=T0 + 1)] == ["198.51.100.7", "198.51.100.8"]
    assert [d.value for d in store.enforced(now=T0 + 1)] == ["198.51.100.8"]
    assert [d.value for d in store.enforced(now=T0 + 1, kinds=("ipv6",))] == []


def test_enforcing_after_a_dry_run_decision_adds_a_real_block(store: BlockStore) -> None:
    """The sink leaves dry run: the next offence is enforced at once, even inside the
    recount window of the dry-run decision (it was never enforced)."""
    store.decide([Request("198.51.100.7", "r", "o")], Policy(), guard(), now=T0, dry_run=True)
    out = store.decide([Request("198.51.100.7", "r", "o")], Policy(), guard(), now=T0 + 60)
    assert [(c.action, c.decision.dry_run, c.previous_expires) for c in out.changes] == [
        ("add", False, None)]
    assert [d.value for d in store.enforced(now=T0 + 61)] == ["198.51.100.7"]
    assert [(r["action"], r["dry_run"]) for r in store.audit()] == [("add", 0), ("add", 1)]


def test_dry_run_never_downgrades_an_enforced_block(store: BlockStore) -> None:
    """The sink enters dry run while a real block stands: the kernel keeps it, so the
    store and the feeds keep it too; the dry-run offence is only audited."""
    store.decide([Request("198.51.100.7", "r", "o")], Policy(), guard(), now=T0)
    before = store.get("198.51.100.7")
    out = store.decide([Request("198.51.100.7", "again", "o")], Policy(), guard(),
                       now=T0 + 7200, dry_run=True)
    assert out.changes == []
    assert store.get("198.51.100.7") == before
    last = store.audit()[0]
    assert (last["action"], last["dry_run"]) == ("extend", 1)
    assert "enforced block unchanged" in last["why"]


async def test_sink_gauges_and_edl_leave_out_dry_run(tmp_path: Path) -> None:
    from socd import metrics
    from socd.block.sink import BlockerSink
    from socd.plugins import PluginContext

    def gauge(name: str, sink: str) -> float:
        return sum(s.value for f in metrics.REGISTRY.collect() for s in f.samples
                   if s.name == name and s.labels.get("sink") == sink)

    alert = {"event": {"kind": "alert"}, "rule": {"id": "r1"},
             "socd": {"actions": {"block": [{"value": "198.51.100.7", "reason": "x"}]}}}
    sinks = {}
    for name, dry, include in (("u-dry", True, False), ("u-dryfeed", True, True),
                               ("u-live", False, False)):
        cfg = _cfg(backend="none", dry_run=dry, path=f"{name}.db",
                   edl={"port": 0, "token": TOKEN, "include_dry_run": include})
        sinks[name] = BlockerSink(cfg, PluginContext(name, None, str(tmp_path), str(tmp_path)))
    try:
        for sink in sinks.values():
            await sink.start()
            await sink.write([alert])
        assert (gauge("socd_blocks_active", "u-dry"), gauge("socd_blocks_dry_run", "u-dry")) \
            == (0, 1)
        assert (gauge("socd_blocks_active", "u-live"), gauge("socd_blocks_dry_run", "u-live")) \
            == (1, 0)
        served = {name: [d.value for d in sink.edl._decisions()]  # type: ignore[union-attr]
                  for name, sink in sinks.items()}
        assert served == {"u-dry": [], "u-dryfeed": ["198.51.100.7"], "u-live": ["198.51.100.7"]}
    finally:
        for sink in sinks.values():
            await sink.close()
