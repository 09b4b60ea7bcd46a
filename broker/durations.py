"""Duration strings: QStash's `1d10h30m` form and Go's `time.ParseDuration` form."""

from __future__ import annotations

import math
import re

__all__ = [
    "MAX_DURATION_SECONDS",
    "DurationError",
    "format_duration",
    "parse_duration",
    "parse_go_duration",
]

# Anything longer than a century is a typo or an attack on date arithmetic
# (datetime tops out at year 9999), never a real delay.
MAX_DURATION_SECONDS = 100 * 365 * 86400

_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}

# ASCII digits only: `\d` would also accept e.g. Arabic-Indic digits, which
# int() happily converts but no client ever sends on purpose.
_BARE_SECONDS = re.compile(r"[0-9]+")
_QSTASH_PART = re.compile(r"([0-9]+)([dhms])")

# More digits than this cannot be under the cap; checking first keeps int()
# away from multi-thousand-digit strings (which raise a plain ValueError).
_MAX_DIGITS = len(str(MAX_DURATION_SECONDS))

# Nanoseconds per unit, as Go counts them; summing in nanoseconds and
# dividing once keeps "10us" at exactly 1e-05 instead of 9.999999999999999e-06.
_GO_UNIT_NANOS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # MICRO SIGN, what Go's own String() emits
    "\u03bcs": 1_000,  # GREEK SMALL LETTER MU, also accepted by Go
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
# Go requires a digit on at least one side of the decimal point (".5s" and
# "5.s" are fine, ".s" is not); the lookahead enforces that.
_GO_PART = re.compile(r"(?=\.?[0-9])([0-9]*(?:\.[0-9]*)?)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")


class DurationError(ValueError):
    """A duration string could not be parsed or is out of range."""


def _invalid(value: str, reason: str | None = None) -> DurationError:
    message = f"invalid duration '{value}': use a number of seconds or <n>s/m/h/d"
    if reason:
        message = f"invalid duration '{value}': {reason}"
    return DurationError(message)


def parse_duration(value: str) -> int:
    """Parse `"30"`, `"90s"` or `"1d10h30m"` into whole seconds.

    Each unit may appear at most once, in any order. Raises DurationError.
    """
    text = value.strip()
    if not text:
        raise _invalid(value)

    if _BARE_SECONDS.fullmatch(text):
        if len(text) > _MAX_DIGITS:
            raise _invalid(value, "longer than 100 years")
        total = int(text)
    else:
        total = 0
        seen: set[str] = set()
        position = 0
        for match in _QSTASH_PART.finditer(text):
            # finditer skips over junk; demanding contiguous matches makes
            # "5s junk 3m" fail instead of silently meaning 3m5s.
            if match.start() != position:
                raise _invalid(value)
            number, unit = match.groups()
            if unit in seen:
                raise _invalid(value, f"unit '{unit}' given more than once")
            seen.add(unit)
            if len(number) > _MAX_DIGITS:
                raise _invalid(value, "longer than 100 years")
            total += int(number) * _UNIT_SECONDS[unit]
            position = match.end()
        if position != len(text) or not seen:
            raise _invalid(value)

    if total > MAX_DURATION_SECONDS:
        raise _invalid(value, "longer than 100 years")
    return total


def format_duration(seconds: int) -> str:
    """Render seconds the way `parse_duration` reads them: 3661 -> "1h1m1s", 0 -> "0s"."""
    if seconds < 0:
        raise DurationError(f"invalid duration {seconds}: must not be negative")
    if seconds == 0:
        return "0s"
    parts = []
    remaining = seconds
    for unit, size in _UNIT_SECONDS.items():
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def parse_go_duration(value: str) -> float | None:
    """Parse a Go `time.ParseDuration` string ("6m5s", "1.5h", "300ms") into seconds.

    Mirrors Go: an optional sign, repeated units allowed, a bare "0" is valid,
    any other unitless number is not. Returns None when the text is not a
    duration or the result is not finite.
    """
    text = value.strip()
    sign = 1.0
    if text[:1] in ("+", "-"):
        sign = -1.0 if text[0] == "-" else 1.0
        text = text[1:]
    if text == "0":
        return 0.0
    if not text:
        return None

    total_nanos = 0.0
    position = 0
    for match in _GO_PART.finditer(text):
        if match.start() != position:
            return None
        number, unit = match.groups()
        total_nanos += float(number) * _GO_UNIT_NANOS[unit]
        position = match.end()
    if position == 0 or position != len(text):
        return None
    if not math.isfinite(total_nanos):
        return None
    return sign * total_nanos / 1e9
