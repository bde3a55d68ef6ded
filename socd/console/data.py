"""The console's alerts: one :class:`AlertSource` protocol, read from the embedded store or
from Elasticsearch with the same results.

The queue is an :class:`~socd.alerts.store.AlertQuery` (filters, free text, a keyset
cursor) answered by :class:`StoreAlertSource` (SQLite, :meth:`AlertStore.search`) or
:class:`socd.console.data_es.ElasticsearchAlertSource` (``<index_prefix>-*``). Both order
by ``(@timestamp, event.hash)`` and count per severity up to :data:`COUNT_CAP`, so the
same query shows the same page from either (tests/integration/test_console_es.py).

The query comes from the page's URL: every parameter is hostile, so
:func:`query_from_params` keeps only known values (a severity, status, layer or asset
kind outside its closed set is dropped, texts are cut to :data:`MAX_TEXT`) and never
raises: a bad cursor or date means "from the start", not an error page.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Final, Protocol

from socd.alerts.lifecycle import Status, local_zone
from socd.alerts.store import (
    SORT_COLUMNS,
    SORTS,
    AlertQuery,
    AlertStore,
    HistoryEntry,
    StoredAlert,
    sort_key,
)
from socd.errors import SocdError
from socd.severity import Severity
from socd.vocabulary import ASSET_KINDS, LAYERS

PAGE_SIZE: Final = 50
MAX_PAGE_SIZE: Final = 200
COUNT_CAP: Final = 10_000  # counts beyond this show as "10.000+"
MAX_TEXT: Final = 200  # longest filter text kept from a URL
_HEX = frozenset("0123456789abcdef")
_MAX_CURSOR: Final = 4096  # a cursor's key is a stored unit or rule id, base64


class SourceError(SocdError):
    """The alert source cannot answer (Elasticsearch unreachable or refusing); the page
    says so instead of failing."""


@dataclass(frozen=True, slots=True)
class AlertPage:
    """One page of the queue: its alerts, the cursor of the next page (``None``: last
    page) and the alerts per severity under the same filters (severity filter aside),
    each counted up to :data:`COUNT_CAP`."""

    alerts: list[StoredAlert]
    next_after: tuple[int, str] | None
    counts: dict[str, int] = field(default_factory=dict)
    next_key: tuple[str | None] | None = None  # a keyed sort's cursor key (AlertQuery)


class AlertSource(Protocol):
    """Where the console reads alerts. Changes always go to the store (the record of
    the lifecycle); a source that is not the store sees them once they are copied to it
    (:mod:`socd.console.data_actions`)."""

    name: str

    def page(self, query: AlertQuery) -> AlertPage:
        """The alerts ``query`` selects, one page of them, with the counts."""
        ...

    def get(self, alert_id: str) -> StoredAlert | None:
        """One alert by its full id (``event.hash``), or ``None``."""
        ...

    def ids_with_prefix(self, prefix: str, limit: int) -> list[str]:
        """Full ids starting with ``prefix`` (a short id from a notification or the CLI)."""
        ...

    def units(self, limit: int) -> list[str]:
        """The units alerts carry, sorted (the unit filter's choices)."""
        ...

    def close(self) -> None: ...


class StoreAlertSource:
    """The embedded alert store (SQLite): the queue's indexes make a filtered page an
    index walk (socd/alerts/store.py, version 3)."""

    name = "store"

    def __init__(self, store: AlertStore) -> None:
        self.store = store

    def page(self, query: AlertQuery) -> AlertPage:
        found = self.store.search(replace(query, limit=query.limit + 1))
        if query.text:  # a LIKE reads every row: once, grouped, not once per severity
            exact = self.store.severity_counts(query)
            counts = {s.value: min(exact.get(s.value, 0), COUNT_CAP + 1) for s in Severity}
        else:  # each severity's count walks its index and stops at the cap
            counts = {s.value: self.store.count_matching(replace(query, severity=s.value),
                                                         COUNT_CAP + 1) for s in Severity}
        return paged(found, query.limit, counts, query.sort)

    def get(self, alert_id: str) -> StoredAlert | None:
        return self.store.get(alert_id)

    def ids_with_prefix(self, prefix: str, limit: int) -> list[str]:
        return self.store.ids_with_prefix(prefix, limit)

    def units(self, limit: int) -> list[str]:
        return self.store.units(limit)

    def history(self, alert_id: str) -> list[HistoryEntry]:
        return self.store.history(alert_id)

    def close(self) -> None:
        """The store belongs to the console's services, which close it."""


def paged(found: list[StoredAlert], limit: int, counts: dict[str, int],
          sort: str = "newest") -> AlertPage:
    """The page from ``limit + 1`` alerts read: one more than shown says there is a next
    page, and the last shown alert is its cursor (with its key, for a keyed sort)."""
    shown = found[:limit]
    more = len(found) > limit and shown and shown[-1].ts_ms is not None
    after = (int(shown[-1].ts_ms or 0), shown[-1].id) if more else None
    key = (sort_key(shown[-1], sort),) if after is not None and sort in SORT_COLUMNS else None
    return AlertPage(shown, after, counts, key)


# -- the query from a URL ----------------------------------------------------------------

_STATUSES: Final = frozenset(s.value for s in Status)
_SEVERITIES: Final = frozenset(s.value for s in Severity)


def _text(params: Mapping[str, str], name: str) -> str | None:
    value = params.get(name, "").strip()
    return value[:MAX_TEXT] if value else None


def _choice(params: Mapping[str, str], name: str, allowed: frozenset[str]) -> str | None:
    value = params.get(name, "")
    return value if value in allowed else None


def _int(text: str | None, lo: int, hi: int) -> int | None:
    if text is None or not text.strip().isdigit() or len(text) > 18:
        return None
    value = int(text)
    return value if lo <= value <= hi else None


def parse_time(text: str | None) -> int | None:
    """Epoch milliseconds of an ``<input type=datetime-local>`` or date value
    (Asia/Ho_Chi_Minh wall time), else ``None``."""
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.strip()[:32])
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=local_zone())
    return int(parsed.timestamp() * 1000)


