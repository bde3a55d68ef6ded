"""The ``incidents:`` section: the incident store, deadline reminders and the contact
block of the documents (the incident workflow is :mod:`socd.incidents`)."""

from __future__ import annotations

from pydantic import Field, field_validator

from socd.config.models import StrictModel
from socd.tz import TimeZone


class ContactConfig(StrictModel):
    """Who the authority contacts about an incident; printed on the documents."""

    organisation: str = Field("", description="The reporting organisation (đơn vị báo cáo), "
                              "e.g. the provincial SOC's agency.")
    person: str = Field("", description="The contact person (người liên hệ).")
    phone: str = Field("", description="Their phone number.")
    email: str = Field("", description="Their e-mail address.")


class IncidentsConfig(StrictModel):
    """Incident tracking: the store, deadline reminders and the documents' contact block."""

    db_path: str = Field("incidents.db", description="The incident store (SQLite), relative "
                         "to state_dir.")
    reminder_offsets_hours: list[float] = Field(
        default_factory=lambda: [48.0, 24.0],
        description="Send a reminder this many hours before each deadline (notification: 5 "
        "days after discovery; final report: 5 days after the response ends). One more is "
        "sent once the deadline has passed with the action not done.")
    notifiers: list[str] = Field(default_factory=list, description="Names under `notifiers:` "
                                 "that receive the reminders; none: no reminders are sent "
                                 "(the metrics still show overdue incidents).")
    check_interval_secs: float = Field(60.0, gt=0, le=3600, description="How often the daemon "
                                       "checks the deadlines and refreshes the metrics.")
    timezone: TimeZone = Field("Asia/Ho_Chi_Minh", description="Time zone of the times in "
                          "reminders and documents.")
    contact: ContactConfig = ContactConfig()

    @field_validator("reminder_offsets_hours")
    @classmethod
    def _positive(cls, value: list[float]) -> list[float]:
        if any(v <= 0 for v in value):
            raise ValueError("offsets are hours before the deadline: each must be > 0")
        return sorted(set(value), reverse=True)
