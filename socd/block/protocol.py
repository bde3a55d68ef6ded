"""The wire format between socd and its privileged firewall helper, and the client.

One request per connection, over a Unix stream socket: the client writes one JSON
object on one line, the helper answers one JSON object on one line and closes.
The format is fixed and small; nothing in it is firewall syntax::

    {"v": 1, "op": "sync", "backend": "nftables", "table": "socd",
     "priority": -10, "direction": "both",
     "add": [{"value": "198.51.100.7", "timeout_secs": 3600}]}
    {"v": 1, "op": "apply", "backend": "ipset", "set_name": "socd",
     "add": [{"value": "2001:db8::/32", "timeout_secs": 600}], "remove": ["198.51.100.7"]}
    {"v": 1, "op": "check", "backend": "nftables", "table": "socd"}

``sync`` replaces the whole table (or both sets) with ``add``; ``apply`` removes and
adds in one transaction; ``check`` proves the helper may change the firewall.
Answers: ``{"v": 1, "ok": true, "applied": 2, "refused": [{"value", "reason"}],
"refused_count": 0}`` or ``{"v": 1, "ok": false, "kind": KIND, "error": TEXT}`` where
``kind`` is ``protocol`` (the request broke this format; the connection is closed),
``denied`` (the peer's uid/gid is not allowed), ``busy``, or a firewall error kind
(``missing``, ``permission``, ``conflict``, ``timeout``, ``syntax``, ``transient``).

The envelope is validated strictly (unknown keys, wrong types, unknown operations
or backends are protocol errors); the elements one by one
(:func:`socd.block.elements.parse_add`), so a bad element is refused alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from socd.block.elements import (
    MAX_ELEMENTS,
    Batch,
    Element,
    Outcome,
    Refusal,
    parse_add,
    parse_remove,
    report,
    without_overlaps,
)

if TYPE_CHECKING:
    from socd.block.decisions import Change, Decision

VERSION: Final = 1
#: Where the shipped units put the helper's socket (socd-blocker.socket).
DEFAULT_SOCKET: Final = "/run/socd-blocker.sock"
#: Largest request line: a full sync of a million elements fits.
MAX_REQUEST_BYTES: Final = 64 * 1024 * 1024
NFT_TABLE: Final = r"^[A-Za-z][A-Za-z0-9_]{0,31}$"
IPSET_NAME: Final = r"^[A-Za-z][A-Za-z0-9_]{0,20}$"


class ProtocolError(Exception):
    """A request that breaks the wire format (answered with kind ``protocol``)."""


class HelperError(Exception):
    """The helper could not be reached, or answered with an error; ``kind`` as above."""

    def __init__(self, message: str, kind: str = "transient") -> None:
        self.kind = kind
        super().__init__(message)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    v: int = Field(ge=VERSION, le=VERSION)  # strict: `true` is not 1
    op: Literal["check", "sync", "apply"]
    # Elements are screened one by one afterwards, so a bad one is refused alone.
    add: list[Any] = Field(default_factory=list, max_length=MAX_ELEMENTS)
    remove: list[Any] = Field(default_factory=list, max_length=MAX_ELEMENTS)

    @model_validator(mode="after")
    def _shape(self) -> _Strict:
        if self.op == "sync" and self.remove:
            raise ValueError("a sync replaces everything: it takes no `remove`")
        if self.op == "check" and (self.add or self.remove):
            raise ValueError("a check takes no elements")
        return self


class NftRequest(_Strict):
    """A request for the nftables backend (``table inet <table>``)."""

    backend: Literal["nftables"]
    table: str = Field(pattern=NFT_TABLE)
    priority: int = Field(-10, ge=-1000, le=1000)
    direction: Literal["both", "inbound"] = "both"


class IpsetRequest(_Strict):
    """A request for the ipset backend (sets ``<set_name>4`` and ``<set_name>6``)."""

    backend: Literal["ipset"]
    set_name: str = Field(pattern=IPSET_NAME)


Request = NftRequest | IpsetRequest
_REQUEST: TypeAdapter[Request] = TypeAdapter(
    Annotated[NftRequest | IpsetRequest, Field(discriminator="backend")])


def _problems(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_input=False)[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "request"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def decode_request(line: bytes) -> tuple[Request, Batch]:
    """The request on ``line`` and its batch, every element screened; ProtocolError
    when the envelope is not exactly this format."""
    try:
        document = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        raise ProtocolError("the request is not UTF-8") from None
    except RecursionError:
        raise ProtocolError("the request is nested too deeply") from None
    except ValueError as exc:
        raise ProtocolError(f"the request is not JSON ({exc.__class__.__name__})") from None
    if not isinstance(document, dict):
        raise ProtocolError("the request is not a JSON object")
    try:
        request = _REQUEST.validate_python(document)
    except ValidationError as exc:
        raise ProtocolError(_problems(exc)) from None
    except RecursionError:
        raise ProtocolError("the request is nested too deeply") from None
    return request, screen(request)


def screen(request: Request) -> Batch:
    """The request's elements as parsed objects, and what was refused (input order)."""
    refused: list[Refusal] = []
    add: list[Element] = []
    remove: list[Element] = []
    for items, parse, into in ((request.add, parse_add, add),
                               (request.remove, parse_remove, remove)):
        for item in items:
            found = parse(item)
            if isinstance(found, Refusal):
                refused.append(found)
            else:
                into.append(found)
    if request.backend == "nftables":
        # An interval set cannot hold overlapping elements, and a transaction that
        # deletes one element twice fails as a whole.
        add, overlap_add = without_overlaps(add)
        remove, overlap_remove = without_overlaps(remove)
        refused += overlap_add + overlap_remove
    return Batch(request.op == "sync", tuple(add), tuple(remove), tuple(refused))


