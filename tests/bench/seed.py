"""Store due messages through the product's own publish service (run as a subprocess).

``python -m tests.bench.seed --count N --url URL`` with the product's environment.
Uses ``messages_publish`` in chunks, exactly what the API does after validation.
No clock runs meanwhile, so nothing relays the publishes' notifications: the
worker starts on a backlog that the clock's sweep hands out, the way a restarted
deployment catches up. Prints one JSON line: ``{"published": n, "seconds": s}``.

``--service K`` (K < N) publishes only K messages through the service and copies
the first of them in SQL until there are N (fresh ids and message ids, the same
payload row, no CREATED log rows): a large backlog in seconds instead of minutes.
Nothing on the claim path reads the log, so the copies deliver like the others.
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
    parser.add_argument("--service", type=int, default=None)
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "qstash_site.settings")
    import django

    django.setup()
    from django.db import connection, transaction
    from django.utils import timezone

    from broker.models import Message, Payload
    from broker.publish_options import parse_publish_options
    from broker.services.publish import Draft, messages_publish, publish_limits

    started = time.monotonic()
    body = b'{"hello":"bench"}'
    via_service = args.count if args.service is None else max(1, min(args.service, args.count))
    published = 0
    first_id: str | None = None
    limits = publish_limits()
    headers = {"Content-Type": "application/json"}
    while published < via_service:
        now = timezone.now()
        size = min(args.chunk, via_service - published)
        options = [parse_publish_options(headers, {}, now=now, limits=limits) for _ in range(size)]
        drafts = [
            Draft(url=args.url, payload=Payload(body=body), options=o, caller_ip="127.0.0.1")
            for o in options
        ]
        rows = messages_publish(drafts=drafts, now=now)
        published += len(rows)
        if first_id is None and rows:
            first_id = rows[0].message_id
    copies = args.count - published
    if copies > 0 and first_id is not None:
        columns = [
            f.column
            for f in Message._meta.concrete_fields
            if f.column and f.column not in ("id", "message_id") and not f.primary_key
        ]
        listed = ", ".join(connection.ops.quote_name(c) for c in columns)
        # ``message_id`` stays unique: a prefix no generated id has, and the copy's number.
        # Built from model metadata only, never from input: S608 does not apply.
        sql = (
            f"INSERT INTO {Message._meta.db_table} ({listed}, message_id)"  # noqa: S608
            f" SELECT {listed}, 'msg_bench' || lpad(g::text, 17, '0')"
            f" FROM {Message._meta.db_table} m CROSS JOIN generate_series(1, %s) g"
            " WHERE m.message_id = %s"
        )
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, [copies, first_id])
            published += cursor.rowcount
    print(json.dumps({"published": published, "seconds": round(time.monotonic() - started, 2)}))
    return 0 if published == args.count else 1


if __name__ == "__main__":
    sys.exit(main())
