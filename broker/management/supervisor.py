"""The children of ``make run`` (web, worker, clock), kept running the way systemd keeps the units.

A child that dies unexpectedly is started again at once, with a line saying so:
one crash (a hint file read at the wrong moment, a broker that went away) must not
leave a half-alive server, nor take the whole server down. A child that keeps
dying (``max_restarts`` exits within ``window`` seconds: a port in use, a broken
settings file) is broken, not unlucky: the supervisor then gives up, naming it,
and the caller stops everything and exits non-zero.

Children stay in the supervisor's process group, so Ctrl-C in the terminal and a
kill of the group reach all of them, even if the supervisor itself is gone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

MAX_RESTARTS = 5
RESTART_WINDOW_SECONDS = 60.0
# A Celery worker's warm shutdown takes 6-10 s on the filesystem transport, even idle:
# wait that out rather than kill it (and its pool process) every time.
STOP_GRACE_SECONDS = 20.0


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with code {returncode}"


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    # When it last exited unexpectedly, within the window only.
    exits: deque[float] = field(default_factory=deque)


class GaveUp(Exception):
    """A child died too often in too short a time."""

    def __init__(self, child: str, message: str) -> None:
        super().__init__(message)
        self.child = child


class Supervisor:
    def __init__(
        self,
        commands: Mapping[str, list[str]],
        *,
        env: Mapping[str, str],
        cwd: Path | str,
        say: Callable[[str], None],
        max_restarts: int = MAX_RESTARTS,
        window: float = RESTART_WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.children = [Child(name, list(argv)) for name, argv in commands.items()]
        self.env, self.cwd, self.say = dict(env), cwd, say
        self.max_restarts, self.window, self.clock = max_restarts, window, clock
        # Set from a signal handler: a child that exits from then on is not restarted.
        self.stopping = False

    def _spawn(self, child: Child) -> None:
        child.proc = subprocess.Popen(child.argv, env=self.env, cwd=self.cwd)  # noqa: S603
        self.say(f"{child.name} started (pid {child.proc.pid})")

    def start(self) -> None:
        for child in self.children:
            self._spawn(child)

    def check(self) -> None:
        """Restart every child that has exited; raise ``GaveUp`` for one that keeps exiting."""
        for child in self.children:
            if self.stopping:
                return
            if child.proc is None or (code := child.proc.poll()) is None:
                continue
            now = self.clock()
            child.exits.append(now)
            while child.exits and now - child.exits[0] > self.window:
                child.exits.popleft()
            what = f"{child.name} {describe_exit(code)}"
            if len(child.exits) > self.max_restarts:
                raise GaveUp(
                    child.name,
                    f"{what} ({len(child.exits)} exits within {self.window:g} s); giving up",
                )
            self.say(f"{what}; restarting")
            self._spawn(child)

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """SIGTERM to every child still running, then SIGKILL to what outlives ``grace``."""
        self.stopping = True
        running = [c.proc for c in self.children if c.proc is not None and c.proc.poll() is None]
        for proc in running:
            proc.terminate()
        deadline = time.monotonic() + grace
        for proc in running:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                # Its own children (a prefork pool, gunicorn workers) go too: once
                # their parent is gone nobody would stop them.
                doomed = descendants(proc.pid)
                proc.kill()
                proc.wait()
                for pid in doomed:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, from ``/proc`` (Linux); none where there is no ``/proc``."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        for children in Path(f"/proc/{parent}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                kids = [int(kid) for kid in children.read_text().split()]
                found.extend(kids)
                todo.extend(kids)
    return found
