"""Recording what attempts decided: only while their claim is held, in few statements.

``messages_record_outcomes`` takes whatever attempts finished in the last few
milliseconds (the engine flushes them as they return, never a whole batch):

1. lock the rows whose claim is still held (same token, still ACTIVE), so an
   outcome of an attempt that was cancelled or whose lease was taken over is
   discarded;
2. apply each outcome to its row (``decide``) and collect log rows, DLQ entries
   and callback drafts;
3. write all of it in one transaction, then release what the attempts held at
   their gates (a flow-control key's slot after every attempt, a queue's once
   the message and its callbacks are finished) and wake those gates.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connection, transaction

from broker.backoff import decide
from broker.http import HttpResult
from broker.models import DlqEntry, LogEntry, Message
from broker.services.callbacks import callback_drafts
from broker.services.gates import keys_wake, slots_release
from broker.services.json_rows import log_entries_insert
from broker.services.publish import Draft, messages_publish
from broker.wakeup import notify_due_at

logger = logging.getLogger(__name__)

# Written by bulk_update for messages that did not deliver.
_UNDELIVERED_FIELDS = [
    "state",
    "retried",
    "due_at",
    "waiting_for",
    "flow_slot",
    "claim_token",
    "finished_at",
    "last_response_status",
    "last_response_header",
    "last_response_body",
    "last_error",
]


@dataclass
class Attempt:
    """One finished attempt: the message as claimed, the claim, the result and when."""

    message: Message
    token: uuid.UUID
    result: HttpResult
    finished_at: datetime


@dataclass
class _Writes:
    # pk, when, status, the attempt's duration in ms
    delivered: list[tuple[int, datetime, int, int]] = field(default_factory=list)
    changed: list[Message] = field(default_factory=list)
    logs: list[LogEntry] = field(default_factory=list)
    dead: list[DlqEntry] = field(default_factory=list)
    callbacks: list[Draft] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    lost: list[str] = field(default_factory=list)
    finished: list[int] = field(default_factory=list)  # finished now, holding a queue slot
    keys: set[str] = field(default_factory=set)  # flow-control keys whose slot frees


def _held(attempts: list[Attempt]) -> set[int]:
    """Lock and return the pks whose claim is still the attempt's own."""
    tokens = {a.message.pk: a.token for a in attempts}
    if connection.vendor == "postgresql":
        # One array parameter instead of a placeholder per row: the client binds it cheaply.
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT id, claim_token FROM broker_message"
                " WHERE id = ANY(%s) AND state = 'ACTIVE' FOR UPDATE",
                [list(tokens)],
            )
            rows = cursor.fetchall()
    else:
        rows = list(
            Message.objects.select_for_update()
            .filter(pk__in=list(tokens), state=Message.State.ACTIVE)
            .values_list("pk", "claim_token")
        )
    return {pk for pk, token in rows if token == tokens[pk]}


def _apply(attempt: Attempt, writes: _Writes) -> None:
    message, result, now = attempt.message, attempt.result, attempt.finished_at
    outcome = decide(message, result, now)
    writes.counts[outcome.state] += 1
    if message.flow_slot:
        writes.keys.add(message.flow_control_key)
    if outcome.state != Message.State.RETRY and (message.queue_slot or message.source_message_id):
        # Finished: it may release its own queue slot, or (a callback) its source's.
        writes.finished.append(message.pk)
    dlq_id = None
    if outcome.state == Message.State.FAILED:
        dlq_id = DlqEntry.make_id(message, now)
        writes.dead.append(DlqEntry(dlq_id=dlq_id, message=message, created_at=now))
    if message.callback or message.failure_callback:
        writes.callbacks += callback_drafts(
            message, result, failed=outcome.state == Message.State.FAILED, dlq_id=dlq_id
        )
    if outcome.state == Message.State.DELIVERED:
        assert result.status is not None
        writes.delivered.append((message.pk, now, result.status, result.duration_ms))
        return
    error = result.error or f"destination answered {result.status}"
    body = result.body if result.status is not None else None
    # A fresh row to write, so the claimed instance stays as it was: a write that
    # fails is retried from the same attempts and must decide the same things.
    row = Message(
        pk=message.pk,
        retried=message.retried,
        claim_token=None,
        last_response_status=result.status,
        last_response_header=result.headers or None,
        last_response_body=body,
        last_error=error,
    )
    error_log = LogEntry(
        message=message,
        state=LogEntry.State.ERROR,
        time=now,
        error=error,
        response_status=result.status,
        response_header=result.headers or None,
        response_body=body,
        duration_ms=result.duration_ms,
    )
    if outcome.state == Message.State.RETRY:
        row.state = Message.State.RETRY
        row.retried = message.retried + 1
        row.due_at = now + timedelta(seconds=outcome.delay_seconds)
        if message.flow_control_key:
            # Each attempt passes the key's limits: the retry waits for its turn again.
            row.waiting_for = Message.Waiting.FLOW
        error_log.next_delivery_time = row.due_at
        writes.logs += [
            error_log,
            LogEntry(
                message=message,
                state=LogEntry.State.RETRY,
                time=now,
                next_delivery_time=row.due_at,
            ),
        ]
    else:
        row.state = Message.State.FAILED
        row.due_at = None
        row.finished_at = now
        writes.logs += [
            error_log,
            LogEntry(message=message, state=LogEntry.State.FAILED, time=now, error=error),
        ]
    writes.changed.append(row)


