"""Before the suite: say in one line which service cannot be reached, and exit non-zero."""

from __future__ import annotations

import os
import socket
import sys
from urllib.parse import urlsplit


def reachable(url: str, default_port: int) -> str | None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or default_port
    try:
        with socket.create_connection((host, port), timeout=3):
            return None
    except OSError as exc:
        return f"{host}:{port} ({exc.strerror or exc})"


def main() -> int:
    database = os.environ["DATABASE_URL"]
    broker = os.environ["CELERY_BROKER_URL"]
    checks = [("PostgreSQL", database, 5432)]
    checks.append(
        (
            "RabbitMQ" if broker.startswith("amqp") else "Redis",
            broker,
            6379 if broker.startswith("redis") else 5672,
        )
    )
    for name, url, port in checks:
        if problem := reachable(url, port):
            print(f"cannot reach {name} at {problem}: start it or set the URL", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
