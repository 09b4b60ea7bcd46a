"""The console's page render times on a store of a million messages against an empty one.

The console store ``qstash_bench_console`` holds BENCH_CONSOLE_MESSAGES (default
1,000,000) finished messages created over the last day, 3 log rows each and 1 in 200 in
the DLQ (``grow.py``, the same generator as the store section's grown store); it is built
once with SQL and reused while its size matches. The empty store is migrated afresh every
run: its times are the baseline of the ratio; so is a small store of 20,000 messages
(the same generator), whose pages show as many rows as the big one's. Every page of
``console_pages.PAGES`` is rendered by a logged-in superuser through Django's whole
request path, median of 5 (``console_pages.py``).

Runs inside the store section, or alone: ``BENCH_ONLY=console make bench``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg

from tests.bench.console_pages import PAGES
from tests.bench.infra import Env, log, run_step
from tests.bench.procs import ROOT, Deadline

CONSOLE_DB = "qstash_bench_console"
EMPTY_DB = "qstash_bench_console_empty"
SMALL_DB = "qstash_bench_console_small"
MESSAGES = int(os.environ.get("BENCH_CONSOLE_MESSAGES", "1000000"))
SMALL_MESSAGES = 20_000
REPEAT = 5
# A page a person waits for: under this on the big store, and at most this many times
# its time on the small store. An empty store renders empty lists, so its ratio measures
# rendering 100 rows; the small store shows the same pages as the big one, and its ratio
# says whether a page grows with the store.
TARGET_MS = 500.0
TARGET_RATIO = 3.0


def _env(env: Env, db: str) -> dict[str, str]:
    product = env.product()
    auth = env.pg["user"] + (f":{env.pg['password']}" if env.pg["password"] else "")
    product["DATABASE_URL"] = f"postgres://{auth}@{env.pg['host']}:{env.pg['port']}/{db}"
    return product


def _size(env: Env, db: str) -> int | None:
    try:
        with psycopg.connect(dbname=db, autocommit=True, connect_timeout=5, **env.pg) as conn:
            row = conn.execute("SELECT messages FROM bench_grown").fetchone()
            return int(row[0]) if row else None
    except psycopg.Error:
        return None


def _migrate(env: Env, db: str, deadline: Deadline) -> None:
    argv = [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"]
    run_step(f"migrate {db}", argv, _env(env, db), deadline)


def build(env: Env, db: str, messages: int, deadline: Deadline) -> str:
    if messages and _size(env, db) == messages:
        _migrate(env, db, deadline)
        return "reused"
    with psycopg.connect(dbname="postgres", autocommit=True, connect_timeout=5, **env.pg) as c:
        c.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        c.execute(f"CREATE DATABASE {db}")
    _migrate(env, db, deadline)
    if not messages:
        return "built empty"
    # Longer than run_step allows: a million rows and their indexes take a minute or two.
    out = subprocess.run(
        [sys.executable, "-m", "tests.bench.grow", "--messages", str(messages)],
        cwd=ROOT,
        env=_env(env, db),
        capture_output=True,
        text=True,
        timeout=max(60.0, deadline.left()),
        check=True,
    )
    return "built: " + out.stdout.strip().splitlines()[-1]


def pages(env: Env, db: str, deadline: Deadline) -> dict[str, dict[str, Any]]:
    argv = [sys.executable, "-m", "tests.bench.console_pages", "--repeat", str(REPEAT)]
    out = run_step(f"console pages on {db}", argv, _env(env, db), deadline)
    return dict(json.loads(out.strip().splitlines()[-1]))


def run(env: Env, work: Path, deadline: Deadline) -> tuple[list[str], int]:
    """Render every page on both stores; the summary rows and how many missed the target."""
    log(f"console: store {CONSOLE_DB} ({MESSAGES:,} messages)")
    log(f"console: {CONSOLE_DB} {build(env, CONSOLE_DB, MESSAGES, deadline)}")
    build(env, EMPTY_DB, 0, deadline)
    build(env, SMALL_DB, SMALL_MESSAGES, deadline)
    log(f"console: pages (median of {REPEAT} each)")
    big = pages(env, CONSOLE_DB, deadline)
    empty = pages(env, EMPTY_DB, deadline)
    small = pages(env, SMALL_DB, deadline)
    with psycopg.connect(dbname=CONSOLE_DB, autocommit=True, connect_timeout=5, **env.pg) as conn:
        sizes = [
            conn.execute(
                "SELECT reltuples::bigint FROM pg_class WHERE relname = %s", [table]
            ).fetchone()[0]  # type: ignore[index]
            for table in ("broker_message", "broker_logentry", "broker_dlqentry")
        ]
    rows = [
        f"console store: {sizes[0]:,} messages, {sizes[1]:,} log rows, {sizes[2]:,} DLQ entries"
        f" (estimates); ms, median of {REPEAT}; targets: big < {TARGET_MS:g} ms and"
        f" big/small <= {TARGET_RATIO:g}x",
        f"{'page':30s} {'empty':>7s} {'20k':>7s} {'big':>7s} {'b/empty':>8s} {'b/small':>8s}"
        f" {'queries':>7s}  status",
    ]
    missed = 0
    for label, _ in PAGES:
        b, e, m = big[label], empty[label], small[label]
        ok = b["status"] == 200 and b["ms"] < TARGET_MS and b["ms"] <= TARGET_RATIO * m["ms"]
        missed += not ok
        rows.append(
            f"{label:30s} {e['ms']:7.1f} {m['ms']:7.1f} {b['ms']:7.1f} {b['ms'] / e['ms']:7.1f}x"
            f" {b['ms'] / m['ms']:7.1f}x {b['queries']:7d}"
            f"  {b['status']} {'ok' if ok else 'MISSED'}"
            + ("" if e["status"] == 200 else f" (empty store: {e['status']}, nothing to show)")
        )
    rows.append(f"console pages: {len(PAGES) - missed} of {len(PAGES)} within target")
    rows.append(
        f"first render (cold cache), big store: dashboard {big['dashboard']['cold_ms']:.1f} ms"
        f" (empty {empty['dashboard']['cold_ms']:.1f} ms, small {small['dashboard']['cold_ms']:.1f}"
        " ms): its charts read the whole last day once, then closed buckets come from the cache"
    )
    return rows, missed


def main_console(env: Env, work: Path, deadline: Deadline) -> int:
    rows, _ = run(env, work, deadline)
    print()
    print("=" * 100)
    print("CONSOLE PAGES")
    print("\n".join(rows))
    print("=" * 100, flush=True)
    return 0
