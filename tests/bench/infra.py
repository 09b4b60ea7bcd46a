"""Infrastructure of a benchmark run: environment, database, Redis, and the served processes.

Every process is started the production way (gunicorn with ``deploy/gunicorn.conf.py``,
``celery -A ... worker`` with the Procfile's flags, ``manage.py qstash_clock``) and
registered with ``procs`` so it is always stopped.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import redis

from tests.bench import procs
from tests.bench.procs import ROOT, Deadline, Proc
from tests.bench.sink import SinkClient

# Overridable so that a second run (a profile beside a measured run) has its own store.
BENCH_DB = os.environ.get("BENCH_DB", "qstash_bench")
PRODUCT_REDIS_DB = int(os.environ.get("BENCH_REDIS_DB", "10"))
BASELINE_REDIS_DB = PRODUCT_REDIS_DB + 1
QUEUE = "qstash-bench"


def log(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", flush=True)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


@dataclass
class Env:
    """Where things are, and the environment each kind of process gets."""

    pg: dict[str, Any]
    redis_host: str
    redis_port: int
    workdir: Path
    token: str = field(default_factory=lambda: "bench-token-" + secrets.token_urlsafe(24))
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    current_key: str = field(default_factory=lambda: "sig_" + secrets.token_urlsafe(24))
    next_key: str = field(default_factory=lambda: "sig_" + secrets.token_urlsafe(24))

    @classmethod
    def from_environ(cls, workdir: Path) -> Env:
        db = urlsplit(os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/qstash"))
        broker = urlsplit(os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15"))
        if not broker.scheme.startswith("redis"):
            raise SystemExit("the benchmark needs a Redis CELERY_BROKER_URL")
        pg = {
            "host": db.hostname or "127.0.0.1",
            "port": db.port or 5432,
            "user": db.username or "postgres",
            "password": db.password or "",
        }
        return cls(pg, broker.hostname or "127.0.0.1", broker.port or 6379, workdir)

    def database_url(self) -> str:
        auth = self.pg["user"] + (f":{self.pg['password']}" if self.pg["password"] else "")
        return f"postgres://{auth}@{self.pg['host']}:{self.pg['port']}/{BENCH_DB}"

    def redis_url(self, db: int) -> str:
        return f"redis://{self.redis_host}:{self.redis_port}/{db}"

    def _base(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            # Nothing of the caller's app or gunicorn settings leaks into the measurement.
            if not k.startswith(("DJANGO_", "QSTASH_", "CELERY_", "GUNICORN_", "DATABASE_URL"))
            and k not in ("WEB_CONCURRENCY", "PORT", "BIND_HOST", "SECRET_KEY", "DEBUG")
        }
        env.update(
            PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", SECRET_KEY=self.secret_key, DEBUG="0"
        )
        return env

    def product(self) -> dict[str, str]:
        env = self._base()
        env.update(
            DJANGO_SETTINGS_MODULE="qstash_site.settings",
            DATABASE_URL=self.database_url(),
            QSTASH_TOKEN=self.token,
            QSTASH_CURRENT_SIGNING_KEY=self.current_key,
            QSTASH_NEXT_SIGNING_KEY=self.next_key,
            QSTASH_ALLOWED_HOSTS="127.0.0.1",
            QSTASH_ALLOWED_NETWORKS="127.0.0.0/8",
            QSTASH_DENIED_NETWORKS="0.0.0.0/0,::/0",
            CELERY_BROKER_URL=self.redis_url(PRODUCT_REDIS_DB),
            QSTASH_CELERY_QUEUE=QUEUE,
            LOG_LEVEL="WARNING",
            GUNICORN_LOG_LEVEL="warning",
        )
        if os.environ.get("BENCH_GROUP_COMMIT", "") == "1":
            env["QSTASH_PUBLISH_GROUP_COMMIT"] = "1"  # issue 10: the committer thread
        return env

    def baseline_web(self, settings_module: str) -> dict[str, str]:
        env = self._base()
        env.update(DJANGO_SETTINGS_MODULE=settings_module, GUNICORN_LOG_LEVEL="warning")
        return env

    def baseline_worker(self) -> dict[str, str]:
        env = self._base()
        env.update(BENCH_BASELINE_BROKER=self.redis_url(BASELINE_REDIS_DB))
        return env


# --- infrastructure -----------------------------------------------------------------


class Database:
    def __init__(self, env: Env) -> None:
        self.env = env
        self._conn: psycopg.Connection[Any] | None = None

    def _admin(self) -> psycopg.Connection[Any]:
        return psycopg.connect(dbname="postgres", autocommit=True, connect_timeout=5, **self.env.pg)

    def recreate(self) -> None:
        with self._admin() as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {BENCH_DB}")

    def drop(self) -> None:
        self.close()
        with self._admin() as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")

    def conn(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(
                dbname=BENCH_DB, autocommit=True, connect_timeout=5, **self.env.pg
            )
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def scalar(self, sql: str) -> int:
        row = self.conn().execute(sql).fetchone()
        return int(row[0]) if row else 0

    def purge(self) -> None:
        """Empty the message tables (and what hangs off them: logs, payloads, dedup ids)."""
        tables = [
            name
            for (name,) in self.conn().execute(
                "SELECT tablename FROM pg_tables"
                " WHERE tablename IN ('broker_message', 'broker_payload')"
            )
        ]
        # Requests still in flight when a load run stops may hold row locks: retry.
        for attempt in range(10):
            try:
                self.conn().execute("SET lock_timeout = '5s'")
                self.conn().execute(f"TRUNCATE {', '.join(tables)} CASCADE")
                return
            except (psycopg.errors.DeadlockDetected, psycopg.errors.LockNotAvailable):
                if attempt == 9:
                    raise
                time.sleep(0.5)

    def counts(self) -> tuple[int, int]:
        """(all messages, messages not DELIVERED)."""
        row = (
            self.conn()
            .execute(
                "SELECT count(*), count(*) FILTER (WHERE state <> 'DELIVERED') FROM broker_message"
            )
            .fetchone()
        )
        assert row is not None
        return int(row[0]), int(row[1])


def flush_redis(env: Env, db: int) -> None:
    client = redis.Redis(host=env.redis_host, port=env.redis_port, db=db, socket_timeout=5)
    try:
        client.flushdb()
    finally:
        client.close()


def queue_length(env: Env, db: int, queue: str) -> int:
    client = redis.Redis(host=env.redis_host, port=env.redis_port, db=db, socket_timeout=5)
    try:
        return int(client.llen(queue))  # type: ignore[arg-type]
    finally:
        client.close()


def run_step(
    what: str,
    argv: list[str],
    env: dict[str, str],
    deadline: Deadline,
    *,
    limit: float = 120.0,
) -> str:
    """Run one Python step from the repository root (at most ``limit`` seconds, 2 minutes
    unless said: growing a store takes longer); its stdout, or raise with its output."""
    out = subprocess.run(
        argv,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=max(10.0, min(limit, deadline.left())),
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{out.stdout}\n{out.stderr[-3000:]}")
    return out.stdout


def migrate(env: Env, deadline: Deadline) -> None:
    """``manage.py migrate`` on the benchmark database."""
    argv = [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"]
    run_step("migrate", argv, env.product(), deadline)


def start_sink(env: Env, deadline: Deadline) -> tuple[Proc, SinkClient]:
    proc = procs.start_piped(
        "sink", [sys.executable, "-m", "tests.bench.sink"], env=env.baseline_worker()
    )
    assert proc.popen.stdout is not None
    line = proc.popen.stdout.readline().decode().strip()  # the sink prints its port at once
    if not line.startswith("PORT "):
        raise RuntimeError(f"the sink did not start: {line!r}")
    port = int(line.split()[1])
    procs.wait_port(port, proc, deadline)
    return proc, SinkClient(port)


# The product and every baseline view get the same gunicorn: deploy/gunicorn.conf.py's
# worker class and threads (BENCH_WORKER_CLASS=sync|gthread overrides both sides alike,
# through the variable that file reads, so it picks the threads that go with it).
WEB_WORKERS = int(os.environ.get("BENCH_WEB_WORKERS", "4"))
WORKER_CLASS = os.environ.get("BENCH_WORKER_CLASS", "")


def start_gunicorn(
    name: str, app: str, env: dict[str, str], work: Path, deadline: Deadline
) -> tuple[Proc, int]:
    port = procs.free_port()
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        app,
        "-c",
        str(ROOT / "deploy" / "gunicorn.conf.py"),
        "--workers",
        str(WEB_WORKERS),
        "--bind",
        f"127.0.0.1:{port}",
    ]
    if WORKER_CLASS:
        env = {**env, "GUNICORN_WORKER_CLASS": WORKER_CLASS}
    proc = procs.start(name, argv, env=env, logdir=work)
    procs.wait_port(port, proc, deadline)
    return proc, port


def start_worker(name: str, app: str, queue: str, env: dict[str, str], work: Path) -> Proc:
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        app,
        "worker",
        "--concurrency",
        "2",
        "--pool",
        "prefork",
        "-O",
        "fair",
        "--prefetch-multiplier",
        "4",
        "-Q",
        queue,
        "--loglevel",
        "WARNING",
        "--hostname",
        f"{name}-{os.getpid()}@%h",
    ]
    return procs.start(name, argv, env=env, logdir=work)


def start_clock(env: dict[str, str], work: Path) -> Proc:
    return procs.start("clock", [sys.executable, "manage.py", "qstash_clock"], env=env, logdir=work)


def post_each(
    port: int, paths: list[str], headers: dict[str, str], body: bytes, gap: float
) -> list[float]:
    """POST to each path in turn over one kept-alive connection, as the SDKs do (httpx);
    the answer times in ms. A server that closes after each answer costs a reconnect."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    times = []
    try:
        for path in paths:
            t0 = time.perf_counter()
            conn.request("POST", path, body=body, headers=headers)
            resp = conn.getresponse()
            answer = resp.read()
            times.append((time.perf_counter() - t0) * 1000)
            if resp.status != 200:
                raise RuntimeError(f"POST {path} answered {resp.status}: {answer[:300]!r}")
            if resp.will_close:
                conn.close()
            time.sleep(gap)
    finally:
        conn.close()
    return times