# The common outcome in one statement: the rows and their DELIVERED log rows.
_DELIVERED_SQL = """
WITH done AS (
    UPDATE broker_message m
    SET state = 'DELIVERED', due_at = NULL, claim_token = NULL, flow_slot = false,
        finished_at = %(now)s, updated_at = %(now)s, last_response_status = d.status
    FROM unnest(%(ids)s::bigint[], %(times)s::timestamptz[], %(statuses)s::integer[],
                %(durations)s::integer[])
        AS d(id, at, status, duration_ms)
    WHERE m.id = d.id
    RETURNING m.id, d.at, d.status, d.duration_ms
)
INSERT INTO broker_logentry (message_id, state, time, error, response_status, duration_ms)
SELECT id, 'DELIVERED', at, '', status, duration_ms FROM done
"""


def _delivered_write(delivered: list[tuple[int, datetime, int, int]], now: datetime) -> None:
    if connection.vendor == "postgresql":
        ids, times, statuses, durations = (list(c) for c in zip(*delivered, strict=True))
        with connection.cursor() as cursor:
            cursor.execute(
                _DELIVERED_SQL,
                {
                    "now": now,
                    "ids": ids,
                    "times": times,
                    "statuses": statuses,
                    "durations": durations,
                },
            )
        return
    by_status: dict[int, list[int]] = defaultdict(list)
    for pk, _, status, _ in delivered:
        by_status[status].append(pk)
    for status, pks in by_status.items():
        Message.objects.filter(pk__in=pks).update(
            state=Message.State.DELIVERED,
            due_at=None,
            claim_token=None,
            flow_slot=False,
            finished_at=now,
            updated_at=now,
            last_response_status=status,
        )
    log_entries_insert(
        [
            LogEntry(
                message_id=pk,
                state=LogEntry.State.DELIVERED,
                time=at,
                response_status=status,
                duration_ms=duration_ms,
            )
            for pk, at, status, duration_ms in delivered
        ]
    )


def _write(writes: _Writes, now: datetime) -> None:
    if writes.delivered:
        _delivered_write(writes.delivered, now)
    if writes.changed:
        Message.objects.bulk_update(writes.changed, _UNDELIVERED_FIELDS)
        if retries := [row.due_at for row in writes.changed if row.due_at is not None]:
            # The clock sleeps until the earliest due time it knows: tell it this one.
            notify_due_at(min(retries))
    log_entries_insert(writes.logs)
    DlqEntry.objects.bulk_create(writes.dead)
    if writes.callbacks:
        messages_publish(drafts=writes.callbacks, now=now)
    # Queues before keys: the gates' lock order.
    released = slots_release(finished=writes.finished, now=now)
    keys_wake(sorted(writes.keys), at=now)
    if released or writes.keys:
        writes.counts["gates_woken"] = released + len(writes.keys)
        notify_due_at(now)  # the clock and other workers: a gate may admit more


def messages_record_outcomes(*, attempts: list[Attempt], now: datetime) -> dict[str, int]:
    """Write each attempt's outcome if its claim is still held; return counts per state.

    A failed message gets its DLQ entry, and callback messages are published, in
    the same transaction, so an outcome and its consequences commit together.
    ``lost`` counts attempts whose claim was no longer held (cancelled, or the
    lease expired and another worker took the message). Raises the database's
    error when the write fails; nothing is then written and the caller retries.
    """
    writes = _Writes()
    with transaction.atomic():
        held = _held(attempts)
        for attempt in attempts:
            if attempt.message.pk in held:
                _apply(attempt, writes)
            else:
                writes.counts["lost"] += 1
                writes.lost.append(attempt.message.message_id)
        _write(writes, now)
    for message_id in writes.lost:
        logger.info("outcome of %s discarded: its claim is no longer held", message_id)
    return dict(writes.counts)
