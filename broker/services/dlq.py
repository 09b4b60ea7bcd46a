"""The dead-letter queue: delete entries, or retry them as new messages."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from django.db import transaction

from broker.durations import format_duration
from broker.models import DlqEntry, Message
from broker.publish_options import parse_publish_options
from broker.services.publish import Draft, Published, messages_publish, publish_limits


def original_headers(message: Message) -> dict[str, str]:
    """The publish headers that would recreate ``message``'s settings (no delay, no dedup)."""
    headers: dict[str, str] = {}
    for name, values in message.header.items():
        key = "Content-Type" if name.lower() == "content-type" else f"Upstash-Forward-{name}"
        headers[key] = ", ".join(values)
    headers["Upstash-Method"] = message.method
    headers["Upstash-Retries"] = str(message.max_retries)
    headers["Upstash-Timeout"] = format_duration(message.timeout_seconds)
    if message.retry_delay_expression:
        headers["Upstash-Retry-Delay"] = message.retry_delay_expression
    for prefix, url, forward, settings in (
        ("Upstash-Callback", message.callback, message.callback_header, message.callback_settings),
        (
            "Upstash-Failure-Callback",
            message.failure_callback,
            message.failure_callback_header,
            message.failure_callback_settings,
        ),
    ):
        if not url:
            continue
        headers[prefix] = url
        for name, values in forward.items():
            headers[f"{prefix}-Forward-{name}"] = ", ".join(values)
        for key, header in (
            ("method", "Method"),
            ("retries", "Retries"),
            ("retryDelay", "Retry-Delay"),
        ):
            if key in settings:
                headers[f"{prefix}-{header}"] = str(settings[key])
        if "timeout" in settings:
            headers[f"{prefix}-Timeout"] = format_duration(int(settings["timeout"]))
    if message.labels:
        headers["Upstash-Label"] = ",".join(message.label_list)
    if message.redact_fields:
        headers["Upstash-Redact-Fields"] = ",".join(message.redact_fields)
    if message.flow_control_key:
        headers["Upstash-Flow-Control-Key"] = message.flow_control_key
        parts = [
            f"{name}={value}"
            for name, value in (
                ("parallelism", message.flow_control_parallelism),
                ("rate", message.flow_control_rate),
                ("period", message.flow_control_period),
            )
            if value
        ]
        if parts:
            headers["Upstash-Flow-Control-Value"] = ", ".join(parts)
    return headers


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
