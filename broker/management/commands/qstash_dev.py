"""``make run``: migrate, then web, worker and clock in one terminal; Ctrl-C stops all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

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
        procs = {
            name: subprocess.Popen(cmd, env=env, cwd=settings.BASE_DIR)  # noqa: S603
            for name, cmd in commands.items()
        }
        self.stdout.write(
            f"\nQStash is serving on http://127.0.0.1:{port} "
            "(web, worker and clock; Ctrl-C stops all)\n\n"
            f"QSTASH_URL=http://127.0.0.1:{port}\n"
            f"QSTASH_TOKEN={env['QSTASH_TOKEN']}\n"
            f"QSTASH_CURRENT_SIGNING_KEY={env['QSTASH_CURRENT_SIGNING_KEY']}\n"
            f"QSTASH_NEXT_SIGNING_KEY={env['QSTASH_NEXT_SIGNING_KEY']}\n"
        )
        stopping = False

        def stop(*_: Any) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        while not stopping:
            dead = [name for name, proc in procs.items() if proc.poll() is not None]
            if dead:
                self.stderr.write(f"{', '.join(dead)} exited; stopping the rest")
                break
            time.sleep(0.5)
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 10
        for proc in procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
