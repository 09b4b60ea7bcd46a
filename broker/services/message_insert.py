"""Inserting new messages with their payloads and CREATED log rows, and waking delivery.

This is the publish hot path. On PostgreSQL it is one statement whatever the
number of messages: payload ids are drawn from their sequence inside the
statement, messages reference them by position, and the log rows are written
from the messages' RETURNING. That is one round trip instead of five (BEGIN,
three INSERTs, COMMIT), no ORM compilation and no broker call in the request.
Once it commits, a NOTIFY names the messages due now, another the earliest later
due time, so the clock wakes for it (``wakeup.notify_on_commit`` says why that
is a transaction of its own). Elsewhere (the SQLite file of
``make run``) the ORM inserts and a thread sends the hint.

The statement runs on a server-side binding cursor, so psycopg prepares it once per
connection (after ``prepare_threshold`` runs, set in the database OPTIONS): its
text never changes, and planning it took as long as executing it (issue 10).
Django's own cursors bind client-side, which never prepares.
"""

from __future__ import annotations

import functools
import json
from datetime import datetime
from typing import Any

import psycopg
from django.conf import settings
from django.db import connection, transaction

from broker import wakeup
from broker.models import LogEntry, Message, Payload
from broker.services.group_commit import committer
from broker.services.json_rows import json_rows, recordset

# Columns written from the Message instance; ``payload_id`` is bound by position.
_COLUMNS = tuple(
    f for f in Message._meta.concrete_fields if not f.primary_key and f.attname != "payload_id"
)


@functools.cache
def insert_statement() -> str:
    names, record = recordset(_COLUMNS)
    # Built from model metadata only, never from input: S608 does not apply.
    return f"""
        WITH pin AS MATERIALIZED (
            SELECT nextval(pg_get_serial_sequence('broker_payload', 'id')) AS id, body, ord
            FROM unnest(%s::bytea[]) WITH ORDINALITY AS t(body, ord)
        ), p AS (
            INSERT INTO broker_payload (id, body) SELECT id, body FROM pin
        ), m AS (
            INSERT INTO broker_message ({names}, payload_id)
            SELECT {names}, COALESCE(t.payload_id, pin.id)
            FROM jsonb_to_recordset(%s::jsonb)
                AS t({record}, payload_id bigint, payload_ord bigint)
            LEFT JOIN pin ON pin.ord = t.payload_ord
            RETURNING id, message_id, payload_id
        ), l AS (
            INSERT INTO broker_logentry (message_id, state, time, error)
            SELECT id, %s, %s, '' FROM m
        )
        SELECT id, message_id, payload_id FROM m
    """  # noqa: S608


def insert_params(
    messages: list[Message], new_payloads: list[Payload], *, now: datetime
) -> list[Any]:
    """The parameters of ``insert_statement()`` for ``messages`` (the bench's ceiling
    runs the same statement with them, without Django: ``tests/bench/ceiling.py``)."""
    position = {id(p): n for n, p in enumerate(new_payloads, start=1)}
    for message in messages:
        message.updated_at = now
    # The rows travel as one JSON document: binding forty one-element arrays cost
    # more client time than the whole statement.
    rows = json_rows(messages, _COLUMNS)
    for row, message in zip(rows, messages, strict=True):
        row["payload_id"] = message.payload.pk
        row["payload_ord"] = position.get(id(message.payload))
    return [
        [bytes(p.body) for p in new_payloads],
        json.dumps(rows),
        LogEntry.State.CREATED,
        now,
    ]


def messages_insert(messages: list[Message], *, now: datetime) -> None:
    """Insert ``messages`` (new payloads included) and their CREATED log rows; set their pks.

    The caller provides the transaction when it needs one: on PostgreSQL this is
    a single statement, atomic by itself.
    """
    new_payloads = list(
        {id(m.payload): m.payload for m in messages if m.payload.pk is None}.values()
    )
    if connection.vendor != "postgresql":
        with transaction.atomic():
            Payload.objects.bulk_create(new_payloads)
            Message.objects.bulk_create(messages)
            LogEntry.objects.bulk_create(
                [LogEntry(message=m, state=LogEntry.State.CREATED, time=now) for m in messages]
            )
            if due := [m.pk for m in messages if m.not_before <= now]:
                wakeup.wake_on_commit(due)
        return

    if settings.QSTASH_PUBLISH_GROUP_COMMIT and not connection.in_atomic_block:
        # Threads of this process commit together (group_commit.py says how).
        committer.insert(messages, new_payloads, now)
        return
    params = insert_params(messages, new_payloads, now=now)
    # What Django's cursor() does first (health check, connect), and its error
    # wrapping: an outage must surface as django.db's OperationalError (outage.py).
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(insert_statement(), params)
        ids = {message_id: (pk, payload_id) for pk, message_id, payload_id in cursor.fetchall()}
    for message in messages:
        message.pk, message.payload.pk = ids[message.message_id]
        message.payload_id = message.payload.pk
    notify(messages, now)


def notify(messages: list[Message], now: datetime, *, on_commit: bool = True) -> None:
    """Announce the stored messages to the clock: those due now, and the earliest later
    due time. After the caller's commit, or at once when it is known committed."""
    later = [m.not_before for m in messages if m.not_before > now]
    due = [m.pk for m in messages if m.not_before <= now]
    if on_commit:
        wakeup.notify_on_commit(due, min(later) if later else None)
    else:
        wakeup.notify_committed(due, min(later) if later else None)
