"""Cron parsing and next fire times, UTC and across DST changes (pure logic)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.cron import describe, parse_cron
from broker.errors import ApplicationError


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, sec: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, sec, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("* * * * *", utc(2026, 11, 28, 12, 0, 30), utc(2026, 11, 28, 12, 1)),
        ("* * * * *", utc(2026, 11, 28, 12, 0), utc(2026, 11, 28, 12, 1)),  # strictly after
        ("*/15 * * * *", utc(2026, 11, 28, 12, 16), utc(2026, 11, 28, 12, 30)),
        ("0 9 * * MON-FRI", utc(2026, 11, 28, 10, 0), utc(2026, 11, 30, 9, 0)),  # Sat -> Mon
        ("0 0 1 JAN *", utc(2026, 11, 28), utc(2027, 1, 1)),
        ("0 0 29 2 *", utc(2026, 3, 1), utc(2028, 2, 29)),
        ("5 4 * * 7", utc(2026, 11, 28), utc(2026, 11, 29, 4, 5)),  # 7 is Sunday
        ("0 12 13 * 5", utc(2026, 11, 1), utc(2026, 11, 6, 12)),  # day 13 OR a Friday
        ("10-20/5 1,3 * * *", utc(2026, 11, 28, 1, 21), utc(2026, 11, 28, 3, 10)),
        ("CRON_TZ=Asia/Tokyo 0 9 * * *", utc(2026, 11, 28, 1, 0), utc(2026, 11, 29, 0, 0)),
        # New York springs forward on 2026-03-08 at 02:00: 02:30 does not exist that day.
        ("CRON_TZ=America/New_York 30 2 * * *", utc(2026, 3, 8, 5), utc(2026, 3, 9, 6, 30)),
        ("CRON_TZ=America/New_York 0 3 * * *", utc(2026, 3, 8, 5), utc(2026, 3, 8, 7)),
        # ... and falls back on 2026-11-01 at 02:00: 01:30 happens twice, fires once.
        ("CRON_TZ=America/New_York 30 1 * * *", utc(2026, 11, 1, 4), utc(2026, 11, 1, 5, 30)),
        ("CRON_TZ=America/New_York 30 1 * * *", utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)),
        ("CRON_TZ=America/New_York 0 * * * *", utc(2026, 11, 1, 5, 0), utc(2026, 11, 1, 7, 0)),
        ("CRON_TZ=Europe/Berlin 0 12 * * *", utc(2026, 6, 1), utc(2026, 6, 1, 10)),  # CEST
        ("CRON_TZ=Europe/Berlin 0 12 * * *", utc(2026, 12, 1), utc(2026, 12, 1, 11)),  # CET
    ],
)
def test_next_fire(expression: str, after: datetime, expected: datetime) -> None:
    assert parse_cron(expression).next_after(after) == expected


@pytest.mark.parametrize(
    ("expression", "needle"),
    [
        ("* * * *", "4 fields"),
        ("0 * * * * *", "6 fields"),
        ("60 * * * *", "minute"),
        ("* 24 * * *", "hour"),
        ("* * 0 * *", "day of month"),
        ("* * * 13 *", "month"),
        ("* * * * 8", "day of week"),
        ("*/0 * * * *", "step"),
        ("5-1 * * * *", "minute"),
        ("a * * * *", "minute"),
        ("CRON_TZ=Mars/Olympus 0 * * * *", "time zone"),
        ("CRON_TZ=../etc 0 * * * *", "time zone"),
    ],
)
def test_bad_cron_is_refused_naming_the_part(expression: str, needle: str) -> None:
    with pytest.raises(ApplicationError) as caught:
        parse_cron(expression)
    assert needle in caught.value.message


def test_a_cron_that_never_fires_is_refused() -> None:
    with pytest.raises(ApplicationError, match="never fires"):
        parse_cron("0 0 31 2 *").next_after(utc(2026, 1, 1))


@given(
    minute=st.integers(0, 59),
    hour=st.integers(0, 23),
    start=st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1)),
)
def test_daily_fire_is_the_next_matching_minute_in_utc(
    minute: int, hour: int, start: datetime
) -> None:
    after = start.replace(tzinfo=UTC)
    fire = parse_cron(f"{minute} {hour} * * *").next_after(after)
    assert (fire.hour, fire.minute, fire.second) == (hour, minute, 0)
    assert after < fire <= after + timedelta(days=1)


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("* * * * *", "every minute (UTC)"),
        ("*/15 * * * *", "every 15 minutes (UTC)"),
        ("5 * * * *", "at minute 5 of every hour (UTC)"),
        ("0 9 * * *", "at 09:00 every day (UTC)"),
        (
            "CRON_TZ=Europe/Berlin 30 8 * * MON-FRI",
            "at 08:30 on MON, TUE, WED, THU, FRI (Europe/Berlin)",
        ),
        ("0 0 1 JAN *", "at 00:00 on day 1 of the month in JAN (UTC)"),
    ],
)
def test_describe(expression: str, words: str) -> None:
    assert describe(parse_cron(expression)) == words
