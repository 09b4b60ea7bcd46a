"""Subprocesses of a benchmark run: started in their own session, always stopped.

Every child is registered; ``stop_all`` (called from ``finally``, ``atexit`` and the
signal handlers) terminates each process group, then kills what is left. Output
goes to a log file per process so a failure can show its tail.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class Deadline:
    """The whole run's time budget; every wait checks it."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def check(self, what: str) -> None:
        if self.left() <= 0:
            raise TimeoutError(f"benchmark time budget exhausted while {what}")


class Proc:
    def __init__(self, name: str, popen: subprocess.Popen[bytes], log: Path) -> None:
        self.name, self.popen, self.log = name, popen, log

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 25) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    def stop(self, grace: float = 8.0) -> None:
        if self.popen.poll() is not None:
            return
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(grace)
        # Whatever is left of the group (prefork children, gunicorn workers).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)


_running: list[Proc] = []


def start(name: str, argv: list[str], *, env: dict[str, str], logdir: Path) -> Proc:
    log = logdir / f"{name}.log"
    with log.open("ab") as out:
        popen = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as a whole
        )
    proc = Proc(name, popen, log)
    _running.append(proc)
    return proc


def start_piped(name: str, argv: list[str], *, env: dict[str, str]) -> Proc:
    """Like ``start`` but with stdout readable (for children that print their port)."""
    popen = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    proc = Proc(name, popen, Path(os.devnull))
    _running.append(proc)
    return proc


def stop(proc: Proc) -> None:
    proc.stop()
    if proc in _running:
        _running.remove(proc)


def stop_all() -> None:
    while _running:
        stop(_running[-1])


def install_cleanup() -> None:
    atexit.register(stop_all)

    def on_signal(signum: int, _frame: object) -> None:
        # Unwind through every ``finally`` (which stops the children), then exit.
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    # Ctrl-C raises KeyboardInterrupt even if the shell started us with SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, proc: Proc, deadline: Deadline, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        deadline.check(f"starting {proc.name}")
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{proc.name} did not listen on {port} within {timeout}s:\n{proc.tail()}")


def python() -> list[str]:
    return [sys.executable]
