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

Lines are built from parsed elements (:mod:`socd.block.elements`) only. ``ipset
restore`` applies line by line and stops at the first line it rejects ("Error in
line N"), so when a set element is at fault :meth:`IpsetBackend.execute` refuses
that element alone and goes on from the next line: one bad element never fails a
batch. As with nftables, ``helper_socket`` sends the batch to the privileged helper.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from socd.block.decisions import Change, Decision
from socd.block.elements import (
    Batch,
    Element,
    Outcome,
    Refusal,
    changes_batch,
    from_value,
    timeout_secs,
)
from socd.block.nft import CAP_HINT, NftError, communicate
from socd.block.protocol import HelperDispatch

MAX_TIMEOUT = 2147483
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,20}$")
_ERROR_LINE = re.compile(r"Error in line (\d+):")


class IpsetError(NftError):
    """An ipset run failed (same kinds as :class:`NftError`)."""


@dataclass(frozen=True, slots=True)
class IpsetBackend(HelperDispatch):
    set_name: str = "socd"
    ipset: str = "ipset"
    maxelem: int = 1_048_576
    run_timeout: float = 60.0
    #: The privileged helper's socket; None: run ipset in this process.
    helper_socket: str | None = None
    error: ClassVar[type[Exception]] = IpsetError

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

    def full_batch(self, decisions: Iterable[Decision], now: float) -> Batch:
        """Every active decision (hash:net takes overlapping networks as they are)."""
        add: list[Element] = []
        refused: list[Refusal] = []
        for d in decisions:
            if d.kind not in ("ipv4", "ipv6") or d.expires <= now:
                continue
            found = from_value(d.value, timeout_secs(d.expires, now, MAX_TIMEOUT))
            if isinstance(found, Refusal):
                refused.append(found)
            else:
                add.append(found)
        return Batch(True, tuple(add), (), tuple(refused))

    def incremental_batch(self, changes: Sequence[Change], now: float) -> Batch:
        # -exist on add replaces the element's timeout: an extension is one add.
        return changes_batch(changes, now, MAX_TIMEOUT, readd_extended=False)

    def lines(self, batch: Batch) -> list[tuple[str, Element | None]]:
        """The ``ipset restore`` lines of ``batch``, each with the element it writes."""
        out: list[tuple[str, Element | None]] = []
        live = {4: f"{self.set_name}4", 6: f"{self.set_name}6"}
        if batch.full:
            for fam, family in ((4, "inet"), (6, "inet6")):
                new = f"{live[fam]}-new"
                out += [(self._create(live[fam], family), None),
                        (self._create(new, family), None), (f"flush {new}", None)]
        for elem in batch.remove:
            out.append((f"del {live[elem.family]} {elem.text} -exist", elem))
        for elem in batch.add:
            name = f"{live[elem.family]}-new" if batch.full else live[elem.family]
            timeout = min(MAX_TIMEOUT, elem.timeout_secs)
            out.append((f"add {name} {elem.text} timeout {timeout} -exist", elem))
        if batch.full:
            for fam in (4, 6):
                out += [(f"swap {live[fam]}-new {live[fam]}", None),
                        (f"destroy {live[fam]}-new", None)]
        return out

    def render(self, batch: Batch) -> str:
        lines = [line for line, _ in self.lines(batch)]
        return "\n".join(lines) + "\n" if lines else ""

    def full_script(self, decisions: Iterable[Decision], now: float) -> str:
        return self.render(self.full_batch(decisions, now))

    def incremental_script(self, changes: Sequence[Change], now: float) -> str:
        return self.render(self.incremental_batch(changes, now))

    @property
    def target(self) -> dict[str, Any]:
        """What the helper is asked to change (it checks the set name is socd's own)."""
        return {"backend": "ipset", "set_name": self.set_name}

    async def execute(self, batch: Batch) -> Outcome:
        """Apply ``batch`` here. ``ipset restore`` stops at the first line it rejects:
        when that line writes an element, the element is refused and the run goes on
        from the next line; any other failing line fails the batch."""
        pending = self.lines(batch)
        refused = list(batch.refused)
        while pending:
            try:
                await self.run("\n".join(line for line, _ in pending) + "\n")
                break
            except IpsetError as exc:
                number = _failed_line(str(exc))
                if exc.kind in ("missing", "permission", "timeout") or number is None \
                        or not 1 <= number <= len(pending) or pending[number - 1][1] is None:
                    raise
                bad = pending[number - 1][1]
                assert bad is not None
                refused.append(Refusal.of(bad.text, "firewall"))
                pending = pending[number:]
        return Outcome(len(batch) - (len(refused) - len(batch.refused)), refused)

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
            out, err = await communicate(proc, script.encode(), self.run_timeout)
        except TimeoutError as exc:
            raise IpsetError(f"ipset did not finish within {self.run_timeout}s",
                             "timeout") from exc
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

    async def check_here(self) -> None:
        await self.list_sets()

    async def delete_sets(self) -> None:
        await self.run(f"destroy {self.set_name}4\ndestroy {self.set_name}6\n")


def _failed_line(stderr: str) -> int | None:
    """N of ipset's "Error in line N:", or None."""
    match = _ERROR_LINE.search(stderr)
    return int(match.group(1)) if match else None
