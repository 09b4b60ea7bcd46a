"""Accepting messages: the only writer of new ``Message`` rows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction

from broker.models import Deduplication, Message, Payload
from broker.publish_options import FlowControl, Limits, PublishOptions
from broker.services.gates import gates_prepare, gates_wake_for
from broker.services.message_insert import messages_insert


@dataclass
class Draft:
    """One message to create: where it goes, what it carries, how to deliver it.

    Drafts fanned out from one publish share one unsaved ``Payload``, so the body
    is stored once however many endpoints it goes to.
    """

    url: str
    payload: Payload
    options: PublishOptions
    caller_ip: str = ""
    topic_name: str = ""
    endpoint_name: str = ""
    queue_name: str = ""
    schedule_id: str = ""
    scheduled_for: datetime | None = None  # the trigger of a schedule that made it
    source_message: Message | None = None


@dataclass
class Published:
    message_id: str
    url: str
    deduplicated: bool = False

    def to_wire(self) -> dict[str, object]:
        data: dict[str, object] = {"messageId": self.message_id, "url": self.url}
        if self.deduplicated:
            data["deduplicated"] = True
        return data


def publish_limits() -> Limits:
    return Limits(
        max_retries=settings.QSTASH_MAX_RETRIES,
        default_retries=settings.QSTASH_DEFAULT_RETRIES,
        max_delay_seconds=settings.QSTASH_MAX_DELAY_SECONDS,
        max_timeout_seconds=settings.QSTASH_MAX_TIMEOUT_SECONDS,
        default_timeout_seconds=settings.QSTASH_DEFAULT_TIMEOUT_SECONDS,
        max_headers=settings.QSTASH_MAX_HEADERS,
        max_header_bytes=settings.QSTASH_MAX_HEADER_BYTES,
        max_labels=settings.QSTASH_MAX_LABELS,
    )


def _default_of(field: Any) -> Callable[[], Any]:
    """The field's default as a function: its callable (a fresh dict, a new message
    id) or its constant, read once (Django's own get_default returns that same object)."""
    if field.has_default() and callable(field.default):
        return field.default  # type: ignore[no-any-return]
    constant = field.get_default()
    return lambda: constant


# (attname, default) of every concrete Message column, in the order Message(*args) takes.
_MESSAGE_FIELDS = tuple((f.attname, _default_of(f)) for f in Message._meta.concrete_fields)


def message_from_draft(draft: Draft, now: datetime) -> Message:
    """The one mapping from delivery options to a message row (publish, batch, callbacks,
    DLQ retries and schedule triggers all come through here).

    The instance is built from positional values, Django's own fast path (the one it
    uses for rows read from the database): with keyword arguments ``Model.__init__``
    looked up each of forty fields by name, half of building a batch's messages
    (issue 10). The two related objects are then set through their descriptors, as
    keywords would have, so ``message.payload`` is the draft's (unsaved) payload.
    """
    opts = draft.options
    not_before = opts.not_before or now
    fc = opts.flow_control
    values = {
        "url": draft.url,
        "method": opts.method,
        "header": opts.header,
        "state": Message.State.CREATED,
        "due_at": not_before,
        "max_retries": opts.retries,
        "retry_delay_expression": opts.retry_delay_expression,
        "timeout_seconds": opts.timeout_seconds,
        "not_before": not_before,
        "created_at": now,
        "callback": opts.callback,
        "callback_header": opts.callback_header,
        "callback_settings": opts.callback_settings,
        "failure_callback": opts.failure_callback,
        "failure_callback_header": opts.failure_callback_header,
        "failure_callback_settings": opts.failure_callback_settings,
        "labels": Message.join_labels(opts.labels),
        "redact_fields": opts.redact_fields,
        "caller_ip": draft.caller_ip,
        "deduplication_id": opts.deduplication_id,
        "topic_name": draft.topic_name,
        "endpoint_name": draft.endpoint_name,
        "queue_name": draft.queue_name,
        "schedule_id": draft.schedule_id,
        "scheduled_for": draft.scheduled_for,
        "flow_control_key": fc.key,
        "flow_control_parallelism": fc.parallelism,
        "flow_control_rate": fc.rate,
        "flow_control_period": fc.period,
    }
    # Typed Any: the stubs check positional values against the first field (id) only.
    args: Any = [values[n] if n in values else default() for n, default in _MESSAGE_FIELDS]
    message = Message(*args)
    message.payload = draft.payload
    if draft.source_message is not None:
        message.source_message = draft.source_message
    return message


def options_from_message(message: Message) -> PublishOptions:
    """The inverse of ``message_from_draft``: the delivery options a message was made with
    (without ``not_before`` and deduplication, which belong to its publish)."""
    return PublishOptions(
        method=message.method,
        header=message.header,
        retries=message.max_retries,
        retry_delay_expression=message.retry_delay_expression,
        timeout_seconds=message.timeout_seconds,
        callback=message.callback,
        callback_header=message.callback_header,
        callback_settings=message.callback_settings,
        failure_callback=message.failure_callback,
        failure_callback_header=message.failure_callback_header,
        failure_callback_settings=message.failure_callback_settings,
        labels=message.label_list,
        redact_fields=message.redact_fields,
        flow_control=FlowControl(
            key=message.flow_control_key,
            parallelism=message.flow_control_parallelism,
            rate=message.flow_control_rate,
            period=message.flow_control_period,
        ),
    )


def _earlier(key: str, now: datetime) -> Message | None:
    """The message that claimed ``key`` inside the window, if any."""
    row = Deduplication.objects.select_related("message").filter(key=key, expires_at__gt=now)
    first = row.first()
    return first.message if first is not None else None


def _claim_deduplication(key: str, message: Message, now: datetime) -> Message | None:
    """Record ``key`` for ``message``; return the earlier message when it is a duplicate.

    Runs inside the caller's transaction. Concurrent publishes of one key meet
    on the unique constraint; the loser reads the winner.
    """
    window = timedelta(seconds=settings.QSTASH_DEDUP_WINDOW_SECONDS)
    for _ in range(2):
        existing = (
            Deduplication.objects.select_for_update()
            .select_related("message")
            .filter(key=key)
            .first()
        )
        if existing is not None and existing.expires_at > now:
            return existing.message
        try:
            with transaction.atomic():
                if existing is not None:
                    existing.delete()
                Deduplication.objects.create(key=key, message=message, expires_at=now + window)
            return None
        except IntegrityError:
            continue
    return None


def messages_publish(*, drafts: list[Draft], now: datetime) -> list[Published]:
    """Store the drafts as messages, each with its CREATED log row, atomically.

    A draft whose deduplication key was seen inside the window creates nothing
    and answers the earlier message id with ``deduplicated=True``. A message of a
    queue or with a flow-control key waits for its gate (``gates.py``), which is
    created if missing. After commit, the immediately due messages are handed to
    the delivery side (wakeup.py). Raises nothing for valid drafts; validation
    happened when they were built.
    """
    messages = [message_from_draft(draft, now) for draft in drafts]
    keys = [
        d.options.deduplication_key(
            destination=d.url, body=bytes(d.payload.body), per_url=bool(d.topic_name)
        )
        for d in drafts
    ]
    gated = any(m.queue_name or m.flow_control_key for m in messages)
    if not any(keys) and not gated:
        # The hot path: one statement on PostgreSQL, atomic without a transaction.
        messages_insert(messages, now=now)
        return [Published(m.message_id, m.url) for m in messages]
    with transaction.atomic():
        gates_prepare(messages, now=now)
        published = _publish_deduplicated(messages, keys, now)
        gates_wake_for((m for m in messages if m.pk is not None), now=now)
        return published


def _publish_deduplicated(
    messages: list[Message], keys: list[str], now: datetime
) -> list[Published]:
    results: list[Published] = []
    fresh: list[Message] = []
    for message, key in zip(messages, keys, strict=True):
        if not key:
            fresh.append(message)
            results.append(Published(message.message_id, message.url))
            continue
        original = _earlier(key, now)
        if original is None:
            # The row must exist before the deduplication row points at it.
            messages_insert([message], now=now)
            original = _claim_deduplication(key, message, now)
            if original is not None:  # a concurrent publish of the same key won
                message.delete()
        if original is None:
            fresh.append(message)
            results.append(Published(message.message_id, message.url))
        else:
            results.append(Published(original.message_id, original.url, deduplicated=True))
    messages_insert([m for m in fresh if m.pk is None], now=now)
    return results
