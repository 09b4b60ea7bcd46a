"""One scenario: a fresh stack, a publish load, a fault in the middle, the drain, the verdict."""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.bench import procs
from tests.bench.procs import Deadline
from tests.chaos.load import EXPECT, FAULTY_KINDS, Load, LoadStats, Mix
from tests.chaos.receiver import ReceiverClient
from tests.chaos.stack import Database, Infra, Stack, log, start_receiver

DUPLICATE_TARGET_PCT = 0.1
SHORT_KILL_TARGET_PCT = 0.5
# Below this share of the planned messages accepted, the fault hid the load.
MIN_ACCEPTED_SHARE = 0.5
# Redis stays down this long before it is started again.
REDIS_DOWN_SECONDS = 2.0
# The load goes on at least this long after a fault has recovered.
AFTER_RECOVERY_SECONDS = 4.0
# worker-sigkill publishes this many times longer than the other scenarios.
WORKER_LOAD_FACTOR = 3.0
# After the drain: an attempt still on the wire (a lapsed lease) would land by then.
SETTLE_SECONDS = 1.0


@dataclass
class Context:
    infra: Infra
    stack: Stack
    deadline: Deadline


def _kill(name: str) -> Callable[[Context], str]:
    def fault(ctx: Context) -> str:
        service = getattr(ctx.stack, name)
        exits = ctx.stack.exits[name]
        service.kill()
        back = ctx.stack.wait_restarted(service, exits, ctx.deadline)
        ready = "serving" if name == "web" else "running"
        return f"SIGKILLed the {name}'s process group; {ready} again after {back:.1f}s"

    return fault


def _redis_restart(ctx: Context) -> str:
    ctx.infra.redis.stop(immediate=True)
    time.sleep(REDIS_DOWN_SECONDS)
    ctx.infra.redis.start()
    return f"SIGKILLed redis-server, started it again {REDIS_DOWN_SECONDS:.0f}s later (empty)"


def _postgres_restart(ctx: Context) -> str:
    began = time.monotonic()
    ctx.infra.postgres.restart(immediate=True)
    return (
        "restarted PostgreSQL in immediate mode (a crash), back after "
        f"{time.monotonic() - began:.1f}s"
    )


@dataclass
class Scenario:
    name: str
    fault: Callable[[Context], str] | None
    mix: Mix
    # Duplicates are legitimate here (a worker killed between answer and commit).
    duplicates_possible: bool = False
    # Every message must arrive exactly as scripted: no duplicate at all.
    exactly_once: bool = False
    duplicate_target_pct: float = DUPLICATE_TARGET_PCT


@dataclass
class Result:
    name: str
    fault: str = "none"
    fault_at: float = 0.0
    fault_wall: tuple[float, float] = (0.0, 0.0)  # time.time() when the fault began and ended
    load_wall: float = 0.0  # time.time() when the load began
    planned: int = 0
    stats: LoadStats = field(default_factory=LoadStats)
    delivered: int = 0
    lost: list[str] = field(default_factory=list)
    dup_ids: int = 0
    dup_extra: int = 0
    deliveries: int = 0
    pending: int = -1
    drained: bool = False
    drain_seconds: float = 0.0
    not_accepted_delivered: int = 0
    mismatches: list[str] = field(default_factory=list)
    per_kind: dict[str, Counter[str]] = field(default_factory=dict)
    healthy_latency_ms: tuple[float, float] | None = None
    # Second of the load (by accept time, relative to the fault when there is one) ->
    # (count, p50 ms, max ms) of the healthy immediate messages' publish-to-receipt time.
    latency_by_second: dict[int, tuple[int, float, float]] = field(default_factory=dict)
    # Milliseconds from the destination's receipt to the recorder's flush: the window in
    # which a killed worker leaves a duplicate. (p50, p99, max) of the whole, then of its
    # two parts: receipt -> the send returned, returned -> flush began.
    record_window_ms: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    limit_gap: float | None = None
    # (p50 ms before the fault, the bound, seconds after the fault began until the p50
    # stayed under the bound for three seconds); None without a fault or enough data.
    recovery: tuple[float, float, int] | None = None
    exits: Counter[str] = field(default_factory=Counter)
    unexpected: Counter[str] = field(default_factory=Counter)
    events: list[str] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    logdir: Path | None = None
    seconds: float = 0.0

    @property
    def accepted(self) -> int:
        return len(self.stats.accepted)

    @property
    def dup_pct(self) -> float:
        return 100.0 * self.dup_extra / self.deliveries if self.deliveries else 0.0


