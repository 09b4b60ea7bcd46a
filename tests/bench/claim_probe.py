"""Time the claim itself: ``python -m tests.bench.claim_probe --reps N --limit L``.

Each claim runs in a transaction that is rolled back, so every repetition sees the
same due rows (and the same backlog). Prints ``{"median_ms", "claimed"}``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=40)
    parser.add_argument("--limit", type=int, default=100)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "qstash_site.settings")
    import django

    django.setup()
    from django.db import transaction
    from django.utils import timezone

    from broker.services.claims import messages_claim

    times: list[float] = []
    claimed = 0
    for _ in range(args.reps):
        with transaction.atomic():
            started = time.perf_counter()
            _, rows = messages_claim(
                ids=None, limit=args.limit, now=timezone.now(), lease_seconds=6
            )
            times.append((time.perf_counter() - started) * 1000)
            claimed = len(rows)
            transaction.set_rollback(True)
    print(json.dumps({"median_ms": statistics.median(times), "claimed": claimed}))
    return 0 if claimed == args.limit else 1


if __name__ == "__main__":
    sys.exit(main())
