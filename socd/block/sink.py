"""The ``blocker`` sink: alerts in, block decisions out (nftables, ipset, EDL feeds).

Alerts carry block requests in ``socd.actions.block`` (``[{value, ttl_secs,
reason}]``, set only by the rules engine for rules with a ``block`` action; the
origin of the decision is the rule id)
and, with ``block_ioc_hits: true``, the addresses/domains an IoC list matched
(``socd.ioc.values``) are blocked too - the remote indicator, never this host
or the event's own host. Each ``write`` is one SQLite transaction (decisions +
audit) and then one backend transaction; when the backend fails the batch is
retried (``SinkError(retryable=True)``) and the next push is a full resync.
A request caused by an event from an unauthenticated transport (UDP syslog...) is
audited as refused with the reason ``unauthenticated_source`` unless the collector
opted in (``allow_unauthenticated_blocking``); see docs/blocking.md.
In ``dry_run`` decisions are recorded and audited as dry-run only: nothing is pushed,
the EDL feeds leave them out (unless ``edl.include_dry_run``) and they are counted in
``socd_blocks_dry_run``, never in ``socd_blocks_active``.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import time
from collections.abc import Sequence
from typing import Annotated, Literal

import structlog
from prometheus_client import Counter, Gauge
from pydantic import BeforeValidator, Field, SecretStr, field_validator

from socd import metrics
from socd.block.decisions import (
    ACTIONS,
    KINDS,
    BlockStore,
    Change,
    Guard,
    OverlapIndex,
    Policy,
    Request,
    network,
    normalise,
    parse_duration,
)
from socd.block.feeds import EdlServer
from socd.block.ipset import IpsetBackend
from socd.block.nft import NftBackend, NftError
from socd.config import HttpLimits, SinkConfig, StrictModel, resolve_path
from socd.errors import HealthCheckError, SinkError
from socd.event import Event, get
from socd.plugins import OwnInfrastructure, PluginContext
from socd.tasks import stop_task

log = structlog.get_logger("socd.block")

Duration = Annotated[float, BeforeValidator(parse_duration)]

BLOCKS_ACTIVE = Gauge("socd_blocks_active", "Enforced active block decisions by blocker "
                      "sink and family (ipv4, ipv6, domain); dry-run decisions are "
                      "socd_blocks_dry_run.", ["sink", "family"], registry=metrics.REGISTRY)
BLOCKS_DRY_RUN = Gauge("socd_blocks_dry_run", "Active dry-run block decisions (recorded "
                       "only: not enforced, not in the feeds) by blocker sink and family.",
                       ["sink", "family"], registry=metrics.REGISTRY)
BLOCK_DECISIONS = Counter("socd_block_decisions_total", "Block decisions by action "
                          "(add, extend, remove, expire, refuse).", ["action"],
                          registry=metrics.REGISTRY)
UNAUTHENTICATED = "unauthenticated_source"
REFUSAL_REASONS = (UNAUTHENTICATED, "allowlisted", "too_broad", "invalid", "other")
BLOCK_REFUSED = Counter("socd_block_refused_total", "Block requests refused, by reason: "
                        + ", ".join(REFUSAL_REASONS) + ".", ["reason"],
                        registry=metrics.REGISTRY)
for _action in ACTIONS:
    BLOCK_DECISIONS.labels(_action)
for _reason in REFUSAL_REASONS:
    BLOCK_REFUSED.labels(_reason)


def refusal_reason(why: str) -> str:
    """The bounded label of a refusal text ("allowlisted: own address 10.0.0.1"...)."""
    head = why.split(":", 1)[0].strip().replace(" ", "_")
    return head if head in REFUSAL_REASONS else "other"


class EscalationConfig(StrictModel):
    enabled: bool = Field(True, description="Block repeat offenders longer each time.")
    factor: float = Field(2.0, ge=1.0, le=100.0,
                          description="TTL multiplier per repeat offence: ttl * factor^(n-1).")
    recount_after: Duration = Field(3600.0, description="Offences closer together than this "
                                    "count once (a scan makes many alerts).")
    forget_after: Duration = Field(30 * 86400.0, description="After this long without an "
                                   "offence the count starts again.")


class EdlConfig(StrictModel):
    host: str = Field("127.0.0.1", description="Address the EDL server listens on.")
    port: int = Field(9798, ge=0, le=65535, description="Port (0 picks a free one).")
    token: SecretStr = Field(description="Shared secret (at least 16 characters; write "
                             "`${ENV_VAR}`): `?token=`, Bearer, or HTTP Basic password.")
    tls_cert: str | None = Field(None, description="PEM certificate (HTTPS), relative to "
                                 "the config file's folder.")
    tls_key: str | None = Field(None, description="PEM private key for tls_cert.")
    limits: HttpLimits = Field(HttpLimits(), description="Timeouts and connection caps of "
                               "the EDL server (as `http.limits`).")
    include_dry_run: bool = Field(False, description="Also serve the decisions of a sink in "
                                  "`dry_run` (a firewall polling the feed enforces them). "
                                  "Default: feeds hold enforced decisions only.")

    @field_validator("token")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 16:
            raise ValueError("the EDL token must be at least 16 characters")
        return value


class BlockerConfig(SinkConfig):
    type: Literal["blocker"]
    backend: Literal["nftables", "ipset", "none"] = Field(
        "nftables", description="Where blocks are enforced; `none`: decisions and feeds only.")
    dry_run: bool = Field(False, description="Record and audit decisions, marked dry-run; "
                          "push nothing and serve them in no feed (see `edl.include_dry_run`).")
    path: str = Field("blocks.db", description="Decision store, relative to state_dir.")
    table: str = Field("socd", pattern=r"^[A-Za-z][A-Za-z0-9_]{0,31}$",
                       description="nftables table (family inet).")
    priority: int = Field(-10, ge=-1000, le=1000, description="Chain priority (filter = 0).")
    direction: Literal["both", "inbound"] = Field(
        "both", description="`both`: also drop traffic to blocked addresses (outbound C&C).")
    ipset_name: str = Field("socd", pattern=r"^[A-Za-z][A-Za-z0-9_]{0,20}$",
                            description="ipset mode: sets <name>4 and <name>6.")
    nft_path: str = Field("nft", description="nft binary.")
    ipset_path: str = Field("ipset", description="ipset binary.")
    helper_socket: str | None = Field(
        None, pattern=r"^/", description="Unix socket of the privileged firewall helper "
        "(`socd block-helper`, socd-blocker.socket: `/run/socd-blocker.sock`); nft/ipset run "
        "there and socd holds no capability. Unset: socd runs nft/ipset itself (root in a "
        "network namespace: tests, development).")
    default_ttl: Duration = Field(86400.0, description="Block duration (24h, 7d, seconds).")
    ioc_ttl: Duration | None = Field(None, description="Duration of IoC-hit blocks "
                                     "(default: default_ttl).")
    max_ttl: Duration = Field(30 * 86400.0, description="Longest block, escalation included.")
    escalation: EscalationConfig = EscalationConfig()
    block_ioc_hits: bool = Field(False, description="Block addresses (and list domains) "
                                 "that matched an IoC list.")
    allowlist_cidrs: list[str] = Field(default_factory=list, description="Never blocked "
                                       "(nor any network overlapping them).")
    allowlist_domains: list[str] = Field(default_factory=list,
                                         description="Never listed, with their subdomains.")
    protect_private: bool = Field(False, description="Also never block RFC 1918, CGNAT and "
                                  "ULA ranges.")
    min_prefixlen4: int = Field(8, ge=0, le=32, description="Refuse IPv4 networks broader.")
    min_prefixlen6: int = Field(32, ge=0, le=128, description="Refuse IPv6 networks broader.")
    expiry_interval_secs: float = Field(5.0, gt=0, le=3600,
                                        description="How often expiry is checked.")
    resync_interval_secs: float = Field(3600.0, gt=0, le=86400,
                                        description="Full resync of the kernel sets.")
    edl: EdlConfig | None = None

    @field_validator("allowlist_cidrs")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        for item in value:
            network(item)  # ValueError -> a config problem on this key
        return value


def make_backend(cfg: BlockerConfig) -> NftBackend | IpsetBackend | None:
    if cfg.backend == "nftables":
        return NftBackend(table=cfg.table, priority=cfg.priority, direction=cfg.direction,
                          nft=cfg.nft_path, helper_socket=cfg.helper_socket)
    if cfg.backend == "ipset":
        return IpsetBackend(set_name=cfg.ipset_name, ipset=cfg.ipset_path,
                            helper_socket=cfg.helper_socket)
    return None


def make_policy(cfg: BlockerConfig) -> Policy:
    esc = cfg.escalation
    return Policy(default_ttl=cfg.default_ttl, max_ttl=cfg.max_ttl, escalation=esc.enabled,
                  factor=esc.factor, recount_after=esc.recount_after,
                  forget_after=esc.forget_after)


def make_guard(cfg: BlockerConfig, external: OwnInfrastructure | None = None) -> Guard:
    return Guard(cfg.allowlist_cidrs, cfg.allowlist_domains, protect_private=cfg.protect_private,
                 external=external, min_prefixlen4=cfg.min_prefixlen4,
                 min_prefixlen6=cfg.min_prefixlen6)


def requests_from(alerts: Sequence[Event], cfg: BlockerConfig) -> list[Request]:
    """The block requests an alert batch carries.

    ``socd.actions`` is written only by the rules engine and ``socd.ioc`` only by the
    IoC matcher (decoders drop both from their input, classification drops them again),
    so the origin of a request is the rule that fired or the IoC source. A request
    caused by an event from an unauthenticated transport (``socd.transport``) carries a
    refusal unless its collector opted in: it is audited, never enforced.
    """
    out: list[Request] = []
    ioc_ttl = cfg.ioc_ttl
    for alert in alerts:
        refusal = transport_refusal(alert)
        rule_id = str(get(alert, "rule.id") or "")
        actions = get(alert, "socd.actions.block")
        if isinstance(actions, dict):
            actions = [actions]
        if isinstance(actions, list):
            for item in actions:
                if not isinstance(item, dict) or not item.get("value"):
                    continue
                ttl = item.get("ttl_secs")
                out.append(Request(
                    value=str(item["value"]),
                    reason=str(item.get("reason") or get(alert, "rule.name") or "rule"),
                    origin=rule_id or "rule",
                    ref=str(item.get("ref") or ""),
                    ttl=float(ttl) if isinstance(ttl, int | float) and ttl > 0 else None,
                    refusal=refusal))
        if cfg.block_ioc_hits and get(alert, "socd.ioc.matched"):
            out += _ioc_requests(alert, ioc_ttl, refusal)
    return out


def transport_refusal(alert: Event) -> str | None:
    """Why a block caused by ``alert`` must not be enforced, or None.

    ``socd.transport`` is stamped by the decoders from the record's provenance (never
    from input): an event from an unauthenticated transport whose collector did not set
    ``allow_unauthenticated_blocking`` cannot block anything (forged UDP syslog). On a
    rule alert it is the weakest provenance of every event the rule counted, and its
    ``collector`` names the unauthenticated one (``socd.collector`` is the collector of
    the event that completed the rule).
    """
    transport = get(alert, "socd.transport")
    if not isinstance(transport, dict) or transport.get("authenticated") is not False:
        return None
    if transport.get("blocking") == "allowed":
        return None
    collector = transport.get("collector") or get(alert, "socd.collector") or "?"
    return (f"{UNAUTHENTICATED}: collector {collector} cannot authenticate its senders "
            "(set allow_unauthenticated_blocking to enforce)")


def _ioc_requests(alert: Event, ttl: float | None, refusal: str | None) -> list[Request]:
    ioc = get(alert, "socd.ioc") or {}
    own: set[str] = set()
    for path in ("host.ip", "observer.ip"):
        found = get(alert, path)
        for item in found if isinstance(found, list) else [found]:
            if item:
                with contextlib.suppress(ValueError):
                    own.add(normalise(str(item))[0])
    refs = ioc.get("refs") or []
    ref = "; ".join(str(r) for r in refs) if isinstance(refs, list) else str(refs)
    source = str(ioc.get("source") or "ioc")
    values: list[tuple[str, str]] = []
    matches = ioc.get("matches")
    if isinstance(matches, list):  # a richer IoC store: [{value, kind, ref, source}]
        for m in matches:
            if isinstance(m, dict) and m.get("value"):
                values.append((str(m["value"]), str(m.get("ref") or ref)))
    else:
        values = [(str(v), ref) for v in ioc.get("values") or []]
    out = []
    for value, vref in values:
        try:
            norm, _ = normalise(value)
        except ValueError:
            continue  # a file hash: nothing to block
        if norm in own:
            continue  # never the event's own host
        out.append(Request(value=norm, reason=f"IoC hit: {get(alert, 'rule.name') or 'IoC'}",
                           origin=source, ref=vref, ttl=ttl, refusal=refusal))
    return out


class BlockerSink:
    """Turns alerts into block decisions and enforces them."""

    Config = BlockerConfig

    def __init__(self, config: BlockerConfig, ctx: PluginContext) -> None:
        self.name = ctx.name
        self.config = config
        self.path = resolve_path(ctx.state_dir, config.path)
        self.state_dir = ctx.state_dir
        self.config_dir = ctx.config_dir
        self.policy = make_policy(config)
        self.backend = make_backend(config)
        self.guard: Guard | None = None
        self.store: BlockStore | None = None
        self.edl: EdlServer | None = None
        self._lock = asyncio.Lock()
        self._needs_resync = True
        self._data_version = -1
        self._last_resync = 0.0
        self._task: asyncio.Task[None] | None = None
        self._allowlist: OwnInfrastructure | None = None

    def use_allowlist(self, allowlist: OwnInfrastructure) -> None:
        """The daemon's top-level ``allowlist:`` (:class:`~socd.plugins.AllowlistAware`:
        an :class:`socd.ioc.allowlist.Allowlist`), applied on top of allowlist_cidrs."""
        self._allowlist = allowlist
        if self.guard is not None:
            self.guard.external = allowlist

    @property
    def pushes(self) -> bool:
        return self.backend is not None and not self.config.dry_run

    async def start(self) -> None:
        self.store = await asyncio.to_thread(BlockStore, self.path)
        self.guard = await asyncio.to_thread(make_guard, self.config, self._allowlist)
        async with self._lock:
            await asyncio.to_thread(self.store.expire)
            try:
                await self._resync()  # start-up: the kernel sets equal the store
            except SinkError as exc:
                # Like any sink whose target is down: the health check reports it and
                # the maintenance task and the next write try again.
                log.error("cannot push blocks at start", sink=self.name, error=str(exc))
        if self.config.edl is not None:
            edl = self.config.edl
            store = self.store
            self.edl = EdlServer(
                store.active if edl.include_dry_run else store.enforced, host=edl.host,
                port=edl.port, token=edl.token.get_secret_value(),
                last_change=store.last_change,
                tls_cert=resolve_path(self.config_dir, edl.tls_cert) if edl.tls_cert else None,
                tls_key=resolve_path(self.config_dir, edl.tls_key) if edl.tls_key else None,
                limits=edl.limits, name=f"edl/{self.name}")
            await self.edl.start()
        await self._update_gauges()  # the series exist (0) from the start
        self._task = asyncio.create_task(self._maintain(), name=f"sink/{self.name}/expiry")
        log.info("blocker started", sink=self.name, backend=self.config.backend,
                 dry_run=self.config.dry_run, store=self.path)

    async def healthcheck(self) -> None:
        if self.backend is None or self.config.dry_run:
            return
        try:
            await self.backend.check()
        except NftError as exc:
            raise HealthCheckError(f"{self.backend.name}: {exc}") from exc

    async def write(self, events: Sequence[Event]) -> None:
        if self.store is None or self.guard is None:
            raise SinkError("blocker not started")
        requests = requests_from(events, self.config)
        async with self._lock:
            if requests:
                try:
                    outcome = await asyncio.to_thread(
                        self.store.decide, requests, self.policy, self.guard,
                        dry_run=self.config.dry_run)
                except Exception as exc:
                    raise SinkError(f"block store {self.path}: {exc}") from exc
                for req, why in outcome.refused:
                    BLOCK_DECISIONS.labels("refuse").inc()
                    BLOCK_REFUSED.labels(refusal_reason(why)).inc()
                    log.warning("block refused", value=req.value, why=why, origin=req.origin)
                self._count(outcome.changes)
                await self._push(outcome.changes)
            elif self._needs_resync:
                await self._push([])
        await self._update_gauges()

    async def _push(self, changes: list[Change]) -> None:
        """One backend transaction for ``changes`` (or a full resync when needed)."""
        if not self.pushes:
            return
        assert self.backend is not None
        assert self.store is not None
        if self._needs_resync or await self._overlapping(changes):
            await self._resync()
            return
        try:
            # Elements the firewall refuses are refused alone (counted, logged).
            await self.backend.apply(changes, time.time())
        except NftError as exc:
            if exc.kind == "conflict":
                log.info("incremental update conflicted; full resync", error=str(exc))
                await self._resync()
                return
            self._needs_resync = True
            raise SinkError(str(exc), retryable=exc.retryable) from exc

    async def _overlapping(self, changes: list[Change]) -> bool:
        new = [c.decision.value for c in changes
               if c.action == "add" and c.decision.kind != "domain"]
        if not new or not isinstance(self.backend, NftBackend):
            return False  # ipset hash:net takes overlapping networks as they are
        assert self.store is not None
        new_set = set(new)
        active = await asyncio.to_thread(self.store.enforced, None, ("ipv4", "ipv6"))
        index = OverlapIndex(d.value for d in active if d.value not in new_set)
        if any(index.overlaps(v) for v in new):
            return True
        # New values overlapping each other.
        index = OverlapIndex(new)
        return any(index.overlaps(v) for v in new if "/" in v)

    async def _resync(self) -> None:
        if not self.pushes:
            self._needs_resync = False
            return
        assert self.backend is not None
        assert self.store is not None
        self._data_version = await asyncio.to_thread(self.store.data_version)
        decisions = await asyncio.to_thread(self.store.enforced, None, ("ipv4", "ipv6"))
        try:
            await self.backend.sync(decisions, time.time())
        except NftError as exc:
            self._needs_resync = True
            raise SinkError(f"{self.backend.name} full sync failed: {exc}",
                            retryable=exc.retryable) from exc
        self._needs_resync = False
        self._last_resync = time.monotonic()
        log.info("block sets synchronised", backend=self.backend.name, active=len(decisions))

    async def _maintain(self) -> None:
        """Expire decisions, pick up CLI changes, resync periodically."""
        while True:
            await asyncio.sleep(self.config.expiry_interval_secs)
            try:
                await self.tick()
            except SinkError as exc:
                log.warning("block maintenance failed; will retry", error=str(exc))
            except Exception:
                log.exception("block maintenance raised")

    async def tick(self) -> None:
        assert self.store is not None
        assert self.guard is not None
        async with self._lock:
            expired = await asyncio.to_thread(self.store.expire)
            self._count(expired)
            version = await asyncio.to_thread(self.store.data_version)
            due = time.monotonic() - self._last_resync >= self.config.resync_interval_secs
            if due:
                await asyncio.to_thread(self.guard.refresh_own)
            # Expired blocks need no push: the kernel lifted them with their timeout.
            if version != self._data_version or due or self._needs_resync:
                await self._resync()  # the CLI changed the store, or time for a refresh
        await self._update_gauges()

    def _count(self, changes: list[Change]) -> None:
        for ch in changes:
            BLOCK_DECISIONS.labels(ch.action).inc()
            if ch.action in ("add", "extend"):
                log.info("block decision", action=ch.action, value=ch.decision.value,
                         expires=ch.decision.expires, count=ch.decision.count,
                         origin=ch.decision.origin, ref=ch.decision.ref,
                         dry_run=self.config.dry_run)

    async def _update_gauges(self) -> None:
        if self.store is None:
            return
        active = await asyncio.to_thread(self.store.active)
        counts = {False: dict.fromkeys(KINDS, 0), True: dict.fromkeys(KINDS, 0)}
        for d in active:
            counts[d.dry_run][d.kind] += 1
        for dry_run, gauge in ((False, BLOCKS_ACTIVE), (True, BLOCKS_DRY_RUN)):
            for kind, n in counts[dry_run].items():
                gauge.labels(self.name, kind).set(n)

    async def close(self) -> None:
        await stop_task(self._task)
        self._task = None
        if self.edl is not None:
            await self.edl.close()
            self.edl = None
        if self.store is not None:
            self.store.close()
            self.store = None


def cli_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"

