"""Firewall set elements as parsed objects, and the batches the backends apply.

Every element that reaches nft or ipset is built here from a parsed network
(:func:`socd.netaddr.parse_network`), never from text as it arrived: the text a
backend writes into a command is the canonical form of that object, checked once
more against a strict character set (:func:`socd.netaddr.safe_element`). What
cannot become an element is a :class:`Refusal` with a reason, reported and counted
on its own, so one bad value never fails the batch it came in.

The same functions screen the daemon's decisions (:func:`from_value`) and the
requests the privileged helper receives (:func:`parse_add`, :func:`parse_remove`),
where nothing is trusted: a value must be exactly the canonical text of one
address or network, a timeout a whole number of seconds in range.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal

import structlog
from prometheus_client import Counter

from socd import metrics
from socd.netaddr import REASONS, AddressError, IPNetwork, canonical, parse_network, safe_element

if TYPE_CHECKING:
    from socd.block.decisions import Change

#: Longest timeout written to a set. nft 1.0.6 rejects 10^8 s and more ("value too
#: large"); longer blocks are refreshed by the blocker sink's periodic resync.
MAX_TIMEOUT_SECS: Final = 3 * 365 * 86400
#: Most elements one request may carry in each of ``add`` and ``remove``.
MAX_ELEMENTS: Final = 1_048_576
#: Characters of a refused value kept in reports and logs.
SHOWN: Final = 80

#: Why an element was refused: the address gate's reasons, then
#: ``not_canonical`` (an address, but not written the one canonical way),
#: ``malformed`` (not an element object of the expected shape), ``bad_timeout``,
#: ``overlap`` (an nftables interval set cannot hold it beside another element of the
#: same batch) and ``firewall`` (nft or ipset rejected it on its own).
REFUSAL_REASONS: Final = (*REASONS, "not_canonical", "malformed", "bad_timeout", "overlap",
                          "firewall")

log = structlog.get_logger("socd.block")
ELEMENTS_REFUSED = Counter(
    "socd_block_elements_refused_total",
    "Block values not written to the firewall, by reason: " + ", ".join(REFUSAL_REASONS) + ".",
    ["reason"], registry=metrics.REGISTRY)
for _reason in REFUSAL_REASONS:
    ELEMENTS_REFUSED.labels(_reason)


@dataclass(frozen=True, slots=True)
class Element:
    """One set element: a canonical network, and for additions its timeout."""

    net: IPNetwork
    timeout_secs: int = 0

    @property
    def family(self) -> Literal[4, 6]:
        return 4 if self.net.version == 4 else 6

    @property
    def text(self) -> str:
        """The element as written into a command: an address for a /32 or /128."""
        net = self.net
        text = str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)
        return safe_element(text)


@dataclass(frozen=True, slots=True)
class Refusal:
    """A value that did not become an element (``value`` shortened for reports)."""

    value: str
    reason: str

    @classmethod
    def of(cls, value: object, reason: str) -> Refusal:
        shown = value if isinstance(value, str) else json.dumps(value, default=repr)
        return cls(shown[:SHOWN], reason)


@dataclass(frozen=True, slots=True)
class Batch:
    """What to change in socd's sets, as one firewall transaction.

    ``full``: replace the whole table (nftables) or sets (ipset) with ``add``;
    otherwise remove ``remove`` and add ``add``. ``refused`` holds what was screened
    out while the batch was built.
    """

    full: bool
    add: tuple[Element, ...] = ()
    remove: tuple[Element, ...] = ()
    refused: tuple[Refusal, ...] = ()

    def __len__(self) -> int:
        return len(self.add) + len(self.remove)

    def without(self, bad: Iterable[Element]) -> Batch:
        drop = set(bad)
        return Batch(self.full, tuple(e for e in self.add if e not in drop),
                     tuple(e for e in self.remove if e not in drop), self.refused)


@dataclass(slots=True)
class Outcome:
    """What a batch did: elements applied, and every refusal with its reason."""

    applied: int = 0
    refused: list[Refusal] = field(default_factory=list)


def report(outcome: Outcome, backend: str) -> Outcome:
    """Count and log the refusals of a push (the daemon side); ``outcome`` unchanged."""
    for refusal in outcome.refused:
        reason = refusal.reason if refusal.reason in REFUSAL_REASONS else "malformed"
        ELEMENTS_REFUSED.labels(reason).inc()
        log.warning("block value not pushed", backend=backend, value=refusal.value,
                    reason=refusal.reason)
    return outcome


def timeout_secs(expires: float, now: float, maximum: int = MAX_TIMEOUT_SECS) -> int:
    """Whole seconds left until ``expires`` (at least 1, at most ``maximum``)."""
    return min(maximum, max(1, math.ceil(expires - now)))


def from_value(value: str, timeout: int = 0) -> Element | Refusal:
    """The element of a stored decision's value (the daemon side), or why not."""
    try:
        return Element(parse_network(value), timeout)
    except AddressError as exc:
        return Refusal.of(value, exc.reason)


