"""``socd incident`` (incidents and their legal deadlines) and ``socd audit`` (the
hash-chained audit log).

The incident store is ``<state_dir>/incidents.db`` (``incidents.db_path``); alert ids
are resolved against the embedded alert store (the ``sqlite`` sink; ``--sink`` when
there are several). Every change is appended to ``<state_dir>/audit.db``.

Exit codes like ``socd alert``: 0 done (or nothing to change), 1 no such incident or
alert, a refused change, a broken audit chain; 2 usage or configuration.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from socd.errors import SocdError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def register(sub: Any, with_config: Callable[[argparse.ArgumentParser], None]) -> None:
    _register_incident(sub, with_config)
    _register_audit(sub, with_config)


def _register_incident(sub: Any,  # noqa: PLR0915 (one parser per command)
                       with_config: Callable[[argparse.ArgumentParser], None]) -> None:
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
            p.add_argument("--by", default=None, help=_BY_HELP)

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
    p.add_argument("--format", choices=("md", "html", "pdf"), default="md")
    p.add_argument("--out", help="output file (default: stdout)")
    p.set_defaults(handler=_doc)


def _register_audit(sub: Any, with_config: Callable[[argparse.ArgumentParser], None]) -> None:
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
    p.set_defaults(handler=_audit_show)


# -- settings --------------------------------------------------------------------------------


class _Usage(SocdError):
    """A usage or configuration problem: exit 2."""


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
    from socd.incidents.config import incidents_config

    cfg = config_mod.load(args.config)
    icfg = incidents_config(cfg.document)
    stores = {n: p.config for n, p in cfg.sinks.items()
              if getattr(p.config, "type", None) == "sqlite"}
    store_path, problem = None, None
    sink = getattr(args, "sink", None)
    if sink:
        if sink not in stores:
            raise _Usage(f"no sqlite sink named {sink!r} in {cfg.file} "
                         f"(sqlite sinks: {', '.join(sorted(stores)) or 'none'})")
        store_path = resolve_path(cfg.state_dir, stores[sink].path)
    elif len(stores) == 1:
        store_path = resolve_path(cfg.state_dir, next(iter(stores.values())).path)
    elif stores:
        problem = (f"{cfg.file} has several sqlite sinks; choose one with --sink: "
                   f"{', '.join(sorted(stores))}")
    else:
        problem = (f"{cfg.file} has no `sqlite` sink: incidents link alerts of the embedded "
                   "alert store (see docs/alerts.md)")
    return _Settings(resolve_path(cfg.state_dir, icfg.db_path), audit_db_path(cfg),
                     store_path, problem, icfg, cfg)


def audit_db_path(cfg: Any) -> str:
    """``audit.db`` beside the alert store (where :mod:`socd.alerts` appends alert
    changes), so alerts and incidents share one chain; ``<state_dir>/audit.db`` when
    there is no single sqlite sink."""
    from socd.audit import DB_NAME
    from socd.config import resolve_path

    stores = [p.config for p in cfg.sinks.values()
              if getattr(p.config, "type", None) == "sqlite"]
    if len(stores) == 1:
        store = resolve_path(cfg.state_dir, stores[0].path)
        return os.path.join(os.path.dirname(store), DB_NAME)
    return os.path.join(cfg.state_dir, DB_NAME)


def _alert_store(s: _Settings) -> Any:
    from socd.store import AlertStore

    if s.alert_store is None:
        raise _Usage(s.alert_problem or "no alert store")
    if not os.path.exists(s.alert_store):
        raise _Usage(f"the alert store {s.alert_store} does not exist yet (the daemon creates "
                     "it when it stores the first alert)")
    return AlertStore(s.alert_store)


def _run(args: argparse.Namespace, body: Callable[[Any, _Settings], int], *,
         readonly: bool = False) -> int:
    """Open the store and run ``body``. A command that only reads (``readonly``) opens
    it read-only and never creates it: without a store there is no incident yet."""
    from socd.alerts import AlertError
    from socd.audit import AuditError
    from socd.incidents.store import IncidentError, IncidentStore
    from socd.sqlite import NoDatabase

    try:
        s = _settings(args)
        store = IncidentStore(s.incidents_db, s.audit_db, readonly=readonly)
    except _Usage as exc:
        print(f"socd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except NoDatabase as exc:
        return _no_incidents(args, exc.path)
    except sqlite3.Error as exc:
        print(f"socd: cannot open the incident store: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    try:
        return body(store, s)
    except _Usage as exc:
        print(f"socd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (IncidentError, AlertError) as exc:
        print(f"socd: {exc}", file=sys.stderr)
        candidates = getattr(exc, "candidates", None)
        for c in candidates or []:
            print(f"  {c}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return EXIT_FAILURE
    except AuditError as exc:
        print(f"socd: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except ValueError as exc:
        print(f"socd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except sqlite3.Error as exc:
        print(f"socd: incident store {s.incidents_db}: {exc}", file=sys.stderr)
        print("hint: try again; nothing was changed", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        store.close()


def _no_incidents(args: argparse.Namespace, path: str) -> int:
    """No store yet: an empty list, or "no such incident" for one that was asked for."""
    if args.incident_command == "list":
        if not args.json:
            print(f"no incidents yet ({path} does not exist)")
        return EXIT_OK
    print(f"socd: no incident {args.id}: no incident was opened yet ({path} does not "
          "exist)", file=sys.stderr)
    return EXIT_FAILURE


_BY_HELP = ("who acts, recorded in the history (default: $SUDO_USER, else the login name; "
            "required when that is only the service account, as under runuser -u socd)")


def _user(value: str | None) -> str:
    from socd.identity import actor

    return actor(value)


def _text(value: str) -> str:
    return unicodedata.normalize("NFC", value.strip())


def _when(text: str | None) -> datetime:
    from socd.alerts import parse_since

    if not text:
        return datetime.now(UTC)
    value = parse_since(text)
    if value > datetime.now(UTC):
        raise ValueError(f"{text!r} is in the future")
    return value


def _stored_alerts(s: _Settings, ids: list[str]) -> list[Any]:
    from socd.alerts import resolve_id

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
    enrichment would (socd.enrich), so the serious-incident check has a level without
    ``--level``. ``(None, "")`` when neither knows it.
    """
    levels = [lvl for e in events
              if isinstance(lvl := (e.get("socd") or {}).get("system_level"), int)]
    if levels:
        return max(levels), "alerts"
    if config is None:
        return None, ""
    from socd.enrich import build_enricher
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


