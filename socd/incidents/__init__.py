"""Incident tracking (``socd incident``): incidents grouping alerts, the legal deadlines
of Circular 20/2017/TT-BTTTT, the serious-incident check of Decision 05/2017/QĐ-TTg,
deadline reminders and the notification / final report documents. See
docs/incidents.md. The ``incidents:`` config section is :mod:`socd.config.incidents`."""

from __future__ import annotations

from socd.incidents.model import Deadline, Impact, Incident, IncidentStatus, is_serious
from socd.incidents.store import IncidentError, IncidentNotFound, IncidentStore

__all__ = ["Deadline", "Impact", "Incident", "IncidentError", "IncidentNotFound",
           "IncidentStatus", "IncidentStore", "is_serious"]
