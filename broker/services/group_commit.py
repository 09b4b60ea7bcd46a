"""Group commit for publishes served by threads (``QSTASH_PUBLISH_GROUP_COMMIT``, issue 10).

With gunicorn's ``gthread`` workers several requests of one process publish at
once. Each would run the publish statement and commit on its own connection: one
statement, one commit and one WAL flush each. Here the request threads hand their
prepared messages to one writer thread per process, which inserts whatever is
waiting as ONE statement (``message_insert.insert_statement``, the same statement
a single publish runs, with all the rows) in autocommit, and wakes each request
once that statement has committed. So:

- a request still answers only after its row has committed (invariant: the answer
  comes after the commit), and nothing is weakened: ``synchronous_commit`` stays
  on, each group is one atomic statement, flushed before anyone is answered;
- a failed statement fails every request of its group, which answer 503, and
  wrote nothing (one statement: all its rows or none);
- the NOTIFY goes after the commit, through the notifier thread, as for a
  single publish.

Only the hot path comes here: messages without deduplication or gates, outside
any transaction of the caller (``messages_insert`` decides). The writer has a
connection of its own, closed when idle like the notifier's.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from broker.errors import NotStored
from broker.models import Message, Payload
from broker.side_connections import side_connection_params

logger = logging.getLogger(__name__)

# How long a request waits for its group at most; past it the writer is stuck
# (a lock wait) and the request answers 503 rather than hold its worker thread.
WAIT_SECONDS = 30.0
# Messages in one statement at most: a batch request is one job and is never split.
MAX_GROUP_MESSAGES = 1000
FAILED = "the messages could not be stored; nothing was written, retry later"


@dataclass
class _Job:
    messages: list[Message]
    new_payloads: list[Payload]
    now: datetime
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


class GroupCommitter:
    """One per process: request threads wait in ``insert``; one writer commits for them."""

    IDLE_SECONDS = 0.5

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: list[_Job] = []
        self._event = threading.Event()
        self._pid = 0
        self._params: dict[str, object] = {}
        self.groups = 0  # statements run, for tests
        self.largest = 0  # most requests one statement was run for, for tests

    def insert(self, messages: list[Message], new_payloads: list[Payload], now: datetime) -> None:
        """Insert the messages in the next group; return once their rows have committed.

        Sets each message's and new payload's pk, as ``messages_insert`` does.
        Raises NotStored (the API answers 503) when the group's statement failed.
        """
        job = _Job(messages, new_payloads, now)
        with self._lock:
            self._jobs.append(job)
            if self._pid != os.getpid():  # first use, or first use after a fork
                self._pid = os.getpid()
                self._params = side_connection_params("qstash-group-commit")
                threading.Thread(target=self._run, name="qstash-group-commit", daemon=True).start()
        self._event.set()
        if not job.done.wait(WAIT_SECONDS):
            raise NotStored(f"no commit within {WAIT_SECONDS:g}s")
        if job.error is not None:
            raise NotStored(FAILED) from job.error

    def _take(self) -> list[_Job]:
        with self._lock:
            taken: list[_Job] = []
            count = 0
            while self._jobs and (
                not taken or count + len(self._jobs[0].messages) <= MAX_GROUP_MESSAGES
            ):
                job = self._jobs.pop(0)
                taken.append(job)
                count += len(job.messages)
            if self._jobs:
                self._event.set()  # the rest go in the next statement
            return taken

    def _run(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        while True:
            if not self._event.wait(self.IDLE_SECONDS):
                if conn is not None:
                    conn.close()
                    conn = None
                self._event.wait()
            self._event.clear()
            jobs = self._take()
            if not jobs:
                continue
            try:
                if conn is None or conn.closed:
                    conn = self._connect(self._params)
                self._commit(conn, jobs)
            except Exception as exc:
                logger.warning(
                    "group of %d publishes not stored: %s",
                    len(jobs),
                    str(exc).strip().partition("\n")[0],
                )
                for job in jobs:
                    job.error = exc
                if conn is not None and (conn.closed or conn.broken):
                    conn = None
            finally:
                for job in jobs:
                    job.done.set()

    def _connect(self, params: dict[str, object]) -> psycopg.Connection[Any]:
        return psycopg.connect(**params, autocommit=True)  # type: ignore[arg-type]

    def _commit(self, conn: psycopg.Connection[Any], jobs: list[_Job]) -> None:
        # Imported here: message_insert imports this module for its hot path.
        from broker.services.message_insert import insert_params, insert_statement, notify

        messages = [m for job in jobs for m in job.messages]
        payloads = [p for job in jobs for p in job.new_payloads]
        # One CREATED time for the statement: the latest of its requests, so no log row
        # is older than its message's created_at.
        now = max(job.now for job in jobs)
        params = insert_params(messages, payloads, now=now)
        self.largest = max(self.largest, len(jobs))
        with psycopg.Cursor(conn) as cursor:
            cursor.execute(insert_statement(), params)
            ids = {message_id: (pk, payload_id) for pk, message_id, payload_id in cursor.fetchall()}
        # Committed (autocommit): from here on every request of the group is answered.
        self.groups += 1
        for message in messages:
            message.pk, message.payload.pk = ids[message.message_id]
            message.payload_id = message.payload.pk
        for job in jobs:
            notify(job.messages, job.now, on_commit=False)


committer = GroupCommitter()