def _local(ts: str | None, zone: str) -> str:
    from zoneinfo import ZoneInfo

    from socd.incidents.model import parse

    value = parse(ts)
    return value.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M") if value else "-"


def _dump(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def _summary(inc: Any, zone: str) -> str:
    serious = " — SỰ CỐ NGHIÊM TRỌNG (serious: escalate)" if inc.serious else ""
    return (f"{inc.id} [{inc.status} ({inc.status_label()})] {inc.title}; notification due "
            f"{_local(inc.notify_due, zone)}"
            + (f", final report due {_local(inc.report_due, zone)}" if inc.report_due else "")
            + serious)


# -- handlers --------------------------------------------------------------------------------


def _open(args: argparse.Namespace) -> int:
    def body(store: Any, s: _Settings) -> int:
        by = _user(args.by)
        stored = _stored_alerts(s, args.alert)
        alerts = [(a.id, a.severity, a.unit) for a in stored]
        level, origin = args.level, ""
        if level is None:
            level, origin = system_level_of([a.event() for a in stored], s.full)
        inc = store.open_incident(title=_text(args.title), by=by, alerts=alerts,
                         discovered=_when(args.discovered) if args.discovered else None,
                         description=_text(args.description) if args.description else None,
                         unit=_text(args.unit) if args.unit else None,
                         system_name=_text(args.system) if args.system else None,
                         system_level=level, national_critical=args.critical)
        print(f"opened {_summary(inc, s.config.timezone)}")
        if origin:
            where = "the alerts" if origin == "alerts" else "the asset inventory"
            print(f"security level (cấp độ) {level} of the affected system, from {where}; "
                  "--level sets another")
        return EXIT_OK

    return _run(args, body)


def _changed(inc: Any, changed: bool, what: str, zone: str) -> int:
    print(f"{inc.id}: {what}" if changed else f"{inc.id}: {what} already; nothing changed")
    if changed:
        print(f"  {_summary(inc, zone)}")
    return EXIT_OK


def _add(args: argparse.Namespace) -> int:
    def body(store: Any, s: _Settings) -> int:
        store.get(args.id)  # a missing incident before a missing alert store
        inc, changed = store.add_alerts(args.id, _resolve_alerts(s, args.alert),
                                        by=_user(args.by))
        return _changed(inc, changed, f"{len(inc.alerts)} alerts linked", s.config.timezone)

    return _run(args, body)


def _assign(args: argparse.Namespace) -> int:
    def body(store: Any, s: _Settings) -> int:
        to = _text(args.to) or None
        inc, changed = store.assign(args.id, to, by=_user(args.by))
        return _changed(inc, changed, f"assigned to {to}" if to else "unassigned",
                        s.config.timezone)

    return _run(args, body)


def _action(args: argparse.Namespace) -> int:
    def body(store: Any, s: _Settings) -> int:
        from socd.incidents.model import LAYER_LABELS

        if not args.text.strip():
            raise ValueError("--text is empty")
        inc = store.add_action(args.id, args.layer, _text(args.text), by=_user(args.by))
        print(f"{inc.id}: action recorded ({LAYER_LABELS[args.layer]}); "
              f"{len(inc.actions)} actions")
        return EXIT_OK

    return _run(args, body)


def _impact(args: argparse.Namespace) -> int:
    from socd.incidents.model import Impact

    codes = [c.strip() for c in args.set.split(",") if c.strip()]
    valid = {i.value for i in Impact}
    bad = [c for c in codes if c not in valid]
    if bad:
        print(f"socd: unknown impact {', '.join(bad)}; use: {', '.join(sorted(valid))}",
              file=sys.stderr)
        return EXIT_USAGE

    def body(store: Any, s: _Settings) -> int:
        inc, changed = store.set_impacts(args.id, [Impact(c) for c in codes],
                                         by=_user(args.by), beyond_capacity=args.beyond)
        code = _changed(inc, changed, "impacts: " + (", ".join(inc.impact_labels()) or "none"),
                        s.config.timezone)
        if inc.serious:
            print(f"  {inc.id} is a SERIOUS incident (sự cố nghiêm trọng, Decision 05/2017): "
                  "escalate and request support")
        return code

    return _run(args, body)


def _system(args: argparse.Namespace) -> int:
    def body(store: Any, s: _Settings) -> int:
        inc, changed = store.set_system(args.id, by=_user(args.by),
                                        name=_text(args.system) if args.system else None,
                                        level=args.level, national_critical=args.critical)
        return _changed(inc, changed, f"system {inc.system_name or '-'}, level "
                        f"{inc.system_level or '-'}", s.config.timezone)

    return _run(args, body)


def _mark(args: argparse.Namespace) -> int:
    def body(store: Any, s: _Settings) -> int:
        at, by = _when(args.at), _user(args.by)
        method = {"response-ended": store.response_ended, "notified": store.notified,
                  "reported": store.reported}[args.verb]
        inc, changed = method(args.id, at, by=by)
        zone = s.config.timezone
        what = {"response-ended": f"response ended at {_local(inc.response_ended_at, zone)}",
                "notified": f"notification sent at {_local(inc.notified_at, zone)}",
                "reported": f"final report sent at {_local(inc.reported_at, zone)}"}
        return _changed(inc, changed, what[args.verb], s.config.timezone)

    return _run(args, body)


def _close(args: argparse.Namespace) -> int:
    def body(store: Any, s: _Settings) -> int:
        inc, changed = store.close_incident(args.id, by=_user(args.by))
        code = _changed(inc, changed, "closed", s.config.timezone)
        if inc.reported_at is None:
            print(f"  the final report is still due by {_local(inc.report_due, s.config.timezone)}"
                  f": socd incident doc {inc.id} --kind final")
        return code

    return _run(args, body)


_HEADS = ("ID", "OPENED (+07)", "STATUS", "SEVERITY", "SERIOUS", "NOTIFY DUE", "REPORT DUE",
          "OVERDUE", "TITLE")


def _list(args: argparse.Namespace) -> int:
    def body(store: Any, s: _Settings) -> int:
        now = datetime.now(UTC)
        found = store.find(open_only=args.open, overdue_at=now if args.overdue else None)
        if args.json:
            for inc in found:
                print(_dump(inc.as_dict(now)))
            return EXIT_OK
        if not found:
            print("no incidents match")
            return EXIT_OK
        zone = s.config.timezone
        rows = [(i.id, _local(i.opened_at, zone), i.status, i.severity or "-",
                 "yes" if i.serious else "-", _local(i.notify_due, zone),
                 _local(i.report_due, zone), ",".join(d.value for d in i.overdue(now)) or "-",
                 i.title if len(i.title) <= 50 else i.title[:49] + "…") for i in found]
        widths = [max(len(h), *(len(r[n]) for r in rows)) for n, h in enumerate(_HEADS)]
        for row in (_HEADS, *rows):
            print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        return EXIT_OK

    return _run(args, body, readonly=True)


def _show(args: argparse.Namespace) -> int:
    from socd.audit import AuditLog

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
            print(_dump({**inc.as_dict(now), "history": [h.as_dict() for h in history]}))
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
            ("Discovered", _local(inc.discovered_at, zone)),
            ("Opened", f"{_local(inc.opened_at, zone)} by {inc.opened_by}"),
            ("Response ended", _local(inc.response_ended_at, zone)),
            ("Closed", _local(inc.closed_at, zone)),
        ]
        for label, value in fields:
            print(f"  {label + ':':<16} {value}")
        print(f"Deadlines ({zone}):")
        from socd.incidents.model import Deadline

        for d in Deadline:
            due = inc.due(d)
            when = (_local(due.isoformat(), zone) if due
                    else "(starts when the response ends)")
            print(f"  {d.value:<13} due {when:<32} done {_local(inc.done_at(d), zone):<17} "
                  f"{inc.compliance(d, now)}")
        print(f"Alerts ({len(inc.alerts)}):")
        for a in inc.alerts:
            print(f"  {a}")
        print(f"Actions ({len(inc.actions)}):")
        for act in inc.actions:
            print(f"  {_local(act.ts, zone)}  layer {act.layer}  {act.by}: {act.text}")
        print("History (audit log):")
        for h in history:
            print(f"  #{h.seq}  {_local(h.ts, zone)}  {h.action:<15} by {h.actor}  "
                  f"{_dump(h.details)}")
        return EXIT_OK

    return _run(args, body, readonly=True)


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
                      contact=s.config.contact, zone=s.config.timezone)
        data = render(ctx, args.format)
        if args.out:
            from socd.identity import as_invoker

            tmp = f"{args.out}.tmp"
            with as_invoker(), open(tmp, "wb") as fh:  # the operator's file, not state
                fh.write(data)
            with as_invoker():
                os.replace(tmp, args.out)
            print(f"{inc.id}: {args.kind} document written to {args.out} ({len(data)} bytes)")
        else:
            sys.stdout.flush()
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        return EXIT_OK

    return _run(args, body, readonly=True)


