"""The alert lifecycle: statuses, allowed transitions, assignees, false-positive counts.

An alert (``event.kind: alert``) is ``new`` when classification first sees it.
Analysts move it on with ``socd alert`` (docs/alerts.md). Allowed changes:

* ``new`` -> ``acknowledged``, ``false_positive`` or ``resolved``;
* ``acknowledged`` -> ``false_positive`` or ``resolved``;
* ``false_positive`` or ``resolved`` -> ``acknowledged`` (reopen).

Asking for the status an alert already has is a no-op, not an error; nothing goes
back to ``new``.

The embedded store (:mod:`socd.alerts.store`) is the record: each change is checked and
written there in one transaction with its history entry, then appended to the
hash-chained audit log (:mod:`socd.alerts.audit`, ``audit.db`` beside the store).
Elasticsearch documents (same id, ``event.hash``) are then brought to the store's state
with :func:`update_elasticsearch`; that step is idempotent, so re-running a command
after an Elasticsearch outage repairs it.

Library code raises :class:`AlertError` subclasses; only the CLI turns them into exit
codes.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from enum import StrEnum
from typing import Any, Final

from prometheus_client import Gauge

from socd.alerts.store import KEEP, AlertStore, Change, StoredAlert, Updated
from socd.errors import SocdError
from socd.metrics import REGISTRY
from socd.tz import iso_or_none, parse_iso


class Status(StrEnum):
    """Lifecycle status of an alert (``socd.alert.status``)."""

    NEW = "new"
    ACKNOWLEDGED = "acknowledged"
    FALSE_POSITIVE = "false_positive"
    RESOLVED = "resolved"

    @property
    def label(self) -> str:
        """The Vietnamese label (NFC)."""
        return LABELS_VI[self]

    def display(self) -> str:
        """``code (nhãn)``, as the CLI shows it."""
        return f"{self.value} ({self.label})"


LABELS_VI: Final[Mapping[Status, str]] = {
    Status.NEW: unicodedata.normalize("NFC", "mới"),
    Status.ACKNOWLEDGED: unicodedata.normalize("NFC", "đã tiếp nhận"),
    Status.FALSE_POSITIVE: unicodedata.normalize("NFC", "cảnh báo nhầm"),
    Status.RESOLVED: unicodedata.normalize("NFC", "đã xử lý"),
}

TRANSITIONS: Final[Mapping[Status, frozenset[Status]]] = {
    Status.NEW: frozenset({Status.ACKNOWLEDGED, Status.FALSE_POSITIVE, Status.RESOLVED}),
    Status.ACKNOWLEDGED: frozenset({Status.FALSE_POSITIVE, Status.RESOLVED}),
    Status.FALSE_POSITIVE: frozenset({Status.ACKNOWLEDGED}),
    Status.RESOLVED: frozenset({Status.ACKNOWLEDGED}),
}

# The CLI verb that leads to each status (hints name the command to run).
VERBS: Final[Mapping[Status, str]] = {
    Status.ACKNOWLEDGED: "ack",
    Status.FALSE_POSITIVE: "false-positive",
    Status.RESOLVED: "resolve",
}

ALERT_FALSE_POSITIVES: Final = Gauge(
    "socd_alert_false_positives",
    "Alerts in the embedded store now marked false positive (cảnh báo nhầm), by sqlite sink "
    "and rule (rule.id, else rule.name); refreshed every 60 s by the sink, for the 200 "
    "rules with the most.",
    ["sink", "rule"],
    registry=REGISTRY,
)

MIN_PREFIX: Final = 6
SHORT_ID: Final = 10
TIMEZONE_NAME: Final = "Asia/Ho_Chi_Minh"
_HEX = re.compile(r"[0-9a-f]+")


def local_zone() -> tzinfo:
    """Asia/Ho_Chi_Minh; a fixed +07:00 where the tz database is missing (no DST there)."""
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo(TIMEZONE_NAME)
    except (ImportError, KeyError, ValueError):
        from datetime import timezone

        return timezone(timedelta(hours=7), "+07")


# -- errors ------------------------------------------------------------------------------


class AlertError(SocdError):
    """A lifecycle command cannot be carried out; ``hint`` says what to do instead."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.hint = hint
        super().__init__(message)


