"""``socd incident``: incidents and their legal deadlines (``socd audit``, the
hash-chained audit log they are recorded in: :mod:`socd.cli.audit`).

The incident store is ``<state_dir>/incidents.db`` (``incidents.db_path``); alert ids
are resolved against the embedded alert store (the ``sqlite`` sink; ``--sink`` when
there are several). Every change is appended to ``<state_dir>/audit.db``.

Exit codes like ``socd alert``: 0 done (or nothing to change), 1 no such incident or
alert, a refused change; 2 usage or configuration.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from socd.cli.audit import audit_db_path
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
    in_zone,
    json_line,
    run_guarded,
    table,
    write_output,
    write_stdout,
)
from socd.cli.identity import actor  # --by, else who ran sudo, else the login name
from socd.sqlite import Error as StoreError

if TYPE_CHECKING:
    from socd.alerts.lifecycle import AlertError
    from socd.incidents.store import IncidentError


def _doc_number(text: str) -> str:
    from socd.reports.official import document_number  # the reports only when used

    return document_number(text)


def register(sub: Subparsers,  # noqa: PLR0915 (one parser per command)
             with_config: WithConfig) -> None:
    from socd.incidents.model import Impact

    inc = sub.add_parser("incident", help="incidents (sự cố): open from alerts, actions, "
                         "deadlines, documents")
    actions = inc.add_subparsers(dest="incident_command", required=True, metavar="ACTION")

    def common(p: argparse.ArgumentParser, *, by: bool = True, sink: bool = False) -> None:
        with_config(p)
        if sink:
            p.add_argument("--sink", help="name of the sqlite sink (when the config has "
                           "several)")
        if by:
            p.add_argument("--by", default=None, help=BY_HELP)

    p = actions.add_parser("open", help="open an incident from one or more alerts")
    common(p, sink=True)
    p.add_argument("--alert", action="append", required=True, metavar="ID",
                   help="alert id (event.hash) or unique prefix; repeat for several")
    p.add_argument("--title", required=True)
    p.add_argument("--description", help="what happened (mô tả)")
    p.add_argument("--discovered", help="when it was discovered (ISO date/time, local "
                   "Asia/Ho_Chi_Minh without an offset, or 2h/1d ago; default: now); the "
                   "notification is due 5 days later")
    p.add_argument("--system", help="the affected information system")
    p.add_argument("--level", type=int, choices=range(1, 6), metavar="1-5",
                   help="its security level (cấp độ)")
    p.add_argument("--critical", action="store_true",
                   help="the system is a nationally critical one")
    p.add_argument("--unit", help="the affected unit (default: the first alert's socd.unit)")
    p.set_defaults(handler=_open)

    p = actions.add_parser("add", help="link more alerts")
    common(p, sink=True)
    p.add_argument("id", metavar="ID")
    p.add_argument("--alert", action="append", required=True, metavar="ID")
    p.set_defaults(handler=_add)

    p = actions.add_parser("assign", help="hand the incident to someone")
    common(p)
    p.add_argument("id", metavar="ID")
    p.add_argument("--to", required=True, help="the new assignee ('' to unassign)")
    p.set_defaults(handler=_assign)

    p = actions.add_parser("action", help="record an action taken")
    common(p)
    p.add_argument("id", metavar="ID")
    p.add_argument("--layer", type=int, choices=(1, 2), required=True,
                   help="1 = on-site staff (lớp 1 tại chỗ), 2 = SOC (lớp 2)")
    p.add_argument("--text", required=True)
    p.set_defaults(handler=_action)

    p = actions.add_parser("impact", help="set the impacts (serious-incident check)")
    common(p)
    p.add_argument("id", metavar="ID")
    p.add_argument("--set", required=True, metavar="CODES",
                   help="comma-separated: " + ", ".join(i.value for i in Impact)
                   + " ('' for none)")
    cap = p.add_mutually_exclusive_group()
    cap.add_argument("--beyond-capacity", dest="beyond", action="store_const", const=True,
                     help="the owner cannot handle it alone (needed for a serious incident)")
    cap.add_argument("--within-capacity", dest="beyond", action="store_const", const=False)
    p.set_defaults(handler=_impact, beyond=None)

    p = actions.add_parser("system", help="set the affected system and its level")
    common(p)
    p.add_argument("id", metavar="ID")
    p.add_argument("--system", help="the affected information system")
    p.add_argument("--level", type=int, choices=range(1, 6), metavar="1-5")
    crit = p.add_mutually_exclusive_group()
    crit.add_argument("--critical", dest="critical", action="store_const", const=True)
    crit.add_argument("--not-critical", dest="critical", action="store_const", const=False)
    p.set_defaults(handler=_system, critical=None)

    for verb, text in (("response-ended", "the response ended (the final report is due 5 "
                        "days later)"),
                       ("notified", "the notification (báo cáo ban đầu) was sent to the "
                        "authority"),
                       ("reported", "the final report (báo cáo kết thúc) was sent")):
        p = actions.add_parser(verb, help=text)
        common(p)
        p.add_argument("id", metavar="ID")
        p.add_argument("--at", help="when (default: now; ISO, local without an offset)")
        p.set_defaults(handler=_mark, verb=verb)

    p = actions.add_parser("close", help="close (ends the response now if not recorded)")
    common(p)
    p.add_argument("id", metavar="ID")
    p.set_defaults(handler=_close)

    p = actions.add_parser("list", help="incidents, newest first")
    common(p, by=False)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--open", action="store_true", help="only those not closed")
    which.add_argument("--overdue", action="store_true",
                       help="only those past a deadline with the action not done")
    p.add_argument("--json", action="store_true", help="one incident (JSON) a line")
    p.set_defaults(handler=_list)

    p = actions.add_parser("show", help="one incident: details, alerts, actions, history")
    common(p, by=False)
    p.add_argument("id", metavar="ID")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_show)

    p = actions.add_parser("doc", help="the notification or final report document")
    common(p, by=False, sink=True)
    p.add_argument("id", metavar="ID")
    p.add_argument("--kind", choices=("notification", "final"), required=True)
    p.add_argument("--format", choices=("md", "html", "pdf", "docx"), default="md",
                   help="html, pdf and docx are in the official layout (`documents:`)")
    p.add_argument("--number", type=_doc_number, help="the document's number in the `Số:` "
                   "line (default: blank, for the clerk who registers it)")
    p.add_argument("--out", help="output file (default: stdout)")
    p.set_defaults(handler=_doc)


# -- settings --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Settings:
    incidents_db: str
    audit_db: str
    alert_store: str | None
    alert_problem: str | None
    config: Any  # IncidentsConfig
    full: Any = None  # the whole socd.config.Config (the asset inventory, for levels)


def _settings(args: argparse.Namespace) -> _Settings:
    from socd import config as config_mod
    from socd.config import resolve_path

    cfg = config_mod.load(args.config)
    icfg = cfg.document.incidents
    # The alert store matters only to the commands that read alerts: without one (or
    # with several and no --sink) the others still work, those fail when they need it.
    sink = getattr(args, "sink", None)
    store_path, problem = None, None
    try:
        chosen = choose_sink(cfg, "sqlite", sink)
    except SinkChoiceError as exc:
        if sink:
            raise  # --sink names no sqlite sink
        problem = str(exc)
    else:
        if chosen is None:
            problem = (f"{cfg.file} has no `sqlite` sink: incidents link alerts of the "
                       "embedded alert store (see docs/alerts.md)")
        else:
            store_path = resolve_path(cfg.state_dir, chosen.path)
    return _Settings(resolve_path(cfg.state_dir, icfg.db_path), audit_db_path(cfg),
                     store_path, problem, icfg, cfg)


def _alert_store(s: _Settings) -> Any:
    from socd.alerts.store import AlertStore

    if s.alert_store is None:
        raise UsageError(s.alert_problem or "no alert store")
    if not os.path.exists(s.alert_store):
        raise UsageError(f"the alert store {s.alert_store} does not exist yet (the daemon creates "
                     "it when it stores the first alert)")
    return AlertStore(s.alert_store)


def _on_store(args: argparse.Namespace, body: Callable[[Any, _Settings], int], *,
         readonly: bool = False) -> int:
    """Open the store and run ``body``. A command that only reads (``readonly``) opens
    it read-only and never creates it: without a store there is no incident yet."""
    from socd.alerts.audit import AuditError
    from socd.alerts.lifecycle import AlertError
    from socd.incidents.store import IncidentError, IncidentStore
    from socd.sqlite import NoDatabase

    try:
        s = _settings(args)
        store = IncidentStore(s.incidents_db, s.audit_db, readonly=readonly)
    except (UsageError, SinkChoiceError) as exc:
        return fail(exc, EXIT_USAGE)
    except NoDatabase as exc:
        return _no_incidents(args, exc.path)
    except StoreError as exc:
        return fail(f"cannot open the incident store: {exc}")
    try:
        return run_guarded(
            lambda: body(store, s),
            On(UsageError, EXIT_USAGE),
            On(IncidentError, _refused),
            On(AlertError, _refused),
            On(AuditError, EXIT_FAILURE),
            On(ValueError, EXIT_USAGE),
            On(StoreError,
               lambda exc: fail(f"incident store {s.incidents_db}: {exc}", hint=TRY_AGAIN)))
    finally:
        store.close()


def _refused(exc: IncidentError | AlertError) -> int:
    """A change refused (or an id not found): the message, the ids it could mean, the
    hint."""
    print(f"socd: {exc}", file=sys.stderr)
    for candidate in getattr(exc, "candidates", None) or []:
        print(f"  {candidate}", file=sys.stderr)
    if exc.hint:
        print(f"hint: {exc.hint}", file=sys.stderr)
    return EXIT_FAILURE


def _no_incidents(args: argparse.Namespace, path: str) -> int:
    """No store yet: an empty list, or "no such incident" for one that was asked for."""
    if args.incident_command == "list":
        if not args.json:
            print(f"no incidents yet ({path} does not exist)")
        return EXIT_OK
    return fail(f"no incident {args.id}: no incident was opened yet ({path} does not exist)")


def _when(text: str | None) -> datetime:
    from socd.alerts.lifecycle import parse_since

    if not text:
        return datetime.now(UTC)
    value = parse_since(text)
    if value > datetime.now(UTC):
        raise ValueError(f"{text!r} is in the future")
    return value


def _stored_alerts(s: _Settings, ids: list[str]) -> list[Any]:
    from socd.alerts.lifecycle import resolve_id

    store = _alert_store(s)
    try:
        return [store.get(resolve_id(store, text)) for text in ids]
    finally:
        store.close()


def _resolve_alerts(s: _Settings, ids: list[str]) -> list[tuple[str, str | None, str | None]]:
    return [(a.id, a.severity, a.unit) for a in _stored_alerts(s, ids)]


def system_level_of(events: list[Any], config: Any) -> tuple[int | None, str]:
    """The security level (cấp độ) of the alerts' systems, and where it came from.

    The highest ``socd.system_level`` of the alerts; alerts stored without one (from
    before the asset inventory listed their host) are looked up in the inventory as
    enrichment would (socd.engine.enrich), so the serious-incident check has a level without
    ``--level``. ``(None, "")`` when neither knows it.
    """
    levels = [lvl for e in events
              if isinstance(lvl := (e.get("socd") or {}).get("system_level"), int)]
    if levels:
        return max(levels), "alerts"
    if config is None:
        return None, ""
    from socd.engine.enrich import build_enricher
    from socd.errors import ConfigError

    try:
        enricher = build_enricher(config)
    except ConfigError:
        return None, ""  # `socd check-config` names the broken inventory
    if enricher is None:
        return None, ""
    try:
        found = [hit[0].system_level for e in events if (hit := enricher.find(e)) is not None]
    finally:
        enricher.close()
    levels = [lvl for lvl in found if lvl is not None]
    return (max(levels), "inventory") if levels else (None, "")


# -- output ----------------------------------------------------------------------------------


def _summary(inc: Any, zone: str) -> str:
    serious = " — SỰ CỐ NGHIÊM TRỌNG (serious: escalate)" if inc.serious else ""
    return (f"{inc.id} [{inc.status} ({inc.status_label()})] {inc.title}; notification due "
            f"{in_zone(inc.notify_due, zone)}"
            + (f", final report due {in_zone(inc.report_due, zone)}" if inc.report_due else "")
            + serious)


# -- handlers --------------------------------------------------------------------------------


def _open(args: argparse.Namespace) -> int:
    def body(store: Any, s: _Settings) -> int:
        by = actor(args.by)
        stored = _stored_alerts(s, args.alert)
        alerts = [(a.id, a.severity, a.unit) for a in stored]
        level, origin = args.level, ""
        if level is None:
            level, origin = system_level_of([a.event() for a in stored], s.full)
        inc = store.open_incident(title=clean_text(args.title), by=by, alerts=alerts,
                         discovered=_when(args.discovered) if args.discovered else None,
                         description=clean_text(args.description) if args.description else None,
                         unit=clean_text(args.unit) if args.unit else None,
                         system_name=clean_text(args.system) if args.system else None,
                         system_level=level, national_critical=args.critical)
        print(f"opened {_summary(inc, s.config.timezone)}")
        if origin:
            where = "the alerts" if origin == "alerts" else "the asset inventory"
            print(f"security level (cấp độ) {level} of the affected system, from {where}; "
                  "--level sets another")
        return EXIT_OK

    return _on_store(args, body)


def _changed(inc: Any, changed: bool, what: str, zone: str) -> int:
    print(f"{inc.id}: {what}" if changed else f"{inc.id}: {what} already; nothing changed")
    if changed:
        print(f"  {_summary(inc, zone)}")
    return EXIT_OK


def _add(args: argparse.Namespace) -> int:
    def body(store: Any, s: _Settings) -> int:
        store.get(args.id)  # a missing incident before a missing alert store
        inc, changed = store.add_alerts(args.id, _resolve_alerts(s, args.alert),
                                        by=actor(args.by))
        return _changed(inc, changed, f"{len(inc.alerts)} alerts linked", s.config.timezone)

    return _on_store(args, body)


def _assign(args: argparse.Namespace) -> int:
    def body(store: Any, s: _Settings) -> int:
        to = clean_text(args.to) or None
        inc, changed = store.assign(args.id, to, by=actor(args.by))
        return _changed(inc, changed, f"assigned to {to}" if to else "unassigned",
                        s.config.timezone)

    return _on_store(args, body)


def _action(args: argparse.Namespace) -> int:
    def body(store: Any, s: _Settings) -> int:
        from socd.incidents.model import LAYER_LABELS

        if not args.text.strip():
            raise ValueError("--text is empty")
        inc = store.add_action(args.id, args.layer, clean_text(args.text), by=actor(args.by))
        print(f"{inc.id}: action recorded ({LAYER_LABELS[args.layer]}); "
              f"{len(inc.actions)} actions")
        return EXIT_OK

    return _on_store(args, body)


def _impact(args: argparse.Namespace) -> int:
    from socd.incidents.model import Impact

    codes = [c.strip() for c in args.set.split(",") if c.strip()]
    valid = {i.value for i in Impact}
    bad = [c for c in codes if c not in valid]
    if bad:
        return fail(f"unknown impact {', '.join(bad)}; use: {', '.join(sorted(valid))}",
                    EXIT_USAGE)

    def body(store: Any, s: _Settings) -> int:
        inc, changed = store.set_impacts(args.id, [Impact(c) for c in codes],
                                         by=actor(args.by), beyond_capacity=args.beyond)
        code = _changed(inc, changed, "impacts: " + (", ".join(inc.impact_labels()) or "none"),
                        s.config.timezone)
        if inc.serious:
            print(f"  {inc.id} is a SERIOUS incident (sự cố nghiêm trọng, Decision 05/2017): "
                  "escalate and request support")
        return code

    return _on_store(args, body)


def _system(args: argparse.Namespace) -> int:
    def body(store: Any, s: _Settings) -> int:
        inc, changed = store.set_system(args.id, by=actor(args.by),
                                        name=clean_text(args.system) if args.system else None,
                                        level=args.level, national_critical=args.critical)
        return _changed(inc, changed, f"system {inc.system_name or '-'}, level "
                        f"{inc.system_level or '-'}", s.config.timezone)

    return _on_store(args, body)


def _mark(args: argparse.Namespace) -> int:
    def body(store: Any, s: _Settings) -> int:
        at, by = _when(args.at), actor(args.by)
        method = {"response-ended": store.response_ended, "notified": store.notified,
                  "reported": store.reported}[args.verb]
        inc, changed = method(args.id, at, by=by)
        zone = s.config.timezone
        what = {"response-ended": f"response ended at {in_zone(inc.response_ended_at, zone)}",
                "notified": f"notification sent at {in_zone(inc.notified_at, zone)}",
                "reported": f"final report sent at {in_zone(inc.reported_at, zone)}"}
        return _changed(inc, changed, what[args.verb], s.config.timezone)

    return _on_store(args, body)


def _close(args: argparse.Namespace) -> int:
    def body(store: Any, s: _Settings) -> int:
        inc, changed = store.close_incident(args.id, by=actor(args.by))
        code = _changed(inc, changed, "closed", s.config.timezone)
        if inc.reported_at is None:
            print(f"  the final report is still due by {in_zone(inc.report_due, s.config.timezone)}"
                  f": socd incident doc {inc.id} --kind final")
        return code

    return _on_store(args, body)


_HEADS = ("ID", "OPENED (+07)", "STATUS", "SEVERITY", "SERIOUS", "NOTIFY DUE", "REPORT DUE",
          "OVERDUE", "TITLE")


def _list(args: argparse.Namespace) -> int:
    def body(store: Any, s: _Settings) -> int:
        now = datetime.now(UTC)
        found = store.find(open_only=args.open, overdue_at=now if args.overdue else None)
        if args.json:
            for inc in found:
                print(json_line(inc.as_dict(now)))
            return EXIT_OK
        if not found:
            print("no incidents match")
            return EXIT_OK
        zone = s.config.timezone
        rows = [(i.id, in_zone(i.opened_at, zone), i.status, i.severity or "-",
                 "yes" if i.serious else "-", in_zone(i.notify_due, zone),
                 in_zone(i.report_due, zone), ",".join(d.value for d in i.overdue(now)) or "-",
                 i.title if len(i.title) <= 50 else i.title[:49] + "…") for i in found]
        for line in table([_HEADS, *rows]):
            print(line)
        return EXIT_OK

    return _on_store(args, body, readonly=True)


def _show(args: argparse.Namespace) -> int:
    from socd.alerts.audit import AuditLog

    def body(store: Any, s: _Settings) -> int:
        now = datetime.now(UTC)
        inc = store.get(args.id)
        history = []
        if os.path.exists(s.audit_db):
            audit = AuditLog(s.audit_db)
            try:
                history = list(audit.records(inc.id))
            finally:
                audit.close()
        if args.json:
            print(json_line({**inc.as_dict(now), "history": [h.as_dict() for h in history]}))
            return EXIT_OK
        zone = s.config.timezone
        print(f"Incident {inc.id}: {inc.title}")
        fields = [
            ("Status", f"{inc.status} ({inc.status_label()})"),
            ("Serious", "YES — sự cố nghiêm trọng: escalate" if inc.serious else "no"),
            ("Severity", inc.severity or "-"), ("Assignee", inc.assignee or "-"),
            ("Unit", inc.unit or "-"),
            ("System", f"{inc.system_name or '-'} (level {inc.system_level or '-'}"
                       f"{', nationally critical' if inc.national_critical else ''})"),
            ("Impacts", ", ".join(f"{c} ({lbl})" for c, lbl in
                                  zip(inc.impacts, inc.impact_labels(), strict=True)) or "-"),
            ("Beyond capacity", "yes" if inc.beyond_capacity else "no"),
            ("Description", inc.description or "-"),
            ("Discovered", in_zone(inc.discovered_at, zone)),
            ("Opened", f"{in_zone(inc.opened_at, zone)} by {inc.opened_by}"),
            ("Response ended", in_zone(inc.response_ended_at, zone)),
            ("Closed", in_zone(inc.closed_at, zone)),
        ]
        for label, value in fields:
            print(f"  {label + ':':<16} {value}")
        print(f"Deadlines ({zone}):")
        from socd.incidents.model import Deadline

        for d in Deadline:
            due = inc.due(d)
            when = (in_zone(due.isoformat(), zone) if due
                    else "(starts when the response ends)")
            print(f"  {d.value:<13} due {when:<32} done {in_zone(inc.done_at(d), zone):<17} "
                  f"{inc.compliance(d, now)}")
        print(f"Alerts ({len(inc.alerts)}):")
        for a in inc.alerts:
            print(f"  {a}")
        print(f"Actions ({len(inc.actions)}):")
        for act in inc.actions:
            print(f"  {in_zone(act.ts, zone)}  layer {act.layer}  {act.by}: {act.text}")
        print("History (audit log):")
        for h in history:
            print(f"  #{h.seq}  {in_zone(h.ts, zone)}  {h.action:<15} by {h.actor}  "
                  f"{json_line(h.details)}")
        return EXIT_OK

    return _on_store(args, body, readonly=True)


def _doc(args: argparse.Namespace) -> int:
    from socd.incidents.documents import context, render

    def body(store: Any, s: _Settings) -> int:
        inc = store.get(args.id)
        events, missing = [], []
        if inc.alerts:
            alerts = _alert_store(s)
            try:
                for alert_id in inc.alerts:
                    row = alerts.get(alert_id)
                    if row is None:
                        missing.append(alert_id)
                    else:
                        events.append(row.event())
            finally:
                alerts.close()
        ctx = context(inc, args.kind, events=events, missing_alerts=missing,
                      contact=s.config.contact, zone=s.config.timezone,
                      documents=s.full.document.documents if s.full else None,
                      number=args.number)
        data = render(ctx, args.format)
        if args.out:
            write_output(args.out, data)
            print(f"{inc.id}: {args.kind} document written to {args.out} ({len(data)} bytes)")
        else:
            write_stdout(data)
        return EXIT_OK

    return _on_store(args, body, readonly=True)
