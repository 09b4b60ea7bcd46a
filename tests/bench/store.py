"""The store at scale: reads, filters and publish on a grown store against an empty one,
and deliveries while a backlog of expired messages is pruned (issue 12).

- The grown store is ``qstash_bench_grown``: BENCH_GROWN_MESSAGES finished messages
  (default 10,000,000), 3 log rows each, 1 in 200 in the DLQ (``grow.py``). It is built
  once with SQL (about 5 minutes at ten million) and reused while its size matches.
- The empty store (``qstash_bench_store_empty``) and a small one
  (``qstash_bench_store_small``, BENCH_SMALL_MESSAGES, default 10,000, the same
  generator) are rebuilt every run. Empty is the issue's reference; but an empty store
  answers empty pages, so the ratio of a read that returns 100 rows measures rendering
  100 rows, not the store. The small store returns the same pages as the grown one: its
  ratio is the one that says whether a read grows with the store.
- Reads: every request of ``store_reads.REQUESTS``, median of 5, in process (Django's
  whole request path, no socket), ``store_reads.py``.
- Publish: gunicorn on each store, ``wrk`` for BENCH_STORE_PUBLISH_SECONDS, best of 2.
- Prune: BENCH_PRUNE_EXPIRED (default 1,000,000) expired messages are added to the
  grown store; with web, worker and clock running, publish-to-receipt latency and
  publish throughput are measured idle, then while ``manage.py qstash_prune --once``
  deletes them (its own process, as the clock's prune thread would).

The bench processes run with retention of a year, so the grown store (a day old when
built) is never pruned; the expired messages are 400 days old.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from tests.bench import console, load, partition, procs
from tests.bench.infra import (
    PRODUCT_REDIS_DB,
    QUEUE,
    Env,
    ensure_alive,
    flush_redis,
    log,
    pct,
    post,
    run_step,
    start_gunicorn,
    start_sink,
    start_worker,
    wait_sink,
)
from tests.bench.procs import Deadline, Proc
from tests.bench.sink import SinkClient
from tests.bench.store_reads import REQUESTS

GROWN_DB = os.environ.get("BENCH_GROWN_DB", "qstash_bench_grown")
EMPTY_DB = "qstash_bench_store_empty"
SMALL_DB = "qstash_bench_store_small"
GROWN_MESSAGES = int(os.environ.get("BENCH_GROWN_MESSAGES", "10000000"))
SMALL_MESSAGES = int(os.environ.get("BENCH_SMALL_MESSAGES", "10000"))
PRUNE_EXPIRED = int(os.environ.get("BENCH_PRUNE_EXPIRED", "1000000"))
# Growing ten million messages (or five million expired ones) takes minutes, not the
# two a short step gets.
GROW_LIMIT = float(os.environ.get("BENCH_GROW_LIMIT_SECONDS", "1800"))
# Which parts of the section run (comma-separated): reads, publish, drain, prune. The
# grown store is built (or reused) whatever the selection.
STEPS = set(os.environ.get("BENCH_STORE_STEPS", "reads,publish,drain,prune,console").split(","))
PUBLISH_SECONDS = float(os.environ.get("BENCH_STORE_PUBLISH_SECONDS", "5"))
LATENCY_COUNT = 300
LATENCY_GAP = 0.02
BODY = b'{"hello":"store"}'

TARGET_READ_RATIO = 5.0
TARGET_READ_MS = 200.0
TARGET_PUBLISH = 0.9
TARGET_PRUNE_P99 = 2.0
TARGET_PRUNE_PUBLISH = 0.8
# A year: the grown store is never pruned by the bench; only the 400-day-old rows are.
RETENTION = {
    "QSTASH_LOG_RETENTION_DAYS": "365",
    "QSTASH_DLQ_RETENTION_DAYS": "365",
    "QSTASH_DELIVERED_RETENTION_HOURS": str(365 * 24),
}


def _env(env: Env, db: str) -> dict[str, str]:
    product = env.product()
    auth = env.pg["user"] + (f":{env.pg['password']}" if env.pg["password"] else "")
    product.update(
        DATABASE_URL=f"postgres://{auth}@{env.pg['host']}:{env.pg['port']}/{db}", **RETENTION
    )
    return product


def _admin(env: Env) -> psycopg.Connection[Any]:
    return psycopg.connect(dbname="postgres", autocommit=True, connect_timeout=5, **env.pg)


def _conn(env: Env, db: str) -> psycopg.Connection[Any]:
    return psycopg.connect(dbname=db, autocommit=True, connect_timeout=5, **env.pg)


def _grown_size(env: Env) -> int | None:
    try:
        with _conn(env, GROWN_DB) as conn:
            row = conn.execute("SELECT messages FROM bench_grown").fetchone()
            return int(row[0]) if row else None
    except psycopg.Error:
        return None


def _vacuum_if_dead(env: Env, db: str) -> None:
    """What autovacuum would have done since the last run (it is off on the bench's shared
    server): without it, the dead index entries of the rows a prune deleted stay, and the
    planner walks them to plan a range beyond its statistics (a ``toDate`` before every
    log row planned in 333 ms over 3,000,000)."""
    with _conn(env, db) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(n_dead_tup), 0) FROM pg_stat_user_tables"
            " WHERE relname IN ('broker_message', 'broker_logentry', 'broker_payload')"
        ).fetchone()
        if row and row[0] > 0:
            log(f"store: vacuuming {db} ({row[0]:,} dead rows)")
            conn.execute("VACUUM ANALYZE broker_message, broker_logentry, broker_payload")


def build(env: Env, db: str, messages: int, deadline: Deadline, *, reuse: bool) -> str:
    """Create, migrate and grow ``db`` (or only migrate it, when it has that size)."""
    if reuse and db == GROWN_DB and _grown_size(env) == messages:
        _vacuum_if_dead(env, db)
        run_step(
            "migrate",
            [sys.executable, "manage.py", "migrate", "-v", "0"],
            _env(env, db),
            deadline,
            limit=GROW_LIMIT,  # a new index on the grown tables takes minutes
        )
        return "reused"
    with _admin(env) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {db}")
    run_step(
        "migrate", [sys.executable, "manage.py", "migrate", "-v", "0"], _env(env, db), deadline
    )
    if messages:
        argv = [sys.executable, "-m", "tests.bench.grow", "--messages", str(messages)]
        out = run_step(f"growing {db}", argv, _env(env, db), deadline, limit=GROW_LIMIT)
        return "built: " + out.strip().splitlines()[-1]
    return "built empty"


def reads(env: Env, db: str, deadline: Deadline) -> dict[str, dict[str, float]]:
    out = run_step(
        f"reads on {db}",
        [sys.executable, "-m", "tests.bench.store_reads", "--repeat", "5"],
        _env(env, db),
        deadline,
    )
    return dict(json.loads(out.strip().splitlines()[-1]))


def publish_rate(env: Env, db: str, sink: SinkClient, work: Path, deadline: Deadline) -> float:
    web, port = start_gunicorn(f"web-{db}", "qstash_site.wsgi", _env(env, db), work, deadline)
    try:
        headers = {"Authorization": f"Bearer {env.token}", "Content-Type": "application/json"}
        for i in range(20):  # warm every gunicorn worker's connection and caches
            post(port, "/v2/publish/" + sink.url(f"/warm-{i}"), headers, BODY)
        return _load(port, "/v2/publish/" + sink.url("/store"), headers, work)
    finally:
        web.stop()
        # No worker ran: retire what was published, so that it is neither delivered by a
        # later stage nor left pending (the prune stage deletes it with the expired rows).
        with _conn(env, db) as conn:
            conn.execute(
                "UPDATE broker_message SET state = 'DELIVERED', due_at = NULL,"
                " finished_at = now() - interval '400 days'"
                " WHERE state IN ('CREATED', 'ACTIVE', 'RETRY')"
            )


def _load(port: int, path: str, headers: dict[str, str], work: Path) -> float:
    if load.wrk_available():
        result = load.run_wrk(
            port=port,
            path=path,
            headers=headers,
            body=BODY,
            seconds=PUBLISH_SECONDS,
            connections=16,
            threads=2,
            workdir=work,
        )
    else:
        result = load.run_python(
            port=port,
            path=path,
            headers=headers,
            body=BODY,
            total=3000,
            seconds=PUBLISH_SECONDS * 2,
            processes=2,
            threads=8,
        )
    if result.errors:
        log(f"store: {result.errors} of {result.requests} publishes failed")
    return result.rate


def latencies(
    port: int, sink: SinkClient, prefix: str, headers: dict[str, str], children: list[Proc]
) -> list[float]:
    """Publish LATENCY_COUNT messages one after another; publish -> receipt in ms."""
    sent: dict[str, float] = {}
    for i in range(LATENCY_COUNT):
        path = f"/lat/{prefix}-{i}"  # the sink keeps arrival times of /lat/ paths
        t0 = time.time()
        status, answer = post(port, "/v2/publish/" + sink.url(path), headers, BODY)
        if status != 200:
            raise RuntimeError(f"publish answered {status}: {answer[:200]!r}")
        sent[path] = t0
        time.sleep(LATENCY_GAP)
    end = time.monotonic() + 120
    while True:
        arrived = sink.times()
        if all(p in arrived for p in sent):
            ms = {p: (arrived[p] - t0) * 1000 for p, t0 in sent.items()}
            # The wall-clock time of the slowest, to set beside the database's own record.
            slowest = sorted(ms, key=ms.__getitem__)[-3:]
            log(
                f"store: {prefix} slowest: "
                + ", ".join(
                    f"{ms[p]:.0f} ms at {time.strftime('%H:%M:%S', time.gmtime(sent[p]))}"
                    f".{int(sent[p] % 1 * 1000):03d}"
                    for p in reversed(slowest)
                )
            )
            return list(ms.values())
        if time.monotonic() > end:
            raise RuntimeError(f"{sum(p not in arrived for p in sent)} messages never arrived")
        ensure_alive(*children)
        time.sleep(0.1)


# Runs argv[1:] with this interpreter; then prints the child's peak resident set.
_PEAK_RSS = (
    "import resource, subprocess, sys;"
    " code = subprocess.call([sys.executable, *sys.argv[1:]]);"
    " print('peak_rss_kb', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, flush=True);"
    " sys.exit(code)"
)


def _first_batch_done(env: Env, pruner: Proc, deadline: Deadline) -> float:
    """Wait until the oldest finished message (the first batch's) is gone; the seconds."""
    started = time.monotonic()
    with _conn(env, GROWN_DB) as conn:
        row = conn.execute(
            "SELECT id FROM broker_message WHERE state = 'DELIVERED'"
            " AND finished_at IS NOT NULL ORDER BY finished_at LIMIT 1"
        ).fetchone()
        while row is not None and pruner.popen.poll() is None and deadline.left() > 0:
            if conn.execute("SELECT 1 FROM broker_message WHERE id = %s", [row[0]]).fetchone():
                time.sleep(0.05)
                continue
            break
    return time.monotonic() - started


@dataclass
class PruneResult:
    expired: int
    idle_ms: list[float]
    pruning_ms: list[float]
    idle_publish: float
    pruning_publish: float
    prune_seconds: float
    pruned: dict[str, int]  # and "peak_rss_mb"
    measured_while_pruning: bool


def prune_stage(env: Env, sink: SinkClient, work: Path, deadline: Deadline) -> PruneResult:
    product = _env(env, GROWN_DB)
    log(f"store: adding {PRUNE_EXPIRED} expired messages (3 log rows each) to {GROWN_DB}")
    run_step(
        "expired rows",
        [sys.executable, "-m", "tests.bench.grow", "--expired", str(PRUNE_EXPIRED)],
        product,
        deadline,
        limit=GROW_LIMIT,
    )
    flush_redis(env, PRODUCT_REDIS_DB)
    web, port = start_gunicorn("web-prune", "qstash_site.wsgi", product, work, deadline)
    worker = start_worker("worker", "qstash_site", QUEUE, product, work)
    clock = procs.start(
        "clock",
        [sys.executable, "manage.py", "qstash_clock", "--no-prune"],
        env=product,
        logdir=work,
    )
    children = [web, worker, clock]
    headers = {"Authorization": f"Bearer {env.token}", "Content-Type": "application/json"}
    try:
        time.sleep(2)
        latencies(port, sink, "warm", headers, children)
        idle_ms = latencies(port, sink, "idle", headers, children)
        idle_publish = _load(port, "/v2/publish/" + sink.url("/idle-load"), headers, work)
        log("store: pruning while publishing and delivering")
        started = time.monotonic()
        # Through a wrapper that reports the prune's peak RSS: the memory the clock's
        # prune thread (the same code) would add to the clock.
        pruner = procs.start_piped(
            "prune",
            [sys.executable, "-c", _PEAK_RSS, "manage.py", "qstash_prune", "--once"],
            env=product,
        )
        # Measured once the prune deletes, not while its process boots: starting a Python
        # process on a loaded 2-core host stalled every delivery for up to 1.8 s before
        # the prune had sent a single statement (issue 12's p99 of 401 and 861 ms). The
        # clock's prune thread, and a long-running qstash_prune, boot once.
        booted = _first_batch_done(env, pruner, deadline)
        log(f"store: the prune's first batch committed {booted:.1f}s after its start")
        pruning_ms = latencies(port, sink, "pruning", headers, children)
        pruning_publish = _load(port, "/v2/publish/" + sink.url("/prune-load"), headers, work)
        measured_while_pruning = pruner.popen.poll() is None
        assert pruner.popen.stdout is not None
        out = pruner.popen.stdout.read().decode()
        pruner.popen.wait(timeout=max(60.0, deadline.left()))
        prune_seconds = time.monotonic() - started
        pruned = json.loads([line for line in out.splitlines() if line.startswith("{")][-1])
        peak = [line for line in out.splitlines() if line.startswith("peak_rss_kb ")][-1]
        pruned["peak_rss_mb"] = int(peak.split()[1]) // 1024
        # What autovacuum would do next (it is off on the bench's shared server): until
        # then the dead index entries of the deleted rows stay, and the planner walks them
        # whenever a range lies beyond its statistics (a toDate before every log row
        # planned in 333 ms on 3,000,000 of them). The time is part of a delete's cost.
        vacuum_started = time.monotonic()
        with _conn(env, GROWN_DB) as conn:
            conn.execute("VACUUM ANALYZE broker_message, broker_logentry, broker_payload")
        pruned["vacuum_s"] = round(time.monotonic() - vacuum_started)
    finally:
        for child in children:
            child.stop()
    return PruneResult(
        PRUNE_EXPIRED,
        idle_ms,
        pruning_ms,
        idle_publish,
        pruning_publish,
        prune_seconds,
        pruned,
        measured_while_pruning,
    )


def partition_stage(env: Env, sink: SinkClient, work: Path, deadline: Deadline) -> list[str]:
    """Batched delete against dropping a partition, on a partitioned copy of the log
    table (``partition.py``), with deliveries measured meanwhile."""
    dsn = {"dbname": GROWN_DB, "connect_timeout": 5, **env.pg}
    with _conn(env, GROWN_DB) as conn:
        if not partition._exists(conn) or not partition.COPY:
            log(f"store: building {partition.TABLE}, a partitioned copy of the log table")
            log(f"store: built in {partition.build_copy(conn):.0f}s")
        log(f"store: adding 2 x {partition.EXPIRED_ROWS:,} expired log rows to the copy")
        deleted_day, dropped_day, cutoff = partition.add_expired_days(conn)
        read_ms = partition.reads(conn) if partition.COPY else []
    product = _env(env, GROWN_DB)
    flush_redis(env, PRODUCT_REDIS_DB)
    web, port = start_gunicorn("web-part", "qstash_site.wsgi", product, work, deadline)
    worker = start_worker("worker-part", "qstash_site", QUEUE, product, work)
    clock = procs.start(
        "clock-part",
        [sys.executable, "manage.py", "qstash_clock", "--no-prune"],
        env=product,
        logdir=work,
    )
    children = [web, worker, clock]
    headers = {"Authorization": f"Bearer {env.token}", "Content-Type": "application/json"}
    try:
        time.sleep(2)
        latencies(port, sink, "part-warm", headers, children)
        idle_ms = latencies(port, sink, "part-idle", headers, children)
        (deleted, delete_s), delete_ms = partition.during(
            lambda: partition.batched_delete(dsn, cutoff),
            lambda: latencies(port, sink, "part-delete", headers, children),
        )
        drop_s, drop_ms = partition.during(
            lambda: partition.drop_partition(dsn, dropped_day),
            lambda: latencies(port, sink, "part-drop", headers, children),
        )
    finally:
        for child in children:
            child.stop()
    idle99 = pct(idle_ms, 0.99)
    rows = [
        f"partition {partition.EXPIRED_ROWS:,} expired log rows (a day of {partition.TABLE}):"
        f" batched delete {deleted:,} rows in {delete_s:.1f}s"
        f" ({deleted / max(delete_s, 1e-6):.0f} rows/s), delivery p99"
        f" {pct(delete_ms, 0.99):.1f} ms; detach + drop in {drop_s * 1000:.0f} ms, delivery"
        f" p99 {pct(drop_ms, 0.99):.1f} ms; idle p99 {idle99:.1f} ms",
    ]
    if read_ms:
        rows.append(f"{'partition read':28s} {'table':>8s} {'partitioned':>12s}")
    rows += [f"{name:28s} {t:6.1f}ms {p:10.1f}ms" for name, t, p in read_ms]
    log(f"store: {deleted_day} deleted in batches, {dropped_day} dropped")
    return rows


DRAIN_COUNT = int(os.environ.get("BENCH_STORE_DRAIN_COUNT", "8000"))
TARGET_DRAIN = 0.9


def claim_and_drain(
    env: Env, db: str, sink: SinkClient, work: Path, deadline: Deadline
) -> tuple[float, float]:
    """On store ``db``: the median claim of 100 of ``DRAIN_COUNT`` due messages (rolled
    back, ``claim_probe.py``), then their drain by a fresh worker and clock:
    (claim ms, deliveries/s at the sink, first to last receipt)."""
    product = _env(env, db)
    url = sink.url("/drain")
    flush_redis(env, PRODUCT_REDIS_DB)
    seed = [sys.executable, "-m", "tests.bench.seed", "--count", str(DRAIN_COUNT)]
    run_step("seeding", [*seed, "--url", url, "--service", "1000"], product, deadline)
    probe = [sys.executable, "-m", "tests.bench.claim_probe", "--reps", "40", "--limit", "100"]
    claim_ms = float(
        json.loads(run_step("timing the claim", probe, product, deadline))["median_ms"]
    )
    sink.reset()
    clock = [sys.executable, "manage.py", "qstash_clock", "--no-prune"]
    children = [
        start_worker("worker-drain", "qstash_site", QUEUE, product, work),
        procs.start("clock-drain", clock, env=product, logdir=work),
    ]
    try:
        stats = wait_sink(sink, DRAIN_COUNT, 180, deadline, children)
        rate = DRAIN_COUNT / max(1e-6, stats["last"] - stats["first"])
    finally:
        for child in children:
            child.stop()
        flush_redis(env, PRODUCT_REDIS_DB)
        # The seeded rows go, so the next run can seed the same ids again.
        with _conn(env, db) as conn:
            conn.execute(
                "DELETE FROM broker_logentry WHERE message_id IN"
                " (SELECT id FROM broker_message WHERE url = %s)",
                [url],
            )
            conn.execute("DELETE FROM broker_message WHERE url = %s", [url])
    return claim_ms, rate


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def read_rows(
    grown: dict[str, dict[str, float]],
    empty: dict[str, dict[str, float]],
    small: dict[str, dict[str, float]],
) -> list[str]:
    rows = [
        f"{'request':58s} {'empty':>7s} {'small':>7s} {'grown':>8s} {'g/empty':>8s}"
        f" {'g/small':>8s}  status",
    ]
    missed = 0
    for method, path in REQUESTS:
        key = f"{method} {path}"
        g, e, s = grown[key]["ms"], empty[key]["ms"], small[key]["ms"]
        ok = g < TARGET_READ_MS and g <= TARGET_READ_RATIO * max(s, 1.0)
        missed += not ok
        rows.append(
            f"{key[:58]:58s} {e:7.1f} {s:7.1f} {g:8.1f} {g / e:7.1f}x {g / s:7.1f}x"
            f"  {int(grown[key]['status'])} {verdict(ok)}"
        )
    rows.append(f"reads: {len(REQUESTS) - missed} of {len(REQUESTS)} within target")
    return rows


def prune_rows(prune: PruneResult) -> list[str]:
    idle99, prune99 = pct(prune.idle_ms, 0.99), pct(prune.pruning_ms, 0.99)
    p_ratio = prune.pruning_publish / prune.idle_publish
    return [
        f"prune     {prune.expired:,} expired messages (+{3 * prune.expired:,} log rows):"
        f" {prune.pruned} in {prune.prune_seconds:.0f}s"
        f" ({prune.pruned.get('messages', 0) / prune.prune_seconds:.0f} messages/s)",
        f"prune     delivery p99 {prune99:.1f} ms while pruning vs {idle99:.1f} ms idle:"
        f" {prune99 / idle99:4.2f}x (target < {TARGET_PRUNE_P99:g}x)"
        f"  {verdict(prune99 < TARGET_PRUNE_P99 * idle99)};"
        f" p50 {statistics.median(prune.pruning_ms):.1f}"
        f" vs {statistics.median(prune.idle_ms):.1f} ms",
        f"prune     publish {prune.pruning_publish:.0f}/s while pruning vs"
        f" {prune.idle_publish:.0f}/s idle: {p_ratio:4.2f} (target >= {TARGET_PRUNE_PUBLISH})"
        f"  {verdict(p_ratio >= TARGET_PRUNE_PUBLISH)}"
        + ("" if prune.measured_while_pruning else "  (the prune ended before the load did)"),
    ]


def run(env: Env, work: Path, deadline: Deadline) -> int:
    """The store section; prints its own summary. Returns 0, or 1 when something broke."""
    log(f"store: grown store {GROWN_DB} ({GROWN_MESSAGES} messages); steps {sorted(STEPS)}")
    how = build(env, GROWN_DB, GROWN_MESSAGES, deadline, reuse=True)
    log(f"store: {GROWN_DB} {how}")
    if STEPS & {"reads", "publish", "drain"}:
        build(env, EMPTY_DB, 0, deadline, reuse=False)
    if "reads" in STEPS:
        build(env, SMALL_DB, SMALL_MESSAGES, deadline, reuse=False)
    with _conn(env, GROWN_DB) as conn:
        sizes = [
            conn.execute(
                "SELECT reltuples::bigint FROM pg_class WHERE relname = %s", [t]
            ).fetchone()[0]  # type: ignore[index]
            for t in ("broker_message", "broker_logentry", "broker_dlqentry")
        ]
    rows = [
        f"grown store: {sizes[0]:,} messages, {sizes[1]:,} log rows, {sizes[2]:,} DLQ entries"
        f" (estimates); small store {SMALL_MESSAGES:,} messages; targets: grown/small"
        f" <= {TARGET_READ_RATIO:g}x and < {TARGET_READ_MS:g} ms",
    ]
    _, sink = start_sink(env, deadline)
    if "publish" in STEPS:
        log("store: publish throughput, empty then grown, twice")
        rates: dict[str, list[float]] = {EMPTY_DB: [], GROWN_DB: []}
        for _ in range(2):
            for db in (EMPTY_DB, GROWN_DB):
                rates[db].append(publish_rate(env, db, sink, work, deadline))
        pub_ratio = max(rates[GROWN_DB]) / max(rates[EMPTY_DB])
        rows.append(
            f"publish   grown {max(rates[GROWN_DB]):6.0f}/s  empty {max(rates[EMPTY_DB]):6.0f}/s"
            f"  ratio {pub_ratio:4.2f} (target >= {TARGET_PUBLISH})"
            f"  {verdict(pub_ratio >= TARGET_PUBLISH)}"
            f"  rounds: grown {', '.join(f'{r:.0f}' for r in rates[GROWN_DB])};"
            f" empty {', '.join(f'{r:.0f}' for r in rates[EMPTY_DB])}"
        )
    if "drain" in STEPS:
        log("store: claim and delivery, empty then grown")
        drains = {db: claim_and_drain(env, db, sink, work, deadline) for db in (EMPTY_DB, GROWN_DB)}
        (claim_e, drain_e), (claim_g, drain_g) = drains[EMPTY_DB], drains[GROWN_DB]
        rows += [
            f"claim     of 100: grown {claim_g:.1f} ms  empty {claim_e:.1f} ms  throughput ratio"
            f" {claim_e / claim_g:4.2f} (target >= {TARGET_DRAIN})"
            f"  {verdict(claim_e / claim_g >= TARGET_DRAIN)}",
            f"delivery  {DRAIN_COUNT} due messages: grown {drain_g:.0f}/s  empty {drain_e:.0f}/s"
            f"  ratio {drain_g / drain_e:4.2f} (target >= {TARGET_DRAIN})"
            f"  {verdict(drain_g / drain_e >= TARGET_DRAIN)}",
        ]
    # The prune first, the experiment and the reads after it: the prune ends with the
    # vacuum autovacuum would run, so the reads see the store as a live one would.
    if "prune" in STEPS and PRUNE_EXPIRED > 0:
        rows += prune_rows(prune_stage(env, sink, work, deadline))
    if "partition" in STEPS:
        rows += partition_stage(env, sink, work, deadline)
    if "reads" in STEPS:
        log("store: reads (median of 5 each)")
        rows += read_rows(
            reads(env, GROWN_DB, deadline),
            reads(env, EMPTY_DB, deadline),
            reads(env, SMALL_DB, deadline),
        )
    if "console" in STEPS:
        log("store: console pages")
        console_rows, _ = console.run(env, work, deadline)
        rows += ["", "console pages (tests/bench/console.py)", *console_rows]
    print()
    print("=" * 100)
    print("STORE AT SCALE")
    print("\n".join(rows))
    print("=" * 100, flush=True)
    return 0
