"""The clock's duties: hint due work every second; prune old rows on a thread of its own."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection, transaction
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


# --- retention ----------------------------------------------------------------------
#
# The prune runs in its own thread of the clock (PruneLoop below) or in its own process
# (``manage.py qstash_prune``), never in the loop that relays wake-ups and sweeps for due
# rows. It deletes in batches of QSTASH_PRUNE_BATCH rows, one statement and one commit
# each, pausing QSTASH_PRUNE_PAUSE_MS between them, so that no lock, no transaction and
# no memory grows with the backlog: a backlog of millions is the same loop run longer.
#
# Each batch is set-based SQL that reads only what it deletes: the oldest rows past their
# cutoff, in the order of an index, starting where the previous batch stopped (a keyset
# on the time column, so that the dead index entries of the batches before it are not
# walked again). A message takes its logs, DLQ entry and deduplication ids with it, and
# its payload unless another message still carries it; that check looks only at the
# payloads of the messages just deleted, never at the whole payload table. An idle prune
# is one index probe per kind of row.

EPOCH = datetime(1, 1, 1, tzinfo=UTC)

# Simple tables: (table, time column). Nothing references their rows.
_TIMED_TABLES = {
    "logs": ("broker_logentry", "time"),
    "dlq": ("broker_dlqentry", "created_at"),
    "deduplications": ("broker_deduplication", "expires_at"),
}

_TIMED_BATCH_SQL = """
WITH doomed AS (
    SELECT id, {column} AS at FROM {table}
    WHERE {column} >= %(after)s AND {column} < %(cutoff)s
    ORDER BY {column} LIMIT %(batch)s
), gone AS (
    DELETE FROM {table} WHERE id IN (SELECT id FROM doomed) RETURNING id
)
SELECT (SELECT count(*) FROM gone), (SELECT max(at) FROM doomed)
"""

# One batch of finished messages of one state: the rows, then everything that points at
# them, then their payloads when no other message holds them. All data-modifying parts
# see the same snapshot, hence "id NOT IN doomed" where a row still looks alive.
_MESSAGE_BATCH_SQL = """
WITH doomed AS (
    SELECT id, payload_id, finished_at FROM broker_message
    WHERE state = %(state)s AND finished_at >= %(after)s AND finished_at < %(cutoff)s
    ORDER BY finished_at LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
), logs AS (
    DELETE FROM broker_logentry WHERE message_id IN (SELECT id FROM doomed)
), dlq AS (
    DELETE FROM broker_dlqentry WHERE message_id IN (SELECT id FROM doomed)
), deduplications AS (
    DELETE FROM broker_deduplication WHERE message_id IN (SELECT id FROM doomed)
), callbacks AS (
    UPDATE broker_message SET source_message_id = NULL
    WHERE source_message_id IN (SELECT id FROM doomed) AND id NOT IN (SELECT id FROM doomed)
), gone AS (
    DELETE FROM broker_message WHERE id IN (SELECT id FROM doomed) RETURNING payload_id
), payloads AS (
    DELETE FROM broker_payload p WHERE p.id IN (SELECT payload_id FROM gone)
    AND NOT EXISTS (
        SELECT 1 FROM broker_message o
        WHERE o.payload_id = p.id AND o.id NOT IN (SELECT id FROM doomed)
    )
    -- A schedule keeps its body for the messages it will make.
    AND NOT EXISTS (SELECT 1 FROM broker_schedule s WHERE s.payload_id = p.id)
    RETURNING p.id
)
SELECT (SELECT count(*) FROM gone), (SELECT max(finished_at) FROM doomed),
       (SELECT count(*) FROM payloads)
