"""Queues: created, changed, paused, resumed and deleted (admission is ``gates.py``)."""

from __future__ import annotations

import re
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import Q

from broker.errors import ApplicationError, NotFound
from broker.models import Queue
from broker.services.cancel import messages_cancel
from broker.services.gates import queues_wake
from broker.wakeup import notify_due_at

QUEUE_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,200}$")


def queue_name_check(name: object, *, field: str = "queueName") -> str:
    """The name if it is valid; ApplicationError naming ``field`` otherwise."""
    if not isinstance(name, str) or not QUEUE_NAME.match(name):
        raise ApplicationError(
            f"invalid {field}: {name!r}, use 1-200 of the characters A-Z a-z 0-9 - _ ."
        )
    return name


def queue_parallelism_check(parallelism: object) -> int:
    """A queue's parallelism as the API and the console take it: an integer of at least 1."""
    if isinstance(parallelism, bool) or not isinstance(parallelism, int) or parallelism < 1:
        raise ApplicationError(f"invalid parallelism: {parallelism!r}, use an integer >= 1")
    return parallelism


def _wake(queue: Queue, now: datetime) -> None:
    queues_wake([queue.name], at=now)
    notify_due_at(now)


@transaction.atomic
def queue_upsert(*, name: str, parallelism: int, paused: bool | None, now: datetime) -> Queue:
    """Create the queue or change it; a change takes effect at once.

    Raises ApplicationError (412) when ``parallelism`` is over
    ``QSTASH_MAX_QUEUE_PARALLELISM``.
    """
    cap = settings.QSTASH_MAX_QUEUE_PARALLELISM
    if parallelism > cap:
        raise ApplicationError(
            f"invalid parallelism: {parallelism}; the maximum is {cap}"
            " (QSTASH_MAX_QUEUE_PARALLELISM)",
            status=412,
        )
    queue, created = Queue.objects.select_for_update().get_or_create(
        name=name,
        defaults={
            "parallelism": parallelism,
            "paused": bool(paused),
            "created_at": now,
            "updated_at": now,
        },
    )
    if not created:
        queue.parallelism = parallelism
        if paused is not None:
            queue.paused = paused
        queue.updated_at = now
        queue.save(update_fields=["parallelism", "paused", "updated_at"])
    if not queue.paused:
        _wake(queue, now)  # more parallelism, or resumed: admit what now fits
    return queue


def _get_for_update(name: str) -> Queue:
    queue = Queue.objects.select_for_update().filter(name=name).first()
    if queue is None:
        raise NotFound(f"queue {name!r} not found")
    return queue


@transaction.atomic
def queue_pause(*, name: str, now: datetime) -> None:
    """Pause: nothing more of the queue is sent until it resumes. Idempotent."""
    queue = _get_for_update(name)
    if not queue.paused:
        Queue.objects.filter(pk=queue.pk).update(paused=True, updated_at=now)


@transaction.atomic
def queue_resume(*, name: str, now: datetime) -> None:
    """Resume from the earliest undelivered message. Idempotent."""
    queue = _get_for_update(name)
    if queue.paused:
        Queue.objects.filter(pk=queue.pk).update(paused=False, updated_at=now)
    _wake(queue, now)


@transaction.atomic
def queue_delete(*, name: str, now: datetime) -> int:
    """Delete the queue; its undelivered messages are cancelled (logged CANCELED).

    Returns how many were cancelled. A send already in flight may still land;
    its outcome is discarded.
    """
    _get_for_update(name)
    cancelled = messages_cancel(where=Q(queue_name=name), now=now)
    Queue.objects.filter(name=name).delete()
    return cancelled
