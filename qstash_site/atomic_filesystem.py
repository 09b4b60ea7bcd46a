"""kombu's filesystem transport for ``make run``, where a hint file appears whole or not at all.

kombu (5.7) creates a message file under its final name and then writes it, while
the consumer lists the folder, moves any file with the queue's name away and reads
it without a lock. A consumer that lists the folder between the create and the
write reads a partly written (or empty) file, ``json.loads`` raises, and the
worker dies with a ``JSONDecodeError``.

Here a message is written under a name the consumer ignores (it matches no
queue) and renamed into place, which POSIX makes atomic within a folder. A file
that still cannot be decoded (one written by another, non-atomic, writer) is
dropped with a warning: messages are only hints, and the clock's sweep finds
every due row again, so losing one costs a second, never a message.

Settings select it with ``CELERY_BROKER_TRANSPORT`` whenever the broker URL is
``filesystem://``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

logger = logging.getLogger(__name__)


class Channel(filesystem.Channel):
    # kombu's stubs name the argument "message" on the base channel and "payload"
    # here; kombu itself passes it by position.
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        # The final name sorts as kombu's does (milliseconds first), so order holds.
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        # A leading dot and no ".<queue>.msg" ending: no consumer, purge or size
        # count takes it for a message while it is being written.
        partial = os.path.join(self.data_folder_out, f".{uuid.uuid4()}.partial")
        try:
            with open(partial, "wb") as out:
                out.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.remove(partial)
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc

    def _get(self, queue: str, timeout: float | None = None) -> Any:
        while True:  # ends with a message, or with Empty when the folder has none left
            try:
                return super()._get(queue)  # kombu's reader never waits: no timeout
            except ValueError:
                # The file is already moved away and removed by the parent: skip it.
                logger.warning("dropped an unreadable hint file from queue %s", queue)


class Transport(filesystem.Transport):
    Channel = Channel
