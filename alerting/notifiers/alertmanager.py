"""The ``alertmanager`` notifier: socd alerts into a Prometheus Alertmanager.

For sites that already page people through Alertmanager (its routes, silences,
inhibition and receivers), socd posts ``POST /api/v2/alerts`` with one
Alertmanager alert per socd alert attached to the notification:

* **labels** identify the alert and drive Alertmanager's routing and grouping,
  so only bounded, non-empty values are used: ``alertname`` (``rule.id``, else
  ``socd_alert``), ``severity`` (code), ``severity_label`` (Vietnamese),
  ``unit``, ``layer``, ``asset_kind``, ``host`` (``host.name``), ``rule_name``,
  plus the configured static ``labels``. Alerts with the same labels are one
  alert to Alertmanager (it deduplicates them).
* **annotations** carry the text: ``summary`` (the title), ``description`` (the
  notification text for a single alert, a one-line summary of each alert in a
  digest), ``socd_id`` (``event.hash``), ``ioc`` (matched IoC values),
  ``socd_route`` and, when the digest stands for more alerts than it lists,
  ``socd_total``.
* ``startsAt`` is the alert's ``@timestamp``; ``endsAt`` is now +
  ``resolve_after_secs``: socd alerts have no "resolved" signal, so they
  resolve on their own unless sent again.

Sending the same notification again only refreshes the same alerts, so a retry
never duplicates a page. 5xx/429 and network errors are retryable; 400 (an
alert Alertmanager rejects) is not. The health check is ``GET /-/healthy``.
Tested against Alertmanager 0.25 (API v2, also in 0.2x and later).
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any, Literal

import aiohttp
from pydantic import Field, SecretStr, field_validator, model_validator

from socd.errors import HealthCheckError, NotifyError
from socd.event import Event, get
from socd.plugins import Notification, PluginContext
from socd.tz import iso_or_none

from .common import dumps, rfc3339, severity_of, text_values, truncate
from .httpclient import HttpClient, HttpNotifierConfig, json_headers

LABEL_MAX = 256
ANNOTATION_MAX = 8000
_LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# label name -> event field; the values are bounded by the rule pack and inventory.
EVENT_LABELS: tuple[tuple[str, str], ...] = (
    ("unit", "socd.unit"),
    ("layer", "socd.layer"),
    ("asset_kind", "socd.asset_kind"),
    ("host", "host.name"),
    ("rule_name", "rule.name"),
)


def _label_value(value: Any) -> str | None:
    values = text_values(value)
    if not values:
        return None
    text = " ".join(values[0].split())
    return text[:LABEL_MAX] or None


def _starts_at(event: Event) -> datetime | None:
    value = get(event, "@timestamp")
    return iso_or_none(value.strip()) if isinstance(value, str) else None


def _one_line(event: Event) -> str:
    """A short description of one alert of a digest."""
    for path in ("message", "rule.description", "rule.name"):
        value = get(event, path)
        if isinstance(value, str) and value.strip():
            text = " ".join(value.split())
            break
    else:
        text = "socd alert"
    host = get(event, "host.name")
    src, dst = get(event, "source.ip"), get(event, "destination.ip")
    where = []
    if host:
        where.append(f"host {host}")
    if src or dst:
        where.append(f"{src or '?'} → {dst or '?'}")
    return f"{text} ({', '.join(where)})" if where else text


def alertmanager_alerts(notification: Notification, *, now: float,
                        resolve_after_secs: float, generator_url: str | None = None,
                        static_labels: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The ``POST /api/v2/alerts`` body for one notification (pure, for tests)."""
    severity = severity_of(notification)
    total = max(notification.total, len(notification.alerts))
    ends = datetime.fromtimestamp(now + resolve_after_secs, UTC)
    single = len(notification.alerts) == 1
    events: list[Event] = list(notification.alerts) or [{}]
    alerts = []
    for event in events:
        code = str(get(event, "socd.severity") or severity.value)
        labels: dict[str, str] = {
            "alertname": _label_value(get(event, "rule.id")) or "socd_alert",
            "severity": code,
            "severity_label": _label_value(get(event, "socd.severity_label"))
            or severity.label,
        }
        for name, path in EVENT_LABELS:
            value = _label_value(get(event, path))
            if value:
                labels[name] = value
        for name, value in (static_labels or {}).items():
            if value:
                labels.setdefault(name, value)  # never overrides what the alert says
        description = notification.text if single or not notification.alerts \
            else _one_line(event)
        annotations = {
            "summary": truncate(notification.title, ANNOTATION_MAX),
            "description": truncate(description, ANNOTATION_MAX),
            "socd_route": notification.route,
        }
        event_hash = get(event, "event.hash")
        if event_hash:
            annotations["socd_id"] = str(event_hash)
        iocs = text_values(get(event, "socd.ioc.values"))
        if iocs:
            annotations["ioc"] = truncate(", ".join(iocs), ANNOTATION_MAX)
        if total > len(notification.alerts):
            annotations["socd_total"] = str(total)
        alert: dict[str, Any] = {"labels": labels, "annotations": annotations,
                                 "endsAt": rfc3339(ends.timestamp())}
        starts = _starts_at(event)
        if starts is not None and starts < ends:
            alert["startsAt"] = rfc3339(starts.timestamp())
        if generator_url:
            alert["generatorURL"] = generator_url
        alerts.append(alert)
    return alerts


