"""The arithmetic of flow-control limits: rate periods and when a key admits next.

Pure functions; ``broker/services/gates.py`` reads and writes the rows.
"""

from __future__ import annotations

from datetime import datetime, timedelta


def period_start(start: datetime | None, period_seconds: int, now: datetime) -> datetime:
    """The start of the rate period ``now`` falls in.

    Periods follow each other back to back from the first one, so admissions that
    run a little late do not drift the rate. A reading of ``now`` older than the
    current period's start (another claimer admitted meanwhile) is in that period.
    """
    if start is None:
        return now
    if now < start:
        return start
    period = timedelta(seconds=period_seconds or 1)
    return start + period * ((now - start) // period)


def next_admission(
    *,
    following: datetime | None,
    now: datetime,
    room_left: bool,
    rate_spent: bool,
    period_end: datetime | None,
) -> datetime | None:
    """When a key should admit again, after admitting what it could now.

    ``following``: the due time of its next waiting message (None: nothing waits).
    ``room_left``: the round stopped at its own cap, not at a limit: go again now.
    ``rate_spent``: the rate of this period is used up: wait for ``period_end``.
    Otherwise, if the parallelism is what stopped it, no time: releasing a slot
    wakes the key. If nothing stopped it, the next message's due time.
    """
    if following is None:
        return None
    if room_left:
        return now
    if rate_spent:
        assert period_end is not None
        return max(following, period_end)
    return following
