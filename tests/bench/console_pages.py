"""Time the console's pages on one store (run as a subprocess per store).

``python -m tests.bench.console_pages --repeat 5`` with ``DATABASE_URL`` naming the
store: a staff superuser (made here once) is logged in to Django's test client and every
page of ``PAGES`` is rendered through the whole request path (session, admin view,
queries, templates), in process, no socket. Each is taken ``--repeat`` times after one
warm-up (its time is ``cold_ms``: the dashboard reads its charts' whole span only then);
prints one JSON line ``{"<page>": {"ms": median, "cold_ms": first, "status", "queries"}}``.

The filters name rows of the grown store (``tests/bench/grow.py``: topics ``topic-N``,
labels ``team-N``, hosts ``hostN.bench.test``) and a value that matches nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

# (label, path); "{message}" is a message in the middle of the store, "{dlq}" a DLQ entry.
PAGES: list[tuple[str, str]] = [
    ("dashboard", "/admin/"),
    ("messages", "/admin/broker/message/"),
    ("messages ?url_group=topic-3", "/admin/broker/message/?url_group=topic-3"),
    ("messages ?label=team-7", "/admin/broker/message/?label=team-7"),
    ("messages ?state=FAILED", "/admin/broker/message/?state__exact=FAILED"),
    ("messages ?queue=nomatch", "/admin/broker/message/?queue=nomatch"),
    ("messages ?q=<id>", "/admin/broker/message/?q={message_id}"),
    ("message detail", "/admin/broker/message/{message}/change/"),
    ("logs", "/admin/broker/logentry/"),
    ("logs ?state=FAILED", "/admin/broker/logentry/?state=FAILED"),
    ("logs ?host=host7.bench.test", "/admin/broker/logentry/?host=host7.bench.test"),
    ("logs ?topicName=nomatch", "/admin/broker/logentry/?topicName=nomatch"),
    ("dlq", "/admin/broker/dlqentry/"),
    ("dlq ?url_group=topic-3", "/admin/broker/dlqentry/?url_group=topic-3"),
    ("dlq retry form", "/admin/broker/dlqentry/retry-with-overrides/?ids={dlq}"),
]
USER = "bench-console"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "qstash_site.settings")
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from broker.models import DlqEntry, Message

    user = User.objects.filter(username=USER).first() or User.objects.create_superuser(
        USER, password=None
    )
    client = Client(SERVER_NAME="localhost")
    client.force_login(user)
    # A message half-way through the ids (its 3 log rows), and the first DLQ entry.
    last = Message.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    middle = Message.objects.filter(pk__gte=last // 2).order_by("pk").first()
    dlq = DlqEntry.objects.order_by("pk").values_list("pk", flat=True).first()
    fill = {
        "message": str(middle.pk if middle else 0),
        "message_id": middle.message_id if middle else "msg_none",
        "dlq": str(dlq or 0),
    }
    results: dict[str, dict[str, float | int]] = {}
    for label, template in PAGES:
        path = template.format(**fill)
        times = []
        status = queries = 0
        for _ in range(args.repeat + 1):
            with CaptureQueriesContext(connection) as captured:
                started = time.perf_counter()
                status = client.get(path).status_code
                times.append((time.perf_counter() - started) * 1000)
            queries = len(captured)
        results[label] = {
            # The first render: the dashboard's chart buckets are not cached yet.
            "cold_ms": round(times[0], 2),
            "ms": round(statistics.median(times[1:]), 2),
            "status": status,
            "queries": queries,
        }
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
