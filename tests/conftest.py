"""Fixtures: loopback HTTP destinations, a real Celery worker and clock, the official SDK.

Integration tests run against the PostgreSQL and broker named by DATABASE_URL and
CELERY_BROKER_URL (``make test`` defaults them to 127.0.0.1). The worker and the
clock are real subprocesses pointed at pytest-django's test database.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import connection

from broker import http as outbound
from broker.models import Message
from broker.services import credentials

ROOT = Path(__file__).resolve().parent.parent
TEST_TOKEN = "test-token-0123456789abcdefghijklmnopqrstuvwxyz"
TEST_CURRENT_KEY = "sig_TestCurrentKey1234567890abcdefgh"
TEST_NEXT_KEY = "sig_TestNextKey1234567890abcdefghijk"
# Loopback only: every other host fails before DNS, every other address is denied.
LOOPBACK_POLICY = {
    "QSTASH_ALLOWED_HOSTS": ["127.0.0.1", "localhost", "::1"],
    "QSTASH_ALLOWED_NETWORKS": ["127.0.0.0/8", "::1/128"],
    "QSTASH_DENIED_NETWORKS": ["0.0.0.0/0", "::/0"],
}


def wait_until(
    predicate: Callable[[], Any], *, timeout: float = 20.0, what: str = "condition"
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


# --- loopback destinations ---------------------------------------------------------


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    time: float


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    delay: float = 0.0
    # Answer only once this is set (or after ``delay``, whichever comes first).
    until: threading.Event | None = None


class Receiver:
    """A real HTTP server on 127.0.0.1 that records every request and answers as scripted."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._scripts: dict[str, list[Reply]] = {}
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path
                with receiver._lock:
                    receiver.requests.append(
                        Received(self.command, path, dict(self.headers.items()), body, time.time())
                    )
                    script = receiver._scripts.get(path.split("?")[0], [])
                    reply = script.pop(0) if len(script) > 1 else (script[0] if script else Reply())
                if reply.until is not None:
                    reply.until.wait(reply.delay or None)
                elif reply.delay:
                    time.sleep(reply.delay)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def script(self, path: str, *replies: Reply) -> None:
        """Answer requests to ``path`` with ``replies`` in turn; the last one repeats."""
        with self._lock:
            self._scripts[path] = list(replies)

    def received(self, path: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if path is None or r.path.split("?")[0] == path]

    def wait_for(
        self, count: int, path: str | None = None, timeout: float = 20.0
    ) -> list[Received]:
        return wait_until(
            lambda: (got := self.received(path)) and len(got) >= count and got,
            timeout=timeout,
            what=f"{count} request(s) to {path or 'the receiver'}",
        )

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


# --- settings for the test process (the live server runs in it) ----------------------


@pytest.fixture(autouse=True)
def _test_settings(settings: Any) -> Iterator[None]:
    # The dashboard keeps closed chart buckets in the cache: one test's must not show in
    # the next one's (their rows fall in the same buckets).
    cache.clear()
    settings.QSTASH_TOKEN = TEST_TOKEN
    settings.QSTASH_CURRENT_SIGNING_KEY = TEST_CURRENT_KEY
    settings.QSTASH_NEXT_SIGNING_KEY = TEST_NEXT_KEY
    for name, value in LOOPBACK_POLICY.items():
        setattr(settings, name, value)
    credentials.credentials_forget()
    outbound.reset()
    yield
    credentials.credentials_forget()
    outbound.reset()


# --- a real Celery worker and clock -------------------------------------------------


class Process:
    """A subprocess of the project (worker or clock) on the test database."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.name, self.argv, self.env = name, argv, env
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = ROOT / "var" / f"test-{name}.log"
        self.log.parent.mkdir(exist_ok=True)

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def kill(self) -> None:
        """SIGKILL the whole process group: no warm shutdown, nothing acknowledged."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@dataclass
