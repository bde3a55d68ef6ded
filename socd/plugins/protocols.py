"""The plugin roles: one small typed Protocol per kind.

Ownership rules, so every plugin behaves the same:

* The **pipeline** owns all queues. A collector never sees a queue; it calls
  the ``emit`` coroutine it is given, which blocks while the pipeline is full
  (that wait is the back-pressure a collector passes on to its source).
* ``Collector.run`` runs until it is cancelled (live sources) or until its input
  is exhausted (one-shot sources). Cancellation is how the daemon stops intake;
  ``run`` must let ``CancelledError`` propagate after closing its resources.
* A **decoder** is synchronous and pure: bytes in, events and failures out. It
  never raises for bad input; it reports a :class:`DecodeFailure` instead.
* A **sink** stores batches. ``write`` returns only when the batch is stored
  durably; it raises :class:`~socd.errors.SinkError` otherwise and the pipeline
  retries it. Per-document rejections are the sink's to dead-letter.

Optional abilities are **capabilities**: each is one small ``runtime_checkable``
Protocol below the role it extends (:class:`ZoneAware` and :class:`LineDecoder` for
decoders, :class:`AllowlistAware` for sinks, :class:`IocAware` for collectors). A plugin
has one by implementing its method (and naming the capability in that method's
docstring); the daemon asks ``isinstance(plugin, Capability)``, never ``hasattr``.
A new optional ability is a new capability Protocol here, checked the same way.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from socd.event import Event

if TYPE_CHECKING:
    from socd.zones import SenderZones


@dataclass(slots=True)
class RawRecord:
    """One unit of input as a collector received it, before decoding.

    ``authenticated`` and ``blocking_allowed`` are its provenance, which decoders stamp
    into ``socd.transport`` (never taken from the input; docs/threat-model.md). A
    collector whose transport cannot prove who sent a record (UDP syslog, TCP/TLS
    syslog without client certificates or ``allowed_senders``) sets ``authenticated``
    to False; block decisions caused by such a record are then refused unless the
    operator opted in for that collector (``blocking_allowed``). Token, broker-login and
    local-file sources keep the default.
    """

    data: bytes
    decoder: str
    collector: str
    source: str = ""
    received: float = field(default_factory=time.time)
    authenticated: bool = True
    blocking_allowed: bool = False


@dataclass(slots=True)
class DecodeFailure:
    """A record (or part of one) that could not be decoded."""

    reason: str
    raw: bytes
    detail: str = ""


@dataclass(slots=True)
class DecodeResult:
    events: list[Event] = field(default_factory=list)
    failures: list[DecodeFailure] = field(default_factory=list)


class Ack:
    """Calls ``callback`` once every sink has stored the batch it belongs to.

    Collectors that can confirm delivery upstream (file offsets, MQTT acks)
    pass a callback; the pipeline sets ``pending`` to the number of sinks.
    """

    __slots__ = ("_callback", "pending")

    def __init__(self, callback: Callable[[], None] | None = None) -> None:
        self._callback = callback
        self.pending = 0

    def done(self) -> None:
        self.pending -= 1
        if self.pending <= 0 and self._callback is not None:
            callback, self._callback = self._callback, None
            callback()


Emit = Callable[[list[RawRecord], Ack | None], Awaitable[None]]


@runtime_checkable
class DurableIntake(Protocol):
    """What stands behind the daemon's ``emit`` (the pipeline): a collector that
    answers its source itself (an HTTP status, a file offset) asks it whether a batch
    is on disk when ``emit`` returns, or queues a batch only when there is room."""

    @property
    def durable(self) -> bool:
        """Whether ``emit`` returns only once the batch is in the intake journal."""
        ...

    def try_submit_durable(self, records: list[RawRecord],
                           ack: Ack | None = None) -> Awaitable[None] | None:
        """None when there is no room now; else an awaitable done once the batch is on
        disk (raising :class:`socd.errors.JournalError` if the journal closes first)."""
        ...


def intake_of(emit: Emit) -> DurableIntake | None:
    """The intake behind a collector's ``emit`` (the daemon passes a bound method of
    its pipeline); None for a plain coroutine (tests, benchmarks)."""
    owner = getattr(emit, "__self__", None)
    return owner if isinstance(owner, DurableIntake) else None


def durable_emit(emit: Emit) -> bool:
    """Whether ``emit`` returns only once the batch is in the intake journal, so a
    collector may acknowledge its source when it returns instead of waiting for the
    sinks (:class:`Ack`)."""
    intake = intake_of(emit)
    return intake is not None and intake.durable


@runtime_checkable
class Collector(Protocol):
    """Receives records from one source and hands them to ``emit`` in batches."""

    name: str

    async def run(self, emit: Emit) -> None:
        """Collect until cancelled, or until a one-shot input is exhausted."""
        ...

    @property
    def ready(self) -> bool:
        """True once connected/listening; feeds ``/readyz``."""
        ...


IpLookup = Callable[[str], str | None]


@runtime_checkable
class IocAware(Protocol):
    """A collector that checks addresses on IoC lists itself (the network sensor), and
    so can be given the daemon's IoC store, at start and after each reload."""

    def use_ioc_lookup(self, lookup: IpLookup) -> None:
        """Use ``lookup`` (an address to its IoC reference, or None) from the next
        record on, unless the collector has IoC lists of its own."""
        ...


