"""Store due messages through the product's own publish service (run as a subprocess).

``python -m tests.bench.seed --count N --url URL`` with the product's environment.
Uses ``messages_publish`` in chunks, exactly what the API does after validation.
No clock runs meanwhile, so nothing relays the publishes' notifications: the
worker starts on a backlog that the clock's sweep hands out, the way a restarted
deployment catches up. Prints one JSON line: ``{"published": n, "seconds": s}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


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

    from broker.models import Payload
    from broker.publish_options import parse_publish_options
    from broker.services.publish import Draft, messages_publish, publish_limits

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
            Draft(url=args.url, payload=Payload(body=body), options=o, caller_ip="127.0.0.1")
            for o in options
        ]
        published += len(messages_publish(drafts=drafts, now=now))
    print(json.dumps({"published": published, "seconds": round(time.monotonic() - started, 2)}))
    return 0 if published == args.count else 1


if __name__ == "__main__":
    sys.exit(main())