class Services:
    worker: Process
    clock: Process


def _subprocess_env() -> dict[str, str]:
    # Same server and credentials as DATABASE_URL, but pytest-django's test database.
    database_url = urlsplit(settings.DATABASE_URL)._replace(
        path="/" + connection.settings_dict["NAME"]
    )
    env = dict(os.environ)
    env.update(
        DATABASE_URL=urlunsplit(database_url),
        CELERY_BROKER_URL=settings.CELERY_BROKER_URL,
        SECRET_KEY="test-secret-key-not-for-production-0123456789",
        QSTASH_TOKEN=TEST_TOKEN,
        QSTASH_CURRENT_SIGNING_KEY=TEST_CURRENT_KEY,
        QSTASH_NEXT_SIGNING_KEY=TEST_NEXT_KEY,
        QSTASH_ALLOWED_HOSTS=",".join(LOOPBACK_POLICY["QSTASH_ALLOWED_HOSTS"]),
        QSTASH_ALLOWED_NETWORKS=",".join(LOOPBACK_POLICY["QSTASH_ALLOWED_NETWORKS"]),
        QSTASH_DENIED_NETWORKS=",".join(LOOPBACK_POLICY["QSTASH_DENIED_NETWORKS"]),
        # Short leases so the killed-worker test recovers in seconds.
        QSTASH_LEASE_SECONDS="4",
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture(scope="session")
def services(django_db_setup: Any, django_db_blocker: Any) -> Iterator[Services]:
    """One worker and one clock for the session, on the test database."""
    with django_db_blocker.unblock():
        env = _subprocess_env()
    from qstash_site.celery import app

    app.control.purge()
    bin_dir = Path(sys.executable).parent
    worker = Process(
        "worker",
        [
            str(bin_dir / "celery"),
            "-A",
            "qstash_site",
            "worker",
            "--concurrency",
            "2",
            "--loglevel",
            "INFO",
            "-O",
            "fair",
            "--without-gossip",
            "--without-mingle",
        ],
        env,
    )
    # No prune thread in the session's clock: its batches lock several tables at once and
    # can deadlock with pytest-django's TRUNCATE between tests (seen once in CI). The
    # prune tests run their own clock with it.
    clock = Process(
        "clock",
        [sys.executable, "manage.py", "qstash_clock", "--interval", "0.5", "--no-prune"],
        env,
    )
    worker.start()
    clock.start()
    yield Services(worker, clock)
    worker.stop()
    clock.stop()
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        # A process killed by a test may leave its session behind for a moment;
        # it must not stop pytest-django from dropping the test database.
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


class _ServerErrors(logging.Handler):
    """Collects what Django logs for a request that ended in a 5xx."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "status_code", 500) >= 500:
            self.seen.append(record.getMessage())


@pytest.fixture
def live(services: Services, live_server: Any, transactional_db: Any) -> Iterator[str]:
    """The API's base URL, with a worker and clock delivering from the same database."""
    if services.worker.proc is None or services.worker.proc.poll() is not None:
        services.worker.start()
    server_errors = _ServerErrors()
    logging.getLogger("django.request").addHandler(server_errors)
    try:
        yield str(live_server.url)
    finally:
        logging.getLogger("django.request").removeHandler(server_errors)
    # A 500 is a bug whatever the test asserted.
    assert server_errors.seen == [], f"the API answered 500: {server_errors.seen}"
    # Stop this test's pipeline before pytest-django truncates the tables: a worker
    # claiming or recording while TRUNCATE takes its locks can deadlock with it.
    # A cancelled row is never claimed, and an outcome for it writes nothing.
    Message.objects.filter(state__in=Message.PENDING_STATES).update(
        state=Message.State.CANCELED, due_at=None, claim_token=None
    )


@pytest.fixture
def client_sdk(live: str) -> Any:
    from qstash import QStash

    return QStash(TEST_TOKEN, base_url=live)
