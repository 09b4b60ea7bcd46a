"""Time the API's reads and filters on one store (run as a subprocess per store).

``python -m tests.bench.store_reads`` with ``DATABASE_URL`` naming the store and
``QSTASH_TOKEN`` set: every request of ``REQUESTS`` goes through Django's whole
request path (URL routing, token authentication, view, selector, JSON rendering)
with the test client, in process: what is measured is the server's work, not a
socket. Each is taken ``--repeat`` times after one warm-up; prints one JSON line
``{"<request>": {"ms": median, "status": code}, ...}``.

The filters name rows that exist in the grown store (``tests/bench/grow.py``: hosts
``hostN.bench.test``, paths ``/hook/0``..``/hook/6``, labels ``team-0``..``team-49``,
topics ``topic-0``..``topic-19``, callers ``10.0.0.0``..``10.0.0.99``) and, as the
issue's worst cases, values that match nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

NOMATCH_MSG = "msg_nomatch000000000000000"
# (method, path): logs, DLQ and bulk cancel by each of their filters.
REQUESTS: list[tuple[str, str]] = [
    ("GET", "/v2/logs?count=100"),
    ("GET", "/v2/logs?url=http://127.0.0.1:1/none"),
    ("GET", "/v2/logs?url=http://host7.bench.test/hook/0"),
    ("GET", "/v2/logs?host=host7.bench.test"),
    ("GET", "/v2/logs?host=nomatch.example"),
    ("GET", "/v2/logs?path=/hook/3"),
    ("GET", "/v2/logs?path=/nomatch"),
    ("GET", "/v2/logs?label=x"),
    ("GET", "/v2/logs?label=team-7"),
    ("GET", "/v2/logs?topicName=topic-3"),
    ("GET", "/v2/logs?topicName=nomatch"),
    ("GET", "/v2/logs?endpointName=nomatch"),
    ("GET", "/v2/logs?queueName=nomatch"),
    ("GET", "/v2/logs?scheduleId=nomatch"),
    ("GET", "/v2/logs?flowControlKey=nomatch"),
    ("GET", "/v2/logs?callerIp=10.0.0.7"),
    ("GET", "/v2/logs?callerIp=192.0.2.1"),
    ("GET", "/v2/logs?messageId=msg_grown00000000000000007"),
    ("GET", f"/v2/logs?messageId={NOMATCH_MSG}"),
    ("GET", "/v2/logs?state=FAILED"),
    ("GET", "/v2/logs?state=CANCELED"),
    ("GET", "/v2/logs?fromDate=1000000000000"),
    ("GET", "/v2/logs?toDate=1000000000000"),
    ("GET", "/v2/dlq"),
    ("GET", "/v2/dlq?url=http://127.0.0.1:1/none"),
    ("GET", "/v2/dlq?url=http://host200.bench.test/hook/5"),
    ("GET", "/v2/dlq?label=x"),
    ("GET", "/v2/dlq?topicName=nomatch"),
    ("GET", "/v2/dlq?endpointName=nomatch"),
    ("GET", "/v2/dlq?queueName=nomatch"),
    ("GET", "/v2/dlq?scheduleId=nomatch"),
    ("GET", "/v2/dlq?flowControlKey=nomatch"),
    ("GET", "/v2/dlq?callerIp=192.0.2.1"),
    ("GET", f"/v2/dlq?messageId={NOMATCH_MSG}"),
    ("GET", "/v2/dlq?responseStatus=503"),
    ("GET", "/v2/dlq?fromDate=4102444800000"),
    ("GET", "/v2/dlq?toDate=1000000000000"),
    ("DELETE", "/v2/dlq?url=http://127.0.0.1:1/none"),
    ("DELETE", "/v2/dlq?label=nomatch"),
    ("POST", "/v2/dlq/retry?label=nomatch"),
    ("GET", "/v2/messages/msg_grown00000000000000007"),
    ("DELETE", "/v2/messages?label=nomatch"),
    ("DELETE", "/v2/messages?url=http://127.0.0.1:1/none"),
    ("DELETE", "/v2/messages?host=nomatch.example"),
    ("DELETE", "/v2/messages?path=/nomatch"),
    ("DELETE", "/v2/messages?topicName=nomatch"),
    ("DELETE", "/v2/messages?callerIp=192.0.2.1"),
    ("DELETE", "/v2/messages?fromDate=4102444800000"),
]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "qstash_site.settings")
    import django

    django.setup()
    from django.test import Client

    client = Client(
        SERVER_NAME="localhost", HTTP_AUTHORIZATION=f"Bearer {os.environ['QSTASH_TOKEN']}"
    )
    results: dict[str, dict[str, float | int]] = {}
    for method, path in REQUESTS:
        call = getattr(client, method.lower())
        times = []
        status = 0
        for _ in range(args.repeat + 1):
            started = time.perf_counter()
            status = call(path).status_code
            times.append((time.perf_counter() - started) * 1000)
        results[f"{method} {path}"] = {
            "ms": round(statistics.median(times[1:]), 2),
            "status": status,
        }
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
