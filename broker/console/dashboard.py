"""The console's index page: what is failing, how much is waiting, how fast it goes.

Every query is bounded: by a time range on an indexed column (the last hour or day), by a
partial index (pending and waiting rows only), or by a small table (queues, DLQ).
The whole messages and log tables are never counted; their size is the planner's
estimate. The number of queries is fixed (tests/integration/test_console_pages.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.cache import cache
from django.db import connection
from django.db.models import (
    Count,
    DateTimeField,
    F,
    Func,
    Max,
    OuterRef,
    Q,
    Subquery,
)
from django.db.models.functions import TruncMinute

from broker.console.lists import estimated_rows
from broker.models import DlqEntry, FlowControlKey, Heartbeat, LogEntry, Message, Queue
from broker.services.heartbeats import FORGET_AFTER, STALE_AFTER

WINDOW = timedelta(hours=1)
CHART_SERIES = (
    # (log state, label, colour)
    (LogEntry.State.DELIVERED, "deliveries", "#2e7d32"),
    (LogEntry.State.RETRY, "retries", "#ef6c00"),
    (LogEntry.State.FAILED, "failures", "#c62828"),
)
# Over the deliveries finished since %s, through the finished_at index.
PERCENTILES = (
    "SELECT percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY EXTRACT("
    "EPOCH FROM finished_at - GREATEST(created_at, not_before))) "
    "FROM broker_message WHERE finished_at >= %s AND finished_at IS NOT NULL AND state = %s"
)
CHART_W, CHART_H, CHART_PAD = 720, 160, 30
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class Series:
    label: str
    colour: str
    points: str  # SVG polyline points
    total: int


@dataclass(frozen=True)
class Window:
    """A chart's span and bucket: the last hour by minute, the last day by 15 minutes."""

    key: str
    title: str
    span: timedelta
    bucket: timedelta

    @property
    def buckets(self) -> int:
        return self.span // self.bucket


HOUR = Window("hour", "Attempts per minute, last hour", timedelta(hours=1), timedelta(minutes=1))
DAY = Window("day", "Attempts per 15 minutes, last day", timedelta(days=1), timedelta(minutes=15))


def _bucket_expression(window: Window) -> Any:
    """The log row's bucket start, computed by the database (one row per bucket and state)."""
    if window.bucket == timedelta(minutes=1) or connection.vendor != "postgresql":
        # The embedded store has no date_bin: minutes, folded into buckets below.
        return TruncMinute("time")
    # Literals, not parameters: the same expression must appear in SELECT and GROUP BY.
    seconds = int(window.bucket.total_seconds())
    return Func(
        F("time"),
        output_field=DateTimeField(),
        template=(
            f"date_bin(INTERVAL '{seconds} seconds', %(expressions)s, "
            "TIMESTAMPTZ '1970-01-01 00:00:00+00')"
        ),
    )


# A bucket this long past its end gets no more log rows (an outcome's time is when its
# attempt ended, written within milliseconds, or seconds when a write is retried).
CLOSED_AFTER = timedelta(minutes=2)


def _bucket_key(window: Window, start: datetime) -> str:
    return f"console-chart:{int(window.bucket.total_seconds())}:{int(start.timestamp())}"