def encode_request(op: str, target: dict[str, Any], batch: Batch | None = None) -> bytes:
    """One request line for ``batch`` (the client side; values are already canonical)."""
    message: dict[str, Any] = {"v": VERSION, "op": op, **target}
    if batch is not None:
        message["add"] = [{"value": e.text, "timeout_secs": e.timeout_secs} for e in batch.add]
        if batch.remove:
            message["remove"] = [e.text for e in batch.remove]
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def ok_response(outcome: Outcome) -> dict[str, Any]:
    return {"v": VERSION, "ok": True, "applied": outcome.applied,
            "refused": [{"value": r.value, "reason": r.reason} for r in outcome.refused],
            "refused_count": len(outcome.refused)}


def error_response(kind: str, message: str) -> dict[str, Any]:
    return {"v": VERSION, "ok": False, "kind": kind, "error": message}


def encode_response(response: dict[str, Any]) -> bytes:
    return json.dumps(response, separators=(",", ":")).encode() + b"\n"


def decode_response(line: bytes) -> Outcome:
    """The outcome an answer reports; HelperError for an error answer or garbage."""
    try:
        answer = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise HelperError(f"the blocker helper answered garbage: {line[:200]!r}") from None
    if not isinstance(answer, dict) or answer.get("v") != VERSION:
        raise HelperError(f"the blocker helper answered in another format: {line[:200]!r}")
    if answer.get("ok") is not True:
        kind = str(answer.get("kind") or "transient")
        raise HelperError(f"the blocker helper refused: {answer.get('error')}", kind)
    refused = answer.get("refused") or []
    return Outcome(int(answer.get("applied") or 0),
                   [Refusal(str(r.get("value", ""))[:80], str(r.get("reason", "")))
                    for r in refused if isinstance(r, dict)])


