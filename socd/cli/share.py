"""``socd share``: layer-4 exports and pushes to the national centre, and the exchange log.

* ``socd share export --format stix|misp (--from D --to D | --incident ID) [--out FILE]``
  writes a STIX 2.1 bundle or a MISP event (stdout by default);
* ``socd share push --to NAME (--from D --to D | --incident ID)`` sends it to a
  target of the ``sharing:`` config section and records the exchange;
* ``socd share exchanges [--json]`` lists the exchange log, newest first.

Dates are ``dd/mm/yyyy``, ``yyyy-mm-dd`` or ISO date-times, in Asia/Ho_Chi_Minh
time; ``--to`` with a bare date includes that whole day.

Exit codes: 0 done, 1 the push failed (recorded as a failure) or a store cannot
be read, 2 usage or configuration.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from socd.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    On,
    Subparsers,
    WithConfig,
    fail,
    json_line,
    run_guarded,
    write_output,
)
from socd.sqlite import Error as StoreError


def register(sub: Subparsers, with_config: WithConfig) -> None:
    share = sub.add_parser("share", help="layer-4 sharing: STIX/MISP export, TAXII/MISP "
                           "push, exchange log")
    actions = share.add_subparsers(dest="share_command", required=True, metavar="ACTION")

    def scope(p: argparse.ArgumentParser) -> None:
        with_config(p)
        p.add_argument("--sink", help="name of the sqlite sink (when the config has several)")
        p.add_argument("--from", dest="start", metavar="DATE",
                       help="first day (dd/mm/yyyy, yyyy-mm-dd or ISO; Asia/Ho_Chi_Minh)")
        p.add_argument("--to", dest="end", metavar="DATE",
                       help="last day, included (or an ISO date-time, excluded)")
        p.add_argument("--incident", metavar="ID", help="an incident (SC-YYYY-NNNN) instead "
                       "of a period")

    p = actions.add_parser("export", help="write a STIX 2.1 bundle or a MISP event")
    scope(p)
    p.add_argument("--format", "-f", choices=("stix", "misp"), required=True)
    p.add_argument("--out", "-o", metavar="FILE", help="output file (default: stdout)")
    p.set_defaults(handler=_export)

    p = actions.add_parser("push", help="send the export to a configured target")
    scope(p)
    p.add_argument("--target", dest="target", required=True, metavar="NAME",
                   help="a target of sharing.targets")
    p.set_defaults(handler=_push)

    p = actions.add_parser("exchanges", help="the exchange log, newest first")
    with_config(p)
    p.add_argument("--target", help="only this target")
    p.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    p.add_argument("--json", action="store_true", help="one exchange (JSON) a line")
    p.set_defaults(handler=_exchanges)


def _load(args: argparse.Namespace) -> tuple[Any, Any]:
    from socd import config as config_mod

    cfg = config_mod.load(args.config)
    return cfg, cfg.document.sharing


def _dataset(args: argparse.Namespace, cfg: Any) -> Any:
    from socd.sharing.data import build_dataset, scope_from

    return build_dataset(cfg, scope_from(args.start, args.end, args.incident), sink=args.sink)


def _guard(body: Callable[[], int]) -> int:
    from socd.sharing.data import SharingError

    return run_guarded(body, On(SharingError, EXIT_USAGE), On(StoreError, EXIT_FAILURE))


def _export(args: argparse.Namespace) -> int:
    def body() -> int:
        import orjson

        cfg, sharing = _load(args)
        data = _dataset(args, cfg)
        if args.format == "stix":
            from socd.sharing.stix import build_bundle, bundle_json

            bundle = build_bundle(data, sharing)
            text = bundle_json(bundle) + "\n"
            summary = f"{len(bundle.objects)} STIX objects"
        else:
            from socd.sharing.misp import build_event

            event = build_event(data, sharing)
            text = orjson.dumps(event, option=orjson.OPT_INDENT_2).decode() + "\n"
            summary = f"{len(event['Event']['Attribute'])} MISP attributes"
        if args.out and args.out != "-":
            write_output(args.out, text)
            print(f"socd: {summary} ({len(data.observations)} observed IoCs in "
                  f"{data.alerts} alerts) written to {args.out}", file=sys.stderr)
        else:
            sys.stdout.write(text)
        return EXIT_OK

    return _guard(body)


def _push(args: argparse.Namespace) -> int:
    def body() -> int:
        from socd.sharing import records
        from socd.sharing.push import push

        cfg, sharing = _load(args)
        if args.target not in sharing.targets:
            known = ", ".join(sorted(sharing.targets)) or "none configured"
            return fail(f"no sharing target {args.target!r} in {cfg.file} (targets: {known})",
                        EXIT_USAGE)
        data = _dataset(args, cfg)
        result = push(data, sharing, args.target, config_dir=cfg.config_dir,
                      log_path=records.db_path(cfg))
        records.refresh_metrics(cfg)
        if result.ok:
            print(f"socd: pushed {result.objects} objects to {args.target}: {result.detail}")
            return EXIT_OK
        return fail(f"push to {args.target} failed: {result.detail}",
                    hint=f"recorded as exchange #{result.exchange_id} (failure); see `socd "
                    "share exchanges`")

    return _guard(body)


def _exchanges(args: argparse.Namespace) -> int:
    def body() -> int:
        from socd.alerts.lifecycle import local_time
        from socd.sharing import records

        cfg, _ = _load(args)
        rows = records.exchanges(records.db_path(cfg), limit=args.limit, target=args.target)
        if args.json:
            for row in rows:
                sys.stdout.write(json_line(row.as_dict()) + "\n")
            return EXIT_OK
        if not rows:
            print("no exchanges yet")
            return EXIT_OK
        print(f"{'#':>4}  {'time (+07)':16}  {'kind':4}  {'target':14}  {'result':7}  "
              f"{'objects':>7}  scope / detail")
        for r in rows:
            scope = r.incident or (f"{local_time(r.period_from)} - {local_time(r.period_to)}"
                                   if r.period_from else "-")
            print(f"{r.id:>4}  {local_time(r.ts):16}  {r.kind:4}  {r.target[:14]:14}  "
                  f"{r.result:7}  {r.objects:>7}  {scope}")
            print(f"{'':>4}  -> {r.recipient}: {r.detail}")
        return EXIT_OK

    return _guard(body)