def _counts(window: Window, start: datetime, now: datetime) -> dict[tuple[str, int], int]:
    """Log rows per (state, bucket index) from ``start``: one query, over the open buckets.

    The log is append-only, so a closed bucket's counts never change: they are kept in
    Django's cache for the window's span, and the query reads only from the first bucket
    not cached. The first render of a day reads the whole day (about a second per million
    attempts); the next ones read the last minutes.
    """
    starts = [start + window.bucket * i for i in range(window.buckets)]
    closed = [i for i, at in enumerate(starts) if at + window.bucket <= now - CLOSED_AFTER]
    cached: dict[str, dict[str, int]] = cache.get_many(
        [_bucket_key(window, starts[i]) for i in closed]
    )
    first = next(
        (i for i, at in enumerate(starts) if _bucket_key(window, at) not in cached),
        window.buckets - 1,
    )
    rows = (
        LogEntry.objects.filter(time__gte=starts[first], state__in=[s for s, _, _ in CHART_SERIES])
        .annotate(bucket=_bucket_expression(window))
        .values("bucket", "state")
        .annotate(n=Count("id"))
        .order_by()
    )
    step_seconds = int(window.bucket.total_seconds())
    read: dict[int, dict[str, int]] = {}
    for row in rows:
        index = int((row["bucket"] - start).total_seconds() // step_seconds)
        if first <= index < window.buckets:
            by_state = read.setdefault(index, {})
            by_state[row["state"]] = by_state.get(row["state"], 0) + row["n"]
    cache.set_many(
        {_bucket_key(window, starts[i]): read.get(i, {}) for i in closed if i >= first},
        timeout=int(window.span.total_seconds()),
    )
    counts: dict[tuple[str, int], int] = {}
    for i, at in enumerate(starts):
        shown = read.get(i) if i >= first else cached.get(_bucket_key(window, at))
        for state, n in (shown or {}).items():
            counts[(state, i)] = n
    return counts


def _chart(now: datetime, window: Window) -> dict[str, Any]:
    """Attempt outcomes per bucket over ``window`` (up to now), as SVG polylines (one query).

    The query reads the log's (state, time, id) index over the window's time range only
    (its closed buckets come from the cache once read: ``_counts``).
    """
    step_seconds = int(window.bucket.total_seconds())
    # Buckets aligned on the epoch, the last one holding now.
    last = EPOCH + timedelta(seconds=(now - EPOCH).total_seconds() // step_seconds * step_seconds)
    start = last - window.bucket * (window.buckets - 1)
    counts = _counts(window, start, now)
    peak = max(counts.values(), default=0) or 1
    step = CHART_W / (window.buckets - 1)

    def y(n: int) -> float:
        return round(CHART_PAD + (CHART_H - CHART_PAD) * (1 - n / peak), 1)

    series = [
        Series(
            label,
            colour,
            " ".join(
                f"{round(i * step, 1)},{y(counts.get((state, i), 0))}"
                for i in range(window.buckets)
            ),
            sum(counts.get((state, i), 0) for i in range(window.buckets)),
        )
        for state, label, colour in CHART_SERIES
    ]
    return {
        "key": window.key,
        "title": window.title,
        "unit": "min" if window.bucket == timedelta(minutes=1) else "15 min",
        "series": series,
        "peak": peak if counts else 0,
        "width": CHART_W,
        "height": CHART_H,
        "top": CHART_PAD,
        "start": start,
        "end": last,
        "show_date": window.span > timedelta(hours=1),
    }


def _liveness(now: datetime) -> list[dict[str, Any]]:
    """Every worker process and clock heard from in the last day, stale ones flagged."""
    beats = Heartbeat.objects.filter(seen_at__gte=now - FORGET_AFTER).order_by(
        "kind", "hostname", "pid"
    )[:100]
    return [
        {
            "beat": beat,
            "ago": max(0.0, (now - beat.seen_at).total_seconds()),
            "stale": now - beat.seen_at > STALE_AFTER,
        }
        for beat in beats
    ]


def _latency(since: datetime) -> dict[str, float | None]:
    """Publish (or not-before) to delivery, p50 and p95 in seconds, over the last hour."""
    delivered = Message.objects.filter(finished_at__gte=since, state=Message.State.DELIVERED)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(PERCENTILES, [since, Message.State.DELIVERED.value])
            row = cursor.fetchone()
        values = row[0] if row else None
        if not values:
            return {"p50": None, "p95": None}
        return {"p50": float(values[0]), "p95": float(values[1])}
    # The embedded store (make run): the latest 10,000 deliveries, sorted here.
    latest = delivered.order_by("-finished_at").values_list(
        "finished_at", "created_at", "not_before"
    )[:10_000]
    spans = sorted(
        (finished - max(created, not_before)).total_seconds()
        for finished, created, not_before in latest
        if finished is not None
    )
    if not spans:
        return {"p50": None, "p95": None}
    return {
        "p50": spans[int(0.5 * (len(spans) - 1))],
        "p95": spans[int(0.95 * (len(spans) - 1))],
    }


def _failing(since: datetime) -> list[dict[str, Any]]:
    """The destinations with the most failed attempts in the last hour, with the last error."""
    top = list(
        LogEntry.objects.filter(time__gte=since, state=LogEntry.State.ERROR)
        .values("message__url")
        .annotate(n=Count("id"), last=Max("id"))
        .order_by("-n")[:5]
    )
    last = {
        e.pk: e
        for e in LogEntry.objects.filter(pk__in=[r["last"] for r in top]).only(
            "error", "response_status", "time"
        )
    }
    failing = []
    for row in top:
        entry = last.get(row["last"])
        error = ""
        if entry is not None:
            error = entry.error or (
                f"HTTP {entry.response_status}" if entry.response_status else ""
            )
        failing.append(
            {
                "url": row["message__url"],
                "count": row["n"],
                "error": error,
                "time": entry.time if entry else None,
            }
        )
    return failing


def dashboard_data(now: datetime) -> dict[str, Any]:
    since = now - WINDOW
    pending = dict(
        Message.objects.filter(
            due_at__isnull=False, waiting_for="", state__in=Message.PENDING_STATES
        )
        .values_list("state")
        .annotate(n=Count("id"))
        .order_by()
    )
    finished = dict(
        # The state too, so that message_finished_state_idx (state, finished_at) serves it.
        Message.objects.filter(state__in=Message.FINAL_STATES, finished_at__gte=since)
        .values_list("state")
        .annotate(n=Count("id"))
        .order_by()
    )
    states: list[tuple[str, int]] = [
        (str(state), pending.get(state, 0)) for state in Message.PENDING_STATES
    ]
    states.append(("waiting in a queue", Message.objects.filter(waiting_for="queue").count()))
    states.append(
        ("waiting for a flow-control key", Message.objects.filter(waiting_for="flow").count())
    )
    lag = Subquery(
        Message.objects.filter(queue_name=OuterRef("name"), state__in=Message.PENDING_STATES)
        .exclude(queue_name="")
        .values("queue_name")
        .annotate(n=Count("id"))
        .values("n")[:1]
    )
    queues = list(
        Queue.objects.annotate(lag=lag)
        .filter(Q(paused=True) | Q(lag__gt=0))
        .order_by("-paused", "-lag", "name")[:10]
    )
    waitlists: list[dict[str, Any]] = [
        dict(row)
        for row in Message.objects.filter(waiting_for="flow")
        .values("flow_control_key")
        .annotate(n=Count("id"))
        .order_by("-n")[:10]
    ]
    paused_keys = set(
        FlowControlKey.objects.filter(
            key__in=[w["flow_control_key"] for w in waitlists], paused=True
        ).values_list("key", flat=True)
    )
    for waiting in waitlists:
        waiting["paused"] = waiting["flow_control_key"] in paused_keys
    return {
        "now": now,
        "pending": states,
        "finished": [(state, finished.get(state, 0)) for state in Message.FINAL_STATES],
        "total_estimate": estimated_rows(Message),
        "log_estimate": estimated_rows(LogEntry),
        "charts": [_chart(now, HOUR), _chart(now, DAY)],
        "liveness": _liveness(now),
        "latency": _latency(since),
        "dlq_size": DlqEntry.objects.count(),
        "failing": _failing(since),
        "queues": queues,
        "waitlists": waitlists,
    }
