"""PostgreSQL stops and comes back: the API answers 503 meanwhile and 200 right after, never 500.

The web process runs the production way (gunicorn, ``deploy/gunicorn.conf.py``, sync
workers that keep their connection between requests) on a PostgreSQL cluster of the
test's own (``tests/faults.py``), because stopping the shared one would break every
other run on the machine.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from django.db import OperationalError, connection
from django.test import Client

from broker.api.outage import MESSAGE
from broker.services import credentials
from tests.conftest import LOOPBACK_POLICY, ROOT, wait_until
from tests.faults import PostgresCluster, free_port

TOKEN = "outage-token-" + secrets.token_urlsafe(24)
WORKERS = 3
# The access log names the gunicorn worker (its pid) that answered each request.
ACCESS_LINE = re.compile(r"^<(?P<pid>\d+)> (?P<status>\d{3}) (?P<path>\S+)$")


@pytest.fixture
def own_postgres() -> Iterator[PostgresCluster]:
    with PostgresCluster() as cluster:
        yield cluster


def _env(database_url: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "QSTASH_", "GUNICORN_", "DATABASE_URL"))
        and k not in ("WEB_CONCURRENCY", "PORT", "BIND_HOST", "SECRET_KEY", "DEBUG")
    }
    env.update(
        DATABASE_URL=database_url,
        SECRET_KEY=secrets.token_urlsafe(50),
        DEBUG="0",
        PYTHONUNBUFFERED="1",
        QSTASH_ALLOWED_HOSTS=",".join(LOOPBACK_POLICY["QSTASH_ALLOWED_HOSTS"]),
        QSTASH_ALLOWED_NETWORKS=",".join(LOOPBACK_POLICY["QSTASH_ALLOWED_NETWORKS"]),
        QSTASH_DENIED_NETWORKS=",".join(LOOPBACK_POLICY["QSTASH_DENIED_NETWORKS"]),
    )
    return env


def _store_credentials(database_url: str) -> None:
    """The token lives in the database, as when QSTASH_TOKEN is unset: authentication reads it."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO broker_credentials"
            " (token, current_signing_key, next_signing_key, updated_at)"
            " VALUES (%s, %s, %s, now())",
            (TOKEN, "sig_" + secrets.token_urlsafe(24), "sig_" + secrets.token_urlsafe(24)),
        )


class Web:
    """gunicorn as deployed, with an access log that names the answering worker."""

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.port = free_port()
        self.access_log = workdir / "access.log"
        self.log = workdir / "web.log"
        argv = [
            sys.executable, "-m", "gunicorn", "qstash_site.wsgi",
            "-c", str(ROOT / "deploy" / "gunicorn.conf.py"),
            "--workers", str(WORKERS),
            "--bind", f"127.0.0.1:{self.port}",
            "--access-logfile", str(self.access_log),
            "--access-logformat", "%(p)s %(s)s %(U)s",
        ]  # fmt: skip
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=10)

    def workers(self) -> set[int]:
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        return {int(pid) for pid in children.split()}

    def answers(self) -> list[tuple[int, int, str]]:
        """(worker pid, status, path) of every request so far, in order."""
        lines = self.access_log.read_text().splitlines() if self.access_log.exists() else []
        return [
            (int(m["pid"]), int(m["status"]), m["path"])
            for m in map(ACCESS_LINE.match, lines)
            if m is not None
        ]

    def publish(self, n: int) -> httpx.Response:
        return self.client.post(
            f"/v2/publish/http://127.0.0.1:9/outage/{n}",
            headers={"Authorization": f"Bearer {TOKEN}"},
            content=b"payload",
        )

    def serving(self) -> bool:
        assert self.proc.poll() is None, self.log.read_text()
        try:
            return self.client.get("/healthz").status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        self.client.close()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture
