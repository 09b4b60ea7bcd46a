"""``python -m tests.bench``: publish and delivery throughput, latency, due-time lateness,
isolation, delivery under publish load, and a backlog drained with bounded memory.

Everything is served the production way (gunicorn with ``deploy/gunicorn.conf.py``'s
worker class, a prefork Celery worker, the clock command) on loopback, against a fresh
database ``qstash_bench`` and dedicated Redis databases (10 for the product, 11 for the
Celery baseline).
Throughputs are printed as ratios against baselines measured in the same run,
alternating product and baseline rounds so that noise from other work on the
machine hits both; the best round of each is kept.

- publish:   the product's ``POST /v2/publish/<url>`` vs a minimal Django JSON view behind
  one middleware (``baseline_minimal.py``), and vs the same view behind Django's default
  stack (``baseline_site.py``); same gunicorn workers and class, same client, same
  request. Also a single publish's answer time at idle over a kept-alive connection,
  and batches of 100 against single publishes, and the database's ceiling: the
  publish statements driven from psycopg without HTTP or Django (``ceiling.py``);
- delivery:  the product draining a published backlog vs a bare Celery task doing one
  ``requests.post`` per message (``baseline_celery.py``), same worker flags, same sink;
- latency:   publish-to-receipt at idle, beside a plain round trip to the sink and the
  baseline view's answer time, with a per-stage breakdown from the message log;
- delayed, retry, isolation, loaded, backlog: see ``pipeline.py`` (lateness against
  the due time, a fast destination beside hanging requests, deliveries/s while
  publishes arrive, drain rate and peak RSS per worker/clock process).

Exit status: 0 when everything ran (a missed target is a finding, not a failure),
1 when something broke (a process died, a message was lost or duplicated), 130 on
Ctrl-C. All children are stopped in every case.

Knobs (environment): BENCH_PUBLISH_SECONDS, BENCH_PUBLISH_ROUNDS, BENCH_DELIVERY_COUNT,
BENCH_BASELINE_DELIVERY_COUNT, BENCH_DELIVERY_ROUNDS, BENCH_STEADY_SECONDS,
BENCH_STEADY_RATE, BENCH_BACKLOG (the backlog stage is opt-in: BENCH_BACKLOG=50000 runs
it with that many messages), BENCH_BUDGET_SECONDS, and
BENCH_CLIENT=python to load the publish endpoint from Python processes instead of wrk,
BENCH_WORKER_CLASS=sync|gthread to serve the product and the baselines with that gunicorn
worker class instead of deploy/gunicorn.conf.py's, BENCH_WEB_WORKERS (default 4) for the
number of gunicorn workers of the product and the baselines alike (and of the ceiling's
connections), and BENCH_ONLY=publish to stop after the publish stage.

Then the store section (``store.py``): reads, filters and publish on a grown store of
BENCH_GROWN_MESSAGES (default 10,000,000) against an empty one, and deliveries while
BENCH_PRUNE_EXPIRED (default 1,000,000) expired messages are pruned. BENCH_ONLY=store
runs it alone; BENCH_STORE=0 skips it; BENCH_STORE_BUDGET_SECONDS bounds it;
BENCH_STORE_STEPS (reads,publish,drain,prune,console; also partition, the partitioned-log
experiment, with BENCH_PARTITION_ROWS) picks its parts; BENCH_GROW_LIMIT_SECONDS (1800)
bounds growing the store and adding the expired rows (BENCH_PRUNE_EXPIRED=5000000 takes
minutes). Its console step times the console's pages on a store of BENCH_CONSOLE_MESSAGES
(default 1,000,000) against an empty one (``console.py``); BENCH_ONLY=console runs that
step alone.
"""

from __future__ import annotations

import _thread
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.bench import (
    baseline_celery,
    console,
    gates,
    load,
    pipeline,
    procs,
    schedules,
    store,
)
from tests.bench.infra import (
    BASELINE_REDIS_DB,
    BENCH_DB,
    PRODUCT_REDIS_DB,
    QUEUE,
    WEB_WORKERS,
    WORKER_CLASS,
    Database,
    Env,
    ensure_alive,
    flush_redis,
    log,
    migrate,
    pct,
    post,
    post_each,
    run_step,
    seed,
    start_clock,
    start_gunicorn,
    start_sink,
    start_worker,
    wait_sink,
)
from tests.bench.pipeline import BacklogResult, IsolationResult, LatenessResult, SteadyResult
from tests.bench.procs import Deadline, Proc
from tests.bench.rss import Rss, RssSampler
from tests.bench.sink import SinkClient

BUDGET_SECONDS = float(os.environ.get("BENCH_BUDGET_SECONDS", "1200"))
# The store section builds a grown store once (minutes) and prunes a million rows.
STORE_BUDGET_SECONDS = float(os.environ.get("BENCH_STORE_BUDGET_SECONDS", "3600"))

