"""SOC reports: weekly, monthly and six-monthly monitoring reports in Vietnamese.

``socd report`` (:mod:`socd.cli.report`) and the daemon's scheduler
(:mod:`socd.reports.schedule`) both build one :class:`~socd.reports.data.ReportData`
from the alert data (the embedded store or Elasticsearch, identical numbers) and the
side stores (IoC imports, block decisions, incidents, layer-4 exchanges; see
:mod:`socd.reports.sources`), then render it as Markdown, HTML, PDF or XLSX
(:mod:`socd.reports.render`). See docs/reports.md.
"""

from __future__ import annotations

from socd.reports.periods import KINDS, Period, PeriodError, default_period, parse_date, period_for

__all__ = ["KINDS", "Period", "PeriodError", "default_period", "parse_date", "period_for"]