Cursor = tuple[tuple[int, str], tuple[str | None] | None]


def parse_cursor(text: str | None) -> Cursor | None:
    """``<ts_ms>:<id>[:<key>]`` as the queue's links write it (:func:`cursor_text`):
    ``(after, after_key)`` of an :class:`AlertQuery`, else ``None``."""
    if not text or len(text) > _MAX_CURSOR:
        return None
    ms, _, rest = text.partition(":")
    alert_id, _, key_text = rest.partition(":")
    value = _int(ms, 0, 2**53)
    if value is None or not alert_id or len(alert_id) > 40 or not set(alert_id) <= _HEX:
        return None
    if not key_text:
        return (value, alert_id), None
    if key_text == "-":
        return (value, alert_id), (None,)
    encoded = key_text[1:]
    if key_text[0] != "k":
        return None
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), altchars=b"-_",
                               validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    return (value, alert_id), (key,)


def cursor_text(after: tuple[int, str], key: tuple[str | None] | None = None) -> str:
    """The cursor in a link: a keyed sort's key as ``-`` (none) or ``k`` + base64url."""
    text = f"{after[0]}:{after[1]}"
    if key is None:
        return text
    if key[0] is None:
        return f"{text}:-"
    return f"{text}:k{base64.urlsafe_b64encode(key[0].encode()).decode().rstrip('=')}"


def query_from_params(params: Mapping[str, str]) -> AlertQuery:
    """The queue's :class:`AlertQuery` from the page's query string (see the module
    docstring: unknown values are dropped, never an error)."""
    layer = _int(params.get("layer"), min(LAYERS), max(LAYERS))
    sort = params.get("sort", "") if params.get("sort", "") in SORTS else "newest"
    cursor = parse_cursor(params.get("after"))
    if cursor is not None and (cursor[1] is not None) != (sort in SORT_COLUMNS):
        cursor = None  # a cursor of another sort: from the start
    return AlertQuery(
        severity=_choice(params, "severity", _SEVERITIES),
        status=_choice(params, "status", _STATUSES),
        unit=_text(params, "unit"),
        layer=layer,
        asset_kind=_choice(params, "asset_kind", ASSET_KINDS),
        rule=_text(params, "rule"),
        source_ip=_text(params, "source_ip"),
        destination_ip=_text(params, "destination_ip"),
        since_ms=parse_time(params.get("since")),
        until_ms=parse_time(params.get("until")),
        text=_text(params, "q"),
        after=cursor[0] if cursor else None,
        sort=sort,
        after_key=cursor[1] if cursor else None,
        limit=_int(params.get("size"), 1, MAX_PAGE_SIZE) or PAGE_SIZE,
    )


#: The query string parameters of the queue's filters (links keep them across pages).
FILTER_PARAMS: Final = ("severity", "status", "unit", "layer", "asset_kind", "rule",
                        "source_ip", "destination_ip", "since", "until", "q", "sort", "size")


def filter_params(params: Mapping[str, str]) -> dict[str, str]:
    """The filter parameters of ``params`` that are set (for links to other pages)."""
    return {k: params[k][:MAX_TEXT] for k in FILTER_PARAMS if params.get(k)}


def alert_ids(values: Sequence[str], limit: int) -> list[str]:
    """The well-formed alert ids (40 hex digits) of a form, at most ``limit``."""
    out = [v for v in values if len(v) == 40 and set(v) <= _HEX]
    return list(dict.fromkeys(out))[:limit]
