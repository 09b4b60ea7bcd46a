"""Rows to the JSON shapes the SDKs parse (reference sections 2.5, 7 and 10).

Field-name variants that different SDKs read are emitted together. Redacted
fields show ``REDACTED:<sha256>`` here; the destination still gets real values.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime
from typing import Any

from broker.models import DlqEntry, LogEntry, Message


def ms(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp() * 1000)


def redacted(value: bytes) -> str:
    return "REDACTED:" + hashlib.sha256(value).hexdigest()


def visible_header(message: Message) -> dict[str, list[str]]:
    fields = message.redact_fields
    if "header" in fields:
        return {k: [redacted(v.encode()) for v in vs] for k, vs in message.header.items()}
    named = {f[len("header[") : -1].lower() for f in fields if f.startswith("header[")}
    return {
        k: [redacted(v.encode()) for v in vs] if k.lower() in named else vs
        for k, vs in message.header.items()
    }


def body_fields(body: bytes, *, redact: bool, text_key: str, base64_key: str) -> dict[str, str]:
    if redact:
        return {text_key: redacted(body)}
    try:
        return {text_key: body.decode("utf-8")}
    except UnicodeDecodeError:
        return {base64_key: base64.b64encode(body).decode()}


def body_base64(message: Message) -> str:
    """The body as logs and callbacks carry it: base64, or its redaction."""
    if "body" in message.redact_fields:
        return redacted(message.body)
    return base64.b64encode(message.body).decode()


def message_fields(message: Message) -> dict[str, Any]:
    """The fields a message, a log entry, a DLQ entry and a schedule all show, set ones only."""
    data: dict[str, Any] = {
        "messageId": message.message_id,
        "url": message.url,
        "method": message.method,
        "header": visible_header(message),
        "maxRetries": message.max_retries,
        "callerIP": message.caller_ip,
        "callerIp": message.caller_ip,
    }
    optional = {
        "topicName": message.topic_name,
        "endpointName": message.endpoint_name,
        "queueName": message.queue_name,
        "scheduleId": message.schedule_id,
        "callback": message.callback,
        "failureCallback": message.failure_callback,
        "retryDelayExpression": message.retry_delay_expression,
        "flowControlKey": message.flow_control_key,
        "parallelism": message.flow_control_parallelism,
        "rate": message.flow_control_rate,
        "period": message.flow_control_period,
    }
    data.update({k: v for k, v in optional.items() if v})
    if labels := message.label_list:
        data["label"] = labels[0]
        data["labels"] = labels
    return data


def message_to_wire(message: Message) -> dict[str, Any]:
    data = message_fields(message)
    data["notBefore"] = ms(message.not_before)
    data["createdAt"] = ms(message.created_at)
    data.update(
        body_fields(
            message.body,
            redact="body" in message.redact_fields,
            text_key="body",
            base64_key="bodyBase64",
        )
    )
    if message.callback_header:
        data["callbackHeader"] = message.callback_header
    if message.failure_callback_header:
        data["failureCallbackHeader"] = message.failure_callback_header
    return data


def log_to_wire(entry: LogEntry) -> dict[str, Any]:
    message = entry.message
    data = message_fields(message)
    data["time"] = ms(entry.time)
    data["state"] = entry.state
    data["body"] = body_base64(message)
    data["timeout"] = message.timeout_seconds * 1000
    optional: dict[str, Any] = {
        "error": entry.error,
        "nextDeliveryTime": ms(entry.next_delivery_time),
        "responseStatus": entry.response_status,
        # The PY SDK reads these spellings; the docs use the ones above.
        "callbackHeaders": message.callback_header,
        "failureCallbackHeaders": message.failure_callback_header,
        "retryDelayExpr": message.retry_delay_expression,
    }
    data.update({k: v for k, v in optional.items() if v})
    if entry.response_header:
        data["responseHeader"] = entry.response_header
        data["responseHeaders"] = entry.response_header
    if entry.response_body is not None and entry.response_status is not None:
        data["responseBody"] = base64.b64encode(bytes(entry.response_body)).decode()
    return data


def dlq_to_wire(entry: DlqEntry) -> dict[str, Any]:
    message = entry.message
    data = message_to_wire(message)
    data["dlqId"] = entry.dlq_id
    data["responseStatus"] = message.last_response_status or 0
    data["responseHeader"] = message.last_response_header or {}
    if message.last_error:
        data["error"] = message.last_error
    data.update(
        body_fields(
            bytes(message.last_response_body or b""),
            redact=False,
            text_key="responseBody",
            base64_key="responseBodyBase64",
        )
    )
    return data
