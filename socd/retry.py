"""The one exponential backoff of socd's retry loops.

Sinks (the pipeline's runners and spool drainers), the intake journal's writer and
the notification senders all wait longer after every failure, up to a cap, so a
server that is down is not hammered and one that comes back is found quickly.
Jitter spreads the retries of many writers that failed together (a restarted
Elasticsearch, a mail relay) so they do not come back in one burst.
"""

from __future__ import annotations

import random


def backoff(attempt: int, cap: float, retry_after: float | None = None, *,
            first: float = 1.0, jitter: bool = True) -> float:
    """Seconds to wait after ``attempt`` failures (1 for the first) before trying again.

    ``first`` after the first failure, doubling after each further one, never more
    than ``cap``; with ``jitter`` a random 50-100 % of that. A ``retry_after`` the
    server asked for (HTTP ``Retry-After``) is waited at least, up to ``cap``.
    """
    delay: float = min(cap, first * float(2 ** min(attempt - 1, 30)))
    if jitter:
        delay *= random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not crypto
    if retry_after is not None and retry_after > 0:
        delay = max(delay, min(retry_after, cap))
    return delay
