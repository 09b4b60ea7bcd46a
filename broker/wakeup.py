"""Wake the delivery side right after a publish commits (invariant 5).

A publish must not wait for the once-a-second sweep, nor pay for a broker round
trip inside the request. Each process keeps one background thread: the request
hands it the committed ids and returns; the thread sends them as one
``deliver_messages`` hint per batch. While it is sending, later ids pile up and
go out together, so hints batch themselves under load and cost nothing at idle.
A hint that is lost (broker down, process killed) only delays the message until
the clock's sweep finds it due.
"""

from __future__ import annotations

import logging
import os
import threading

from django.conf import settings

logger = logging.getLogger(__name__)


class Waker:
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

    def _take(self) -> list[int]:
        with self._lock:
            ids, self._pending = self._pending, []
        return ids

    def _run(self) -> None:
        from broker.tasks import deliver_messages

        batch = settings.QSTASH_DELIVERY_BATCH
        while True:
            self._event.wait()
            self._event.clear()
            ids = self._take()
            for start in range(0, len(ids), batch):
                try:
                    deliver_messages.apply_async(args=(ids[start : start + batch],), retry=False)
                except Exception:
                    logger.warning(
                        "could not send a delivery hint; the sweep will deliver", exc_info=True
                    )


waker = Waker()


def wake_on_commit(ids: list[int]) -> None:
    """After the current transaction commits, hint that these message pks are due."""
    from django.db import transaction

    transaction.on_commit(lambda: waker.wake(ids))