def _probe(stack: Stack, infra: Infra, receiver: ReceiverClient, deadline: Deadline) -> None:
    """One message through web, clock, worker and receiver: the stack is serving."""
    load = Load(stack.port, infra.creds.token, receiver, 0, Mix(1, 1, 0, 0))
    end = time.monotonic() + 90
    message_id = None
    while message_id is None:
        deadline.check("waiting for the stack to serve")
        if time.monotonic() > end:
            raise RuntimeError(f"the web process does not accept publishes\n{stack.tails()}")
        answer = load.call("publish", "/v2/publish/" + receiver.url("/probe/1"), {}, b"{}")
        message_id = answer.get("messageId") if isinstance(answer, dict) else None
        if message_id is None:
            time.sleep(0.25)
    while message_id not in receiver.ledger():
        deadline.check("waiting for the first delivery")
        if time.monotonic() > end:
            raise RuntimeError(f"the probe message was not delivered\n{stack.tails()}")
        time.sleep(0.1)
    receiver.reset()


def _drain(
    db: Database, stats: LoadStats, deadline: Deadline, timeout: float
) -> tuple[bool, float, dict[str, tuple[str, bool]]]:
    """Wait until nothing is pending and every accepted message is in the database.

    Nothing pending means every message reached a final state (DELIVERED, FAILED, ...);
    whether it is the expected one is judged afterwards.
    """
    began = time.monotonic()
    end = began + min(timeout, max(1.0, deadline.left() - 20))
    ids = list(stats.accepted)
    while True:
        if db.pending() == 0:
            states = db.states(ids)
            if len(states) == len(ids):
                return True, time.monotonic() - began, states
        if time.monotonic() > end:
            return False, time.monotonic() - began, db.states(ids)
        time.sleep(0.25)


