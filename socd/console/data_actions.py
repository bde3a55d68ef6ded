"""What the console's buttons change: alert lifecycle (one alert or a bulk selection),
incidents from alerts, and blocking an alert's source.

One alert goes through :mod:`socd.alerts.lifecycle` exactly as ``socd alert`` does (the
transition rules, the history entry, the audit record with the user as ``by``). A bulk
action applies the same transition rules to every selected alert in **one** store
transaction (:meth:`AlertStore.update_many`): an alert whose status does not allow the
change is skipped and counted, never half-written; the view appends an audit record for
every changed alert, as a single change does, all in one audit-log transaction
(:meth:`socd.alerts.audit.AuditLog.append_many`: one durable write for 1,000 records).
Elasticsearch sinks are then brought to
the store's state (one ``_bulk`` request); a failure there is reported, the store being
the record.

Blocking uses the blocker sink's own decision path (:meth:`BlockStore.decide` with
:func:`socd.block.sink.make_policy` and :func:`socd.block.sink.make_guard`, the
allowlist and the host's own addresses), as ``socd block add`` does; the running
daemon pushes the decision to the firewall within its ``expiry_interval_secs``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from socd.alerts.audit import Entry, alert_change_details
from socd.alerts.lifecycle import (
    TRANSITIONS,
    VERBS,
    Outcome,
    Status,
    assign,
    set_status,
    update_elasticsearch,
)
from socd.alerts.store import KEEP, Change, StoredAlert, Updated
from socd.console.services import ConsoleServices

MAX_BULK: Final = 5000  # alerts in one bulk action (a form field each)
MAX_NOTE: Final = 1000  # characters of a note or reason
BULK_ACTIONS: Final = {"ack": Status.ACKNOWLEDGED, "false_positive": Status.FALSE_POSITIVE,
                       "resolve": Status.RESOLVED}


def clean(text: str | None, limit: int = MAX_NOTE) -> str | None:
    """A note from a form: control characters (but newlines) removed, cut to ``limit``;
    ``None`` when empty."""
    if text is None:
        return None
    kept = "".join(c for c in text if c in "\n\t" or (ord(c) >= 32 and c != "\x7f"))
    kept = kept.strip()[:limit]
    return kept or None


@dataclass
class BulkResult:
    """What a bulk action did: alerts changed (with the lifecycle action each took),
    already in that state, refused by the transition rules (by current status), and not
    found."""

    changes: list[tuple[Updated, str]] = field(default_factory=list)
    unchanged: int = 0
    refused: dict[str, int] = field(default_factory=dict)  # current status -> alerts
    missing: int = 0
    es_errors: list[str] = field(default_factory=list)

    @property
    def changed(self) -> list[StoredAlert]:
        return [u.after for u, _ in self.changes]

    def audit_entries(self, actor: str, extra: Mapping[str, Any]) -> list[Entry]:
        """One audit record per changed alert, as a single change writes it
        (:func:`socd.alerts.audit.record_alert_change`), plus ``extra`` (the console's
        ``via`` and client) and the size of the batch."""
        size = {"bulk": len(self.changes)}
        return [Entry(actor, "alert", u.after.id, action,
                      {**alert_change_details(u), **extra, **size})
                for u, action in self.changes]


def _current(alert: StoredAlert) -> Status:
    try:
        return Status(alert.status)
    except ValueError:
        return Status.NEW


def bulk_change(services: ConsoleServices, ids: Sequence[str], action: str, *, by: str,
                note: str | None = None, to: str | None = None) -> BulkResult:
    """``action`` (``ack``, ``false_positive``, ``resolve`` or ``assign`` to ``to``) on
    every alert of ``ids`` in one transaction (see the module docstring)."""
    store = services.alert_store()
    result = BulkResult()

    def decide(current: StoredAlert) -> Change | None:
        if action == "assign":
            if current.assignee == to:
                return None
            return Change(action="assign" if to else "unassign", status=current.status,
                          by=by, note=note, assignee=to)
        wanted, status = BULK_ACTIONS[action], _current(current)
        if status is wanted:
            return None
        if wanted not in TRANSITIONS[status]:
            result.refused[status.value] = result.refused.get(status.value, 0) + 1
            return None
        reopen = wanted is Status.ACKNOWLEDGED and status is not Status.NEW
        return Change(action="reopen" if reopen else VERBS[wanted].replace("-", "_"),
                      status=wanted.value, by=by, note=note,
                      assignee=by if wanted is Status.ACKNOWLEDGED else KEEP)

    if action != "assign" and action not in BULK_ACTIONS:
        raise ValueError(f"unknown bulk action {action!r}")
    wanted_ids = list(dict.fromkeys(ids))[:MAX_BULK]
    made: dict[str, str] = {}

    def deciding(current: StoredAlert) -> Change | None:
        change = decide(current)
        if change is not None:
            made[current.id] = change.action
        return change

    updated = store.update_many(wanted_ids, deciding)
    result.missing = len(wanted_ids) - len(updated)
    result.changes = [(u, made[u.after.id]) for u in updated if u.changed]
    result.unchanged = sum(1 for u in updated if not u.changed) - sum(result.refused.values())
    result.es_errors = sync_elasticsearch(services, result.changed)
    return result


def sync_elasticsearch(services: ConsoleServices, alerts: Sequence[StoredAlert]) -> list[str]:
    """Copy the store's state of ``alerts`` to every Elasticsearch sink; the errors."""
    if not alerts:
        return []
    errors = []
    for name, config in services.es_sinks:
        if len(alerts) == 1:
            outcome = update_elasticsearch(name, config, list(alerts))
            error = None if outcome.ok else outcome.error
        else:
            from socd.console.data_es import bulk_update

            # The next page reads what the queue reads: wait for Elasticsearch's
            # refresh only when that is Elasticsearch (see bulk_update).
            error = bulk_update(config, alerts, refresh="wait_for"
                                if services.reads_elasticsearch() else None)
        if error:
            errors.append(f"{name}: {error}")
    return errors


