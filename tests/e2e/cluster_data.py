"""The replayed data set of the Kafka equivalence test and benchmark (issue 18).

Real sshd logs from the corpus (loghub OpenSSH_2k, the Elastic examples' auth.log), each
copied for several hosts with its times shifted onto one day and interleaved in time
order, so the brute-force rules (threshold, distinct count, sequence, suppress and
escalate, grouped by source address) see attacks from many sources across hosts; plus
server-EDR alerts (rules with suppress by host, rule name, file) from the fixtures.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from pathlib import Path

from tests.helpers import REPO

SSHD_LOGS = (REPO / "tests/corpus/loghub-openssh/OpenSSH_2k.log",
             REPO / "tests/corpus/elastic-examples-auth/auth.log")
EDR_FIXTURE = REPO / "tests/fixtures/edr/server_edr.ndjson"
_LINE = re.compile(r"^(\w{3}) +(\d+) (\d\d):(\d\d):(\d\d) (\S+) (.*)$")
_MONTHS = {m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul",
                                       "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
BASE = datetime(2026, 11, 20, 6, 0, 0)  # the day the shifted lines land on (local time)


def _parsed(path: Path) -> list[tuple[datetime, str, str]]:
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        m = _LINE.match(line)
        if m is None:
            continue
        month, day, hh, mm, ss, host, rest = m.groups()
        when = datetime(2015, _MONTHS[month], int(day), int(hh), int(mm), int(ss))
        out.append((when, host, rest))
    return out


def sshd_lines(copies: int = 2, hours: float = 8.0) -> list[str]:
    """RFC 3164 lines: every log ``copies`` times (host ``<host>-<k>``), each squeezed or
    stretched onto ``hours`` from BASE plus k × 7 minutes, interleaved in time order."""
    timed: list[tuple[datetime, int, str]] = []
    n = 0
    for path in SSHD_LOGS:
        lines = _parsed(path)
        first, last = lines[0][0], lines[-1][0]
        span = max((last - first).total_seconds(), 1.0)
        scale = hours * 3600 / span
        for k in range(copies):
            for when, host, rest in lines:
                at = BASE + timedelta(seconds=int((when - first).total_seconds() * scale)
                                      + k * 420)
                stamp = f"{at:%b} {at.day:2d} {at:%H:%M:%S}"
                timed.append((at, n, f"{stamp} {host}-{k} {rest}"))
                n += 1
    timed.sort()
    return [line for _, _, line in timed]


def edr_records(count: int = 300) -> list[str]:
    """Server-EDR alerts: the fixture's records, repeated on a few hosts over the day
    (the same host, rule and file again inside the suppress windows)."""
    base = [json.loads(line) for line in EDR_FIXTURE.read_text().splitlines() if line]
    out = []
    for i in range(count):
        rec = dict(base[i % len(base)])
        rec["alert_id"] = f"k2-{i:06d}"
        at = BASE + timedelta(seconds=i * 97)
        rec["detected_at"] = at.strftime("%Y-%m-%dT%H:%M:%S+07:00")
        rec["hostname"] = f"{rec['hostname']}-{i % 3}"
        out.append(json.dumps(rec, ensure_ascii=False))
    return out


def write_data(directory: Path, copies: int = 2, edr: int = 300) -> tuple[Path, Path]:
    """The sshd file and the EDR file in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    sshd = directory / "sshd.log"
    sshd.write_text("\n".join(sshd_lines(copies)) + "\n", encoding="utf-8")
    alerts = directory / "edr.ndjson"
    alerts.write_text("\n".join(edr_records(edr)) + "\n", encoding="utf-8")
    return sshd, alerts
