"""The ipset backend, for hosts still filtering with iptables.

Two ``hash:net`` sets with per-element timeouts, ``<name>4`` (family inet) and
``<name>6`` (family inet6), changed in batches by one ``ipset restore`` run.
A full sync fills fresh ``<name>4-new``/``<name>6-new`` sets and ``swap``s
them in, so the live sets are never empty half-way. hash:net stores networks
by prefix, so overlapping networks are fine (no merging needed). Reference the
sets from iptables (docs/blocking.md)::

    iptables  -I INPUT   -m set --match-set socd4 src -j DROP
    iptables  -I FORWARD -m set --match-set socd4 src -j DROP
    iptables  -I FORWARD -m set --match-set socd4 dst -j DROP
    ip6tables -I INPUT   -m set --match-set socd6 src -j DROP

An ipset timeout is at most 2147483 s (~24.8 days): longer blocks are pushed with
that timeout and refreshed by the sink's periodic resync.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from socd.block.decisions import Change, Decision
from socd.block.nft import CAP_HINT, NftError

MAX_TIMEOUT = 2147483
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,20}$")


class IpsetError(NftError):
    """An ipset run failed (same kinds as :class:`NftError`)."""


def _timeout(expires: float, now: float) -> int:
    return min(MAX_TIMEOUT, max(1, math.ceil(expires - now)))


@dataclass(frozen=True, slots=True)
class IpsetBackend:
    set_name: str = "socd"
    ipset: str = "ipset"
    maxelem: int = 1_048_576
    run_timeout: float = 60.0

    def __post_init__(self) -> None:
        if not _NAME.match(self.set_name):
            raise ValueError(f"invalid ipset name {self.set_name!r} (letters, digits, _; "
                             "at most 21 characters)")

    @property
    def name(self) -> str:
        return "ipset"

    def _create(self, name: str, family: str) -> str:
        return (f"create {name} hash:net family {family} timeout 0 maxelem {self.maxelem} "
                "-exist")

    def full_script(self, decisions: Iterable[Decision], now: float) -> str:
        lines: list[str] = []
        live = {4: f"{self.set_name}4", 6: f"{self.set_name}6"}
        for fam, family in ((4, "inet"), (6, "inet6")):
            new = f"{live[fam]}-new"
            lines += [self._create(live[fam], family), self._create(new, family), f"flush {new}"]
        for d in decisions:
            if d.kind in ("ipv4", "ipv6") and d.expires > now:
                new = f"{live[d.family]}-new"
                lines.append(f"add {new} {d.value} timeout {_timeout(d.expires, now)} -exist")
        for fam in (4, 6):
            lines += [f"swap {live[fam]}-new {live[fam]}", f"destroy {live[fam]}-new"]
        return "\n".join(lines) + "\n"

    def incremental_script(self, changes: Sequence[Change], now: float) -> str:
        lines: list[str] = []
        for ch in changes:
            d = ch.decision
            if d.kind not in ("ipv4", "ipv6"):
                continue
            name = f"{self.set_name}{d.family}"
            if ch.action == "remove":
                lines.append(f"del {name} {d.value} -exist")
            elif ch.action in ("add", "extend") and d.expires > now:
                # -exist on add replaces the element's timeout.
                lines.append(f"add {name} {d.value} timeout {_timeout(d.expires, now)} -exist")
        return "\n".join(lines) + "\n" if lines else ""

    def binary(self) -> str:
        path = shutil.which(self.ipset) if not os.path.isabs(self.ipset) else self.ipset
        if path is None or not os.path.exists(path):
            raise IpsetError(f"ipset not found ({self.ipset!r} is not on PATH): install the "
                             "Debian package `ipset`", "missing")
        return path

    async def run(self, script: str) -> str:
        argv = [self.binary(), "restore"]
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(script.encode()),
                                              self.run_timeout)
        except TimeoutError as exc:
            proc.kill()
            await proc.wait()
            raise IpsetError(f"ipset did not finish within {self.run_timeout}s") from exc
        if proc.returncode != 0:
            text = err.decode(errors="replace").strip()[:2000]
            low = text.lower()
            if "operation not permitted" in low or "permission denied" in low:
                raise IpsetError(f"ipset refused: {text}. {CAP_HINT.replace('nft', 'ipset', 1)}",
                                 "permission")
            if ("kernel" in low and "module" in low) or "protocol not supported" in low:
                raise IpsetError(f"ipset: {text} (is the ip_set kernel module loaded?)",
                                 "missing")
            raise IpsetError(f"ipset restore failed (exit {proc.returncode}): {text}")
        return out.decode(errors="replace")

    async def list_sets(self) -> str:
        proc = await asyncio.create_subprocess_exec(
            self.binary(), "list", "-name", stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise IpsetError(f"ipset list failed: {err.decode(errors='replace').strip()}")
        return out.decode()

    async def check(self) -> None:
        await self.list_sets()

    async def delete_sets(self) -> None:
        await self.run(f"destroy {self.set_name}4\ndestroy {self.set_name}6\n")