class AlertNotFound(AlertError):
    """No alert has this id or prefix."""


class AmbiguousAlertId(AlertError):
    """The prefix matches several alerts; ``candidates`` lists (some of) them."""

    def __init__(self, prefix: str, candidates: Sequence[str]) -> None:
        self.candidates = list(candidates)
        super().__init__(f"alert id prefix {prefix!r} is ambiguous; it matches "
                         f"{len(self.candidates)}{'+' if len(self.candidates) >= 10 else ''} "
                         "alerts", hint="give more characters of the id")


class InvalidTransition(AlertError):
    """The alert's current status does not allow the requested one."""


# -- ids -----------------------------------------------------------------------------------


def resolve_id(store: AlertStore, text: str) -> str:
    """The full id of the alert ``text`` names: a whole ``event.hash`` or a unique prefix
    of at least :data:`MIN_PREFIX` hex digits (like git)."""
    prefix = text.strip().lower()
    if len(prefix) < MIN_PREFIX or not _HEX.fullmatch(prefix):
        raise AlertError(f"{text!r} is not an alert id",
                         hint=f"an id is the event.hash: at least {MIN_PREFIX} hex digits, "
                         "as `socd alert list` shows")
    matches = store.ids_with_prefix(prefix, limit=10)
    if not matches:
        raise AlertNotFound(f"no alert with id {prefix}" if len(prefix) == 40
                            else f"no alert id starts with {prefix}",
                            hint="`socd alert list` shows the ids")
    if len(matches) > 1:
        raise AmbiguousAlertId(prefix, matches)
    return matches[0]


# -- changes -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a lifecycle command did: the alert after it, and whether anything changed."""

    alert: StoredAlert
    before: StoredAlert
    changed: bool
    message: str


def _status(alert: StoredAlert) -> Status:
    try:
        return Status(alert.status)
    except ValueError:
        return Status.NEW  # a value written by hand: treat it as untriaged


def set_status(store: AlertStore, alert_id: str, to: Status, *, by: str,
               note: str | None = None) -> Outcome:
    """Move the alert to ``to``; acknowledging also assigns it to ``by``.

    Raises :class:`AlertNotFound` or :class:`InvalidTransition`; the same status again
    is a no-op (``changed`` false).
    """
    if to is Status.NEW:
        raise InvalidTransition("an alert cannot be set back to new",
                                hint=f"reopen it with `socd alert ack {alert_id[:SHORT_ID]}`")

    def decide(current: StoredAlert) -> Change | None:
        status = _status(current)
        if status is to:
            return None
        if to not in TRANSITIONS[status]:
            raise InvalidTransition(
                f"alert {current.id[:SHORT_ID]} is {status.display()}; it cannot become "
                f"{to.display()} directly",
                hint=f"reopen it first with `socd alert ack {current.id[:SHORT_ID]}`, then "
                f"`socd alert {VERBS[to]} {current.id[:SHORT_ID]}`")
        reopen = to is Status.ACKNOWLEDGED and status is not Status.NEW
        action = "reopen" if reopen else VERBS[to].replace("-", "_")
        return Change(action=action, status=to.value, by=by, note=note,
                      assignee=by if to is Status.ACKNOWLEDGED else KEEP)

    updated = _update(store, alert_id, decide)
    short = alert_id[:SHORT_ID]
    if not updated.changed:
        after = updated.after
        who = f" by {after.status_by}" if after.status_by else ""
        assigned = f", assigned to {after.assignee}" if after.assignee else ""
        message = f"alert {short} is already {to.display()}{who}{assigned}; nothing changed"
        if to is Status.ACKNOWLEDGED:
            message += f" (to hand it over: socd alert assign {short} --to NAME)"
    else:
        message = (f"alert {short}: {_status(updated.before).display()} -> {to.display()}, "
                   f"by {by}")
        if updated.after.assignee:
            message += f", assigned to {updated.after.assignee}"
    return Outcome(updated.after, updated.before, updated.changed, message)


