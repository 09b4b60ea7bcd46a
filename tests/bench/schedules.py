"""Schedules in ``make bench``: a hundred thousand schedules due at the same minute.

1. Creating schedules through the API (``POST /v2/schedules/<url>`` with one cron)
   for ``SCHED_API_SECONDS`` under the publish load tool: schedules/s, and the time
   100,000 would take at that rate.
2. The store is filled up to ``SCHED_COUNT`` schedules with SQL copies of those
   (fresh ids, the same options), all due at one minute ``T`` a few minutes ahead.
3. With the clock running (and no worker, so nothing is delivered meanwhile), the
   messages each trigger makes are counted every 0.2 s until ``T`` + 5 s: when the
   last one became visible, relative to ``T``, and the spread of ``created_at - T``
   over all of them (negative: made ahead of the minute, due at it). Target: every
   message made by ``T`` + 1 s, exactly one per schedule.
"""

from __future__ import annotations

import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.bench import procs
from tests.bench.infra import Database, Deadline, Env, log, pct
from tests.bench.load import LoadResult
from tests.bench.procs import Proc
from tests.bench.sink import SinkClient

SCHED_COUNT = int(os.environ.get("BENCH_SCHED_COUNT", "100000"))
SCHED_API_SECONDS = float(os.environ.get("BENCH_SCHED_API_SECONDS", "5"))

RunLoad = Callable[[int, str, dict[str, str], float, Path, bytes], LoadResult]


@dataclass
class SchedulesResult:
    api_rate: float  # schedules created per second through the API
    count: int  # schedules due at the minute
    made: int  # messages made for that minute
    distinct: int  # schedules with a message for that minute
    last_visible_s: float  # when the last message became visible, seconds after T
    skew_s: list[float]  # created_at - T for every message, seconds


def bench_schedules(
    env: Env,
    db: Database,
    sink: SinkClient,
    web_port: int,
    children: list[Proc],
    deadline: Deadline,
    run_load: RunLoad,
) -> SchedulesResult:
    """``children`` are stopped; a clock of its own runs the triggers."""
    for child in children:
        procs.stop(child)
    db.purge()
    conn = db.conn()
    conn.execute("TRUNCATE broker_schedule")
    now = datetime.now(UTC)
    # Far enough ahead that the API run and the SQL copies are done before the
    # lookahead (120 s by default) reaches the minute.
    minute = (now + timedelta(seconds=150)).replace(second=0, microsecond=0) + timedelta(minutes=1)
    cron = f"{minute.minute} {minute.hour} * * *"
    headers = {
        "Authorization": f"Bearer {env.token}",
        "Upstash-Cron": cron,
        "Content-Type": "application/json",
    }
    path = "/v2/schedules/" + sink.url("/sched")
    result = run_load(web_port, path, headers, SCHED_API_SECONDS, env.workdir, b'{"s":1}')
    made_by_api = db.scalar("SELECT count(*) FROM broker_schedule")
    api_rate = made_by_api / result.seconds if result.seconds else 0.0
    log(f"schedules: {made_by_api} created through the API in {result.seconds:.1f}s")
    copies = max(0, SCHED_COUNT - made_by_api)
    columns = [
        name
        for (name,) in conn.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_name = 'broker_schedule' ORDER BY ordinal_position"
        )
        if name not in ("id", "schedule_id")
    ]
    listed = ", ".join(columns)
    # Built from the catalogue only, never from input.
    conn.execute(
        f"INSERT INTO broker_schedule ({listed}, schedule_id)"  # noqa: S608
        f" SELECT {listed}, 'scd_bench' || g FROM broker_schedule"
        " CROSS JOIN generate_series(1, %s) g WHERE id = (SELECT min(id) FROM broker_schedule)",
        [copies],
    )
    conn.execute("ANALYZE broker_schedule")
    count = db.scalar("SELECT count(*) FROM broker_schedule")
    log(f"schedules: {count} due at {minute:%H:%M} UTC; waiting for their minute")
    clock = procs.start(
        "clock-schedules",
        [sys.executable, "manage.py", "qstash_clock"],
        env=env.product(),
        logdir=env.workdir,
    )
    try:
        last_change = time.time()
        seen = 0
        while time.time() < minute.timestamp() + 5:
            deadline.check("waiting for the schedules' minute")
            visible = db.scalar(
                "SELECT count(*) FROM broker_message WHERE scheduled_for IS NOT NULL"
            )
            if visible != seen:
                seen, last_change = visible, time.time()
            time.sleep(0.2)
        rows = conn.execute(
            "SELECT extract(epoch FROM created_at - scheduled_for)::float8, schedule_id"
            " FROM broker_message WHERE scheduled_for = %s",
            [minute],
        ).fetchall()
    finally:
        procs.stop(clock)
    skew = [float(r[0]) for r in rows]
    distinct = len({r[1] for r in rows})
    db.purge()
    conn.execute("TRUNCATE broker_schedule")
    return SchedulesResult(
        api_rate, count, len(rows), distinct, last_change - minute.timestamp(), skew
    )


def summary_rows(r: SchedulesResult) -> tuple[list[str], list[str]]:
    ok = r.made == r.count == r.distinct and r.last_visible_s <= 1.0
    skew = (
        f"p50 {statistics.median(r.skew_s):+.1f}s p99 {pct(r.skew_s, 0.99):+.1f}s"
        f" max {max(r.skew_s):+.1f}s"
        if r.skew_s
        else "none made"
    )
    rows = [
        f"schedules {r.made} messages for {r.count} schedules due at one minute;"
        f" last one visible {r.last_visible_s:+.1f}s from the minute; created - minute"
        f" {skew}  (target: all by +1 s)   {'ok' if ok else 'MISSED'}",
        f"sched API {r.api_rate:.0f} schedules/s created through the API"
        f" (100,000 would take {100_000 / r.api_rate if r.api_rate else math.inf:.0f}s)",
    ]
    details = [
        f"schedules: {r.distinct} distinct schedules made a message for the minute (exactly once"
        " each is the target); made ahead by the clock's trigger thread within"
        " QSTASH_SCHEDULE_LOOKAHEAD_SECONDS (default 120 s), due at the minute; the rest of the"
        f" {r.count} beyond those made through the API are SQL copies"
    ]
    return rows, details
