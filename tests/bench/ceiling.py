"""The database's ceiling for publish: the product's statements without HTTP or Django.

``python -m tests.bench.ceiling --url URL --connections N --seconds S [--rows K]`` with
the product's environment. One message is built by the product's own code (the same
``PublishRequest`` -> ``drafts_for`` -> ``message_from_draft`` the API runs, with the
publish benchmark's headers and body), and ``message_insert.insert_params`` turns it
into the parameters of ``insert_statement()``. Then N processes (as many as gunicorn
has workers), each with one psycopg connection in autocommit and the product's
``prepare_threshold``, loop for S seconds over exactly what a publish sends: the
statement (message, payload and CREATED log row, committed by itself) and, after its
commit, the new id handed to the product's notifier thread (``wakeup.Notifier``: one
``pg_notify`` for whatever is waiting, on its own connection). Only a fresh
``message_id`` per row and the JSON encoding happen in Python between statements.

``--rows K`` sends K messages per statement and one NOTIFY for them: what a writer
that commits every waiting request together could reach at best (issue 10, group
commit). Prints one JSON line: ``{"rows": n, "seconds": s, "rate": r}``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from datetime import UTC, datetime
from typing import Any


def _loop(
    conninfo: dict[str, Any],
    statement: str,
    params: list[Any],
    start_at: float,
    seconds: float,
    queue: multiprocessing.Queue,  # type: ignore[type-arg]
) -> None:
    try:
        queue.put(_measure(conninfo, statement, params, start_at, seconds))
    except BaseException as exc:
        queue.put(repr(exc))
        raise


def _measure(
    conninfo: dict[str, Any],
    statement: str,
    params: list[Any],
    start_at: float,
    seconds: float,
) -> tuple[int, float]:
    import psycopg

    from broker import wakeup

    send = wakeup.notifier.send
    rows = json.loads(params[1])
    with psycopg.connect(**conninfo, autocommit=True) as conn, psycopg.Cursor(conn) as cur:
        # Warm up: the statement is prepared from its second run, as in the product.
        for _ in range(3):
            for row in rows:
                row["message_id"] = "msg_" + os.urandom(13).hex()
            cur.execute(statement, [params[0], json.dumps(rows), params[2], datetime.now(UTC)])
        time.sleep(max(0.0, start_at - time.time()))
        done = 0
        stop_at = start_at + seconds
        while time.time() < stop_at:
            for row in rows:
                row["message_id"] = "msg_" + os.urandom(13).hex()
            cur.execute(statement, [params[0], json.dumps(rows), params[2], datetime.now(UTC)])
            ids = [str(r[0]) for r in cur.fetchall()]
            # After the commit, as the product does: handed to this process's notifier
            # thread, which sends what is waiting in one statement on its own connection.
            send([",".join(ids)])
            done += len(ids)
        return done, time.time()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--connections", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rows", type=int, default=1)
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "qstash_site.settings")
    import django

    django.setup()
    from django.db import connection, connections
    from django.utils import timezone

    from broker.destinations import PublishRequest, drafts_for
    from broker.services.message_insert import insert_params, insert_statement
    from broker.services.publish import message_from_draft, publish_limits

    now = timezone.now()
    messages = []
    for _ in range(args.rows):
        publish = PublishRequest(
            args.url,
            {"Content-Type": "application/json"},
            b'{"hello":"world","bench":true}',
            {},
            "127.0.0.1",
        )
        drafts, _ = drafts_for(publish, groups={}, now=now, limits=publish_limits())
        messages.append(message_from_draft(drafts[0], now))
    params = insert_params(messages, [m.payload for m in messages], now=now)
    conninfo = dict(connection.get_connection_params())
    # Django's cursor binds on the client; the product's statements run on psycopg's own
    # server-side binding cursor, which prepare_threshold prepares.
    conninfo.pop("cursor_factory", None)
    connections.close_all()  # nothing of Django's crosses the fork

    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    start_at = time.time() + 1.0
    children = [
        ctx.Process(
            target=_loop,
            args=(
                conninfo,
                insert_statement(),
                params,
                start_at,
                args.seconds,
                queue,
            ),
            daemon=True,
        )
        for _ in range(args.connections)
    ]
    for child in children:
        child.start()
    results = [queue.get(timeout=args.seconds + 60) for _ in children]
    for child in children:
        child.join(5)
    if failed := [r for r in results if isinstance(r, str)]:
        raise SystemExit(f"a ceiling process failed: {failed[0]}")
    total = sum(r[0] for r in results)
    seconds = max(r[1] for r in results) - start_at
    print(json.dumps({"rows": total, "seconds": seconds, "rate": total / seconds}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
