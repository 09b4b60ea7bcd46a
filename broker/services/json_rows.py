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
from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Any

from django.db import connection, models
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


# Column kinds whose Python values JSON cannot carry as they are, and how each is
# written (None stays null); ``json_value`` for the rest of them.
_CONVERTERS: tuple[tuple[type[Field[Any, Any]], Callable[[Any], Any]], ...] = (
    (models.DateTimeField, datetime.isoformat),
    (models.DateField, date.isoformat),
    (models.UUIDField, str),
    (models.BinaryField, json_value),
    (models.DurationField, json_value),
    (models.DecimalField, json_value),
)

_Plain = list[tuple[str, str]]
_Converted = list[tuple[str, str, Callable[[Any], Any]]]


@functools.cache
def _plan(fields: tuple[Field[Any, Any], ...]) -> tuple[_Plain, _Converted]:
    """(column, attname) pairs copied as they are, and those converted (with how).

    Decided once per field list from the field classes: calling json_value on each of
    a message's forty columns was a third of building a batch's rows (issue 10). The
    conversions are C methods where they can be (``datetime.isoformat``), called only
    for a value that is not None.
    """
    plain: _Plain = []
    converted: _Converted = []
    for f in fields:
        convert = next((c for kind, c in _CONVERTERS if isinstance(f, kind)), None)
        if convert is None:
            plain.append((str(f.column), f.attname))
        else:
            converted.append((str(f.column), f.attname, convert))
    return plain, converted


def json_rows(objs: Sequence[Any], fields: Sequence[Field[Any, Any]]) -> list[dict[str, Any]]:
    plain, converted = _plan(tuple(fields))
    rows = []
    for obj in objs:
        values = obj.__dict__
        row = {column: values[attname] for column, attname in plain}
        for column, attname, convert in converted:
            value = values[attname]
            row[column] = None if value is None else convert(value)
        rows.append(row)
    return rows


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
