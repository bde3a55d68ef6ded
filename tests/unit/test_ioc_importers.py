"""IoC importers on the fixtures in tests/fixtures/ioc, malformed input included."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from socd.ioc.importers import (
    Options,
    UnsupportedPattern,
    parse_csv,
    parse_duration,
    parse_file,
    parse_ipsum,
    parse_misp,
    parse_stix,
    parse_stix_pattern,
    parse_text,
    parse_time,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ioc"
OPTS = Options(source="test", now=1_800_000_000)


def values(entries: list) -> set[tuple[str, str]]:
    return {(e.kind, e.value) for e in entries}


def reasons(rejected: list[tuple[str, str]]) -> str:
    return "\n".join(f"{w}: {r}" for w, r in rejected)


def test_text_list() -> None:
    entries, rejected = parse_file(str(FIXTURES / "list.txt"), "text", OPTS)
    assert values(entries) == {
        ("ip", "203.0.113.9"), ("ip", "198.51.100.128/25"), ("ip", "2001:db8:dead::/48"),
        ("domain", "bad-domain.example"), ("domain", "*.wild.example"),
        ("hash", "5d41402abc4b2a76b9719d911017c592"), ("ip", "192.0.2.44")}
    refs = {e.value: e.ref for e in entries}
    assert refs["203.0.113.9"] == "1298/CATTT-NCSC"
    assert refs["192.0.2.44"] == "941/CATTT-NCSC"
    assert len(rejected) == 2
    assert rejected[0][0] == "line 11: 999.1.1.1"
    assert "two labels" in rejected[1][1]


def test_text_uses_option_ref_then_source() -> None:
    entries, _ = parse_text(["192.0.2.1", "# ref: 5/CV-X", "192.0.2.2"],
                            Options(source="s", ref="77/CATTT-NCSC"))
    assert [e.ref for e in entries] == ["77/CATTT-NCSC", "5/CV-X"]
    entries, _ = parse_text(["192.0.2.1"], Options(source="feed"))
    assert entries[0].ref == "feed"


def test_ipsum() -> None:
    entries, rejected = parse_file(str(FIXTURES / "ipsum-sample.txt"), "ipsum", OPTS)
    conf = {e.value: e.confidence for e in entries}
    assert conf == {"77.90.185.20": 100, "2.57.122.53": 90, "16.5.0.132": 80,
                    "45.148.10.240": 30, "80.82.77.33": 10}
    assert entries[0].tags == ("lists:10",)
    assert [w for w, _ in rejected] == ["line 11: bad-line", "line 12: 300.1.1.1"]
    entries, rejected = parse_ipsum((FIXTURES / "ipsum-sample.txt").read_text().splitlines(),
                                    OPTS, min_count=3)
    assert len(entries) == 4
    assert rejected[-1] == ("1 lines", "count below --min-count 3")


def test_real_ipsum_feed_parses(tmp_path: Path) -> None:
    # The public-domain IPsum feed of 2026-08-22 (shared/data/ioc), kept compressed
    # in the fixtures so the test runs on any clone.
    import gzip

    feed = tmp_path / "ipsum-2026-08-22.txt"
    feed.write_bytes(gzip.decompress((FIXTURES / "ipsum-2026-08-22.txt.gz").read_bytes()))
    entries, rejected = parse_file(str(feed), "ipsum", OPTS, min_count=2)
    assert len(entries) > 10_000
    assert all(r[1].startswith("count below") for r in rejected)


def test_csv_with_column_mapping() -> None:
    entries, rejected = parse_file(str(FIXTURES / "iocs.csv"), "csv", OPTS,
                                   columns={"kind": "type", "ref": "letter"})
    by_value = {e.value: e for e in entries}
    assert set(by_value) == {"203.0.113.5", "198.51.100.0/24", "phish.bad.example",
                             "d41d8cd98f00b204e9800998ecf8427e"}
    first = by_value["203.0.113.5"]
    assert (first.ref, first.confidence, first.tags) == ("1298/CATTT-NCSC", 90, ("c2", "botnet"))
    assert first.first_seen == parse_time("2026-11-10")  # 10/11/2026 is dd/mm/yyyy
    assert by_value["phish.bad.example"].confidence == 50  # empty: the default
    assert reasons(rejected).splitlines() == [
        "row 6: not an ip: not an IP address or CIDR (bad character): 'not an ip'",
        "row 7: 203.0.113.6: confidence 150 is not within 0-100",
        "row 8: 203.0.113.8: not a date: 'yesterday'",
        "row 9: empty value"]


def test_csv_errors_name_the_columns() -> None:
    with pytest.raises(ValueError, match="no column 'nope'"):
        parse_csv("ip,x\n1.2.3.4,y\n", OPTS, {"value": "nope"})
    with pytest.raises(ValueError, match="--column value="):
        parse_csv("a;b\n1.2.3.4;y\n", OPTS)
    with pytest.raises(ValueError, match="unknown CSV field"):
        parse_csv("ip\n1.2.3.4\n", OPTS, {"colour": "ip"})
    entries, _ = parse_csv("addr;note\n192.0.2.1;x\n", OPTS, {"value": "addr"})
    assert values(entries) == {("ip", "192.0.2.1")}


def test_stix_bundle() -> None:
    entries, rejected = parse_file(str(FIXTURES / "stix-bundle.json"), "stix", OPTS)
    assert values(entries) == {
        ("ip", "203.0.113.10"), ("ip", "198.51.100.7"), ("ip", "198.51.100.8"),
        ("ip", "2001:db8:bad::1"), ("domain", "c2.evil.example"),
        ("hash", "aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f"),
        ("hash", "44d88612fea8a8f36de82e1278abb02f"), ("ip", "192.0.2.0/25"),
        ("domain", "a.bad.example"), ("domain", "b.bad.example")}
    c2 = next(e for e in entries if e.value == "203.0.113.10")
    assert (c2.ref, c2.confidence, c2.first_seen, c2.expires) == (
        "1298/CATTT-NCSC", 85, parse_time("2026-11-10"), parse_time("2099-01-01"))
    assert c2.tags == ("apt", "malicious-activity")
    text = reasons(rejected)
    for expected in ("combined with AND", "FOLLOWEDBY", "object path url:value",
                     "qualifier WITHIN", "pattern_type 'snort'", "revoked",
                     "expired (valid_until 2020", "'203.0.113.999'", "ends unexpectedly"):
        assert expected in text, expected
    assert len(rejected) == 9


@pytest.mark.parametrize(("pattern", "expected"), [
    ("[ipv4-addr:value = '192.0.2.1']", [("ip", "192.0.2.1")]),
    ("[ipv6-addr:value = '2001:db8::1']", [("ip", "2001:db8::1")]),
    ("[domain-name:value = 'x.example']", [("domain", "x.example")]),
    ("[file:hashes.'SHA-256' = 'ab']", [("hash", "ab")]),
    ("[file:hashes.MD5 = 'ab'] OR [file:hashes.'SHA-1' = 'cd']", [("hash", "ab"), ("hash", "cd")]),
    ("([ipv4-addr:value = '192.0.2.1'] OR ([domain-name:value = 'y.example']))",
     [("ip", "192.0.2.1"), ("domain", "y.example")]),
    ("[(ipv4-addr:value = '192.0.2.1' OR ipv4-addr:value = '192.0.2.2')]",
     [("ip", "192.0.2.1"), ("ip", "192.0.2.2")]),
    ("[ipv4-addr:value ISSUBSET '192.0.2.0/24']", [("ip", "192.0.2.0/24")]),
    ("[network-traffic:dst_ref.value = '192.0.2.9']", [("ip", "192.0.2.9")]),
    ("[domain-name:value = 'it\\'s.example']", [("domain", "it's.example")]),
])
def test_stix_supported_patterns(pattern: str, expected: list) -> None:
    assert parse_stix_pattern(pattern) == expected


@pytest.mark.parametrize(("pattern", "reason"), [
    ("[ipv4-addr:value != '192.0.2.1']", "operator !="),
    ("[domain-name:value LIKE '%.example']", "operator LIKE"),
    ("[domain-name:value MATCHES '^x']", "operator MATCHES"),
    ("[ipv4-addr:value NOT = '192.0.2.1']", "NOT"),
    ("[ipv4-addr:value = '192.0.2.1'] AND [ipv4-addr:value = '192.0.2.2']", "AND"),
    ("[ipv4-addr:value = '192.0.2.1'] REPEATS 5 TIMES", "REPEATS"),
    ("[file:hashes.'SSDEEP' = 'x']", "hash algorithm 'ssdeep'"),
    ("[email-addr:value = 'a@b.example']", "object path email-addr:value"),
    ("[ipv4-addr:value = 42]", "quoted string"),
    ("ipv4-addr:value = '1.2.3.4'", "expected '['"),
    ("[ipv4-addr:value = '1.2.3.4']]", "unexpected"),
    ("[ipv4-addr:value = '1.2.3.4' § ]", "cannot read"),
])
def test_stix_unsupported_patterns(pattern: str, reason: str) -> None:
    with pytest.raises(UnsupportedPattern, match=re.escape(reason)):
        parse_stix_pattern(pattern)


def test_stix_malformed_documents() -> None:
    assert parse_stix(b"{not json", OPTS)[1][0][1].startswith("not JSON")
    assert parse_stix(b"42", OPTS) == ([], [("file", "not a STIX bundle")])
    entries, rejected = parse_stix(b'{"type": "indicator", "id": "indicator--1", '
                                   b'"pattern": "[ipv4-addr:value = \'192.0.2.5\']", '
                                   b'"valid_from": "soon"}', OPTS)
    assert entries == []
    assert "not a date" in rejected[0][1]


def test_misp_event() -> None:
    entries, rejected = parse_file(str(FIXTURES / "misp-event.json"), "misp", OPTS)
    assert values(entries) == {
        ("ip", "203.0.113.77"), ("ip", "198.51.100.66"), ("domain", "update.bad.example"),
        ("domain", "cdn.bad.example"), ("domain", "mx.bad.example"), ("ip", "192.0.2.66"),
        ("hash", "44d88612fea8a8f36de82e1278abb02f"),
        ("hash", "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f"),
        ("hash", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")}
    assert {e.ref for e in entries} == {"1298/CATTT-NCSC"}
    c2 = next(e for e in entries if e.value == "203.0.113.77")
    assert c2.first_seen == 1794787200
    assert c2.tags == ("tlp:amber", 'ncsc:campaign="botnet-2026"', "c2")
    text = reasons(rejected)
    for expected in ("type 'url'", "to_ids is false", "deleted attribute", "'300.1.2.3'",
                     "type 'filename'"):
        assert expected in text, expected
    entries, _ = parse_file(str(FIXTURES / "misp-event.json"), "misp", OPTS,
                            include_non_ids=True)
    assert ("ip", "192.0.2.200") in values(entries)


def test_misp_shapes() -> None:
    bare = b'{"info": "no letter", "Attribute": [{"type": "ip-dst", "value": "192.0.2.9"}]}'
    entries, _ = parse_misp(bare, OPTS)
    assert entries[0].ref == "no letter"
    wrapped = b'{"response": [{"Event": {"info": "x", "Attribute": []}}, {"foo": 1}]}'
    entries, rejected = parse_misp(wrapped, OPTS)
    assert entries == []
    assert "not a MISP event" in rejected[0][1]
    assert parse_misp(b"[", OPTS)[1][0][1].startswith("not JSON")


def test_time_and_duration_parsing() -> None:
    assert parse_time("2026-11-10") == parse_time("10/11/2026") == 1794268800
    assert parse_time("2026-11-10T00:00:00Z") == 1794268800
    assert parse_time("1794268800") == 1794268800
    assert parse_time("") is None
    assert parse_duration("30d") == 30 * 86400
    assert parse_duration("2w") == 14 * 86400
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("soon")
