#!/usr/bin/env python3
"""Write the socd(8) man page from the command line's own argparse parser.

    python scripts/gen_man.py [-o FILE]     # roff on stdout, or in FILE

The page cannot drift from the CLI: every command and subcommand (``socd ioc import``,
``socd block export``...), its usage, help text and options come from
:func:`socd.cli._parser`; the prose around them (files, environment, exit status) is
here. ``scripts/build-deb.sh`` and ``scripts/install.sh`` run it with the installed
virtualenv's interpreter and install the page as ``man8/socd.8`` (gzip-compressed in
the .deb). ``SOURCE_DATE_EPOCH`` sets the page's date (reproducible builds); without it,
today. Non-ASCII characters (Vietnamese help texts) are written as groff ``\\[uXXXX]``
escapes, so any roff renderer shows them without a preprocessor.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import unicodedata
from collections.abc import Iterator, Sequence

# Run as a script, sys.path[0] is scripts/: socd comes from the interpreter's packages
# (the installed venv), never from the folder the script happens to be in.
from socd import __version__
from socd.cli import _parser

DESCRIPTION = """\
socd collects security events (EDR alerts over MQTT, syslog over UDP, TCP and TLS,
webhooks, files, a network sensor), normalises them to ECS, classifies them with rules
and IoC lists, stores and delivers alerts (SQLite, NDJSON, Elasticsearch, Telegram,
e-mail, webhooks), groups them into incidents, writes reports and can block addresses
with nftables, ipset or EDL feeds for firewall appliances.

socd run is the daemon (the systemd unit socd.service runs it as the user socd);
the other commands work on the same configuration and state: check the configuration,
replay files, manage rules, the IoC store, block decisions, alerts and incidents,
produce reports and share with the national centre."""

FILES = (
    ("/etc/socd/socd.yaml", "The configuration (YAML). socd check-config validates it."),
    ("/etc/socd/socd.env", "NAME=value lines for the ${NAME} secrets of the configuration "
     "(mode 0640, root:socd); the unit reads it with EnvironmentFile=."),
    ("/etc/socd/rules.d/", "Local detection rules, beside the built-in rule pack."),
    ("/var/lib/socd/", "The state directory: alert and incident stores, IoC store, block "
     "decisions, spools, the intake journal (owned by the user socd)."),
    ("/opt/socd/", "The virtualenv of the .deb: /opt/socd/bin/socd (also /usr/bin/socd)."),
    ("/opt/socd/share/doc/socd/", "The documentation: configuration.md (every option), "
     "rules.md, runbook.md, deployment-systemd.md, blocking.md, ioc.md, sources/*.md and "
     "the rest; examples/ holds the systemd drop-ins, the Prometheus alerts and the "
     "Grafana dashboard."),
    ("/usr/lib/systemd/system/socd.service", "The hardened unit (no capabilities); "
     "socd-blocker.service and socd-blocker.socket: the privileged firewall helper."),
)
ENVIRONMENT = (
    ("SOCD_CONFIG", "The configuration file of commands run without -c."),
    ("STATE_DIRECTORY", "Set by systemd from StateDirectory=; the shipped configuration "
     "uses it for state_dir (default /var/lib/socd)."),
)
EXIT_STATUS = (
    ("0", "Success."),
    ("1", "A runtime failure (a service unreachable, a file unreadable, an import failed)."),
    ("2", "A bad configuration or bad usage; the message names the file, the line and the "
     "key, with a hint."),
)
SEE_ALSO = ("systemctl(1)", "journalctl(1)", "systemd.exec(5)", "nft(8)", "ipset(8)")


def esc(text: str) -> str:
    """Text for a roff line: backslashes and hyphen-minus escaped, non-ASCII as
    ``\\[uXXXX]``, a leading ``.`` or ``'`` neutralised."""
    out = []
    for ch in unicodedata.normalize("NFC", text):
        if ch == "\\":
            out.append("\\e")
        elif ch == "-":
            out.append("\\-")
        elif ord(ch) > 127:
            out.append(f"\\[u{ord(ch):04X}]")
        else:
            out.append(ch)
    line = "".join(out)
    return "\\&" + line if line.startswith((".", "'")) else line


