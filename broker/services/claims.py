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

from broker.models import LogEntry, Message, Queue
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
    with transaction.atomic():
        limit = _global_room(limit)
        # "OF self": messages of one group publish share a payload row, which
        # must not be locked (and so skipped) by a claimer of a sibling.
        due = (
            Message.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("payload")
            .filter(state__in=Message.PENDING_STATES, due_at__lte=now, waiting_for="")
        )
        if ids is not None:
            due = due.filter(pk__in=ids)
        # Admitted messages of a queue paused since: they wait for the resume.
        paused = Queue.objects.filter(name=OuterRef("queue_name"), paused=True)
        due = due.exclude(Exists(paused))
        rows = list(due.order_by("due_at")[:limit]) if limit > 0 else []
        if not rows:
            return token, []
        Message.objects.filter(pk__in=[row.pk for row in rows]).update(
            state=Message.State.ACTIVE,
            claim_token=token,
            due_at=now + timedelta(seconds=lease_seconds),
            updated_at=now,
        )
        log_entries_insert(
            [LogEntry(message=row, state=LogEntry.State.ACTIVE, time=now) for row in rows]
        )
    for row in rows:
        row.state, row.claim_token = Message.State.ACTIVE, token
    return token, rows


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
