"""Timing of the delivery pipeline with web, worker and clock running (after the latency stage).

- lateness:  messages published with ``Upstash-Delay`` 1-3 s, spread over a few
  seconds, against the due time the product stored (``not_before``); and messages
  whose first attempt gets a 500 with ``Upstash-Retry-Delay: 1000``, the retry's
  arrival against the first answer + 1 s (both read at the sink);
- isolation: 50 requests held unanswered by a slow path (30 s, ``Upstash-Timeout:
  40s``, no retries), then publish-to-receipt of 200 messages to a fast path; the
  slow ones are held past one lease (so renewal is exercised) and then answered;
- loaded:    batches published at a fixed rate for ``BENCH_STEADY_SECONDS``, the
  deliveries the sink receives in that same window, and publish-to-receipt lag;
- backlog:   opt-in, ``BENCH_BACKLOG=50000``: that many due messages stored before a
  fresh worker and clock start; the drain rate, and every worker/clock process's
  resident memory sampled from ``/proc`` every 0.5 s while it drains (the delivery
  stage samples the same way, for comparison with a backlog six times smaller).

A message lost or sent twice is a broken run (RuntimeError), as in the other stages.
"""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
from dataclasses import dataclass, field

from tests.bench import procs
from tests.bench.infra import (
    QUEUE,
    Database,
    Env,
    ensure_alive,
    pct,
    post,
    seed,
    start_clock,
    start_worker,
    wait_sink,
)
from tests.bench.procs import Deadline, Proc
from tests.bench.rss import Rss, RssSampler
from tests.bench.sink import SinkClient

BODY = b'{"hello":"world","bench":true}'
PUBLISH_GAP = 0.020  # between publishes of the lateness and isolation stages
DELAY_COUNT = 200
DELAYS = (1, 2, 3)  # seconds, in turn
RETRY_COUNT = 100  # published between the delayed ones, one every other
RETRY_DELAY_MS = 1000
TARGET_LATE_P99_MS = 100.0

SLOW_COUNT = 50
FAST_COUNT = 200
FAST_GAP = 0.010
# Held at least this long, past one lease (QSTASH_LEASE_SECONDS, 6 s by default),
# so a lease that is not renewed shows up as a second request.
SLOW_HOLD_SECONDS = 8.0
TARGET_ISOLATION_P99_MS = 1000.0

STEADY_SECONDS = float(os.environ.get("BENCH_STEADY_SECONDS", "15"))
STEADY_RATE = int(os.environ.get("BENCH_STEADY_RATE", "1000"))  # messages/s offered
STEADY_BATCH = 50  # messages per batch request
STEADY_PUBLISHERS = 4  # client threads sharing the schedule

# Opt-in (it adds a minute or two): BENCH_BACKLOG=50000 stores that many; unset or 0 skips.
BACKLOG = int(os.environ.get("BENCH_BACKLOG", "0") or "0")
BACKLOG_SUGGESTED = 50_000
BACKLOG_SERVICE = 1000  # of them through the publish service, the rest SQL copies


def auth(env: Env, **extra: str) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {env.token}", "Content-Type": "application/json"}
    headers.update(extra)
    return headers


def publish(port: int, sink: SinkClient, path: str, headers: dict[str, str]) -> float:
    """Publish one message to the sink's ``path``; the time the request started."""
    t0 = time.time()
    status, answer = post(port, "/v2/publish/" + sink.url(path), headers, BODY)
    if status not in (200, 201):
        raise RuntimeError(f"publish to {path} answered {status}: {answer[:300]!r}")
    return t0


def wait_hits(
    sink: SinkClient,
    prefix: str,
    want: dict[str, int],
    timeout: float,
    deadline: Deadline,
    children: list[Proc],
) -> dict[str, list[float]]:
    """Until every path in ``want`` has at least that many arrivals; the arrivals."""
    end = time.monotonic() + timeout
    while True:
        hits = sink.hits(prefix)
        missing = [p for p, n in want.items() if len(hits.get(p, ())) < n]
        if not missing:
            return hits
        if time.monotonic() > end:
            raise RuntimeError(
                f"{len(missing)} of {len(want)} {prefix} messages still short of their"
                f" requests after {timeout:.0f}s (e.g. {missing[0]})"
            )
        deadline.check(f"waiting for {prefix} deliveries")
        ensure_alive(*children)
        time.sleep(0.1)


