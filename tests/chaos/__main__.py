"""``python -m tests.chaos [--short] [--only NAME ...]``: the fault suite (``make chaos``).

Each scenario serves the product the production way (gunicorn with
``deploy/gunicorn.conf.py`` and 2 workers, one Celery worker with 2 processes, the
clock) on a PostgreSQL cluster and a redis-server of its own (``tests/faults.py``;
the shared servers on 5432/6379 are never touched), publishes a load of single
publishes and batches (a fifth of them delayed 1-3 s) to a loopback receiver that
keeps a ledger of every delivery by ``Upstash-Message-Id``, breaks something in the
middle of the load, waits for the drain and reads the ledger against the accepted ids:

- worker-sigkill:   the Celery worker's process group is SIGKILLed (restarted after 2 s,
                    as systemd would); duplicates are legitimate, judged < 0.1 %
- clock-sigkill:    the clock is SIGKILLed (restarted)
- redis-restart:    redis-server is SIGKILLed and started again, empty
- postgres-restart: PostgreSQL restarts in immediate mode (a crash)
- web-sigkill:      gunicorn's process group is SIGKILLed (restarted); only publishes
                    answered 2xx are accepted
- destinations:     no infrastructure fault; a slow destination (past its timeout), a
                    refusing one, one answering 500 and one answering 429 + Retry-After
                    are mixed with a healthy one

Targets per scenario: lost 0, duplicates < 0.1 % of deliveries, pending after drain 0
(and for destinations: healthy messages exactly once, the others ending as scripted).
Every duplicate of worker-sigkill must also be explained by the kill (sent once before
it and once after its lease lapsed). A process that exits on its own is restarted after
2 s (as systemd would) and counted. Each scenario also prints the window in which a
killed worker leaves duplicates: from the destination's receipt to the outcome's flush.

Exit status: 0 when every target holds, 1 when one is missed or something broke,
130 on Ctrl-C or SIGTERM. Every child is stopped and the private servers removed in
every case. Logs go to var/chaos/{full,short}/ (CHAOS_LOG_DIR to change it):
<scenario>/{web,worker,clock}.log and details.json (lost and duplicated ids with their
arrivals and log rows), postgres.log, redis.log, summary.txt.

Knobs (environment): CHAOS_SECONDS (load duration), CHAOS_SINGLE_RATE (single
publishes/s), CHAOS_BATCH_RATE and CHAOS_BATCH_SIZE (batches/s of that many messages)
for the infrastructure scenarios; CHAOS_PG_LOG_STATEMENTS=1 logs every statement and
times the worker's outcome-recording transactions (wall time against time inside
PostgreSQL).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
import traceback
from pathlib import Path

from tests.bench import procs
from tests.bench.procs import ROOT, Deadline
from tests.chaos import pglog, scenarios
from tests.chaos.scenarios import DUPLICATE_TARGET_PCT, Result
from tests.chaos.stack import Infra, log

# var/chaos/full or var/chaos/short, unless CHAOS_LOG_DIR names another directory.
LOGDIR = os.environ.get("CHAOS_LOG_DIR", "")
LOG_STATEMENTS = os.environ.get("CHAOS_PG_LOG_STATEMENTS", "") not in ("", "0")
BUDGET = {"full": 900.0, "short": 330.0}
DRAIN_TIMEOUT = {"full": 90.0, "short": 60.0}


def _report(r: Result) -> list[str]:
    s = r.stats
    failed = ", ".join(f"{k} {v}" for k, v in sorted(s.errors.items())) or "none"
    lines = [
        f"== {r.name} ({r.seconds:.0f}s)",
        f"   fault: {r.fault}" + (f" at {r.fault_at:.1f}s into the load" if r.fault_at else ""),
        f"   accepted {r.accepted} (publish {s.accepted_by['publish']}, "
        f"batch {s.accepted_by['batch']}; {s.delayed} delayed); failed requests: {failed}",
        f"   delivered {r.delivered}   lost {len(r.lost)} (target 0)   "
        f"duplicates {r.dup_ids} id(s), {r.dup_extra} extra = {r.dup_pct:.3f} % of "
        f"{r.deliveries} deliveries (target < {DUPLICATE_TARGET_PCT} %)",
        f"   pending after drain {r.pending} (target 0)   drain {r.drain_seconds:.1f}s"
        f"{'' if r.drained else ' (NOT DRAINED)'}   delivered but not accepted "
        f"{r.not_accepted_delivered}",
    ]
    if len(r.per_kind) > 1:
        for kind, counts in sorted(r.per_kind.items()):
            detail = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()) if k != "accepted")
            lines.append(f"   {kind:7s} accepted {counts['accepted']}: {detail}")
    if r.healthy_latency_ms:
        p50, p99 = r.healthy_latency_ms
        lines.append(f"   healthy immediate messages: receipt p50 {p50:.0f} ms, p99 {p99:.0f} ms")
    if r.recovery:
        baseline, bound, back = r.recovery
        lines.append(
            f"   immediate messages: receipt p50 {baseline:.0f} ms before the fault; "
            f"back under {bound:.0f} ms (3 s in a row) {back}s after it began"
        )
    if r.record_window_ms:
        parts = "; ".join(
            f"{name} p50 {a:.0f} p99 {b:.0f} max {c:.0f}"
            for name, (a, b, c) in r.record_window_ms.items()
        )
        lines.append(f"   outcome recording (ms): {parts}")
    if r.limit_gap is not None:
        lines.append(f"   429 + Retry-After: 1 -> shortest gap to the retry {r.limit_gap:.2f}s")
    restarts = ", ".join(f"{k} {v}" for k, v in sorted(r.exits.items())) or "none"
    lines.append(f"   process exits (restarted): {restarts}")
    lines += [f"   note: {note}" for note in r.notes]
    lines += [f"   MISSED: {why}" for why in r.missed]
    lines.append(f"   result: {'ok' if not r.missed else 'MISSED'}   logs: {r.logdir}")
    return lines


def _summary(results: list[Result], seconds: float, mode: str) -> list[str]:
    lines = [
        f"chaos ({mode}) in {seconds:.0f}s",
        f"{'scenario':18s}{'accepted':>9s}{'delivered':>10s}{'lost':>6s}{'dups':>6s}"
        f"{'dup %':>8s}{'pending':>8s}{'drain':>8s}{'exits':>6s}  result",
    ]
    for r in results:
        lines.append(
            f"{r.name:18s}{r.accepted:9d}{r.delivered:10d}{len(r.lost):6d}{r.dup_extra:6d}"
            f"{r.dup_pct:8.3f}{r.pending:8d}{r.drain_seconds:7.1f}s"
            f"{sum(r.exits.values()):6d}  {'ok' if not r.missed else 'MISSED'}"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.chaos", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--short", action="store_true", help="smaller loads (CI)")
    parser.add_argument("--only", action="append", default=[], metavar="NAME")
    args = parser.parse_args()
    mode = "short" if args.short else "full"
    logroot = Path(LOGDIR) if LOGDIR else ROOT / "var" / "chaos" / mode
    chosen = [s for s in scenarios.scenarios(args.short) if not args.only or s.name in args.only]
    if not chosen:
        parser.error(f"no scenario named {args.only}")
    procs.install_cleanup()
    logroot.mkdir(parents=True, exist_ok=True)
    # Only what an earlier run wrote (the directory may hold someone's notes).
    for name in (s.name for s in scenarios.scenarios(False)):
        shutil.rmtree(logroot / name, ignore_errors=True)
    for name in ("summary.txt", "postgres.log", "redis.log"):
        (logroot / name).unlink(missing_ok=True)
    load_before = os.getloadavg()
    deadline = Deadline(BUDGET[mode])
    began = time.monotonic()
    results: list[Result] = []
    broken: list[str] = []
    infra = Infra(logroot)
    try:
        log(f"private PostgreSQL on {infra.postgres.port}, redis-server on {infra.redis.port}")
        infra.start(deadline)
        if LOG_STATEMENTS:
            pglog.enable(infra.admin_url)
        for scenario in chosen:
            deadline.check(f"starting {scenario.name}")
            try:
                result = scenarios.run(scenario, infra, logroot, deadline, DRAIN_TIMEOUT[mode])
            except Exception as exc:
                traceback.print_exc()
                broken.append(f"{scenario.name}: {exc.__class__.__name__}: {exc}")
                if isinstance(exc, TimeoutError):
                    break
                continue
            results.append(result)
            print("\n".join(_report(result)), flush=True)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        procs.stop_all()
        infra.close()
    lines = _summary(results, time.monotonic() - began, mode)
    load_after = os.getloadavg()
    lines.insert(
        1,
        f"machine: {os.cpu_count()} cores, load average {load_before[0]:.1f} before, "
        f"{load_after[0]:.1f} after (timings and duplicates depend on it)",
    )
    if LOG_STATEMENTS and (logroot / "postgres.log").exists():
        lines.insert(2, pglog.recorder_transactions(logroot / "postgres.log"))
    missed = [f"{r.name}: {why}" for r in results for why in r.missed]
    lines += [f"BROKEN {why}" for why in broken]
    lines += [f"MISSED {why}" for why in missed]
    if len(results) + len(broken) < len(chosen):
        lines.append(f"BROKEN only {len(results)} of {len(chosen)} scenarios ran")
    failed = bool(missed or broken or len(results) < len(chosen))
    lines.append("chaos: FAILED" if failed else "chaos: every target holds")
    text = "\n".join(lines)
    print("\n" + text, flush=True)
    (logroot / "summary.txt").write_text(
        text + "\n\n" + "\n\n".join("\n".join(_report(r)) for r in results) + "\n"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
