"""``make run``: migrate, then web, worker and clock in one terminal; Ctrl-C stops all.

A child that dies is restarted (``broker/management/supervisor.py``); one that keeps
dying stops the whole server with a non-zero exit naming it.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from broker.management.supervisor import GaveUp, Supervisor
from broker.services.credentials import (
    DEV_CURRENT_SIGNING_KEY,
    DEV_NEXT_SIGNING_KEY,
    DEV_TOKEN,
)


class Command(BaseCommand):
    help = "Serve web, worker and clock for local development (the QStash dev server's role)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))

    def handle(self, *args: Any, **options: Any) -> None:
        port = options["port"]
        env = dict(os.environ)
        env.setdefault("DEBUG", "1")
        # The dev server's public credentials, so the SDKs' dev mode finds us.
        env.setdefault("QSTASH_TOKEN", DEV_TOKEN)
        env.setdefault("QSTASH_CURRENT_SIGNING_KEY", DEV_CURRENT_SIGNING_KEY)
        env.setdefault("QSTASH_NEXT_SIGNING_KEY", DEV_NEXT_SIGNING_KEY)
        call_command("migrate", interactive=False, verbosity=0)

        bin_dir = os.path.dirname(sys.executable)
        commands = {
            "web": [
                os.path.join(bin_dir, "gunicorn"),
                "qstash_site.wsgi",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "2",
                # Threads with keep-alive, which the SDKs use (one developer, one client).
                "--worker-class",
                "gthread",
                "--threads",
                "4",
                "--log-level",
                "warning",
            ],
            "worker": [
                os.path.join(bin_dir, "celery"),
                "-A",
                "qstash_site",
                "worker",
                "--concurrency",
                "1",
                "--loglevel",
                "WARNING",
            ],
            "clock": [sys.executable, "manage.py", "qstash_clock"],
        }
        supervisor = Supervisor(
            commands, env=env, cwd=settings.BASE_DIR, say=lambda line: self.stdout.write(line)
        )

        def stop(*_: Any) -> None:
            supervisor.stopping = True

        # Before the first child starts, so a Ctrl-C at any point stops all of them.
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            supervisor.start()
            self.stdout.write(
                f"\nQStash is serving on http://127.0.0.1:{port} "
                "(web, worker and clock; Ctrl-C stops all)\n\n"
                f"QSTASH_URL=http://127.0.0.1:{port}\n"
                f"QSTASH_TOKEN={env['QSTASH_TOKEN']}\n"
                f"QSTASH_CURRENT_SIGNING_KEY={env['QSTASH_CURRENT_SIGNING_KEY']}\n"
                f"QSTASH_NEXT_SIGNING_KEY={env['QSTASH_NEXT_SIGNING_KEY']}\n"
            )
            while not supervisor.stopping:
                supervisor.check()
                time.sleep(0.5)
        except GaveUp as exc:
            raise CommandError(f"{exc}; stopping everything") from exc
        finally:
            supervisor.stop()
