"""The production stack of one scenario, on private infrastructure, under a supervisor.

``Infra`` owns the private PostgreSQL cluster and redis-server (``tests/faults.py``)
for the whole run; ``Stack`` serves the product on them the production way for one
scenario: gunicorn with ``deploy/gunicorn.conf.py``, one Celery worker, the clock
(``manage.py qstash_clock``). Each runs in its own process group (``tests/bench/procs``),
so a fault kills a whole group and cleanup always stops every one.

A supervisor thread plays systemd (``Restart=always``, ``RestartSec=2`` as in
``deploy/systemd/``): a process that exits is started again after two seconds,
and every exit is counted, whether a fault caused it or it happened on its own.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import redis

from tests.bench import procs
from tests.bench.procs import ROOT, Deadline, Proc
from tests.chaos.receiver import ReceiverClient
from tests.faults import PostgresCluster, RedisServer

# As deploy/systemd/qstash-*.service.
RESTART_SECONDS = 2.0
WEB_WORKERS = 2
PENDING_STATES = ("CREATED", "ACTIVE", "RETRY")


def log(text: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {text}", flush=True)


def _secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(30)


@dataclass
class Credentials:
    token: str = field(default_factory=lambda: _secret("chaos-token-"))
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(50))
    current_key: str = field(default_factory=lambda: _secret("sig_"))
    next_key: str = field(default_factory=lambda: _secret("sig_"))


class Infra:
    """The private PostgreSQL cluster and redis-server of the whole run."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.creds = Credentials()
        self.postgres = PostgresCluster()
        self.redis = RedisServer()

    def start(self, deadline: Deadline) -> None:
        self.postgres.start()
        self.redis.start()
        argv = [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"]
        done = subprocess.run(
            argv,
            cwd=ROOT,
            env=self.product_env(),
            capture_output=True,
            text=True,
            timeout=max(10.0, min(180.0, deadline.left())),
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"migrate failed:\n{done.stdout}\n{done.stderr[-3000:]}")

    @property
    def admin_url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.postgres.port}/postgres"

    def product_env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            # Nothing of the caller's settings leaks in (DEBUG in particular stays unset).
            if not k.startswith(("DJANGO_", "QSTASH_", "CELERY_", "GUNICORN_", "DATABASE_URL"))
            and k not in ("WEB_CONCURRENCY", "PORT", "BIND_HOST", "SECRET_KEY", "DEBUG")
        }
        env.update(
            PYTHONPATH=str(ROOT),
            PYTHONUNBUFFERED="1",
            DJANGO_SETTINGS_MODULE="qstash_site.settings",
            DATABASE_URL=self.postgres.url,
            CELERY_BROKER_URL=self.redis.url,
            SECRET_KEY=self.creds.secret_key,
            QSTASH_TOKEN=self.creds.token,
            QSTASH_CURRENT_SIGNING_KEY=self.creds.current_key,
            QSTASH_NEXT_SIGNING_KEY=self.creds.next_key,
            QSTASH_ALLOWED_HOSTS="127.0.0.1",
            QSTASH_ALLOWED_NETWORKS="127.0.0.0/8",
            QSTASH_DENIED_NETWORKS="0.0.0.0/0,::/0",
            LOG_LEVEL="INFO",
            GUNICORN_LOG_LEVEL="warning",
        )
        return env

    def reset(self) -> None:
        """Empty the message tables and the broker between scenarios."""
        with psycopg.connect(self.postgres.url, autocommit=True, connect_timeout=5) as conn:
            conn.execute("SET lock_timeout = '10s'")
            conn.execute("TRUNCATE broker_message, broker_payload CASCADE")
        client = redis.Redis.from_url(self.redis.url, socket_timeout=5)
        try:
            client.flushall()
        finally:
            client.close()

    def keep_logs(self) -> None:
        """Copy the servers' logs next to the product's before their directories go."""
        for source, name in ((self.postgres.log, "postgres.log"), (self.redis.log, "redis.log")):
            if source.exists():
                shutil.copyfile(source, self.logdir / name)

    def close(self) -> None:
        try:
            self.keep_logs()
        finally:
            try:
                self.redis.close()
            finally:
                self.postgres.close()


