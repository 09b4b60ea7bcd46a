"""The dead-letter queue: delete entries, or retry them as new messages."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from django.db import transaction

from broker.models import DlqEntry, Message
from broker.publish_options import options_to_headers, parse_publish_options
from broker.services.publish import (
    Draft,
    Published,
    messages_publish,
    options_from_message,
    publish_limits,
)


def original_headers(message: Message) -> dict[str, str]:
    """The publish headers that would recreate ``message``'s settings (no delay, no dedup)."""
    return options_to_headers(options_from_message(message))


def _overlay(base: dict[str, str], overrides: Mapping[str, str]) -> dict[str, str]:
    given = {name.lower(): (name, value) for name, value in overrides.items()}
    merged = {name: value for name, value in base.items() if name.lower() not in given}
    merged.update(dict(given.values()))
    return merged


@transaction.atomic
def dlq_retry(
    *, entries: list[DlqEntry], overrides: Mapping[str, str], now: datetime
) -> list[Published]:
    """Publish each entry's message again and remove the entry.

    The new message has the same body (the stored payload, unredacted) and
    settings; ``overrides`` (the retry request's ``Upstash-*`` headers) win.
    Raises ApplicationError for a malformed override; nothing is written then.
    """
    upstash = {k: v for k, v in overrides.items() if k.lower().startswith("upstash-")}
    drafts = []
    for entry in entries:
        message = entry.message
        options = parse_publish_options(
            _overlay(original_headers(message), upstash), {}, now=now, limits=publish_limits()
        )
        drafts.append(
            Draft(
                message.url,
                message.payload,
                options,
                caller_ip=message.caller_ip,
                topic_name=message.topic_name,
                endpoint_name=message.endpoint_name,
                queue_name=message.queue_name,
                schedule_id=message.schedule_id,
            )
        )
    published = messages_publish(drafts=drafts, now=now)
    DlqEntry.objects.filter(pk__in=[entry.pk for entry in entries]).delete()
    return published


def dlq_delete(*, dlq_ids: list[str]) -> int:
    """Remove entries (their messages stay, with their logs, until pruned)."""
    return DlqEntry.objects.filter(dlq_id__in=dlq_ids).delete()[0]
