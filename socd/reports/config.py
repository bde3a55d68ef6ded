"""The ``reports:`` section of the config (scheduled reports; see docs/reports.md).

Kept apart from :mod:`socd.reports.schedule` and free of socd imports, so
:mod:`socd.config` can import it without a cycle.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from socd.tz import TimeZone


class _Strict(BaseModel):
    # The same rules as socd.config.StrictModel: unknown keys are errors, values frozen.
    model_config = ConfigDict(extra="forbid", frozen=True)


_DAYS = {"MON": 0, "TUE": 1, "WED": 2, "THU": 3, "FRI": 4, "SAT": 5, "SUN": 6}
_WEEKLY = re.compile(r"^\s*(MON|TUE|WED|THU|FRI|SAT|SUN)\s+(\d{1,2}):(\d{2})\s*$", re.I)
_MONTHLY = re.compile(r"^\s*(\d{1,2})\s+(\d{1,2}):(\d{2})\s*$")
ReportFormat = Literal["md", "html", "pdf", "xlsx"]
DEFAULT_AT: Mapping[str, str] = {"weekly": "MON 07:00", "monthly": "1 07:00",
                                 "semiannual": "1 07:00"}


class ScheduleConfig(_Strict):
    kind: Literal["weekly", "monthly", "semiannual"] = Field(
        ..., description="Which report: weekly (the last full week), monthly (the last "
        "full month) or semiannual (the last full half-year).")
    at: str | None = Field(
        None, description="When, in `reports.timezone`: weekly `MON 07:00` (day MON..SUN "
        "and HH:MM), monthly `1 07:00` (day of month 1-28 and HH:MM), semiannual `1 07:00` "
        "(that day of January and July). Default: Monday 07:00, the 1st 07:00.")

    @model_validator(mode="after")
    def _valid_at(self) -> ScheduleConfig:
        parse_at(self.kind, self.at)
        return self


class ReportsConfig(_Strict):
    """The ``reports:`` section: scheduled generation and delivery of reports."""

    enabled: bool = Field(False, description="Generate the scheduled reports in the daemon.")
    schedules: list[ScheduleConfig] = Field(
        default_factory=lambda: [ScheduleConfig(kind="weekly", at="MON 07:00"),
                                 ScheduleConfig(kind="monthly", at="1 07:00")],
        description="What to generate when (default: weekly on Monday 07:00, monthly on "
        "the 1st at 07:00).")
    formats: list[ReportFormat] = Field(
        default_factory=lambda: list[ReportFormat](["html", "pdf"]),
        description="Formats written for each report (pdf needs `socd[pdf]`).")
    out_dir: str = Field("reports", description="Folder of the generated files, relative "
                         "to state_dir.")
    notifiers: list[str] = Field(default_factory=list, description="Notifiers (names under "
                                 "`notifiers:`) that receive each report; e-mail notifiers "
                                 "send the HTML report as the message body.")
    timezone: TimeZone = Field("Asia/Ho_Chi_Minh", description="Time zone of the schedules, "
                          "periods and dates in the reports.")
    source: Literal["auto", "store", "elasticsearch"] = Field(
        "auto", description="Where alerts are counted: Elasticsearch when configured, "
        "else the embedded store (`auto`), or one of them.")
    unit: str | None = Field(None, description="Only alerts of this unit (socd.unit).")
    catch_up_hours: float = Field(24.0, ge=0, description="At start, generate a report "
                                  "whose due time passed at most this long ago.")



def parse_at(kind: str, at: str | None) -> tuple[int, int, int]:
    """(day, hour, minute): day is the weekday (0 = Monday) for weekly schedules, the
    day of the month otherwise. Raises ValueError."""
    text = at if at is not None else DEFAULT_AT[kind]
    if kind == "weekly":
        m = _WEEKLY.match(text)
        if not m:
            raise ValueError(f"weekly `at` must look like 'MON 07:00', not {text!r}")
        day = _DAYS[m.group(1).upper()]
    else:
        m = _MONTHLY.match(text)
        if not m:
            raise ValueError(f"{kind} `at` must look like '1 07:00' (day HH:MM), not {text!r}")
        day = int(m.group(1))
        if not 1 <= day <= 28:
            raise ValueError(f"{kind} `at`: the day must be 1-28 (every month has it), "
                             f"not {day}")
    hour, minute = int(m.group(2)), int(m.group(3))
    if hour > 23 or minute > 59:
        raise ValueError(f"not a time of day: {text!r}")
    return day, hour, minute


