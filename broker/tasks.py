"""Celery tasks: thin, by id, calling services. Their messages are only hints."""

from __future__ import annotations

from celery import shared_task
from celery.signals import worker_process_init, worker_process_shutdown


@shared_task(name="broker.deliver_messages", ignore_result=True)
def deliver_messages(ids: list[int] | None = None) -> int:
    """Claim these due message pks, or (``ids`` None) any due ones, into this process's engine.

    Returns at once with how many were claimed; the engine sends and records them,
    and claims more by itself while a backlog lasts.
    """
    from broker.delivery_engine import engine

    return engine().hint(ids)


@worker_process_init.connect
def _start_engine(**kwargs: object) -> None:
    """Start this process's engine at boot, so it reports in (liveness) before any hint."""
    from broker.delivery_engine import engine

    engine()


@worker_process_shutdown.connect
def _finish_held_deliveries(**kwargs: object) -> None:
    """A warm shutdown lets what is in flight finish and be recorded (bounded)."""
    from django.conf import settings

    from broker.delivery_engine import drain_if_running

    drain_if_running(settings.QSTASH_SHUTDOWN_DRAIN_SECONDS)
