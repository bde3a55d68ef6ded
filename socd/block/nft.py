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

Elements are parsed objects (:mod:`socd.block.elements`): a value that is not a
canonical address or network is refused on its own before any text is written.
When nft still rejects a batch (the table and the privilege are fine, so an
element is at fault), :meth:`NftBackend.execute` finds the elements it rejects by
bisection with ``nft -c`` (check only, nothing applied), refuses those alone and
applies the rest in one transaction: one bad element never fails a batch.

Where nft runs: with ``helper_socket`` set the batch goes to the privileged helper
(:mod:`socd.block.helper`, the only process with CAP_NET_ADMIN), which screens it
again and runs :meth:`NftBackend.execute` itself; without it socd runs nft directly
(root in a network namespace: tests, development).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from socd.block.decisions import Change, Decision, flatten
from socd.block.elements import (
    MAX_TIMEOUT_SECS,
    Batch,
    Element,
    Outcome,
    Refusal,
    changes_batch,
    from_value,
    timeout_secs,
)
from socd.block.protocol import HelperDispatch
from socd.netaddr import AddressError

CHUNK = 5000  # elements per `add element` statement (all in one transaction)
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")
CAP_HINT = ("nft needs the CAP_NET_ADMIN capability. socd.service never holds it; the "
            "privileged helper socd-blocker.service does: systemctl enable --now "
            "socd-blocker.socket and set `helper_socket: /run/socd-blocker.sock` in the blocker "
            "sink (docs/blocking.md). Without the helper only root may push (tests, a network "
            "namespace)")
#: Error kinds no element can cause: the batch is not split, the error is raised.
FATAL = frozenset({"missing", "permission", "timeout"})


class NftError(Exception):
    """An nft run failed. ``kind``: ``missing`` (no nft binary), ``permission`` (no
    CAP_NET_ADMIN), ``conflict`` (an element overlaps or is absent, or the table is
    gone: a full resync fixes it), ``timeout`` (nft did not finish), ``syntax`` (nft
    rejected the text), ``transient`` (anything else; retry)."""

    def __init__(self, message: str, kind: str = "transient") -> None:
        self.kind = kind
        super().__init__(message)

    @property
    def retryable(self) -> bool:
        return self.kind in ("transient", "conflict", "timeout")


