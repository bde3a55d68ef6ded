"""The allowlist: the SOC's own infrastructure, never an IoC and never blocked.

A list of CIDRs (or single addresses) and host names from the config section
``allowlist: {cidrs: [...], hosts: [...], files: [...]}``; files hold one CIDR,
address or host name a line, ``#`` starts a comment.

* :meth:`Allowlist.is_allowed` — is this address or host name ours?
* :meth:`Allowlist.covers` — does this address/CIDR overlap our networks at all
  (an IoC ``10.0.0.0/8`` overlaps the SOC's ``10.10.20.0/24``)? The IoC importer
  refuses such entries; the blocking engine must refuse to block them.
* :meth:`Allowlist.reason` — the same for an IoC entry of any kind, with the
  reason as text (None when the entry does not touch the allowlist).

A host name covers itself and every name below it (``tinh.gov.vn`` covers
``mail.tinh.gov.vn``).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from socd import netaddr
from socd.ioc.normalize import IndicatorError, event_domain, ip_int, normalize_domain

if TYPE_CHECKING:
    from socd.config import AllowlistConfig, Config

Network = netaddr.IPNetwork


class Allowlist:
    """Own networks and host names. Immutable once built; cheap to query."""

    def __init__(self, cidrs: Iterable[str | Network] = (), hosts: Iterable[str] = ()) -> None:
        nets: list[Network] = []
        names: set[str] = set()
        for item in cidrs:
            nets.append(_network(str(item)))  # objects too: a mapped IPv6 one becomes IPv4
        for host in hosts:
            host = host.strip()
            if not host:
                continue
            try:
                nets.append(_network(host))
                continue
            except ValueError:
                pass
            try:
                name = normalize_domain(host)
            except IndicatorError:
                name = event_domain(host)  # single-label names ("intranet") are allowed here
            names.add(name.removeprefix("*."))
        self.networks: tuple[Network, ...] = tuple(nets)
        self.hosts: frozenset[str] = frozenset(names)
        self._ranges = {4: _merge([(int(n.network_address), int(n.broadcast_address))
                                   for n in nets if n.version == 4]),
                        6: _merge([(int(n.network_address), int(n.broadcast_address))
                                   for n in nets if n.version == 6])}

    # -- construction ------------------------------------------------------------------

    @classmethod
    def from_lines(cls, lines: Iterable[str]) -> Allowlist:
        cidrs: list[str] = []
        hosts: list[str] = []
        _split_lines(lines, cidrs, hosts)
        return cls(cidrs, hosts)

    @classmethod
    def from_config(cls, config: AllowlistConfig | None,
                    resolve: Callable[[str], str] | None = None) -> Allowlist:
        """From an ``AllowlistConfig`` (cidrs, hosts, files); ``resolve`` maps file paths
        relative to the config file. Raises OSError for an unreadable file and
        ValueError for an invalid line (with file and line number)."""
        if config is None:
            return cls()
        cidrs = list(config.cidrs)
        hosts = list(config.hosts)
        for path in config.files:
            full = resolve(path) if resolve is not None else path
            with open(full, encoding="utf-8") as fh:
                try:
                    _split_lines(fh, cidrs, hosts)
                except ValueError as exc:
                    raise ValueError(f"{full}: {exc}") from exc
        return cls(cidrs, hosts)

    def __bool__(self) -> bool:
        return bool(self.networks or self.hosts)

    def __len__(self) -> int:
        return len(self.networks) + len(self.hosts)

    # -- queries -----------------------------------------------------------------------

    def is_allowed(self, ip_or_host: str) -> bool:
        """True when the address is in an allowlisted network, or the host name is (or
        is below) an allowlisted name."""
        parsed = ip_int(ip_or_host.strip())
        if parsed is not None:
            return self._overlaps(parsed[0], parsed[1], parsed[1])
        if "/" in ip_or_host:
            return self.covers(ip_or_host)
        name = event_domain(ip_or_host)  # "" when too long to be a host name
        return bool(name) and self._host_covered(name) is not None

    def covers(self, cidr: str | Network) -> bool:
        """True when the address or network overlaps any allowlisted network."""
        net = _network(str(cidr))
        return self._overlaps(net.version, int(net.network_address),
                              int(net.broadcast_address))

    def overlapping(self, cidr: str | Network) -> list[Network]:
        """The allowlisted networks that overlap ``cidr`` (for messages)."""
        net = _network(str(cidr))
        return [n for n in self.networks if n.version == net.version and n.overlaps(net)]

    def reason(self, kind: str, value: str) -> str | None:
        """Why an IoC entry (normalised kind and value) must be refused, or None."""
        if kind == "ip":
            if not self.networks:
                return None
            # Integers first (the gate's fast path for an address: a million-line list
            # is checked entry by entry); the network object only for the message.
            try:
                if not self._overlaps(*netaddr.network_range(value.strip(), count=False)):
                    return None
                net = _network(value)
            except ValueError:
                return None
            hits = ", ".join(str(n) for n in self.overlapping(net)[:3])
            what = "is in" if net.num_addresses == 1 else "overlaps"
            return f"{value} {what} the allowlist ({hits})"
        if kind == "domain":
            if not self.hosts:
                return None
            name = value.removeprefix("*.")
            own = self._host_covered(name)
            if own is not None:
                return f"{value} is (below) the allowlisted host {own}"
            if value.startswith("*."):
                suffix = "." + name
                below = sorted(h for h in self.hosts if h.endswith(suffix))
                if below:
                    return f"{value} covers the allowlisted host {below[0]}"
        return None

    # -- internals ---------------------------------------------------------------------

    def _overlaps(self, family: int, first: int, last: int) -> bool:
        starts, ends = self._ranges[family]
        if not starts:
            return False
        i = bisect_right(starts, last) - 1  # the last range starting at or before `last`
        return i >= 0 and ends[i] >= first

    def _host_covered(self, name: str) -> str | None:
        hosts = self.hosts
        if not hosts:
            return None
        if name in hosts:
            return name
        i = name.find(".")
        while i >= 0:
            suffix = name[i + 1:]
            if suffix in hosts:
                return suffix
            i = name.find(".", i + 1)
        return None


def _network(text: str) -> Network:
    """Through the address gate (socd.netaddr): ``::ffff:203.0.113.0/120`` is the IPv4
    network 203.0.113.0/24, so it meets the IPv4 entries; a zone id is refused
    (AddressError, a ValueError)."""
    return netaddr.parse_network(text.strip(), count=False)


def _split_lines(lines: Iterable[str], cidrs: list[str], hosts: list[str]) -> None:
    for n, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if "/" in line or ":" in line or ip_int(line) is not None:  # never a host name
            try:
                _network(line)
            except ValueError as exc:
                raise ValueError(f"line {n}: invalid CIDR {line!r}") from exc
            cidrs.append(line)
        else:
            hosts.append(line)


def _merge(ranges: list[tuple[int, int]]) -> tuple[list[int], list[int]]:
    starts: list[int] = []
    ends: list[int] = []
    for first, last in sorted(ranges):
        if ends and first <= ends[-1] + 1:
            ends[-1] = max(ends[-1], last)
        else:
            starts.append(first)
            ends.append(last)
    return starts, ends


def load_allowlist(config: Config) -> Allowlist:
    """The allowlist of a loaded configuration (empty when none is set)."""
    return Allowlist.from_config(config.document.allowlist, resolve=config.resolve)


__all__ = ["Allowlist", "load_allowlist"]