@runtime_checkable
class Decoder(Protocol):
    """Turns the bytes of one record into zero or more normalized events."""

    name: str

    def decode(self, record: RawRecord) -> DecodeResult:
        """Decode ``record``; bad input becomes failures, never an exception."""
        ...


@runtime_checkable
class LineDecoder(Protocol):
    """A decoder that decodes the lines of one source in one call (``socd replay``):
    what one :meth:`Decoder.decode` a line would give, without a record, a result and a
    call per line."""

    def decode_lines(self, lines: Sequence[bytes], collector: str, source: str,
                     received: float) -> tuple[list[Event], list[DecodeFailure]]:
        """The events and failures of ``decode(RawRecord(line, <name>, collector, source,
        received))`` for each line in turn (records with the default provenance:
        authenticated, blocking not allowed), each list in the order of the lines."""
        ...


@runtime_checkable
class ZoneAware(Protocol):
    """A decoder that reads timestamps written without a zone (RFC 3164 syslog, CEF),
    and so can be told the zone of each collector's senders (the collectors'
    ``timezone`` and ``sender_timezones``; see :mod:`socd.zones`)."""

    def assume_zones(self, zones: Mapping[str, SenderZones]) -> None:
        """Read the records of each named collector in its zones from now on."""
        ...


@runtime_checkable
class Sink(Protocol):
    """Stores events (Elasticsearch, SQLite, a file...)."""

    name: str

    async def start(self) -> None:
        """Open connections, install templates/schemas."""
        ...

    async def healthcheck(self) -> None:
        """Raise :class:`~socd.errors.HealthCheckError` when the target is unusable."""
        ...

    async def write(self, events: Sequence[Event]) -> None:
        """Store ``events`` durably or raise :class:`~socd.errors.SinkError`."""
        ...

    async def close(self) -> None:
        """Flush and release resources; called once, after the last write."""
        ...


class OwnInfrastructure(Protocol):
    """The operator's own networks and hosts, never to be acted against
    (:class:`socd.ioc.allowlist.Allowlist`)."""

    def is_allowed(self, ip_or_host: str) -> bool:
        """True for an own address or host name."""
        ...

    def covers(self, cidr: str) -> bool:
        """True when the address or network overlaps an own network."""
        ...


@runtime_checkable
class AllowlistAware(Protocol):
    """A sink that acts on addresses (the blocker) and must honour the top-level
    ``allowlist:``; the daemon gives it before ``start``."""

    def use_allowlist(self, allowlist: OwnInfrastructure) -> None:
        """Apply ``allowlist`` on top of the sink's own protections."""
        ...


@dataclass(slots=True)
class Notification:
    """One message for one notifier: a single alert, or a digest of similar ones.

    The notification core renders ``title``/``text``/``html`` from templates
    before a notifier sees it; a notifier only shapes them into its channel's
    payload (an e-mail, a chat message, Alertmanager alerts...).
    """

    id: str  # stable across retries: receivers may use it to drop duplicates
    route: str  # the routing rule that selected it
    group_key: str  # what the grouped alerts have in common, e.g. "rule.id=R1,socd.unit=X"
    severity: str  # highest SOC severity label among the alerts ("nghiêm trọng"...)
    title: str  # one line, rendered
    text: str  # plain text, rendered (Vietnamese by default); notifiers escape it
    html: str | None = None  # HTML body for e-mail, rendered
    alerts: list[Event] = field(default_factory=list)  # at most digest_max_alerts
    total: int = 0  # alerts this message stands for (>= len(alerts))
    created: float = field(default_factory=time.time)
    # (file name, MIME type, content): files for channels that carry them (e-mail);
    # reports use it, alert notifications never do.
    attachments: list[tuple[str, str, bytes]] = field(default_factory=list)


@runtime_checkable
class Notifier(Protocol):
    """Delivers notifications to one channel (e-mail, chat, webhook, MQTT...).

    ``send`` returns once the receiver accepted the message; it raises
    :class:`~socd.errors.NotifyError` otherwise (``retryable`` decides whether the
    send queue tries again). Rate limits, retries and grouping are the core's job.
    """

    name: str

    async def start(self) -> None:
        """Open long-lived connections (MQTT); most notifiers have nothing to do."""
        ...

    async def healthcheck(self) -> None:
        """Raise :class:`~socd.errors.HealthCheckError` when the channel is unusable
        (``socd check-config --connect``); must not send a message."""
        ...

    async def send(self, notification: Notification) -> None:
        """Deliver one notification or raise :class:`~socd.errors.NotifyError`."""
        ...

    async def close(self) -> None: ...
