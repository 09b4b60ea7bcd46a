"""The clock process: hint due work the moment it falls due; make schedule triggers and
prune, each on a thread of its own.

It sleeps until the earliest ``due_at`` in the store (delays, not-before,
retries, expired leases), at most ``--interval`` seconds, and meanwhile relays
PostgreSQL's notifications of newly published messages as delivery hints
(broker/wakeup.py), so they go out at once; a notification announcing a sooner
due time (a delayed publish, a retry) shortens the sleep. Safe to run in
several copies: one holds the relay lock, the sweep only sends hints and every
claim uses SKIP LOCKED; the prune deletes by age.

Schedules fire on a thread of their own (``fire_schedules``), so a minute with a
hundred thousand triggers never delays a wake-up: it makes each trigger into
messages up to a lookahead before its minute (``broker/services/schedules.py``).

Retention pruning runs on its own thread (``PruneLoop``) with its own connection, every
``--prune-every`` seconds, in small batches that each commit: the loop below never waits
for it, however large the backlog. ``--no-prune`` leaves it to ``manage.py qstash_prune``
in a process of its own.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections, connection
from django.utils import timezone

logger = logging.getLogger(__name__)


def fire_schedules(stop: threading.Event) -> None:
    """Make every trigger within the lookahead into messages, then sleep at most a second."""
    from broker.services.schedules import FIRE_CHUNK, schedules_fire, schedules_next_fire

    while not stop.is_set():
        wait = 1.0
        try:
            close_old_connections()
            while schedules_fire(now=timezone.now()) == FIRE_CHUNK and not stop.is_set():
                pass
            following = schedules_next_fire(now=timezone.now())
            if following is not None:
                wait = min(wait, max(0.0, (following - timezone.now()).total_seconds()))
        except Exception:
            # A database outage must not kill the thread; the trigger is still due next time.
            logger.exception("firing schedules failed")
        stop.wait(wait)
    connection.close()


class Beats:
    """The clock's heartbeat: at most one upsert every few seconds, from its main loop."""

    def __init__(self) -> None:
        self.started_at = timezone.now()
        self.next_at = 0.0

    def maybe_beat(self, *, now: Any, interval: float) -> None:
        from broker.services.heartbeats import BEAT_SECONDS, heartbeat_beat, heartbeats_forget

        if time.monotonic() < self.next_at:
            return
        self.next_at = time.monotonic() + BEAT_SECONDS
        heartbeat_beat(kind="clock", started_at=self.started_at, now=now, detail={})
        heartbeats_forget(now=now)


class Command(BaseCommand):
    help = "Run the clock: sweep for due messages every second; prune old rows on a thread."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--interval", type=float, default=1.0)
        parser.add_argument("--prune-every", type=float, default=None)
        parser.add_argument("--no-prune", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        from broker.services.maintenance import PruneLoop, delivery_sweep, next_due_in
        from broker.wakeup import DueRelay

        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        interval = options["interval"]
        prune_every = options["prune_every"] or float(settings.QSTASH_PRUNE_EVERY_SECONDS)
        prune = None if options["no_prune"] else PruneLoop(every=prune_every, stop=stop)
        if prune is not None:
            prune.start()
        relay = DueRelay()
        triggers = threading.Thread(
            target=fire_schedules, args=(stop,), name="qstash-schedules", daemon=True
        )
        triggers.start()
        logger.info("clock started: sweep every %ss", interval)
        beats = Beats()
        while not stop.is_set():
            started = time.monotonic()
            wait = interval
            try:
                close_old_connections()
                relay.announced_due = None
                swept_at = timezone.now()
                delivery_sweep(now=swept_at)
                # Measured from now: the sleep ends at the next due time itself.
                wait = next_due_in(after=swept_at, limit=interval)
                beats.maybe_beat(now=swept_at, interval=interval)
            except Exception:
                # A database or broker outage must not kill the clock; it retries next tick.
                logger.exception("clock tick failed")
                wait = max(0.0, interval - (time.monotonic() - started))
            relay.relay(wait)
        relay.close()
        triggers.join(timeout=10)
        if prune is not None:
            # It stops between two batches; a batch in flight is one short statement.
            prune.join(timeout=30)
        logger.info("clock stopped")
