"""``socd ioc``: import feeds into the IoC store, list, check, expire, stats.

Every command takes ``-c CONFIG`` for ``state_dir`` (the store is
``<state_dir>/<ioc.db_path>``) and the ``allowlist``. A running daemon picks up
the changes within ``ioc.refresh_interval_secs``.
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from socd.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    Subparsers,
    WithConfig,
    fail,
    json_line,
)


def register(sub: Subparsers, with_config: WithConfig) -> None:
    from socd.ioc.importers import FORMATS

    ioc = sub.add_parser("ioc", help="the IoC store: import feeds, check values, expire")
    actions = ioc.add_subparsers(dest="ioc_command", required=True, metavar="ACTION")

    imp = actions.add_parser("import", help="import a feed or letter appendix into the store")
    with_config(imp)
    imp.add_argument("file", metavar="FILE")
    imp.add_argument("--format", "-f", required=True, choices=FORMATS)
    imp.add_argument("--source", "-s", required=True,
                     help="feed name (entries are unique per value and source)")
    imp.add_argument("--ref", "-r", default="",
                     help="letter number or reference for entries without their own, e.g. "
                     "1298/CATTT-NCSC")
    imp.add_argument("--confidence", type=int, default=50, help="0-100 (default 50)")
    imp.add_argument("--expires", help="30d, 12h, 2w, or a date (2026-12-31); default never")
    imp.add_argument("--tag", action="append", default=[], help="tag every entry (repeatable)")
    imp.add_argument("--column", action="append", default=[], metavar="FIELD=HEADER",
                     help="CSV/XLSX column mapping, e.g. value=ip,ref=letter (repeatable); "
                     "needed only when no header is recognised")
    imp.add_argument("--min-count", type=int, default=1,
                     help="IPsum: leave out addresses on fewer lists")
    imp.add_argument("--include-non-ids", action="store_true",
                     help="MISP: also attributes with to_ids false")
    imp.add_argument("--dry-run", action="store_true", help="parse and report; write nothing")
    imp.add_argument("--show", type=int, default=50,
                     help="print at most this many refused/rejected items each (default 50)")
    imp.set_defaults(handler=_import)

    lst = actions.add_parser("list", help="list stored entries (newest first)")
    with_config(lst)
    lst.add_argument("--kind", choices=("ip", "domain", "hash"))
    lst.add_argument("--source")
    lst.add_argument("--ref")
    lst.add_argument("--limit", type=int, default=50)
    lst.add_argument("--json", action="store_true", help="one JSON object a line")
    lst.set_defaults(handler=_list)

    chk = actions.add_parser("check", help="is a value (IP, domain, hash; defanged or a URL) "
                             "on the store? exit 0 when it matches, 1 when not")
    with_config(chk)
    chk.add_argument("value", metavar="VALUE")
    chk.add_argument("--kind", choices=("ip", "domain", "hash"))
    chk.add_argument("--json", action="store_true")
    chk.set_defaults(handler=_check)

    exp = actions.add_parser("expire", help="delete expired entries")
    with_config(exp)
    exp.add_argument("--allowlist", action="store_true",
                     help="also delete entries that touch the allowlist (after it grew)")
    exp.set_defaults(handler=_expire)

    rm = actions.add_parser("delete", help="delete the entries of a source (and reference)")
    with_config(rm)
    rm.add_argument("--source", required=True)
    rm.add_argument("--ref")
    rm.set_defaults(handler=_delete)

    st = actions.add_parser("stats", help="counts by kind, source and reference")
    with_config(st)
    st.add_argument("--json", action="store_true")
    st.set_defaults(handler=_stats)


# -- helpers ---------------------------------------------------------------------------


def _settings(args: argparse.Namespace) -> tuple[Any, Any, str]:
    """(config, allowlist, database path) from ``-c CONFIG``."""
    from socd import config as config_mod
    from socd.errors import ConfigError, ConfigProblem
    from socd.ioc.allowlist import load_allowlist

    cfg = config_mod.load(args.config)
    try:
        allowlist = load_allowlist(cfg)
    except (OSError, ValueError) as exc:
        raise ConfigError([ConfigProblem(cfg.file, "allowlist.files", str(exc))]) from exc
    return cfg, allowlist, os.path.join(cfg.state_dir, cfg.document.ioc.db_path)


def _open(args: argparse.Namespace, *, create: bool = True, load: bool = True) -> Any:
    from socd.ioc.store import IocStore

    cfg, allowlist, path = _settings(args)
    if not create and not os.path.exists(path):
        return None
    return IocStore(path, allowlist=allowlist, min_confidence=cfg.document.ioc.min_confidence,
                    create=create, load=load)


def _date(ts: int | float | None) -> str:
    if not ts:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts))


def _print_entry(e: Any, now: float, prefix: str = "") -> None:
    expired = e.expires is not None and e.expires <= now
    print(f"{prefix}{e.kind:<6} {e.value:<40} source={e.source} ref={e.ref or '-'} "
          f"confidence={e.confidence} first_seen={_date(e.first_seen)} "
          f"last_seen={_date(e.last_seen)} expires={_date(e.expires)}"
          f"{' tags=' + ','.join(e.tags) if e.tags else ''}{' (EXPIRED)' if expired else ''}")


def _columns(items: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        for part in item.split(","):
            if not part.strip():
                continue
            key, sep, value = part.partition("=")
            if not sep or not value.strip():
                raise ValueError(f"--column wants FIELD=HEADER, got {part!r}")
            out[key.strip()] = value.strip()
    return out


def _expiry(text: str | None, now: int) -> int | None:
    from socd.ioc.importers import parse_duration, parse_time

    if not text:
        return None
    try:
        return now + parse_duration(text)
    except ValueError:
        ts = parse_time(text)
        if ts is not None and ts <= now:
            raise ValueError(f"--expires {text} is in the past") from None
        return ts


# -- commands --------------------------------------------------------------------------


def _import(args: argparse.Namespace) -> int:
    from socd.ioc.importers import Options, parse_file
    from socd.ioc.store import ImportResult

    now = int(time.time())
    if not 0 <= args.confidence <= 100:
        return fail("--confidence must be within 0-100", EXIT_USAGE)
    try:
        opts = Options(source=args.source, ref=args.ref, confidence=args.confidence,
                       expires=_expiry(args.expires, now), tags=tuple(args.tag), now=now)
        columns = _columns(args.column)
    except ValueError as exc:
        return fail(exc, EXIT_USAGE)
    from socd.access import read_problem
    from socd.cli.identity import as_invoker

    try:
        # The appendix is the operator's file (in their home, say): read it with their
        # rights even when socd switched to the service user for the store.
        with as_invoker():
            problem = read_problem(args.file)
            if problem is not None:
                return fail(str(problem))
            entries, rejected = parse_file(args.file, args.format, opts, columns=columns,
                                           min_count=args.min_count,
                                           include_non_ids=args.include_non_ids)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        return fail(f"cannot import {args.file}: {exc}")
    if args.dry_run:
        _, allow, _ = _settings(args)
        result = ImportResult()
        for e in entries:
            reason = allow.reason(e.kind, e.value)
            if reason is None:
                result.inserted += 1
            else:
                result.refused.append((e, reason))
    else:
        store = _open(args, load=False)
        try:
            result = store.import_entries(entries, reload=False)
        finally:
            store.close()
    result.rejected = rejected
    verb = "would import" if args.dry_run else "imported"
    new = "valid" if args.dry_run else "new"
    print(f"{verb} {args.file} (format {args.format}, source {args.source}): "
          f"{result.inserted} {new}, {result.updated} updated, "
          f"{len(result.refused)} refused (allowlist), {len(rejected)} rejected")
    _print_refs(entries)
    _print_list("refused (allowlist)", [(f"{e.kind} {e.value}", r) for e, r in result.refused],
                args.show)
    _print_list("rejected", rejected, args.show)
    return EXIT_OK


def _print_refs(entries: Sequence[Any]) -> None:
    """Which letter numbers the entries carry: one taken from an appendix's title (or a
    ``# ref:`` line) is shown before anything is matched against it."""
    counts = Counter(e.ref for e in entries)
    if counts:
        print("letter numbers: " + ", ".join(
            f"{ref} ({n} entr{'y' if n == 1 else 'ies'})" for ref, n in counts.most_common(10))
            + (f", and {len(counts) - 10} more" if len(counts) > 10 else ""))


