"""Callback and failure-callback messages (reference section 6).

A callback is itself a message: stored, signed, retried and logged like any
other, published in the same transaction as the outcome it reports.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from broker.http import HttpResult
from broker.models import Message, Payload
from broker.publish_options import PublishOptions
from broker.services.publish import Draft
from broker.wire import body_base64, ms, visible_header


def callback_body(
    message: Message, result: HttpResult, *, retried: int, dlq_id: str | None = None
) -> dict[str, Any]:
    """The JSON a callback receives about one attempt of ``message``."""
    body: dict[str, Any] = {
        "status": result.status or 0,
        "header": result.headers,
        "body": base64.b64encode(result.body).decode(),
        "retried": retried,
        "maxRetries": message.max_retries,
        "sourceMessageId": message.message_id,
        "url": message.url,
        "method": message.method,
        "sourceHeader": visible_header(message),
        "sourceBody": body_base64(message),
        "notBefore": ms(message.not_before),
        "createdAt": ms(message.created_at),
        "callerIP": message.caller_ip,
    }
    if result.error:
        body["error"] = result.error
    for key, value in (
        ("topicName", message.topic_name),
        ("endpointName", message.endpoint_name),
        ("scheduleId", message.schedule_id),
        ("queueName", message.queue_name),
    ):
        if value:
            body[key] = value
    if dlq_id is not None:
        body["dlqId"] = dlq_id
    return body


@dataclass(frozen=True)
class CallbackTarget:
    """Where one callback of a message goes, and how: stored on the message at publish."""

    url: str
    header: dict[str, list[str]]
    # {"method", "timeout", "retries", "retryDelay"}: the callback's own settings, if any.
    settings: dict[str, Any]
    dlq_id: str | None = None  # for the failure callback of a message now in the DLQ

    def options(self, message: Message) -> PublishOptions:
        """Its delivery settings: its own where given, else the source message's."""
        return PublishOptions(
            method=str(self.settings.get("method", "POST")),
            header={**self.header, "Content-Type": ["application/json"]},
            retries=int(self.settings.get("retries", message.max_retries)),
            retry_delay_expression=str(
                self.settings.get("retryDelay", message.retry_delay_expression)
            ),
            timeout_seconds=int(self.settings.get("timeout", message.timeout_seconds)),
        )


def callback_drafts(
    message: Message, result: HttpResult, *, failed: bool, dlq_id: str | None
) -> list[Draft]:
    """The callback after every attempt and, when ``failed``, the failure callback."""
    targets: list[CallbackTarget] = []
    if message.callback:
        targets.append(
            CallbackTarget(message.callback, message.callback_header, message.callback_settings)
        )
    if failed and message.failure_callback:
        targets.append(
            CallbackTarget(
                message.failure_callback,
                message.failure_callback_header,
                message.failure_callback_settings,
                dlq_id,
            )
        )
    return [
        Draft(
            target.url,
            Payload(
                body=json.dumps(
                    callback_body(message, result, retried=message.retried, dlq_id=target.dlq_id),
                    separators=(",", ":"),
                ).encode()
            ),
            target.options(message),
            caller_ip=message.caller_ip,
            source_message=message,
        )
        for target in targets
    ]
