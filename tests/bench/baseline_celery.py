"""Baseline for the delivery benchmark: one bare Celery task per message, one requests.post each.

Its own Celery app on its own Redis database (``BENCH_BASELINE_BROKER``, default
``redis://127.0.0.1:6379/11``) and queue; the worker runs with the product's
flags: ``celery -A tests.bench.baseline_celery worker --concurrency 2 -O fair
--prefetch-multiplier 4 -Q bench-baseline``.
"""

from __future__ import annotations

import os
import sys

import requests
from celery import Celery

QUEUE = "bench-baseline"

app = Celery(
    "bench_baseline", broker=os.environ.get("BENCH_BASELINE_BROKER", "redis://127.0.0.1:6379/11")
)
app.conf.update(
    task_default_queue=QUEUE,
    task_ignore_result=True,
    task_serializer="json",
    accept_content=["json"],
    worker_prefetch_multiplier=4,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)

session = requests.Session()


@app.task(name="bench.deliver", ignore_result=True)
def deliver(url: str, body: str) -> int:
    return session.post(url, data=body.encode(), timeout=30).status_code


def enqueue(count: int, url: str, body: str) -> None:
    with app.producer_or_acquire() as producer:
        for _ in range(count):
            deliver.apply_async(args=(url, body), producer=producer)


if __name__ == "__main__":
    # python -m tests.bench.baseline_celery COUNT URL BODY: enqueue up front, then exit.
    enqueue(int(sys.argv[1]), sys.argv[2], sys.argv[3])