def _print_list(title: str, items: Sequence[tuple[str, str]], show: int) -> None:
    if not items:
        return
    print(f"{title}:")
    for where, reason in items[:show]:
        print(f"  {where}: {reason}")
    if len(items) > show:
        print(f"  ... and {len(items) - show} more")


def _list(args: argparse.Namespace) -> int:
    store = _open(args, create=False, load=False)
    if store is None:
        print("the IoC store is empty (nothing imported yet)")
        return EXIT_OK
    entries = store.db.find(kind=args.kind, source=args.source, ref=args.ref,
                            limit=max(0, args.limit))
    now = time.time()
    for e in entries:
        if args.json:
            print(json_line(e.to_dict()))
        else:
            _print_entry(e, now)
    store.close()
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    from socd.ioc.importers import Options, indicator
    from socd.ioc.normalize import IndicatorError

    try:
        # As a letter writes it: defanged (evil[.]example, hxxp://), a URL (its host).
        found = indicator(Options(source="check"), args.value, args.kind)
        kind, value = found.kind, found.value
    except IndicatorError as exc:
        return fail(exc, EXIT_USAGE)
    store = _open(args, create=False)
    allowed = ""
    if store is not None and store.allowlist:
        reason = store.allowlist.reason(kind, value)
        if reason:
            allowed = reason
    entries = store.entries_for(kind, value) if store is not None else []
    now = time.time()
    active = [e for e in entries if not (e.expires is not None and e.expires <= now)]
    best = store.match(kind, value) if store is not None and "/" not in value else None
    if args.json:
        print(json_line({"kind": kind, "value": value, "matched": bool(active),
                         "allowlisted": allowed or None,
                         "entries": [e.to_dict() for e in entries]}))
    else:
        if not entries:
            print(f"{kind} {value}: not found")
        else:
            state = "MATCH" if active else "only expired entries"
            count = f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'}"
            print(f"{kind} {value}: {state} ({count}"
                  f"{', best ref ' + (best.ref or best.source) if best else ''})")
            for e in entries:
                _print_entry(e, now, prefix="  ")
        if allowed:
            print(f"note: {allowed}")
    if store is not None:
        store.close()
    return EXIT_OK if active else EXIT_FAILURE