"""


@dataclass
class Cutoffs:
    logs: datetime
    delivered: datetime
    dlq: datetime
    now: datetime

    @classmethod
    def at(cls, now: datetime) -> Cutoffs:
        return cls(
            logs=now - timedelta(days=settings.QSTASH_LOG_RETENTION_DAYS),
            delivered=now - timedelta(hours=settings.QSTASH_DELIVERED_RETENTION_HOURS),
            dlq=now - timedelta(days=settings.QSTASH_DLQ_RETENTION_DAYS),
            now=now,
        )


def _message_cutoffs(cutoffs: Cutoffs) -> list[tuple[str, datetime]]:
    """Delivered messages go after hours; failed and canceled ones with their logs."""
    return [
        (Message.State.DELIVERED, max(cutoffs.delivered, cutoffs.logs)),
        (Message.State.FAILED, cutoffs.logs),
        (Message.State.CANCELED, cutoffs.logs),
    ]


def _batches(
    step: Callable[[datetime], tuple[int, datetime | None]],
    *,
    batch: int,
    pause: float,
    stop: threading.Event | None,
) -> int:
    """Run ``step(after)`` until a batch comes back short; return the rows deleted.

    Between two batches it rests ``pause``, and at least as long as the batch took: the
    prune then keeps one database core busy at most half the time, however slow a batch
    is on a loaded host, and the claims, outcomes and publishes beside it keep the rest.
    """
    total, after = 0, EPOCH
    while True:
        started = time.monotonic()
        deleted, last = step(after)
        total += deleted
        if deleted < batch or last is None or (stop is not None and stop.is_set()):
            return total
        after = last
        time.sleep(max(pause, time.monotonic() - started))


def rows_prune(
    *,
    now: datetime | None = None,
    batch: int | None = None,
    pause_ms: int | None = None,
    stop: threading.Event | None = None,
) -> dict[str, int]:
    """Delete log rows, finished messages, DLQ entries and deduplication ids past their
    retention, in batches that each commit; return how many of each.

    Must not run inside a transaction (each batch is its own). ``stop`` ends it
    between two batches.
    """
    cutoffs = Cutoffs.at(now or timezone.now())
    size = batch or settings.QSTASH_PRUNE_BATCH
    pause = (settings.QSTASH_PRUNE_PAUSE_MS if pause_ms is None else pause_ms) / 1000
    prune = _postgresql_batches if connection.vendor == "postgresql" else _orm_batches
    pruned = prune(cutoffs, size=size, pause=pause, stop=stop)
    if any(pruned.values()):
        logger.info("pruned %s", pruned)
    return pruned


def _postgresql_batches(
    cutoffs: Cutoffs, *, size: int, pause: float, stop: threading.Event | None
) -> dict[str, int]:
    pruned = {"messages": 0, "payloads": 0}

    def run(sql: str, params: dict[str, Any]) -> tuple[int, datetime | None, int]:
        with transaction.atomic(), connection.cursor() as cursor:
            # The batch's commit need not wait for its WAL to reach the disk: a crash
            # loses at most the last batches, which the next round deletes again; and
            # the publishes and outcomes that do wait share fewer flushes with it.
            cursor.execute("SET LOCAL synchronous_commit = off")
            cursor.execute(sql, params)
            row = cursor.fetchone()
        return int(row[0]), row[1], int(row[2]) if len(row) > 2 else 0

    # Messages first: their logs go with them, which leaves the log prune less to do.
    for state, cutoff in _message_cutoffs(cutoffs):

        def message_step(
            after: datetime, state: str = state, cutoff: datetime = cutoff
        ) -> tuple[int, datetime | None]:
            deleted, last, payloads = run(
                _MESSAGE_BATCH_SQL,
                {"state": state, "after": after, "cutoff": cutoff, "batch": size},
            )
            pruned["payloads"] += payloads
            return deleted, last

        pruned["messages"] += _batches(message_step, batch=size, pause=pause, stop=stop)
    for name, (table, column) in _TIMED_TABLES.items():
        cutoff = {"logs": cutoffs.logs, "dlq": cutoffs.dlq, "deduplications": cutoffs.now}[name]
        # Table and column names are constants above, never input.
        sql = _TIMED_BATCH_SQL.format(table=table, column=column)

        def timed_step(
            after: datetime, sql: str = sql, cutoff: datetime = cutoff
        ) -> tuple[int, datetime | None]:
            deleted, last, _ = run(sql, {"after": after, "cutoff": cutoff, "batch": size})
            return deleted, last

        pruned[name] = _batches(timed_step, batch=size, pause=pause, stop=stop)
    return pruned


def _orm_batches(
    cutoffs: Cutoffs, *, size: int, pause: float, stop: threading.Event | None
) -> dict[str, int]:
    """The embedded SQLite store: the same batches through the ORM (small stores)."""
    pruned = {"messages": 0, "payloads": 0}
    for state, cutoff in _message_cutoffs(cutoffs):
        while not (stop is not None and stop.is_set()):
            with transaction.atomic():
                rows = list(
                    Message.objects.filter(state=state, finished_at__lt=cutoff).values_list(
                        "pk", "payload_id"
                    )[:size]
                )
                Message.objects.filter(pk__in=[pk for pk, _ in rows]).delete()
                pruned["payloads"] += Payload.objects.filter(
                    pk__in={payload for _, payload in rows},
                    messages__isnull=True,
                    schedules__isnull=True,
                ).delete()[0]
            pruned["messages"] += len(rows)
            if len(rows) < size:
                break
            time.sleep(pause)
    for name, model, field, cutoff in (
        ("logs", LogEntry, "time", cutoffs.logs),
        ("dlq", DlqEntry, "created_at", cutoffs.dlq),
        ("deduplications", Deduplication, "expires_at", cutoffs.now),
    ):
        pruned[name] = 0
        while not (stop is not None and stop.is_set()):
            with transaction.atomic():
                pks = list(
                    model.objects.filter(**{f"{field}__lt": cutoff}).values_list("pk", flat=True)[
                        :size
                    ]
                )
                deleted = model.objects.filter(pk__in=pks).delete()[0]
            pruned[name] += deleted
            if len(pks) < size:
                break
            time.sleep(pause)
    return pruned


class PruneLoop(threading.Thread):
    """The prune, every ``every`` seconds, on its own thread and database connection.

    The clock's loop (relay, sweep, sleep until the next due time) never waits for it.
    """

    def __init__(self, *, every: float, stop: threading.Event) -> None:
        super().__init__(name="prune", daemon=True)
        self.every, self.stop = every, stop

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                try:
                    close_old_connections()
                    rows_prune(stop=self.stop)
                except Exception:
                    # An outage must not end the thread; the next round retries.
                    logger.exception("prune failed")
                self.stop.wait(self.every)
        finally:
            connection.close()
