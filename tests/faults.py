"""Infrastructure a fault test may break: its own PostgreSQL cluster and its own redis-server.

The PostgreSQL and Redis on 127.0.0.1:5432/6379 serve every other test run on the
machine, so a test that stops, kills or restarts the database or the broker starts
private copies instead, on free loopback ports, with their data in a temporary
directory that is removed afterwards. Both are context managers, so a fixture is
three lines::

    @pytest.fixture
    def own_postgres() -> Iterator[PostgresCluster]:
        with PostgresCluster() as cluster:  # started, migrated by nobody
            yield cluster

    cluster.url                        # postgres://postgres@127.0.0.1:<port>/qstash
    cluster.stop()                     # pg_ctl stop -m immediate: a crash, no goodbye
    cluster.stop(immediate=False)      # a clean shutdown (-m fast)
    cluster.start()                    # same port, same data
    cluster.restart()                  # stop(immediate=True), then start()

    with RedisServer() as broker:      # redis-server --save '' on a free port
        broker.url                     # redis://127.0.0.1:<port>/0
        broker.stop()                  # SIGKILL; stop(immediate=False) is SHUTDOWN NOSAVE
        broker.restart()

Leaving the ``with`` block stops the server whatever state it is in. A restart keeps
the port, so clients configured with ``url`` reconnect to the same address.

PostgreSQL refuses to run as root: when the tests run as root the cluster is created
and run as the ``postgres`` user through ``runuser``. The cluster trusts loopback
connections and runs with ``fsync=off``: it exists for one test.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import psycopg
from psycopg import sql

START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _postgres_bin() -> Path:
    """The newest installed server's bin directory (pg_ctl is not on PATH on Debian)."""
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path).resolve().parent
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if not found:
        raise RuntimeError("no PostgreSQL server binaries (pg_ctl) found")
    return Path(found[-1]).parent


class PostgresCluster:
    """A throwaway PostgreSQL cluster on its own port, owned by one test."""

    def __init__(self, *, dbname: str = "qstash", port: int | None = None) -> None:
        self.dbname = dbname
        self.port = port or free_port()
        self.bin = _postgres_bin()
        self._as_postgres = os.geteuid() == 0
        self.dir = Path(tempfile.mkdtemp(prefix="qstash-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self._initialised = False
        if self._as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{self.dbname}"

    def _run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", "postgres", "--"] if self._as_postgres else []
        return subprocess.run(
            [*prefix, *argv], capture_output=True, text=True, check=True, timeout=60
        )

    def _pg_ctl(self, *args: str) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), *args)

    def start(self) -> None:
        """Create the cluster on first use, start it and wait until it accepts connections."""
        if not self._initialised:
            self._run(
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            )
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.dir}"
            # No fsync (a test never outlives the machine), but commits are durable across
            # a crash of PostgreSQL itself: a crash test must not lose answered writes.
            " -c fsync=off -c full_page_writes=off"
        )
        # -w waits until the server accepts connections (or fails, with the log to read).
        try:
            self._pg_ctl(
                "start", "-w", "-t", str(int(START_TIMEOUT)), "-l", str(self.log), "-o", options
            )
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(f"PostgreSQL did not start:\n{self.log_tail()}") from exc
        if not self._initialised:
            with psycopg.connect(
                f"postgres://postgres@127.0.0.1:{self.port}/postgres", autocommit=True
            ) as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.dbname)))
            self._initialised = True

    def stop(self, *, immediate: bool = True) -> None:
        """Stop the server; ``immediate`` aborts every session as a crash would."""
        if not self.running():
            return
        self._pg_ctl("stop", "-w", "-m", "immediate" if immediate else "fast")

    def restart(self, *, immediate: bool = True) -> None:
        self.stop(immediate=immediate)
        self.start()

    def running(self) -> bool:
        if not (self.data / "PG_VERSION").exists():
            return False
        prefix = ["runuser", "-u", "postgres", "--"] if self._as_postgres else []
        status = subprocess.run(
            [*prefix, str(self.bin / "pg_ctl"), "-D", str(self.data), "status"],
            capture_output=True,
            check=False,
            timeout=30,
        )
        return status.returncode == 0

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def close(self) -> None:
        """Stop the server (a crash is fine: the data is thrown away) and remove its files."""
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self.stop(immediate=True)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class RedisServer:
    """A throwaway redis-server without persistence on its own port, owned by one test."""

    def __init__(self, *, port: int | None = None, db: int = 0) -> None:
        self.port = port or free_port()
        self.db = db
        self.dir = Path(tempfile.mkdtemp(prefix="qstash-redis-"))
        self.log = self.dir / "redis.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/{self.db}"

    def start(self) -> None:
        """Start redis-server (empty: nothing is saved) and wait until it answers."""
        if self.running():
            return
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        argv = [
            binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.dir),
            "--logfile", str(self.log),
        ]  # fmt: skip
        self.proc = subprocess.Popen(  # noqa: S603
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not _port_open(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start:\n{self.log_tail()}")
            time.sleep(0.05)

    def stop(self, *, immediate: bool = True) -> None:
        """Stop the server: SIGKILL (``immediate``, a crash) or SIGTERM (clean, no save)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGKILL if immediate else signal.SIGTERM)
        try:
            self.proc.wait(START_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def restart(self, *, immediate: bool = True) -> None:
        self.stop(immediate=immediate)
        self.start()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def close(self) -> None:
        self.stop(immediate=True)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
