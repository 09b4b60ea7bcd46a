"""Retention pruning in a process of its own (the clock runs it on a thread by default).

``manage.py qstash_prune --once`` prunes everything past retention and exits, printing
what it deleted; without ``--once`` it repeats every ``--every`` seconds until stopped.
Use it with ``qstash_clock --no-prune`` to keep pruning off the clock's host.
"""

from __future__ import annotations

import json
import signal
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Delete rows past their retention, in batches that each commit."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--once", action="store_true")
        parser.add_argument("--every", type=float, default=None)
        parser.add_argument("--batch", type=int, default=None)
        parser.add_argument("--pause-ms", type=int, default=None)

    def handle(self, *args: Any, **options: Any) -> None:
        from broker.services.maintenance import PruneLoop, rows_prune

        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        if options["once"]:
            pruned = rows_prune(batch=options["batch"], pause_ms=options["pause_ms"], stop=stop)
            self.stdout.write(json.dumps(pruned))
            return
        every = options["every"] or float(settings.QSTASH_PRUNE_EVERY_SECONDS)
        loop = PruneLoop(every=every, stop=stop)
        loop.start()
        while loop.is_alive():
            loop.join(timeout=1)
