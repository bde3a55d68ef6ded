"""The one gate every IP address and network passes on its way into socd.

Addresses arrive from hostile places: syslog lines, webhook bodies, IoC
appendices, rule actions, the command line. :mod:`ipaddress` is lenient in ways
that matter downstream: it accepts IPv6 zone ids (``2001:db8::5%eth0``, and the
text after ``%`` may hold spaces, newlines or ``;``), keeps IPv4-mapped IPv6
forms (``::ffff:203.0.113.9``) distinct from the IPv4 address they name, and
tolerates surrounding whitespace in some callers. A value that later becomes an
nftables set element, an ipset line or a line of a firewall feed must be exactly
one canonical address or network and nothing else.

So every caller uses these functions:

* :func:`parse_address` / :func:`parse_network` return :mod:`ipaddress` objects
  in canonical form: no scope id, IPv4-mapped addresses *and networks* turned
  into IPv4, host bits of a network cleared;
* :func:`canonical` returns the text form (a /32 or /128 network is written as
  an address); :func:`network_range` the integer range of one (the IoC index);
* :func:`is_dotted_quad` answers whether a text is an IPv4 address written
  canonically (the fast path of IoC lists);
* :func:`canonical_address` and :func:`is_address` are cached: they run on
  every address field of every event (:func:`address_or_none` answers None
  instead of raising, for vendor fields that may hold anything);
  :func:`address_int` is the fast path for lookups (the same answers as
  :func:`parse_address`, from ``inet_pton``);
* :func:`safe_element` checks a text about to be written into a firewall
  command or feed against a strict character set (digits, hex letters, ``.``,
  ``:`` and ``/``), as the last line of defence.

What fails raises :class:`AddressError` whose ``reason`` is one of
:data:`REASONS`; the refusal is counted in ``socd_addresses_refused_total``
(callers that must first rule out a domain name parse with ``count=False`` and
call :func:`count_refusal` themselves).
"""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
from typing import Final, TypeGuard

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Every reason an address can be refused for (the label values of the metric).
REASONS: Final = ("empty", "too_long", "bad_character", "scope_id", "syntax", "host_bits")

# Longest legitimate text: a full IPv6 address with an embedded IPv4 tail and a prefix
# ("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255/128" is 49 characters).
MAX_LENGTH: Final = 64

_ALLOWED = re.compile(r"[0-9A-Fa-f.:/]+")
_AF_INET, _AF_INET6 = socket.AF_INET, socket.AF_INET6
_pton = socket.inet_pton
_MAPPED_V4 = ipaddress.IPv6Network("::ffff:0:0/96")


class AddressError(ValueError):
    """A value that is not a canonical IP address or network; ``reason`` says why."""

    def __init__(self, reason: str, value: object) -> None:
        self.reason = reason
        shown = str(value)
        if len(shown) > MAX_LENGTH:
            shown = shown[:MAX_LENGTH] + "..."
        super().__init__(f"not an IP address or network ({reason.replace('_', ' ')}): {shown!r}")


def count_refusal(reason: str) -> None:
    """Count one refusal with ``reason`` (one of :data:`REASONS`).

    For callers that parse with ``count=False`` because a refusal may still be
    something else (a domain name, a hash) and count only once they know."""
    if reason not in REASONS:
        raise ValueError(f"unknown reason {reason!r}: one of {', '.join(REASONS)}")
    # Imported here: the gate itself must not pull in prometheus_client.
    from socd.metrics import ADDRESSES_REFUSED

    ADDRESSES_REFUSED.labels(reason).inc()



def _screen(value: object) -> str:
    """The text of ``value`` when it may be an address; AddressError otherwise."""
    if not isinstance(value, str):
        raise AddressError("syntax", value)
    if not value:
        raise AddressError("empty", value)
    if len(value) > MAX_LENGTH:
        raise AddressError("too_long", value)
    if _ALLOWED.fullmatch(value) is None:
        raise AddressError("scope_id" if "%" in value else "bad_character", value)
    return value


def _unmap_address(addr: IPAddress) -> IPAddress:
    if isinstance(addr, ipaddress.IPv6Address):
        mapped = addr.ipv4_mapped
        if mapped is not None:
            return mapped
    return addr


def _unmap_network(net: IPNetwork) -> IPNetwork:
    if (isinstance(net, ipaddress.IPv6Network) and net.prefixlen >= 96
            and net.subnet_of(_MAPPED_V4)):
        first = net.network_address.ipv4_mapped
        assert first is not None
        return ipaddress.IPv4Network((first, net.prefixlen - 96))
    return net


def _refuse(exc: AddressError, count: bool) -> AddressError:
    if count:
        count_refusal(exc.reason)
    return exc


def _address(value: object) -> IPAddress:
    text = _screen(value)
    if "/" in text:
        raise AddressError("syntax", value)
    try:
        return _unmap_address(ipaddress.ip_address(text))
    except ValueError:
        raise AddressError("syntax", value) from None


def _network(value: object, strict: bool) -> IPNetwork:
    text = _screen(value)
    try:
        net = ipaddress.ip_network(text, strict=strict)
    except ValueError as exc:
        reason = "host_bits" if strict and "host bits set" in str(exc) else "syntax"
        raise AddressError(reason, value) from None
    return _unmap_network(net)


def parse_address(value: object, *, count: bool = True) -> IPAddress:
    """The canonical address ``value`` names: no prefix, no scope id, mapped IPv6 as IPv4."""
    try:
        return _address(value)
    except AddressError as exc:
        raise _refuse(exc, count) from None