def assign(store: AlertStore, alert_id: str, to: str | None, *, by: str,
           note: str | None = None) -> Outcome:
    """Set (or with ``to=None`` clear) the assignee; the status stays as it is."""
    def decide(current: StoredAlert) -> Change | None:
        if current.assignee == to:
            return None
        return Change(action="assign" if to else "unassign", status=current.status, by=by,
                      note=note, assignee=to)

    updated = _update(store, alert_id, decide)
    short = alert_id[:SHORT_ID]
    if not updated.changed:
        message = (f"alert {short} is already assigned to {to}; nothing changed" if to
                   else f"alert {short} has no assignee; nothing changed")
    else:
        message = (f"alert {short}: assigned to {to} (was {updated.before.assignee or '-'}), "
                   f"by {by}" if to else f"alert {short}: unassigned, by {by}")
    return Outcome(updated.after, updated.before, updated.changed, message)


def _update(store: AlertStore, alert_id: str, decide: Any) -> Updated:
    made: list[Change] = []

    def deciding(current: StoredAlert) -> Change | None:
        change: Change | None = decide(current)
        if change is not None:
            made.append(change)
        return change

    updated = store.update(alert_id, deciding)
    if updated is None:
        raise AlertNotFound(f"no alert with id {alert_id}")
    if updated.changed:
        # Every committed change goes to the hash-chained audit log (socd.alerts.audit).
        from socd.alerts.audit import record_alert_change

        record_alert_change(store.path, updated, made[-1].action)
    return updated


# -- counts --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RuleFalsePositives:
    """False positives of one rule: what rule tuning and the reports read."""

    rule_id: str
    rule_name: str
    false_positives: int
    total: int

    @property
    def ratio(self) -> float:
        return self.false_positives / self.total if self.total else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"rule_id": self.rule_id, "rule_name": self.rule_name,
                "false_positives": self.false_positives, "total": self.total,
                "ratio": round(self.ratio, 4)}


def false_positive_counts(store: AlertStore, since: datetime | None = None, *,
                          include_zero: bool = False) -> list[RuleFalsePositives]:
    """Per rule: alerts now marked false positive and all alerts of the rule (alert time
    at or after ``since``), most false positives first. Rules without false positives
    are left out unless ``include_zero``. A reopened alert no longer counts."""
    rows = store.rule_counts(_ms(since))
    return [RuleFalsePositives(r.rule_id, r.rule_name, r.false_positives, r.total)
            for r in rows if include_zero or r.false_positives]


def status_counts(store: AlertStore, since: datetime | None = None) -> dict[Status, int]:
    """Alerts by status (every status present, zero included)."""
    raw = store.status_counts(_ms(since))
    counts = dict.fromkeys(Status, 0)
    for status, n in raw.items():
        try:
            counts[Status(status)] += n
        except ValueError:
            counts[Status.NEW] += n
    return counts


def _ms(since: datetime | None) -> int | None:
    return None if since is None else int(since.timestamp() * 1000)


