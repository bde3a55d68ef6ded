"""The syslog decoder's timestamp caches give the text :meth:`_clock` gives (issue 17).

``SyslogDecoder._clock_stamp`` reads an RFC 3164 stamp through a per-second cache and,
on a miss, a per-minute one (``_minute_text``: second 00's text with the seconds put
in). Every stamp here is read through both caches, in an order that mixes minutes, and
compared with ``_clock`` itself, where the per-minute shortcut would be wrong if its
conditions were: minutes holding a zone's offset change (daylight saving, Lord Howe's
half hour, Monrovia's 1972 change at 00:44:30, Saigon's 1911 one), the previous-year rule's boundary
falling inside a minute, and stamps that are no date.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from socd.decoders.syslog import SyslogDecoder

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def stamp_of(wall: datetime) -> str:
    """``wall`` as the fast header writes it: ``Mmm dd hh:mm:ss``, the day space-padded."""
    return f"{MONTHS[wall.month - 1]} {wall.day:2d} {wall:%H:%M:%S}"


def direct(decoder: SyslogDecoder, stamp: str, received: float) -> str | None:
    """``_clock`` of ``stamp``, no cache: what ``_clock_stamp`` must return."""
    return decoder._clock(stamp[:3], int(stamp[4:6]), int(stamp[7:9]), int(stamp[10:12]),
                          int(stamp[13:15]), 0, decoder._zone, None, received)


def offset_changes(zone: ZoneInfo, year: int) -> list[datetime]:
    """Naive local wall times of each change of ``zone``'s offset in ``year``: the last
    second of the old offset and the first of the new one, each as its own wall clock
    reads it (where a skipped or repeated interval begins and ends)."""
    out = []
    t = datetime(year, 1, 1, tzinfo=zone)
    end = datetime(year + 1, 1, 1, tzinfo=zone)
    while t < end:
        after = t + timedelta(hours=1)
        if t.utcoffset() != after.utcoffset():
            # find the second of the change by bisection on UTC instants
            lo, hi = t.timestamp(), after.timestamp()
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if datetime.fromtimestamp(mid, zone).utcoffset() == t.utcoffset():
                    lo = mid
                else:
                    hi = mid
            out += [datetime.fromtimestamp(lo, zone).replace(tzinfo=None),
                    datetime.fromtimestamp(hi, zone).replace(tzinfo=None)]
        t = after
    return out


def minutes_around(walls: list[datetime], span: int = 2) -> list[str]:
    """Every second of the minutes from ``span`` before to ``span`` after each wall time."""
    stamps = set()
    for wall in walls:
        base = wall.replace(second=0)
        for m in range(-span, span + 1):
            for s in range(60):
                stamps.add(stamp_of(base + timedelta(minutes=m, seconds=s)))
    return sorted(stamps)


def check(zone: str, stamps: list[str], received: float) -> int:
    """Read ``stamps`` (shuffled, each twice) through the caches; count the minutes the
    per-minute shortcut served."""
    decoder = SyslogDecoder.create("syslog", timezone=zone)
    reads = [*stamps, *stamps]
    random.Random(17).shuffle(reads)
    for stamp in reads:
        assert decoder._clock_stamp(stamp, received) == direct(decoder, stamp, received), stamp
    return sum(1 for value in decoder._minutes.values() if value is not None)


@pytest.mark.parametrize(("zone", "year"), [
    ("America/New_York", 2026), ("Europe/Dublin", 2026), ("Australia/Lord_Howe", 2026),
    ("Asia/Ho_Chi_Minh", 1911), ("Asia/Ho_Chi_Minh", 1975), ("America/Sao_Paulo", 2018),
    ("Africa/Monrovia", 1972),
])
def test_minutes_with_an_offset_change(zone: str, year: int) -> None:
    changes = offset_changes(ZoneInfo(zone), year)
    assert changes, f"{zone} changes its offset in {year}"
    received = datetime(year, 6, 30, 12, 0, tzinfo=ZoneInfo(zone)).timestamp()
    # "now" mid-year: every stamp of that year is at most half a year away
    assert check(zone, minutes_around(changes), received) > 0


@pytest.mark.parametrize("zone", ["Asia/Ho_Chi_Minh", "UTC", "America/New_York"])
def test_previous_year_rule_inside_a_minute(zone: str) -> None:
    # now = Dec 30 10:20:30: "Dec 31 10:20:31" is more than a day ahead (so of last
    # year), "Dec 31 10:20:30" is not; and the turn of the year read on Jan 1.
    tz = ZoneInfo(zone)
    for now in (datetime(2026, 12, 30, 10, 20, 30, tzinfo=tz),
                datetime(2027, 1, 1, 0, 0, 59, tzinfo=tz)):
        walls = [now.replace(tzinfo=None) + timedelta(days=1), datetime(now.year, 12, 31, 23, 59)]
        check(zone, minutes_around(walls), now.timestamp())


def test_stamps_that_are_no_date() -> None:
    received = datetime(2024, 6, 15, 12, tzinfo=ZoneInfo("Asia/Ho_Chi_Minh")).timestamp()
    stamps = [f"{mon} {day:2d} {h:02d}:{m:02d}:{s:02d}"
              for mon, day in (("Feb", 29), ("Feb", 30), ("Jun", 31), ("Jun", 0), ("Jun", 30))
              for h in (0, 23, 24, 99) for m in (0, 59, 60) for s in (0, 9, 59, 60, 61, 99)]
    check("Asia/Ho_Chi_Minh", stamps, received)


def test_the_caches_follow_now_and_zone() -> None:
    decoder = SyslogDecoder.create("syslog", timezone="+07:00")
    stamp = "Jan  1 00:00:10"
    for received in (datetime(2026, 12, 30, 23, 59, 50).timestamp(),
                     datetime(2026, 12, 31, 0, 0, 50).timestamp(),
                     datetime(2027, 1, 1, 0, 0, 0).timestamp()):
        assert decoder._clock_stamp(stamp, received) == direct(decoder, stamp, received)
    decoder._zone = ZoneInfo("UTC")
    assert decoder._clock_stamp(stamp, received) == direct(decoder, stamp, received)
    assert decoder._clock_stamp(stamp, received).endswith("+00:00")