PUBLISH_SECONDS = float(os.environ.get("BENCH_PUBLISH_SECONDS", "5"))
PUBLISH_ROUNDS = int(os.environ.get("BENCH_PUBLISH_ROUNDS", "3"))
PUBLISH_CONNECTIONS = 16
PUBLISH_REQUESTS = 3000  # per round, for the Python client (wrk is bounded by time)
IDLE_COUNT = 300  # single publishes one after the other, for the idle answer time
IDLE_GAP = 0.005
ONLY = os.environ.get("BENCH_ONLY", "")
DELIVERY_COUNT = int(os.environ.get("BENCH_DELIVERY_COUNT", "8000"))
BASELINE_DELIVERY_COUNT = int(os.environ.get("BENCH_BASELINE_DELIVERY_COUNT", "2500"))
DELIVERY_ROUNDS = int(os.environ.get("BENCH_DELIVERY_ROUNDS", "2"))
LATENCY_COUNT = 200
LATENCY_GAP = 0.020
BODY = b'{"hello":"world","bench":true}'

TARGET_PUBLISH = 0.5  # against the one-middleware view (issue 10)
TARGET_PUBLISH_FULL_STACK = 0.8  # the target before issue 10, against the default stack
TARGET_IDLE_P50_MS = 2.0
TARGET_BATCH = 15.0
BATCH_SIZE = 100
# Messages per statement of the grouped ceiling: one committer per worker process
# gathering what its 4 request threads hold (issue 10, group commit).
GROUPED_ROWS = 4
TARGET_DELIVERY = 4.0
TARGET_P50_MS = 20.0
DELAYS = "1-3 s"
TARGET_LATE = pipeline.TARGET_LATE_P99_MS
TARGET_ISO = pipeline.TARGET_ISOLATION_P99_MS


@dataclass
class Servers:
    sink: SinkClient
    web: Proc
    web_port: int
    baseline: Proc  # the view behind Django's default middleware stack
    baseline_port: int
    minimal: Proc  # the same view behind one middleware: the main baseline
    minimal_port: int


# --- 1. publish ------------------------------------------------------------------------


@dataclass
class PublishResult:
    product: list[load.LoadResult]
    baseline: list[load.LoadResult]
    minimal: list[load.LoadResult]
    batch: list[load.LoadResult]  # requests of BATCH_SIZE messages each
    stored: int
    idle_ms: list[float]  # single publishes at idle, client's answer time
    # The database's ceiling (ceiling.py): rows/s of the publish statements from
    # psycopg, one message per statement, and GROUPED_ROWS per statement.
    ceiling: list[float] = field(default_factory=list)
    grouped: list[float] = field(default_factory=list)

    @property
    def batch_rate(self) -> float:
        """Messages accepted per second through batches."""
        return max(r.rate for r in self.batch) * BATCH_SIZE

    @property
    def product_rate(self) -> float:
        return max(r.rate for r in self.product)

    @property
    def baseline_rate(self) -> float:
        return max(r.rate for r in self.baseline)

    @property
    def minimal_rate(self) -> float:
        return max(r.rate for r in self.minimal)


def run_load(
    port: int,
    path: str,
    headers: dict[str, str],
    seconds: float,
    work: Path,
    body: bytes = BODY,
) -> load.LoadResult:
    if load.wrk_available():
        return load.run_wrk(
            port=port,
            path=path,
            headers=headers,
            body=body,
            seconds=seconds,
            connections=PUBLISH_CONNECTIONS,
            threads=2,
            workdir=work,
        )
    return load.run_python(
        port=port,
        path=path,
        headers=headers,
        body=body,
        total=PUBLISH_REQUESTS,
        seconds=seconds * 2,
        processes=2,
        threads=PUBLISH_CONNECTIONS // 2,
    )


def run_ceiling(env: Env, url: str, rows: int, deadline: Deadline) -> float:
    """Rows/s of the publish statements from psycopg, one connection per web worker."""
    argv = [sys.executable, "-m", "tests.bench.ceiling", "--url", url]
    argv += ["--connections", str(WEB_WORKERS), "--seconds", str(PUBLISH_SECONDS)]
    argv += ["--rows", str(rows)]
    out = run_step("measuring the database's ceiling", argv, env.product(), deadline)
    return float(json.loads(out.strip().splitlines()[-1])["rate"])


def first_post(
    port: int, path: str, headers: dict[str, str], deadline: Deadline
) -> tuple[int, bytes]:
    """The first request, retried while the workers are still starting: gunicorn binds
    before its workers have imported Django, which takes seconds each on a busy machine
    (with BENCH_WEB_WORKERS=8, three servers start 24 of them)."""
    until = time.monotonic() + 60
    while True:
        deadline.check("waiting for the web workers")
        try:
            return post(port, path, headers, BODY)
        except (TimeoutError, OSError):
            if time.monotonic() > until:
                raise


