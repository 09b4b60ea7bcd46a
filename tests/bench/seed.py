"""Store due messages through the product's own publish service (run as a subprocess).

``python -m tests.bench.seed --count N --url URL`` with the product's environment.
Uses ``messages_publish`` in chunks, exactly what the API does after validation, so
each chunk's ids are also handed to the waker like a burst of real publishes. Exits
once the waker has sent every hint (the hints then wait in the broker for the worker).
Prints one JSON line: ``{"published": n, "seconds": s}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from typing import Any


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--chunk", type=int, default=500)
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "qstash_site.settings")
    import django

    django.setup()
    from django.utils import timezone

    from broker.publish_options import parse_publish_options
    from broker.services.publish import Draft, messages_publish, publish_limits
    from broker.wakeup import waker

    fields = {f.name for f in dataclasses.fields(Draft)}

    def carry(data: bytes) -> dict[str, Any]:
        # The body travels as ``body`` or as an unsaved ``Payload`` row, depending on the version.
        if "payload" in fields:
            from broker.models import Payload

            return {"payload": Payload(body=data)}
        return {"body": data}

    started = time.monotonic()
    body = b'{"hello":"bench"}'
    published = 0
    limits = publish_limits()
    headers = {"Content-Type": "application/json"}
    while published < args.count:
        now = timezone.now()
        size = min(args.chunk, args.count - published)
        options = [parse_publish_options(headers, {}, now=now, limits=limits) for _ in range(size)]
        drafts = [
            Draft(url=args.url, options=o, caller_ip="127.0.0.1", **carry(body)) for o in options
        ]
        published += len(messages_publish(drafts=drafts, now=now))
    # The waker sends hints from a daemon thread: let it finish before exiting.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(0.2)
        with waker._lock:  # noqa: SLF001  (a benchmark may peek)
            pending = len(waker._pending)  # noqa: SLF001
        if not pending and not waker._event.is_set():  # noqa: SLF001
            time.sleep(0.3)  # the send in flight
            break
    print(json.dumps({"published": published, "seconds": round(time.monotonic() - started, 2)}))
    return 0 if published == args.count else 1


if __name__ == "__main__":
    sys.exit(main())
