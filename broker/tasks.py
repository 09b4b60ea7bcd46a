"""Celery tasks: thin, by id, calling services. Their messages are only hints."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings


@shared_task(name="broker.deliver_messages", ignore_result=True)
def deliver_messages(ids: list[int] | None = None) -> int:
    """Deliver these due message pks, or (``ids`` None) the next due batch.

    A full id-less batch means more may be due: send another hint at once so a
    backlog drains at full speed instead of one batch per sweep.
    """
    from broker.services.delivery import messages_deliver

    claimed = messages_deliver(ids=ids)
    if ids is None and claimed >= settings.QSTASH_DELIVERY_BATCH:
        deliver_messages.apply_async()
    return claimed
