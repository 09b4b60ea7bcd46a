from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta

import pytest

from broker.backoff import MAX_BACKOFF_SECONDS, default_backoff_seconds, retry_after_seconds

NOW = datetime(2025, 3, 14, 12, 0, 0, tzinfo=UTC)


def test_max_backoff_is_one_day() -> None:
    assert MAX_BACKOFF_SECONDS == 86400


@pytest.mark.parametrize(
    ("retry_number", "expected"),
    [
        (1, math.exp(2.5)),  # ~12 s
        (2, math.exp(5.0)),  # ~2 m 28 s
        (3, math.exp(7.5)),  # ~30 m 8 s
        (4, math.exp(10.0)),  # ~6 h 7 m 6 s
        (5, 86400.0),
        (6, 86400.0),
        (300, 86400.0),
        (10_000, 86400.0),
        (10**12, 86400.0),
    ],
)
def test_default_backoff_grows_exponentially_up_to_one_day(
    retry_number: int, expected: float
) -> None:
    assert default_backoff_seconds(retry_number) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("retry_number", "published"),
    [(1, 12), (2, 2 * 60 + 28), (3, 30 * 60 + 8), (4, 6 * 3600 + 7 * 60 + 6), (5, 86400)],
)
def test_default_backoff_matches_published_qstash_table(retry_number: int, published: int) -> None:
    assert int(default_backoff_seconds(retry_number)) == published


@pytest.mark.parametrize("retry_number", [0, -1, -10_000])
def test_default_backoff_treats_non_positive_retry_number_as_zero(retry_number: int) -> None:
    assert default_backoff_seconds(retry_number) == 1.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "120"}, 120.0),
        ({"Retry-After": "0"}, 0.0),
        ({"Retry-After": "1.5"}, 1.5),
        ({"Retry-After": " 30 "}, 30.0),
        ({"Retry-After": "86400"}, 86400.0),
        ({"retry-after": "7"}, 7.0),
        ({"RETRY-AFTER": "7"}, 7.0),
        ({"Retry-After": "6m5s"}, 365.0),
        ({"Retry-After": "300ms"}, 0.3),
        ({"Retry-After": "1h"}, 3600.0),
        ({"Retry-After": "Fri, 14 Mar 2025 12:05:00 GMT"}, 300.0),
        ({"Retry-After": "Fri, 14 Mar 2025 12:00:30 +0000"}, 30.0),
        ({"Retry-After": "Fri, 14 Mar 2025 13:00:30 +0100"}, 30.0),
        ({"Retry-After": "Fri, 14 Mar 2025 12:00:30 -0000"}, 30.0),
        ({"Retry-After": "Fri, 14 Mar 2025 11:00:00 GMT"}, 0.0),
        ({"Retry-After": "Thu, 01 Jan 1970 00:00:00 GMT"}, 0.0),
        ({"X-RateLimit-Reset": "42"}, 42.0),
        ({"x-ratelimit-reset-requests": "1m"}, 60.0),
        ({"X-RateLimit-Reset-Tokens": "6m0s"}, 360.0),
        ({"X-RateLimit-Reset-Tokens": "20ms"}, 0.02),
    ],
)
def test_retry_after_reads_seconds_dates_and_go_durations(
    headers: Mapping[str, str], expected: float
) -> None:
    assert retry_after_seconds(headers, NOW) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"X-RateLimit-Reset-Tokens": "3", "Retry-After": "1"}, 1.0),
        ({"X-RateLimit-Reset-Tokens": "3", "X-RateLimit-Reset": "2"}, 2.0),
        ({"X-RateLimit-Reset-Tokens": "3", "X-RateLimit-Reset-Requests": "4"}, 4.0),
        ({"Retry-After": "soon", "X-RateLimit-Reset": "9"}, 9.0),
        ({"Retry-After": "", "X-RateLimit-Reset-Requests": "2s"}, 2.0),
        ({"Retry-After": "-5", "X-RateLimit-Reset": "5"}, 5.0),
    ],
)
def test_retry_after_first_present_and_parseable_header_wins(
    headers: Mapping[str, str], expected: float
) -> None:
    assert retry_after_seconds(headers, NOW) == expected


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Content-Type": "text/plain"},
        {"Upstash-Retry-After": "5"},
        {"Retry-After": ""},
        {"Retry-After": "soon"},
        {"Retry-After": "-1"},
        {"Retry-After": "-5s"},
        {"Retry-After": "1e3"},
        {"Retry-After": "nan"},
        {"Retry-After": "inf"},
        {"Retry-After": "5d"},
        {"Retry-After": "Fri, 99 Mar 2025 12:00:00 GMT"},
    ],
)
def test_retry_after_returns_none_without_usable_header(headers: Mapping[str, str]) -> None:
    assert retry_after_seconds(headers, NOW) is None


@pytest.mark.parametrize(
    "headers",
    [
        {"Retry-After": "86401"},
        {"Retry-After": "86400.5"},
        {"Retry-After": "25h"},
        {"Retry-After": "Sun, 16 Mar 2025 12:00:00 GMT"},
        # A unix-timestamp style X-RateLimit-Reset is far beyond one day.
        {"X-RateLimit-Reset": "1741953600"},
        # Ignored, not skipped: a lower-priority header must not take over.
        {"Retry-After": "100000", "X-RateLimit-Reset": "5"},
    ],
)
def test_retry_after_over_one_day_is_ignored(headers: Mapping[str, str]) -> None:
    assert retry_after_seconds(headers, NOW) is None


def test_retry_after_date_is_relative_to_given_clock() -> None:
    headers = {"Retry-After": "Fri, 14 Mar 2025 12:10:00 GMT"}
    later = NOW + timedelta(minutes=4)
    assert retry_after_seconds(headers, later) == 360.0


def test_retry_after_accepts_naive_now_as_utc() -> None:
    headers = {"Retry-After": "Fri, 14 Mar 2025 12:01:00 GMT"}
    assert retry_after_seconds(headers, NOW.replace(tzinfo=None)) == 60.0


def test_retry_after_accepts_any_mapping() -> None:
    class Headers(Mapping[str, str]):
        def __init__(self, data: dict[str, str]) -> None:
            self._data = data

        def __getitem__(self, key: str) -> str:
            return self._data[key]

        def __iter__(self) -> Iterator[str]:
            return iter(self._data)

        def __len__(self) -> int:
            return len(self._data)

    assert retry_after_seconds(Headers({"rEtRy-AfTeR": "3"}), NOW) == 3.0
