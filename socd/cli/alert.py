"""``socd alert``: list, show, acknowledge, resolve, mark false positive, assign, stats.

The commands read the config (``-c``) for the ``sqlite`` sink (the embedded store;
``--sink`` when there are several) and every ``elasticsearch`` sink. A change is
written to the store first (checked, with a history entry), then to each
Elasticsearch sink. When Elasticsearch cannot be updated the store keeps the change
and the command exits 1 saying so: running it again later is safe (idempotent).

Exit codes: 0 done (or nothing to change), 1 no such alert, a refused transition or
Elasticsearch not updated, 2 usage or configuration.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

from socd.cli.common import (
    BY_HELP,
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    TRY_AGAIN,
    On,
    SinkChoiceError,
    Subparsers,
    UsageError,
    WithConfig,
    choose_sink,
    clean_text,
    fail,
    json_line,
    run_guarded,
    sinks_of_type,
    table,
)
from socd.cli.identity import actor  # --by, else who ran sudo, else the login name
from socd.sqlite import Error as StoreError

_STATUS_CHOICES = ("new", "acknowledged", "false_positive", "resolved")


def register(sub: Subparsers, with_config: WithConfig) -> None:
    alert = sub.add_parser("alert", help="the alert lifecycle: list, show, ack, resolve, "
                           "false-positive, assign, stats")
    actions = alert.add_subparsers(dest="alert_command", required=True, metavar="ACTION")

    def common(p: argparse.ArgumentParser) -> None:
        with_config(p)
        p.add_argument("--sink", help="name of the sqlite sink (when the config has several)")

    p = actions.add_parser("list", help="alerts, newest first")
    common(p)
    p.add_argument("--status", choices=_STATUS_CHOICES)
    p.add_argument("--severity", choices=("low", "medium", "high", "critical"))
    p.add_argument("--unit", help="socd.unit (the agency); case and diacritics do not matter, "
                   "as for severities (`so y te` finds `Sở Y tế`)")
    p.add_argument("--rule", help="rule.id or rule.name, exactly")
    p.add_argument("--since", help="24h, 7d, 2w or a date/time (local: Asia/Ho_Chi_Minh)")
    p.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    p.add_argument("--json", action="store_true", help="one event (JSON) a line")
    p.set_defaults(handler=_list)

    p = actions.add_parser("show", help="one alert with its history")
    common(p)
    p.add_argument("id", metavar="ID", help="the alert id (event.hash) or a unique prefix")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_show)

    for verb, status, text in (
            ("ack", "acknowledged", "acknowledge (tiếp nhận) and take the alert; also "
             "reopens a resolved or false-positive one"),
            ("resolve", "resolved", "mark the alert handled (đã xử lý)"),
            ("false-positive", "false_positive", "mark the alert a false positive "
             "(cảnh báo nhầm); counted per rule for tuning")):
        p = actions.add_parser(verb, help=text)
        common(p)
        p.add_argument("id", metavar="ID", help="the alert id (event.hash) or a unique prefix")
        p.add_argument("--by", default=None, help=BY_HELP)
        p.add_argument("--note", default=None, help="why; kept in the history")
        p.set_defaults(handler=_change, status=status)

    p = actions.add_parser("assign", help="hand the alert to someone (status unchanged)")
    common(p)
    p.add_argument("id", metavar="ID")
    p.add_argument("--to", required=True, help="the new assignee ('' to unassign)")
    p.add_argument("--by", default=None, help=BY_HELP)
    p.add_argument("--note", default=None)
    p.set_defaults(handler=_assign)

    p = actions.add_parser("stats", help="alerts by status; false positives per rule")
    common(p)
    p.add_argument("--since", help="24h, 7d, 2w or a date/time (local: Asia/Ho_Chi_Minh)")
    p.add_argument("--all-rules", action="store_true",
                   help="also list rules without false positives")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_stats)


# -- settings --------------------------------------------------------------------------------


def _settings(args: argparse.Namespace) -> tuple[str, list[tuple[str, Any]]]:
    """(store path, [(name, elasticsearch sink config)]) from the config."""
    from socd import config as config_mod
    from socd.config import resolve_path

    cfg = config_mod.load(args.config)
    store_cfg = choose_sink(cfg, "sqlite", args.sink)
    if store_cfg is None:
        raise UsageError(f"{cfg.file} has no `sqlite` sink: `socd alert` works on the "
                         "embedded alert store (add a sink of type sqlite; see docs/alerts.md)")
    es = list(sinks_of_type(cfg, "elasticsearch").items())
    return resolve_path(cfg.state_dir, store_cfg.path), es


def _open(path: str) -> Any:
    from socd.alerts.store import AlertStore

    if not os.path.exists(path):
        raise UsageError(f"the alert store {path} does not exist yet (the daemon creates it "
                         "when it stores the first alert)")
    return AlertStore(path)


def _on_store(args: argparse.Namespace, body: Callable[[Any, list[tuple[str, Any]]], int]) -> int:
    """Open the alert store the command works on and run ``body`` on it (and the
    Elasticsearch sinks), its errors as messages and exit codes."""
    from socd.alerts.lifecycle import AlertError, AmbiguousAlertId

    try:
        path, es = _settings(args)
        store = _open(path)
    except (UsageError, SinkChoiceError) as exc:
        return fail(exc, EXIT_USAGE)
    except StoreError as exc:
        return fail(f"cannot open the alert store: {exc}")

    def ambiguous(exc: AmbiguousAlertId) -> int:
        print(f"socd: {exc}:", file=sys.stderr)
        for alert_id in exc.candidates:
            alert = store.get(alert_id)
            print(f"  {_line(alert) if alert else alert_id}", file=sys.stderr)
        print(f"hint: {exc.hint}", file=sys.stderr)
        return EXIT_FAILURE

    try:
        return run_guarded(
            lambda: body(store, es),
            On(AmbiguousAlertId, ambiguous),
            On(AlertError, EXIT_FAILURE),
            On(ValueError, EXIT_USAGE),
            # e.g. locked longer than the busy timeout
            On(StoreError, lambda exc: fail(f"alert store {path}: {exc}", hint=TRY_AGAIN)))
    finally:
        store.close()


def _note(value: str | None) -> str | None:
    return clean_text(value) if value and value.strip() else None


# -- output ----------------------------------------------------------------------------------


def _cut(text: str | None, width: int) -> str:
    value = text or "-"
    return value if len(value) <= width else value[:width - 1] + "…"


def _severity(code: str | None) -> str:
    from socd.severity import Severity

    try:
        return Severity(code).label if code else "-"
    except ValueError:
        return code or "-"


def _status(code: str) -> str:
    from socd.alerts.lifecycle import Status

    try:
        return Status(code).display()
    except ValueError:
        return code


def _rule(alert: Any) -> str:
    parts = [p for p in (alert.rule_id, alert.rule_name) if p]
    return " ".join(dict.fromkeys(str(p) for p in parts)) or "-"


def _where(alert: Any) -> str:
    return alert.host_name or alert.destination_ip or alert.source_ip or "-"


def _line(alert: Any) -> str:
    from socd.alerts.lifecycle import SHORT_ID, local_time

    return (f"{alert.id[:SHORT_ID]}  {local_time(alert.ts)}  {_severity(alert.severity)}  "
            f"{_cut(_rule(alert), 50)}  {_status(alert.status)}")


_COLUMNS = ("ID", "TIME (+07)", "SEVERITY", "UNIT", "RULE", "HOST/IP", "STATUS", "ASSIGNEE")
_WIDTHS = (10, 16, 12, 24, 40, 20, 30, 16)


# -- handlers --------------------------------------------------------------------------------


def _list(args: argparse.Namespace) -> int:
    from socd.alerts.lifecycle import SHORT_ID, local_time, parse_since

    if args.limit < 1:
        return fail("--limit must be at least 1", EXIT_USAGE)

    def body(store: Any, _es: Any) -> int:
        since = parse_since(args.since) if args.since else None
        alerts = store.find(status=args.status, severity=args.severity,
                            unit=args.unit or None,
                            rule=args.rule, limit=args.limit,
                            since_ms=int(since.timestamp() * 1000) if since else None)
        if args.json:
            for alert in alerts:
                print(json_line(alert.event()))
            return EXIT_OK
        if not alerts:
            print("no alerts match")
            return EXIT_OK
        rows = [(a.id[:SHORT_ID], local_time(a.ts), _severity(a.severity),
                 _cut(a.unit, _WIDTHS[3]), _cut(_rule(a), _WIDTHS[4]),
                 _cut(_where(a), _WIDTHS[5]), _status(a.status), _cut(a.assignee, _WIDTHS[7]))
                for a in alerts]
        print("\n".join(table([_COLUMNS, *rows])))
        return EXIT_OK

    return _on_store(args, body)


def _show(args: argparse.Namespace) -> int:
    from socd.alerts.lifecycle import local_time, resolve_id

    def body(store: Any, _es: Any) -> int:
        alert = store.get(resolve_id(store, args.id))
        history = store.history(alert.id)
        if args.json:
            print(json_line({"event": alert.event(),
                             "history": [{"ts": h.ts, "action": h.action,
                                          "status_from": h.status_from,
                                          "status_to": h.status_to,
                                          "by": h.by, "note": h.note} for h in history]}))
            return EXIT_OK
        event = alert.event()
        fields = [
            ("Time", f"{local_time(alert.ts, seconds=True)} (Asia/Ho_Chi_Minh; "
                     f"@timestamp {alert.ts})"),
            ("Severity", f"{alert.severity or '-'} ({_severity(alert.severity)})"),
            ("Status", _status(alert.status)),
            ("Assignee", alert.assignee or "-"),
            ("Last change", f"{local_time(alert.status_at, seconds=True)} by "
                            f"{alert.status_by}" if alert.status_at else "-"),
            ("Note", alert.status_note or "-"),
            ("Rule", _rule(alert)),
            ("Description", _get(event, "rule.description")),
            ("Unit", alert.unit or "-"),
            ("Layer", str(alert.layer) if alert.layer is not None else "-"),
            ("Asset kind", alert.asset_kind or "-"),
            ("Host", " ".join(x for x in (alert.host_name, _get(event, "host.ip", "")) if x)
             or "-"),
            ("Source", _endpoint(event, "source")),
            ("Destination", _endpoint(event, "destination")),
            ("IoC", ", ".join(_get(event, "socd.ioc.values", []) or []) or "-"),
            *_endpoint_details(event),
            ("Module", alert.module or "-"),
            ("Message", _get(event, "message")),
            ("Incident", _get(event, "socd.correlation_id")),
        ]
        print(f"Alert {alert.id}")
        for label, value in fields:
            print(f"  {label + ':':<13} {value}")
        print("History:")
        if not history:
            print("  (no changes yet)")
        for h in history:
            change = (f"{h.status_from} -> {h.status_to}" if h.status_from != h.status_to
                      else h.status_to)
            note = f"  \"{h.note}\"" if h.note else ""
            print(f"  {local_time(h.ts, seconds=True)}  {h.action:<15} {change:<30} "
                  f"by {h.by}{note}")
        return EXIT_OK

    return _on_store(args, body)


def _get(event: Any, path: str, default: Any = "-") -> Any:
    from socd.event import get

    value = get(event, path, default)
    if isinstance(value, list):
        return " ".join(str(v) for v in value) if path != "socd.ioc.values" else value
    return value if value not in (None, "") else default


# What an EDR alert says about the machine: shown only when the alert has it (an IDS
# alert has none of these), so the analyst sees the file, its hashes and the process.
_DETAILS = (("User", ("user.name",)), ("File", ("file.path", "file.name")),
            ("SHA-256", ("file.hash.sha256",)), ("SHA-1", ("file.hash.sha1",)),
            ("MD5", ("file.hash.md5",)), ("Process", ("process.executable", "process.name")),
            ("Command line", ("process.command_line",)),
            ("Parent", ("process.parent.executable", "process.parent.name")))


def _endpoint_details(event: Any) -> list[tuple[str, str]]:
    """(label, value) of the user, file, hashes and process the alert names."""
    out = []
    for label, paths in _DETAILS:
        value = next((v for p in paths if (v := _get(event, p, "")) != ""), "")
        if label == "Process" and value:
            pid = _get(event, "process.pid", "")
            value = f"{value} (pid {pid})" if pid != "" else value
        if value != "":
            out.append((label, str(value)))
    return out


def _endpoint(event: Any, side: str) -> str:
    ip, port = _get(event, f"{side}.ip", ""), _get(event, f"{side}.port", "")
    text = f"{ip}:{port}" if ip and port else str(ip or "")
    return text or "-"


def _change(args: argparse.Namespace) -> int:
    from socd.alerts.lifecycle import Status, resolve_id, set_status

    def body(store: Any, es: list[tuple[str, Any]]) -> int:
        by, note = actor(args.by), _note(args.note)
        outcome = set_status(store, resolve_id(store, args.id), Status(args.status),
                             by=by, note=note)
        print(outcome.message)
        return _push(outcome.alert, es)

    return _on_store(args, body)


def _assign(args: argparse.Namespace) -> int:
    from socd.alerts.lifecycle import assign, resolve_id

    def body(store: Any, es: list[tuple[str, Any]]) -> int:
        to = clean_text(args.to) or None
        outcome = assign(store, resolve_id(store, args.id), to, by=actor(args.by),
                         note=_note(args.note))
        print(outcome.message)
        return _push(outcome.alert, es)

    return _on_store(args, body)


def _push(alert: Any, es: list[tuple[str, Any]]) -> int:
    """Bring every Elasticsearch sink to the store's state of ``alert``."""
    from socd.alerts.lifecycle import update_elasticsearch

    code = EXIT_OK
    for name, config in es:
        result = update_elasticsearch(name, config, [alert])
        if result.ok:
            state = "updated" if result.updated else "already up to date"
            print(f"elasticsearch sink {name}: {state}")
            continue
        code = fail(f"Elasticsearch (sink {name}) was NOT updated: {result.error}. The alert "
                    "store was updated.", hint="run the same command again once Elasticsearch "
                    "is reachable and the alert is indexed; it is safe to repeat")
    return code


