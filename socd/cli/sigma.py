"""``socd rules import-sigma FILE|DIR... [-o OUT.yaml]`` (docs/sigma.md).

Wire it into the ``rules`` command group with :func:`add_import_sigma`, passing the
``rules`` subparsers object. Exit codes: 0 when every file parsed (rules that could
not be converted are reported on stderr, not errors), 1 when a file could not be
parsed or read, 2 for a missing input path.
"""

from __future__ import annotations

import argparse
import os
import sys

from socd.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    Subparsers,
    WithConfig,
    fail,
    write_output,
)


def add_import_sigma(rules_subparsers: Subparsers) -> argparse.ArgumentParser:
    p = rules_subparsers.add_parser(
        "import-sigma", help="convert Sigma rules into a socd rule file",
        description="Convert Sigma rules (files, or directories searched recursively for "
        "*.yml/*.yaml) into socd rules. Rules that cannot be converted are reported on "
        "stderr with the reason. Exit 1 only on parse errors.")
    p.add_argument("paths", nargs="+", metavar="FILE|DIR", help="Sigma rule files or dirs")
    p.add_argument("-o", "--output", metavar="OUT.yaml",
                   help="write the socd rule file here (default: stdout)")
    p.add_argument("--keep-unmapped", action="store_true",
                   help="keep fields without a socd mapping under their Sigma name "
                   "(default: refuse such rules)")
    p.add_argument("--id-prefix", default="sigma-",
                   help="prefix of the generated rule ids (default: %(default)s)")
    p.add_argument("-q", "--quiet", action="store_true", help="no report on stderr")
    p.set_defaults(handler=run_import_sigma)
    return p


def register(sub: Subparsers, with_config: WithConfig | None = None) -> None:
    """Stand-alone registration: a ``rules`` group holding only ``import-sigma``."""
    rules = sub.add_parser("rules", help="inspect and import detection rules")
    rules_sub = rules.add_subparsers(dest="rules_command", required=True, metavar="ACTION")
    add_import_sigma(rules_sub)


def run_import_sigma(args: argparse.Namespace) -> int:
    from socd.engine import sigma

    missing = [p for p in args.paths if p != "-" and not os.path.exists(p)]
    if missing:
        return fail(f"no such file or directory: {', '.join(missing)}", EXIT_USAGE)
    conv = sigma.convert_paths(args.paths, keep_unmapped=args.keep_unmapped,
                               id_prefix=args.id_prefix)
    text = sigma.to_yaml(conv, args.paths)
    if args.output:
        write_output(args.output, text)
    else:
        sys.stdout.write(text)
    if not args.quiet:
        for line in sigma.report_lines(conv):
            print(line, file=sys.stderr)
    return EXIT_OK if conv.ok else EXIT_FAILURE
