"""Opt-in diagnosis (``CHAOS_PG_LOG_STATEMENTS=1``): where the outcome recorder's time goes.

With every statement logged with its duration (``log_min_duration_statement = 0``), each
transaction of the worker's recorder (the one that locks ``claim_token`` rows ``FOR
UPDATE`` and commits DELIVERED/RETRY/FAILED) can be timed two ways: its wall time, from
its first statement's start to its COMMIT's end, and the time PostgreSQL spent on its
statements. The difference is spent in the worker process between round trips.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import psycopg

ENTRY = re.compile(
    r"^\d{4}-\d\d-\d\d (\d+):(\d+):([\d.]+) \S+ \[(\d+)\] LOG:  duration: ([\d.]+) ms"
    r"  (?:statement|execute [^:]*): (.*?)(?=^\d{4}-\d\d-\d\d |\Z)",
    re.S | re.M,
)
RECORDER_MARK = '"claim_token" AS "claim_token"'


def enable(admin_url: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET log_min_duration_statement = 0")
        conn.execute("ALTER SYSTEM SET log_line_prefix = '%m [%p] '")
        conn.execute("SELECT pg_reload_conf()")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def recorder_transactions(log: Path) -> str:
    """One line: the recorder's transactions, wall time against time inside PostgreSQL."""
    by_pid: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    for m in ENTRY.finditer(log.read_text(errors="replace")):
        hours, minutes, seconds, pid, duration, statement = m.groups()
        end = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
        by_pid[pid].append((end, float(duration), statement))
    wall: list[float] = []
    inside: list[float] = []
    for entries in by_pid.values():
        began: float | None = None
        busy = 0.0
        is_recorder = False
        for end, duration, statement in entries:
            if statement.startswith("BEGIN"):
                began, busy, is_recorder = end - duration / 1000, 0.0, False
            if began is None:
                continue
            busy += duration
            is_recorder = is_recorder or RECORDER_MARK in statement
            if statement.startswith(("COMMIT", "ROLLBACK")):
                if is_recorder:
                    wall.append((end - began) * 1000)
                    inside.append(busy)
                began = None
    if not wall:
        return "recorder transactions: none found in the statement log"
    return (
        f"recorder transactions: {len(wall)}; wall (BEGIN..COMMIT) p50 {_pct(wall, 0.5):.1f} "
        f"p90 {_pct(wall, 0.9):.1f} max {max(wall):.1f} ms; inside PostgreSQL p50 "
        f"{_pct(inside, 0.5):.1f} p90 {_pct(inside, 0.9):.1f} max {max(inside):.1f} ms"
    )
