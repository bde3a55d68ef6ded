"""``socd block``: list, add, remove, export and sync block decisions.

The commands find the ``blocker`` sink in the config (``-c``; ``--sink`` when
there are several) for its store, table and policy; ``--state-dir`` and
``--table`` override them. ``add``/``remove`` change the store (audited, actor
``cli:<user>``) and push the change to the kernel when they may (root or
CAP_NET_ADMIN); a running daemon notices the store changed and resyncs anyway.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from typing import Any

from socd.cli.common import (
    EXIT_OK,
    Subparsers,
    WithConfig,
    choose_sink,
    fail,
    json_line,
)
from socd.errors import SocdError


def register(sub: Subparsers, with_config: WithConfig) -> None:
    block = sub.add_parser("block", help="firewall block decisions (nftables, ipset, EDL)")
    bsub = block.add_subparsers(dest="block_command", required=True, metavar="ACTION")

    def common(p: argparse.ArgumentParser) -> None:
        with_config(p)
        p.add_argument("--sink", help="name of the blocker sink (when the config has several)")
        p.add_argument("--state-dir", help="use this state_dir instead of the config's")
        p.add_argument("--table", help="nftables table name instead of the sink's")

    p = bsub.add_parser("list", help="active decisions (with --all: every decision)")
    common(p)
    p.add_argument("--all", action="store_true", help="include expired and removed ones")
    p.add_argument("--json", action="store_true", help="one JSON object a line")
    p.set_defaults(handler=_list)

    p = bsub.add_parser("add", help="block VALUE (address, network or domain)")
    common(p)
    p.add_argument("value", metavar="VALUE")
    p.add_argument("--ttl", default=None, help="duration (24h, 7d; default: the sink's)")
    p.add_argument("--reason", required=True, help="why (kept in the audit trail)")
    p.add_argument("--ref", default="", help="reference, e.g. the letter 941/CATTT-NCSC")
    p.add_argument("--no-push", action="store_true", help="record only; the daemon pushes it")
    p.set_defaults(handler=_add)

    p = bsub.add_parser("remove", help="lift the block on VALUE")
    common(p)
    p.add_argument("value", metavar="VALUE")
    p.add_argument("--reason", default="removed by operator", help="why (audit trail)")
    p.add_argument("--no-push", action="store_true", help="record only; the daemon pushes it")
    p.set_defaults(handler=_remove)

    p = bsub.add_parser("export", help="enforced decisions as text or CSV on stdout")
    common(p)
    p.add_argument("--format", choices=("txt", "csv"), default="txt")
    p.add_argument("--family", choices=("4", "6", "domains"), default=None)
    p.add_argument("--include-dry-run", action="store_true",
                   help="also dry-run decisions (default: enforced ones only, as the feeds)")
    p.add_argument("-o", "--output", help="write to this file instead of stdout")
    p.set_defaults(handler=_export)

    p = bsub.add_parser("sync", help="push the store to the kernel (needs CAP_NET_ADMIN)")
    common(p)
    # Root keeps its capability here (socd.cli.main switches root to the service user
    # for other commands); the store is only read, never created.
    p.set_defaults(handler=_sync, as_root=True)

    p = bsub.add_parser("audit", help="the audit trail, newest first")
    common(p)
    p.add_argument("value", nargs="?", help="only this value")
    p.add_argument("--limit", type=int, default=100)
    p.set_defaults(handler=_audit)

    # The privileged firewall writer: a command of its own (no config file), run by
    # socd-blocker.service with CAP_NET_ADMIN; socd itself never holds the capability.
    from socd.block import helper

    p = sub.add_parser("block-helper", help="the privileged firewall helper "
                       "(socd-blocker.service; docs/blocking.md)")
    helper.add_arguments(p)
    p.set_defaults(handler=helper.run)


def _settings(args: argparse.Namespace) -> tuple[Any, str, Any]:
    """(BlockerConfig, state_dir, loaded Config or None) from the config and overrides."""
    from socd import config as config_mod
    from socd.block.sink import BlockerConfig

    sink_cfg: BlockerConfig | None = None
    state_dir: str | None = args.state_dir
    try:
        cfg = config_mod.load(args.config)
    except SocdError:
        if state_dir is None:
            raise
        cfg = None
    if cfg is not None:
        sink_cfg = choose_sink(cfg, "blocker", args.sink)
        state_dir = state_dir or cfg.state_dir
    if sink_cfg is None:
        if args.state_dir is None:
            raise SocdError("the config has no `blocker` sink; add one or pass --state-dir")
        sink_cfg = BlockerConfig(type="blocker")
    if args.table:
        sink_cfg = sink_cfg.model_copy(update={"table": args.table})
    assert state_dir is not None
    return sink_cfg, state_dir, cfg


def _open(args: argparse.Namespace, *, create: bool = True) -> tuple[Any, Any, Any]:
    """(BlockerConfig, BlockStore, loaded Config or None). Without ``create`` (commands
    that only read) a store that does not exist yet is not created: the store is a
    stand-in that holds no decision (none was ever taken)."""
    from socd.block.decisions import BlockStore
    from socd.config import resolve_path

    cfg, state_dir, loaded = _settings(args)
    path = resolve_path(state_dir, cfg.path)
    if not create and not os.path.exists(path):
        return cfg, _NoStore(), loaded
    return cfg, BlockStore(path), loaded


class _NoStore:
    """The block store before its file exists: no decision was ever taken."""

    def all(self) -> list[Any]:
        return []

    def active(self, now: float | None = None) -> list[Any]:
        return []

    def audit(self, value: str | None = None, limit: int = 100) -> list[Any]:
        return []

    def expire(self) -> list[Any]:
        return []

    def close(self) -> None:
        pass


def _list(args: argparse.Namespace) -> int:
    from socd.block.decisions import format_duration
    from socd.block.feeds import iso

    _, store, _ = _open(args, create=False)
    try:
        now = time.time()
        decisions = store.all() if args.all else store.active(now)
    finally:
        store.close()
    out = sys.stdout
    if args.json:
        for d in decisions:
            out.write(json_line({**d.as_dict(), "state": _state(d, now)}) + "\n")
        return EXIT_OK
    out.write(f"{'VALUE':<40} {'STATE':<8} {'LEFT':>8} {'N':>3}  {'EXPIRES':<20}  "
              "ORIGIN  REF  REASON\n")
    for d in decisions:
        left = format_duration(d.expires - now) if d.state == "active" and d.expires > now \
            else "-"
        out.write(f"{d.value:<40} {_state(d, now):<8} {left:>8} {d.count:>3}  "
                  f"{iso(d.expires):<20}  {d.origin}  {d.ref or '-'}  {d.reason}\n")
    dry = sum(1 for d in decisions if _state(d, now) == "dry-run")
    out.write(f"{len(decisions)} decision{'s' if len(decisions) != 1 else ''}"
              + (f" ({dry} dry-run: recorded only, not enforced nor in the feeds)" if dry
                 else "") + "\n")
    return EXIT_OK


def _state(d: Any, now: float) -> str:
    """What the operator must see: ``dry-run`` for an active decision of a sink in dry
    run (never enforced, in no feed), ``expired`` once past its expiry."""
    if d.state == "active" and d.expires <= now:
        return "expired"
    if d.state == "active" and d.dry_run:
        return "dry-run"
    return str(d.state)


def _push(cfg: Any, changes: list[Any], store: Any) -> str | None:
    """Push ``changes`` (full sync when incremental conflicts); the error text or None."""
    from socd.block.nft import NftBackend, NftError
    from socd.block.sink import make_backend

    backend = make_backend(cfg)
    # A dry-run decision was never in the kernel: neither added nor removed there.
    changes = [c for c in changes if not c.decision.dry_run]
    if backend is None or cfg.dry_run or not changes:
        return None

    async def go() -> None:
        if isinstance(backend, NftBackend) and any(c.action == "add" for c in changes):
            # A new network may overlap an existing element: a full sync is always exact.
            await backend.sync(store.enforced(), time.time())
            return
        try:
            await backend.apply(changes, time.time())
        except NftError as exc:
            if exc.kind != "conflict":
                raise
            await backend.sync(store.enforced(), time.time())

    try:
        asyncio.run(go())
    except NftError as exc:
        return str(exc)
    return None


def _add(args: argparse.Namespace) -> int:
    from socd.block.decisions import Request, load_external_allowlist, parse_duration
    from socd.block.sink import cli_actor, make_guard, make_policy

    cfg, store, loaded = _open(args)
    try:
        ttl = parse_duration(args.ttl) if args.ttl else None
        # Spaces around a pasted value are the operator's, not part of it; anything else
        # passes the address gate in decide() (a zone id or newline is refused).
        req = Request(args.value.strip(), args.reason, origin="cli", ref=args.ref, ttl=ttl,
                      actor=cli_actor())
        guard = make_guard(cfg, load_external_allowlist(loaded))
        outcome = store.decide([req], make_policy(cfg), guard,
                               dry_run=cfg.dry_run)
        if outcome.refused:
            return fail(f"refused to block {_shown(args.value)}: {outcome.refused[0][1]}")
        if not outcome.changes:
            print(f"{args.value}: already blocked (same offence); nothing changed")
            return EXIT_OK
        ch = outcome.changes[0]
        print(f"{ch.action}: {ch.decision.value} until "
              f"{time.strftime('%Y-%m-%d %H:%M:%S %z', time.localtime(ch.decision.expires))} "
              f"(offence {ch.decision.count}){' [dry-run]' if cfg.dry_run else ''}")
        if not args.no_push:
            err = _push(cfg, outcome.changes, store)
            if err:
                print(f"socd: recorded, but not pushed to the kernel: {err}\n"
                      "  a running socd daemon pushes it within expiry_interval_secs; or "
                      "run `socd block sync` with CAP_NET_ADMIN", file=sys.stderr)
    finally:
        store.close()
    return EXIT_OK


def _remove(args: argparse.Namespace) -> int:
    from socd.block.sink import cli_actor

    cfg, store, _ = _open(args)
    try:
        ch = store.remove(args.value.strip(), actor=cli_actor(), why=args.reason,
                          dry_run=cfg.dry_run)
        if ch is None:
            return fail(f"{args.value} is not actively blocked")
        print(f"removed: {ch.decision.value}")
        if not args.no_push:
            err = _push(cfg, [ch], store)
            if err:
                print(f"socd: recorded, but not pushed to the kernel: {err}", file=sys.stderr)
    finally:
        store.close()
    return EXIT_OK


def _export(args: argparse.Namespace) -> int:
    from socd.block.feeds import render_csv, render_txt, select

    _, store, _ = _open(args, create=False)
    try:
        active = select(store.active(), args.family)
    finally:
        store.close()
    decisions = [d for d in active if args.include_dry_run or not d.dry_run]
    if len(decisions) < len(active):
        left_out = len(active) - len(decisions)
        print(f"socd: {left_out} dry-run decision{'s' if left_out != 1 else ''} left out "
              "(--include-dry-run)", file=sys.stderr)
    text = render_csv(decisions) if args.format == "csv" else render_txt(decisions)
    if args.output:
        from socd.cli.identity import as_invoker

        with as_invoker(), open(args.output, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _sync(args: argparse.Namespace) -> int:
    from socd.block.nft import NftError
    from socd.block.sink import make_backend

    cfg, store, _ = _open(args, create=False)
    try:
        store.expire()
        backend = make_backend(cfg)
        if backend is None:
            print("socd: backend is `none`: nothing to push", file=sys.stderr)
            return EXIT_OK
        if cfg.dry_run:
            print("socd: the blocker sink is in dry_run: nothing is pushed", file=sys.stderr)
            return EXIT_OK
        active = [d for d in store.active() if not d.dry_run]  # never a dry-run one
        try:
            outcome = asyncio.run(backend.sync(active, time.time()))
        except NftError as exc:
            return fail(f"sync failed: {exc}")
        print(f"synchronised {sum(d.kind != 'domain' for d in active)} blocks to "
              f"{backend.name}")
        for refusal in outcome.refused:
            print(f"socd: not pushed: {_shown(refusal.value)} ({refusal.reason})",
                  file=sys.stderr)
    finally:
        store.close()
    return EXIT_OK


def _audit(args: argparse.Namespace) -> int:
    from socd.block.decisions import normalise
    from socd.block.feeds import iso

    _, store, _ = _open(args, create=False)
    try:
        value = normalise(args.value.strip())[0] if args.value else None
        rows = store.audit(value, limit=args.limit)
    finally:
        store.close()
    for r in rows:
        exp = iso(r["expires"]) if r["expires"] else "-"
        print(f"{iso(r['ts'])} {r['action']:<7} {_shown(r['value']):<40} until {exp} "
              f"by {r['actor']} [{r['origin']} {r['ref'] or '-'}] {r['why']}"
              f"{' (dry-run)' if r['dry_run'] else ''}")
    return EXIT_OK


def _shown(value: str) -> str:
    """An audited value for the terminal: as is, or escaped when it holds control
    characters (a value refused or removed as ``invalid_value`` may hold newlines)."""
    return value if value.isprintable() else repr(value)
