"""Claims are leases: who may send a message now, and for how long nobody else may.

A claim marks due rows ACTIVE with a fresh token and sets ``due_at`` to a short
lease expiry. The claimer renews the lease while the attempt runs and until its
outcome is written (``leases_renew``), so a live worker keeps its messages for
as long as it needs them, and a dead worker's messages are claimable again
within one lease (``QSTASH_LEASE_SECONDS``). Outcomes are written only while the
claim is held (``broker/services/outcomes.py``).

Before claiming, the claimer lets ready gates (queues, flow-control keys) admit
their waiting messages (``gates.py``); only admitted messages are claimable. A
queue paused after admitting keeps its admitted messages until it resumes.
A global cap (``QSTASH_GLOBAL_PARALLELISM``) bounds the attempts in flight.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, OuterRef

from broker.models import LogEntry, Message, Payload, Queue
from broker.services.gates import gates_admit, gates_ready
from broker.services.json_rows import log_entries_insert

# The advisory lock that serialises claims while a global parallelism cap is set.
GLOBAL_CAP_LOCK = 0x51_5354_4153  # "QSTAS"


def in_flight_count() -> int:
    """Attempts in flight across all workers: claimed rows, whatever their lease."""
    return Message.objects.filter(state=Message.State.ACTIVE).count()


def _global_room(limit: int) -> int:
    """How many more attempts the global cap allows; takes the cap's lock (this transaction)."""
    cap = settings.QSTASH_GLOBAL_PARALLELISM
    if cap <= 0:
        return limit
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [GLOBAL_CAP_LOCK])
    return max(0, min(limit, cap - in_flight_count()))


# Claim, mark ACTIVE and log, in one statement: one round trip, no row held by
# Python between the lock and the update, and the log rows written by PostgreSQL
# from the claimed rows instead of being built and encoded here. "FOR UPDATE OF m":
# messages of one group publish share a payload row, which must not be locked
# (and so skipped) by a claimer of a sibling. Admitted messages of a queue paused
# since are left for the resume.
_CLAIM_SQL = """
WITH due AS (
    SELECT m.id FROM broker_message m
    WHERE m.state IN ('CREATED', 'ACTIVE', 'RETRY') AND m.due_at <= %(now)s
      AND m.waiting_for = '' AND m.due_at IS NOT NULL {only_ids}
      AND NOT EXISTS (
          SELECT 1 FROM broker_queue q WHERE q.name = m.queue_name AND q.paused
      )
    ORDER BY m.due_at LIMIT %(limit)s
    FOR UPDATE OF m SKIP LOCKED
), claimed AS (
    UPDATE broker_message m
    SET state = 'ACTIVE', claim_token = %(token)s, due_at = %(lease)s, updated_at = %(now)s
    FROM due WHERE m.id = due.id
    RETURNING m.*
), logged AS (
    INSERT INTO broker_logentry (message_id, state, time, error)
    SELECT id, 'ACTIVE', %(now)s, '' FROM claimed
)
SELECT claimed.*, p.body AS claimed_body
FROM claimed JOIN broker_payload p ON p.id = claimed.payload_id
ORDER BY claimed.id
"""


def messages_claim(
    *, ids: list[int] | None, limit: int, now: datetime, lease_seconds: float
) -> tuple[uuid.UUID, list[Message]]:
    """Lease up to ``limit`` due messages (only among ``ids`` when given) to the caller.

    Rows locked by another claimer are skipped, not waited for. Writes an ACTIVE
    log row per claimed message. Returns the claim token and the claimed rows.
    """
    token = uuid.uuid4()
    if limit <= 0:
        return token, []
    if gates_ready(now=now):
        gates_admit(now=now)
    if connection.vendor != "postgresql":
        claim = _claim_orm  # the embedded store of ``make run``
    elif settings.QSTASH_GLOBAL_PARALLELISM <= 0:
        # One statement is its own transaction.
        return token, _claim_sql(ids, limit, token, now, lease_seconds)
    else:
        claim = _claim_sql
    with transaction.atomic():
        return token, claim(ids, _global_room(limit), token, now, lease_seconds)


def _claim_sql(
    ids: list[int] | None, limit: int, token: uuid.UUID, now: datetime, lease_seconds: float
) -> list[Message]:
    if limit <= 0:
        return []
    params = {
        "now": now,
        "limit": limit,
        "token": token,
        "lease": now + timedelta(seconds=lease_seconds),
        "ids": ids,
    }
    sql = _CLAIM_SQL.format(only_ids="AND m.id = ANY(%(ids)s)" if ids is not None else "")
    rows = list(Message.objects.raw(sql, params))
    for row in rows:
        # The payload was read in the same statement: no query per message for the body.
        row.payload = Payload(pk=row.payload_id, body=row.__dict__.pop("claimed_body"))
    return rows


def _claim_orm(
    ids: list[int] | None, limit: int, token: uuid.UUID, now: datetime, lease_seconds: float
) -> list[Message]:
    """The same claim in ORM steps, for a store without ``SKIP LOCKED`` (SQLite, where
    the transaction's write lock keeps two claimers apart)."""
    if limit <= 0:
        return []
    due = (
        Message.objects.select_for_update(skip_locked=True, of=("self",))
        .select_related("payload")
        .filter(state__in=Message.PENDING_STATES, due_at__lte=now, waiting_for="")
        .exclude(Exists(Queue.objects.filter(name=OuterRef("queue_name"), paused=True)))
    )
    if ids is not None:
        due = due.filter(pk__in=ids)
    rows = list(due.order_by("due_at")[:limit])
    lease = now + timedelta(seconds=lease_seconds)
    Message.objects.filter(pk__in=[row.pk for row in rows]).update(
        state=Message.State.ACTIVE, claim_token=token, due_at=lease, updated_at=now
    )
    log_entries_insert(
        [LogEntry(message=row, state=LogEntry.State.ACTIVE, time=now) for row in rows]
    )
    for row in rows:
        row.state, row.claim_token, row.due_at = Message.State.ACTIVE, token, lease
    return rows


def leases_renew(
    *, claims: Iterable[tuple[int, uuid.UUID]], now: datetime, lease_seconds: float
) -> int:
    """Push back the lease of each (pk, token) claim still held; return how many were.

    A claim that was cancelled or taken over is left alone: its outcome will be
    discarded when it comes back.
    """
    pairs = list(claims)
    if not pairs:
        return 0
    return Message.objects.filter(
        pk__in=[pk for pk, _ in pairs],
        claim_token__in={token for _, token in pairs},
        state=Message.State.ACTIVE,
    ).update(due_at=now + timedelta(seconds=lease_seconds))
