"""The clock's duties: hint due work every second, prune old rows now and then."""

from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from broker.models import Deduplication, DlqEntry, LogEntry, Message, Payload
from broker.wakeup import MAX_ANONYMOUS_HINTS, send_hints

logger = logging.getLogger(__name__)


def delivery_sweep(*, now: datetime) -> int:
    """Send one id-less delivery hint per batch due at ``now`` (capped). Returns hints sent.

    This is what makes PostgreSQL the only source of truth: delayed messages,
    retries, expired leases and messages whose hint was lost are all found here.
    Several clocks may run; extra hints only cost an empty claim.
    """
    from broker.services.delivery import messages_due_count
    from broker.services.gates import gates_ready

    batch = settings.QSTASH_DELIVERY_BATCH
    hints = math.ceil(messages_due_count(limit=batch * MAX_ANONYMOUS_HINTS, now=now) / batch)
    if not hints and gates_ready(now=now):
        hints = 1  # a queue or key may admit: the claim that follows lets it
    send_hints([], anonymous=hints)
    return hints


def next_due_in(*, after: datetime, limit: float) -> float:
    """Seconds from now until the first pending ``due_at`` later than ``after``, at most
    ``limit`` (0 if that time has already come).

    ``after`` is the time the sweep counted due rows at: rows due by then were
    hinted, and a row falling due between the sweep and this query is still
    found. Finished and waiting rows are not in the partial index
    ``message_claim_idx``, which this reads from ``after`` on; a gate's next
    wake-up (a flow-control key's next rate period, a waiting delayed message)
    counts too.
    """
    from broker.services.gates import gates_next_wake

    first = (
        Message.objects.filter(due_at__gt=after, waiting_for="")
        .order_by("due_at")
        .values_list("due_at", flat=True)
        .first()
    )
    gate = gates_next_wake(after=after)
    if gate is not None and (first is None or gate < first):
        first = gate
    if first is None:
        return limit
    return min(limit, max(0.0, (first - timezone.now()).total_seconds()))


def rows_prune() -> dict[str, int]:
    """Delete log rows, finished messages and deduplication ids past their retention."""
    now = timezone.now()
    log_cutoff = now - timedelta(days=settings.QSTASH_LOG_RETENTION_DAYS)
    pruned = {
        "logs": LogEntry.objects.filter(time__lt=log_cutoff).delete()[0],
        "messages": Message.objects.filter(
            finished_at__lt=now - timedelta(hours=settings.QSTASH_DELIVERED_RETENTION_HOURS),
            state=Message.State.DELIVERED,
        ).delete()[0],
        "finished": Message.objects.filter(finished_at__lt=log_cutoff).delete()[0],
        "dlq": DlqEntry.objects.filter(
            created_at__lt=now - timedelta(days=settings.QSTASH_DLQ_RETENTION_DAYS)
        ).delete()[0],
        "deduplications": Deduplication.objects.filter(expires_at__lt=now).delete()[0],
        # Bodies are shared by the messages of a group publish: one goes with the last.
        "payloads": Payload.objects.filter(messages__isnull=True).delete()[0],
    }
    if any(pruned.values()):
        logger.info("pruned %s", pruned)
    return pruned