def changes_batch(changes: Iterable[Change], now: float, maximum: int, *,
                  readd_extended: bool) -> Batch:
    """The incremental batch of decision changes (the daemon side): removals, and
    additions that have not expired, with the seconds left (at most ``maximum``).

    ``readd_extended``: an extension removes the element and adds it again
    (nftables, so its timeout is exact on every kernel); otherwise the addition
    replaces the timeout in place (ipset ``-exist``). Domain decisions are not
    firewall elements and are skipped; values the address gate refuses are
    ``refused``.
    """
    add: list[Element] = []
    remove: list[Element] = []
    refused: list[Refusal] = []
    removing = ("extend", "remove") if readd_extended else ("remove",)
    for change in changes:
        decision = change.decision
        if decision.kind not in ("ipv4", "ipv6"):
            continue
        found = from_value(decision.value, timeout_secs(decision.expires, now, maximum))
        if isinstance(found, Refusal):
            refused.append(found)
            continue
        if change.action in removing:
            remove.append(Element(found.net))
        if change.action in ("add", "extend") and decision.expires > now:
            add.append(found)
    return Batch(False, tuple(add), tuple(remove), tuple(refused))


def _exact(value: object) -> Element | Refusal:
    """An element only when ``value`` is its canonical text, character for character."""
    if not isinstance(value, str):
        return Refusal.of(value, "malformed")
    try:
        net = parse_network(value, strict=True)
    except AddressError as exc:
        return Refusal.of(value, exc.reason)
    if canonical(value, count=False) != value:
        return Refusal.of(value, "not_canonical")
    return Element(net)


def parse_add(item: object) -> Element | Refusal:
    """``{"value": "198.51.100.7", "timeout_secs": 3600}`` from an untrusted peer."""
    if not isinstance(item, dict) or set(item) != {"value", "timeout_secs"}:
        return Refusal.of(item, "malformed")
    found = _exact(item["value"])
    if isinstance(found, Refusal):
        return found
    timeout = item["timeout_secs"]
    if isinstance(timeout, bool) or not isinstance(timeout, int) \
            or not 1 <= timeout <= MAX_TIMEOUT_SECS:
        return Refusal.of(item["value"], "bad_timeout")
    return Element(found.net, timeout)


def parse_remove(item: object) -> Element | Refusal:
    """A value to remove (``"198.51.100.7"``) from an untrusted peer."""
    return _exact(item)


def without_overlaps(elements: Iterable[Element]) -> tuple[list[Element], list[Refusal]]:
    """Elements an nftables interval set can hold together, and the rest refused as
    ``overlap``: one sort and sweep; of overlapping elements the one that starts first
    (the wider one on a tie) is kept. Both lists keep the input order."""
    items = list(elements)
    order = sorted(range(len(items)), key=lambda i: (
        items[i].family, int(items[i].net.network_address), items[i].net.prefixlen))
    dropped: set[int] = set()
    family, end = 0, -1
    for i in order:
        net = items[i].net
        if items[i].family == family and int(net.network_address) <= end:
            dropped.add(i)
            continue
        family, end = items[i].family, int(net.broadcast_address)
    kept = [e for i, e in enumerate(items) if i not in dropped]
    refused = [Refusal.of(items[i].text, "overlap") for i in sorted(dropped)]
    return kept, refused