def _stats(args: argparse.Namespace) -> int:
    from socd.alerts.lifecycle import false_positive_counts, parse_since, status_counts

    def body(store: Any, _es: Any) -> int:
        since = parse_since(args.since) if args.since else None
        by_status = status_counts(store, since)
        rules = false_positive_counts(store, since, include_zero=args.all_rules)
        if args.json:
            print(json_line({"since": since.isoformat() if since else None,
                             "by_status": {s.value: n for s, n in by_status.items()},
                             "false_positives_by_rule": [r.as_dict() for r in rules]}))
            return EXIT_OK
        total = sum(by_status.values())
        scope = f" since {since.isoformat(timespec='minutes')}" if since else ""
        print(f"Alerts{scope}: {total}")
        for status, n in by_status.items():
            print(f"  {status.display():<32} {n:>8}")
        print("False positives by rule (cảnh báo nhầm theo quy tắc):")
        if not rules:
            print("  none")
            return EXIT_OK
        rows = [(_cut(r.rule_id or "-", 24), _cut(r.rule_name or "-", 48), str(r.false_positives),
                 str(r.total), f"{r.ratio:.1%}") for r in rules]
        heads = ("RULE", "NAME", "FP", "TOTAL", "FP RATIO")
        for line in table([heads, *rows], right=(2, 3, 4), indent="  "):
            print(line)
        return EXIT_OK

    return _on_store(args, body)
