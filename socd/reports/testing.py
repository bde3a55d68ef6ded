"""A deterministic seeded data set with known report numbers (tests and benchmarks).

:func:`seed_events` builds the alerts of ISO week 47/2026 (16-22/11/2026,
Asia/Ho_Chi_Minh), of the week before (the trend), and a few decoys around the
edges: alerts exactly at the end instant (23/11 00:00 local), one a second before the
start, and plain events (``event.kind: event``) inside the week. Timestamps alternate
between UTC (``Z``) and +07:00 so local-day bucketing is exercised. :data:`EXPECTED`
holds the numbers a correct report shows, worked out by hand from the groups below
(they are not computed by the report code).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from socd.event import Event, fingerprint, normalize, set_severity
from socd.severity import Severity
from socd.tz import parse_iso

WEEK_FIRST = date(2026, 11, 16)
WEEK_LAST = date(2026, 11, 22)
ICT = timezone(timedelta(hours=7))


@dataclass(frozen=True, slots=True)
class Group:
    count: int
    severity: str
    asset_kind: str
    unit: str
    rule_id: str | None
    rule_name: str
    hosts: tuple[str, ...] = ()  # host.name, cycled; empty: none
    ips: tuple[str, ...] = ()  # destination.ip, cycled
    statuses: tuple[tuple[str, int], ...] = ()  # (status, how many), the rest "new"
    week: int = 0  # 0: the report's week, -1: the week before


CURRENT: tuple[Group, ...] = (
    Group(120, "medium", "server", "Sở Y tế", "R-SSH", "Dò mật khẩu SSH",
          hosts=("srv-web-01",), statuses=(("false_positive", 20), ("resolved", 30))),
    Group(15, "high", "server", "Sở Y tế", "R-WEBSHELL", "Webshell trên máy chủ",
          hosts=("srv-web-01", "srv-mail-01"), statuses=(("acknowledged", 5),)),
    Group(4, "critical", "server", "Sở Tài chính", "R-RANSOM", "Mã độc tống tiền",
          hosts=("srv-db-01",), statuses=(("resolved", 4),)),
    Group(60, "low", "workstation", "Sở Giáo dục và Đào tạo", None, "PUP.Optional.Toolbar",
          hosts=tuple(f"pc-{i:03d}" for i in range(1, 11)),
          statuses=(("false_positive", 10),)),
    Group(35, "medium", "workstation", "UBND huyện Châu Thành", "", "Worm.Win32.AutoRun.gen",
          hosts=tuple(f"pc-{i:03d}" for i in range(11, 16))),
    Group(8, "high", "workstation", "Sở Tài chính", "R-USB", "Sâu lây qua USB",
          hosts=("pc-020",)),
    *(Group(1, "low", "workstation", "Sở Y tế", f"R-MISC-{i:02d}", f"Luật phụ {i:02d}",
            hosts=("pc-100",)) for i in range(1, 12)),
    Group(1234, "low", "network", "Trung tâm Tích hợp dữ liệu", "2002911",
          "ET SCAN Potential VNC Scan 5900-5920", ips=("10.10.20.11", "10.10.20.12"),
          statuses=(("acknowledged", 234),)),
    Group(2, "critical", "network", "Trung tâm Tích hợp dữ liệu", "2024217",
          "ET EXPLOIT Possible CVE-2016-2776", ips=("10.10.20.12",)),
)
PREVIOUS: tuple[Group, ...] = (
    Group(100, "medium", "server", "Sở Y tế", "R-SSH", "Dò mật khẩu SSH",
          hosts=("srv-web-01",), week=-1),
    Group(20, "high", "server", "Sở Y tế", "R-WEBSHELL", "Webshell trên máy chủ",
          hosts=("srv-web-01",), week=-1),
    Group(30, "low", "workstation", "Sở Y tế", None, "PUP.Optional.Toolbar",
          hosts=("pc-001",), week=-1),
    Group(4, "critical", "network", "Trung tâm Tích hợp dữ liệu", "2024217",
          "ET EXPLOIT Possible CVE-2016-2776", ips=("10.10.20.12",), week=-1),
)

EXPECTED: dict[str, Any] = {
    "title": "Tóm tắt tình hình an toàn thông tin tuần 47/2026 "
             "(từ ngày 16/11/2026 đến ngày 22/11/2026)",
    "total": 1489,
    "by_severity": {"low": 1305, "medium": 155, "high": 23, "critical": 6},
    "by_kind": {
        # (severities, total, false positives, acknowledged, resolved = đã xử lý)
        "server": ({"low": 0, "medium": 120, "high": 15, "critical": 4}, 139, 20, 5, 34),
        "workstation": ({"low": 71, "medium": 35, "high": 8, "critical": 0}, 114, 10, 0, 0),
        "network": ({"low": 1234, "medium": 0, "high": 0, "critical": 2}, 1236, 0, 234, 0),
    },
    "sentences": [
        "Hệ thống giám sát máy chủ có 120 cảnh báo mức độ trung bình, 15 cảnh báo mức độ "
        "cao và 4 cảnh báo mức độ nghiêm trọng.",
        "Hệ thống giám sát máy trạm có 71 cảnh báo mức độ thấp, 35 cảnh báo mức độ trung "
        "bình và 8 cảnh báo mức độ cao.",
        "Hệ thống giám sát mạng có 1.234 cảnh báo mức độ thấp và 2 cảnh báo mức độ nghiêm "
        "trọng.",
    ],
    "by_status": {"new": 1186, "acknowledged": 239, "false_positive": 30, "resolved": 34},
    "false_positives": 30,
    "acknowledged": 239,  # đã tiếp nhận
    "handled": 34,  # đã xử lý: resolved only (it was acknowledged + resolved, 273)
    "previous_total": 155,
    # severity: (previous, current, percent text)
    "trend": {"low": (31, 1305, "+4.109,7 %"), "medium": (100, 155, "+55,0 %"),
              "high": (20, 23, "+15,0 %"), "critical": (4, 6, "+50,0 %")},
    # (rule id, rule name, highest severity, alerts, false positives)
    "top_rules": [
        ("2002911", "ET SCAN Potential VNC Scan 5900-5920", "low", 1234, 0),
        ("R-SSH", "Dò mật khẩu SSH", "medium", 120, 20),
        ("", "PUP.Optional.Toolbar", "low", 60, 10),
        ("", "Worm.Win32.AutoRun.gen", "medium", 35, 0),
        ("R-WEBSHELL", "Webshell trên máy chủ", "high", 15, 0),
        ("R-USB", "Sâu lây qua USB", "high", 8, 0),
        ("R-RANSOM", "Mã độc tống tiền", "critical", 4, 0),
        ("2024217", "ET EXPLOIT Possible CVE-2016-2776", "critical", 2, 0),
        ("R-MISC-01", "Luật phụ 01", "low", 1, 0),
        ("R-MISC-02", "Luật phụ 02", "low", 1, 0),
    ],
    # (system, unit, alerts, high + critical)
    "top_systems": [
        ("10.10.20.12", "Trung tâm Tích hợp dữ liệu", 619, 2),
        ("10.10.20.11", "Trung tâm Tích hợp dữ liệu", 617, 0),
        ("srv-web-01", "Sở Y tế", 128, 8),
        ("pc-100", "Sở Y tế", 11, 0),
        ("pc-020", "Sở Tài chính", 8, 8),
        ("pc-011", "UBND huyện Châu Thành", 7, 0),
        ("pc-012", "UBND huyện Châu Thành", 7, 0),
        ("pc-013", "UBND huyện Châu Thành", 7, 0),
        ("pc-014", "UBND huyện Châu Thành", 7, 0),
        ("pc-015", "UBND huyện Châu Thành", 7, 0),
    ],
    # (unit, alerts, {severity: n})
    "top_units": [
        ("Trung tâm Tích hợp dữ liệu", 1236, {"low": 1234, "medium": 0, "high": 0,
                                              "critical": 2}),
        ("Sở Y tế", 146, {"low": 11, "medium": 120, "high": 15, "critical": 0}),
        ("Sở Giáo dục và Đào tạo", 60, {"low": 60, "medium": 0, "high": 0, "critical": 0}),
        ("UBND huyện Châu Thành", 35, {"low": 0, "medium": 35, "high": 0, "critical": 0}),
        ("Sở Tài chính", 12, {"low": 0, "medium": 0, "high": 8, "critical": 4}),
    ],
}


def _local_time(i: int, week: int) -> datetime:
    base = datetime(2026, 11, 16, tzinfo=ICT) + timedelta(days=7 * week)
    return base + timedelta(days=i % 7, hours=(i * 7) % 24, minutes=i % 60, seconds=i % 13)


def _stamp(when: datetime, i: int) -> str:
    if i % 2:
        return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return when.isoformat(timespec="milliseconds")


def _event(run: str, n: int, when: str, group: Group, i: int, status: str,
           kind: str = "alert") -> Event:
    event: Event = {
        "@timestamp": when,
        "event": {"kind": kind, "id": f"{run}-{n}", "hash": fingerprint(run, str(n)),
                  "module": "seed"},
        "message": f"{group.rule_name} #{i}",
        "socd": {"layer": 2, "asset_kind": group.asset_kind, "unit": group.unit,
                 "collector": "seed", "alert": {"status": status}},
    }
    rule: dict[str, Any] = {"name": group.rule_name}
    if group.rule_id is not None:
        rule["id"] = group.rule_id
    event["rule"] = rule
    if group.hosts:
        event["host"] = {"name": group.hosts[i % len(group.hosts)]}
    if group.ips:
        event["destination"] = {"ip": group.ips[i % len(group.ips)], "port": 5901}
        event["source"] = {"ip": "203.0.113.59", "port": 40000 + i % 20000}
    set_severity(event, Severity(group.severity))
    return normalize(event)


def seed_events(run: str = "seed") -> list[Event]:
    """Every seeded event (alerts, decoys, plain events), in a fixed order."""
    out: list[Event] = []
    n = 0
    for group in (*CURRENT, *PREVIOUS):
        statuses = [s for s, k in group.statuses for _ in range(k)]
        for i in range(group.count):
            status = statuses[i] if i < len(statuses) else "new"
            out.append(_event(run, n, _stamp(_local_time(i + n, group.week), i + n), group,
                              i, status))
            n += 1
    decoy = Group(1, "high", "server", "Sở Y tế", "R-EDGE", "Ngoài kỳ", hosts=("srv-x",))
    # Exactly the end instant (23/11 00:00 local) belongs to the next week.
    for i in range(3):
        out.append(_event(run, n, "2026-11-22T17:00:00.000Z", decoy, i, "new"))
        n += 1
    # A second before the start belongs to the week before (a low workstation alert).
    edge = Group(1, "low", "workstation", "Sở Y tế", None, "PUP.Optional.Toolbar",
                 hosts=("pc-001",), week=-1)
    out.append(_event(run, n, "2026-11-15T16:59:59.000Z", edge, 0, "new"))
    n += 1
    # Plain events (not alerts) inside the week are never counted.
    for i in range(10):
        out.append(_event(run, n, "2026-11-15T17:30:00.000Z", decoy, i, "new", kind="event"))
        n += 1
    return out


def expected_daily(events: list[Event]) -> dict[str, dict[str, int]]:
    """Alerts per local day and severity of the report's week, counted from the raw
    events (independently of the report code)."""
    out: dict[str, dict[str, int]] = {}
    for e in events:
        if e["event"].get("kind") != "alert":
            continue
        ts = parse_iso(e["@timestamp"], naive=None).astimezone(ICT)
        if not WEEK_FIRST <= ts.date() <= WEEK_LAST:
            continue
        day = out.setdefault(ts.date().isoformat(),
                             {"low": 0, "medium": 0, "high": 0, "critical": 0})
        day[e["socd"]["severity"]] += 1
    return out
