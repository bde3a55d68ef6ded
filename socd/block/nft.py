"""The nftables backend: one table, two interval sets with timeouts, atomic batches.

Layout (``table: socd``, the defaults)::

    table inet socd {
        set blocked4 { type ipv4_addr; flags interval, timeout; }
        set blocked6 { type ipv6_addr; flags interval, timeout; }
        chain input   { type filter hook input priority -10; policy accept;
                        ip saddr @blocked4 counter drop; ip6 saddr @blocked6 counter drop; }
        chain forward { type filter hook forward priority -10; policy accept;
                        ip saddr @blocked4 counter drop; ip6 saddr @blocked6 counter drop;
                        ip daddr @blocked4 counter drop; ip6 daddr @blocked6 counter drop; }
        chain output  { type filter hook output priority -10; policy accept;
                        ip daddr @blocked4 counter drop; ip6 daddr @blocked6 counter drop; }
    }

(``direction: inbound`` leaves out the ``daddr`` rules and the output chain.)
Every element carries the ``timeout`` left on its decision, so the kernel lifts
a block by itself when it expires, even while socd is down. Every change is one
``nft -f -`` transaction (all of it applies or none of it), run with a fixed
argv and no shell. Interval sets reject overlapping elements, so a full sync
pushes :func:`socd.block.decisions.flatten`'s disjoint networks; ``auto-merge``
is deliberately not used: it merges adjacent and overlapping elements into one
with a single timeout, which would lengthen or shorten blocks nobody decided.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from socd.block.decisions import Change, Decision, IPNetwork, flatten

CHUNK = 5000  # elements per `add element` statement (all in one transaction)
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")
CAP_HINT = ("nft needs the CAP_NET_ADMIN capability: run socd as root, or give the service "
            "`AmbientCapabilities=CAP_NET_ADMIN` and `CapabilityBoundingSet=CAP_NET_ADMIN` in a "
            "systemd drop-in (systemctl edit socd)")


class NftError(Exception):
    """An nft run failed. ``kind``: ``missing`` (no nft binary), ``permission`` (no
    CAP_NET_ADMIN), ``conflict`` (an element overlaps or is absent: a full resync
    fixes it), ``transient`` (anything else; retry)."""

    def __init__(self, message: str, kind: str = "transient") -> None:
        self.kind = kind
        super().__init__(message)

    @property
    def retryable(self) -> bool:
        return self.kind in ("transient", "conflict")


def _timeout(expires: float, now: float) -> int:
    return max(1, math.ceil(expires - now))


@dataclass(frozen=True, slots=True)
class NftBackend:
    table: str = "socd"
    family: Literal["inet"] = "inet"
    priority: int = -10
    direction: Literal["both", "inbound"] = "both"
    nft: str = "nft"
    run_timeout: float = 60.0

    def __post_init__(self) -> None:
        if not _NAME.match(self.table):
            raise ValueError(f"invalid nftables table name {self.table!r}")

    @property
    def name(self) -> str:
        return "nftables"

    # ------------------------------------------------------------ scripts ----
    def _ref(self, set_name: str = "") -> str:
        return f"{self.family} {self.table}" + (f" {set_name}" if set_name else "")

    def definition(self) -> str:
        """The table as one ``table { }`` block (sets empty)."""
        lines = [f"table {self.family} {self.table} {{",
                 "\tset blocked4 { type ipv4_addr; flags interval, timeout; }",
                 "\tset blocked6 { type ipv6_addr; flags interval, timeout; }"]
        chains: list[tuple[str, list[str]]] = [("input", ["saddr"])]
        if self.direction == "both":
            chains += [("forward", ["saddr", "daddr"]), ("output", ["daddr"])]
        else:
            chains += [("forward", ["saddr"])]
        for hook, fields in chains:
            lines.append(f"\tchain {hook} {{")
            lines.append(f"\t\ttype filter hook {hook} priority {self.priority}; policy accept;")
            for fld in fields:
                lines.append(f"\t\tip {fld} @blocked4 counter drop")
                lines.append(f"\t\tip6 {fld} @blocked6 counter drop")
            lines.append("\t}")
        lines.append("}")
        return "\n".join(lines) + "\n"

    def _elements(self, verb: str, set_name: str, items: Sequence[str]) -> list[str]:
        return [f"{verb} element {self._ref(set_name)} {{ " + ", ".join(items[i:i + CHUNK])
                + " }" for i in range(0, len(items), CHUNK)]

    def full_script(self, decisions: Iterable[Decision], now: float) -> str:
        """One transaction that rebuilds the table and fills both sets: delete it (if
        present), recreate it (a changed priority or direction applies too; rules
        are never duplicated), add every active decision. Being one transaction,
        there is no moment without the blocks."""
        lines = [f"add table {self._ref()}", f"delete table {self._ref()}",
                 self.definition().rstrip("\n")]
        entries = [(d.value, d.expires) for d in decisions
                   if d.kind in ("ipv4", "ipv6") and d.expires > now]
        lines += self._add_lines(flatten(entries), now)
        return "\n".join(lines) + "\n"

    def _add_lines(self, flat: Iterable[tuple[IPNetwork, float]], now: float) -> list[str]:
        by_set: dict[str, list[str]] = {"blocked4": [], "blocked6": []}
        for net, expires in flat:
            value = str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)
            by_set["blocked4" if net.version == 4 else "blocked6"].append(
                f"{value} timeout {_timeout(expires, now)}s")
        out: list[str] = []
        for set_name, items in by_set.items():
            out += self._elements("add", set_name, items)
        return out

    def incremental_script(self, changes: Sequence[Change], now: float) -> str:
        """Adds, extensions (delete + add, so the timeout is exact on every kernel)
        and removals in one transaction. The caller makes sure nothing overlaps;
        a conflict (an element the kernel already dropped) fails the whole
        transaction and the caller falls back to :meth:`full_script`."""
        deletes: dict[str, list[str]] = {"blocked4": [], "blocked6": []}
        adds: dict[str, list[str]] = {"blocked4": [], "blocked6": []}
        for ch in changes:
            d = ch.decision
            if d.kind not in ("ipv4", "ipv6"):
                continue
            set_name = "blocked4" if d.kind == "ipv4" else "blocked6"
            if ch.action in ("extend", "remove"):
                deletes[set_name].append(d.value)
            if ch.action in ("add", "extend") and d.expires > now:
                adds[set_name].append(f"{d.value} timeout {_timeout(d.expires, now)}s")
        lines: list[str] = []
        for set_name, items in deletes.items():
            lines += self._elements("delete", set_name, items)
        for set_name, items in adds.items():
            lines += self._elements("add", set_name, items)
        return "\n".join(lines) + "\n" if lines else ""

    # ------------------------------------------------------------- running ----
    def binary(self) -> str:
        path = shutil.which(self.nft) if not os.path.isabs(self.nft) else self.nft
        if path is None or not os.path.exists(path):
            raise NftError(f"nft not found ({self.nft!r} is not on PATH): install the Debian "
                           "package `nftables` (apt-get install nftables)", "missing")
        return path

    async def run(self, script: str, *, check_only: bool = False) -> str:
        """Run ``script`` as one ``nft -f -`` transaction; raise :class:`NftError`."""
        argv = [self.binary(), *(["-c"] if check_only else []), "-f", "-"]
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE)
        except FileNotFoundError as exc:
            raise NftError(f"nft not found: {exc}; install the Debian package `nftables`",
                           "missing") from exc
        except PermissionError as exc:
            raise NftError(f"cannot execute nft: {exc}. {CAP_HINT}", "permission") from exc
        try:
            out, err = await asyncio.wait_for(proc.communicate(script.encode()),
                                              self.run_timeout)
        except TimeoutError as exc:
            proc.kill()
            await proc.wait()
            raise NftError(f"nft did not finish within {self.run_timeout}s") from exc
        if proc.returncode != 0:
            raise classify_error(err.decode(errors="replace"), proc.returncode)
        return out.decode(errors="replace")

    async def list_table(self) -> str:
        return await self.run(f"list table {self._ref()}\n")

    async def delete_table(self) -> None:
        await self.run(f"add table {self._ref()}\ndelete table {self._ref()}\n")

    async def check(self) -> None:
        """Fails when nft is missing or may not change the ruleset (health check).

        ``nft -c`` (check only) of the table definition validates the syntax but
        not the privilege, so listing the ruleset proves the netlink access.
        """
        await self.run(self.definition(), check_only=True)
        await self.run("list tables\n")


def classify_error(stderr: str, returncode: int | None) -> NftError:
    text = stderr.strip()
    short = text if len(text) < 2000 else text[:2000] + " ..."
    low = text.lower()
    if "operation not permitted" in low or "permission denied" in low:
        return NftError(f"nft refused: {short}. {CAP_HINT}", "permission")
    if "interval overlaps" in low or "element does not exist" in low or "file exists" in low \
            or "conflicting intervals" in low:
        return NftError(f"nft set conflict: {short}", "conflict")
    if "syntax error" in low:
        return NftError(f"nft rejected the script (a socd bug): {short}", "syntax")
    return NftError(f"nft failed (exit {returncode}): {short}")
