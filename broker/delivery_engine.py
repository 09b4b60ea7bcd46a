"""The delivery engine of one worker process: every message on its own clock.

A Celery hint (``broker.deliver_messages``) only asks the engine to claim; it
never waits for a send. The engine holds at most ``QSTASH_DELIVERY_CONCURRENCY``
messages at once (claimed and not yet recorded), so memory is bounded whatever
the backlog, and claims only as many as it has free slots, so nothing it holds
waits behind anything else:

- **sender** (one thread running an asyncio event loop): signs and sends every
  claimed message as its own task; a slow destination holds only its own slot,
  up to its timeout;
- **recorder** (one thread): writes outcomes as they come back, a few
  milliseconds' worth per transaction; a failed write (the database restarted)
  is retried after reconnecting, never by sending again;
- **renewer** (one thread): pushes back the lease of everything held every
  third of ``QSTASH_LEASE_SECONDS``, so a live worker keeps its claims while a
  dead one's return to the pool within one lease;
- **feeder** (one thread): claims more as slots free up while the last claim
  came back full (a backlog drains at full speed without more hints);
- **beat** (one thread): reports this process alive every few seconds
  (``broker/services/heartbeats.py``, the dashboard's liveness), off every path
  a delivery takes.

Delivery is at least once: a worker that dies after the destination answered
and before the outcome committed leaves a claim that expires, and the message is
sent again. Nothing else sends a message twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import threading
import time
import uuid

from django.conf import settings
from django.db import Error as DbError
from django.db import connection
from django.db.utils import InterfaceError, OperationalError
from django.utils import timezone

from broker.http import HttpResult
from broker.models import Message
from broker.services.claims import leases_renew, messages_claim
from broker.services.credentials import credentials_get
from broker.services.delivery import message_send
from broker.services.outcomes import Attempt, messages_record_outcomes

logger = logging.getLogger(__name__)

# Outcomes waiting at most this long to share a transaction with others.
FLUSH_SECONDS = 0.005
# At most this many outcomes per transaction.
FLUSH_MAX = 200
# Between tries of a write that failed for a connection reason: short, since the
# claims must be written before their leases lapse.
RETRY_BACKOFF = (0.05, 0.1, 0.25, 0.5)

_CONNECTION_ERRORS = (OperationalError, InterfaceError)


def _drop_connection() -> None:
    """Close this thread's connection after an error; the next query reconnects.

    The engine's threads keep their connection for as long as it works: checking
    it before every statement (Django's health check) would add a round trip to
    each claim and each outcome write, the path whose length bounds duplicates.
    """
    with contextlib.suppress(DbError):
        connection.close()


class DeliveryEngine:
    def __init__(self, *, slots: int, lease_seconds: float, batch: int) -> None:
        self.slots = slots
        self.lease_seconds = lease_seconds
        self.batch = batch
        self._refill_at = max(1, min(batch, slots) // 4)
        self._lock = threading.Lock()
        # One claim at a time (a hint and the feeder may both ask), so slots are not overfilled.
        self._claim_lock = threading.Lock()
        self._held: dict[int, uuid.UUID] = {}  # claimed and not yet recorded: pk -> token
        self._more_due = False
        self._wake_feeder = threading.Event()
        self._stopping = threading.Event()
        self._outcomes: queue.Queue[Attempt] = queue.Queue()
        self._loop = asyncio.new_event_loop()
        self._sending: set[asyncio.Task[None]] = set()  # held here so they are not collected
        for target, name in (
            (self._loop.run_forever, "qstash-send"),
            (self._record_loop, "qstash-record"),
            (self._renew_loop, "qstash-renew"),
            (self._feed_loop, "qstash-feed"),
            (self._beat_loop, "qstash-beat"),
        ):
            threading.Thread(target=target, name=name, daemon=True).start()

    # --- claiming -----------------------------------------------------------------

    def free_slots(self) -> int:
        with self._lock:
            return self.slots - len(self._held)

    def hint(self, ids: list[int] | None = None) -> int:
        """A delivery hint: claim these due messages now, or (``ids`` None) let the feeder
        claim whatever is due, in chunks, as slots allow.

        Returns how many were claimed here. Returns at once: the sends run in the pool.
        """
        if ids is None:
            self._more_due = True
            self._wake_feeder.set()
            return 0
        return self.take(ids)

    def take(self, ids: list[int] | None = None) -> int:
        """Claim due messages (among ``ids`` when given) up to the free slots; send them."""
        with self._claim_lock:
            return self._take(ids)

    def _take(self, ids: list[int] | None) -> int:
        free = self.free_slots()
        if free <= 0:
            # Full: claim as soon as a slot frees up instead.
            self._more_due = True
            return 0
        limit = min(free, self.batch) if ids is None else min(free, len(ids))
        # Read before claiming: nothing may fail between the claim and the sends.
        signing_key = credentials_get().current
        token, rows = messages_claim(
            ids=ids, limit=limit, now=timezone.now(), lease_seconds=self.lease_seconds
        )
        if ids is None:
            # A short claim is no proof the backlog is gone: other claimers' locked rows
            # were skipped. Only a claim that finds nothing ends the refilling.
            self._more_due = bool(rows)
        elif len(ids) > limit:
            self._more_due = True
        if not rows:
            return 0
        with self._lock:
            for row in rows:
                self._held[row.pk] = token
        # One wake-up of the loop for the whole claim.
        self._loop.call_soon_threadsafe(self._start_sends, rows, token, signing_key)
        return len(rows)

    def _worth_claiming(self) -> bool:
        """Refill in chunks: a claim costs a transaction whatever its size, so while
        sends are in flight wait for a quarter of a batch of free slots."""
        with self._lock:
            free, held = self.slots - len(self._held), len(self._held)
        return free > 0 and (held == 0 or free >= self._refill_at)

    def _feed_loop(self) -> None:
        while not self._stopping.is_set():
            self._wake_feeder.wait(timeout=1.0)
            self._wake_feeder.clear()
            while self._more_due and self._worth_claiming() and not self._stopping.is_set():
                try:
                    if self.take() == 0:
                        break
                except Exception:  # this thread must outlive any failure
                    logger.warning("claim failed; trying again shortly", exc_info=True)
                    _drop_connection()
                    time.sleep(0.5)
                    break

    # --- sending ------------------------------------------------------------------

    def _start_sends(self, rows: list[Message], token: uuid.UUID, signing_key: str) -> None:
        for row in rows:
            task = self._loop.create_task(self._send(row, token, signing_key))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(self, message: Message, token: uuid.UUID, signing_key: str) -> None:
        try:
            result = await message_send(message, signing_key=signing_key)
        except Exception as exc:  # message_send never raises; a bug must not leak the slot
            logger.exception("sending %s failed unexpectedly", message.message_id)
            result = HttpResult(error=f"request failed: {exc.__class__.__name__}")
        self._outcomes.put(Attempt(message, token, result, timezone.now()))

    # --- recording ----------------------------------------------------------------

    def _next_outcomes(self) -> list[Attempt]:
        attempts = [self._outcomes.get()]
        deadline = time.monotonic() + FLUSH_SECONDS
        while len(attempts) < FLUSH_MAX:
            remaining = deadline - time.monotonic()
            try:
                attempts.append(self._outcomes.get(timeout=max(0.0, remaining)))
            except queue.Empty:
                break
        return attempts

    def _record_loop(self) -> None:
        while True:
            attempts = self._next_outcomes()
            self._record(attempts)
            with self._lock:
                for attempt in attempts:
                    # Only this claim: the message may have been claimed again since.
                    if self._held.get(attempt.message.pk) == attempt.token:
                        del self._held[attempt.message.pk]
            if self._more_due:
                self._wake_feeder.set()

    def _record(self, attempts: list[Attempt]) -> None:
        """Write the outcomes, retrying a connection failure while the claims are held.

        The renewer keeps the leases alive meanwhile, so nobody else sends these
        messages while their outcome waits for the database.
        """
        tries = 0
        while True:
            try:
                counts = messages_record_outcomes(attempts=attempts, now=timezone.now())
                logger.debug("recorded %s", counts)
                if counts.get("gates_woken"):
                    # A queue or key may admit the next message now: claim it here.
                    self._more_due = True
                return
            except _CONNECTION_ERRORS:
                _drop_connection()
                delay = RETRY_BACKOFF[min(tries, len(RETRY_BACKOFF) - 1)]
                tries += 1
                logger.warning(
                    "recording %d outcome(s) failed; retrying in %ss", len(attempts), delay
                )
                time.sleep(delay)
            except Exception:
                # Not a connection problem: retrying would fail the same way. Let the
                # leases lapse so the messages are claimed and sent again.
                logger.exception("recording %d outcome(s) failed; dropping them", len(attempts))
                _drop_connection()
                return

    # --- renewing -----------------------------------------------------------------

    def _renew_loop(self) -> None:
        interval = self.lease_seconds / 3
        while True:
            time.sleep(interval)
            with self._lock:
                claims = list(self._held.items())
            if not claims:
                continue
            try:
                leases_renew(claims=claims, now=timezone.now(), lease_seconds=self.lease_seconds)
                interval = self.lease_seconds / 3
            except Exception:  # this thread must outlive any failure
                logger.warning("renewing %d lease(s) failed", len(claims), exc_info=True)
                _drop_connection()
                # Renew as soon as the database is back, before anyone may take over.
                interval = min(self.lease_seconds / 3, 0.25)

    # --- liveness -----------------------------------------------------------------

    def _beat_loop(self) -> None:
        from broker.services.heartbeats import BEAT_SECONDS, heartbeat_beat

        started_at = timezone.now()
        while not self._stopping.is_set():
            with self._lock:
                held = len(self._held)
            try:
                heartbeat_beat(
                    kind="worker",
                    started_at=started_at,
                    now=timezone.now(),
                    detail={"in_flight": held, "slots": self.slots},
                )
            except Exception:  # this thread must outlive any failure
                logger.warning("heartbeat failed", exc_info=True)
                _drop_connection()
            self._stopping.wait(BEAT_SECONDS)

    # --- shutdown -----------------------------------------------------------------

    def drain(self, timeout: float) -> bool:
        """Stop claiming and wait until everything held is recorded (or ``timeout``)."""
        self._stopping.set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._held:
                    return True
            time.sleep(0.05)
        return False


_engine: tuple[int, DeliveryEngine] | None = None
_engine_lock = threading.Lock()


def engine() -> DeliveryEngine:
    """This process's engine, started on first use (and again after a fork)."""
    global _engine
    with _engine_lock:
        if _engine is None or _engine[0] != os.getpid():
            _engine = (
                os.getpid(),
                DeliveryEngine(
                    slots=settings.QSTASH_DELIVERY_CONCURRENCY,
                    lease_seconds=settings.QSTASH_LEASE_SECONDS,
                    batch=settings.QSTASH_DELIVERY_BATCH,
                ),
            )
        return _engine[1]


def drain_if_running(timeout: float) -> None:
    """At worker shutdown: finish and record what this process holds."""
    if _engine is not None and _engine[0] == os.getpid() and not _engine[1].drain(timeout):
        logger.warning("shutting down with deliveries unrecorded; their leases will lapse")
