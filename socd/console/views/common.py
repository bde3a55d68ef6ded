"""What every page module shares: the services, the signed-in user's name, blocking
calls off the event loop, form fields read with limits, and the template filters that
turn codes into the SOC's words (mức độ, trạng thái, lớp, loại tài sản, giờ Việt Nam)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Final, TypeVar

import jinja2
from aiohttp import web
from multidict import MultiDictProxy

from socd.alerts.lifecycle import Status, local_time, local_zone
from socd.console.auth import current_user
from socd.console.keys import JINJA_KEY, LANG_KEY, SERVICES_KEY
from socd.console.services import ConsoleServices
from socd.reports.vn import fmt_int
from socd.severity import Severity

T = TypeVar("T")
MAX_FIELD: Final = 4000  # characters kept of one form field

SEVERITY_EN: Final = {"low": "low", "medium": "medium", "high": "high", "critical": "critical"}
STATUS_EN: Final = {"new": "new", "acknowledged": "acknowledged",
                    "false_positive": "false positive", "resolved": "resolved"}
ASSET_VI: Final = {"server": "máy chủ", "workstation": "máy trạm", "network": "thiết bị mạng",
                   "application": "ứng dụng", "unknown": "không rõ"}
LAYER_VI: Final = {1: "Lớp 1 · lực lượng tại chỗ", 2: "Lớp 2 · giám sát, bảo vệ chuyên nghiệp",
                   3: "Lớp 3 · kiểm tra, đánh giá độc lập",
                   4: "Lớp 4 · kết nối hệ thống giám sát quốc gia"}
LAYER_EN: Final = {1: "Layer 1 · on-site staff", 2: "Layer 2 · professional monitoring",
                   3: "Layer 3 · independent assessment", 4: "Layer 4 · national monitoring"}


def services(request: web.Request) -> ConsoleServices:
    return request.app[SERVICES_KEY]


def me(request: web.Request) -> str:
    """The signed-in user's name, the ``by`` of every change."""
    user = current_user(request)
    return user.name if user is not None else "?"


def lang(request: web.Request) -> str:
    return str(request.get(LANG_KEY, "vi"))


async def off_loop(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking store call in a thread (SQLite, Elasticsearch, files)."""
    return await asyncio.to_thread(functools.partial(fn, *args, **kwargs))


def field(form: MultiDictProxy[Any], name: str, limit: int = MAX_FIELD) -> str:
    """A text field of a posted form, cut to ``limit`` characters ("" when absent or a
    file)."""
    value = form.get(name, "")
    return value[:limit] if isinstance(value, str) else ""


def see_other(location: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(location=location)


# -- template filters ------------------------------------------------------------------


def _severity(code: Any, language: str) -> str:
    try:
        sev = Severity(str(code))
    except ValueError:
        return str(code or "-")
    return sev.label if language == "vi" else SEVERITY_EN[sev.value]


def _status(code: Any, language: str) -> str:
    try:
        status = Status(str(code))
    except ValueError:
        return str(code or "-")
    return status.label if language == "vi" else STATUS_EN[status.value]


def _asset(code: Any, language: str) -> str:
    text = str(code or "unknown")
    return ASSET_VI.get(text, text) if language == "vi" else text


def _layer(code: Any, language: str) -> str:
    labels: Mapping[int, str] = LAYER_VI if language == "vi" else LAYER_EN
    return labels.get(code, "-") if isinstance(code, int) else "-"


def _count(value: Any, cap: int | None = None) -> str:
    """``35.576`` (Vietnamese thousands); ``10.000+`` past ``cap``."""
    number = int(value or 0)
    if cap is not None and number > cap:
        return f"{fmt_int(cap)}+"
    return fmt_int(number)


@jinja2.pass_context
def _with_lang(ctx: Any, value: Any, kind: str) -> str:
    language = str(ctx.get("lang", "vi"))
    return {"severity": _severity, "status": _status, "asset": _asset,
            "layer": _layer}[kind](value, language)


def install_filters(app: web.Application) -> None:
    """The pages' filters on the console's Jinja environment: ``x|label('severity')``
    (and ``status``, ``asset``, ``layer``) in the page's language, ``ts|vn_time``,
    ``n|count(cap)``, ``unix_seconds|epoch_time``."""
    env = app[JINJA_KEY]
    env.filters["label"] = _with_lang
    env.filters["vn_time"] = lambda ts, seconds=True: local_time(ts, seconds=seconds)
    env.filters["count"] = _count
    env.filters["epoch_time"] = _epoch_time


def _epoch_time(value: Any) -> str:
    """Unix seconds as Asia/Ho_Chi_Minh wall time (``2026-11-16 08:12``)."""
    try:
        when = datetime.fromtimestamp(float(value), local_zone())
    except (TypeError, ValueError, OverflowError, OSError):
        return "-"
    return when.strftime("%Y-%m-%d %H:%M")
