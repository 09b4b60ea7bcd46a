"""Resident memory of benchmark processes, sampled from ``/proc`` while they work.

``RssSampler({"worker": pid, "clock": pid})`` follows each root and its
descendants (the prefork children of a Celery worker), reading ``VmRSS`` from
``/proc/<pid>/status`` every ``interval`` seconds in a daemon thread, and keeps
the first, peak and last reading of each process. Linux only; elsewhere it
reports nothing.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass
class Rss:
    """KiB: first reading, the peak, the last reading, and how many readings."""

    first: int
    peak: int
    last: int
    samples: int = 1

    def add(self, kib: int) -> None:
        self.peak = max(self.peak, kib)
        self.last = kib
        self.samples += 1


def rss_kib(pid: int) -> int | None:
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None  # a zombie has no VmRSS


def children_of() -> dict[int, list[int]]:
    """ppid -> pids, for every process visible in /proc."""
    tree: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            tree.setdefault(int(fields[1]), []).append(int(entry.name))
    return tree


def descendants(root: int, tree: dict[int, list[int]]) -> list[int]:
    found, todo = [], list(tree.get(root, []))
    while todo:
        pid = todo.pop(0)
        found.append(pid)
        todo += tree.get(pid, [])
    return sorted(found)


class RssSampler:
    def __init__(self, roots: dict[str, int], interval: float = 0.5) -> None:
        self.roots = roots
        self.interval = interval
        self.seen: dict[str, Rss] = {}
        self._labels: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sample()

    def _label(self, name: str, pid: int, child: bool) -> str:
        if pid not in self._labels:
            if child:
                n = sum(1 for label in self._labels.values() if label.startswith(name + " child"))
                self._labels[pid] = f"{name} child {n + 1}"
            else:
                self._labels[pid] = name
        return self._labels[pid]

    def sample(self) -> None:
        if not PROC.is_dir():
            return
        tree = children_of()
        for name, root in self.roots.items():
            pids = [(root, False)] + [(pid, True) for pid in descendants(root, tree)]
            for pid, child in pids:
                kib = rss_kib(pid)
                if kib is None:
                    continue
                label = self._label(name, pid, child)
                if label in self.seen:
                    self.seen[label].add(kib)
                else:
                    self.seen[label] = Rss(kib, kib, kib)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()
