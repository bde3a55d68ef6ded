"""Every entry point for addresses goes through socd.netaddr (issue 12, "one gate").

Decoders, the event check, the rules engine, block decisions and their guard, the
feeds, the IoC store and the allowlist: a zone id or whitespace is refused, an
IPv4-mapped address or network becomes IPv4, old bad rows are removed at open.
"""

from __future__ import annotations

import sqlite3
import time
from datetime import datetime
from pathlib import Path

import pytest

from socd import netaddr
from socd.block.decisions import (
    INVALID_VALUE,
    SCHEMA,
    BlockStore,
    Decision,
    Guard,
    Policy,
    Request,
    is_canonical,
    normalise,
)
from socd.block.feeds import feed_value, render_csv, render_txt
from socd.decoders.syslog import SyslogDecoder
from socd.engine.compiler import Context, compile_condition
from socd.errors import DecodeError
from socd.event import normalize
from socd.ioc.allowlist import Allowlist
from socd.ioc.normalize import IndicatorError, ip_int, normalize_ip
from socd.ioc.normalize import normalize as ioc_normalize
from socd.ioc.store import Entry, IocDatabase
from socd.netaddr import address_or_none as canonical_ip
from socd.plugins import PluginContext, RawRecord
from tests.unit.conftest import sample_value

REFUSED = "socd_addresses_refused_total"
ZONE = "2001:db8:bad::99%x"
INJECTED = "2001:db8::5%x\n10.0.0.1\n2001:db8:ffff::1"


def _refused(reason: str) -> float:
    return sample_value(REFUSED, reason=reason)


# -- decoders and the event check ----------------------------------------------------------

def _sshd(ip: str) -> dict:
    dec = SyslogDecoder(SyslogDecoder.Config(type="syslog"),  # type: ignore[call-arg]
                        PluginContext(name="syslog", dead_letter=None))
    line = f"<38>Jun 15 11:00:00 srv sshd[1]: Failed password for root from {ip} port 22 ssh2"
    received = datetime.fromisoformat("2024-06-15T12:00:00+07:00").timestamp()
    result = dec.decode(RawRecord(line.encode(), "syslog", "sys", "udp://192.0.2.1:5", received))
    assert not result.failures
    return result.events[0]


def test_sshd_zone_id_never_becomes_source_ip() -> None:
    before = _refused("scope_id")
    event = _sshd(ZONE)
    assert "source" not in event
    assert event["event"]["action"] == "ssh_login"
    assert _refused("scope_id") == before + 1


def test_sshd_mapped_address_is_ipv4() -> None:
    assert _sshd("::ffff:203.0.113.9")["source"]["ip"] == "203.0.113.9"


@pytest.mark.parametrize(("value", "expected"), [
    ("10.0.0.1", "10.0.0.1"), ("::FFFF:10.0.0.1", "10.0.0.1"), ("2001:DB8::1", "2001:db8::1"),
    (ZONE, None), (" 10.0.0.1", None), ("10.0.0.0/8", None),
])
def test_cef_canonical_ip(value: str, expected: str | None) -> None:
    assert canonical_ip(value) == expected


def test_event_address_fields_canonical_or_refused() -> None:
    event = normalize({"source": {"ip": "::ffff:198.51.100.7"},
                       "host": {"ip": ["2001:DB8::1", "10.0.0.1"]}})
    assert event["source"]["ip"] == "198.51.100.7"
    assert event["host"]["ip"] == ["2001:db8::1", "10.0.0.1"]
    for bad in (ZONE, "10.0.0.1\n", INJECTED):
        with pytest.raises(DecodeError) as info:
            normalize({"destination": {"ip": bad}})
        assert info.value.reason == "invalid_field"
    with pytest.raises(DecodeError):
        normalize({"host": {"ip": ["10.0.0.1", ZONE]}})


def test_rule_cidr_meets_mapped_and_refuses_zone_ids() -> None:
    ctx = Context("rules.yaml")
    fn = compile_condition({"field": "source.ip", "cidr": ["::ffff:203.0.113.0/120"]}, (),
                           ctx)
    assert fn is not None
    assert not ctx.problems
    assert fn({"source": {"ip": "203.0.113.9"}})
    assert not fn({"source": {"ip": "203.0.113.9%x"}})
    bad = Context("rules.yaml")
    assert compile_condition({"field": "source.ip", "cidr": ["10.0.0.0/8%x"]}, (), bad) is None
    assert "scope id" in bad.problems[0].message