class Service:
    """One product process (web, worker or clock), started again by the supervisor."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], logdir: Path) -> None:
        self.name, self.argv, self.env, self.logdir = name, argv, env, logdir
        self.proc: Proc | None = None
        self.lock = threading.Lock()
        self.killed_on_purpose = 0  # exits a fault caused, not yet seen by the supervisor

    def start(self) -> None:
        self.proc = procs.start(self.name, self.argv, env=self.env, logdir=self.logdir)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.alive()

    def kill(self) -> None:
        """SIGKILL the whole process group (a prefork worker's children, gunicorn's workers)."""
        with self.lock:
            assert self.proc is not None
            self.killed_on_purpose += 1
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.popen.wait(10)

    def stop(self, grace: float = 15.0) -> None:
        """As systemd's ``KillMode=mixed``: SIGTERM to the main process (a warm shutdown),
        then SIGKILL to whatever is left of the group."""
        with self.lock:
            proc = self.proc
            if proc is None:
                return
            with contextlib.suppress(ProcessLookupError):
                proc.popen.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(grace)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            procs.stop(proc)  # reaps it and unregisters it


class Stack:
    """web + worker + clock for one scenario, supervised."""

    def __init__(self, infra: Infra, logdir: Path) -> None:
        self.infra = infra
        self.logdir = logdir
        self.port = procs.free_port()
        env = infra.product_env()
        py = sys.executable
        self.web = Service(
            "web",
            [
                py, "-m", "gunicorn", "qstash_site.wsgi",
                "-c", str(ROOT / "deploy" / "gunicorn.conf.py"),
                "--workers", str(WEB_WORKERS),
                "--bind", f"127.0.0.1:{self.port}",
            ],
            env,
            logdir,
        )  # fmt: skip
        self.worker = Service(
            "worker",
            [
                py, "-m", "celery", "-A", "qstash_site", "worker",
                "--concurrency", "2", "-O", "fair", "--without-gossip", "--without-mingle",
                "--loglevel", "WARNING", "--hostname", f"chaos-{os.getpid()}@%h",
            ],
            env,
            logdir,
        )  # fmt: skip
        self.clock = Service("clock", [py, "manage.py", "qstash_clock"], env, logdir)
        self.services = (self.web, self.worker, self.clock)
        self.exits: Counter[str] = Counter()  # every exit the supervisor saw
        self.unexpected: Counter[str] = Counter()  # exits no fault of ours caused
        self.events: list[str] = []
        self._stop = threading.Event()
        self._supervisor: threading.Thread | None = None
        self.t0 = time.monotonic()

    def note(self, text: str) -> None:
        self.events.append(f"{time.monotonic() - self.t0:6.1f}s {text}")
        log(text)

    def start(self, deadline: Deadline) -> None:
        for service in self.services:
            service.start()
        assert self.web.proc is not None
        procs.wait_port(self.port, self.web.proc, deadline, timeout=60)
        self._supervisor = threading.Thread(target=self._supervise, name="supervisor", daemon=True)
        self._supervisor.start()

    def _supervise(self) -> None:
        """Notice every exit at once; start the process again RESTART_SECONDS later."""
        restart_at: dict[str, float] = {}
        while not self._stop.wait(0.1):
            for service in self.services:
                with service.lock:
                    proc = service.proc
                    if proc is None:
                        due = restart_at.get(service.name)
                        if due is not None and time.monotonic() >= due:
                            service.start()
                            del restart_at[service.name]
                            self.note(f"{service.name} restarted")
                        continue
                    if proc.alive():
                        continue
                    code = proc.popen.returncode
                    self.exits[service.name] += 1
                    if service.killed_on_purpose:
                        service.killed_on_purpose -= 1
                        why = "killed by the fault"
                    else:
                        self.unexpected[service.name] += 1
                        why = f"exited on its own with {code}"
                    # Whatever is left of its group (prefork children, gunicorn workers).
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    procs.stop(proc)  # unregisters it
                    service.proc = None
                    restart_at[service.name] = time.monotonic() + RESTART_SECONDS
                self.note(f"{service.name} {why}; restarting in {RESTART_SECONDS:.0f}s")

    def wait_restarted(self, service: Service, exits_before: int, deadline: Deadline) -> float:
        """Until the supervisor has started ``service`` again (web: until it serves); seconds."""
        began = time.monotonic()
        end = began + 60
        while True:
            deadline.check(f"waiting for the {service.name} to come back")
            if time.monotonic() > end:
                raise RuntimeError(f"the {service.name} did not come back\n{self.tails()}")
            restarted = self.exits[service.name] > exits_before and service.alive()
            if restarted and (service is not self.web or self.serving()):
                return time.monotonic() - began
            time.sleep(0.05)

    def serving(self) -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
        try:
            conn.request("GET", "/healthz")
            return conn.getresponse().status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        if self._supervisor is not None:
            self._supervisor.join(timeout=RESTART_SECONDS + 5)
        for service in reversed(self.services):
            service.stop()

    def tails(self) -> str:
        parts = []
        for service in self.services:
            path = self.logdir / f"{service.name}.log"
            try:
                lines = path.read_text(errors="replace").splitlines()[-15:]
            except OSError:
                lines = []
            parts.append(f"--- {path} (last lines)\n" + "\n".join(lines))
        return "\n".join(parts)


class Database:
    """The orchestrator's queries, reconnecting across a PostgreSQL restart."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: psycopg.Connection[Any] | None = None

    def _query(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        last: Exception | None = None
        for _ in range(20):
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
                return list(self._conn.execute(sql, params).fetchall())
            except psycopg.OperationalError as exc:
                last = exc
                self.close()
                time.sleep(0.5)
        raise RuntimeError(f"the private PostgreSQL is unreachable: {last}")

    def pending(self) -> int:
        rows = self._query(
            "SELECT count(*) FROM broker_message WHERE state = ANY(%s)", [list(PENDING_STATES)]
        )
        return int(rows[0][0])

    def states(self, ids: list[str]) -> dict[str, tuple[str, bool]]:
        """Message id -> (state, has a DLQ entry), for the ids that exist."""
        rows = self._query(
            "SELECT m.message_id, m.state, d.id IS NOT NULL FROM broker_message m"
            " LEFT JOIN broker_dlqentry d ON d.message_id = m.id"
            " WHERE m.message_id = ANY(%s)",
            [ids],
        )
        return {str(r[0]): (str(r[1]), bool(r[2])) for r in rows}

    def history(self, ids: list[str]) -> dict[str, list[tuple[str, float]]]:
        """Message id -> its log rows (state, unix time), in order."""
        rows = self._query(
            "SELECT m.message_id, l.state, extract(epoch FROM l.time)::float8"
            " FROM broker_logentry l JOIN broker_message m ON m.id = l.message_id"
            " WHERE m.message_id = ANY(%s) ORDER BY l.time, l.id",
            [ids],
        )
        out: dict[str, list[tuple[str, float]]] = {}
        for message_id, state, when in rows:
            out.setdefault(str(message_id), []).append((str(state), float(when)))
        return out

    def last_delivered_before(self, when: float) -> float | None:
        """The unix time of the last DELIVERED log row written before ``when``."""
        rows = self._query(
            "SELECT extract(epoch FROM max(time))::float8 FROM broker_logentry"
            " WHERE state = 'DELIVERED' AND time < to_timestamp(%s)",
            [when],
        )
        return float(rows[0][0]) if rows and rows[0][0] is not None else None

    def delivery_times(self) -> dict[str, tuple[float, float]]:
        """Delivered message id -> (send returned, outcome flush began), unix times.

        The DELIVERED log row is stamped when the attempt came back; the message's
        ``finished_at`` when the recorder's transaction began.
        """
        rows = self._query(
            "SELECT m.message_id, extract(epoch FROM max(l.time))::float8,"
            " extract(epoch FROM m.finished_at)::float8"
            " FROM broker_message m JOIN broker_logentry l"
            " ON l.message_id = m.id AND l.state = 'DELIVERED'"
            " WHERE m.state = 'DELIVERED' GROUP BY m.message_id, m.finished_at"
        )
        return {str(r[0]): (float(r[1]), float(r[2])) for r in rows}

    def total(self) -> int:
        return int(self._query("SELECT count(*) FROM broker_message")[0][0])

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None


def start_receiver(deadline: Deadline, logdir: Path) -> tuple[Proc, ReceiverClient]:
    proc = procs.start_piped(
        "receiver", [sys.executable, "-m", "tests.chaos.receiver"], env=dict(os.environ)
    )
    assert proc.popen.stdout is not None
    line = proc.popen.stdout.readline().decode().strip()  # printed as soon as it listens
    if not line.startswith("PORT "):
        raise RuntimeError(f"the receiver did not start: {line!r}")
    port = int(line.split()[1])
    procs.wait_port(port, proc, deadline)
    return proc, ReceiverClient(port)