_DURATION = re.compile(r"\s*(\d+)\s*([mhdw])\s*")


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``24h``, ``7d``, ``90m``, ``2w`` ago, or an ISO date/date-time (without an
    offset: Asia/Ho_Chi_Minh time)."""
    m = _DURATION.fullmatch(text)
    if m:
        unit = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}[m.group(2)]
        return (now or datetime.now(UTC)) - timedelta(seconds=int(m.group(1)) * unit)
    value = text.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            parsed = datetime.combine(date.fromisoformat(value), time())
        else:
            parsed = parse_iso(value, naive=None)
    except ValueError:
        raise ValueError(f"--since {text!r}: use a duration (24h, 7d, 2w) or a date "
                         "(2026-11-16, 2026-11-16T08:00)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=local_zone())


def local_time(ts: str | None, *, seconds: bool = False) -> str:
    """An RFC 3339 time as Asia/Ho_Chi_Minh wall time (``2026-11-16 08:12``)."""
    if not ts:
        return "-"
    dt = iso_or_none(ts)
    if dt is None:
        return ts
    return dt.astimezone(local_zone()).strftime("%Y-%m-%d %H:%M:%S" if seconds
                                                else "%Y-%m-%d %H:%M")


# -- Elasticsearch -------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class EsResult:
    """The outcome of one Elasticsearch sink's update."""

    sink: str
    ok: bool
    updated: int = 0  # documents changed
    unchanged: int = 0  # documents that already held the state
    error: str = ""


def es_fields(alert: StoredAlert) -> dict[str, Any]:
    """The ``socd.alert.*`` fields of the alert's current state."""
    return {"status": alert.status, "assignee": alert.assignee, "updated": alert.status_at,
            "updated_by": alert.status_by, "note": alert.status_note}


def es_client(config: Any) -> Any:
    """A synchronous client from an ``elasticsearch`` sink's config (the sink's own
    options: hosts, auth, TLS, timeout; no hidden retries)."""
    from elasticsearch import Elasticsearch

    from socd.alerting.elasticsearch import connection_options

    return Elasticsearch(config.hosts, **connection_options(config))


def update_elasticsearch(name: str, config: Any, alerts: Sequence[StoredAlert],
                         client: Any = None) -> EsResult:
    """Bring the documents of ``alerts`` in ``<index_prefix>-*`` to the store's state.

    An ``ids`` search over ``<index_prefix>-*`` finds each document's index (the sink
    chose it by event day; this also finds documents after a rollover or reindex),
    then the ``update`` API merges ``{"socd": {"alert": {...}}}`` into it as a partial
    document with ``refresh=true``. It needs no scripting (so no script text is ever
    built from input, and clusters without Painless or the reindex module work), and
    Elasticsearch reports ``noop`` when the document already holds the state, so a
    re-run writes nothing. Updating by id never creates an index or a document.

    Never raises for Elasticsearch problems: the result says what happened, since the
    store was already updated.
    """
    from elastic_transport import ConnectionError as TransportConnectionError
    from elastic_transport import ConnectionTimeout
    from elasticsearch import ApiError, NotFoundError

    own = client is None
    es = es_client(config) if own else client
    updated = unchanged = 0
    missing: list[str] = []
    try:
        found = es.search(index=f"{config.index_prefix}-*", allow_no_indices=True,
                          ignore_unavailable=True, source=False, size=len(alerts),
                          query={"ids": {"values": [a.id for a in alerts]}})
        where = {hit["_id"]: hit["_index"] for hit in found["hits"]["hits"]}
        for alert in alerts:
            index = where.get(alert.id)
            if index is None:
                missing.append(alert.id[:SHORT_ID])
                continue
            try:
                resp = es.update(index=index, id=alert.id, refresh=True, retry_on_conflict=5,
                                 doc={"socd": {"alert": es_fields(alert)}})
            except NotFoundError:  # deleted between the search and the update
                missing.append(alert.id[:SHORT_ID])
                continue
            if resp.get("result") == "noop":
                unchanged += 1
            else:
                updated += 1
    except (TransportConnectionError, ConnectionTimeout) as exc:
        return EsResult(name, False, updated, unchanged, f"unreachable: {_short(exc)}")
    except ApiError as exc:
        return EsResult(name, False, updated, unchanged,
                        f"request refused: {exc.meta.status} {_short(exc)}")
    finally:
        if own:
            es.close()
    if missing:
        return EsResult(name, False, updated, unchanged,
                        f"no document in {config.index_prefix}-* for {', '.join(missing)} "
                        "(not indexed yet?)")
    return EsResult(name, True, updated, unchanged)


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 300 else text[:297] + "..."
