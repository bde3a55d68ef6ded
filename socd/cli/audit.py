"""``socd audit verify|show``: the hash-chained audit log of alert and incident changes
(:mod:`socd.alerts.audit`).

Exit codes: 0 intact (or nothing recorded yet), 1 a broken or missing chain, 2 usage.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from socd.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    Subparsers,
    WithConfig,
    fail,
    in_zone,
    json_line,
    sinks_of_type,
)
from socd.sqlite import Error as StoreError

if TYPE_CHECKING:
    from socd.config import Config


def register(sub: Subparsers, with_config: WithConfig) -> None:
    aud = sub.add_parser("audit", help="the tamper-evident audit log of alert and incident "
                         "changes")
    actions = aud.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    p = actions.add_parser("verify", help="recompute the hash chain; exit 1 when altered")
    with_config(p)
    p.add_argument("--head", metavar="SEQ:HASH",
                   help="also check the chain against a head written down earlier")
    p.add_argument("--allow-unkeyed-before", type=int, metavar="SEQ", default=None,
                   help="with SOCD_AUDIT_KEY set: records below SEQ were written before the "
                   "key was configured (from your paper log); record SEQ must be keyed")
    p.set_defaults(handler=_verify)
    p = actions.add_parser("show", help="audit records, oldest first")
    with_config(p)
    p.add_argument("--object", help="only this alert or incident id (alert: the full hash)")
    p.add_argument("--limit", type=int, default=100, help="the last N records (default 100)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_show)


def audit_db_path(cfg: Config) -> str:
    """``audit.db`` beside the alert store (where :mod:`socd.alerts.lifecycle` appends alert
    changes), so alerts and incidents share one chain; ``<state_dir>/audit.db`` when
    there is no single sqlite sink."""
    from socd.alerts.audit import DB_NAME
    from socd.config import resolve_path

    stores = list(sinks_of_type(cfg, "sqlite").values())
    if len(stores) == 1:
        store = resolve_path(cfg.state_dir, stores[0].path)
        return os.path.join(os.path.dirname(store), DB_NAME)
    return os.path.join(cfg.state_dir, DB_NAME)


def _audit_path(args: argparse.Namespace) -> str:
    from socd import config as config_mod

    return audit_db_path(config_mod.load(args.config))


def _verify(args: argparse.Namespace) -> int:
    from socd.alerts.audit import AuditError, anchor_path, read_anchor, verify

    path = _audit_path(args)
    head = None
    if args.head:
        seq, _, value = args.head.partition(":")
        if not seq.isdigit() or len(value) != 64:
            return fail("--head is SEQ:HASH (the 64 hex digits `socd audit verify` printed)",
                        EXIT_USAGE)
        head = (int(seq), value.lower())
    if args.allow_unkeyed_before is not None and args.allow_unkeyed_before < 1:
        return fail("--allow-unkeyed-before is a record number (1 or more)", EXIT_USAGE)
    try:
        if not os.path.exists(path):
            anchored = read_anchor(anchor_path(path)) or head
            if anchored is not None:
                return fail(f"the audit log {path} is MISSING but records up to "
                            f"{anchored[0]} were written: it was deleted")
            print(f"no audit log at {path} yet (nothing recorded)")
            return EXIT_OK
        result = verify(path, expected_head=head,
                        allow_unkeyed_before=args.allow_unkeyed_before)
    except AuditError as exc:
        return fail(exc)
    except StoreError as exc:
        return fail(f"audit log {path}: {exc}")
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if result.ok:
        print(f"audit log OK: {result.records} records, chain intact ({path})")
        print(f"head: {result.head_seq}:{result.head_hash}")
        print("(write the head in the paper log; `socd audit verify --head SEQ:HASH` checks "
              "it later)")
        return EXIT_OK
    if any(p.kind == "unkeyed" for p in result.problems):
        print(f"socd: audit log {path} is NOT PROTECTED by SOCD_AUDIT_KEY; first bad record: "
              f"seq {result.first_bad_seq}", file=sys.stderr)
    else:
        print(f"socd: audit log {path} was ALTERED; first bad record: seq "
              f"{result.first_bad_seq}", file=sys.stderr)
    for problem in result.problems:
        print(f"  seq {problem.seq} [{problem.kind}]: {problem.message}", file=sys.stderr)
    if result.key_starts_at is not None:
        print(f"(if your paper log says the key was configured before record "
              f"{result.key_starts_at}, verify with --allow-unkeyed-before "
              f"{result.key_starts_at})", file=sys.stderr)
    return EXIT_FAILURE


def _show(args: argparse.Namespace) -> int:
    from socd.alerts.audit import AuditLog

    path = _audit_path(args)
    if not os.path.exists(path):
        print(f"no audit log at {path} yet (nothing recorded)")
        return EXIT_OK
    if args.limit < 1:
        return fail("--limit must be at least 1", EXIT_USAGE)
    from socd import config as config_mod

    zone = config_mod.load(args.config).document.incidents.timezone
    audit = AuditLog(path)
    try:
        obj = args.object
        if obj and obj.upper().startswith("SC-"):
            from socd.incidents.store import normalize_id

            obj = normalize_id(obj)
        for rec in audit.records(obj, limit=args.limit):
            if args.json:
                print(json_line(rec.as_dict()))
            else:
                print(f"#{rec.seq}  {in_zone(rec.ts, zone)}  {rec.object_type} "
                      f"{rec.object_id[:16]}  {rec.action}  by {rec.actor}  "
                      f"{json_line(rec.details)}")
    finally:
        audit.close()
    return EXIT_OK
