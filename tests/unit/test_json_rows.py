"""json_rows: every column as PostgreSQL's input functions read it back (issue 10 made the
conversion per field kind instead of per value)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

from broker.models import LogEntry, Message, Payload
from broker.publish_options import PublishOptions
from broker.services.json_rows import _LOG_FIELDS, json_rows, json_value
from broker.services.publish import Draft, message_from_draft

NOW = datetime(2026, 11, 28, 12, 0, 0, 123456, tzinfo=UTC)


def _message() -> Message:
    draft = Draft("https://example.com/a", Payload(body=b"x"), PublishOptions())
    draft.scheduled_for = NOW
    message = message_from_draft(draft, NOW)
    message.claim_token = uuid.UUID(int=7)
    message.updated_at = NOW
    return message


def test_rows_hold_what_json_value_makes_of_every_column():
    message = _message()
    fields = [f for f in Message._meta.concrete_fields if not f.primary_key]
    (row,) = json_rows([message], fields)
    expected = {f.column: json_value(getattr(message, f.attname)) for f in fields}
    assert row == expected
    assert row["scheduled_for"] == NOW.isoformat()
    assert row["claim_token"] == str(uuid.UUID(int=7))
    json.dumps(row)  # nothing left that JSON cannot carry


def test_log_rows_convert_their_time():
    entry = LogEntry(message_id=1, state=LogEntry.State.CREATED, time=NOW)
    (row,) = json_rows([entry], _LOG_FIELDS)
    assert row["time"] == NOW.isoformat()
    json.dumps(row)
