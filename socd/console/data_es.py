"""The console's alerts from Elasticsearch: the same :class:`AlertQuery` as the store,
the same page.

The ``elasticsearch`` sink writes each alert to ``<index_prefix>-<day>`` with the
event's fields mapped as keywords (socd/alerting/elasticsearch.py), its id the
``event.hash`` and its lifecycle in ``socd.alert.*`` (kept in step with the store by
:func:`socd.alerts.lifecycle.update_elasticsearch` and :func:`bulk_update`). Parity with
:class:`socd.console.data.StoreAlertSource`:

* the order is ``@timestamp`` (as epoch milliseconds) then ``event.hash``, both
  descending (ascending for ``oldest_first``), and the cursor is the last hit's sort
  values (``search_after``), as the store's ``(ts_ms, id)``;
* a document without ``socd.alert.status`` is ``new``, as the store stores it;
* free text is a ``regexp`` on the same five fields as the store's ``search`` column,
  each letter of the text a class of its cases (``[đĐ]``): Elasticsearch's
  ``case_insensitive`` folds ASCII letters only, so "ĐĂNG NHẬP" would miss "đăng
  nhập" that the store (Python's ``str.lower``) finds; no mapping change, so indices
  written before match too;
* counts per severity are exact here and cut at the same cap as the store's.

Every value goes into the query as a term, never into query-string syntax.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

import orjson

from socd.alerts.lifecycle import es_client, es_fields
from socd.alerts.store import SEARCH_SEPARATOR, AlertQuery, StoredAlert, severity_groups
from socd.console.data import COUNT_CAP, AlertPage, SourceError, paged
from socd.event import get
from socd.severity import Severity

T = TypeVar("T")

# AlertQuery fields compared for equality, and the document fields they are.
_TERMS: Final = (("severity", "socd.severity"), ("unit", "socd.unit"),
                 ("layer", "socd.layer"), ("asset_kind", "socd.asset_kind"),
                 ("source_ip", "source.ip"), ("destination_ip", "destination.ip"))
_TEXT_FIELDS: Final = ("event.hash", "rule.id", "rule.name", "host.name", "socd.unit")
_STATUS: Final = "socd.alert.status"
# The keyed sorts' fields; alerts without one sort last, after every real key (U+10FFFF
# is the last code point; `search_after` cannot carry a missing value).
_SORT_FIELDS: Final = {"unit": "socd.unit", "rule": "rule.id"}
_LAST: Final = "\U0010ffff"


def _letter(char: str) -> str:
    """One character of the text in Lucene's regexp syntax: a letter as the class of its
    one-character cases, an other character escaped (every non-alphanumeric one, so no
    operator survives; ``\\d``-style classes need a letter, never escaped)."""
    cases = sorted({c for c in (char, char.lower(), char.upper()) if len(c) == 1})
    if len(cases) > 1:
        return f"[{''.join(cases)}]"
    return char if char.isalnum() else f"\\{char}"


def contains_regexp(text: str) -> str:
    """A ``regexp`` (``flags: NONE``) for keywords containing ``text``, each letter's
    case ignored as ``str.lower`` ignores it (the store's ``search`` column)."""
    return ".*" + "".join(_letter(c) for c in text) + ".*"


def _status_filter(status: str) -> dict[str, Any]:
    if status != "new":
        return {"term": {_STATUS: status}}
    # The store stores a missing or unknown status as new.
    return {"bool": {"should": [{"term": {_STATUS: "new"}},
                                {"bool": {"must_not": {"exists": {"field": _STATUS}}}}],
                     "minimum_should_match": 1}}


def es_query(q: AlertQuery) -> dict[str, Any]:
    """The ``bool`` query of ``q`` (its cursor aside: that is ``search_after``)."""
    filters: list[dict[str, Any]] = [{"term": {"event.kind": "alert"}}]
    for name, path in _TERMS:
        value = getattr(q, name)
        if value is not None:
            filters.append({"term": {path: value}})
    if q.status is not None:
        filters.append(_status_filter(q.status))
    if q.rule is not None:
        filters.append({"bool": {"should": [{"term": {"rule.id": q.rule}},
                                            {"term": {"rule.name": q.rule}}],
                                 "minimum_should_match": 1}})
    if q.since_ms is not None or q.until_ms is not None:
        bounds: dict[str, Any] = {"format": "epoch_millis"}
        if q.since_ms is not None:
            bounds["gte"] = q.since_ms
        if q.until_ms is not None:
            bounds["lt"] = q.until_ms
        filters.append({"range": {"@timestamp": bounds}})
    if q.text:
        if SEARCH_SEPARATOR in q.text:  # never matches in the store either
            filters.append({"bool": {"must_not": {"match_all": {}}}})
        else:
            pattern = contains_regexp(q.text)
            filters.append({"bool": {"should": [
                {"regexp": {f: {"value": pattern, "flags": "NONE"}}}
                for f in _TEXT_FIELDS], "minimum_should_match": 1}})
    return {"bool": {"filter": filters}}


def stored(hit: Any) -> StoredAlert:
    """A hit as the store's row type, so pages render either source the same way."""
    src: dict[str, Any] = hit["_source"]
    sort = hit.get("sort") or []
    ts_ms = int(sort[0]) if sort and isinstance(sort[0], int | float) else None
    status = get(src, _STATUS)
    return StoredAlert(
        id=str(get(src, "event.hash") or hit["_id"]), ts=str(src.get("@timestamp", "")),
        ts_ms=ts_ms, kind=str(get(src, "event.kind", "alert")),
        severity=get(src, "socd.severity"), layer=get(src, "socd.layer"),
        asset_kind=get(src, "socd.asset_kind"), unit=get(src, "socd.unit"),
        module=get(src, "event.module"), rule_id=get(src, "rule.id"),
        rule_name=get(src, "rule.name"), host_name=get(src, "host.name"),
        source_ip=get(src, "source.ip"), destination_ip=get(src, "destination.ip"),
        ioc=bool(get(src, "socd.ioc.matched")),
        status=status if status in {"new", "acknowledged", "false_positive", "resolved"}
        else "new",
        assignee=get(src, "socd.alert.assignee"), status_by=get(src, "socd.alert.updated_by"),
        status_note=get(src, "socd.alert.note"), status_at=get(src, "socd.alert.updated"),
        doc=orjson.dumps(src))


class ElasticsearchAlertSource:
    """``<index_prefix>-*`` of an ``elasticsearch`` sink (see the module docstring)."""

    name = "elasticsearch"

    def __init__(self, config: Any, client: Any = None) -> None:
        self.config = config
        self.index = f"{config.index_prefix}-*"
        self._own = client is None
        self.es = es_client(config) if client is None else client

    def _call(self, fn: Callable[[], T]) -> T:
        with _errors(self.config):
            return fn()

    def _search(self, **kwargs: Any) -> Any:
        return self._call(lambda: self.es.search(
            index=self.index, allow_no_indices=True, ignore_unavailable=True, **kwargs))

    def _msearch(self, bodies: Sequence[dict[str, Any]]) -> list[Any]:
        """Several searches in one round trip (``_msearch``); a failed one raises as a
        single search would."""
        head = {"index": self.index, "allow_no_indices": True, "ignore_unavailable": True}
        searches: list[dict[str, Any]] = []
        for body in bodies:
            searches += [head, body]
        resp = self._call(lambda: self.es.msearch(searches=searches))
        out: list[Any] = []
        for item in resp["responses"]:
            if "error" in item:
                raise SourceError(f"Elasticsearch refused the query: {item.get('status')} "
                                  f"{str(item['error'])[:300]}")
            out.append(item)
        return out

    def page(self, query: AlertQuery) -> AlertPage:
        """The page and its counts per severity in one ``_msearch`` (two searches, one
        round trip: the busy-machine p95 is mostly waiting for Elasticsearch's search
        threads, twice); the severity sort asks group after group."""
        if query.sort == "severity":
            hits = self._by_severity(query)
            counts = self._counts(query)
        else:
            body, field = self._hits_body(query, es_query(query), query.limit + 1,
                                          query.after, query.after_key)
            page, totals = self._msearch([body, self._counts_body(query)])
            hits = _sorted_hits(page, field)
            counts = _severity_counts(totals)
        return paged([stored(h) for h in hits], query.limit, counts, query.sort)

    def _hits(self, query: AlertQuery, bool_query: dict[str, Any], size: int,
              after: tuple[int, str] | None, after_key: tuple[str | None] | None
              ) -> list[Any]:
        body, field = self._hits_body(query, bool_query, size, after, after_key)
        return _sorted_hits(self._search(**body), field)

    @staticmethod
    def _hits_body(query: AlertQuery, bool_query: dict[str, Any], size: int,
                   after: tuple[int, str] | None, after_key: tuple[str | None] | None
                   ) -> tuple[dict[str, Any], str | None]:
        """The search for hits in the store's order: ``(@timestamp, event.hash)``, under
        a unit or rule sort after its key (alerts without one last, as the store's NULL
        group); and that key's field."""
        order = "asc" if query.oldest_first else "desc"
        sort: list[Any] = [{"@timestamp": {"order": order, "format": "epoch_millis"}},
                           {"event.hash": {"order": order}}]
        field = _SORT_FIELDS.get(query.sort)
        if field is not None:
            sort.insert(0, {field: {"order": "asc", "missing": _LAST}})
        body: dict[str, Any] = {"query": bool_query, "size": size,
                                "track_total_hits": False, "sort": sort}
        if after is not None:
            body["search_after"] = [after[0], after[1]]
            if field is not None:
                key = after_key[0] if after_key is not None else None
                body["search_after"].insert(0, _LAST if key is None else key)
        return body, field

    def _by_severity(self, query: AlertQuery) -> list[Any]:
        """The severity sort: severity by severity, most severe first (Elasticsearch
        cannot order keywords by rank), each newest first, as the store does."""
        hits: list[Any] = []
        base = es_query(query)
        for key in severity_groups(query):
            group = ({"term": {"socd.severity": key}} if key is not None else
                     {"bool": {"must_not": {"exists": {"field": "socd.severity"}}}})
            bool_query = {"bool": {"filter": [*base["bool"]["filter"], group]}}
            mine = query.after_key is not None and key == query.after_key[0]
            hits += self._hits(replace(query, sort="newest"), bool_query,
                               query.limit + 1 - len(hits), query.after if mine else None,
                               None)
            if len(hits) > query.limit:
                break
        return hits

    def _counts(self, query: AlertQuery) -> dict[str, int]:
        return _severity_counts(self._search(**self._counts_body(query)))

    @staticmethod
    def _counts_body(query: AlertQuery) -> dict[str, Any]:
        return {"query": es_query(replace(query, severity=None)), "size": 0,
                "track_total_hits": False,
                "aggs": {"sev": {"terms": {"field": "socd.severity", "size": 10}}}}

    def get(self, alert_id: str) -> StoredAlert | None:
        """One alert by id: a filter on ``ids``, no sort (sorting one hit costs a
        fielddata look-up on every shard of 90 indices); ``ts_ms`` from ``@timestamp``."""
        resp = self._search(query={"bool": {"filter": [{"ids": {"values": [alert_id]}},
                                                        {"term": {"event.kind": "alert"}}]}},
                            size=1, track_total_hits=False)
        hits = resp["hits"]["hits"]
        if not hits:
            return None
        ts_ms = epoch_ms(hits[0]["_source"].get("@timestamp"))
        if ts_ms is not None:
            hits[0]["sort"] = [ts_ms]
        return stored(hits[0])

    def ids_with_prefix(self, prefix: str, limit: int) -> list[str]:
        resp = self._search(query={"bool": {"filter": [
            {"prefix": {"event.hash": prefix}}, {"term": {"event.kind": "alert"}}]}},
            size=limit, source=["event.hash"], sort=[{"event.hash": "asc"}])
        return [str(get(h["_source"], "event.hash") or h["_id"]) for h in resp["hits"]["hits"]]

    def units(self, limit: int) -> list[str]:
        resp = self._search(query={"term": {"event.kind": "alert"}}, size=0,
                            track_total_hits=False,
                            aggs={"u": {"terms": {"field": "socd.unit", "size": limit,
                                                  "order": {"_key": "asc"}}}})
        buckets = resp.get("aggregations", {}).get("u", {}).get("buckets", [])
        return [str(b["key"]) for b in buckets]

    def close(self) -> None:
        if self._own:
            self.es.close()


def _sorted_hits(resp: Any, field: str | None) -> list[Any]:
    """The hits with their sort values as the store's ``(ts_ms, id)``: epoch_millis
    sort values come back as text, and a keyed sort's key goes."""
    hits: list[Any] = resp["hits"]["hits"]
    for hit in hits:
        values = hit["sort"][1:] if field is not None else hit["sort"]
        hit["sort"] = [int(float(values[0])), values[1]]
    return hits


def _severity_counts(resp: Any) -> dict[str, int]:
    buckets = {b["key"]: int(b["doc_count"])
               for b in resp.get("aggregations", {}).get("sev", {}).get("buckets", [])}
    return {s.value: min(buckets.get(s.value, 0), COUNT_CAP + 1) for s in Severity}


def epoch_ms(ts: Any) -> int | None:
    """``@timestamp`` (RFC 3339, any offset) as epoch milliseconds, else ``None``."""
    if not isinstance(ts, str) or not ts:
        return None
    try:
        when = datetime.fromisoformat(ts.replace("Z", "+00:00"))
        if when.tzinfo is None:  # never written so: the machine's local time, as the sink
            when = when.astimezone()
        return int(when.timestamp() * 1000)
    except (ValueError, OverflowError, OSError):  # any text can arrive in a document
        return None


@contextmanager
def _errors(config: Any) -> Iterator[None]:
    """Elasticsearch's failures as :class:`SourceError` (the page says what happened)."""
    from elastic_transport import ConnectionError as TransportConnectionError
    from elastic_transport import ConnectionTimeout
    from elasticsearch import ApiError

    try:
        yield
    except (TransportConnectionError, ConnectionTimeout) as exc:
        raise SourceError(f"Elasticsearch {config.hosts} unreachable: {exc}") from exc
    except ApiError as exc:
        raise SourceError(f"Elasticsearch refused the query: {exc.meta.status} "
                          f"{str(exc)[:300]}") from exc


def day_index(prefix: str, alert: StoredAlert) -> str | None:
    """The index the ``elasticsearch`` sink wrote ``alert`` to: ``<prefix>-YYYY.MM.DD``
    of its event time's UTC day (:func:`socd.alerting.elasticsearch.daily_index`);
    ``None`` without a usable time (the sink then used its arrival day: searched)."""
    from socd.alerting.elasticsearch import daily_index

    ts_ms = alert.ts_ms if alert.ts_ms is not None else epoch_ms(alert.ts)
    if ts_ms is None:
        return None
    try:
        return daily_index(prefix, datetime.fromtimestamp(ts_ms / 1000, UTC).date())
    except (ValueError, OverflowError, OSError):  # out of datetime's range: searched
        return None


def _locate(es: Any, config: Any, ids: Sequence[str]) -> dict[str, str]:
    """Where the documents of ``ids`` are, by an ``ids`` search over every index (for
    the few the day's name misses: a reindex, a time-less alert)."""
    found = es.search(index=f"{config.index_prefix}-*", allow_no_indices=True,
                      ignore_unavailable=True, source=False, size=len(ids),
                      query={"ids": {"values": list(ids)}})
    return {h["_id"]: h["_index"] for h in found["hits"]["hits"]}


def _bulk_ops(alerts: Sequence[StoredAlert], where: Mapping[str, str]) -> list[Any]:
    ops: list[dict[str, Any]] = []
    for alert in alerts:
        if alert.id in where:
            ops += [{"update": {"_index": where[alert.id], "_id": alert.id,
                                "retry_on_conflict": 5}},
                    {"doc": {"socd": {"alert": es_fields(alert)}}}]
    return ops


def _not_found(item: Mapping[str, Any]) -> bool:
    error = item["update"].get("error")
    return bool(error) and (item["update"].get("status") == 404
                            or error.get("type") in ("document_missing_exception",
                                                     "index_not_found_exception"))


def bulk_update(config: Any, alerts: Sequence[StoredAlert], client: Any = None, *,
                refresh: bool | str | None = None) -> str | None:
    """Bring the documents of ``alerts`` to the store's state in one ``_bulk`` request
    (a bulk action on 1,000 alerts; :func:`socd.alerts.lifecycle.update_elasticsearch`
    does one alert at a time). Returns ``None``, or what went wrong: the store is the
    record and was already changed; repeating the action repairs Elasticsearch.

    Each document's index is the sink's name for its event day (no search over 90
    indices first); the few a day's name misses (reindexed, or written on an arrival
    day) are found by an ``ids`` search and sent in a second request. ``refresh``
    decides when the change is searchable (the sink's own ``refresh`` option, for
    tests, makes it at once): without it, within the index's ``refresh_interval``
    (1 s), no forced refresh of up to 90 indices; the console passes ``wait_for`` when
    its queue reads Elasticsearch, so the page after the action shows the change."""
    if not alerts:
        return None
    own = client is None
    es = es_client(config) if own else client
    if getattr(config, "refresh", False):  # the sink's option (tests): at once
        refresh = True
    try:
        with _errors(config):
            where = {a.id: i for a in alerts if (i := day_index(config.index_prefix, a))}
            ops, failed, retry = _bulk_ops(alerts, where), 0, [a.id for a in alerts
                                                            if a.id not in where]
            if ops:
                resp = es.bulk(operations=ops, refresh=refresh)
                for (head, _), item in zip(zip(ops[::2], ops[1::2], strict=True),
                                           resp["items"], strict=True):
                    if _not_found(item):
                        retry.append(head["update"]["_id"])
                    elif item["update"].get("error"):
                        failed += 1
            missing = len(retry)
            if retry:
                located = _locate(es, config, retry)
                again = _bulk_ops([a for a in alerts if a.id in located], located)
                missing -= len(again) // 2
                if again:
                    resp = es.bulk(operations=again, refresh=refresh)
                    failed += sum(1 for item in resp["items"] if item["update"].get("error"))
    except SourceError as exc:
        return str(exc)
    else:
        if failed:
            return f"{failed} documents not updated"
        return f"{missing} alerts not indexed yet" if missing else None
    finally:
        if own:
            es.close()
