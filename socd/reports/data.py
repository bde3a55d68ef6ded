"""The report's numbers: one :class:`ReportData`, from the embedded store or Elasticsearch.

Both backends answer one question, :meth:`AlertBackend.group`: how many alerts
(``event.kind: alert``) fall in ``[start, end)`` for every combination of a few
dimensions (local day, severity, asset kind, status, unit, rule id/name, host name,
destination address). The store answers with ``GROUP BY`` on its indexed columns, the
Elasticsearch backend with a ``composite`` aggregation paged to the end (exact counts,
no ``terms`` approximations, and it works on the minimal distribution without
X-Pack). Everything else, top-N with its tie-breaks, trends, sentences, is computed
from those groups by the same code, so the two backends give identical numbers for the
same alerts.

Conventions shared by both: a missing or unknown ``socd.alert.status`` counts as
``new``; a missing ``socd.asset_kind`` as ``unknown``; a day is a local calendar day
of the report's time zone (Asia/Ho_Chi_Minh has had no DST since 1975, so a fixed
offset per period is exact). Statuses keep the meaning they have everywhere else
(``socd alert``, docs/alerts.md): "acknowledged" (đã tiếp nhận) means ``acknowledged``,
"handled" (đã xử lý) means ``resolved`` only, "false positive" (cảnh báo nhầm)
``false_positive``.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from socd.errors import SocdError
from socd.reports.periods import Period
from socd.reports.sources import (
    BlockSummary,
    ExchangeSummary,
    IncidentSummary,
    IocSummary,
    SideSources,
)
from socd.reports.vn import (
    ASSET_KINDS,
    MONITORING_LABELS,
    SENTENCE_SUBJECTS,
    SEVERITY_ORDER,
    fmt_int,
    nfc,
    severity_sentence,
)

if TYPE_CHECKING:
    from socd.alerts.store import AlertStore

log = structlog.get_logger("socd.reports")

TOP_N = 10
STATUSES = ("new", "acknowledged", "false_positive", "resolved")
DIMENSIONS = ("day", "severity", "asset_kind", "status", "unit", "rule_id", "rule_name",
              "host_name", "destination_ip")
ES_FIELDS: Mapping[str, str] = {
    "severity": "socd.severity", "asset_kind": "socd.asset_kind",
    "status": "socd.alert.status", "unit": "socd.unit", "rule_id": "rule.id",
    "rule_name": "rule.name", "host_name": "host.name", "destination_ip": "destination.ip",
}

Groups = dict[tuple[Any, ...], int]


class ReportError(SocdError):
    """The report cannot be built (no data source, unreachable Elasticsearch...)."""


class ReportSetupError(ReportError):
    """The config names no usable data source (a usage problem: exit 2)."""


# The units a report is limited to: their spellings as stored (see resolve_units).
Units = tuple[str, ...] | None


class AlertBackend(Protocol):
    name: str

    def group(self, period: Period, unit: str | Units, dims: Sequence[str]) -> Groups:
        """Alert counts in the period per combination of ``dims`` (see DIMENSIONS), of
        the alerts of ``unit`` (a spelling or several) when given."""
        ...

    def close(self) -> None: ...


# -- backends --------------------------------------------------------------------------


class StoreBackend:
    """The embedded SQLite store (:class:`socd.alerts.store.AlertStore`), through its read
    methods."""

    name = "store"
    SCAN_FRACTION = 0.25

    def __init__(self, store: AlertStore) -> None:
        self.store = store

    @classmethod
    def open(cls, path: str) -> StoreBackend:
        from socd.alerts.store import AlertStore

        if not os.path.exists(path):
            raise ReportSetupError(f"the alert store {path} does not exist yet (the daemon "
                              "creates it when it stores the first alert)")
        return cls(AlertStore(path))

    def group(self, period: Period, unit: str | Units, dims: Sequence[str]) -> Groups:
        offset = (int(period.start.utcoffset().total_seconds())  # type: ignore[union-attr]
                  if "day" in dims else 0)
        return self.store.group_counts(period.start_ms, period.end_ms, dims,
                                       day_offset_secs=offset, units=_as_units(unit),
                                       scan=self._mostly(period))

    def _mostly(self, period: Period) -> bool:
        """Whether the period spans most of the stored alerts' time range: then one
        sequential scan of the table is several times faster than fetching each row
        through the time index (random reads); for a week in a year of data the index
        wins. ``min``/``max`` come from the index at once."""
        lo, hi = self.store.time_range()
        if lo is None or hi is None or hi <= lo:
            return False
        overlap = min(hi, period.end_ms) - max(lo, period.start_ms)
        return bool(overlap / (hi - lo) > self.SCAN_FRACTION)

    def close(self) -> None:
        self.store.close()


class ElasticsearchBackend:
    """``<index_prefix>-*`` of an ``elasticsearch`` sink: composite aggregations."""

    name = "elasticsearch"
    PAGE = 1000

    def __init__(self, config: Any, client: Any = None) -> None:
        from socd.alerts.lifecycle import es_client

        self.config = config
        self.index = f"{config.index_prefix}-*"
        self._own = client is None
        self.es = es_client(config) if client is None else client

    def group(self, period: Period, unit: str | Units, dims: Sequence[str]) -> Groups:
        from elastic_transport import ConnectionError as TransportConnectionError
        from elastic_transport import ConnectionTimeout
        from elasticsearch import ApiError

        filters: list[dict[str, Any]] = [
            {"term": {"event.kind": "alert"}},
            {"range": {"@timestamp": {"gte": period.start_ms, "lt": period.end_ms,
                                      "format": "epoch_millis"}}},
        ]
        units = _as_units(unit)
        if units is not None:
            filters.append({"terms": {"socd.unit": list(units)}})
        sources: list[dict[str, Any]] = []
        for i, dim in enumerate(dims):
            if dim == "day":
                src: dict[str, Any] = {"date_histogram": {
                    "field": "@timestamp", "calendar_interval": "1d",
                    "time_zone": period.timezone, "format": "yyyy-MM-dd"}}
            else:
                src = {"terms": {"field": ES_FIELDS[dim], "missing_bucket": True}}
            sources.append({f"d{i}": src})
        query = {"bool": {"filter": filters}}
        out: Groups = {}
        try:
            if not dims:
                resp = self.es.count(index=self.index, query=query, allow_no_indices=True,
                                     ignore_unavailable=True)
                if resp["count"]:
                    out[()] = int(resp["count"])
                return out
            after: dict[str, Any] | None = None
            while True:
                composite: dict[str, Any] = {"size": self.PAGE, "sources": sources}
                if after is not None:
                    composite["after"] = after
                resp = self.es.search(index=self.index, size=0, query=query,
                                      allow_no_indices=True, ignore_unavailable=True,
                                      track_total_hits=False,
                                      aggs={"g": {"composite": composite}})
                agg = (resp.get("aggregations") or {}).get("g")
                if not agg:
                    break
                for bucket in agg["buckets"]:
                    key = tuple(bucket["key"][f"d{i}"] for i in range(len(dims)))
                    out[key] = out.get(key, 0) + int(bucket["doc_count"])
                after = agg.get("after_key")
                if not agg["buckets"] or after is None:
                    break
        except (TransportConnectionError, ConnectionTimeout) as exc:
            raise ReportError(f"Elasticsearch {self.config.hosts} unreachable: {exc}") from exc
        except ApiError as exc:
            raise ReportError(f"Elasticsearch refused the report query: {exc.meta.status} "
                              f"{str(exc)[:300]}") from exc
        return out

    def close(self) -> None:
        if self._own:
            self.es.close()


# -- the report's data -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Trend:
    severity: str
    previous: int
    current: int

    @property
    def change(self) -> int:
        return self.current - self.previous

    @property
    def percent(self) -> float | None:
        """Change in percent of the previous period; None when it had none."""
        return None if self.previous == 0 else 100.0 * self.change / self.previous


@dataclass(frozen=True, slots=True)
class RuleRow:
    rule_id: str
    rule_name: str
    severity: str  # the highest severity among its alerts
    total: int
    false_positives: int


@dataclass(frozen=True, slots=True)
class SystemRow:
    system: str  # host.name, else destination.ip
    unit: str
    total: int
    high: int  # high + critical


@dataclass(frozen=True, slots=True)
class UnitRow:
    unit: str
    total: int
    by_severity: dict[str, int]


@dataclass(frozen=True, slots=True)
class KindRow:
    asset_kind: str
    label: str
    by_severity: dict[str, int]
    total: int
    false_positives: int
    acknowledged: int  # đã tiếp nhận: taken by an analyst, not yet resolved
    handled: int  # đã xử lý: resolved
    sentence: str


@dataclass(slots=True)
class ReportData:
    """Everything a renderer needs; numbers only (formatting is the renderers' job)."""

    period: Period
    previous: Period
    unit: str | None
    source: str
    generated_at: datetime
    total: int
    by_severity: dict[str, int]
    by_kind: list[KindRow]
    by_status: dict[str, int]
    false_positives: int
    acknowledged: int  # đã tiếp nhận (socd.alert.status acknowledged)
    handled: int  # đã xử lý (socd.alert.status resolved)
    daily: list[tuple[str, dict[str, int]]]  # (yyyy-mm-dd, severity -> count), every day
    previous_total: int
    trend: list[Trend]
    top_rules: list[RuleRow]
    top_systems: list[SystemRow]
    top_units: list[UnitRow]
    ioc: IocSummary
    blocks: BlockSummary
    incidents: IncidentSummary
    exchanges: ExchangeSummary
    notes: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:
        return self.period.title + (f" — {self.unit}" if self.unit else "")

    @property
    def severity_total_sentence(self) -> str:
        return severity_sentence(self.by_severity)

    def kind_sentences(self) -> list[str]:
        return [k.sentence for k in self.by_kind if k.total]

    def summary_text(self) -> str:
        """A short plain-text summary (the e-mail's text part)."""
        lines = [self.title, self.period.range_text.capitalize() + ".",
                 f"Tổng số {fmt_int(self.total)} cảnh báo: {self.severity_total_sentence}."]
        lines += [f"- {s}" for s in self.kind_sentences()]
        lines.append(f"Cảnh báo nhầm: {fmt_int(self.false_positives)}; đã tiếp nhận: "
                     f"{fmt_int(self.acknowledged)}; đã xử lý: {fmt_int(self.handled)}.")
        if self.blocks.available:
            lines.append(f"Địa chỉ đã chặn: {fmt_int(self.blocks.blocked)}.")
        if self.incidents.available:
            lines.append(f"Sự cố: mở {fmt_int(self.incidents.opened)}, đóng "
                         f"{fmt_int(self.incidents.closed)}.")
        return nfc("\n".join(lines))

    def numbers(self) -> dict[str, Any]:
        """Every number of the report (what two backends must agree on)."""
        out = dataclasses.asdict(self)
        for key in ("source", "generated_at"):
            out.pop(key)
        return dict(out)


def _norm_status(value: Any) -> str:
    return value if value in STATUSES else "new"


def _norm_kind(value: Any) -> str:
    return str(value) if value else "unknown"


def _sev_dict(counter: Mapping[str, int]) -> dict[str, int]:
    out = {s: int(counter.get(s, 0)) for s in SEVERITY_ORDER}
    for key, value in counter.items():  # severities outside the four codes stay visible
        if key not in out and value:
            out[str(key)] = int(value)
    return out


def _sev_key(value: Any) -> str:
    return str(value) if value else "unknown"


def _rank(severity: str) -> int:
    return SEVERITY_ORDER.index(severity) if severity in SEVERITY_ORDER else -1


def _as_units(unit: str | Units) -> Units:
    return (unit,) if isinstance(unit, str) else unit


def resolve_units(backend: AlertBackend, periods: Sequence[Period],
                  unit: str) -> tuple[str, tuple[str, ...]]:
    """The spellings of ``unit`` stored in ``periods``, matched as severities are:
    case, diacritics and spacing do not matter (``So Y te`` finds ``Sở Y tế``). Returns
    the name to show (the spelling with the most alerts) and every matching spelling;
    ``(unit, (unit,))`` when no alert of the periods has it."""
    from socd.severity import fold

    wanted = fold(unit)
    counts: Counter[str] = Counter()
    for period in periods:
        for (name,), n in backend.group(period, None, ("unit",)).items():
            if isinstance(name, str) and fold(name) == wanted:
                counts[name] += n
    if not counts:
        return unit, (unit,)
    shown = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
    return shown, tuple(sorted(counts))


def build_report(backend: AlertBackend, period: Period, *, unit: str | None = None,
                 sides: SideSources | None = None, now: datetime | None = None,
                 top_n: int = TOP_N) -> ReportData:
    """Gather the numbers of one report from ``backend`` and the side stores."""
    previous = period.previous()
    units: Units = None
    if unit is not None:
        unit, units = resolve_units(backend, (period, previous), unit)
    main = backend.group(period, units, ("day", "severity", "asset_kind", "status"))
    rule_groups = backend.group(period, units, ("rule_id", "rule_name", "severity", "status"))
    system_groups = backend.group(period, units, ("host_name", "destination_ip", "unit",
                                                  "severity"))
    unit_groups = backend.group(period, units, ("unit", "severity"))
    by_sev: Counter[str] = Counter()
    by_status: Counter[str] = Counter()
    kind_sev: dict[str, Counter[str]] = defaultdict(Counter)
    kind_status: dict[str, Counter[str]] = defaultdict(Counter)
    day_sev: dict[str, Counter[str]] = defaultdict(Counter)
    for (day, sev, kind, status), n in main.items():
        sev_k, kind_k, status_k = _sev_key(sev), _norm_kind(kind), _norm_status(status)
        by_sev[sev_k] += n
        by_status[status_k] += n
        kind_sev[kind_k][sev_k] += n
        kind_status[kind_k][status_k] += n
        day_sev[str(day)][sev_k] += n
    total = sum(by_sev.values())

    kinds = [k for k in ASSET_KINDS if k in ("server", "workstation", "network")
             or kind_sev.get(k)]
    kinds += sorted(k for k in kind_sev if k not in kinds)
    by_kind = []
    for kind in kinds:
        sev = _sev_dict(kind_sev.get(kind, Counter()))
        status = kind_status.get(kind, Counter())
        label = MONITORING_LABELS.get(kind, kind)
        ktotal = sum(sev.values())
        subject = SENTENCE_SUBJECTS.get(kind, f"Nguồn {kind}")
        sentence = nfc(f"{subject} có {severity_sentence(sev)}." if ktotal else
                       f"{subject} không có cảnh báo.")
        by_kind.append(KindRow(kind, label, sev, ktotal, status["false_positive"],
                               status["acknowledged"], status["resolved"], sentence))

    daily = [(d.isoformat(), _sev_dict(day_sev.get(d.isoformat(), Counter())))
             for d in period.day_list()]

    prev_groups = backend.group(previous, units, ("severity",))
    prev_sev: Counter[str] = Counter()
    for (sev,), n in prev_groups.items():
        prev_sev[_sev_key(sev)] += n
    trend = [Trend(s, prev_sev.get(s, 0), by_sev.get(s, 0)) for s in SEVERITY_ORDER]

    top_rules = _top_rules(rule_groups, top_n)
    top_systems = _top_systems(system_groups, top_n)
    top_units = _top_units(unit_groups, top_n)

    sides = sides or SideSources()
    return ReportData(
        period=period, previous=previous, unit=unit, source=backend.name,
        generated_at=now or datetime.now(period.zone),
        total=total, by_severity=_sev_dict(by_sev), by_kind=by_kind,
        by_status={s: int(by_status.get(s, 0)) for s in STATUSES},
        false_positives=by_status["false_positive"],
        acknowledged=by_status["acknowledged"], handled=by_status["resolved"],
        daily=daily, previous_total=sum(prev_sev.values()), trend=trend,
        top_rules=top_rules, top_systems=top_systems, top_units=top_units,
        ioc=sides.ioc(period), blocks=sides.blocks(period),
        incidents=sides.incidents(period), exchanges=sides.exchanges(period),
    )


def _top(items: Iterable[tuple[str, int]], n: int) -> list[tuple[str, int]]:
    return sorted(items, key=lambda kv: (-kv[1], kv[0]))[:n]


def _top_rules(groups: Groups, n: int) -> list[RuleRow]:
    # A rule is its id; vendor alerts naming only a threat are grouped by that name
    # (as socd.alerts.store.AlertStore.rule_counts does).
    totals: Counter[str] = Counter()
    fps: Counter[str] = Counter()
    names: dict[str, set[str]] = defaultdict(set)
    ids: dict[str, str] = {}
    worst: dict[str, str] = {}
    for (rule_id, rule_name, sev, status), count in groups.items():
        key = f"id:{rule_id}" if rule_id else f"name:{rule_name or ''}"
        totals[key] += count
        if _norm_status(status) == "false_positive":
            fps[key] += count
        if rule_name:
            names[key].add(str(rule_name))
        ids[key] = str(rule_id or "")
        sev_k = _sev_key(sev)
        if key not in worst or _rank(sev_k) > _rank(worst[key]):
            worst[key] = sev_k
    return [RuleRow(ids[key], max(names[key]) if names[key] else "", worst[key], total,
                    fps[key]) for key, total in _top(totals.items(), n)]


def _top_systems(groups: Groups, n: int) -> list[SystemRow]:
    totals: Counter[str] = Counter()
    high: Counter[str] = Counter()
    units: dict[str, Counter[str]] = defaultdict(Counter)
    for (host, ip, unit, sev), count in groups.items():
        key = str(host or ip or "không rõ")
        totals[key] += count
        if sev in ("high", "critical"):
            high[key] += count
        units[key][str(unit or "")] += count
    rows = []
    for key, total in _top(totals.items(), n):
        unit = _top(units[key].items(), 1)[0][0]
        rows.append(SystemRow(key, unit, total, high[key]))
    return rows


def _top_units(groups: Groups, n: int) -> list[UnitRow]:
    totals: Counter[str] = Counter()
    sev: dict[str, Counter[str]] = defaultdict(Counter)
    for (unit, severity), count in groups.items():
        key = str(unit or "không rõ đơn vị")
        totals[key] += count
        sev[key][_sev_key(severity)] += count
    return [UnitRow(key, total, _sev_dict(sev[key])) for key, total in _top(totals.items(), n)]


# -- from a config ---------------------------------------------------------------------


def backend_for(cfg: Any, source: str = "auto", *, sink: str | None = None) -> AlertBackend:
    """The alert backend of a loaded config: ``elasticsearch`` (its first, or ``sink``,
    elasticsearch sink), ``store`` (its sqlite sink) or ``auto`` (Elasticsearch when
    configured, else the store)."""
    from socd.config import resolve_path

    def of_type(kind: str) -> dict[str, Any]:
        found = {n: p.config for n, p in cfg.sinks.items()
                 if getattr(p.config, "type", None) == kind}
        if sink is not None:
            return {n: c for n, c in found.items() if n == sink}
        return found

    es = of_type("elasticsearch")
    stores = of_type("sqlite")
    if source == "auto":
        source = "elasticsearch" if es else "store"
    if source == "elasticsearch":
        if not es:
            raise ReportSetupError(f"{cfg.file} has no elasticsearch sink"
                              + (f" named {sink!r}" if sink else ""))
        return ElasticsearchBackend(next(iter(es.values())))
    if source == "store":
        if not stores:
            raise ReportSetupError(f"{cfg.file} has no sqlite sink (the embedded alert store)"
                              + (f" named {sink!r}" if sink else "")
                              + ": add one, or use --source elasticsearch")
        return StoreBackend.open(resolve_path(cfg.state_dir, next(iter(stores.values())).path))
    raise ReportSetupError(f"unknown source {source!r} (auto, store or elasticsearch)")