def post(port: int, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def ensure_alive(*children: Proc) -> None:
    for child in children:
        if not child.alive():
            raise RuntimeError(
                f"{child.name} exited with {child.popen.returncode}:\n{child.tail()}"
            )


def wait_sink(
    sink: SinkClient, count: int, timeout: float, deadline: Deadline, children: list[Proc]
) -> dict[str, float]:
    end = time.monotonic() + timeout
    while True:
        stats = sink.stats()
        if stats["count"] >= count:
            return stats
        if time.monotonic() > end:
            raise RuntimeError(f"the sink received {stats['count']} of {count} in {timeout:.0f}s")
        deadline.check("waiting for deliveries")
        ensure_alive(*children)
        time.sleep(0.05)


def seed(
    env: Env,
    db: Database,
    sink: SinkClient,
    count: int,
    deadline: Deadline,
    *,
    service: int | None = None,
    what: str = "delivery product",
) -> int:
    """Store ``count`` due messages to the sink's ``/d``; return the hints queued.

    All go through the product's publish service, or only ``service`` of them and
    the rest are SQL copies (``seed.py``).
    """
    db.purge()
    flush_redis(env, PRODUCT_REDIS_DB)
    argv = [sys.executable, "-m", "tests.bench.seed", "--count", str(count)]
    argv += ["--url", sink.url("/d")]
    if service is not None:
        argv += ["--service", str(service)]
    stdout = run_step("seeding", argv, env.product(), deadline)
    seeded = json.loads(stdout.strip().splitlines()[-1])
    total, pending = db.counts()
    if total != count or pending != count:
        raise RuntimeError(f"seeded {total} messages ({pending} pending), wanted {count}")
    hints = queue_length(env, PRODUCT_REDIS_DB, QUEUE)
    how = "published" if service is None or service >= count else f"stored ({service} published)"
    log(f"{what}: {count} messages {how} in {seeded['seconds']}s, {hints} hints")
    return hints