@dataclass(frozen=True, slots=True)
class OneResult:
    outcome: Outcome
    es_errors: list[str]


def change_one(services: ConsoleServices, alert_id: str, action: str, *, by: str,
               note: str | None = None, to: str | None = None) -> OneResult:
    """One alert through :mod:`socd.alerts.lifecycle` (it writes the audit record);
    raises its :class:`~socd.alerts.lifecycle.AlertError` when refused."""
    store = services.alert_store()
    if action == "assign":
        outcome = assign(store, alert_id, to, by=by, note=note)
    elif action in BULK_ACTIONS:
        outcome = set_status(store, alert_id, BULK_ACTIONS[action], by=by, note=note)
    else:
        raise ValueError(f"unknown action {action!r}")
    errors = sync_elasticsearch(services, [outcome.alert]) if outcome.changed else []
    return OneResult(outcome, errors)


# -- incidents --------------------------------------------------------------------------


def alert_triples(services: ConsoleServices, ids: Sequence[str]
                  ) -> list[tuple[str, str | None, str | None]]:
    """(id, severity, unit) of the stored alerts of ``ids`` (unknown ids left out), as
    :meth:`IncidentStore.open_incident` takes them."""
    store = services.alert_store()
    found = [store.get(i) for i in ids]
    return [(a.id, a.severity, a.unit) for a in found if a is not None]


def system_level(services: ConsoleServices, ids: Sequence[str]) -> int | None:
    """The highest ``socd.system_level`` (cấp độ) the alerts carry (enrichment set it
    from the asset inventory), for the serious-incident check."""
    from socd.event import get

    store = services.alert_store()
    levels = []
    for alert_id in ids:
        alert = store.get(alert_id)
        level = get(alert.event(), "socd.system_level") if alert is not None else None
        if isinstance(level, int) and 1 <= level <= 5:
            levels.append(level)
    return max(levels) if levels else None


# -- blocking ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BlockResult:
    """The decision's outcome: ``refused`` (why, e.g. the allowlist), else ``action``
    (add, extend...) and until when; ``None`` action: already blocked."""

    value: str
    refused: str | None = None
    action: str | None = None
    expires: float | None = None
    dry_run: bool = False


def block(services: ConsoleServices, value: str, *, reason: str, ref: str | None,
          by: str, ttl_secs: float | None = None) -> BlockResult:
    """Block ``value`` through the blocker sink's decision path (module docstring)."""
    from socd.block.decisions import Request, load_external_allowlist
    from socd.block.sink import make_guard, make_policy

    cfg = services.blocker
    store = services.blocks()
    assert cfg is not None  # blocks() refused otherwise
    request = Request(value.strip(), reason, origin="console", ref=ref or "", ttl=ttl_secs,
                      actor=f"console:{by}")
    guard = make_guard(cfg, load_external_allowlist(services.config))
    outcome = store.decide([request], make_policy(cfg), guard, dry_run=cfg.dry_run)
    if outcome.refused:
        return BlockResult(value, refused=str(outcome.refused[0][1]))
    if not outcome.changes:
        return BlockResult(value, dry_run=cfg.dry_run)
    change = outcome.changes[0]
    return BlockResult(change.decision.value, action=change.action,
                       expires=change.decision.expires, dry_run=cfg.dry_run)


def unblock(services: ConsoleServices, value: str, *, reason: str, by: str) -> bool:
    """Lift an active block (the daemon removes it from the firewall); False when
    ``value`` is not actively blocked."""
    cfg = services.blocker
    store = services.blocks()
    assert cfg is not None
    change = store.remove(value.strip(), actor=f"console:{by}", why=reason,
                          dry_run=cfg.dry_run, origin="console")
    return change is not None