def bench_publish(env: Env, db: Database, s: Servers, deadline: Deadline) -> PublishResult:
    path = "/v2/publish/" + s.sink.url("/x")
    headers = {"Authorization": f"Bearer {env.token}", "Content-Type": "application/json"}
    try:
        status, answer = first_post(s.web_port, path, headers, deadline)
        if status != 200 or b"messageId" not in answer:
            raise RuntimeError(f"publish answered {status}: {answer[:300]!r}\n{s.web.tail()}")
        for who, port, proc in (
            ("baseline", s.baseline_port, s.baseline),
            ("one-middleware baseline", s.minimal_port, s.minimal),
        ):
            status, answer = first_post(port, path, headers, deadline)
            if status != 200:
                raise RuntimeError(f"{who} answered {status}: {answer[:300]!r}\n{proc.tail()}")
        tool = "wrk" if load.wrk_available() else "python client"
        log(f"publish: warming up the three servers ({tool}, {PUBLISH_CONNECTIONS} connections)")
        for port in (s.minimal_port, s.baseline_port, s.web_port):
            run_load(port, path, headers, 2, env.workdir)
        time.sleep(1.0)
        idle_paths = ["/v2/publish/" + s.sink.url(f"/idle/{i}") for i in range(IDLE_COUNT)]
        idle_ms = post_each(s.web_port, idle_paths, headers, BODY, IDLE_GAP)
        log(f"publish at idle: p50 {statistics.median(idle_ms):.2f} ms")
        db.purge()
        product: list[load.LoadResult] = []
        baseline: list[load.LoadResult] = []
        minimal: list[load.LoadResult] = []
        ceiling: list[float] = []
        grouped: list[float] = []
        for n in range(PUBLISH_ROUNDS):
            deadline.check("measuring publish")
            minimal.append(run_load(s.minimal_port, path, headers, PUBLISH_SECONDS, env.workdir))
            baseline.append(run_load(s.baseline_port, path, headers, PUBLISH_SECONDS, env.workdir))
            product.append(run_load(s.web_port, path, headers, PUBLISH_SECONDS, env.workdir))
            ensure_alive(s.minimal, s.baseline, s.web)
            ceiling.append(run_ceiling(env, s.sink.url("/x"), 1, deadline))
            grouped.append(run_ceiling(env, s.sink.url("/x"), GROUPED_ROWS, deadline))
            log(
                f"publish round {n + 1}: product {product[-1].rate:.0f}/s,"
                f" one-middleware view {minimal[-1].rate:.0f}/s,"
                f" default-stack view {baseline[-1].rate:.0f}/s,"
                f" ceiling {ceiling[-1]:.0f}/s ({grouped[-1]:.0f}/s by {GROUPED_ROWS})"
            )
        batch_body = json.dumps(
            [
                {"destination": s.sink.url(f"/b{n}"), "headers": headers, "body": BODY.decode()}
                for n in range(BATCH_SIZE)
            ]
        ).encode()
        batch: list[load.LoadResult] = []
        for n in range(PUBLISH_ROUNDS):
            deadline.check("measuring batch publish")
            batch.append(
                run_load(s.web_port, "/v2/batch", headers, PUBLISH_SECONDS, env.workdir, batch_body)
            )
            ensure_alive(s.web)
            log(f"batch round {n + 1}: {batch[-1].rate * BATCH_SIZE:.0f} messages/s")
        for who, results in (
            ("product", product),
            ("baseline", baseline),
            ("one-middleware baseline", minimal),
            ("batch", batch),
        ):
            for r in results:
                if r.errors:
                    raise RuntimeError(f"{who} publish: {r.errors} of {r.requests} requests failed")
        time.sleep(1.0)  # requests wrk left in flight
        stored = db.scalar("SELECT count(*) FROM broker_message")
        answered = sum(r.requests for r in product) + BATCH_SIZE * sum(r.requests for r in batch)
        if stored < answered:
            raise RuntimeError(f"publish answered {answered} messages but stored {stored}")
        return PublishResult(product, baseline, minimal, batch, stored, idle_ms, ceiling, grouped)
    finally:
        db.purge()
        flush_redis(env, PRODUCT_REDIS_DB)  # the hints of messages that no longer exist


# --- 2. delivery ----------------------------------------------------------------------


@dataclass
class DeliveryRun:
    count: int
    seconds: float
    sink_seconds: float  # first to last receipt at the sink
    hints: int = 0
    rss: dict[str, Rss] = field(default_factory=dict)  # worker and clock processes

    @property
    def rate(self) -> float:
        return self.count / self.seconds


@dataclass
class DeliveryResult:
    product: list[DeliveryRun] = field(default_factory=list)
    baseline: list[DeliveryRun] = field(default_factory=list)

    @property
    def product_rate(self) -> float:
        return max(r.rate for r in self.product)

    @property
    def baseline_rate(self) -> float:
        return max(r.rate for r in self.baseline)


