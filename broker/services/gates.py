"""Gates: queues and flow-control keys decide when their waiting messages may go.

A message of a queue, or with a flow-control key, is stored *waiting*
(``Message.waiting_for``): out of the claim index, so a paused queue of a
million messages or a long waitlist costs the claim nothing. Its gate *admits* it:

- a **queue** admits in id order (FIFO) while fewer than ``parallelism`` of its
  messages hold a slot. The slot is held until the message is finished *and*
  its callbacks are (``slots_release``), so the next one waits for the retries
  and callbacks of the one before;
- a **flow-control key** admits per attempt: waiting messages whose due time
  has come, while fewer than ``parallelism`` of its attempts are in flight and
  fewer than ``rate`` started in the current period. A retry waits again.

A message in a queue with a flow-control key passes both: the queue first.

Admission runs in the claimers (``gates_admit``, before a claim) for gates whose
``wake_at`` has come, and clears it. Whatever may let a gate admit more sets
``wake_at``: a message arriving, a slot released, resume, pin, reset, the next
rate period.

Locks: queue rows before key rows everywhere. An admission locks its gate, then
the gate's *waiting* messages. Publish and outcomes lock messages first, then
gates, but never a waiting message an admission could want (a new row is
invisible to it until commit; an outcome's rows are in flight). Cancel, which
may lock waiting messages, locks their gates first (``gates_lock``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import Case, Exists, F, OuterRef, Q, Value, When
from django.db.models.functions import Coalesce, Least

from broker.flow_limits import next_admission, period_start
from broker.models import FlowControlKey, Message, Queue
from broker.wakeup import notify_due_at

# At most this many gates, and messages per gate, per admission round: bounded
# work per claim; a gate with more left keeps its wake_at and goes again.
GATES_PER_ROUND = 50
ADMIT_PER_GATE = 500

WAITING_QUEUE = Message.Waiting.QUEUE
WAITING_FLOW = Message.Waiting.FLOW


# --- arriving ------------------------------------------------------------------------


def gates_prepare(messages: list[Message], *, now: datetime) -> None:
    """Before the insert, in its transaction: mark gated messages waiting, create the
    gates they name, and apply the flow-control limits they carry (unless pinned).

    A queue named for the first time is created with parallelism 1. A message that
    carries ``Upstash-Flow-Control-Value`` sets its key's limits to exactly that
    value (a part it leaves out is no limit); one that carries only the key keeps
    the key's limits.
    """
    for message in messages:
        if message.queue_name:
            message.waiting_for = WAITING_QUEUE
        elif message.flow_control_key:
            message.waiting_for = WAITING_FLOW
    queues = sorted({m.queue_name for m in messages if m.queue_name})
    if queues:
        Queue.objects.bulk_create(
            [Queue(name=name, created_at=now, updated_at=now) for name in queues],
            ignore_conflicts=True,
        )
    limits: dict[str, Message] = {}
    for message in messages:
        key = message.flow_control_key
        # The last message that carries limits sets them.
        if key and (_carries_limits(message) or key not in limits):
            limits[key] = message
    if not limits:
        return
    FlowControlKey.objects.bulk_create(
        [FlowControlKey(key=key, created_at=now, updated_at=now) for key in sorted(limits)],
        ignore_conflicts=True,
    )
    for key in sorted(limits):
        message = limits[key]
        if not _carries_limits(message):
            continue
        FlowControlKey.objects.filter(key=key, pinned_parallelism=False).update(
            parallelism=message.flow_control_parallelism, updated_at=now
        )
        FlowControlKey.objects.filter(key=key, pinned_rate=False).update(
            rate=message.flow_control_rate,
            period=message.flow_control_period or 1,
            updated_at=now,
        )


def _carries_limits(message: Message) -> bool:
    return any(
        v is not None
        for v in (
            message.flow_control_parallelism,
            message.flow_control_rate,
            message.flow_control_period,
        )
    )


def gates_wake_for(messages: Iterable[Message], *, now: datetime) -> None:
    """After the insert, in its transaction: wake the gates of the waiting messages, each
    at its earliest due time."""
    keys: dict[str, datetime] = {}
    queues: dict[str, datetime] = {}
    for message in messages:
        due = message.due_at or now
        if message.waiting_for == WAITING_QUEUE:
            queues[message.queue_name] = min(due, queues.get(message.queue_name, due))
        elif message.waiting_for == WAITING_FLOW:
            keys[message.flow_control_key] = min(due, keys.get(message.flow_control_key, due))
    for name in sorted(queues):
        queues_wake([name], at=queues[name])
    for key in sorted(keys):
        keys_wake([key], at=keys[key])


def queues_wake(names: Iterable[str], *, at: datetime) -> None:
    names = list(names)
    if names:
        Queue.objects.filter(name__in=names).update(wake_at=Least(Coalesce("wake_at", at), at))


def keys_wake(keys: Iterable[str], *, at: datetime) -> None:
    keys = list(keys)
    if keys:
        FlowControlKey.objects.filter(key__in=keys).update(
            wake_at=Least(Coalesce("wake_at", at), at)
        )


# --- admitting -----------------------------------------------------------------------


def gates_ready(*, now: datetime) -> bool:
    """Whether some gate is due to admit. It runs before every claim, so it is one round
    trip: two probes of the small ``wake_at`` indexes in one statement."""
    probes = [
        model.objects.filter(wake_at__lte=now, paused=False).values("pk")[:1].query
        for model in (Queue, FlowControlKey)
    ]
    (queues, queue_params), (keys, key_params) = (p.sql_with_params() for p in probes)
    with connection.cursor() as cursor:
        # Composed from two ORM-compiled queries, never from input.
        cursor.execute(
            f"SELECT EXISTS ({queues}) OR EXISTS ({keys})",  # noqa: S608
            [*queue_params, *key_params],
        )
        row = cursor.fetchone()
    return bool(row and row[0])


def gates_next_wake(*, after: datetime) -> datetime | None:
    """The earliest gate wake-up later than ``after`` (for the clock's sleep)."""
    times = [
        model.objects.filter(wake_at__gt=after, paused=False)
        .order_by("wake_at")
        .values_list("wake_at", flat=True)
        .first()
        for model in (Queue, FlowControlKey)
    ]
    return min((t for t in times if t is not None), default=None)


def gates_admit(*, now: datetime) -> int:
    """Admit what the ready gates allow; return how many messages were admitted.

    Gates locked by another claimer are skipped, not waited for.
    """
    admitted = 0
    with transaction.atomic():
        queues = Queue.objects.select_for_update(skip_locked=True).filter(wake_at__lte=now)
        for queue in queues.order_by("wake_at")[:GATES_PER_ROUND]:
            admitted += _queue_admit(queue, now)
    with transaction.atomic():
        keys = FlowControlKey.objects.select_for_update(skip_locked=True).filter(wake_at__lte=now)
        for key in keys.order_by("wake_at")[:GATES_PER_ROUND]:
            admitted += _key_admit(key, now)
    return admitted


def _queue_admit(queue: Queue, now: datetime) -> int:
    """Admit the queue's due waiting messages in id order while it has free slots.

    A message not yet due (a schedule's trigger made ahead, a delay) waits without a
    slot, so it never holds the queue before its time; the queue wakes for it then.
    """
    queue.wake_at = None
    admitted: list[tuple[int, str]] = []
    if not queue.paused:
        holding = Message.objects.filter(queue_name=queue.name, queue_slot=True).count()
        free = min(queue.parallelism - holding, ADMIT_PER_GATE)
        waiting = Message.objects.filter(queue_name=queue.name, waiting_for=WAITING_QUEUE)
        if free > 0:
            admitted = list(
                waiting.select_for_update()
                .filter(due_at__lte=now)
                .order_by("id")
                .values_list("pk", "flow_control_key")[:free]
            )
        if len(admitted) == ADMIT_PER_GATE:
            queue.wake_at = now  # more may fit: go again next round
        elif len(admitted) < free:
            # Room left: wake when the next message not yet due falls due.
            queue.wake_at = (
                waiting.exclude(pk__in=[pk for pk, _ in admitted])
                .order_by("due_at")
                .values_list("due_at", flat=True)
                .first()
            )
            if queue.wake_at is not None and queue.wake_at > now:
                notify_due_at(queue.wake_at)
    Queue.objects.filter(pk=queue.pk).update(wake_at=queue.wake_at)
    if not admitted:
        return 0
    direct = [pk for pk, key in admitted if not key]
    through_key = [pk for pk, key in admitted if key]
    Message.objects.filter(pk__in=direct).update(waiting_for=Message.Waiting.NO, queue_slot=True)
    if through_key:
        Message.objects.filter(pk__in=through_key).update(waiting_for=WAITING_FLOW, queue_slot=True)
        keys_wake(sorted({key for _, key in admitted if key}), at=now)
    return len(admitted)


def _key_admit(key: FlowControlKey, now: datetime) -> int:
    if key.paused:
        FlowControlKey.objects.filter(pk=key.pk).update(wake_at=None)
        return 0
    if key.rate is not None:
        start = period_start(key.rate_period_start, key.period, now)
        if start != key.rate_period_start:
            key.rate_period_start, key.rate_count = start, 0
    free = ADMIT_PER_GATE
    if key.parallelism is not None:
        in_flight = Message.objects.filter(flow_control_key=key.key, flow_slot=True).count()
        free = min(free, key.parallelism - in_flight)
    if key.rate is not None:
        free = min(free, key.rate - key.rate_count)
    waiting = Message.objects.filter(flow_control_key=key.key, waiting_for=WAITING_FLOW)
    admitted: list[int] = []
    if free > 0:
        admitted = list(
            waiting.select_for_update()
            .filter(due_at__lte=now)
            .order_by("due_at", "id")
            .values_list("pk", flat=True)[:free]
        )
        _admit_rows(key, admitted, now)
    if key.rate is not None:
        key.rate_count += len(admitted)
    key.wake_at = _key_next_wake(key, admitted=len(admitted), free=free, now=now)
    FlowControlKey.objects.filter(pk=key.pk).update(
        wake_at=key.wake_at,
        rate_count=key.rate_count,
        rate_period_start=key.rate_period_start,
        rate_next_slot=key.rate_next_slot,
    )
    if key.wake_at is not None and key.wake_at > now:
        notify_due_at(key.wake_at)  # the clock sleeps until the next period, not a tick
    return len(admitted)


def _admit_rows(key: FlowControlKey, admitted: list[int], now: datetime) -> None:
    """Let the rows go. Under a rate, each start gets its own slot, ``period / rate``
    after the one before (and within the period's share), so no one-second window a
    destination counts in sees more than the rate, even when an admission runs late;
    a slot still to come is the row's due time, and the clock wakes for it like for
    any delayed message."""
    due: Any = F("due_at")
    if key.rate is not None and key.rate_period_start is not None and admitted:
        step = timedelta(seconds=(key.period or 1) / key.rate)
        slot = max(now, key.rate_period_start + step * key.rate_count)
        if key.rate_next_slot is not None:
            slot = max(slot, key.rate_next_slot)
        later: list[tuple[int, datetime]] = []
        for pk in admitted:
            if slot > now:
                later.append((pk, slot))
            slot += step
        key.rate_next_slot = slot
        if later:
            due = Case(*[When(pk=pk, then=Value(at)) for pk, at in later], default=F("due_at"))
            notify_due_at(later[0][1])
    Message.objects.filter(pk__in=admitted).update(
        waiting_for=Message.Waiting.NO, flow_slot=True, due_at=due
    )


def _key_next_wake(
    key: FlowControlKey, *, admitted: int, free: int, now: datetime
) -> datetime | None:
    following = (
        Message.objects.filter(flow_control_key=key.key, waiting_for=WAITING_FLOW)
        .order_by("due_at")
        .values_list("due_at", flat=True)
        .first()
    )
    rate_spent = key.rate is not None and key.rate_count >= key.rate
    parallelism_spent = key.parallelism is not None and admitted >= free and not rate_spent
    if parallelism_spent and admitted < ADMIT_PER_GATE:
        return None  # releasing a slot wakes the key
    period_end = None
    if key.rate_period_start is not None:
        period_end = key.rate_period_start + timedelta(seconds=key.period or 1)
    return next_admission(
        following=following,
        now=now,
        room_left=admitted == ADMIT_PER_GATE,
        rate_spent=rate_spent,
        period_end=period_end,
    )


# --- leaving -------------------------------------------------------------------------


def slots_release(*, finished: list[int], now: datetime) -> int:
    """Release the queue slots of messages now finished with no callback still pending.

    ``finished`` are messages that just reached a final state: themselves, or the
    message whose callback they are, may release a slot. Runs in the caller's
    transaction after its writes (so new callbacks are seen). Wakes the queues.
    Returns how many slots were released.
    """
    if not finished:
        return 0
    sources = Message.objects.filter(pk__in=finished, source_message__isnull=False).values(
        "source_message_id"
    )
    pending_callback = Message.objects.filter(
        source_message=OuterRef("pk"), state__in=Message.PENDING_STATES
    )
    releasable = (
        Message.objects.filter(queue_slot=True, state__in=Message.FINAL_STATES)
        .filter(Q(pk__in=finished) | Q(pk__in=sources))
        .exclude(Exists(pending_callback))
    )
    rows = list(releasable.values_list("pk", "queue_name"))
    if not rows:
        return 0
    queues_wake(sorted({name for _, name in rows}), at=now)
    Message.objects.filter(pk__in=[pk for pk, _ in rows]).update(queue_slot=False)
    return len(rows)


def gates_of(where: Q) -> tuple[list[str], list[str]]:
    """The queues and keys of the pending messages matching ``where`` (to lock first)."""
    rows = (
        Message.objects.filter(state__in=Message.PENDING_STATES)
        .filter(where)
        .exclude(queue_name="", flow_control_key="")
        .values_list("queue_name", "flow_control_key")
        .distinct()
    )
    pairs = list(rows)
    return sorted({q for q, _ in pairs if q}), sorted({k for _, k in pairs if k})


def gates_lock(queues: list[str], keys: list[str]) -> None:
    """Lock gate rows in the global order (queues, then keys, each by name)."""
    if queues:
        list(Queue.objects.select_for_update().filter(name__in=queues).order_by("name"))
    if keys:
        list(FlowControlKey.objects.select_for_update().filter(key__in=keys).order_by("key"))
