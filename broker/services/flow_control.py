"""Managing flow-control keys: pause, resume, pin, unpin, reset (admission is ``gates.py``).

Every change that may let a key admit more wakes it at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from django.db import transaction

from broker.errors import ApplicationError
from broker.models import FlowControlKey
from broker.publish_options import parse_flow_control_value
from broker.services.gates import keys_wake
from broker.wakeup import notify_due_at


def _get_for_update(key: str) -> FlowControlKey:
    row = FlowControlKey.objects.select_for_update().filter(key=key).first()
    if row is None:
        # The reference answers 400, not 404, for a missing key here.
        raise ApplicationError(f"flow-control key {key!r} not found")
    return row


def _wake(key: str, now: datetime) -> None:
    keys_wake([key], at=now)
    notify_due_at(now)


@transaction.atomic
def flow_key_pause(*, key: str, now: datetime) -> None:
    """Nothing more of the key starts; new messages join its waitlist. Idempotent."""
    row = _get_for_update(key)
    FlowControlKey.objects.filter(pk=row.pk).update(paused=True, updated_at=now)


@transaction.atomic
def flow_key_resume(*, key: str, now: datetime) -> None:
    row = _get_for_update(key)
    FlowControlKey.objects.filter(pk=row.pk).update(paused=False, updated_at=now)
    _wake(key, now)


def flow_pin_values(query: Mapping[str, str]) -> tuple[int | None, int | None, int | None]:
    """``parallelism``, ``rate``, ``period`` of a pin (``POST .../pin?...`` or the console's
    form), read with the ``Upstash-Flow-Control-Value`` header's own rules (a bare period
    is in seconds). Raises ApplicationError naming the part at fault."""
    given = {name: query[name] for name in ("parallelism", "rate", "period") if name in query}
    if not given:
        raise ApplicationError("invalid pin: give at least one of parallelism, rate, period")
    if (period := given.get("period")) is not None and period.isdigit():
        given["period"] = f"{period}s"
    try:
        return parse_flow_control_value(", ".join(f"{k}={v}" for k, v in given.items()))
    except ApplicationError as exc:
        raise ApplicationError(exc.message.replace("Upstash-Flow-Control-Value", "pin")) from exc


@transaction.atomic
def flow_key_pin(
    *, key: str, parallelism: int | None, rate: int | None, period: int | None, now: datetime
) -> None:
    """Fix the given limits; later messages' values are ignored for them until unpinned.

    Resets the rate count and starts a new period.
    """
    row = _get_for_update(key)
    if parallelism is not None:
        row.parallelism, row.pinned_parallelism = parallelism, True
    if rate is not None or period is not None:
        if rate is not None:
            row.rate = rate
        if period is not None:
            row.period = period
        row.pinned_rate = True
    row.rate_count, row.rate_period_start, row.rate_next_slot, row.updated_at = 0, now, None, now
    row.save()
    _wake(key, now)


@transaction.atomic
def flow_key_unpin(*, key: str, parallelism: bool, rate: bool, now: datetime) -> None:
    """Unpin each part; its last values stay until a message brings others."""
    row = _get_for_update(key)
    if parallelism:
        row.pinned_parallelism = False
    if rate:
        row.pinned_rate = False
    row.updated_at = now
    row.save(update_fields=["pinned_parallelism", "pinned_rate", "updated_at"])


@transaction.atomic
def flow_key_reset_rate(*, key: str, now: datetime) -> None:
    """Clear the rate count and start a new period now.

    ``/reset`` does the same: the parallelism count is the attempts really in
    flight, read from the messages, so there is no counter to drift or reset.
    """
    row = _get_for_update(key)
    FlowControlKey.objects.filter(pk=row.pk).update(
        rate_count=0, rate_period_start=now, rate_next_slot=None, updated_at=now
    )
    _wake(key, now)