def parse_network(value: object, *, strict: bool = False, count: bool = True) -> IPNetwork:
    """The canonical network ``value`` names (an address is its /32 or /128).

    With ``strict`` a network with host bits set (``10.0.0.7/24``) is refused
    (reason ``host_bits``); otherwise the host bits are cleared.
    """
    try:
        return _network(value, strict)
    except AddressError as exc:
        raise _refuse(exc, count) from None


def is_dotted_quad(value: object) -> TypeGuard[str]:
    """True when ``value`` is an IPv4 address in its canonical text already.

    ``inet_pton`` takes for AF_INET exactly four decimal parts of 0-255 without
    leading zeros (what :mod:`ipaddress` takes, and the unit tests check both agree),
    and such a text is its own canonical form: IoC lists of a million addresses
    pass here instead of through :mod:`ipaddress`, about twenty times slower."""
    if type(value) is not str or len(value) > 15:
        return False
    try:
        _pton(_AF_INET, value)
    except (OSError, ValueError):
        return False
    return True


def canonical(value: object, *, count: bool = True) -> str:
    """The canonical text of an address or network: ``10.0.0.7``, ``10.0.0.0/24``,
    ``2001:db8::/32``; a host network (/32, /128) is written as the address."""
    if type(value) is str and len(value) <= 15:
        try:  # is_dotted_quad, inline: IoC lists call this for each of a million lines
            _pton(_AF_INET, value)
        except (OSError, ValueError):
            pass
        else:
            return value
    net = parse_network(value, count=count)
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return str(net)


def _address_text(value: str) -> tuple[str, str]:
    """``(canonical text, "")`` or ``("", reason)``: the verdict on one text, cached
    unless the text is longer than any address (input must not make huge values
    cache keys: 65,536 of 1 MiB would hold 64 GiB)."""
    if len(value) > MAX_LENGTH:
        return "", "too_long"
    return _address_verdict(value)


@functools.lru_cache(maxsize=65536)
def _address_verdict(value: str) -> tuple[str, str]:
    try:
        return str(parse_address(value, count=False)), ""
    except AddressError as exc:
        return "", exc.reason


def canonical_address(value: object, *, count: bool = True) -> str:
    """The canonical text of an address (no networks).

    Cached for strings: decoders and the event check call it on every address
    field, and the same addresses recur in almost every batch. A refusal is
    counted on every call, cached or not."""
    if not isinstance(value, str):
        return str(parse_address(value, count=count))
    # _address_text, inline (decoders call this for every address field)
    text, reason = ("", "too_long") if len(value) > MAX_LENGTH else _address_verdict(value)
    if reason:
        if count:
            count_refusal(reason)
        raise AddressError(reason, value)
    return text


def address_or_none(value: object) -> str | None:
    """:func:`canonical_address`, or None when the gate refuses ``value`` (the refusal
    is counted): for an address field of a vendor record, where a zone id, whitespace
    or junk must never become ``source.ip`` but must not fail the event either."""
    if isinstance(value, str) and len(value) <= MAX_LENGTH:
        # canonical_address's cached path, without its raise and catch
        text, reason = _address_verdict(value)
        if reason:
            count_refusal(reason)
            return None
        return text
    try:
        return canonical_address(value)
    except AddressError:
        return None


def address_int(value: str) -> tuple[int, int] | None:
    """``(version, integer)`` of the address :func:`parse_address` accepts, None for what
    it refuses; never counts.

    The lookup fast path (rules' CIDR tests, IoC lookups run it on every address of
    every event): ``inet_pton`` is about 40 times faster than :mod:`ipaddress` and
    accepts the same texts (no zone id, no whitespace; the unit tests check that
    both agree on arbitrary strings). IPv4-mapped addresses give IPv4, as the gate.
    """
    if type(value) is str and len(value) > MAX_LENGTH:
        return None  # the gate's too_long, without encoding a huge text twice
    try:
        return 4, int.from_bytes(_pton(_AF_INET, value), "big")
    except (OSError, ValueError, TypeError):
        pass
    try:
        n = int.from_bytes(_pton(_AF_INET6, value), "big")
    except (OSError, ValueError, TypeError):
        return None
    if n >> 32 == 0xFFFF:
        return 4, n & 0xFFFFFFFF
    return 6, n


def network_range(value: str, *, count: bool = True) -> tuple[int, int, int]:
    """``(version, first, last)`` as integers of the network :func:`parse_network`
    gives for ``value`` (an address is its own range): the IoC index's rows.

    An address text takes :func:`address_int`'s path (the same answers); networks
    and everything the fast path refuses go through :func:`parse_network`, which
    raises and counts as usual."""
    if "/" not in value:
        hit = address_int(value)
        if hit is not None:
            return hit[0], hit[1], hit[1]
    net = parse_network(value, count=count)
    return net.version, int(net.network_address), int(net.broadcast_address)


def is_address(value: object) -> bool:
    """True when ``value`` is a string that :func:`parse_address` accepts (cached; the
    same addresses recur in almost every batch). Never counts a refusal."""
    return isinstance(value, str) and not _address_text(value)[1]


def is_network(value: object) -> bool:
    """True when ``value`` is an address or network :func:`parse_network` accepts."""
    try:
        parse_network(value, count=False)
    except AddressError:
        return False
    return True


def safe_element(text: str) -> str:
    """``text`` unchanged when it may be written into an nft/ipset command or a feed line.

    Only for text produced by :func:`canonical` and the like: a final check that
    no character outside ``[0-9A-Fa-f.:/]`` (so no space, newline, ``;``, ``%`` or
    brace) ever reaches a firewall. Raises :class:`AddressError` otherwise.
    """
    if not text or len(text) > MAX_LENGTH or _ALLOWED.fullmatch(text) is None:
        raise AddressError("bad_character", text)
    return text