def prose(text: str) -> str:
    """A paragraph written here: one roff line per source line, each escaped."""
    return "\n".join(esc(line) for line in text.splitlines())


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
             ) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser, str]]:
    """(command path, its parser, its one-line help) depth first, in the CLI's order."""
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {a.dest: a.help or "" for a in action._choices_actions}
        for name, sub in action.choices.items():
            yield (*path, name), sub, helps.get(name, "")
            yield from commands(sub, (*path, name))


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    formatter = parser._get_formatter()
    text = formatter._expand_help(action) if action.help else ""
    if action.choices and not isinstance(action, argparse._SubParsersAction) \
            and "{" not in text:
        text += f" (one of: {', '.join(map(str, action.choices))})"
    return text.strip()


def _metavar(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    if action.nargs == 0:
        return ""
    formatter = parser._get_formatter()
    default = action.dest.upper() if action.option_strings else action.dest
    return formatter._format_args(action, default)


def options(parser: argparse.ArgumentParser) -> list[str]:
    """``.TP`` entries for the arguments and options of one command."""
    lines: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction | argparse._HelpAction):
            continue
        if action.help == argparse.SUPPRESS:
            continue
        metavar = _metavar(parser, action)
        if action.option_strings:
            names = ", ".join(f"\\fB{esc(o)}\\fR" for o in action.option_strings)
            term = names + (f" \\fI{esc(metavar)}\\fR" if metavar else "")
        else:
            term = f"\\fI{esc(metavar)}\\fR"
        lines += [".TP", term, esc(_help(parser, action)) or "\\&"]
    return lines


def usage(parser: argparse.ArgumentParser) -> list[str]:
    text = parser.format_usage().strip()
    text = text.removeprefix("usage: ")
    return [".nf", *(esc(line.strip()) for line in text.splitlines()), ".fi"]


def page(parser: argparse.ArgumentParser, date: str) -> str:
    lines = [f'.TH "SOCD" "8" "{date}" "socd {esc(__version__)}" "System Administration"',
             # Paths and options must survive copy and paste: no hyphenation, no
             # stretched spaces.
             ".nh", ".ad l",
             '.SH "NAME"',
             "socd \\- " + esc(_first_lower((parser.description or "").rstrip("."))),
             '.SH "SYNOPSIS"',
             ".B socd",
             "[\\fB\\-\\-version\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR]",
             ".br",
             ".B socd",
             "\\fICOMMAND\\fR \\fB\\-\\-help\\fR",
             '.SH "DESCRIPTION"']
    for paragraph in DESCRIPTION.split("\n\n"):
        lines += [".PP", prose(paragraph)]
    lines += [".PP",
              "Every option of the configuration is described in",
              ".IR /opt/socd/share/doc/socd/configuration.md ;",
              "the runbook (in Vietnamese and English) is",
              ".IR /opt/socd/share/doc/socd/runbook.md ."]
    lines += ['.SH "COMMANDS"']
    for path, sub, summary in commands(parser):
        lines += [f".SS socd {esc(' '.join(path))}"]
        if summary:
            lines += [esc(summary[:1].upper() + summary[1:]) + ("" if summary.endswith(".")
                                                                 else ".")]
        lines += [".PP", *usage(sub)]
        entries = options(sub)
        if entries:
            lines += [".PP", *entries]
    for title, items in (("FILES", FILES), ("ENVIRONMENT", ENVIRONMENT),
                         ("EXIT STATUS", EXIT_STATUS)):
        lines += [f'.SH "{title}"']
        for term, text in items:
            lines += [".TP", f"\\fB{esc(term)}\\fR", prose(text)]
    lines += ['.SH "SEE ALSO"',
              ",\n".join(f".BR {name.split('(')[0]} ({name.split('(')[1]}"
                         for name in SEE_ALSO),
              ".PP",
              "The documentation in",
              ".IR /opt/socd/share/doc/socd/ ."]
    return "\n".join(lines) + "\n"


def _first_lower(text: str) -> str:
    return text[:1].lower() + text[1:]


def page_date() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    return time.strftime("%Y-%m-%d", time.gmtime(int(epoch) if epoch else None))


def main(argv: Sequence[str] | None = None) -> int:
    cli = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    cli.add_argument("-o", "--output", help="write the page here instead of stdout")
    args = cli.parse_args(argv)
    os.environ["COLUMNS"] = "80"  # argparse wraps usage lines to it: the same page anywhere
    text = page(_parser(), page_date())
    if args.output:
        with open(args.output, "w", encoding="ascii") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