def _expire(args: argparse.Namespace) -> int:
    store = _open(args, create=False, load=False)
    if store is None:
        print("expired 0 entries (the IoC store is empty)")
        return EXIT_OK
    removed = store.db.expire()
    print(f"expired {removed} entr{'y' if removed == 1 else 'ies'}")
    if args.allowlist:
        purged = store.db.purge_allowlisted(store.allowlist)
        print(f"deleted {len(purged)} entries touching the allowlist")
        for e, reason in purged:
            print(f"  {e.kind} {e.value} (source {e.source}): {reason}")
    store.close()
    return EXIT_OK


def _delete(args: argparse.Namespace) -> int:
    store = _open(args, create=False, load=False)
    if store is None:
        print("deleted 0 entries (the IoC store is empty)")
        return EXIT_OK
    removed = store.db.delete_source(args.source, args.ref)
    print(f"deleted {removed} entr{'y' if removed == 1 else 'ies'}")
    store.close()
    return EXIT_OK


def _stats(args: argparse.Namespace) -> int:
    store = _open(args, create=False)
    if store is None:
        stats: dict[str, Any] = {"stored": {}, "loaded": {}}
    else:
        stats = store.stats()
        store.close()
    if args.json:
        print(json_line(stats))
        return EXIT_OK
    print(f"IoC store: {stats.get('db', '(none)')}")
    stored = stats.get("stored", {})
    print(f"stored: {sum(stored.values())} entries "
          f"({', '.join(f'{k} {n}' for k, n in sorted(stored.items())) or 'none'})")
    loaded = stats.get("loaded", {})
    print(f"matching now: {sum(loaded.values())} "
          f"({', '.join(f'{k} {n}' for k, n in sorted(loaded.items())) or 'none'})")
    if "expired" in stats:
        print(f"expired, awaiting `socd ioc expire`: {stats['expired']}")
        print(f"next expiry: {stats.get('next_expiry') or 'none'}")
        print(f"index build: {stats.get('index_build_seconds')} s")
    for title, key in (("by source", "by_source"), ("by reference", "by_ref")):
        if stats.get(key):
            print(f"{title}:")
            for name, n in stats[key].items():
                print(f"  {name}: {n}")
    return EXIT_OK
