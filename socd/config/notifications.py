"""The ``notifications:`` section: routes from alerts to notifiers, grouping, quiet hours
(the notification pipeline is :mod:`socd.notify`)."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, field_validator

from socd.config.models import StrictModel
from socd.severity import Severity
from socd.tz import TimeZone


class QuietHoursConfig(StrictModel):
    start: str = Field("22:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$",
                       description="Start of the quiet period (local time, HH:MM).")
    end: str = Field("06:30", pattern=r"^([01]\d|2[0-3]):[0-5]\d$",
                     description="End of the quiet period (HH:MM); may be earlier than start.")
    timezone: TimeZone = Field("Asia/Ho_Chi_Minh",
                               description="IANA time zone of start and end.")
    override_severities: list[Severity] = Field(
        default_factory=lambda: [Severity.CRITICAL],
        description="Alerts of these severities are sent at once even in quiet hours; the "
        "others are held and sent as one digest when the quiet period ends.")


class GroupingConfig(StrictModel):
    # The default groups by affected host: the alerts one event raises (its own alert
    # and every rule that fired on it, one socd.correlation_id) share the host and unit,
    # arrive in one batch and so go out as one message, and so do the alerts of a burst
    # on one host; the message lists each rule. Grouping by rule.id sent one message
    # per rule that fired (1.64 messages per incident on the sample week, 1.0 now:
    # scripts/measure_notifications.py).
    group_by: list[str] = Field(
        default_factory=lambda: ["socd.unit", "host.name"],
        description="Event fields whose values make a group: alerts of one group go out "
        "together, in one message that lists each of them (like Alertmanager's group_by). "
        "The default, one message per affected host and unit, sends the alerts one event "
        "raised (one `socd.correlation_id`) together.")
    group_wait_secs: float = Field(10.0, ge=0, le=86400,
                                   description="Wait after a group's first alert, to collect "
                                   "others before the first message.")
    group_interval_secs: float = Field(300.0, ge=0, le=86400,
                                       description="Wait before a message about alerts added "
                                       "to a group that was already notified.")
    repeat_interval_secs: float = Field(
        4 * 3600.0, ge=0, le=30 * 86400,
        description="An alert with the same dedup key as one already sent is counted, not "
        "sent again, within this time.")
    dedup_by: list[str] = Field(
        default_factory=lambda: ["rule.id", "source.ip", "destination.ip", "host.name",
                                 "socd.ioc.values"],
        description="Fields that make two alerts the same for repeat_interval.")
    digest_max_alerts: int = Field(20, ge=1, le=1000,
                                   description="Alerts listed in one message; the rest of the "
                                   "group is summarized by count.")


class RouteMatch(StrictModel):
    """Conditions of a route; each listed key must match (a list means any of)."""

    severity: list[Severity] = Field(default_factory=list, description="socd.severity codes.")
    min_severity: Severity | None = Field(None, description="This severity or higher.")
    unit: list[str] = Field(default_factory=list, description="socd.unit values.")
    layer: list[int] = Field(default_factory=list, description="socd.layer values (1-4).")
    asset_kind: list[str] = Field(default_factory=list, description="socd.asset_kind values.")
    rule: list[str] = Field(default_factory=list, description="rule.id values or globs.")
    tags: list[str] = Field(default_factory=list, description="Any of these in `tags`.")


class RouteConfig(StrictModel):
    # `continue` is a Python keyword: the field is continue_, the YAML key `continue`.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$",
                      description="Unique; keys the route's groups in the queue.")
    match: RouteMatch = Field(RouteMatch(), description="Conditions; all must hold.")
    notifiers: list[str] = Field(min_length=1, description="Names under `notifiers:`.")
    continue_: bool = Field(False, alias="continue",
                            description="Go on to later routes after this one matched.")
    quiet_hours: bool = Field(True, description="Apply notifications.quiet_hours to this "
                              "route (when that is set).")
    grouping: GroupingConfig | None = Field(None, description="Overrides the default grouping.")


class NotificationsConfig(StrictModel):
    language: Literal["vi", "en"] = Field("vi", description="Language of the built-in "
                                          "message templates.")
    templates_dir: str | None = Field(
        None, description="Folder with title.<lang>.j2 / text.<lang>.j2 / html.<lang>.j2 "
        "templates that replace the built-in ones (Jinja2, sandboxed).")
    queue_path: str = Field("notify.db", description="The durable send queue (SQLite), "
                            "relative to state_dir.")
    grouping: GroupingConfig = Field(GroupingConfig(),
                                     description="Default grouping of every route.")
    quiet_hours: QuietHoursConfig | None = Field(None, description="Unset: no quiet hours.")
    routes: list[RouteConfig] = Field(
        default_factory=list, description="Checked in order; an alert goes to the notifiers "
        "of the first route it matches (and of later ones while `continue` is true). Alerts "
        "no route matches are counted as `unrouted`.")

    @field_validator("routes")
    @classmethod
    def _unique_routes(cls, value: list[RouteConfig]) -> list[RouteConfig]:
        # A route's name keys its groups in the send queue: two routes must not share one.
        seen: set[str] = set()
        for route in value:
            if route.name in seen:
                raise ValueError(f"route name {route.name!r} is used twice")
            seen.add(route.name)
        return value
