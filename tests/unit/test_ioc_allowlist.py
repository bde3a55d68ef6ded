"""The allowlist of own infrastructure; refusal of overlapping IoC entries."""

from __future__ import annotations

from pathlib import Path

import pytest

from socd import config
from socd.ioc.allowlist import Allowlist, load_allowlist
from socd.ioc.store import Entry, IocStore

ALLOW = Allowlist(["10.10.20.0/24", "192.0.2.10", "2001:db8:50c::/48"],
                  ["tinh.gov.vn", "soc.internal", "198.51.100.7"])


@pytest.mark.parametrize(("value", "allowed"), [
    ("10.10.20.5", True), ("10.10.21.5", False), ("192.0.2.10", True), ("192.0.2.11", False),
    ("198.51.100.7", True), ("2001:db8:50c::1", True), ("2001:db8:50d::1", False),
    ("tinh.gov.vn", True), ("Mail.Tinh.Gov.VN.", True), ("gov.vn", False),
    ("xtinh.gov.vn", False), ("soc.internal", True), ("10.10.0.0/16", True),
])
def test_is_allowed(value: str, allowed: bool) -> None:
    assert ALLOW.is_allowed(value) is allowed


@pytest.mark.parametrize(("cidr", "covered"), [
    ("10.0.0.0/8", True), ("10.10.20.128/25", True), ("10.10.19.0/24", False),
    ("0.0.0.0/0", True), ("192.0.2.0/24", True), ("192.0.2.11/32", False),
    ("2001:db8::/32", True), ("2001:db9::/32", False),
])
def test_covers_means_any_overlap(cidr: str, covered: bool) -> None:
    assert ALLOW.covers(cidr) is covered


def test_reasons() -> None:
    assert ALLOW.reason("ip", "10.0.0.0/8") == "10.0.0.0/8 overlaps the allowlist (10.10.20.0/24)"
    assert ALLOW.reason("ip", "10.10.20.9") == "10.10.20.9 is in the allowlist (10.10.20.0/24)"
    assert ALLOW.reason("ip", "10.10.21.9") is None
    assert "allowlisted host tinh.gov.vn" in (ALLOW.reason("domain", "a.tinh.gov.vn") or "")
    assert "covers the allowlisted host tinh.gov.vn" in (ALLOW.reason("domain", "*.gov.vn") or "")
    assert ALLOW.reason("domain", "gov.vn") is None  # exact entry: does not match below
    assert ALLOW.reason("hash", "a" * 32) is None
    assert not Allowlist()
    assert len(ALLOW) == 6


def test_import_refuses_overlapping_entries(tmp_path: Path) -> None:
    store = IocStore(str(tmp_path / "ioc.db"), allowlist=ALLOW)
    result = store.import_entries([Entry("ip", "10.0.0.0/8", "s"), Entry("ip", "203.0.113.1", "s"),
                                   Entry("domain", "vpn.tinh.gov.vn", "s"),
                                   Entry("ip", "2001:db8::/32", "s")])
    assert result.inserted == 1
    assert [e.value for e, _ in result.refused] == ["10.0.0.0/8", "vpn.tinh.gov.vn",
                                                     "2001:db8::/32"]
    assert not store.lookup("ip", "10.1.1.1")


def test_purge_after_the_allowlist_grew(tmp_path: Path) -> None:
    store = IocStore(str(tmp_path / "ioc.db"))
    store.import_entries([Entry("ip", "10.0.0.0/8", "s"), Entry("ip", "203.0.113.1", "s"),
                          Entry("domain", "a.tinh.gov.vn", "s")])
    assert store.db is not None
    purged = store.db.purge_allowlisted(ALLOW)
    assert sorted(e.value for e, _ in purged) == ["10.0.0.0/8", "a.tinh.gov.vn"]
    assert store.db.count() == 1


def test_from_config_with_files(tmp_path: Path) -> None:
    (tmp_path / "own.txt").write_text("# own networks\n172.16.5.0/24\nportal.tinh.gov.vn # web\n",
                                      encoding="utf-8")
    cfg = config.loads("allowlist:\n  cidrs: [10.10.20.0/24]\n  hosts: [soc.example]\n"
                       "  files: [own.txt]\n", file=str(tmp_path / "socd.yaml"))
    allow = load_allowlist(cfg)
    assert allow.is_allowed("172.16.5.9")
    assert allow.is_allowed("10.10.20.1")
    assert allow.is_allowed("x.portal.tinh.gov.vn")
    assert allow.is_allowed("soc.example")
    (tmp_path / "bad.txt").write_text("10.0.0.0/33\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 1: invalid CIDR"):
        Allowlist.from_config(cfg.document.allowlist.model_copy(update={"files": ["bad.txt"]}),
                              resolve=cfg.resolve)


def test_config_rejects_bad_cidr() -> None:
    with pytest.raises(config.ConfigError, match="not an address or CIDR"):
        config.loads("allowlist:\n  cidrs: [10.0.0.0/99]\n")