# -- block decisions ------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "want"), [
    ("::ffff:203.0.113.0/120", ("203.0.113.0/24", "ipv4")),
    ("::ffff:203.0.113.9/128", ("203.0.113.9", "ipv4")),
    ("::FFFF:CB00:7109", ("203.0.113.9", "ipv4")),
])
def test_normalise_mapped_networks(raw: str, want: tuple[str, str]) -> None:
    assert normalise(raw) == want


@pytest.mark.parametrize("bad", [ZONE, INJECTED, "fe80::1%eth0", " 10.0.0.1", "10.0.0.1\n",
                                 "evil.example\n", "evil.example\n10.0.0.1",
                                 "10.0.0.1 ; flush ruleset", "2001:db8::/32%x"])
def test_normalise_refuses_and_counts(bad: str) -> None:
    before = sum(_refused(r) for r in netaddr.REASONS)
    with pytest.raises(ValueError, match="not an IP address, network or domain"):
        normalise(bad)
    assert sum(_refused(r) for r in netaddr.REASONS) == before + 1


def test_guard_applies_ipv4_allowlist_to_mapped_networks() -> None:
    g = Guard(["203.0.113.0/24"], own=["192.0.2.10"])
    for raw in ("::ffff:203.0.113.0/120", "::ffff:203.0.113.128/121", "::ffff:203.0.113.9"):
        value, kind = normalise(raw)
        assert kind == "ipv4"
        why = g.why_refused(value, kind)
        assert why is not None
        assert "allowlisted" in why
    value, kind = normalise("::ffff:192.0.2.10")
    assert "own address" in (g.why_refused(value, kind) or "")
    ext = Guard(own=[], external=Allowlist(["::ffff:198.51.100.0/120"]))
    assert "allowlisted" in (ext.why_refused(*normalise("198.51.100.77")) or "")


def test_guard_own_addresses_skip_what_the_gate_refuses() -> None:
    g = Guard(own=["fe80::1%eth0", "192.0.2.10", "::ffff:192.0.2.11"])
    assert set(g.own) == {"192.0.2.10", "192.0.2.11"}


def test_decide_refuses_injections(tmp_path: Path) -> None:
    store = BlockStore(str(tmp_path / "blocks.db"))
    try:
        out = store.decide([Request(v, "r", "o") for v in (ZONE, INJECTED, "198.51.100.7")],
                           Policy(), Guard(own=[]))
        assert [c.decision.value for c in out.changes] == ["198.51.100.7"]
        assert all(why.startswith("invalid:") for _, why in out.refused)
        assert [d.value for d in store.all()] == ["198.51.100.7"]
    finally:
        store.close()


def _seed(path: Path, rows: list[tuple[str, str]]) -> None:
    now = time.time()
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA)
        for value, kind in rows:
            db.execute("INSERT INTO decisions VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                       (value, kind, "old", "rule-x", "941/CATTT-NCSC", now, now, now + 3600,
                        1, "active", now, 0))