def web(own_postgres: PostgresCluster, tmp_path: Path) -> Iterator[Web]:
    env = _env(own_postgres.url)
    migrate = [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"]
    done = subprocess.run(migrate, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    _store_credentials(own_postgres.url)
    server = Web(env, tmp_path)
    try:
        wait_until(server.serving, timeout=30, what="gunicorn")
        yield server
    finally:
        server.stop()


def _publish_until_every_worker_answered(web: Web, since: int) -> list[tuple[int, int, str]]:
    """Publish in parallel rounds until each gunicorn worker has answered one after ``since``."""
    count = 0

    def every_worker_answered() -> bool:
        nonlocal count
        with ThreadPoolExecutor(WORKERS * 2) as pool:
            statuses = list(pool.map(lambda n: web.publish(n).status_code, range(count, count + 8)))
        count += 8
        assert set(statuses) == {200}, statuses
        return {pid for pid, _, _ in web.answers()[since:]} >= web.workers()

    wait_until(every_worker_answered, timeout=30, what="every gunicorn worker to answer")
    return web.answers()[since:]


def test_publish_answers_503_while_postgres_is_down_and_200_in_every_worker_after(
    own_postgres: PostgresCluster, web: Web
) -> None:
    # Every worker holds a connection from before the outage.
    _publish_until_every_worker_answered(web, since=0)

    own_postgres.stop(immediate=True)
    down = web.publish(1000)
    assert down.status_code == 503, down.text
    assert down.headers["Retry-After"] == "5"
    assert down.json() == {"error": MESSAGE}
    health = web.client.get("/healthz")
    assert (health.status_code, health.headers["Retry-After"]) == (503, "5")
    assert health.json() == {"error": MESSAGE}

    own_postgres.start()
    # At most two workers met the outage; the others still hold a connection the
    # restart killed. Each one's first request after the restart must succeed.
    after = web.answers()
    answers = _publish_until_every_worker_answered(web, since=len(after))
    assert {status for _, status, _ in answers} == {200}
    assert len(answers) >= WORKERS

    log = web.log.read_text()
    assert "Service Unavailable (database" in log
    assert "Internal Server Error" not in log
    assert "Traceback" not in log


@pytest.mark.django_db(transaction=True)
def test_token_read_from_an_unreachable_database_is_a_503_not_a_500(
    settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # The token comes from the database (nothing in the environment), and the
    # database is a port nobody listens on: authentication itself meets the outage.
    settings.QSTASH_TOKEN = ""
    credentials.credentials_forget()
    real_port = connection.settings_dict["PORT"]
    connection.close()
    connection.settings_dict["PORT"] = str(free_port())
    try:
        answer = Client().post(
            "/v2/publish/http://127.0.0.1:9/hook",
            data=b"x",
            content_type="text/plain",
            headers={"Authorization": "Bearer anything"},
        )
        health = Client().get("/healthz")
    finally:
        connection.close()
        connection.settings_dict["PORT"] = real_port
    assert answer.status_code == 503, answer.content
    assert answer["Retry-After"] == "5"
    assert answer.json() == {"error": MESSAGE}
    assert health.status_code == 503
    assert health.json() == {"error": MESSAGE}
    assert [r.levelname for r in caplog.records if r.name == "broker.api.outage"] == [
        "WARNING",
        "WARNING",
    ]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


class _DatabaseDownMiddleware:
    """A middleware whose own query fails, below the outage middleware."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        raise OperationalError("connection to server at 127.0.0.1 failed: Connection refused")


@pytest.mark.parametrize(("path", "status"), [("/v2/keys", 503), ("/admin/", 500)])
def test_a_database_error_in_a_middleware_is_a_503_on_the_api_only(
    settings: Any, caplog: pytest.LogCaptureFixture, path: str, status: int
) -> None:
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, f"{__name__}._DatabaseDownMiddleware"]
    answer = Client(raise_request_exception=False).get(path)
    assert answer.status_code == status
    if status == 503:
        assert answer["Retry-After"] == "5"
        assert answer.json() == {"error": MESSAGE}
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