def _judge(
    scenario: Scenario,
    result: Result,
    ledger: dict[str, tuple[str, list[float]]],
    states: dict[str, tuple[str, bool]],
) -> None:
    stats = result.stats
    latencies: list[float] = []
    by_second: dict[int, list[float]] = {}
    gaps: list[float] = []
    for message_id, acc in stats.accepted.items():
        expect = EXPECT[acc.kind]
        times = ledger.get(message_id, ("", []))[1]
        arrivals = len(times)
        state, dlq = states.get(message_id, ("MISSING", False))
        kind = result.per_kind.setdefault(acc.kind, Counter())
        kind["accepted"] += 1
        kind[state] += 1
        kind["arrivals"] += arrivals
        result.deliveries += arrivals
        if state == "MISSING" or (expect.state == "DELIVERED" and arrivals == 0):
            result.lost.append(message_id)
        elif state == expect.state == "DELIVERED":
            result.delivered += 1
        if arrivals > expect.arrivals:
            result.dup_ids += 1
            result.dup_extra += arrivals - expect.arrivals
        if message_id not in result.lost[-1:] and (
            state != expect.state or dlq != expect.dlq or arrivals < expect.arrivals
        ):
            result.mismatches.append(
                f"{acc.kind} {message_id}: {state}{' +DLQ' if dlq else ''}, {arrivals} arrival(s);"
                f" expected {expect.state}{' +DLQ' if expect.dlq else ''}, {expect.arrivals}"
            )
        if acc.kind == "ok" and not acc.delayed and times:
            latencies.append(times[0] - acc.at)
            second = int((acc.at - (result.fault_wall[0] or result.load_wall)) // 1)
            by_second.setdefault(second, []).append(times[0] - acc.at)
        if acc.kind == "limit" and len(times) >= 2:
            gaps.append(times[1] - times[0])
    if latencies:
        ordered = sorted(latencies)
        p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
        result.healthy_latency_ms = (statistics.median(ordered) * 1000, p99 * 1000)
        result.latency_by_second = {
            second: (len(v), statistics.median(v) * 1000, max(v) * 1000)
            for second, v in sorted(by_second.items())
        }
        result.recovery = _recovery(result.latency_by_second) if result.fault_wall[0] else None
    if gaps:
        result.limit_gap = min(gaps)
        if result.limit_gap < 0.9:
            result.mismatches.append(
                f"limit: a retry came {result.limit_gap:.2f}s after a 429 with Retry-After: 1"
            )
    accepted_ids = set(stats.accepted)
    result.not_accepted_delivered = sum(
        1 for message_id in ledger if message_id not in accepted_ids
    )

    # The targets.
    if result.lost:
        result.missed.append(f"lost {len(result.lost)} (target 0): {result.lost[:5]}")
    if result.pending != 0:
        result.missed.append(f"pending after drain {result.pending} (target 0)")
    if not result.drained:
        result.missed.append(
            f"not drained within {result.drain_seconds:.0f}s (messages not in their final state)"
        )
    if scenario.duplicates_possible and result.fault_wall[0]:
        # A legitimate duplicate was on the wire from the killed worker and sent once more
        # by its successor after the lease lapsed; anything else has no excuse.
        killed = result.fault_wall[0]
        odd = [
            message_id
            for message_id, (_path, times) in ledger.items()
            if message_id in stats.accepted
            and len(times) > EXPECT[stats.accepted[message_id].kind].arrivals
            and not (len(times) == 2 and times[0] < killed + 0.5 and times[1] > killed + 1.0)
        ]
        if odd:
            result.missed.append(
                f"{len(odd)} duplicate(s) not explained by the kill "
                f"(not sent once before it and once after): {odd[:5]}"
            )
    if result.dup_pct >= scenario.duplicate_target_pct:
        result.missed.append(
            f"duplicates {result.dup_pct:.3f} % of deliveries "
            f"(target < {scenario.duplicate_target_pct} %)"
        )
    elif result.dup_extra and not scenario.duplicates_possible:
        result.notes.append(
            f"{result.dup_extra} duplicate deliveries where none were expected "
            "(within the target, but worth a look)"
        )
    if scenario.exactly_once and result.dup_extra:
        result.missed.append(
            f"{result.dup_ids} message(s) arrived more often than scripted (target: exactly once)"
        )
    if result.mismatches:
        result.missed.append(
            f"{len(result.mismatches)} message(s) did not end as scripted: {result.mismatches[:3]}"
        )
    if result.accepted < MIN_ACCEPTED_SHARE * result.planned:
        result.missed.append(
            f"only {result.accepted} of ~{result.planned} planned messages accepted: "
            "the load did not run"
        )
    if result.unexpected:
        result.notes.append(
            "exited on their own and were restarted: "
            + ", ".join(f"{name} {n}x" for name, n in sorted(result.unexpected.items()))
        )


def run(
    scenario: Scenario,
    infra: Infra,
    logroot: Path,
    deadline: Deadline,
    drain_timeout: float,
) -> Result:
    began = time.monotonic()
    result = Result(scenario.name)
    logdir = logroot / scenario.name
    logdir.mkdir(parents=True, exist_ok=True)
    result.logdir = logdir
    mix = scenario.mix
    result.planned = int(mix.seconds * (mix.single_rate + mix.batch_rate * mix.batch_size))
    log(f"{scenario.name}: starting the stack (logs in {logdir})")
    infra.reset()
    receiver_proc, receiver = start_receiver(deadline, logdir)
    stack = Stack(infra, logdir)
    db = Database(infra.postgres.url)
    closed_port = procs.free_port()  # nobody listens there: connection refused
    try:
        stack.start(deadline)
        _probe(stack, infra, receiver, deadline)
        load = Load(stack.port, infra.creds.token, receiver, closed_port, mix)
        result.stats = load.stats
        log(f"{scenario.name}: load for {mix.seconds:.0f}s, ~{result.planned} messages")
        load.start()
        result.load_wall = time.time()
        try:
            if scenario.fault is not None:
                fault_at = load.started + mix.seconds * 0.45
                time.sleep(max(0.0, fault_at - time.monotonic()))
                result.fault_at = time.monotonic() - load.started
                stack.note(f"fault at {result.fault_at:.1f}s into the load")
                wall = time.time()
                result.fault = scenario.fault(Context(infra, stack, deadline))
                result.fault_wall = (wall, time.time())
                # Keep publishing a while after the recovery: the path back is tested too.
                load.extend_to(time.monotonic() + AFTER_RECOVERY_SECONDS)
                stack.note(result.fault)
            load.wait()
        finally:
            load.stop()
        log(
            f"{scenario.name}: load done: {result.accepted} accepted, "
            f"{result.stats.failed_requests} failed requests; draining"
        )
        result.drained, result.drain_seconds, states = _drain(
            db, result.stats, deadline, drain_timeout
        )
        time.sleep(SETTLE_SECONDS)
        result.pending = db.pending()
        if result.drained:
            states = db.states(list(result.stats.accepted))
        ledger = receiver.ledger()
        result.record_window_ms = _record_window(ledger, db.delivery_times())
        result.exits, result.unexpected = Counter(stack.exits), Counter(stack.unexpected)
        result.events = list(stack.events)
        _judge(scenario, result, ledger, states)
        _write_details(result, ledger, states, logdir, db)
    finally:
        stack.stop()
        db.close()
        procs.stop(receiver_proc)
    result.seconds = time.monotonic() - began
    return result


def _recovery(by_second: dict[int, tuple[int, float, float]]) -> tuple[float, float, int] | None:
    """(p50 before the fault, the bound, the first second after it that starts three
    seconds in a row with p50 under the bound), or None."""
    before = [p50 for second, (_n, p50, _max) in by_second.items() if second < 0]
    if not before:
        return None
    baseline = statistics.median(before)
    bound = max(3 * baseline, 250.0)
    ok = {second for second, (_n, p50, _max) in by_second.items() if p50 <= bound}
    last = max(by_second)
    for second in range(0, last + 1):
        if all(s in ok or s > last for s in range(second, second + 3)):
            return baseline, bound, second
    return baseline, bound, last + 1


def _spread(values: list[float]) -> tuple[float, float, float]:
    ordered = sorted(v * 1000 for v in values)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return statistics.median(ordered), p99, ordered[-1]


def _record_window(
    ledger: dict[str, tuple[str, list[float]]], times: dict[str, tuple[float, float]]
) -> dict[str, tuple[float, float, float]]:
    whole, answer, queue = [], [], []
    for message_id, (returned, flushed) in times.items():
        entry = ledger.get(message_id)
        if entry is None or _kind(entry[0]) != "ok" or len(entry[1]) != 1:
            continue
        arrived = entry[1][0]
        whole.append(flushed - arrived)
        answer.append(returned - arrived)
        queue.append(flushed - returned)
    if not whole:
        return {}
    return {
        "receipt->flush": _spread(whole),
        "receipt->returned": _spread(answer),
        "returned->flush": _spread(queue),
    }


def _write_details(
    result: Result,
    ledger: dict[str, tuple[str, list[float]]],
    states: dict[str, tuple[str, bool]],
    logdir: Path,
    db: Database,
) -> None:
    """What a reader needs to chase a lost or duplicated id: its arrivals and its log rows."""
    accepted = result.stats.accepted
    doubled = {
        i: v
        for i, v in ledger.items()
        if len(v[1]) > EXPECT.get(_kind(v[0]), EXPECT["ok"]).arrivals
    }
    chased = list(doubled) + result.lost
    history = db.history(chased[:200]) if chased else {}
    details = {
        "fault_wall": result.fault_wall,
        "last_delivered_before_fault": db.last_delivered_before(result.fault_wall[0])
        if result.fault_wall[0]
        else None,
        "lost": {
            i: {"kind": accepted[i].kind, "state": states.get(i), "log": history.get(i)}
            for i in result.lost
        },
        "duplicates": {
            i: {"path": v[0], "arrivals": v[1], "log": history.get(i)} for i, v in doubled.items()
        },
        "mismatches": result.mismatches,
        "events": result.events,
        "errors": dict(result.stats.errors),
        "latency_by_second (count, p50 ms, max ms)": result.latency_by_second,
    }
    (logdir / "details.json").write_text(json.dumps(details, indent=2, default=str))


def _kind(path: str) -> str:
    kind = path.split("/", 2)[1] if path.count("/") >= 1 else "ok"
    return kind if kind in FAULTY_KINDS else "ok"


def scenarios(short: bool) -> list[Scenario]:
    env = os.environ.get
    seconds = float(env("CHAOS_SECONDS", 10.0 if short else 20.0))
    load = Mix(
        seconds=seconds,
        single_rate=float(env("CHAOS_SINGLE_RATE", 40)),
        batch_rate=float(env("CHAOS_BATCH_RATE", 10)),
        batch_size=int(env("CHAOS_BATCH_SIZE", 10)),
    )
    destinations = Mix(
        seconds=seconds,
        single_rate=40,
        batch_rate=4,
        batch_size=10,
        faulty=40 if short else 80,
    )
    # A killed worker leaves as duplicates the attempts answered and not yet recorded:
    # (delivery rate x the receipt-to-commit window), or a whole batch publish when the
    # kill lands while its messages are on the wire. Their share of the deliveries falls
    # only as the load grows longer, so this scenario publishes longer than the others.
    worker_load = dataclasses.replace(load, seconds=seconds * WORKER_LOAD_FACTOR)
    return [
        Scenario(
            "worker-sigkill",
            _kill("worker"),
            worker_load,
            duplicates_possible=True,
            # The short run's few thousand deliveries make one unlucky kill (a batch on
            # the wire) weigh ~0.2 %; every duplicate must still be explained by the kill.
            duplicate_target_pct=DUPLICATE_TARGET_PCT if not short else SHORT_KILL_TARGET_PCT,
        ),
        Scenario("clock-sigkill", _kill("clock"), load),
        Scenario("redis-restart", _redis_restart, load),
        Scenario("postgres-restart", _postgres_restart, load),
        Scenario("web-sigkill", _kill("web"), load),
        Scenario("destinations", None, destinations, exactly_once=True),
    ]
