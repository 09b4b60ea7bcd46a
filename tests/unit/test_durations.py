from __future__ import annotations

import pytest

from broker.durations import (
    MAX_DURATION_SECONDS,
    DurationError,
    format_duration,
    parse_duration,
    parse_go_duration,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0),
        ("30", 30),
        ("90s", 90),
        ("0s", 0),
        ("5m", 300),
        ("2m30s", 150),
        ("1h", 3600),
        ("7d", 7 * 86400),
        ("1d10h30m", 86400 + 10 * 3600 + 30 * 60),
        ("1d1h1m1s", 90061),
        ("30m1h", 5400),
        ("  45s\n", 45),
        ("007s", 7),
    ],
)
def test_parse_duration_accepts_seconds_and_unit_combinations(value: str, expected: int) -> None:
    assert parse_duration(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "s",
        "-5s",
        "-5",
        "+5s",
        "1.5s",
        "1.5",
        "5w",
        "5ms",
        "5S",
        "5 s",
        "1h 30m",
        "1h,30m",
        "abc",
        "5s junk",
        "junk 5s",
        "1d2x",
        "1e3",
        "\u0663s",
        "1h1h",
        "1s2m3s",
    ],
)
def test_parse_duration_rejects_malformed_values(value: str) -> None:
    with pytest.raises(DurationError):
        parse_duration(value)


def test_parse_duration_rejects_unknown_unit_with_readable_message() -> None:
    with pytest.raises(DurationError) as excinfo:
        parse_duration("5w")
    assert str(excinfo.value) == ("invalid duration '5w': use a number of seconds or <n>s/m/h/d")


def test_parse_duration_rejects_repeated_unit_naming_it() -> None:
    with pytest.raises(DurationError, match="unit 'h' given more than once"):
        parse_duration("1h2h")


def test_duration_error_is_a_value_error() -> None:
    assert issubclass(DurationError, ValueError)


@pytest.mark.parametrize(
    "value",
    [
        str(MAX_DURATION_SECONDS + 1),
        f"{MAX_DURATION_SECONDS + 1}s",
        "36501d",
        "36500d1s",
        "9" * 5000,
        "9" * 5000 + "s",
    ],
)
def test_parse_duration_rejects_more_than_100_years(value: str) -> None:
    with pytest.raises(DurationError, match="100 years"):
        parse_duration(value)


@pytest.mark.parametrize("value", [str(MAX_DURATION_SECONDS), "36500d"])
def test_parse_duration_accepts_exactly_100_years(value: str) -> None:
    assert parse_duration(value) == MAX_DURATION_SECONDS


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0, "0s"),
        (1, "1s"),
        (59, "59s"),
        (60, "1m"),
        (90, "1m30s"),
        (3600, "1h"),
        (3661, "1h1m1s"),
        (86400, "1d"),
        (86401, "1d1s"),
        (90061, "1d1h1m1s"),
        (10 * 86400 + 30 * 60, "10d30m"),
    ],
)
def test_format_duration_renders_largest_units_first(seconds: int, expected: str) -> None:
    assert format_duration(seconds) == expected


@pytest.mark.parametrize("seconds", [0, 1, 59, 61, 3599, 3661, 86399, 90061, 31_536_000])
def test_format_duration_round_trips_through_parse_duration(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


def test_format_duration_rejects_negative_seconds() -> None:
    with pytest.raises(DurationError):
        format_duration(-1)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0.0),
        ("6m5s", 365.0),
        ("1.5h", 5400.0),
        ("300ms", 0.3),
        ("10us", 1e-5),
        ("10\u00b5s", 1e-5),
        ("10\u03bcs", 1e-5),
        ("1ns", 1e-9),
        ("2h45m", 9900.0),
        ("1h0m0s", 3600.0),
        (".5s", 0.5),
        ("5.s", 5.0),
        ("1s1s", 2.0),
        ("+2m", 120.0),
        ("-1.5s", -1.5),
        (" 30s ", 30.0),
    ],
)
def test_parse_go_duration_follows_go_time_parse_duration(value: str, expected: float) -> None:
    assert parse_go_duration(value) == pytest.approx(expected)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "-",
        "5",
        "1.5",
        ".s",
        "s",
        "5d",
        "5w",
        "1e3s",
        "1h 2m",
        "1h-2m",
        "abc",
        "5sx",
        "1" * 400 + "h",
        "nan",
        "infs",
    ],
)
def test_parse_go_duration_returns_none_for_unparseable_text(value: str) -> None:
    assert parse_go_duration(value) is None
