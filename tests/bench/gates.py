"""Queues and flow control in ``make bench``: limits measured at the sink, and claiming
beside big backlogs of waiting messages.

- **accuracy** (worker and clock running): a key with ``rate=10, period=1s`` gets
  ``GATE_RATE_SECONDS`` x 10 + 10 messages at once; starts per second at the sink over
  ``GATE_RATE_SECONDS`` full seconds (target 10 +/- 1). Meanwhile a key with
  ``parallelism=3`` gets 60 messages to ``/hold/`` (answered after 0.2 s); the sink
  counts the most open at once (target 3, never 4).
- **backlogs**: the same drain of ``GATE_DRAIN_COUNT`` plain due messages, and the
  claim of 100 of them (rolled back, median of 40), without and then with
  ``GATE_KEYS`` flow-control keys x ``GATE_WAITING`` waiting messages (their rate spent
  until next week) and a paused queue of ``GATE_PAUSED`` messages, stored with SQL.
  Printed as with/without ratios (target: claiming stays cheap, ratio near 1).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from dataclasses import dataclass

from tests.bench import procs
from tests.bench.infra import (
    PRODUCT_REDIS_DB,
    QUEUE,
    Database,
    Deadline,
    Env,
    flush_redis,
    log,
    post,
    run_step,
    seed,
    start_clock,
    start_worker,
    wait_sink,
)
from tests.bench.procs import Proc
from tests.bench.sink import SinkClient

GATE_RATE_SECONDS = int(os.environ.get("BENCH_GATE_RATE_SECONDS", "30"))
GATE_DRAIN_COUNT = int(os.environ.get("BENCH_GATE_DRAIN_COUNT", "8000"))
GATE_KEYS = int(os.environ.get("BENCH_GATE_KEYS", "10000"))
GATE_WAITING = int(os.environ.get("BENCH_GATE_WAITING", "100"))
GATE_PAUSED = int(os.environ.get("BENCH_GATE_PAUSED", "1000000"))
RATE = 10
PARALLELISM = 3
PAR_MESSAGES = 60


@dataclass
class Drain:
    rate: float  # deliveries/s at the sink, first to last receipt
    claim_ms: float  # median time of one claim of 100


@dataclass
class GatesResult:
    per_second: list[int]  # starts of the rate-limited key in each full second
    hold_max: int  # most /hold/ requests open at once
    plain: Drain
    backlog: Drain
    backlog_rows: int
    backlog_seconds: float


def _batch(port: int, token: str, items: list[dict]) -> None:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    for start in range(0, len(items), 500):
        status, answer = post(
            port, "/v2/batch", headers, json.dumps(items[start : start + 500]).encode()
        )
        if status != 200 or b'"error"' in answer:
            raise RuntimeError(f"batch publish answered {status}: {answer[:300]!r}")


def accuracy(
    env: Env, sink: SinkClient, web_port: int, deadline: Deadline
) -> tuple[list[int], int]:
    sink.reset()
    total = RATE * (GATE_RATE_SECONDS + 1)
    rated = [
        {
            "destination": sink.url(f"/rate/{n}"),
            "headers": {
                "Upstash-Flow-Control-Key": "bench-rate",
                "Upstash-Flow-Control-Value": f"rate={RATE}, period=1s",
            },
            "body": "r",
        }
        for n in range(total)
    ]
    held = [
        {
            "destination": sink.url(f"/hold/{n}"),
            "headers": {
                "Upstash-Flow-Control-Key": "bench-par",
                "Upstash-Flow-Control-Value": f"parallelism={PARALLELISM}",
            },
            "body": "p",
        }
        for n in range(PAR_MESSAGES)
    ]
    _batch(web_port, env.token, held + rated)
    end = time.monotonic() + GATE_RATE_SECONDS + 30
    while True:
        arrived = sink.hits("/rate/")
        if len(arrived) >= total and len(sink.hits("/hold/")) >= PAR_MESSAGES:
            break
        if time.monotonic() > end:
            raise RuntimeError(f"rate-limited key: {len(arrived)} of {total} arrived")
        deadline.check("waiting for the rate-limited key")
        time.sleep(0.25)
    starts = sorted(t for times in arrived.values() for t in times)
    first = starts[0]
    per_second = [0] * GATE_RATE_SECONDS
    for t in starts:
        second = int(t - first)
        if second < GATE_RATE_SECONDS:
            per_second[second] += 1
    return per_second, int(sink.stats()["hold_max"])


def add_backlog(db: Database) -> tuple[int, float]:
    """Store the waiting backlog with SQL, copying one seeded message; (rows, seconds)."""
    started = time.monotonic()
    conn = db.conn()
    columns = [
        name
        for (name,) in conn.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_name = 'broker_message' ORDER BY ordinal_position"
        )
        if name
        not in ("id", "message_id", "queue_name", "flow_control_key", "waiting_for", "state")
    ]
    listed = ", ".join(columns)
    template = conn.execute("SELECT min(id) FROM broker_message").fetchone()
    assert template is not None
    conn.execute(
        "INSERT INTO broker_flowcontrolkey (key, parallelism, rate, period, paused,"
        " pinned_parallelism, pinned_rate, rate_count, rate_period_start, created_at,"
        " updated_at, wake_at)"
        " SELECT 'bench-key-' || g, NULL, 1, 604800, false, false, false, 1, now(), now(),"
        " now(), now() + interval '7 days' FROM generate_series(1, %s) g",
        [GATE_KEYS],
    )
    conn.execute(
        "INSERT INTO broker_queue (name, parallelism, paused, created_at, updated_at, wake_at)"
        " VALUES ('bench-paused', 1, true, now(), now(), now())"
    )
    # Built from the catalogue and integer knobs only, never from input: S608 does not apply.
    copy = (
        "INSERT INTO broker_message ({listed}, message_id, queue_name, flow_control_key,"
        " waiting_for, state) SELECT {listed}, %s || g, %s, {key}, %s, 'CREATED'"
        " FROM broker_message m CROSS JOIN generate_series(1, %s) g WHERE m.id = %s"
    )
    rows = GATE_KEYS * GATE_WAITING
    conn.execute(
        copy.format(listed=listed, key=f"'bench-key-' || (g %% {GATE_KEYS} + 1)"),
        ["msg_fcwait", "", "flow", rows, template[0]],
    )
    conn.execute(
        copy.format(listed=listed, key="''"),
        ["msg_paused", "bench-paused", "queue", GATE_PAUSED, template[0]],
    )
    conn.execute("ANALYZE broker_message")
    return rows + GATE_PAUSED, time.monotonic() - started


def claim_probe(env: Env, deadline: Deadline) -> float:
    argv = [sys.executable, "-m", "tests.bench.claim_probe", "--reps", "40", "--limit", "100"]
    out = run_step("timing the claim", argv, env.product(), deadline)
    return float(json.loads(out.strip().splitlines()[-1])["median_ms"])


def drain(
    env: Env, db: Database, sink: SinkClient, deadline: Deadline, *, with_backlog: bool
) -> tuple[Drain, int, float]:
    seed(env, db, sink, GATE_DRAIN_COUNT, deadline, service=1000, what="gates drain")
    rows, seconds = add_backlog(db) if with_backlog else (0, 0.0)
    if with_backlog:
        log(f"backlog of {rows} waiting messages stored in {seconds:.0f}s")
    claim_ms = claim_probe(env, deadline)
    sink.reset()
    product_env = env.product()
    children: list[Proc] = [
        start_worker("worker-gates", "qstash_site", QUEUE, product_env, env.workdir),
        start_clock(product_env, env.workdir),
    ]
    try:
        stats = wait_sink(sink, GATE_DRAIN_COUNT, 180, deadline, children)
        rate = GATE_DRAIN_COUNT / max(1e-6, stats["last"] - stats["first"])
        return Drain(rate, claim_ms), rows, seconds
    finally:
        for child in children:
            procs.stop(child)
        flush_redis(env, PRODUCT_REDIS_DB)


def bench_gates(
    env: Env,
    db: Database,
    sink: SinkClient,
    web_port: int,
    children: list[Proc],
    deadline: Deadline,
) -> GatesResult:
    """``children`` (a worker and clock) run the accuracy part and are stopped after it."""
    db.purge()
    per_second, hold_max = accuracy(env, sink, web_port, deadline)
    log(
        f"rate key: {min(per_second)}-{max(per_second)} starts/s"
        f" (mean {statistics.mean(per_second):.2f}); parallelism key: {hold_max} open at most"
    )
    for child in children:
        procs.stop(child)
    plain, _, _ = drain(env, db, sink, deadline, with_backlog=False)
    backlog, rows, seconds = drain(env, db, sink, deadline, with_backlog=True)
    db.purge()
    db.conn().execute("TRUNCATE broker_queue, broker_flowcontrolkey")
    return GatesResult(per_second, hold_max, plain, backlog, rows, seconds)


def summary_rows(result: GatesResult) -> tuple[list[str], list[str]]:
    ok_rate = all(RATE - 1 <= n <= RATE + 1 for n in result.per_second)
    delivery = result.backlog.rate / result.plain.rate
    claim = result.plain.claim_ms / result.backlog.claim_ms
    rows = [
        f"rate      starts/s of a rate={RATE}/1s key over {len(result.per_second)}s:"
        f" min {min(result.per_second)} max {max(result.per_second)}"
        f" mean {statistics.mean(result.per_second):.2f}  (target {RATE} +/- 1)"
        f"   {'ok' if ok_rate else 'MISSED'}",
        f"parallel  most requests open at once for a parallelism={PARALLELISM} key:"
        f" {result.hold_max}  (target {PARALLELISM}, never more)"
        f"   {'ok' if result.hold_max == PARALLELISM else 'MISSED'}",
        f"backlogs  delivery {result.backlog.rate:.0f}/s vs {result.plain.rate:.0f}/s ratio"
        f" {delivery:.2f}; claim of 100 {result.backlog.claim_ms:.1f} ms vs"
        f" {result.plain.claim_ms:.1f} ms ratio {claim:.2f}  (with / without"
        f" {result.backlog_rows} waiting messages)",
    ]
    details = [
        f"gates: per-second starts {result.per_second}; backlog = {GATE_KEYS} keys x"
        f" {GATE_WAITING} waiting (rate spent for a week) + a paused queue of {GATE_PAUSED},"
        f" stored in {result.backlog_seconds:.0f}s; drains of {GATE_DRAIN_COUNT} plain messages"
    ]
    return rows, details
