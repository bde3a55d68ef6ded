"""The summary table printed after the embedded default replays its sample data."""

from __future__ import annotations

from collections.abc import Mapping

from socd.severity import Severity

_KIND_VI = {
    "server": "Máy chủ",
    "workstation": "Máy trạm",
    "network": "Mạng",
    "application": "Ứng dụng",
    "unknown": "Khác",
}


def render(counts: Mapping[tuple[str, str], int], *, title: str) -> str:
    """A text table: rows are severities (Vietnamese labels), columns asset kinds."""
    kinds = [k for k in _KIND_VI if any(key[1] == k for key in counts)]
    kinds += sorted({k for _, k in counts} - set(kinds))
    header = ["Mức độ", *(_KIND_VI.get(k, k) for k in kinds), "Tổng"]
    rows: list[list[str]] = []
    col_totals = [0] * len(kinds)
    for sev in reversed(list(Severity)):
        values = [counts.get((sev.value, k), 0) for k in kinds]
        col_totals = [a + b for a, b in zip(col_totals, values, strict=True)]
        rows.append([f"{sev.label} ({sev.value})", *(_num(v) for v in values),
                     _num(sum(values))])
    rows.append(["Tổng", *(_num(v) for v in col_totals), _num(sum(col_totals))])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))
        return "│ " + " │ ".join([first, *rest]) + " │"

    rule = "─" * (sum(widths) + 3 * len(widths) + 1)
    out = [title, rule, line(header), rule]
    out += [line(r) for r in rows[:-1]]
    out += [rule, line(rows[-1]), rule]
    return "\n".join(out)


def _num(value: int) -> str:
    """Vietnamese thousands separator: 35.576."""
    return f"{value:,}".replace(",", ".")
