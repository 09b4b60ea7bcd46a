"""Reads of queues and flow-control keys with their live counts, in wire shape.

Counts come from the messages themselves (through partial indexes that hold
only waiting, pending or in-flight rows), so they are exact and cannot drift.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count

from broker.errors import NotFound
from broker.models import FlowControlKey, Message, Queue
from broker.services.claims import in_flight_count
from broker.wire import ms


def _lags(names: list[str]) -> dict[str, int]:
    rows = (
        Message.objects.filter(queue_name__in=names, state__in=Message.PENDING_STATES)
        .exclude(queue_name="")
        .values("queue_name")
        .annotate(n=Count("id"))
    )
    return {row["queue_name"]: row["n"] for row in rows}


def _queue_wire(queue: Queue, lag: int) -> dict[str, Any]:
    return {
        "name": queue.name,
        "createdAt": ms(queue.created_at),
        "updatedAt": ms(queue.updated_at),
        "parallelism": queue.parallelism,
        "lag": lag,
        "paused": queue.paused,
    }


def queues_list() -> list[dict[str, Any]]:
    queues = list(Queue.objects.order_by("name"))
    lags = _lags([q.name for q in queues])
    return [_queue_wire(q, lags.get(q.name, 0)) for q in queues]


def queue_get(*, name: str) -> dict[str, Any]:
    queue = Queue.objects.filter(name=name).first()
    if queue is None:
        raise NotFound(f"queue {name!r} not found")
    return _queue_wire(queue, _lags([name]).get(name, 0))


def _counts(keys: list[str], **where: Any) -> dict[str, int]:
    rows = (
        Message.objects.filter(flow_control_key__in=keys, **where)
        .values("flow_control_key")
        .annotate(n=Count("id"))
    )
    return {row["flow_control_key"]: row["n"] for row in rows}


def _key_wire(
    key: FlowControlKey, *, waiting: int, in_flight: int, now: datetime
) -> dict[str, Any]:
    period = key.period or 1
    start, count = key.rate_period_start, key.rate_count
    if start is not None and now >= start + timedelta(seconds=period):
        count = 0  # that period is over; the next starts with the next admission
    return {
        "flowControlKey": key.key,
        "waitListSize": waiting,
        # 0 means no limit, as in the SDKs' defaults.
        "parallelismMax": key.parallelism or 0,
        "parallelismCount": in_flight,
        "rateMax": key.rate or 0,
        "rateCount": count,
        "ratePeriod": period,
        "ratePeriodStart": int(start.timestamp()) if start is not None else 0,
        "isPaused": key.paused,
        "isPinnedParallelism": key.pinned_parallelism,
        "isPinnedRate": key.pinned_rate,
    }


def flow_keys_list(*, search: str = "", now: datetime) -> list[dict[str, Any]]:
    rows = FlowControlKey.objects.order_by("key")
    if search:
        rows = rows.filter(key__icontains=search)
    keys = list(rows[: settings.QSTASH_MAX_FLOW_KEYS_LISTED])
    names = [k.key for k in keys]
    # The waitlist: messages whose due time has come, waiting for the key's limits.
    waiting = _counts(names, waiting_for=Message.Waiting.FLOW, due_at__lte=now)
    in_flight = _counts(names, flow_slot=True)
    return [
        _key_wire(k, waiting=waiting.get(k.key, 0), in_flight=in_flight.get(k.key, 0), now=now)
        for k in keys
    ]


def flow_key_get(*, key: str, now: datetime) -> dict[str, Any]:
    row = FlowControlKey.objects.filter(key=key).first()
    if row is None:
        raise NotFound(f"flow-control key {key!r} not found")
    waiting = _counts([key], waiting_for=Message.Waiting.FLOW, due_at__lte=now)
    in_flight = _counts([key], flow_slot=True)
    return _key_wire(row, waiting=waiting.get(key, 0), in_flight=in_flight.get(key, 0), now=now)


def global_parallelism() -> dict[str, int]:
    return {
        "parallelismMax": settings.QSTASH_GLOBAL_PARALLELISM,
        "parallelismCount": in_flight_count(),
    }