class HelperClient:
    """Sends one request to the helper's socket per call (socd's side)."""

    def __init__(self, path: str, timeout: float = 300.0) -> None:
        self.path = path
        self.timeout = timeout

    async def call(self, data: bytes) -> Outcome:
        """Send one request line, return the answer's outcome; HelperError otherwise.

        The timeout covers the whole exchange: a sync of many elements, with the
        helper's per-element fallback, may take a while.
        """
        try:
            return await asyncio.wait_for(self._exchange(data), self.timeout)
        except TimeoutError:
            raise HelperError(f"the blocker helper at {self.path} did not answer within "
                              f"{self.timeout:g}s", "timeout") from None

    async def _exchange(self, data: bytes) -> Outcome:
        try:
            reader, writer = await asyncio.open_unix_connection(
                self.path, limit=2 * MAX_REQUEST_BYTES)
        except PermissionError as exc:
            raise HelperError(
                f"may not connect to the blocker helper at {self.path} ({exc.strerror}): the "
                "socket is for root and the group socd", "permission") from None
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise HelperError(
                f"the blocker helper is not listening at {self.path} ({exc.strerror}): "
                "systemctl enable --now socd-blocker.socket", "transient") from None
        except OSError as exc:
            raise HelperError(f"cannot reach the blocker helper at {self.path}: {exc}",
                              "transient") from None
        try:
            writer.write(data)
            await writer.drain()
            line = await reader.readline()
        except (OSError, ValueError) as exc:
            raise HelperError(f"the blocker helper at {self.path} dropped the request: {exc}",
                              "transient") from None
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        if not line:
            raise HelperError(f"the blocker helper at {self.path} closed without an answer",
                              "transient")
        return decode_response(line)


def refusals_text(refused: Sequence[Refusal], limit: int = 20) -> list[str]:
    """``value (reason)`` for logs, at most ``limit`` of them."""
    return [f"{r.value!r} ({r.reason})" for r in refused[:limit]]


class HelperDispatch:
    """What the nftables and ipset backends share: build a batch, then apply it in
    this process (:meth:`execute`) or send it to the privileged helper.

    Subclasses (frozen dataclasses) provide ``name``, ``target``, ``helper_socket``,
    ``full_batch``, ``incremental_batch``, ``execute`` and ``error`` (the exception a
    helper failure becomes, with the helper's kind)."""

    __slots__ = ()
    error: ClassVar[type[Exception]]
    helper_socket: str | None

    @property
    def name(self) -> str:
        """The backend's name in logs and metrics."""
        raise NotImplementedError

    @property
    def target(self) -> dict[str, Any]:
        """What the helper is asked to change (it checks it is socd's own)."""
        raise NotImplementedError

    def full_batch(self, decisions: Iterable[Decision], now: float) -> Batch:
        raise NotImplementedError

    def incremental_batch(self, changes: Sequence[Change], now: float) -> Batch:
        raise NotImplementedError

    async def execute(self, batch: Batch) -> Outcome:
        raise NotImplementedError

    async def check_here(self) -> None:
        raise NotImplementedError

    async def check(self) -> None:
        """Fails when the firewall tool is missing or may not change socd's table or
        sets (health check); with a helper, when the helper cannot (or cannot be
        reached)."""
        if self.helper_socket is None:
            await self.check_here()
            return
        try:
            await HelperClient(self.helper_socket).call(encode_request("check", self.target))
        except HelperError as exc:
            raise self.error(str(exc), exc.kind) from exc

    async def sync(self, decisions: Iterable[Decision], now: float) -> Outcome:
        """Replace socd's table or sets with ``decisions`` (start-up, resync)."""
        return await self._dispatch("sync", self.full_batch(decisions, now))

    async def apply(self, changes: Sequence[Change], now: float) -> Outcome:
        """Apply ``changes``; an error of kind ``conflict`` asks the caller for a sync."""
        batch = self.incremental_batch(changes, now)
        if not len(batch):
            return report(Outcome(0, list(batch.refused)), self.name)
        return await self._dispatch("apply", batch)

    async def _dispatch(self, op: str, batch: Batch) -> Outcome:
        """Apply ``batch`` here or through the helper; refusals are counted and logged."""
        if self.helper_socket is None:
            return report(await self.execute(batch), self.name)
        try:
            outcome = await HelperClient(self.helper_socket).call(
                encode_request(op, self.target, batch))
        except HelperError as exc:
            raise self.error(str(exc), exc.kind) from exc
        outcome.refused[:0] = batch.refused
        return report(outcome, self.name)
