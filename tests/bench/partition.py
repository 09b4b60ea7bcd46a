"""Retention by dropping partitions, measured against the batched delete (issue 12).

The issue asks to measure "partition the log table by time, so retention drops whole
partitions instead of deleting rows" against the batched prune, and to choose. This
builds, in the grown store, ``bench_log_part``: a copy of ``broker_logentry`` range-
partitioned by ``time`` (a partition per day, the same indexes), plus two days of
expired log rows (``EXPIRED_ROWS`` each, 400 days old, as many as the prune stage's
million messages have). Then, with web, worker and clock delivering:

- one expired day is deleted with the prune's own batched statement (the log step of
  ``broker/services/maintenance.py``: batches of QSTASH_PRUNE_BATCH rows, the same
  pause), the other is detached (``CONCURRENTLY``) and dropped: time, and the
  publish-to-receipt p99 of deliveries meanwhile;
- the log reads (newest page, by state, by date, by a message's url and id) are timed
  on the partitioned copy and on the table itself.

The copy is kept between runs (it is rebuilt when missing); the expired days are made
again every run. Nothing of the product reads ``bench_log_part``.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import psycopg

TABLE = "bench_log_part"

# The prune's statement for a table of timed rows (broker/services/maintenance.py,
# _TIMED_BATCH_SQL), here on the copy; the bench process has no Django to import it from.
_BATCH_SQL = """
WITH doomed AS (
    SELECT id, time AS at FROM bench_log_part
    WHERE time >= %(after)s AND time < %(cutoff)s
    ORDER BY time LIMIT %(batch)s
), gone AS (
    DELETE FROM bench_log_part WHERE id IN (SELECT id FROM doomed) RETURNING id
)
SELECT (SELECT count(*) FROM gone), (SELECT max(at) FROM doomed)
"""

EXPIRED_ROWS = int(os.environ.get("BENCH_PARTITION_ROWS", "3000000"))
# Whether the copy holds the grown store's 30,000,000 log rows (for the reads; about ten
# minutes to build on the 2-core host) or only the expired days (delete against drop).
COPY = os.environ.get("BENCH_PARTITION_COPY", "1") != "0"
BATCH = 1000
PAUSE = 0.020
_DAY = timedelta(days=1)

# (name, SQL with {t} for the table): the log page's shapes (filters.time_page).
READS = [
    ("newest 100", "SELECT * FROM {t} ORDER BY time DESC, id DESC LIMIT 101"),
    (
        "state=FAILED",
        "SELECT * FROM {t} WHERE state = 'FAILED' ORDER BY time DESC, id DESC LIMIT 101",
    ),
    (
        "toDate=2001",
        "SELECT * FROM {t} WHERE time <= '2001-09-09' ORDER BY time DESC, id DESC LIMIT 101",
    ),
    (
        "last hour, oldest first",
        "SELECT * FROM {t} WHERE time >= now() - interval '1 hour' ORDER BY time, id LIMIT 101",
    ),
    (
        "messageId",
        "SELECT l.* FROM {t} l JOIN broker_message m ON m.id = l.message_id"
        " WHERE m.message_id = 'msg_grown00000000000000007' ORDER BY l.time DESC, l.id DESC"
        " LIMIT 101",
    ),
    (
        "url (1,428 messages)",
        "SELECT l.* FROM {t} l JOIN broker_message m ON m.id = l.message_id"
        " WHERE md5(m.url) = md5('http://host200.bench.test/hook/5')"
        " AND m.url = 'http://host200.bench.test/hook/5' ORDER BY l.time DESC, l.id DESC LIMIT 101",
    ),
]


def _exists(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", [TABLE]).fetchone()
    return bool(row and row[0])


def build_copy(conn: psycopg.Connection[Any]) -> float:
    """The partitioned copy of the grown log rows (not the prune stage's expired ones)."""
    started = time.monotonic()
    conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
    conn.execute(
        f"CREATE TABLE {TABLE} (LIKE broker_logentry INCLUDING CONSTRAINTS)"
        " PARTITION BY RANGE (time)"
    )
    row = conn.execute(
        "SELECT date_trunc('day', min(time)), date_trunc('day', max(time))"
        " FROM broker_logentry WHERE time > now() - interval '30 days'"
    ).fetchone()
    assert row is not None
    day, last = row
    while day <= last:
        name = f"{TABLE}_{day:%Y%m%d}"
        conn.execute(
            f"CREATE TABLE {name} PARTITION OF {TABLE}"
            f" FOR VALUES FROM ('{day.isoformat()}') TO ('{(day + _DAY).isoformat()}')"
        )
        day += _DAY
    conn.execute("SET maintenance_work_mem = '512MB'")
    if COPY:
        conn.execute(
            f"INSERT INTO {TABLE} SELECT * FROM broker_logentry"  # noqa: S608 (a constant)
            " WHERE time > now() - interval '30 days'"
        )
    # The table's own indexes (models.LogEntry, the foreign key's, and its primary key's:
    # a partitioned table's unique key must hold the partition key, so a plain one).
    # Without the one on id, each batched delete scanned every partition.
    conn.execute(f"CREATE INDEX ON {TABLE} (id)")
    conn.execute(f"CREATE INDEX ON {TABLE} (time, id)")
    conn.execute(f"CREATE INDEX ON {TABLE} (state, time, id)")
    conn.execute(f"CREATE INDEX ON {TABLE} (message_id)")
    conn.execute(f"VACUUM ANALYZE {TABLE}")
    return time.monotonic() - started


def add_expired_days(conn: psycopg.Connection[Any]) -> tuple[str, str, Any]:
    """Two partitions of EXPIRED_ROWS log rows, 400 and 399 days old; their names, and
    the end of the first (the batched delete's cutoff)."""
    names = []
    for ago in (400, 399):
        row = conn.execute(
            "SELECT date_trunc('day', now() - %s * interval '1 day')", [ago]
        ).fetchone()
        assert row is not None
        day = row[0]
        name = f"{TABLE}_{day:%Y%m%d}"
        conn.execute(f"DROP TABLE IF EXISTS {name}")
        conn.execute(
            f"CREATE TABLE {name} PARTITION OF {TABLE}"
            f" FOR VALUES FROM ('{day.isoformat()}') TO ('{(day + _DAY).isoformat()}')"
        )
        # Rows of random grown messages, 3 per message as the product writes them.
        conn.execute(
            f"INSERT INTO {TABLE} (id, message_id, state, time, error)"  # noqa: S608
            " SELECT 9000000000 + %s::bigint * 100000000 + i, 1 + (i / 3) %% 10000000,"
            " (ARRAY['CREATED', 'ACTIVE', 'DELIVERED'])[1 + i %% 3],"
            " %s + i * interval '10 milliseconds', ''"
            " FROM generate_series(0, %s - 1) i",
            [ago, day, EXPIRED_ROWS],
        )
        names.append((name, day))
    conn.execute(f"ANALYZE {TABLE}")
    (first, first_day), (second, _) = names
    return first, second, first_day + _DAY


def batched_delete(dsn: dict[str, Any], cutoff: Any) -> tuple[int, float]:
    """The prune's log step on the copy: batches of BATCH rows, each its own commit."""
    started = time.monotonic()
    total, after = 0, "0001-01-01T00:00:00+00:00"
    with psycopg.connect(autocommit=True, **dsn) as conn:
        conn.execute("SET synchronous_commit = off")  # as the prune's batches
        while True:
            batch_started = time.monotonic()
            row = conn.execute(
                _BATCH_SQL, {"after": after, "cutoff": cutoff, "batch": BATCH}
            ).fetchone()
            assert row is not None
            total += int(row[0])
            if row[0] < BATCH or row[1] is None:
                return total, time.monotonic() - started
            after = row[1]
            # Paced as the prune is (maintenance._batches).
            time.sleep(max(PAUSE, time.monotonic() - batch_started))


def drop_partition(dsn: dict[str, Any], name: str) -> float:
    started = time.monotonic()
    with psycopg.connect(autocommit=True, **dsn) as conn:
        conn.execute(f"ALTER TABLE {TABLE} DETACH PARTITION {name} CONCURRENTLY")
        conn.execute(f"DROP TABLE {name}")
    return time.monotonic() - started


def reads(conn: psycopg.Connection[Any], repeat: int = 5) -> list[tuple[str, float, float]]:
    """(read, ms on broker_logentry, ms on the partitioned copy), median of ``repeat``."""
    out = []
    for name, sql in READS:
        ms = []
        for table in ("broker_logentry", TABLE):
            times = []
            for _ in range(repeat + 1):
                started = time.perf_counter()
                conn.execute(sql.format(t=table)).fetchall()
                times.append((time.perf_counter() - started) * 1000)
            ms.append(statistics.median(times[1:]))
        out.append((name, ms[0], ms[1]))
    return out


def during(work: Callable[[], Any], measure: Callable[[], list[float]]) -> tuple[Any, list[float]]:
    """Run ``work`` on a thread while ``measure`` runs; both results."""
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(work()), daemon=True)
    thread.start()
    time.sleep(0.5)
    measured = measure()
    thread.join()
    return result[0], measured