def sent_twice(hits: dict[str, list[float]], allowed: int = 1) -> list[str]:
    return sorted(p for p, times in hits.items() if len(times) > allowed)


def epochs(db: Database, sql: str) -> dict[str, float]:
    """``{path on the sink: unix time}`` from rows of (url, timestamp)."""
    rows = db.conn().execute(sql).fetchall()
    return {"/" + url.split("127.0.0.1", 1)[1].split("/", 1)[1]: float(t) for url, t in rows}


def ms_stats(values: list[float]) -> str:
    return f"p50 {statistics.median(values):.1f} ms  p99 {pct(values, 0.99):.1f} ms"


# --- lateness of delays and retries -----------------------------------------------------


@dataclass
class LatenessResult:
    delayed_ms: list[float]  # receipt - not_before
    retry_ms: list[float]  # second receipt - (first receipt + retry delay)
    retry_due_ms: list[float]  # second receipt - the due time the product stored
    seconds: float  # first publish to last receipt


def bench_lateness(
    env: Env, db: Database, sink: SinkClient, port: int, children: list[Proc], deadline: Deadline
) -> LatenessResult:
    db.purge()
    sink.reset()
    started = time.time()
    retry_headers = auth(env, **{"Upstash-Retry-Delay": str(RETRY_DELAY_MS)})
    retry_headers["Upstash-Retries"] = "1"
    for i in range(DELAY_COUNT):
        delay = DELAYS[i % len(DELAYS)]
        publish(port, sink, f"/delay/{i}", auth(env, **{"Upstash-Delay": f"{delay}s"}))
        if i % 2 == 0 and i // 2 < RETRY_COUNT:
            publish(port, sink, f"/fail1/{i // 2}", retry_headers)
        time.sleep(PUBLISH_GAP)
        deadline.check("publishing delayed messages")
    want_delayed = {f"/delay/{i}": 1 for i in range(DELAY_COUNT)}
    want_retried = {f"/fail1/{i}": 2 for i in range(min(RETRY_COUNT, (DELAY_COUNT + 1) // 2))}
    delayed = wait_hits(sink, "/delay/", want_delayed, 30, deadline, children)
    retried = wait_hits(sink, "/fail1/", want_retried, 30, deadline, children)
    time.sleep(0.5)  # anything extra would be a duplicate
    delayed, retried = sink.hits("/delay/"), sink.hits("/fail1/")
    if twice := sent_twice(delayed) + sent_twice(retried, allowed=2):
        raise RuntimeError(f"{len(twice)} delayed/retried messages were sent twice: {twice[:5]}")
    finished = max(max(t) for t in list(delayed.values()) + list(retried.values()))
    not_before = epochs(
        db,
        "SELECT url, extract(epoch FROM not_before)::float8 FROM broker_message"
        " WHERE url LIKE '%/delay/%'",
    )
    retry_due = epochs(
        db,
        "SELECT m.url, extract(epoch FROM l.next_delivery_time)::float8 FROM broker_logentry l"
        " JOIN broker_message m ON m.id = l.message_id"
        " WHERE l.state = 'RETRY' AND m.url LIKE '%/fail1/%'",
    )
    if len(not_before) != len(want_delayed):
        raise RuntimeError(f"{len(not_before)} delayed messages stored of {len(want_delayed)}")
    delayed_ms = [(delayed[p][0] - due) * 1000 for p, due in not_before.items()]
    retry_ms = [(t[1] - t[0] - RETRY_DELAY_MS / 1000) * 1000 for t in retried.values()]
    retry_due_ms = [(retried[p][1] - due) * 1000 for p, due in retry_due.items() if p in retried]
    return LatenessResult(delayed_ms, retry_ms, retry_due_ms, finished - started)


# --- isolation from a slow destination ----------------------------------------------------


@dataclass
class IsolationResult:
    fast_ms: list[float]  # publish (request start) -> receipt
    held_at_start: int
    held_at_end: int
    held_seconds: float  # how long the slow requests were held before release


def bench_isolation(
    env: Env, db: Database, sink: SinkClient, port: int, children: list[Proc], deadline: Deadline
) -> IsolationResult:
    db.purge()
    sink.reset()
    slow = auth(env, **{"Upstash-Timeout": "40s", "Upstash-Retries": "0"})
    for i in range(SLOW_COUNT):
        publish(port, sink, f"/slow/{i}", slow)
    end = time.monotonic() + 20
    while (held := int(sink.stats()["slow"])) < SLOW_COUNT:
        if time.monotonic() > end:
            raise RuntimeError(f"only {held} of {SLOW_COUNT} slow messages reached the sink")
        deadline.check("putting slow messages in flight")
        ensure_alive(*children)
        time.sleep(0.05)
    held_since = time.monotonic()
    try:
        sent: dict[str, float] = {}
        fast = auth(env)
        for i in range(FAST_COUNT):
            sent[f"/fast/{i}"] = publish(port, sink, f"/fast/{i}", fast)
            time.sleep(FAST_GAP)
        deadline.check("publishing to the fast path")
        arrived = wait_hits(sink, "/fast/", dict.fromkeys(sent, 1), 30, deadline, children)
        held_at_end = int(sink.stats()["slow"])
        # Past one lease: a claim that is not renewed would be sent a second time.
        time.sleep(max(0.0, held_since + SLOW_HOLD_SECONDS - time.monotonic()))
    finally:
        held_seconds = time.monotonic() - held_since
        sink.release()
    end = time.monotonic() + 20
    while True:
        delivered = db.scalar(
            "SELECT count(*) FROM broker_message WHERE url LIKE '%/slow/%' AND state = 'DELIVERED'"
        )
        if delivered >= SLOW_COUNT:
            break
        if time.monotonic() > end:
            raise RuntimeError(f"{delivered} of {SLOW_COUNT} slow messages DELIVERED once answered")
        deadline.check("waiting for the slow messages")
        time.sleep(0.1)
    time.sleep(0.3)
    if twice := sent_twice(sink.hits("/slow/")) + sent_twice(sink.hits("/fast/")):
        raise RuntimeError(f"{len(twice)} messages were sent twice: {twice[:5]}")
    fast_ms = [(arrived[p][0] - t0) * 1000 for p, t0 in sent.items()]
    return IsolationResult(fast_ms, held, held_at_end, held_seconds)


# --- deliveries while publishes arrive ----------------------------------------------------


@dataclass
class SteadyResult:
    offered_rate: float  # messages/s scheduled
    seconds: float  # the window: first batch sent -> last batch answered
    published: int  # messages accepted in the window
    delivered: int  # first receipts at the sink in the same window
    lag_ms: list[float]  # batch request start -> receipt, every message
    late_requests: int  # batch requests sent more than 100 ms behind schedule
    unsent: int  # batch requests not sent by the cutoff (the web server fell far behind)
    drain_seconds: float  # window end -> last receipt

    @property
    def publish_rate(self) -> float:
        return self.published / self.seconds

    @property
    def delivery_rate(self) -> float:
        return self.delivered / self.seconds


def bench_steady(
    env: Env, db: Database, sink: SinkClient, port: int, children: list[Proc], deadline: Deadline
) -> SteadyResult:
    db.purge()
    sink.reset()
    per_second = STEADY_RATE / STEADY_BATCH
    total = max(1, round(STEADY_SECONDS * per_second))
    headers = auth(env)
    bodies = [
        json.dumps(
            [
                {"destination": sink.url(f"/load/{k}/{i}"), "body": BODY.decode()}
                for i in range(STEADY_BATCH)
            ]
        ).encode()
        for k in range(total)
    ]
    start = time.time() + 0.3
    sent: dict[int, float] = {}
    answered: dict[int, float] = {}
    failures: list[str] = []
    lock = threading.Lock()

    # A web server that cannot keep up is not waited for beyond this.
    cutoff = start + 2 * STEADY_SECONDS + 10

    def publisher(first: int) -> None:
        for k in range(first, total, STEADY_PUBLISHERS):
            time.sleep(max(0.0, start + k / per_second - time.time()))
            if time.time() > cutoff:
                return
            t0 = time.time()
            try:
                status, answer = post(port, "/v2/batch", headers, bodies[k])
            except OSError as exc:
                status, answer = 0, repr(exc).encode()
            with lock:
                if status == 200:
                    sent[k], answered[k] = t0, time.time()
                else:
                    failures.append(f"{status}: {answer[:200]!r}")

    threads = [
        threading.Thread(target=publisher, args=(n,), daemon=True) for n in range(STEADY_PUBLISHERS)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(cutoff + 30 - time.time())
    if failures:
        raise RuntimeError(f"{len(failures)} of {total} batch publishes failed: {failures[0]}")
    window_start, window_end = min(sent.values()), max(answered.values())
    expected = {f"/load/{k}/{i}": 1 for k in sent for i in range(STEADY_BATCH)}
    # Whatever the window left undelivered, at no less than 100/s.
    hits = wait_hits(sink, "/load/", expected, 30 + len(expected) / 100, deadline, children)
    time.sleep(0.5)  # anything extra would be a duplicate
    hits = sink.hits("/load/")
    if twice := sent_twice(hits):
        raise RuntimeError(f"{len(twice)} messages were sent twice: {twice[:5]}")
    firsts = {p: t[0] for p, t in hits.items()}
    lag_ms = [(firsts[p] - sent[int(p.split("/")[2])]) * 1000 for p in expected]
    late = sum(1 for k, t0 in sent.items() if t0 - (start + k / per_second) > 0.1)
    return SteadyResult(
        offered_rate=STEADY_RATE,
        seconds=window_end - window_start,
        published=len(expected),
        delivered=sum(1 for t in firsts.values() if window_start <= t <= window_end),
        lag_ms=lag_ms,
        late_requests=late,
        unsent=total - len(sent),
        drain_seconds=max(0.0, max(firsts.values()) - window_end),
    )


# --- a backlog drained with bounded memory ------------------------------------------------


@dataclass
class BacklogResult:
    count: int
    seconds: float  # first receipt -> all DELIVERED
    sink_seconds: float  # first -> last receipt
    rss: dict[str, Rss] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.count / self.seconds


def wait_delivered(db: Database, timeout: float, deadline: Deadline) -> float:
    """Until no message is left undelivered; the time it happened."""
    end = time.monotonic() + timeout
    while True:
        _, pending = db.counts()
        if pending == 0:
            return time.time()
        if time.monotonic() > end:
            raise RuntimeError(
                f"{pending} messages not DELIVERED {timeout:.0f}s after the sink got all"
            )
        deadline.check("waiting for DELIVERED")
        time.sleep(0.05)


def bench_backlog(
    env: Env, db: Database, sink: SinkClient, running: list[Proc], deadline: Deadline
) -> tuple[BacklogResult, list[Proc]]:
    """Stop ``running`` (the worker and clock), store the backlog, start fresh ones.

    The fresh worker and clock are returned still running.
    """
    for child in running:
        procs.stop(child)
    count = BACKLOG
    seed(env, db, sink, count, deadline, service=min(count, BACKLOG_SERVICE), what="backlog")
    # What autovacuum's analyze does after a bulk insert (it is off on the shared
    # server): with statistics of an empty table the planner sorts every due row to
    # claim a hundred (3.5 s a claim at a million rows) instead of walking the index.
    db.conn().execute("ANALYZE broker_message")
    sink.reset()
    product_env = env.product()
    worker = start_worker("worker-backlog", "qstash_site", QUEUE, product_env, env.workdir)
    clock = start_clock(product_env, env.workdir)
    children = [worker, clock]
    try:
        with RssSampler({"worker": worker.pid, "clock": clock.pid}) as rss:
            wait_sink(sink, count, max(120.0, count / 250), deadline, children)
            done_at = wait_delivered(db, 60, deadline)
        stats = sink.stats()
        if stats["count"] != count:
            raise RuntimeError(
                f"the sink received {stats['count']} requests for {count} messages (duplicates)"
            )
        result = BacklogResult(
            count, done_at - stats["first"], stats["last"] - stats["first"], rss.seen
        )
        return result, children
    except BaseException:
        for child in children:
            procs.stop(child)
        raise


def mib(kib: int) -> str:
    return f"{kib / 1024:.0f}"


def rss_line(rss: dict[str, Rss], which: str = "peak") -> str:
    return ", ".join(f"{label} {mib(getattr(r, which))}" for label, r in sorted(rss.items()))
