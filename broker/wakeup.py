"""Wake the delivery side right after a publish commits (invariant 5).

A publish must not wait for the once-a-second sweep, nor pay for a broker call
inside the request. On PostgreSQL the publish runs
``pg_notify('qstash_due', '<ids>')`` once its rows commit (``notify_on_commit``);
the clock relays those notifications as
``deliver_messages`` hints (``DueRelay``), draining every pending one into a
single hint per batch of ids, so hints batch themselves under load. Elsewhere
(the SQLite file of ``make run``) a background thread in the publishing
process sends the hints (``Waker``).

A hint that is lost (broker down, relay restarting) only delays the message
until the clock's sweep finds it due.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Iterable
from datetime import datetime

import psycopg
from django.conf import settings
from django.db import connection, transaction

from broker.side_connections import side_connection_params

logger = logging.getLogger(__name__)

CHANNEL = "qstash_due"
# A notification payload holds at most 8000 bytes: past this many ids it says
# "*<count>" and the relay sends id-less hints instead.
MAX_IDS_PER_NOTIFY = 200
# Id-less hints sent at once at most: enough to keep every worker process busy;
# a full batch sends its own follow-up (tasks.deliver_messages).
MAX_ANONYMOUS_HINTS = 8
# One relay per database at a time; other clocks only sweep.
RELAY_LOCK_KEY = 0x51_57_A5_4D


DELIVER_TASK = "broker.deliver_messages"


def send_hints(ids: list[int], *, anonymous: int = 0) -> None:
    """Send ``deliver_messages`` hints: the ids in batches, plus id-less ones.

    Sent by name: this module sits below the tasks and services that import it.
    """
    from qstash_site.celery import app

    batch = settings.QSTASH_DELIVERY_BATCH
    try:
        for start in range(0, len(ids), batch):
            app.send_task(DELIVER_TASK, args=(ids[start : start + batch],), retry=False)
        for _ in range(anonymous):
            app.send_task(DELIVER_TASK, retry=False)
    except Exception:
        logger.warning("could not send a delivery hint; the sweep will deliver", exc_info=True)


def parse_notification(payload: str) -> tuple[list[int], int, float | None]:
    """``"1,2,3"`` -> ids; ``"*450"`` -> that many messages, named by no id;
    ``"@1764320000.25"`` -> a message falls due at that unix time."""
    if payload.startswith("*"):
        return [], int(payload[1:]), None
    if payload.startswith("@"):
        return [], 0, float(payload[1:])
    return [int(item) for item in payload.split(",") if item], 0, None


def notify_payloads(due: list[int], later: datetime | None) -> list[str]:
    """What ``parse_notification`` reads: the ids due now, and the earliest later due time."""
    payloads = []
    if due:
        ids = ",".join(map(str, due))
        payloads.append(ids if len(due) <= MAX_IDS_PER_NOTIFY else f"*{len(due)}")
    if later is not None:
        payloads.append(f"@{later.timestamp()}")
    return payloads


def notify_on_commit(due: list[int], later: datetime | None) -> None:
    """Once the caller's rows commit (at once in autocommit), announce them to the clock.

    Never in the rows' own transaction: PostgreSQL serializes every committing
    transaction that sent a NOTIFY (one lock for the whole cluster, held through the
    commit's disk flush), so a NOTIFY inside the publish statement let one publish
    commit per flush: about 1,000/s here, where the same inserts without it commit
    together at 1,300 to 1,600/s (issue 10). The notifier thread sends it, after the
    commit, on a connection of its own (``Notifier``): the request answers without a
    second round trip, and notifications that arrive together go out in one
    statement. The hint needs no durability: one lost in a crash costs a sweep.
    """
    payloads = notify_payloads(due, later)
    if payloads:
        transaction.on_commit(lambda: notifier.send(payloads))


def notify_committed(due: list[int], later: datetime | None) -> None:
    """``notify_on_commit`` for rows the caller knows are committed (group commit)."""
    if payloads := notify_payloads(due, later):
        notifier.send(payloads)


# Prepared like the insert; one payload per row of the unnest.
NOTIFY_STATEMENT = "SELECT pg_notify(%s, payload) FROM unnest(%s::text[]) AS payload"


class Notifier:
    """Per web process: a thread that sends the publishes' notifications (invariant 5).

    A request hands its payloads over and answers; the thread sends whatever is
    waiting in one ``pg_notify`` statement on a connection of its own, in autocommit
    (a transaction that only notifies writes nothing and waits for no flush). The
    connection is closed once nothing has come for ``IDLE_SECONDS``, so an idle
    process holds none (and a test database can be dropped). A failure drops that
    round's payloads with a warning and reconnects next time: a hint, never a message,
    is lost, and the sweep delivers it.
    """

    IDLE_SECONDS = 0.5

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[str] = []
        self._event = threading.Event()
        self._pid = 0
        self._params: dict[str, object] = {}
        self.sent = 0  # statements sent, for tests

    def send(self, payloads: list[str]) -> None:
        with self._lock:
            self._pending.extend(payloads)
            if self._pid != os.getpid():  # first use, or first use after a fork
                self._pid = os.getpid()
                self._params = side_connection_params("qstash-notifier")
                threading.Thread(target=self._run, name="qstash-notifier", daemon=True).start()
        self._event.set()

    def _run(self) -> None:
        conn: psycopg.Connection[tuple[object, ...]] | None = None
        while True:
            if not self._event.wait(self.IDLE_SECONDS):
                if conn is not None:
                    conn.close()
                    conn = None
                self._event.wait()
            self._event.clear()
            with self._lock:
                payloads, self._pending = self._pending, []
                params = self._params
            if not payloads:
                continue
            try:
                if conn is None or conn.closed:
                    conn = self._connect(params)
                conn.execute(NOTIFY_STATEMENT, [CHANNEL, payloads])
                self.sent += 1
            except psycopg.Error as exc:
                # The rows are committed and answered; the sweep finds them due.
                logger.warning("due notification not sent: %s", str(exc).strip().partition("\n")[0])
                if conn is not None:
                    conn.close()
                conn = None

    def _connect(self, params: dict[str, object]) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(**params, autocommit=True)  # type: ignore[arg-type]


notifier = Notifier()


def notify_due_at(when: datetime) -> None:
    """Tell the clock (at commit) that a message falls due at ``when``."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, f"@{when.timestamp()}"])


class DueRelay:
    """The clock's listener: PostgreSQL notifications in, delivery hints out."""

    # A clock that is not the relay asks again this often, not on every tick.
    RETRY_SECONDS = 5.0

    def __init__(self) -> None:
        self.conn: psycopg.Connection[tuple[object, ...]] | None = None
        self._last_try = -self.RETRY_SECONDS
        # The earliest due time announced since the clock last looked (unix seconds).
        self.announced_due: float | None = None

    def _listen(self) -> bool:
        """Hold the relay lock and LISTEN; False when another clock relays."""
        if self.conn is not None:
            return True
        if time.monotonic() - self._last_try < self.RETRY_SECONDS:
            return False
        self._last_try = time.monotonic()
        # Django's own connection parameters (TLS options included), on a
        # connection of its own: LISTEN must outlive Django's per-tick cleanup.
        conn = psycopg.connect(**connection.get_connection_params(), autocommit=True)
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", [RELAY_LOCK_KEY]).fetchone()
        if not (row and row[0]):
            conn.close()
            return False
        conn.execute(f"LISTEN {CHANNEL}")
        self.conn = conn
        return True

    def relay(self, seconds: float) -> None:
        """Relay notifications for ``seconds``, or until a message is announced due sooner.

        A clock that is not the relay just waits.
        """
        deadline = time.monotonic() + seconds
        try:
            if connection.vendor != "postgresql" or not self._listen():
                time.sleep(seconds)
                return
            assert self.conn is not None
            while (remaining := deadline - time.monotonic()) > 0:
                payloads = [n.payload for n in self.conn.notifies(timeout=remaining, stop_after=1)]
                # Whatever else is already here goes out in the same hints.
                payloads += [n.payload for n in self.conn.notifies(timeout=0)]
                self._forward(payloads)
                if self.announced_due is not None:
                    deadline = min(deadline, time.monotonic() + self.announced_due - time.time())
        except psycopg.Error:
            logger.warning("relay connection lost; reconnecting", exc_info=True)
            self.close()
            time.sleep(max(0.0, deadline - time.monotonic()))

    def _forward(self, payloads: Iterable[str]) -> None:
        ids: list[int] = []
        counted = 0
        for payload in payloads:
            named, count, due = parse_notification(payload)
            ids += named
            counted += count
            if due is not None:
                self.announced_due = min(due, self.announced_due or due)
        if ids or counted:
            batches = math.ceil(counted / settings.QSTASH_DELIVERY_BATCH)
            anonymous = min(batches, MAX_ANONYMOUS_HINTS)
            send_hints(ids, anonymous=anonymous)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class Waker:
    """Without PostgreSQL: a per-process thread that sends hints for committed ids."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[int] = []
        self._event = threading.Event()
        self._pid = 0

    def wake(self, ids: list[int]) -> None:
        with self._lock:
            self._pending.extend(ids)
            if self._pid != os.getpid():  # first use, or first use after a fork
                self._pid = os.getpid()
                threading.Thread(target=self._run, name="qstash-waker", daemon=True).start()
        self._event.set()

    def _run(self) -> None:
        while True:
            self._event.wait()
            self._event.clear()
            with self._lock:
                ids, self._pending = self._pending, []
            send_hints(ids)


waker = Waker()


def wake_on_commit(ids: list[int]) -> None:
    """After the current transaction commits, hint that these message pks are due."""
    transaction.on_commit(lambda: waker.wake(ids))
