"""``python -m tests.bench``: publish throughput, delivery throughput and idle latency.

Everything is served the production way (gunicorn sync workers, a prefork Celery
worker, the clock command) on loopback, against a fresh database ``qstash_bench``
and dedicated Redis databases (13 for the product, 12 for the Celery baseline).
Throughputs are printed as ratios against baselines measured in the same run,
alternating product and baseline rounds so that noise from other work on the
machine hits both; the best round of each is kept.

- publish:  the product's ``POST /v2/publish/<url>`` vs a minimal Django JSON view
  (``baseline_site.py``), same gunicorn, same client, same request;
- delivery: the product draining a published backlog vs a bare Celery task doing one
  ``requests.post`` per message (``baseline_celery.py``), same worker flags, same sink;
- latency:  publish-to-receipt at idle, beside a plain round trip to the sink and the
  baseline view's answer time, with a per-stage breakdown from the message log.

Exit status: 0 when everything ran (a missed target is a finding, not a failure),
1 when something broke (a process died, a message was lost or duplicated), 130 on
Ctrl-C. All children are stopped in every case.

Knobs (environment): BENCH_PUBLISH_SECONDS, BENCH_PUBLISH_ROUNDS, BENCH_DELIVERY_COUNT,
BENCH_BASELINE_DELIVERY_COUNT, BENCH_DELIVERY_ROUNDS, BENCH_BUDGET_SECONDS, and
BENCH_CLIENT=python to load the publish endpoint from Python processes instead of wrk.
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

from tests.bench import baseline_celery, load, procs
from tests.bench.infra import (
    BASELINE_REDIS_DB,
    PRODUCT_REDIS_DB,
    QUEUE,
    Database,
    Env,
    ensure_alive,
    flush_redis,
    log,
    migrate,
    pct,
    post,
    queue_length,
    run_step,
    start_clock,
    start_gunicorn,
    start_sink,
    start_worker,
)
from tests.bench.procs import Deadline, Proc
from tests.bench.sink import SinkClient

BUDGET_SECONDS = float(os.environ.get("BENCH_BUDGET_SECONDS", "320"))

PUBLISH_SECONDS = float(os.environ.get("BENCH_PUBLISH_SECONDS", "5"))
PUBLISH_ROUNDS = int(os.environ.get("BENCH_PUBLISH_ROUNDS", "3"))
PUBLISH_CONNECTIONS = 16
PUBLISH_REQUESTS = 3000  # per round, for the Python client (wrk is bounded by time)
DELIVERY_COUNT = int(os.environ.get("BENCH_DELIVERY_COUNT", "8000"))
BASELINE_DELIVERY_COUNT = int(os.environ.get("BENCH_BASELINE_DELIVERY_COUNT", "2500"))
DELIVERY_ROUNDS = int(os.environ.get("BENCH_DELIVERY_ROUNDS", "2"))
LATENCY_COUNT = 200
LATENCY_GAP = 0.020
BODY = b'{"hello":"world","bench":true}'

TARGET_PUBLISH = 0.8
TARGET_BATCH = 8.0
BATCH_SIZE = 100
TARGET_DELIVERY = 2.0
TARGET_P50_MS = 20.0


@dataclass
class Servers:
    sink: SinkClient
    web: Proc
    web_port: int
    baseline: Proc
    baseline_port: int


# --- 1. publish ------------------------------------------------------------------------


@dataclass
class PublishResult:
    product: list[load.LoadResult]
    baseline: list[load.LoadResult]
    batch: list[load.LoadResult]  # requests of BATCH_SIZE messages each
    stored: int

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


def bench_publish(env: Env, db: Database, s: Servers, deadline: Deadline) -> PublishResult:
    path = "/v2/publish/" + s.sink.url("/x")
    headers = {"Authorization": f"Bearer {env.token}", "Content-Type": "application/json"}
    try:
        status, answer = post(s.web_port, path, headers, BODY)
        if status != 200 or b"messageId" not in answer:
            raise RuntimeError(f"publish answered {status}: {answer[:300]!r}\n{s.web.tail()}")
        status, answer = post(s.baseline_port, path, headers, BODY)
        if status != 200:
            raise RuntimeError(f"baseline answered {status}: {answer[:300]!r}\n{s.baseline.tail()}")
        tool = "wrk" if load.wrk_available() else "python client"
        log(f"publish: warming up both servers ({tool}, {PUBLISH_CONNECTIONS} connections)")
        run_load(s.baseline_port, path, headers, 2, env.workdir)
        run_load(s.web_port, path, headers, 2, env.workdir)
        db.purge()
        product: list[load.LoadResult] = []
        baseline: list[load.LoadResult] = []
        for n in range(PUBLISH_ROUNDS):
            deadline.check("measuring publish")
            baseline.append(run_load(s.baseline_port, path, headers, PUBLISH_SECONDS, env.workdir))
            product.append(run_load(s.web_port, path, headers, PUBLISH_SECONDS, env.workdir))
            ensure_alive(s.baseline, s.web)
            log(
                f"publish round {n + 1}: product {product[-1].rate:.0f}/s,"
                f" baseline {baseline[-1].rate:.0f}/s"
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
        for who, results in (("product", product), ("baseline", baseline), ("batch", batch)):
            for r in results:
                if r.errors:
                    raise RuntimeError(f"{who} publish: {r.errors} of {r.requests} requests failed")
        time.sleep(1.0)  # requests wrk left in flight
        stored = db.scalar("SELECT count(*) FROM broker_message")
        answered = sum(r.requests for r in product) + BATCH_SIZE * sum(r.requests for r in batch)
        if stored < answered:
            raise RuntimeError(f"publish answered {answered} messages but stored {stored}")
        return PublishResult(product, baseline, batch, stored)
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


def wait_sink(
    sink: SinkClient, count: int, timeout: float, deadline: Deadline, children: list[Proc]
) -> dict[str, float]:
    end = time.monotonic() + timeout
    while True:
        stats = sink.stats()
        if stats["count"] >= count:
            return stats
        if time.monotonic() > end:
            raise RuntimeError(f"the sink received {stats['count']} of {count} in {timeout:.0f}s")
        deadline.check("waiting for deliveries")
        ensure_alive(*children)
        time.sleep(0.05)


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
        wait_sink(sink, count, 120, deadline, [worker])
        time.sleep(0.3)  # anything extra would be a duplicate
        stats = sink.stats()
        if stats["count"] != count:
            raise RuntimeError(f"baseline: the sink received {stats['count']} for {count} tasks")
        seconds = stats["last"] - stats["first"]
        return DeliveryRun(count, seconds, seconds)
    finally:
        procs.stop(worker)
        flush_redis(env, BASELINE_REDIS_DB)


def seed(env: Env, db: Database, sink: SinkClient, count: int, deadline: Deadline) -> int:
    """Publish ``count`` due messages through the product's service; return the hints queued."""
    db.purge()
    flush_redis(env, PRODUCT_REDIS_DB)
    argv = [sys.executable, "-m", "tests.bench.seed", "--count", str(count)]
    argv += ["--url", sink.url("/d")]
    stdout = run_step("seeding", argv, env.product(), deadline)
    seeded = json.loads(stdout.strip().splitlines()[-1])
    total, pending = db.counts()
    if total != count or pending != count:
        raise RuntimeError(f"seeded {total} messages ({pending} pending), wanted {count}")
    hints = queue_length(env, PRODUCT_REDIS_DB, QUEUE)
    log(f"delivery product: {count} messages published in {seeded['seconds']}s, {hints} hints")
    return hints


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
        wait_sink(sink, count, 120, deadline, children)
        end = time.monotonic() + 60
        while True:
            _, pending = db.counts()
            if pending == 0:
                done_at = time.time()
                break
            if time.monotonic() > end:
                raise RuntimeError(f"{pending} messages not DELIVERED 60s after the sink got all")
            deadline.check("waiting for DELIVERED")
            time.sleep(0.05)
        stats = sink.stats()
        if stats["count"] != count:
            raise RuntimeError(
                f"the sink received {stats['count']} requests for {count} messages (duplicates)"
            )
        run = DeliveryRun(count, done_at - stats["first"], stats["last"] - stats["first"], hints)
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