def delivery_baseline(env: Env, sink: SinkClient, deadline: Deadline) -> DeliveryRun:
    count = BASELINE_DELIVERY_COUNT
    flush_redis(env, BASELINE_REDIS_DB)
    sink.reset()
    started = time.monotonic()
    argv = [sys.executable, "-m", "tests.bench.baseline_celery", str(count), sink.url("/d")]
    argv.append(BODY.decode())
    run_step("enqueueing the baseline tasks", argv, env.baseline_worker(), deadline)
    log(f"delivery baseline: {count} tasks enqueued in {time.monotonic() - started:.1f}s")
    worker = start_worker(
        "worker-baseline",
        "tests.bench.baseline_celery",
        baseline_celery.QUEUE,
        env.baseline_worker(),
        env.workdir,
    )
    try:
        wait_sink(sink, count, 180, deadline, [worker])  # ~5 s on an idle machine
        time.sleep(0.3)  # anything extra would be a duplicate
        stats = sink.stats()
        if stats["count"] != count:
            raise RuntimeError(f"baseline: the sink received {stats['count']} for {count} tasks")
        seconds = stats["last"] - stats["first"]
        return DeliveryRun(count, seconds, seconds)
    finally:
        procs.stop(worker)
        flush_redis(env, BASELINE_REDIS_DB)


def delivery_product(
    env: Env, db: Database, sink: SinkClient, deadline: Deadline
) -> tuple[DeliveryRun, list[Proc]]:
    """Seed, then start worker and clock; they are returned still running."""
    count = DELIVERY_COUNT
    hints = seed(env, db, sink, count, deadline)
    sink.reset()
    product_env = env.product()
    worker = start_worker("worker", "qstash_site", QUEUE, product_env, env.workdir)
    clock = start_clock(product_env, env.workdir)
    children = [worker, clock]
    try:
        with RssSampler({"worker": worker.pid, "clock": clock.pid}) as rss:
            wait_sink(sink, count, 120, deadline, children)
            done_at = pipeline.wait_delivered(db, 60, deadline)
        stats = sink.stats()
        if stats["count"] != count:
            raise RuntimeError(
                f"the sink received {stats['count']} requests for {count} messages (duplicates)"
            )
        run = DeliveryRun(
            count, done_at - stats["first"], stats["last"] - stats["first"], hints, rss.seen
        )
        return run, children
    except BaseException:
        for child in children:
            procs.stop(child)
        raise


def bench_delivery(
    env: Env, db: Database, sink: SinkClient, deadline: Deadline
) -> tuple[DeliveryResult, list[Proc]]:
    result = DeliveryResult()
    children: list[Proc] = []
    for n in range(DELIVERY_ROUNDS):
        for child in children:  # the previous round's worker and clock
            procs.stop(child)
        result.baseline.append(delivery_baseline(env, sink, deadline))
        run, children = delivery_product(env, db, sink, deadline)
        result.product.append(run)
        log(
            f"delivery round {n + 1}: product {run.rate:.0f}/s,"
            f" baseline {result.baseline[-1].rate:.0f}/s"
        )
    return result, children


# --- 3. latency -------------------------------------------------------------------------


@dataclass
class LatencyResult:
    latencies_ms: list[float]
    api_ms: list[float]
    baseline_api_ms: list[float]
    reference_ms: list[float]
    stages: dict[str, float]


def sequential(port: int, paths: list[str], headers: dict[str, str]) -> tuple[list[float], dict]:
    """POST each path in turn, LATENCY_GAP apart; (answer times in ms, {path: send time})."""
    answers: list[float] = []
    sent: dict[str, float] = {}
    for path in paths:
        t0 = time.time()
        status, answer = post(port, path, headers, BODY)
        answers.append((time.time() - t0) * 1000)
        if status != 200:
            raise RuntimeError(f"POST {path} answered {status}: {answer[:300]!r}")
        sent[path] = t0
        time.sleep(LATENCY_GAP)
    return answers, sent


def stage_breakdown(db: Database, sent: dict[str, float], arrived: dict[str, float]) -> dict:
    """Median ms per stage, from the message log (best effort: the schema may move)."""
    try:
        rows = (
            db.conn()
            .execute(
                "SELECT m.url, l.state, extract(epoch FROM l.time)::float8 FROM broker_logentry l"
                " JOIN broker_message m ON m.id = l.message_id WHERE m.url LIKE '%%/lat/%%'"
            )
            .fetchall()
        )
    except Exception:
        return {}
    by_path: dict[str, dict[str, float]] = {}
    for url, state, when in rows:
        by_path.setdefault("/lat/" + url.rsplit("/lat/", 1)[1], {})[state] = when
    spans: dict[str, list[float]] = {
        "send -> CREATED": [],
        "CREATED -> ACTIVE (hint, claim)": [],
        "ACTIVE -> receipt": [],
        "receipt -> DELIVERED": [],
    }
    for path, t in by_path.items():
        if not {"CREATED", "ACTIVE", "DELIVERED"} <= t.keys() or path not in arrived:
            continue
        spans["send -> CREATED"].append(t["CREATED"] - sent[path])
        spans["CREATED -> ACTIVE (hint, claim)"].append(t["ACTIVE"] - t["CREATED"])
        spans["ACTIVE -> receipt"].append(arrived[path] - t["ACTIVE"])
        spans["receipt -> DELIVERED"].append(t["DELIVERED"] - arrived[path])
    return {k: statistics.median(v) * 1000 for k, v in spans.items() if v}