class AlertmanagerNotifier:
    """Posts socd alerts to Alertmanager's v2 API."""

    class Config(HttpNotifierConfig):
        type: Literal["alertmanager"]
        url: str = Field("http://127.0.0.1:9093", pattern=r"^https?://",
                         description="Alertmanager base URL (with its `--web.route-prefix`, "
                         "if any).")
        bearer_token: SecretStr | None = Field(None, description="Sent as `Authorization: "
                                               "Bearer <token>` (a reverse proxy in front).")
        username: str | None = Field(None, description="Basic-auth user (a reverse proxy "
                                     "or `--web.config.file`).")
        password: SecretStr | None = Field(None, description="Basic-auth password.")
        resolve_after_secs: int = Field(3600, ge=60, le=30 * 86400,
                                        description="`endsAt` is now plus this: the alert "
                                        "resolves on its own unless sent again.")
        generator_url: str | None = Field(None, pattern=r"^https?://",
                                          description="Link shown in Alertmanager, e.g. the "
                                          "alert search in Kibana or Grafana.")
        labels: dict[str, str] = Field(default_factory=dict, description="Static labels "
                                       "added to every alert (e.g. `source: socd`).")

        @field_validator("labels")
        @classmethod
        def _label_names(cls, value: dict[str, str]) -> dict[str, str]:
            for name in value:
                if not _LABEL_NAME.match(name):
                    raise ValueError(f"invalid label name {name!r} (letters, digits, `_`)")
            return value

        @model_validator(mode="after")
        def _one_auth(self) -> AlertmanagerNotifier.Config:
            if self.bearer_token and self.username:
                raise ValueError("set bearer_token or username/password, not both")
            return self

    def __init__(self, config: Config, ctx: PluginContext) -> None:
        self.name = ctx.name
        self.config = config
        self.ctx = ctx
        self.base = config.url.rstrip("/")
        self.http = HttpClient(f"alertmanager {ctx.name}", config, ctx.config_dir)

    def _auth(self) -> tuple[dict[str, str], aiohttp.BasicAuth | None]:
        cfg = self.config
        if cfg.bearer_token:
            return {"Authorization": f"Bearer {cfg.bearer_token.get_secret_value()}"}, None
        if cfg.username:
            password = cfg.password.get_secret_value() if cfg.password else ""
            return {}, aiohttp.BasicAuth(cfg.username, password)
        return {}, None

    async def start(self) -> None:
        return None

    async def healthcheck(self) -> None:
        headers, auth = self._auth()
        try:
            response = await self.http.request("GET", f"{self.base}/-/healthy",
                                               headers=headers, auth=auth)
            self.http.check(response)
        except NotifyError as exc:
            raise HealthCheckError(f"{exc} (GET /-/healthy)") from None

    async def send(self, notification: Notification) -> None:
        cfg = self.config
        alerts = alertmanager_alerts(
            notification, now=time.time(), resolve_after_secs=cfg.resolve_after_secs,
            generator_url=cfg.generator_url, static_labels=cfg.labels)
        headers, auth = self._auth()
        await self.http.send("POST", f"{self.base}/api/v2/alerts", body=dumps(alerts),
                             headers=json_headers(headers), auth=auth)

    async def close(self) -> None:
        await self.http.close()
