"""Cron expressions: parse ``[CRON_TZ=<zone> ]m h dom mon dow`` and find the next fire time.

Pure logic. Five fields, each ``*``, a number, a range ``a-b``, a list ``a,b``, and a
step ``*/n`` or ``a-b/n``; months and weekdays also by name (``JAN``, ``MON``); weekday
0 and 7 are Sunday. As in Vixie cron, when both day-of-month and day-of-week are
restricted a day matches either. Times are wall-clock times in the zone (UTC by
default): a time that does not exist on a DST change (the skipped hour) does not fire,
and a time that happens twice fires once, at its first occurrence.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from broker.errors import ApplicationError

_FIELDS = (  # name, low, high
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
)
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_WEEKDAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_NAMES = {
    "month": {name: number for number, name in enumerate(_MONTHS, 1)},
    "day of week": {name: number for number, name in enumerate(_WEEKDAYS)},
}
# No schedule looks further ahead than this for its next time (Feb 29 on a Monday: 28 y).
_HORIZON_DAYS = 366 * 30


@dataclass(frozen=True)
class Cron:
    expression: str
    zone: str  # IANA name; "UTC" by default
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    days_any: bool  # day of month was "*"
    weekdays_any: bool  # day of week was "*"

    def day_matches(self, day: datetime) -> bool:
        in_month = day.day in self.days
        in_week = (day.isoweekday() % 7) in self.weekdays
        if self.days_any or self.weekdays_any:
            return in_month and in_week
        return in_month or in_week

    def next_after(self, after: datetime) -> datetime:
        """The first fire time strictly after ``after`` (aware), in UTC."""
        zone = ZoneInfo(self.zone)
        local = after.astimezone(zone).replace(tzinfo=None, second=0, microsecond=0)
        t = local + timedelta(minutes=1)
        limit = local + timedelta(days=_HORIZON_DAYS)
        while t < limit:
            if t.month not in self.months:
                t = (t.replace(day=1, hour=0, minute=0) + timedelta(days=32)).replace(day=1)
                continue
            if not self.day_matches(t):
                t = t.replace(hour=0, minute=0) + timedelta(days=1)
                continue
            if t.hour not in self.hours:
                t = t.replace(minute=0) + timedelta(hours=1)
                continue
            if t.minute not in self.minutes:
                t += timedelta(minutes=1)
                continue
            fire = _wall_to_utc(t, zone)
            if fire is not None and fire > after:
                return fire
            t += timedelta(minutes=1)
        raise ApplicationError(f"invalid Upstash-Cron: {self.expression!r} never fires")


def _wall_to_utc(wall: datetime, zone: ZoneInfo) -> datetime | None:
    """The UTC instant of a wall-clock time, its first if it happens twice; None if the
    DST change skips it."""
    aware = wall.replace(tzinfo=zone, fold=0)
    utc = aware.astimezone(UTC)
    if utc.astimezone(zone).replace(tzinfo=None) != wall:
        return None
    return utc


def _values(part: str, name: str, low: int, high: int) -> set[int]:
    names = _NAMES.get(name, {})
    step = 1
    if "/" in part:
        part, _, raw_step = part.partition("/")
        if not raw_step.isdigit() or int(raw_step) == 0:
            raise ValueError(f"bad step {raw_step!r}")
        step = int(raw_step)
    if part == "*":
        start, end = low, high
    elif "-" in part:
        a, _, b = part.partition("-")
        start, end = _number(a, names), _number(b, names)
    else:
        start = _number(part, names)
        end = high if step > 1 else start
    if not (low <= start <= high and low <= end <= high) or start > end:
        raise ValueError(f"{part!r} is outside {low}-{high}")
    return set(range(start, end + 1, step))


def _number(text: str, names: dict[str, int]) -> int:
    if text.upper() in names:
        return names[text.upper()]
    if not text.isdigit():
        raise ValueError(f"{text!r} is not a number")
    return int(text)


def parse_cron(value: str) -> Cron:
    """Parse ``Upstash-Cron``; ApplicationError naming the part at fault."""
    text = value.strip()
    zone = "UTC"
    if text.upper().startswith(("CRON_TZ=", "TZ=")):
        prefix, _, text = text.partition(" ")
        zone = prefix.split("=", 1)[1]
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ApplicationError(f"invalid Upstash-Cron: unknown time zone {zone!r}") from None
        text = text.strip()
    parts = text.split()
    if len(parts) != 5:
        raise ApplicationError(
            f"invalid Upstash-Cron: {value!r} has {len(parts)} fields;"
            " use 5 (minute hour day-of-month month day-of-week)"
        )
    sets: list[set[int]] = []
    for raw, (name, low, high) in zip(parts, _FIELDS, strict=True):
        values: set[int] = set()
        try:
            for item in raw.split(","):
                values |= _values(item, name, low, high)
        except ValueError as exc:
            raise ApplicationError(f"invalid Upstash-Cron {name}: {exc}") from None
        sets.append(values)
    weekdays = {d % 7 for d in sets[4]}
    cron = Cron(
        expression=value.strip(),
        zone=zone,
        minutes=frozenset(sets[0]),
        hours=frozenset(sets[1]),
        days=frozenset(sets[2]),
        months=frozenset(sets[3]),
        weekdays=frozenset(weekdays),
        days_any=parts[2].startswith("*"),
        weekdays_any=parts[4].startswith("*"),
    )
    return cron


def _listing(values: frozenset[int], full: range, names: tuple[str, ...] | None = None) -> str:
    """The values in words, or "" when they are the whole range."""
    if set(values) == set(full):
        return ""
    shown = [names[v - full.start] if names else str(v) for v in sorted(values)]
    return ", ".join(shown)


def describe(cron: Cron) -> str:
    """The schedule in words, for the console: "every day at 09:00 (Europe/Berlin)"."""
    minutes = sorted(cron.minutes)
    hours = sorted(cron.hours)
    if len(minutes) == 60 and len(hours) == 24:
        when = "every minute"
    elif len(hours) == 24:
        step = minutes[1] - minutes[0] if len(minutes) > 1 else 0
        if minutes[0] == 0 and step and minutes == list(range(0, 60, step)):
            when = f"every {step} minutes"
        else:
            when = f"at minute {', '.join(map(str, minutes))} of every hour"
    elif len(minutes) * len(hours) <= 6:
        when = "at " + ", ".join(f"{h:02d}:{m:02d}" for h in hours for m in minutes)
    else:
        when = f"at minute {', '.join(map(str, minutes))} of hour {', '.join(map(str, hours))}"
    days = _listing(cron.days, range(1, 32))
    weekdays = _listing(cron.weekdays, range(7), _WEEKDAYS)
    months = _listing(cron.months, range(1, 13), _MONTHS)
    parts = [when]
    if days and weekdays:
        parts.append(f"on day {days} of the month or on {weekdays}")
    elif days:
        parts.append(f"on day {days} of the month")
    elif weekdays:
        parts.append(f"on {weekdays}")
    elif when.startswith("at ") and "every hour" not in when:
        parts.append("every day")
    if months:
        parts.append(f"in {months}")
    return " ".join(parts) + f" ({cron.zone})"