def bench_latency(
    env: Env, db: Database, s: Servers, children: list[Proc], deadline: Deadline
) -> LatencyResult:
    db.purge()
    s.sink.reset()
    time.sleep(1.5)  # let the system settle after the delivery run
    plain = {"Content-Type": "application/json"}
    reference, _ = sequential(s.sink.port, [f"/ref/{i}" for i in range(LATENCY_COUNT)], plain)
    deadline.check("measuring latency")
    headers = {"Authorization": f"Bearer {env.token}", "Content-Type": "application/json"}
    paths = ["/v2/publish/" + s.sink.url(f"/base/{i}") for i in range(LATENCY_COUNT // 2)]
    baseline_api, _ = sequential(s.baseline_port, paths, headers)
    deadline.check("measuring latency")
    paths = ["/v2/publish/" + s.sink.url(f"/lat/{i}") for i in range(LATENCY_COUNT)]
    api, sent_full = sequential(s.web_port, paths, headers)
    sent = {p.split(str(s.sink.port), 1)[1]: t for p, t in sent_full.items()}
    end = time.monotonic() + 20
    while True:
        arrived = s.sink.times()
        if all(p in arrived for p in sent):
            break
        if time.monotonic() > end:
            missing = len([p for p in sent if p not in arrived])
            raise RuntimeError(f"{missing} of {len(sent)} latency messages never arrived")
        ensure_alive(*children)
        time.sleep(0.1)
    time.sleep(0.5)  # the DELIVERED rows of the last ones
    latencies = [(arrived[p] - t0) * 1000 for p, t0 in sent.items()]
    stages = stage_breakdown(db, sent, arrived)
    return LatencyResult(latencies, api, baseline_api, reference, stages)


# --- the run --------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def rates(runs: list, fmt: str = "{:.0f}") -> str:
    return ", ".join(fmt.format(r.rate) for r in runs)


def publish_rows(pub: PublishResult) -> list[str]:
    mr = pub.product_rate / pub.minimal_rate
    fr = pub.product_rate / pub.baseline_rate
    br = pub.batch_rate / pub.product_rate
    idle = statistics.median(pub.idle_ms)
    return [
        f"publish   {pub.product_rate:6.0f}/s   one-middleware Django view        "
        f"{pub.minimal_rate:6.0f}/s   ratio {mr:5.2f}  (target >= {TARGET_PUBLISH})"
        f"   {verdict(mr >= TARGET_PUBLISH)}",
        f"publish   {pub.product_rate:6.0f}/s   default-stack Django view         "
        f"{pub.baseline_rate:6.0f}/s   ratio {fr:5.2f}  (former target >= "
        f"{TARGET_PUBLISH_FULL_STACK})   {verdict(fr >= TARGET_PUBLISH_FULL_STACK)}",
        f"single    p50 {idle:.2f} ms  p95 {pct(pub.idle_ms, 0.95):.2f} ms  one publish at idle,"
        f" kept-alive connection  (target p50 < {TARGET_IDLE_P50_MS:g} ms)"
        f"   {verdict(idle < TARGET_IDLE_P50_MS)}",
        f"batch     {pub.batch_rate:6.0f}/s   single publish (same run)         "
        f"{pub.product_rate:6.0f}/s   ratio {br:5.2f}  (target >= {TARGET_BATCH:g})"
        f"    {verdict(br >= TARGET_BATCH)}",
        *ceiling_rows(pub),
    ]


def ceiling_rows(pub: PublishResult) -> list[str]:
    """The database's ceiling against the same view: what no web tier can exceed."""
    if not pub.ceiling:
        return []
    ceiling, grouped = max(pub.ceiling), max(pub.grouped)
    cr, gr = ceiling / pub.minimal_rate, grouped / pub.minimal_rate
    why = (
        "under 0.5: the publish target is out of reach of any web-tier change on this machine"
        if cr < TARGET_PUBLISH
        else "the target is within the database's reach"
    )
    return [
        f"ceiling   {ceiling:6.0f}/s   one-middleware Django view        "
        f"{pub.minimal_rate:6.0f}/s   ratio {cr:5.2f}  (publish statements + NOTIFY from"
        f" psycopg, {WEB_WORKERS} connections, no HTTP, no Django: {why})",
        f"ceiling   {grouped:6.0f}/s   one-middleware Django view        "
        f"{pub.minimal_rate:6.0f}/s   ratio {gr:5.2f}  (the same, {GROUPED_ROWS} messages per"
        f" statement: group commit's best case)",
    ]


def publish_details(pub: PublishResult) -> str:
    return (
        f"publish rounds /s: product {rates(pub.product)}; one-middleware view"
        f" {rates(pub.minimal)}; default-stack view {rates(pub.baseline)}"
        f"  ({pub.product[0].tool}, {PUBLISH_CONNECTIONS} connections, gunicorn"
        f" {WEB_WORKERS} workers, {WORKER_CLASS or 'deploy/gunicorn.conf.py worker class'};"
        f" best round of each; {pub.stored} messages stored); batch requests /s"
        f" {rates(pub.batch)} of {BATCH_SIZE} messages; ceiling rows/s"
        f" {', '.join(f'{r:.0f}' for r in pub.ceiling)}, by {GROUPED_ROWS}"
        f" {', '.join(f'{r:.0f}' for r in pub.grouped)}"
    )


def delivery_row(dlv: DeliveryResult) -> str:
    dr = dlv.product_rate / dlv.baseline_rate
    return (
        f"delivery  {dlv.product_rate:6.0f}/s   baseline (bare Celery + requests) "
        f"{dlv.baseline_rate:6.0f}/s   ratio {dr:5.2f}  (target >= {TARGET_DELIVERY:g})"
        f"     {verdict(dr >= TARGET_DELIVERY)}"
    )


def backlog_row(backlog: BacklogResult) -> str:
    return (
        f"backlog   {backlog.count} msgs drained {backlog.rate:5.0f}/s;"
        f" peak RSS MiB: {pipeline.rss_line(backlog.rss)}"
    )


def delivery_details(dlv: DeliveryResult) -> str:
    best = max(dlv.product, key=lambda r: r.rate)
    return (
        f"delivery rounds /s: product {rates(dlv.product)}; baseline {rates(dlv.baseline)}"
        f"  (best of each; product {best.count} msgs, first receipt -> all DELIVERED in"
        f" {best.seconds:.2f}s, sink alone {best.count / best.sink_seconds:.0f}/s,"
        f" {best.hints} hints queued; baseline {dlv.baseline[0].count} tasks)"
    )


def summary(
    pub: PublishResult,
    dlv: DeliveryResult,
    lat: LatencyResult,
    late: LatenessResult,
    iso: IsolationResult,
    steady: SteadyResult,
    backlog: BacklogResult | None,
    gated: gates.GatesResult,
    timed: schedules.SchedulesResult,
) -> None:
    p50, p95 = statistics.median(lat.latencies_ms), pct(lat.latencies_ms, 0.95)
    best = max(dlv.product, key=lambda r: r.rate)
    rows = [
        *publish_rows(pub),
        delivery_row(dlv),
        f"latency   p50 {p50:.1f} ms  p95 {p95:.1f} ms  (target p50 < {TARGET_P50_MS:g} ms)"
        f"   {verdict(p50 < TARGET_P50_MS)}",
        f"delayed   {pipeline.ms_stats(late.delayed_ms)}  receipt - due time,"
        f" {len(late.delayed_ms)} msgs delayed {DELAYS}  (target p99 < {TARGET_LATE:g} ms)"
        f"   {verdict(pct(late.delayed_ms, 0.99) < TARGET_LATE)}",
        f"retry     {pipeline.ms_stats(late.retry_ms)}  retry receipt - (500 answered + 1 s),"
        f" {len(late.retry_ms)} msgs  (target p99 < {TARGET_LATE:g} ms)"
        f"   {verdict(pct(late.retry_ms, 0.99) < TARGET_LATE)}",
        f"isolation {pipeline.ms_stats(iso.fast_ms)}  fast path publish -> receipt,"
        f" {iso.held_at_start} requests hanging at a slow path  (target p99 < {TARGET_ISO:g} ms)"
        f"   {verdict(pct(iso.fast_ms, 0.99) < TARGET_ISO)}",
        f"loaded    deliveries {steady.delivery_rate:5.0f}/s while publishes arrive at"
        f" {steady.publish_rate:5.0f}/s (same {steady.seconds:.1f}s window);"
        f" lag {pipeline.ms_stats(steady.lag_ms)}",
    ]
    if backlog is not None:
        rows.append(backlog_row(backlog))
    else:
        rows.append(
            f"backlog   not run (opt-in: BENCH_BACKLOG={pipeline.BACKLOG_SUGGESTED} make bench)"
        )
    gate_rows, gate_details = gates.summary_rows(gated)
    schedule_rows, schedule_details = schedules.summary_rows(timed)
    rows += gate_rows + schedule_rows
    details = [
        publish_details(pub),
        delivery_details(dlv),
        f"latency reference: publish API answer p50 {statistics.median(lat.api_ms):.1f} ms"
        f" (baseline view {statistics.median(lat.baseline_api_ms):.1f} ms);"
        f" plain POST to the sink p50 {statistics.median(lat.reference_ms):.2f} ms"
        f" p95 {pct(lat.reference_ms, 0.95):.2f} ms; latency max {max(lat.latencies_ms):.1f} ms",
    ]
    if lat.stages:
        details.append(
            "latency stages (median ms): "
            + ", ".join(f"{k} {v:.1f}" for k, v in lat.stages.items())
        )
    details += [
        f"delayed: lateness min {min(late.delayed_ms):.1f} ms max {max(late.delayed_ms):.1f} ms"
        f" (negative = early), {sum(ms > 500 for ms in late.delayed_ms)} over 500 ms;"
        f" retry max {max(late.retry_ms):.1f} ms, vs the due time the product stored"
        f" {pipeline.ms_stats(late.retry_due_ms)}; first publish -> last receipt"
        f" {late.seconds:.1f}s, none sent twice",
        f"isolation: {iso.held_at_start} slow requests held when the fast publishes began,"
        f" {iso.held_at_end} still held when the last fast one arrived, answered after"
        f" {iso.held_seconds:.1f}s (past one lease), none sent twice; fast max"
        f" {max(iso.fast_ms):.1f} ms (idle latency p50 {p50:.1f} ms, same run)",
        f"loaded: offered {steady.offered_rate:.0f} msgs/s as {pipeline.STEADY_BATCH}-message"
        f" batches from {pipeline.STEADY_PUBLISHERS} threads ({steady.late_requests} requests"
        f" >100 ms behind schedule, {steady.unsent} not sent); {steady.published} published,"
        f" {steady.delivered}"
        f" delivered in the window, the rest within {steady.drain_seconds:.1f}s after;"
        f" lag max {max(steady.lag_ms):.0f} ms",
    ]
    if backlog is not None:
        details.append(
            f"backlog: first receipt -> all DELIVERED {backlog.seconds:.1f}s, sink alone"
            f" {backlog.count / backlog.sink_seconds:.0f}/s; RSS MiB after the drain:"
            f" {pipeline.rss_line(backlog.rss, 'last')}; peak RSS MiB draining"
            f" {best.count} msgs (delivery round): {pipeline.rss_line(best.rss)}"
        )
    details += gate_details + schedule_details
    print()
    print("=" * 100)
    print("\n".join(rows))
    print("-" * 100)
    print("\n".join(details))
    print("=" * 100, flush=True)


def main() -> int:
    """The pipeline stages, then the store section (``tests/bench/store.py``).

    BENCH_ONLY=store runs the store section alone, BENCH_ONLY=publish the publish stage
    alone; BENCH_STORE=0 skips the store section.
    """
    if ONLY not in ("", "store", "publish", "delivery", "console"):
        print(f"BENCH_ONLY={ONLY!r}: use store, publish, delivery or console", file=sys.stderr)
        return 2
    if ONLY == "console":
        return main_store(console_only=True)
    code = 0 if ONLY == "store" else main_pipeline()
    if (
        code == 0
        and ONLY not in ("publish", "delivery")
        and (ONLY == "store" or os.environ.get("BENCH_STORE", "1") != "0")
    ):
        code = main_store()
    return code


def main_store(*, console_only: bool = False) -> int:
    procs.install_cleanup()
    deadline = Deadline(STORE_BUDGET_SECONDS)
    workdir = Path(tempfile.mkdtemp(prefix="qstash-bench-store-"))
    env = Env.from_environ(workdir)
    started = time.monotonic()
    failed = True
    try:
        if console_only:
            code = console.main_console(env, workdir, deadline)
        else:
            code = store.run(env, workdir, deadline)
        failed = code != 0
        return code
    except KeyboardInterrupt:
        print("\nbenchmark interrupted; stopping everything", file=sys.stderr, flush=True)
        return 130
    except Exception as exc:
        print(f"\nSTORE BENCHMARK FAILED: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        procs.stop_all()
        flush_redis(env, PRODUCT_REDIS_DB)
        if failed:
            print(f"process logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
        log(f"store section done in {time.monotonic() - started:.0f}s")


def main_pipeline() -> int:
    procs.install_cleanup()
    deadline = Deadline(BUDGET_SECONDS)
    watchdog = threading.Timer(BUDGET_SECONDS + 20, _thread.interrupt_main)
    watchdog.daemon = True
    watchdog.start()
    workdir = Path(tempfile.mkdtemp(prefix="qstash-bench-"))
    env = Env.from_environ(workdir)
    db = Database(env)
    failed = True
    started = time.monotonic()
    try:
        log(
            f"fresh database {BENCH_DB}, Redis dbs {PRODUCT_REDIS_DB}/{BASELINE_REDIS_DB};"
            f" logs in {workdir}"
        )
        db.recreate()
        migrate(env, deadline)
        flush_redis(env, PRODUCT_REDIS_DB)
        flush_redis(env, BASELINE_REDIS_DB)
        _, sink = start_sink(env, deadline)
        web, web_port = start_gunicorn("web", "qstash_site.wsgi", env.product(), workdir, deadline)
        base, base_port = start_gunicorn(
            "web-baseline",
            "tests.bench.baseline_site:application",
            env.baseline_web("tests.bench.baseline_site"),
            workdir,
            deadline,
        )
        minimal, minimal_port = start_gunicorn(
            "web-baseline-minimal",
            "tests.bench.baseline_minimal:application",
            env.baseline_web("tests.bench.baseline_minimal"),
            workdir,
            deadline,
        )
        servers = Servers(sink, web, web_port, base, base_port, minimal, minimal_port)

        stages = 9 if pipeline.BACKLOG > 0 else 8
        if ONLY != "delivery":
            log(f"1/{stages} publish throughput (no worker running)")
            pub = bench_publish(env, db, servers, deadline)
        if ONLY == "publish":
            print("\n" + "=" * 100)
            print("\n".join(publish_rows(pub)))
            print("-" * 100)
            print(publish_details(pub))
            print("=" * 100, flush=True)
            failed = False
            return 0

        log(f"2/{stages} delivery throughput")
        dlv, children = bench_delivery(env, db, sink, deadline)
        if ONLY == "delivery":
            rows = [delivery_row(dlv), delivery_details(dlv)]
            if pipeline.BACKLOG > 0:
                log(f"draining a backlog of {pipeline.BACKLOG} (memory sampled)")
                drained, children = pipeline.bench_backlog(env, db, sink, children, deadline)
                best = max(dlv.product, key=lambda r: r.rate)
                rows.append(backlog_row(drained))
                rows.append(
                    f"backlog: peak RSS MiB draining {best.count} msgs (delivery round):"
                    f" {pipeline.rss_line(best.rss)}"
                )
            print("\n" + "=" * 100)
            print("\n".join(rows))
            print("=" * 100, flush=True)
            failed = False
            return 0

        log(f"3/{stages} idle latency (web, worker and clock running)")
        lat = bench_latency(env, db, servers, children, deadline)

        log(f"4/{stages} lateness of delayed messages and retries")
        late = pipeline.bench_lateness(env, db, sink, web_port, children, deadline)
        log(
            f"delayed {pipeline.ms_stats(late.delayed_ms)};"
            f" retry {pipeline.ms_stats(late.retry_ms)}"
        )

        log(f"5/{stages} isolation: a fast path beside {pipeline.SLOW_COUNT} hanging requests")
        iso = pipeline.bench_isolation(env, db, sink, web_port, children, deadline)
        log(f"fast destination {pipeline.ms_stats(iso.fast_ms)}")

        log(f"6/{stages} deliveries while {pipeline.STEADY_RATE} msgs/s are published")
        steady = pipeline.bench_steady(env, db, sink, web_port, children, deadline)
        log(f"deliveries {steady.delivery_rate:.0f}/s, publishes {steady.publish_rate:.0f}/s")

        backlog = None
        if pipeline.BACKLOG > 0:
            log(f"7/{stages} draining a backlog of {pipeline.BACKLOG} (memory sampled)")
            backlog, children = pipeline.bench_backlog(env, db, sink, children, deadline)
            log(f"backlog drained {backlog.rate:.0f}/s")
        log(
            f"{stages - 1}/{stages} queues and flow control: limits at the sink, claims by backlogs"
        )
        gated = gates.bench_gates(env, db, sink, web_port, children, deadline)
        log(f"{stages}/{stages} {schedules.SCHED_COUNT} schedules due at one minute")
        timed = schedules.bench_schedules(env, db, sink, web_port, [], deadline, run_load)
        summary(pub, dlv, lat, late, iso, steady, backlog, gated, timed)
        failed = False
        return 0
    except KeyboardInterrupt:
        print("\nbenchmark interrupted; stopping everything", file=sys.stderr, flush=True)
        return 130
    except Exception as exc:  # a broken run: say what, keep the logs
        print(f"\nBENCHMARK FAILED: {exc.__class__.__name__}: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        watchdog.cancel()
        procs.stop_all()
        try:
            db.drop()
            flush_redis(env, PRODUCT_REDIS_DB)
            flush_redis(env, BASELINE_REDIS_DB)
        except Exception as exc:
            print(f"cleanup: {exc}", file=sys.stderr)
        if failed:
            print(f"process logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
        log(f"done in {time.monotonic() - started:.0f}s")


if __name__ == "__main__":
    sys.exit(main())