def test_block_store_removes_invalid_rows_at_open(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "blocks.db"
    rows = [(INJECTED, "ipv6"), (ZONE, "ipv6"), ("::ffff:cb00:7100/120", "ipv6"),
            ("10.0.0.7", "ipv6"), ("198.51.100.7", "ipv4"), ("evil.example", "domain")]
    _seed(path, rows)
    store = BlockStore(str(path))
    try:
        assert sorted(d.value for d in store.all()) == ["198.51.100.7", "evil.example"]
        removed = [r for r in store.audit() if r["action"] == "remove"]
        assert sorted(r["value"] for r in removed) == sorted(v for v, _ in rows[:4])
        assert {r["why"] for r in removed} == {INVALID_VALUE}
        assert {r["ref"] for r in removed} == {"941/CATTT-NCSC"}
    finally:
        store.close()
    assert capsys.readouterr().out.count("invalid block values removed") == 1
    BlockStore(str(path)).close()  # nothing left to remove: no second log line
    assert "invalid block values removed" not in capsys.readouterr().out


def test_is_canonical() -> None:
    assert is_canonical("10.0.0.0/24", "ipv4")
    assert not is_canonical("10.0.0.7/24", "ipv4")
    assert not is_canonical("10.0.0.7", "ipv6")
    assert not is_canonical(ZONE, "ipv6")
    assert is_canonical("evil.example", "domain")


# -- feeds ----------------------------------------------------------------------------------

def _dec(value: str, kind: str) -> Decision:
    return Decision(value, kind, "r", "o", "", 0, 0, 4e9, 1)  # type: ignore[arg-type]


def test_feed_lines_come_from_parsed_values() -> None:
    before = _refused("scope_id")
    decisions = [_dec(INJECTED, "ipv6"), _dec("2001:db8:beef::20", "ipv6"),
                 _dec("10.0.0.1", "ipv6"), _dec("198.51.100.20", "ipv4"),
                 _dec("evil.example", "domain"), _dec("evil.example\nown.example", "domain")]
    text = render_txt(decisions)
    assert text == "198.51.100.20\n2001:db8:beef::20\nevil.example\n"
    assert _refused("scope_id") == before + 1
    csv = render_csv(decisions)
    assert [line.split(",")[0] for line in csv.splitlines()] == [
        "value", "198.51.100.20", "2001:db8:beef::20", "evil.example"]
    assert feed_value(_dec("::ffff:203.0.113.9", "ipv4")) == "203.0.113.9"


# -- IoC normalisation, store and allowlist --------------------------------------------------

@pytest.mark.parametrize(("raw", "want"), [
    (" 10.0.0.7 ", "10.0.0.7"), ("10.0.0.7/24", "10.0.0.0/24"),
    ("::ffff:203.0.113.0/120", "203.0.113.0/24"), ("2001:DB8::1/128", "2001:db8::1"),
])
def test_normalize_ip(raw: str, want: str) -> None:
    assert normalize_ip(raw) == want


@pytest.mark.parametrize(("bad", "reason"), [
    (ZONE, "scope id"), (INJECTED, "scope id"), ("10.0.0.1 10.0.0.2", "bad character"),
    ("10.0.0.1\n10.0.0.2", "bad character")])
def test_normalize_ip_refuses_with_counted_reason(bad: str, reason: str) -> None:
    before = sum(_refused(r) for r in netaddr.REASONS)
    with pytest.raises(IndicatorError, match=reason):
        normalize_ip(bad)
    assert sum(_refused(r) for r in netaddr.REASONS) == before + 1


def test_detection_never_turns_a_broken_address_into_a_domain() -> None:
    with pytest.raises(IndicatorError, match="scope id"):
        ioc_normalize(ZONE)
    assert ioc_normalize("0123456789abcdef0123456789abcdef") == (
        "hash", "0123456789abcdef0123456789abcdef")


def test_ip_int_refuses_zone_ids() -> None:
    assert ip_int("fe80::1%eth0") is None
    assert ip_int("::ffff:10.0.0.1") == (4, 0x0A000001)


def test_ioc_store_removes_invalid_addresses_at_open(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]
                                                     ) -> None:
    path = str(tmp_path / "ioc.db")
    db = IocDatabase(path)
    good = [Entry("ip", v, "feed") for v in ("198.51.100.7", "2001:db8:ffff::1",
                                             "10.0.0.0/8")]
    good.append(Entry("domain", "evil.example", "feed"))
    db.upsert(good)
    db.close()
    with sqlite3.connect(path) as raw:  # a file and rows as written before the address gate
        raw.execute("DELETE FROM meta WHERE key = 'addresses_checked'")
        attr = raw.execute("SELECT id FROM attrs").fetchone()[0]
        for value, fam, lo in ((INJECTED, 6, (0x20010DB8 << 96 | 5).to_bytes(16, "big")),
                               ("::ffff:cb00:7100/120", 6, ((0xFFFF << 32) | 0xCB007100)
                                .to_bytes(16, "big")),
                               ("10.0.0.1 ", 4, 0x0A000001)):
            raw.execute("INSERT INTO iocs VALUES ('ip', ?, 'old', ?, 0, 0, ?, ?, ?)",
                        (value, attr, fam, lo, lo))
    db = IocDatabase(path)
    try:
        values = sorted(e.value for e in db.entries())
        assert values == sorted(e.value for e in good)
    finally:
        db.close()
    assert capsys.readouterr().out.count("invalid IoC addresses removed") == 1
    IocDatabase(path).close()  # checked once per file: no second scan, no second log line
    assert "invalid IoC addresses removed" not in capsys.readouterr().out


def test_allowlist_meets_mapped_networks_and_refuses_zone_ids() -> None:
    allow = Allowlist(["203.0.113.0/24"])
    assert allow.covers("::ffff:203.0.113.0/120")
    assert allow.is_allowed("::ffff:203.0.113.9")
    assert allow.reason("ip", "::ffff:203.0.113.0/121") is not None
    assert not allow.is_allowed("203.0.113.9%x")
    with pytest.raises(ValueError, match="invalid CIDR"):
        Allowlist.from_lines(["fe80::1%eth0"])
    assert Allowlist(["::ffff:10.0.0.0/104"]).networks[0].version == 4
