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


def message_to_wire(message: Message) -> dict[str, Any]:
    data: dict[str, Any] = {
        "messageId": message.message_id,
        "url": message.url,
        "method": message.method,
        "header": visible_header(message),
        "maxRetries": message.max_retries,
        "notBefore": ms(message.not_before),
        "createdAt": ms(message.created_at),
        "callerIP": message.caller_ip,
        "callerIp": message.caller_ip,
    }
    data.update(
        body_fields(
            message.body,
            redact="body" in message.redact_fields,
            text_key="body",
            base64_key="bodyBase64",
        )
    )
    optional = {
        "topicName": message.topic_name,
        "endpointName": message.endpoint_name,
        "queueName": message.queue_name,
        "scheduleId": message.schedule_id,
        "callback": message.callback,
        "failureCallback": message.failure_callback,
        "callbackHeader": message.callback_header,
        "failureCallbackHeader": message.failure_callback_header,
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


def log_to_wire(entry: LogEntry) -> dict[str, Any]:
    message = entry.message
    data: dict[str, Any] = {
        "time": ms(entry.time),
        "messageId": message.message_id,
        "state": entry.state,
        "url": message.url,
        "method": message.method,
        "header": visible_header(message),
        "body": redacted(message.body)
        if "body" in message.redact_fields
        else base64.b64encode(message.body).decode(),
        "maxRetries": message.max_retries,
        "timeout": message.timeout_seconds * 1000,
        "callerIP": message.caller_ip,
        "callerIp": message.caller_ip,
    }
    optional: dict[str, Any] = {
        "topicName": message.topic_name,
        "endpointName": message.endpoint_name,
        "queueName": message.queue_name,
        "scheduleId": message.schedule_id,
        "error": entry.error,
        "nextDeliveryTime": ms(entry.next_delivery_time),
        "responseStatus": entry.response_status,
        "callback": message.callback,
        "callbackHeaders": message.callback_header,
        "failureCallback": message.failure_callback,
        "failureCallbackHeaders": message.failure_callback_header,
        "retryDelayExpression": message.retry_delay_expression,
        "retryDelayExpr": message.retry_delay_expression,
        "flowControlKey": message.flow_control_key,
        "parallelism": message.flow_control_parallelism,
        "rate": message.flow_control_rate,
        "period": message.flow_control_period,
    }
    data.update({k: v for k, v in optional.items() if v})
    if entry.response_header:
        data["responseHeader"] = entry.response_header
        data["responseHeaders"] = entry.response_header
    if entry.response_body is not None and entry.response_status is not None:
        data["responseBody"] = base64.b64encode(bytes(entry.response_body)).decode()
    if labels := message.label_list:
        data["label"] = labels[0]
        data["labels"] = labels
    return data


def dlq_to_wire(entry: DlqEntry) -> dict[str, Any]:
    message = entry.message
    data = message_to_wire(message)
    data["dlqId"] = entry.dlq_id
    data["responseStatus"] = message.last_response_status or 0
    data["responseHeader"] = message.last_response_header or {}
    if message.last_error:
        data["error"] = message.last_error
    body = bytes(message.last_response_body or b"")
    try:
        data["responseBody"] = body.decode("utf-8")
    except UnicodeDecodeError:
        data["responseBodyBase64"] = base64.b64encode(body).decode()
    return data
