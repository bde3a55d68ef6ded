"""``socd test-rules`` and ``socd rules list`` (``rules import-sigma``:
:mod:`socd.cli.sigma`)."""

from __future__ import annotations

import argparse
import sys

from socd import config as config_mod
from socd.cli.common import EXIT_OK, Subparsers, WithConfig, table
from socd.cli.sigma import add_import_sigma
from socd.engine.loader import CompiledRule, load_paths


def register(sub: Subparsers, with_config: WithConfig) -> None:
    test = sub.add_parser("test-rules", help="run the tests written in rule files")
    with_config(test)
    test.add_argument("-k", dest="keyword", metavar="SUBSTRING",
                      help="only tests whose 'rule-id: test name' contains SUBSTRING")
    test.add_argument("paths", nargs="*", metavar="PATH",
                      help="rule files or directories (default: the configured rule paths)")
    test.set_defaults(handler=_test_rules)

    rules = sub.add_parser("rules", help="inspect detection rules")
    rules_sub = rules.add_subparsers(dest="rules_command", required=True, metavar="ACTION")
    listing = rules_sub.add_parser("list", help="id, severity, layer, enabled and file of "
                                   "every rule")
    with_config(listing)
    listing.add_argument("paths", nargs="*", metavar="PATH",
                         help="rule files or directories (default: the configured rule paths)")
    listing.set_defaults(handler=_list_rules)

    add_import_sigma(rules_sub)


def _load(args: argparse.Namespace) -> tuple[list[CompiledRule], set[str]]:
    if args.paths:
        from socd.cli.identity import as_invoker

        with as_invoker():  # the operator's rule files, read with their rights
            return load_paths(args.paths), set()
    from socd.engine import load_config_rules

    cfg = config_mod.load(args.config)
    return load_config_rules(cfg), set(cfg.document.rules.disabled)


def _test_rules(args: argparse.Namespace) -> int:
    from socd.engine.testing import report, run_tests

    rules, _ = _load(args)
    outcomes = run_tests(rules, args.keyword)
    return report(rules, outcomes, sys.stdout)


def _list_rules(args: argparse.Namespace) -> int:
    rules, disabled = _load(args)
    rows = [("ID", "SEVERITY", "LAYER", "ENABLED", "FILE")]
    for r in rules:
        enabled = r.rule.enabled and r.id not in disabled
        where = r.file if r.line is None else f"{r.file}:{r.line}"
        rows.append((r.id, r.rule.severity.value, str(r.rule.layer),
                     "yes" if enabled else "no", where))
    for line in table(rows):
        print(line)
    return EXIT_OK
