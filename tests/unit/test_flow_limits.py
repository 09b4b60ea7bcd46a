"""Rate periods and the next admission time of a flow-control key (pure logic)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from broker.flow_limits import next_admission, period_start

T0 = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)


def s(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("start", "period", "now", "expected"),
    [
        (None, 1, s(5.3), s(5.3)),  # the first admission starts the first period
        (s(0), 1, s(0.4), s(0)),  # still in it
        (s(0), 1, s(1.0), s(1)),  # the next one starts on the boundary
        (s(0), 1, s(3.7), s(3)),  # late admissions keep the grid: no drift
        (s(0), 60, s(59.9), s(0)),
        (s(0), 60, s(125), s(120)),
        (s(2), 1, s(1.9), s(2)),  # an older clock reading stays in the current period
        (s(0), 0, s(2.5), s(2)),  # a zero period reads as one second
    ],
)
def test_period_start(
    start: datetime | None, period: int, now: datetime, expected: datetime
) -> None:
    assert period_start(start, period, now) == expected


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"following": None, "room_left": True, "rate_spent": True}, None),  # nothing waits
        ({"following": s(0), "room_left": True, "rate_spent": False}, s(10)),  # go again now
        ({"following": s(0), "room_left": False, "rate_spent": True}, s(11)),  # next period
        ({"following": s(15), "room_left": False, "rate_spent": True}, s(15)),  # a later message
        ({"following": s(12), "room_left": False, "rate_spent": False}, s(12)),  # its due time
    ],
)
def test_next_admission(kwargs: dict, expected: datetime | None) -> None:
    assert next_admission(now=s(10), period_end=s(11), **kwargs) == expected
