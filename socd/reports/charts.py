"""Report charts: PNGs drawn with matplotlib's Agg backend (no display needed).

Text is drawn with DejaVu Sans, which has every Vietnamese glyph (Debian
``fonts-dejavu-core``; matplotlib also bundles it), so labels such as
"nghiêm trọng" keep their diacritics. Charts are deterministic for the same data
(no timestamps in the PNG metadata) and returned as bytes or ``data:`` URIs for
self-contained HTML and PDF.
"""

from __future__ import annotations

import base64
import io
import threading
from typing import Any

from socd.reports.data import ReportData
from socd.reports.vn import SEVERITY_LABELS, SEVERITY_ORDER, fmt_int

COLOURS = {"low": "#4e9a06", "medium": "#edb518", "high": "#f57900", "critical": "#cc0000"}
_LOCK = threading.Lock()  # pyplot's state is global


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.family": "DejaVu Sans", "font.size": 9,
                         "axes.spines.top": False, "axes.spines.right": False,
                         "svg.hashsalt": "socd"})
    return plt


def _vn_ticks(axis: Any) -> None:
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))
    axis.set_major_formatter(FuncFormatter(lambda x, _pos: fmt_int(x)))


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight",
                metadata={"Software": None})
    return buf.getvalue()


def daily_chart(data: ReportData) -> bytes:
    """Alerts per day, stacked by severity."""
    with _LOCK:
        plt = _plt()
        fig, ax = plt.subplots(figsize=(7.2, 2.8))
        try:
            labels = [f"{d[8:10]}/{d[5:7]}" for d, _ in data.daily]
            bottom = [0] * len(labels)
            for sev in SEVERITY_ORDER:
                values = [counts.get(sev, 0) for _, counts in data.daily]
                ax.bar(labels, values, bottom=bottom, color=COLOURS[sev],
                       label=SEVERITY_LABELS[sev], width=0.7)
                bottom = [b + v for b, v in zip(bottom, values, strict=True)]
            ax.set_title("Cảnh báo theo ngày và mức độ")
            ax.set_ylabel("Số cảnh báo")
            ax.legend(loc="upper left", fontsize=8, ncols=4, frameon=False)
            if len(labels) > 16:
                step = max(1, len(labels) // 12)
                ax.set_xticks(range(0, len(labels), step))
                ax.set_xticklabels(labels[::step], rotation=45, ha="right")
            ax.set_ylim(0, max([*bottom, 1]) * 1.25)
            _vn_ticks(ax.yaxis)
            return _png(fig)
        finally:
            plt.close(fig)


def kind_chart(data: ReportData) -> bytes:
    """Alerts per asset kind (monitoring system), stacked by severity."""
    with _LOCK:
        plt = _plt()
        fig, ax = plt.subplots(figsize=(7.2, 2.4))
        try:
            rows = [k for k in data.by_kind if k.total] or data.by_kind
            labels = [k.label for k in rows]
            left = [0] * len(rows)
            for sev in SEVERITY_ORDER:
                values = [k.by_severity.get(sev, 0) for k in rows]
                ax.barh(labels, values, left=left, color=COLOURS[sev],
                        label=SEVERITY_LABELS[sev], height=0.6)
                left = [a + b for a, b in zip(left, values, strict=True)]
            for i, total in enumerate(left):
                ax.text(total, i, " " + fmt_int(total), va="center", fontsize=8)
            ax.invert_yaxis()
            ax.set_title("Cảnh báo theo hệ thống giám sát")
            ax.set_xlim(0, max([*left, 1]) * 1.15)
            _vn_ticks(ax.xaxis)
            ax.legend(loc="lower right", fontsize=8, frameon=False)
            return _png(fig)
        finally:
            plt.close(fig)


def rules_chart(data: ReportData) -> bytes:
    """The top rules by alerts."""
    with _LOCK:
        plt = _plt()
        fig, ax = plt.subplots(figsize=(7.2, 0.4 + 0.32 * max(1, len(data.top_rules))))
        try:
            rows = data.top_rules
            labels = [_short(r.rule_name or r.rule_id) for r in rows] or ["(không có)"]
            values = [r.total for r in rows] or [0]
            colours = [COLOURS.get(r.severity, "#888888") for r in rows] or ["#888888"]
            ax.barh(labels, values, color=colours, height=0.6)
            for i, v in enumerate(values):
                ax.text(v, i, " " + fmt_int(v), va="center", fontsize=8)
            ax.invert_yaxis()
            ax.set_xlim(0, max([*values, 1]) * 1.15)
            _vn_ticks(ax.xaxis)
            ax.set_title("Các luật phát hiện nhiều cảnh báo nhất")
            return _png(fig)
        finally:
            plt.close(fig)


def _short(text: str, limit: int = 48) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def all_charts(data: ReportData) -> dict[str, bytes]:
    return {"daily": daily_chart(data), "kinds": kind_chart(data), "rules": rules_chart(data)}


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
