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

from tests.bench import console, load, procs
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


def build(env: Env, db: str, messages: int, deadline: Deadline, *, reuse: bool) -> str:
    """Create, migrate and grow ``db`` (or only migrate it, when it has that size)."""
    if reuse and db == GROWN_DB and _grown_size(env) == messages:
        run_step(
            "migrate", [sys.executable, "manage.py", "migrate", "-v", "0"], _env(env, db), deadline
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
        out = run_step(f"growing {db}", argv, _env(env, db), deadline)
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
            return [(arrived[p] - t0) * 1000 for p, t0 in sent.items()]
        if time.monotonic() > end:
            raise RuntimeError(f"{sum(p not in arrived for p in sent)} messages never arrived")
        ensure_alive(*children)
        time.sleep(0.1)


@dataclass
class PruneResult:
    expired: int
    idle_ms: list[float]
    pruning_ms: list[float]
    idle_publish: float
    pruning_publish: float
    prune_seconds: float
    pruned: dict[str, int]
    measured_while_pruning: bool


def prune_stage(env: Env, sink: SinkClient, work: Path, deadline: Deadline) -> PruneResult:
    product = _env(env, GROWN_DB)
    log(f"store: adding {PRUNE_EXPIRED} expired messages (3 log rows each) to {GROWN_DB}")
    run_step(
        "expired rows",
        [sys.executable, "-m", "tests.bench.grow", "--expired", str(PRUNE_EXPIRED)],
        product,
        deadline,
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
        pruner = procs.start_piped(
            "prune", [sys.executable, "manage.py", "qstash_prune", "--once"], env=product
        )
        time.sleep(1)
        pruning_ms = latencies(port, sink, "pruning", headers, children)
        pruning_publish = _load(port, "/v2/publish/" + sink.url("/prune-load"), headers, work)
        measured_while_pruning = pruner.popen.poll() is None
        assert pruner.popen.stdout is not None
        out = pruner.popen.stdout.read().decode()
        pruner.popen.wait(timeout=max(60.0, deadline.left()))
        prune_seconds = time.monotonic() - started
        pruned = json.loads([line for line in out.splitlines() if line.startswith("{")][-1])
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


def run(env: Env, work: Path, deadline: Deadline) -> int:
    """The store section; prints its own summary. Returns 0, or 1 when something broke."""
    log(f"store: grown store {GROWN_DB} ({GROWN_MESSAGES} messages)")
    how = build(env, GROWN_DB, GROWN_MESSAGES, deadline, reuse=True)
    log(f"store: {GROWN_DB} {how}")
    build(env, EMPTY_DB, 0, deadline, reuse=False)
    build(env, SMALL_DB, SMALL_MESSAGES, deadline, reuse=False)
    with _conn(env, GROWN_DB) as conn:
        sizes = [
            conn.execute(
                "SELECT reltuples::bigint FROM pg_class WHERE relname = %s", [t]
            ).fetchone()[0]  # type: ignore[index]
            for t in ("broker_message", "broker_logentry", "broker_dlqentry")
        ]
    log("store: reads (median of 5 each)")
    grown = reads(env, GROWN_DB, deadline)
    empty = reads(env, EMPTY_DB, deadline)
    small = reads(env, SMALL_DB, deadline)

    _, sink = start_sink(env, deadline)
    log("store: publish throughput, empty then grown, twice")
    rates: dict[str, list[float]] = {EMPTY_DB: [], GROWN_DB: []}
    for _ in range(2):
        for db in (EMPTY_DB, GROWN_DB):
            rates[db].append(publish_rate(env, db, sink, work, deadline))
    log("store: claim and delivery, empty then grown")
    drains = {db: claim_and_drain(env, db, sink, work, deadline) for db in (EMPTY_DB, GROWN_DB)}
    prune = prune_stage(env, sink, work, deadline) if PRUNE_EXPIRED > 0 else None

    rows = [
        f"grown store: {sizes[0]:,} messages, {sizes[1]:,} log rows, {sizes[2]:,} DLQ entries"
        f" (estimates); small store {SMALL_MESSAGES:,} messages; targets: grown/small"
        f" <= {TARGET_READ_RATIO:g}x and < {TARGET_READ_MS:g} ms",
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
    pub_ratio = max(rates[GROWN_DB]) / max(rates[EMPTY_DB])
    rows.append(f"reads: {len(REQUESTS) - missed} of {len(REQUESTS)} within target")
    rows.append(
        f"publish   grown {max(rates[GROWN_DB]):6.0f}/s  empty {max(rates[EMPTY_DB]):6.0f}/s"
        f"  ratio {pub_ratio:4.2f} (target >= {TARGET_PUBLISH})"
        f"  {verdict(pub_ratio >= TARGET_PUBLISH)}"
        f"  rounds: grown {', '.join(f'{r:.0f}' for r in rates[GROWN_DB])};"
        f" empty {', '.join(f'{r:.0f}' for r in rates[EMPTY_DB])}"
    )
    (claim_e, drain_e), (claim_g, drain_g) = drains[EMPTY_DB], drains[GROWN_DB]
    rows += [
        f"claim     of 100: grown {claim_g:.1f} ms  empty {claim_e:.1f} ms  throughput ratio"
        f" {claim_e / claim_g:4.2f} (target >= {TARGET_DRAIN})"
        f"  {verdict(claim_e / claim_g >= TARGET_DRAIN)}",
        f"delivery  {DRAIN_COUNT} due messages: grown {drain_g:.0f}/s  empty {drain_e:.0f}/s"
        f"  ratio {drain_g / drain_e:4.2f} (target >= {TARGET_DRAIN})"
        f"  {verdict(drain_g / drain_e >= TARGET_DRAIN)}",
    ]
    if prune is not None:
        idle99, prune99 = pct(prune.idle_ms, 0.99), pct(prune.pruning_ms, 0.99)
        p_ratio = prune.pruning_publish / prune.idle_publish
        rows += [
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
    log("store: console pages")
    console_rows, _ = console.run(env, work, deadline)
    rows += ["", "console pages (tests/bench/console.py)", *console_rows]
    print()
    print("=" * 100)
    print("STORE AT SCALE")
    print("\n".join(rows))
    print("=" * 100, flush=True)
    return 0
