"""message_from_draft builds messages from positional values (issue 10): every column holds
what Django's keyword construction would give, and callable defaults run per message."""

from __future__ import annotations

from datetime import UTC, datetime

from broker.models import Message, Payload
from broker.publish_options import PublishOptions
from broker.services.publish import Draft, message_from_draft

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def test_defaults_are_django_s_and_callable_ones_run_for_each_message() -> None:
    payload = Payload(body=b"x")
    draft = Draft("https://example.com/a", payload, PublishOptions(), caller_ip="192.0.2.1")
    first, second = message_from_draft(draft, NOW), message_from_draft(draft, NOW)
    assert first.message_id != second.message_id  # new_message_id ran for each
    assert first.payload is payload and first.payload_id is None
    assert first.source_message is None
    assert (first.url, first.caller_ip, first.created_at) == (
        "https://example.com/a",
        "192.0.2.1",
        NOW,
    )
    reference = Message(url="https://example.com/a", payload=payload)
    for field in Message._meta.concrete_fields:
        if field.attname in {
            "message_id",
            "url",
            "caller_ip",
            "created_at",
            "not_before",
            "due_at",
            "state",
        }:
            continue
        assert getattr(first, field.attname) == getattr(reference, field.attname), field.name
    assert first._state.adding and first._state.db == reference._state.db
