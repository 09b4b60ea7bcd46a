"""Bulk writes as one JSON document: ``INSERT ... SELECT ... FROM jsonb_to_recordset(%s)``.

psycopg binds parameters on the client here: a ``bulk_create`` of a hundred log
rows is a statement with eight hundred placeholders to split and quote, which
cost more client time than the database spent on it. One JSON parameter,
encoded by the C ``json`` module, costs a fraction of that, and PostgreSQL's
own input functions read each column back exactly.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import Field

from broker.models import LogEntry


def json_value(value: Any) -> Any:
    """A column value as JSON that PostgreSQL's input functions read back exactly."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes | memoryview):
        return "\\x" + bytes(value).hex()
    return value


def json_rows(objs: Sequence[Any], fields: Sequence[Field[Any, Any]]) -> list[dict[str, Any]]:
    return [{str(f.column): json_value(getattr(obj, f.attname)) for f in fields} for obj in objs]


@functools.cache
def recordset(fields: tuple[Field[Any, Any], ...]) -> tuple[str, str]:
    """The quoted column list and the ``jsonb_to_recordset`` column definitions."""
    quote = connection.ops.quote_name
    names = ", ".join(quote(str(f.column)) for f in fields)
    record = ", ".join(f"{quote(str(f.column))} {f.db_type(connection)}" for f in fields)
    return names, record


_LOG_FIELDS = tuple(f for f in LogEntry._meta.concrete_fields if not f.primary_key)


def log_entries_insert(entries: list[LogEntry]) -> None:
    """Insert log rows (append-only, so their ids are never needed back)."""
    if not entries:
        return
    if connection.vendor != "postgresql":
        LogEntry.objects.bulk_create(entries)
        return
    names, record = recordset(_LOG_FIELDS)
    # Built from model metadata only, never from input.
    sql = (
        f"INSERT INTO broker_logentry ({names}) "  # noqa: S608
        f"SELECT {names} FROM jsonb_to_recordset(%s::jsonb) AS t({record})"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [json.dumps(json_rows(entries, _LOG_FIELDS))])