@dataclass(frozen=True, slots=True)
class NftBackend(HelperDispatch):
    table: str = "socd"
    family: Literal["inet"] = "inet"
    priority: int = -10
    direction: Literal["both", "inbound"] = "both"
    nft: str = "nft"
    run_timeout: float = 60.0
    #: The privileged helper's socket; None: run nft in this process.
    helper_socket: str | None = None
    error: ClassVar[type[Exception]] = NftError

    def __post_init__(self) -> None:
        if not _NAME.match(self.table):
            raise ValueError(f"invalid nftables table name {self.table!r}")

    @property
    def name(self) -> str:
        return "nftables"

    @property
    def target(self) -> dict[str, Any]:
        """What the helper is asked to change (it checks the table is socd's own)."""
        return {"backend": "nftables", "table": self.table, "priority": self.priority,
                "direction": self.direction}

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

    def full_batch(self, decisions: Iterable[Decision], now: float) -> Batch:
        """Every active decision as disjoint elements (values that are not a canonical
        address or network are refused, not written)."""
        entries = [(d.value, d.expires) for d in decisions
                   if d.kind in ("ipv4", "ipv6") and d.expires > now]
        refused: list[Refusal] = []
        try:
            # flatten() parses every value with the address gate: one parse per value
            # when the store is clean, as it is once bad rows are removed at open.
            flat = flatten(entries)
        except AddressError:
            good: list[tuple[str, float]] = []
            for value, expires in entries:
                found = from_value(value)
                if isinstance(found, Refusal):
                    refused.append(found)
                else:
                    good.append((found.text, expires))
            flat = flatten(good)
        add = tuple(Element(net, timeout_secs(expires, now, MAX_TIMEOUT_SECS))
                    for net, expires in flat)
        return Batch(True, add, (), tuple(refused))

    def incremental_batch(self, changes: Sequence[Change], now: float) -> Batch:
        """Adds, extensions (delete + add, so the timeout is exact on every kernel)
        and removals. The caller makes sure nothing overlaps."""
        return changes_batch(changes, now, MAX_TIMEOUT_SECS, readd_extended=True)

    def render(self, batch: Batch) -> str:
        """The nft script of ``batch``: built from the parsed elements only, each
        checked against the strict element character set."""
        lines: list[str] = []
        if batch.full:
            lines += [f"add table {self._ref()}", f"delete table {self._ref()}",
                      self.definition().rstrip("\n")]
        deletes: dict[str, list[str]] = {"blocked4": [], "blocked6": []}
        adds: dict[str, list[str]] = {"blocked4": [], "blocked6": []}
        for elem in batch.remove:
            deletes[f"blocked{elem.family}"].append(elem.text)
        for elem in batch.add:
            adds[f"blocked{elem.family}"].append(
                f"{elem.text} timeout {min(elem.timeout_secs, MAX_TIMEOUT_SECS)}s")
        for set_name, items in deletes.items():
            lines += self._elements("delete", set_name, items)
        for set_name, items in adds.items():
            lines += self._elements("add", set_name, items)
        return "\n".join(lines) + "\n" if lines else ""

    def full_script(self, decisions: Iterable[Decision], now: float) -> str:
        """One transaction that rebuilds the table and fills both sets: delete it (if
        present), recreate it (a changed priority or direction applies too; rules
        are never duplicated), add every active decision. Being one transaction,
        there is no moment without the blocks."""
        return self.render(self.full_batch(decisions, now))

    def incremental_script(self, changes: Sequence[Change], now: float) -> str:
        """Adds, extensions and removals in one transaction. A conflict (an element
        the kernel already dropped) fails the whole transaction and the caller falls
        back to :meth:`full_script`."""
        return self.render(self.incremental_batch(changes, now))

    # ------------------------------------------------------------ applying ----
    async def execute(self, batch: Batch) -> Outcome:
        """Apply ``batch`` here, in one transaction when nft accepts it whole.

        When nft rejects it for a reason an element can cause, the elements nft
        rejects on their own are found by bisection with ``nft -c`` and refused; the
        rest is applied in one transaction. A conflict of an incremental batch is
        raised instead: the caller's full sync repairs the sets.
        """
        script = self.render(batch)
        try:
            if script:
                await self.run(script)
        except NftError as exc:
            if exc.kind in FATAL or (exc.kind == "conflict" and not batch.full):
                raise
            error = exc
        else:
            return Outcome(len(batch), list(batch.refused))
        bad = await self._isolate(batch)
        if not bad or (len(bad) == len(batch) > 1):
            raise error  # no element is at fault on its own: the table, nft, the kernel
        rest = batch.without(bad)
        await self.run(self.render(rest))
        return Outcome(len(rest), [*batch.refused,
                                   *(Refusal.of(e.text, "firewall") for e in bad)])

    async def _isolate(self, batch: Batch) -> list[Element]:
        """The elements of ``batch`` that nft rejects on their own (``nft -c``)."""
        items = [(False, e) for e in batch.remove] + [(True, e) for e in batch.add]
        bad: list[Element] = []

        async def probe(part: list[tuple[bool, Element]]) -> None:
            sub = Batch(batch.full, tuple(e for is_add, e in part if is_add),
                        tuple(e for is_add, e in part if not is_add))
            try:
                await self.run(self.render(sub), check_only=True)
            except NftError as exc:
                if exc.kind in FATAL:
                    raise
            else:
                return
            if len(part) == 1:
                bad.append(part[0][1])
                return
            middle = len(part) // 2
            await probe(part[:middle])
            await probe(part[middle:])

        if items:
            await probe(items)
        return bad

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
            out, err = await communicate(proc, script.encode(), self.run_timeout)
        except TimeoutError as exc:
            raise NftError(f"nft did not finish within {self.run_timeout}s", "timeout") from exc
        if proc.returncode != 0:
            raise classify_error(err.decode(errors="replace"), proc.returncode)
        return out.decode(errors="replace")

    async def list_table(self) -> str:
        return await self.run(f"list table {self._ref()}\n")

    async def delete_table(self) -> None:
        await self.run(f"add table {self._ref()}\ndelete table {self._ref()}\n")

    async def check_here(self) -> None:
        """The health check in this process.

        ``nft -c`` (check only) of the table definition validates the syntax but
        not the privilege, so listing the ruleset proves the netlink access.
        """
        await self.run(self.definition(), check_only=True)
        await self.run("list tables\n")


async def communicate(proc: asyncio.subprocess.Process, script: bytes,
                      limit_secs: float) -> tuple[bytes, bytes]:
    """Feed ``script`` to a firewall command (nft or ipset) and read its output.

    Past ``limit_secs`` the command is killed and reaped, so no zombie is left
    behind, and TimeoutError is raised."""
    try:
        return await asyncio.wait_for(proc.communicate(script), limit_secs)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise


def classify_error(stderr: str, returncode: int | None) -> NftError:
    text = stderr.strip()
    short = text if len(text) < 2000 else text[:2000] + " ..."
    low = text.lower()
    if "operation not permitted" in low or "permission denied" in low:
        return NftError(f"nft refused: {short}. {CAP_HINT}", "permission")
    if "interval overlaps" in low or "element does not exist" in low or "file exists" in low \
            or "conflicting intervals" in low or "no such file or directory" in low:
        return NftError(f"nft set conflict: {short}", "conflict")
    if "syntax error" in low:
        return NftError(f"nft rejected the script (a socd bug): {short}", "syntax")
    return NftError(f"nft failed (exit {returncode}): {short}")
