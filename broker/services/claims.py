"""Claims are leases: who may send a message now, and for how long nobody else may.

A claim marks due rows ACTIVE with a fresh token and sets ``due_at`` to a short
lease expiry. The claimer renews the lease while the attempt runs and until its
outcome is written (``leases_renew``), so a live worker keeps its messages for
as long as it needs them, and a dead worker's messages are claimable again
within one lease (``QSTASH_LEASE_SECONDS``). Outcomes are written only while the
claim is held (``broker/services/outcomes.py``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db import transaction

from broker.models import LogEntry, Message
from broker.services.json_rows import log_entries_insert


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
    with transaction.atomic():
        # "OF self": messages of one group publish share a payload row, which
        # must not be locked (and so skipped) by a claimer of a sibling.
        due = (
            Message.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("payload")
            .filter(state__in=Message.PENDING_STATES, due_at__lte=now)
        )
        if ids is not None:
            due = due.filter(pk__in=ids)
        rows = list(due.order_by("due_at")[:limit])
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