# -- audit -----------------------------------------------------------------------------------


def _audit_path(args: argparse.Namespace) -> str:
    from socd import config as config_mod

    return audit_db_path(config_mod.load(args.config))


def _verify(args: argparse.Namespace) -> int:
    from socd.audit import AuditError, anchor_path, read_anchor, verify

    path = _audit_path(args)
    head = None
    if args.head:
        seq, _, value = args.head.partition(":")
        if not seq.isdigit() or len(value) != 64:
            print("socd: --head is SEQ:HASH (the 64 hex digits `socd audit verify` printed)",
                  file=sys.stderr)
            return EXIT_USAGE
        head = (int(seq), value.lower())
    if args.allow_unkeyed_before is not None and args.allow_unkeyed_before < 1:
        print("socd: --allow-unkeyed-before is a record number (1 or more)", file=sys.stderr)
        return EXIT_USAGE
    try:
        if not os.path.exists(path):
            anchored = read_anchor(anchor_path(path)) or head
            if anchored is not None:
                print(f"socd: the audit log {path} is MISSING but records up to "
                      f"{anchored[0]} were written: it was deleted", file=sys.stderr)
                return EXIT_FAILURE
            print(f"no audit log at {path} yet (nothing recorded)")
            return EXIT_OK
        result = verify(path, expected_head=head,
                        allow_unkeyed_before=args.allow_unkeyed_before)
    except AuditError as exc:
        print(f"socd: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except sqlite3.Error as exc:
        print(f"socd: audit log {path}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
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


def _audit_show(args: argparse.Namespace) -> int:
    from socd.audit import AuditLog
    from socd.incidents.config import incidents_config

    path = _audit_path(args)
    if not os.path.exists(path):
        print(f"no audit log at {path} yet (nothing recorded)")
        return EXIT_OK
    if args.limit < 1:
        print("socd: --limit must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    from socd import config as config_mod

    zone = incidents_config(config_mod.load(args.config).document).timezone
    audit = AuditLog(path)
    try:
        obj = args.object
        if obj and obj.upper().startswith("SC-"):
            from socd.incidents.store import normalize_id

            obj = normalize_id(obj)
        for rec in audit.records(obj, limit=args.limit):
            if args.json:
                print(_dump(rec.as_dict()))
            else:
                print(f"#{rec.seq}  {_local(rec.ts, zone)}  {rec.object_type} "
                      f"{rec.object_id[:16]}  {rec.action}  by {rec.actor}  {_dump(rec.details)}")
    finally:
        audit.close()
    return EXIT_OK
