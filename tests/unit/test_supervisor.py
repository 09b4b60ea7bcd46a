"""``make run``'s supervisor: a dead child is restarted; one that keeps dying stops everything."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.management.supervisor import GaveUp, Supervisor, describe_exit
from tests.conftest import wait_until

EXITS_3 = [sys.executable, "-c", "import sys; sys.exit(3)"]
SLEEPS = [sys.executable, "-c", "import time; time.sleep(60)"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def said() -> list[str]:
    return []


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def supervisor(said: list[str], clock: Clock) -> Iterator[Supervisor]:
    sup = Supervisor(
        {"worker": EXITS_3, "web": SLEEPS},
        env={},
        cwd=".",
        say=said.append,
        max_restarts=2,
        window=60,
        clock=clock,
    )
    sup.start()
    yield sup
    sup.stop(grace=5)


def _wait_for_worker_exit(sup: Supervisor) -> None:
    [worker] = [c for c in sup.children if c.name == "worker"]
    assert worker.proc is not None
    worker.proc.wait(30)


def test_a_child_that_exits_is_restarted_with_a_line_saying_so(
    supervisor: Supervisor, said: list[str]
) -> None:
    _wait_for_worker_exit(supervisor)
    supervisor.check()
    first_start, _, restarting, second_start = said
    assert restarting == "worker exited with code 3; restarting"
    assert second_start.startswith("worker started (pid ")
    assert second_start != first_start  # a new process
    [web] = [c for c in supervisor.children if c.name == "web"]
    assert web.proc is not None and web.proc.poll() is None  # the others are left alone


def test_a_child_that_keeps_exiting_makes_the_supervisor_give_up_naming_it(
    supervisor: Supervisor, clock: Clock
) -> None:
    for _ in range(2):
        _wait_for_worker_exit(supervisor)
        supervisor.check()
        clock.now += 10
    _wait_for_worker_exit(supervisor)
    with pytest.raises(GaveUp) as gave_up:
        supervisor.check()
    assert gave_up.value.child == "worker"
    assert str(gave_up.value) == "worker exited with code 3 (3 exits within 60 s); giving up"


def test_exits_further_apart_than_the_window_never_add_up(
    supervisor: Supervisor, clock: Clock, said: list[str]
) -> None:
    for _ in range(5):
        _wait_for_worker_exit(supervisor)
        supervisor.check()
        clock.now += 31  # at most two exits in any 60 s
    assert said.count("worker exited with code 3; restarting") == 5


def test_nothing_is_restarted_once_stopping(supervisor: Supervisor, said: list[str]) -> None:
    supervisor.stopping = True
    _wait_for_worker_exit(supervisor)
    supervisor.check()
    assert len(said) == 2  # the two start lines only


# Ignores SIGTERM, like a worker stuck in its warm shutdown, and has a child of its own
# (a pool process) that ignores it too; writes that child's pid to argv[1] when ready.
STUCK_WITH_A_CHILD = [
    sys.executable,
    "-c",
    "import signal, subprocess, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
    "open(sys.argv[1], 'w').write(str(child.pid))\n"
    "time.sleep(60)\n",
]


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"  # dead, not yet reaped


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_a_child_that_outlives_the_grace_is_killed_with_its_own_children(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    sup = Supervisor(
        {"worker": [*STUCK_WITH_A_CHILD, str(pid_file)]}, env={}, cwd=".", say=lambda _: None
    )
    sup.start()
    grandchild = int(wait_until(lambda: pid_file.exists() and pid_file.read_text(), what="ready"))
    sup.stop(grace=0.5)
    [worker] = sup.children
    assert worker.proc is not None and worker.proc.returncode == -signal.SIGKILL
    wait_until(lambda: _gone(grandchild), timeout=10, what="the pool process to be killed")


@pytest.mark.parametrize(
    ("returncode", "text"),
    [
        (1, "exited with code 1"),
        (0, "exited with code 0"),
        (-signal.SIGKILL, "was killed by SIGKILL"),
        (-200, "was killed by signal 200"),
    ],
)
def test_exits_are_described_as_a_person_would(returncode: int, text: str) -> None:
    assert describe_exit(returncode) == text
