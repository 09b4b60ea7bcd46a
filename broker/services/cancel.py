"""Cancelling messages that are not yet delivered."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.db.models import Q

from broker.models import LogEntry, Message
from broker.services.gates import gates_lock, gates_of, keys_wake, slots_release
from broker.services.json_rows import log_entries_insert
from broker.statement_timeout import statement_timeout
from broker.wakeup import notify_due_at

# Rows locked, updated and logged per transaction: a filter matching a million pending
# messages cancels them in short transactions rather than one that locks them all.
CANCEL_BATCH = 1000


def messages_cancel(
    *, where: Q, now: datetime, limit: int | None = None, filters: Iterable[str] = ()
) -> int:
    """Cancel the pending messages matching ``where`` (at most ``limit``); return how many.

    A message being delivered right now is cancelled too: its claim is cleared,
    so the worker's outcome is discarded (the attempt itself may still land).
    Logs CANCEL_REQUESTED and CANCELED for each. A message waiting in a queue or
    for a flow-control key leaves it; the slots the cancelled ones held are released.

    Works in batches of ``CANCEL_BATCH`` in id order, each its own transaction, read
    through the partial index of pending rows (``message_pending_idx``). Raises
    ``StatementTimeout`` (naming ``filters``) when one batch's statement runs past
    ``QSTASH_API_STATEMENT_TIMEOUT_MS``; the batches before it stay cancelled.
    """
    cancelled = 0
    after = 0
    while limit is None or cancelled < limit:
        size = CANCEL_BATCH if limit is None else min(CANCEL_BATCH, limit - cancelled)
        with statement_timeout(what="the cancel", filters=filters):
            seen, pks = _batch_cancel(where=where, after=after, size=size, now=now)
        cancelled += len(pks)
        if len(seen) < size:
            break
        after = seen[-1]
    return cancelled


def _batch_cancel(*, where: Q, after: int, size: int, now: datetime) -> tuple[list[int], list[int]]:
    """Cancel up to ``size`` matching pending messages with ids above ``after``.

    Returns (the ids looked at, the ids cancelled).
    """
    seen = list(
        Message.objects.filter(state__in=Message.PENDING_STATES, pk__gt=after)
        .filter(where)
        .order_by("pk")
        .values_list("pk", flat=True)[:size]
    )
    if not seen:
        return seen, []
    # Their gates first: an admission locks a gate before its waiting messages.
    queues, keys = gates_of(Q(pk__in=seen))
    gates_lock(queues, keys)
    pks = list(
        Message.objects.select_for_update()
        .filter(pk__in=seen, state__in=Message.PENDING_STATES)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    if not pks:
        return seen, pks
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
    return seen, pks