def summary(pub: PublishResult, dlv: DeliveryResult, lat: LatencyResult) -> None:
    pr = pub.product_rate / pub.baseline_rate
    br = pub.batch_rate / pub.product_rate
    dr = dlv.product_rate / dlv.baseline_rate
    p50, p95 = statistics.median(lat.latencies_ms), pct(lat.latencies_ms, 0.95)
    best = max(dlv.product, key=lambda r: r.rate)
    rows = [
        f"publish   {pub.product_rate:6.0f}/s   baseline (minimal Django view)    "
        f"{pub.baseline_rate:6.0f}/s   ratio {pr:5.2f}  (target >= {TARGET_PUBLISH})"
        f"   {verdict(pr >= TARGET_PUBLISH)}",
        f"batch     {pub.batch_rate:6.0f}/s   single publish (same run)         "
        f"{pub.product_rate:6.0f}/s   ratio {br:5.2f}  (target >= {TARGET_BATCH:g})"
        f"     {verdict(br >= TARGET_BATCH)}",
        f"delivery  {dlv.product_rate:6.0f}/s   baseline (bare Celery + requests) "
        f"{dlv.baseline_rate:6.0f}/s   ratio {dr:5.2f}  (target >= {TARGET_DELIVERY:g})"
        f"     {verdict(dr >= TARGET_DELIVERY)}",
        f"latency   p50 {p50:.1f} ms  p95 {p95:.1f} ms  (target p50 < {TARGET_P50_MS:g} ms)"
        f"   {verdict(p50 < TARGET_P50_MS)}",
    ]
    details = [
        f"publish rounds /s: product {rates(pub.product)}; baseline {rates(pub.baseline)}"
        f"  ({pub.product[0].tool}, {PUBLISH_CONNECTIONS} connections, best round of each;"
        f" {pub.stored} messages stored); batch requests /s {rates(pub.batch)}"
        f" of {BATCH_SIZE} messages",
        f"delivery rounds /s: product {rates(dlv.product)}; baseline {rates(dlv.baseline)}"
        f"  (best of each; product {best.count} msgs, first receipt -> all DELIVERED in"
        f" {best.seconds:.2f}s, sink alone {best.count / best.sink_seconds:.0f}/s,"
        f" {best.hints} hints queued; baseline {dlv.baseline[0].count} tasks)",
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
    print()
    print("=" * 100)
    print("\n".join(rows))
    print("-" * 100)
    print("\n".join(details))
    print("=" * 100, flush=True)


def main() -> int:
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
            f"fresh database qstash_bench, Redis dbs {PRODUCT_REDIS_DB}/{BASELINE_REDIS_DB};"
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
            env.baseline_web(),
            workdir,
            deadline,
        )
        servers = Servers(sink, web, web_port, base, base_port)

        log("1/3 publish throughput (no worker running)")
        pub = bench_publish(env, db, servers, deadline)

        log("2/3 delivery throughput")
        dlv, children = bench_delivery(env, db, sink, deadline)

        log("3/3 idle latency (web, worker and clock running)")
        lat = bench_latency(env, db, servers, children, deadline)
        summary(pub, dlv, lat)
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
