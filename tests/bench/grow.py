"""A grown store, built with set-based SQL: finished messages, their log rows and a DLQ.

``python -m tests.bench.grow --messages N`` with ``DATABASE_URL`` naming a migrated
database (the bench's ``qstash_bench_grown``). Builds, in one pass of SQL each:

- N payloads and N finished messages created over the last day (ids 1..N): about
  1,000 destination hosts with 7 paths each, 10% labelled (``team-0`` .. ``team-49``),
  5% published to one of 20 topics, 100 caller addresses; 1 in 200 FAILED, the rest
  DELIVERED;
- 3 log rows per message (CREATED, ACTIVE, then DELIVERED or FAILED) in time order;
- a DLQ entry per FAILED message (N/200: 50,000 at ten million).

The secondary indexes are dropped first and rebuilt at the end (a sorted build is
many times faster than maintaining them row by row), then the tables are analyzed.
Prints one JSON line: ``{"messages": N, "logs": ..., "dlq": ..., "seconds": s}``.

``--expired K`` instead adds K more DELIVERED messages (with their 3 log rows each)
finished 400 days ago, past every retention the bench sets: what the prune bench deletes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import psycopg

HOSTS = 1000
PATHS = 7
FAILED_EVERY = 200

# Everything but the primary keys and unique constraints.
_SECONDARY = (
    "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
    " AND tablename IN ('broker_message', 'broker_logentry', 'broker_dlqentry')"
    " AND indexname NOT LIKE '%%_pkey' AND indexdef NOT LIKE 'CREATE UNIQUE%%'"
)


def _messages_sql(*, expired: bool) -> list[str]:
    # Message i: host i % 1000, path i % 7, created over the last day in id order
    # (or 30 days ago, for the expired ones), finished 50 ms later.
    created = (
        "now() - interval '400 days' + (i - %(first)s) * interval '1 millisecond'"
        if expired
        else "now() - interval '1 day' + (i - %(first)s) * (interval '1 day' / %(count)s)"
    )
    sql = f"""
    INSERT INTO broker_payload (id, body)
      SELECT i, '\\x7b7d'::bytea FROM generate_series(%(first)s, %(first)s + %(count)s - 1) i;
    INSERT INTO broker_message (
      id, message_id, url, method, header, payload_id, state, due_at, claim_token, retried,
      max_retries, retry_delay_expression, timeout_seconds, not_before, created_at, updated_at,
      finished_at, callback, callback_header, callback_settings, failure_callback,
      failure_callback_header, failure_callback_settings, labels, redact_fields, caller_ip,
      deduplication_id, topic_name, endpoint_name, queue_name, schedule_id, source_message_id,
      flow_control_key, flow_control_parallelism, flow_control_rate, flow_control_period,
      last_response_status, last_response_header, last_response_body, last_error,
      waiting_for, queue_slot, flow_slot, scheduled_for)
    SELECT i, 'msg_grown' || lpad(i::text, 17, '0'),
      'http://host' || (i %% {HOSTS}) || '.bench.test/hook/' || (i %% {PATHS}),
      'POST', '{{}}'::jsonb, i,
      CASE WHEN i %% {FAILED_EVERY} = 0 AND NOT %(expired)s THEN 'FAILED' ELSE 'DELIVERED' END,
      NULL, NULL, 0, 3, '', 30, c, c, c + interval '50 milliseconds', c + interval '50 ms',
      '', '{{}}'::jsonb, '{{}}'::jsonb, '', '{{}}'::jsonb, '{{}}'::jsonb,
      CASE WHEN i %% 10 = 0 THEN ',team-' || (i / 10 %% 50) || ',' ELSE '' END,
      '[]'::jsonb, '10.0.0.' || (i %% 100), '',
      CASE WHEN i %% 20 = 1 THEN 'topic-' || (i / 20 %% 20) ELSE '' END,
      '', '', '', NULL, '', NULL, NULL, NULL,
      CASE WHEN i %% {FAILED_EVERY} = 0 AND NOT %(expired)s THEN 500 ELSE 200 END,
      '{{}}'::jsonb, '\\x6f6b'::bytea, '', '', false, false, NULL
    FROM (SELECT i, {created} AS c
          FROM generate_series(%(first)s, %(first)s + %(count)s - 1) i) g;
    INSERT INTO broker_logentry (message_id, state, time, error, next_delivery_time,
      response_status, response_header, response_body)
    SELECT m.id, s.state, m.created_at + s.after, '', NULL,
      CASE WHEN s.n = 3 THEN m.last_response_status END, NULL, NULL
    FROM broker_message m CROSS JOIN LATERAL (VALUES
      (1, 'CREATED', interval '0'),
      (2, 'ACTIVE', interval '10 milliseconds'),
      (3, m.state, interval '50 milliseconds')) s(n, state, after)
    WHERE m.id BETWEEN %(first)s AND %(first)s + %(count)s - 1
    ORDER BY m.id, s.n
    """
    # One statement per execute: psycopg binds parameters server-side.
    return [statement for statement in sql.split(";\n") if statement.strip()]


def grow(conn: psycopg.Connection[Any], messages: int) -> dict[str, int]:
    with conn.cursor() as cur:
        cur.execute("SET maintenance_work_mem = '1GB'")
        cur.execute("SET synchronous_commit = off")
        # No foreign-key triggers: the rows are consistent by construction, and 40M
        # deferred checks would be queued in memory until the commit.
        cur.execute("SET session_replication_role = replica")
        cur.execute(_SECONDARY)
        indexes = cur.fetchall()
        for name, _ in indexes:
            cur.execute(f'DROP INDEX "{name}"')
        cur.execute(
            "TRUNCATE broker_dlqentry, broker_deduplication, broker_logentry, broker_message,"
            " broker_schedule, broker_payload RESTART IDENTITY"
        )
        for statement in _messages_sql(expired=False):
            cur.execute(statement, {"first": 1, "count": messages, "expired": False})
        cur.execute(
            "INSERT INTO broker_dlqentry (dlq_id, message_id, created_at)"
            " SELECT (extract(epoch FROM finished_at) * 1000)::bigint || '-' || id, id,"
            " finished_at FROM broker_message WHERE state = 'FAILED'"
        )
        for table in ("broker_payload", "broker_message", "broker_logentry", "broker_dlqentry"):
            cur.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                f" (SELECT max(id) FROM {table}))"
            )
        for _, definition in indexes:
            cur.execute(definition)
        counts = {}
        for table in ("broker_message", "broker_logentry", "broker_dlqentry"):
            cur.execute(f"SELECT count(*) FROM {table}")
            counts[table] = cur.fetchone()[0]  # type: ignore[index]
        # What the bench reads to reuse this store instead of building it again.
        cur.execute("DROP TABLE IF EXISTS bench_grown")
        cur.execute("CREATE TABLE bench_grown AS SELECT %s::bigint AS messages", [messages])
    conn.commit()
    conn.autocommit = True
    conn.execute("VACUUM ANALYZE")
    return {
        "messages": counts["broker_message"],
        "logs": counts["broker_logentry"],
        "dlq": counts["broker_dlqentry"],
    }


def add_expired(conn: psycopg.Connection[Any], count: int) -> int:
    """Add ``count`` delivered messages finished 400 days ago, with their logs."""
    with conn.cursor() as cur:
        cur.execute("SET session_replication_role = replica")
        cur.execute("SELECT coalesce(max(id), 0) + 1 FROM broker_message")
        first = max(cur.fetchone()[0], 1)  # type: ignore[index]
        cur.execute("SELECT coalesce(max(id), 0) + 1 FROM broker_payload")
        first = max(first, cur.fetchone()[0])  # type: ignore[index]
        for statement in _messages_sql(expired=True):
            cur.execute(statement, {"first": first, "count": count, "expired": True})
        for table in ("broker_payload", "broker_message"):
            cur.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                f" (SELECT max(id) FROM {table}))"
            )
    conn.commit()
    conn.autocommit = True
    conn.execute("ANALYZE broker_message")
    conn.execute("ANALYZE broker_logentry")
    return count


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=0)
    parser.add_argument("--expired", type=int, default=0)
    args = parser.parse_args()
    started = time.monotonic()
    with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
        if args.expired:
            result: dict[str, int] = {"expired": add_expired(conn, args.expired)}
        else:
            result = grow(conn, args.messages)
    print(json.dumps({**result, "seconds": round(time.monotonic() - started, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
