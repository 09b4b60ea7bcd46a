"""Cancelling messages that are not yet delivered."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.db.models import Q

from broker.models import LogEntry, Message
from broker.services.gates import gates_lock, gates_of, keys_wake, slots_release
from broker.services.json_rows import log_entries_insert
from broker.wakeup import notify_due_at


@transaction.atomic
def messages_cancel(*, where: Q, now: datetime, limit: int | None = None) -> int:
    """Cancel the pending messages matching ``where`` (at most ``limit``); return how many.

    A message being delivered right now is cancelled too: its claim is cleared,
    so the worker's outcome is discarded (the attempt itself may still land).
    Logs CANCEL_REQUESTED and CANCELED for each. A message waiting in a queue or
    for a flow-control key leaves it; the slots the cancelled ones held are released.
    """
    # Their gates first: an admission locks a gate before its waiting messages.
    queues, keys = gates_of(where)
    gates_lock(queues, keys)
    pending = (
        Message.objects.select_for_update()
        .filter(state__in=Message.PENDING_STATES)
        .filter(where)
        .order_by("pk")
    )
    pks = list(
        pending.values_list("pk", flat=True)[:limit]
        if limit
        else pending.values_list("pk", flat=True)
    )
    if not pks:
        return 0
    Message.objects.filter(pk__in=pks).update(
        state=Message.State.CANCELED,
        due_at=None,
        claim_token=None,
        waiting_for=Message.Waiting.NO,
        flow_slot=False,
        finished_at=now,
        updated_at=now,
    )
    if slots_release(finished=pks, now=now) + len(keys):
        keys_wake(keys, at=now)
        notify_due_at(now)
    log_entries_insert(
        [
            LogEntry(message_id=pk, state=state, time=now)
            for pk in pks
            for state in (LogEntry.State.CANCEL_REQUESTED, LogEntry.State.CANCELED)
        ]
    )
    return len(pks)
