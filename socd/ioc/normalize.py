"""Normalising indicator values: one canonical spelling per IP, CIDR, domain and hash.

Every importer and every lookup goes through these functions, so ``10.0.0.5/24``
and ``10.0.0.0/24``, ``Evil.Example.`` and ``evil.example``, or an upper-case
hash are the same entry. Addresses and networks pass the one address gate,
:mod:`socd.netaddr`: a zone id or a newline inside a value is refused (and
counted), ``::ffff:203.0.113.9`` is stored as ``203.0.113.9``.
"""

from __future__ import annotations

import re

from socd import netaddr

KINDS = ("ip", "domain", "hash")
HASH_TYPES = {32: "md5", 40: "sha1", 64: "sha256", 128: "sha512"}
MAX_HASH_CHARS = max(HASH_TYPES)

_HEX = re.compile(r"[0-9a-f]+")
_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?")


class IndicatorError(ValueError):
    """A value that is not a valid indicator of the kind asked for; str() is the reason."""


def ip_int(value: str) -> tuple[int, int] | None:
    """``(4 or 6, address as int)`` for an address string, None if it is none.

    The address gate's lookup fast path (:func:`socd.netaddr.address_int`):
    IPv4-mapped IPv6 addresses (``::ffff:1.2.3.4``) are returned as IPv4, what the
    gate refuses (a zone id, whitespace) is None. Values are stored through
    :func:`normalize_ip`.
    """
    return netaddr.address_int(value)


def normalize_ip(value: str, *, count: bool = True) -> str:
    """Canonical address or network (``a.b.c.d``, ``net/len``; a /32 or /128 is an
    address), through the address gate :mod:`socd.netaddr`.

    Whitespace around the value is stripped (line-oriented lists and spreadsheet
    cells pad values); anything else the gate refuses (a zone id, a newline or
    space inside, an IPv4-mapped form is *converted*, not refused) raises
    :class:`IndicatorError` with the gate's reason, counted in
    ``socd_addresses_refused_total`` unless ``count`` is False.
    """
    try:
        return netaddr.canonical(value.strip(), count=count)
    except netaddr.AddressError as exc:
        raise IndicatorError(f"not an IP address or CIDR ({exc.reason.replace('_', ' ')}): "
                             f"{value[:64]!r}") from None


def ip_range(value: str) -> tuple[int, int, int]:
    """``(family, first, last)`` as ints of a normalised IP or CIDR."""
    return netaddr.network_range(value, count=False)


def _idna(name: str) -> str:
    try:
        import idna  # IDNA 2008 with UTS 46 mapping when available

        return str(idna.encode(name, uts46=True).decode("ascii"))
    except ImportError:  # pragma: no cover - idna ships with aiohttp's yarl
        return name.encode("idna").decode("ascii")


def normalize_domain(value: str) -> str:
    """Lower-case ASCII (IDNA) name without a trailing dot; ``*.`` prefix kept.

    Raises :class:`IndicatorError` for names that cannot be a registered domain:
    one label only, empty labels, labels longer than 63 characters, invalid
    characters, more than 253 characters.
    """
    text = value.strip().rstrip(".").lower()
    wildcard = text.startswith("*.")
    if wildcard:
        text = text[2:]
    if not text:
        raise IndicatorError(f"empty domain name: {value!r}")
    if not text.isascii():
        try:
            text = _idna(text)
        except (UnicodeError, ValueError) as exc:
            raise IndicatorError(f"invalid internationalised domain name {value!r}: "
                                 f"{exc}") from exc
    if len(text) > 253:
        raise IndicatorError(f"domain name longer than 253 characters: {value[:40]!r}...")
    labels = text.split(".")
    if len(labels) < 2:
        raise IndicatorError(f"not a domain name (needs at least two labels): {value!r}")
    for label in labels:
        if not _LABEL.fullmatch(label):
            raise IndicatorError(f"invalid domain label {label!r} in {value!r}")
    if labels[-1].isdigit():
        raise IndicatorError(f"not a domain name (numeric top-level label): {value!r}")
    return "*." + text if wildcard else text


# The longest domain name (RFC 1035), without its optional final dot.
MAX_DOMAIN_CHARS = 253


def event_domain(value: str) -> str:
    """Cheap normalisation of a name seen in an event (for lookups, never raises).

    ``""`` for a value longer than any domain name (253 characters and a final dot):
    callers then find nothing, without lowering a 1 MiB field or walking its dots
    (each suffix of a dotted name is looked up: quadratic in its length)."""
    text = value.strip()
    if len(text) > MAX_DOMAIN_CHARS + 1:
        return ""
    text = text.rstrip(".").lower()
    if not text.isascii():
        try:
            text = _idna(text)
        except (UnicodeError, ValueError):
            return text
    return text


def normalize_hash(value: str) -> str:
    text = value.strip().lower()
    if len(text) not in HASH_TYPES or not _HEX.fullmatch(text):
        raise IndicatorError(f"not an MD5/SHA-1/SHA-256/SHA-512 hex digest: {value!r}")
    return text


def hash_type(value: str) -> str:
    return HASH_TYPES.get(len(value), "unknown")


def normalize(value: str, kind: str | None = None) -> tuple[str, str]:
    """``(kind, canonical value)``; ``kind`` None means detect it.

    Detection order: IP/CIDR, then hash (hex of 32/40/64/128 characters), then domain.
    """
    if kind is not None:
        if kind == "ip":
            return "ip", normalize_ip(value)
        if kind == "domain":
            return "domain", normalize_domain(value)
        if kind == "hash":
            return "hash", normalize_hash(value)
        raise IndicatorError(f"unknown indicator kind {kind!r} (use ip, domain or hash)")
    text = value.strip()
    if not text:
        raise IndicatorError("empty value")
    if ":" in text or "/" in text or "%" in text:
        # Never a hash nor a domain name: an address or network, or refused as one.
        try:
            return "ip", normalize_ip(text)
        except IndicatorError as exc:
            raise IndicatorError(f"not an IP, CIDR, domain or hash: {value[:64]!r} "
                                 f"({exc})") from None
    if text[0].isdigit():
        try:
            return "ip", normalize_ip(text, count=False)
        except IndicatorError:
            pass
    lowered = text.lower()
    if len(lowered) in HASH_TYPES and _HEX.fullmatch(lowered):
        return "hash", lowered
    try:
        return "domain", normalize_domain(text)
    except IndicatorError as exc:
        raise IndicatorError(f"not an IP, CIDR, domain or hash: {value[:64]!r} ({exc})") \
            from exc
