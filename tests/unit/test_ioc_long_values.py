"""IoC lookups of event values too long to be a domain name or a digest.

Each suffix of a dotted name is looked up (``a.b.example``, ``b.example``...): on a
1 MiB field of dots that is quadratic. A value longer than any domain name (253
characters and a final dot) or digest is answered at once: no match.
"""

from __future__ import annotations

import time

from socd.ioc.allowlist import Allowlist
from socd.ioc.normalize import MAX_DOMAIN_CHARS, event_domain
from socd.ioc.store import Entry, IocStore

DOTS = "a." * (1 << 19) + "wild.example"  # 1 MiB of labels under a listed wildcard
LONGEST = ("a" * 61 + ".") * 4 + "example"  # 255 characters, over the limit


def _quick(call: object, *args: object) -> object:
    started = time.perf_counter()
    result = call(*args)  # type: ignore[operator]
    assert time.perf_counter() - started < 0.1
    return result


def test_event_domain_refuses_what_cannot_be_a_domain() -> None:
    assert event_domain(" WWW.Example.COM. ") == "www.example.com"
    name = "a" * (MAX_DOMAIN_CHARS - len(".example")) + ".example"
    assert event_domain(name + ".") == name
    assert event_domain(LONGEST) == ""
    assert _quick(event_domain, DOTS) == ""


def test_store_finds_nothing_for_huge_values_and_is_quick() -> None:
    store = IocStore(None, static=[
        Entry("domain", "*.wild.example", "s", "R2"),
        Entry("hash", "44d88612fea8a8f36de82e1278abb02f", "s", "R4")])
    assert store.match_ref("domain", "a.b.wild.example") == "R2"
    assert _quick(store.match_ref, "domain", DOTS) is None
    assert _quick(store.match_ref, "hash", "44d88612fea8a8f36de82e1278abb02f" * 30_000) is None
    assert store.match_ref("hash", " 44D88612FEA8A8F36DE82E1278ABB02F ") == "R4"


def test_allowlist_and_plain_lists_find_nothing_for_huge_values() -> None:
    allow = Allowlist(hosts=["wild.example"])
    assert allow.is_allowed("www.wild.example")
    assert _quick(allow.is_allowed, DOTS) is False
    plain = IocStore(None, static=[Entry("domain", "evil.example", "list.txt", "R1")])
    assert plain.match_ref("domain", "EVIL.example.") == "R1"
    assert _quick(plain.match_ref, "domain", DOTS) is None
