"""socd.ratelimit: one log line per key and interval, with the count held back."""

from __future__ import annotations

from socd.ratelimit import LogLimiter


def test_first_occurrence_at_once_then_counted_until_the_interval_ends() -> None:
    now = [0.0]
    limiter = LogLimiter(60.0, clock=lambda: now[0])
    assert limiter.allow("syslog", 6) == 0
    now[0] = 30.0
    assert limiter.allow("syslog", 4) is None
    assert limiter.allow("syslog") is None
    assert limiter.allow("edr") == 0          # keys are independent
    now[0] = 61.0
    assert limiter.allow("syslog", 2) == 5    # the 4 + 1 held back since the last line
    now[0] = 62.0
    assert limiter.allow("syslog") is None


def test_the_table_is_cleared_rather_than_grown() -> None:
    limiter = LogLimiter(60.0, max_keys=3, clock=lambda: 0.0)
    assert [limiter.allow(k) for k in "abc"] == [0, 0, 0]
    assert limiter.allow("d") == 0            # cleared: a, b, c may log again
    assert limiter.allow("a") == 0
    assert limiter.allow("a") is None
