"""Retention pruning: batches that commit, on a thread of its own, that stop nothing (issue 12)."""

from __future__ import annotations

import sys
import threading
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from broker.models import Deduplication, DlqEntry, LogEntry, Message, Payload
from broker.services.maintenance import rows_prune
from tests.bench.grow import _messages_sql
from tests.conftest import Process, Receiver, Reply, Services, wait_until

FIRST = 2 * 10**9  # ids no other test uses


def expired(count: int) -> tuple[int, int]:
    """``count`` delivered messages finished 30 days ago, 3 log rows each: their id range."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(max(id), 0) FROM broker_message")
        first = max(FIRST, int(cursor.fetchone()[0]) + 1)  # type: ignore[index]
        for statement in _messages_sql(expired=True):
            cursor.execute(statement, {"first": first, "count": count, "expired": True})
    return first, first + count - 1


def message(**fields: Any) -> Message:
    now = timezone.now()
    defaults: dict[str, Any] = {
        "url": "http://127.0.0.1:1/x",
        "payload": Payload.objects.create(body=b"x"),
        "state": Message.State.DELIVERED,
        "not_before": now,
        "created_at": now,
        "finished_at": now,
    }
    return Message.objects.create(**{**defaults, **fields})


@pytest.mark.django_db
def test_prune_deletes_what_is_past_retention_with_what_points_at_it(settings: Any) -> None:
    settings.QSTASH_DELIVERED_RETENTION_HOURS = 24
    settings.QSTASH_LOG_RETENTION_DAYS = 14
    settings.QSTASH_DLQ_RETENTION_DAYS = 7
    now = timezone.now()
    old = now - timedelta(days=20)
    # A delivered message past 24 h, whose payload a kept message shares (a group publish).
    shared = Payload.objects.create(body=b"shared")
    gone = message(payload=shared, finished_at=now - timedelta(hours=25))
    kept_sibling = message(payload=shared, state=Message.State.CREATED, finished_at=None)
    LogEntry.objects.create(message=gone, state="DELIVERED", time=now - timedelta(hours=25))
    # A failed message past the log retention, with its DLQ entry, a callback pointing at
    # it, and a deduplication id.
    failed = message(state=Message.State.FAILED, finished_at=old)
    DlqEntry.objects.create(dlq_id="d-1", message=failed, created_at=old)
    callback = message(source_message=failed, finished_at=now)
    Deduplication.objects.create(key="k", message=failed, expires_at=now + timedelta(hours=1))
    # Kept: a failed message inside the log retention (its DLQ entry is past 7 days).
    recent_failed = message(state=Message.State.FAILED, finished_at=now - timedelta(days=8))
    DlqEntry.objects.create(dlq_id="d-2", message=recent_failed, created_at=now - timedelta(days=8))
    old_log = LogEntry.objects.create(message=callback, state="CREATED", time=old)

    pruned = rows_prune(batch=2, pause_ms=0)

    assert not Message.objects.filter(pk__in=[gone.pk, failed.pk]).exists()
    assert (
        Message.objects.filter(pk__in=[kept_sibling.pk, callback.pk, recent_failed.pk]).count() == 3
    )
    assert Payload.objects.filter(pk=shared.pk).exists()  # still carried by kept_sibling
    assert not Payload.objects.filter(pk=failed.payload_id).exists()
    callback.refresh_from_db()
    assert callback.source_message_id is None
    assert not Deduplication.objects.filter(key="k").exists()
    assert list(DlqEntry.objects.values_list("dlq_id", flat=True)) == []
    assert not LogEntry.objects.filter(pk=old_log.pk).exists()
    assert pruned["messages"] == 2 and pruned["payloads"] == 1 and pruned["dlq"] == 1


@pytest.mark.django_db
def test_prune_of_a_backlog_goes_in_batches_each_its_own_statement(settings: Any) -> None:
    first, last = expired(25)

    with CaptureQueriesContext(connection) as captured:
        pruned = rows_prune(batch=10, pause_ms=0)

    assert pruned["messages"] == 25
    assert not Message.objects.filter(pk__range=(first, last)).exists()
    assert not LogEntry.objects.filter(message_id__gte=first, message_id__lte=last).exists()
    assert not Payload.objects.filter(pk__range=(first, last)).exists()
    batches = [q["sql"] for q in captured.captured_queries if "WITH doomed" in q["sql"]]
    delivered = [sql for sql in batches if "state = 'DELIVERED'" in sql]
    # 25 rows, 10 a batch: 10, 10, then 5 (short: done). The later batches start after
    # the last finished_at of the one before (the keyset), not from the oldest row again.
    assert len(delivered) == 3, delivered
    assert all("LIMIT 10" in sql for sql in delivered)
    assert "'0001-01-01" in delivered[0] and "'0001-01-01" not in delivered[1]


@pytest.mark.django_db
def test_an_idle_prune_reads_indexes_only(settings: Any) -> None:
    """Nothing past retention: each batch is one probe of an index, never a table scan
    (no anti-join over every payload, no walk of the finished messages kept for days)."""
    expired(10)
    rows_prune(pause_ms=0)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE broker_message")
        cursor.execute("ANALYZE broker_payload")
    with CaptureQueriesContext(connection) as captured:
        assert not any(rows_prune(pause_ms=0).values())
    batches = [q["sql"] for q in captured.captured_queries if "WITH doomed" in q["sql"]]
    assert len(batches) == 6  # delivered, failed, canceled messages; logs, DLQ, dedup ids
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        for sql in batches:
            cursor.execute(f"EXPLAIN {sql}")
            plan = "\n".join(row[0] for row in cursor.fetchall())
            assert "Seq Scan" not in plan, plan
            if "broker_message" in sql.split("FROM", 2)[1]:
                # On a table this small the planner may read the failed messages' own
                # partial index for the FAILED batch instead: an index either way.
                assert (
                    "message_finished_state_idx" in plan or "message_failed_status_idx" in plan
                ), plan
                assert "broker_message_payload_id" in plan, plan


@pytest.fixture
def lock_session() -> Any:
    params = connection.settings_dict
    conn = psycopg.connect(
        dbname=params["NAME"],
        user=params["USER"],
        password=params["PASSWORD"] or None,
        host=params["HOST"] or None,
        port=params["PORT"] or None,
    )
    yield conn
    conn.rollback()
    conn.close()


def prune_waiting_on_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND query LIKE '%%WITH doomed%%'"
        )
        row = cursor.fetchone()
    return bool(row and row[0])


def test_a_prune_in_progress_wakes_nothing_late(
    client_sdk: Any, receiver: Receiver, services: Services, lock_session: Any
) -> None:
    """The clock's prune thread is held in the middle of a batch (a row lock another
    session holds); meanwhile a delivery in flight finishes, an immediate publish is
    relayed and a delayed one is woken at its due time: the clock's loop does not wait
    for the prune. Released, the prune finishes the backlog."""
    # The session's clock (which prunes too) stops first, so that only the clock under
    # test prunes this backlog.
    services.clock.stop()
    first, last = expired(300)
    # The first batch deletes the log rows of the oldest expired messages: hold one.
    lock_session.execute("SELECT id FROM broker_logentry WHERE message_id = %s FOR UPDATE", [first])
    release = threading.Event()
    receiver.script("/in-flight", Reply(until=release))
    pruning = Process(
        "clock-pruning",
        [sys.executable, "manage.py", "qstash_clock", "--interval", "3600"],
        {**services.clock.env, "QSTASH_PRUNE_BATCH": "100", "QSTASH_PRUNE_PAUSE_MS": "0"},
    )
    pruning.start()
    try:
        wait_until(prune_waiting_on_a_lock, timeout=30, what="the prune to wait on the lock")

        in_flight = client_sdk.message.publish(url=receiver.url("/in-flight"), body="slow")
        receiver.wait_for(1, "/in-flight", timeout=30)
        now = client_sdk.message.publish(url=receiver.url("/now"), body="now")
        later = client_sdk.message.publish(url=receiver.url("/later"), body="later", delay="2s")
        (got_now,) = receiver.wait_for(1, "/now", timeout=30)
        (got_later,) = receiver.wait_for(1, "/later", timeout=30)
        release.set()
        wait_until(
            lambda: Message.objects.get(message_id=in_flight.message_id).state == "DELIVERED",
            what="the in-flight delivery to be recorded",
        )

        # All of that happened while the prune was held in its first batch.
        assert prune_waiting_on_a_lock()
        assert Message.objects.filter(pk__range=(first, last)).count() == 300
        assert got_now.headers["Upstash-Message-Id"] == now.message_id
        assert got_later.headers["Upstash-Message-Id"] == later.message_id

        lock_session.rollback()
        wait_until(
            lambda: not Message.objects.filter(pk__range=(first, last)).exists(),
            timeout=60,
            what="the prune to finish the backlog",
        )
        assert not LogEntry.objects.filter(message_id__gte=first, message_id__lte=last).exists()
        delivered = Message.objects.filter(
            message_id__in=[in_flight.message_id, now.message_id, later.message_id],
            state="DELIVERED",
        )
        assert delivered.count() == 3
    finally:
        release.set()
        lock_session.rollback()
        pruning.stop()
        services.clock.start()


def test_between_batches_the_prune_rests_at_least_as_long_as_the_batch_took(
    monkeypatch: Any,
) -> None:
    """On a loaded host a batch may take 400 ms instead of 50 (measured on the grown store,
    mostly its commit's foreign-key checks): a fixed 20 ms pause would then keep a
    database core busy 95% of the time, beside the claims and publishes."""
    from broker.services import maintenance

    slept: list[float] = []
    monkeypatch.setattr(maintenance.time, "sleep", slept.append)
    clock = iter([0.0, 0.3, 1.0, 1.01, 2.0, 2.0])  # batches of 300 ms, 10 ms, then short
    monkeypatch.setattr(maintenance.time, "monotonic", lambda: next(clock))
    batches = iter([(5, timezone.now()), (5, timezone.now()), (2, None)])

    total = maintenance._batches(lambda after: next(batches), batch=5, pause=0.02, stop=None)

    assert total == 12
    assert slept == [pytest.approx(0.3), pytest.approx(0.02)]


@pytest.mark.django_db(transaction=True)
def test_each_prune_batch_commits_without_waiting_for_its_flush() -> None:
    """The prune's commits do not wait for the disk (a crash loses at most a batch, deleted
    again next round), so they add no flush for publishes and outcomes to wait behind."""
    expired(3)
    with CaptureQueriesContext(connection) as captured:
        rows_prune(batch=2, pause_ms=0)
    sqls = [q["sql"] for q in captured.captured_queries]
    batches = [i for i, sql in enumerate(sqls) if "WITH doomed" in sql]
    assert batches
    assert all(sqls[i - 1] == "SET LOCAL synchronous_commit = off" for i in batches), sqls


@pytest.mark.django_db
def test_the_pruned_tables_are_vacuumed_after_one_percent_of_them_is_dead() -> None:
    """Dead entries of pruned rows stay in the time indexes until a vacuum, and the
    planner walks them (333 ms of planning over 3,000,000 on the grown store)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname, reloptions FROM pg_class WHERE relname IN"
            " ('broker_logentry', 'broker_message', 'broker_payload')"
        )
        options = dict(cursor.fetchall())
    assert len(options) == 3
    for table, reloptions in options.items():
        assert "autovacuum_vacuum_scale_factor=0.01" in (reloptions or []), table
