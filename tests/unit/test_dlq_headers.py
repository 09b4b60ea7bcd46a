"""original_headers(message) read back by parse_publish_options gives the same settings."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from broker.models import Message, Payload
from broker.publish_options import (
    Limits,
    PublishOptions,
    options_to_headers,
    parse_publish_options,
)
from broker.services.dlq import original_headers
from broker.services.publish import Draft, message_from_draft, options_from_message

NOW = datetime(2025, 3, 14, 12, 0, 0, tzinfo=UTC)
CALLBACK = "https://callback.example.com/done"
FAILURE_CALLBACK = "https://callback.example.com/failed"


def _message(**fields: Any) -> Message:
    values: dict[str, Any] = {
        "message_id": "msg_dlq",
        "url": "https://example.com/hook",
        "payload": Payload(body=b"hello"),
        "not_before": NOW,
        "created_at": NOW,
    }
    values.update(fields)
    return Message(**values)


def _round_trip(message: Message) -> PublishOptions:
    return parse_publish_options(original_headers(message), {}, now=NOW, limits=Limits())


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        pytest.param({}, {"method": "POST", "retries": 3, "timeout_seconds": 30}, id="defaults"),
        pytest.param({"method": "PUT"}, {"method": "PUT"}, id="method-put"),
        pytest.param({"method": "GET"}, {"method": "GET"}, id="method-get"),
        pytest.param({"max_retries": 0}, {"retries": 0}, id="retries-0"),
        pytest.param({"max_retries": 20}, {"retries": 20}, id="retries-max"),
        pytest.param({"timeout_seconds": 1}, {"timeout_seconds": 1}, id="timeout-1s"),
        pytest.param({"timeout_seconds": 90}, {"timeout_seconds": 90}, id="timeout-90s"),
        pytest.param({"timeout_seconds": 900}, {"timeout_seconds": 900}, id="timeout-max"),
        pytest.param(
            {"retry_delay_expression": "pow(2, retried) * 1000"},
            {"retry_delay_expression": "pow(2, retried) * 1000"},
            id="retry-delay",
        ),
        pytest.param(
            {"header": {"X-Trace": ["t1"], "Authorization": ["Bearer a"]}},
            {"header": {"X-Trace": ["t1"], "Authorization": ["Bearer a"]}},
            id="forward",
        ),
        pytest.param(
            {"header": {"Content-Type": ["application/json"]}},
            {"header": {"Content-Type": ["application/json"]}},
            id="content-type",
        ),
        pytest.param(
            {"header": {"Upstash-Custom": ["1"]}},
            {"header": {"Upstash-Custom": ["1"]}},
            id="forwarded-upstash-name",
        ),
        pytest.param(
            {"callback": CALLBACK, "callback_header": {"X-Cb": ["1"]}},
            {"callback": CALLBACK, "callback_header": {"X-Cb": ["1"]}, "callback_settings": {}},
            id="callback",
        ),
        pytest.param(
            {
                "callback": CALLBACK,
                "callback_settings": {
                    "method": "PATCH",
                    "timeout": 45,
                    "retries": 2,
                    "retryDelay": "1000",
                },
            },
            {
                "callback_settings": {
                    "method": "PATCH",
                    "timeout": 45,
                    "retries": 2,
                    "retryDelay": "1000",
                }
            },
            id="callback-settings",
        ),
        pytest.param(
            {"callback": CALLBACK, "callback_settings": {"retries": 0}},
            {"callback_settings": {"retries": 0}},
            id="callback-retries-0",
        ),
        pytest.param(
            {
                "failure_callback": FAILURE_CALLBACK,
                "failure_callback_header": {"X-Fail": ["2"]},
                "failure_callback_settings": {"method": "PUT", "timeout": 600},
            },
            {
                "failure_callback": FAILURE_CALLBACK,
                "failure_callback_header": {"X-Fail": ["2"]},
                "failure_callback_settings": {"method": "PUT", "timeout": 600},
                "callback": "",
                "callback_settings": {},
            },
            id="failure-callback",
        ),
        pytest.param({"labels": ",a,b,"}, {"labels": ["a", "b"]}, id="labels"),
        pytest.param({"labels": ",solo,"}, {"labels": ["solo"]}, id="one-label"),
        pytest.param(
            {"redact_fields": ["body", "header[Authorization]"]},
            {"redact_fields": ["body", "header[Authorization]"]},
            id="redact-fields",
        ),
        pytest.param({"redact_fields": ["header"]}, {"redact_fields": ["header"]}, id="redact-all"),
    ],
)
def test_original_headers_round_trip_message_settings(
    fields: dict[str, Any], expected: dict[str, Any]
) -> None:
    opts = _round_trip(_message(**fields))
    for attribute, value in expected.items():
        assert getattr(opts, attribute) == value, attribute


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"flow_control_key": "k"}, ("k", None, None, None)),
        ({"flow_control_key": "k", "flow_control_parallelism": 2}, ("k", 2, None, None)),
        ({"flow_control_key": "k", "flow_control_rate": 10}, ("k", None, 10, None)),
        ({"flow_control_key": "k", "flow_control_period": 3600}, ("k", None, None, 3600)),
        (
            {
                "flow_control_key": "tenant-1",
                "flow_control_parallelism": 3,
                "flow_control_rate": 100,
                "flow_control_period": 60,
            },
            ("tenant-1", 3, 100, 60),
        ),
    ],
)
def test_original_headers_round_trip_flow_control(
    fields: dict[str, Any], expected: tuple[str, int | None, int | None, int | None]
) -> None:
    fc = _round_trip(_message(**fields)).flow_control
    assert (fc.key, fc.parallelism, fc.rate, fc.period) == expected


def test_original_headers_round_trip_a_fully_configured_message() -> None:
    message = _message(
        method="DELETE",
        max_retries=5,
        timeout_seconds=120,
        retry_delay_expression="1000 * (1 + retried)",
        header={"Content-Type": ["text/plain"], "X-Trace": ["t1"]},
        callback=CALLBACK,
        callback_header={"X-Cb": ["1"]},
        callback_settings={"method": "PUT", "timeout": 10, "retries": 1, "retryDelay": "500"},
        failure_callback=FAILURE_CALLBACK,
        failure_callback_header={"X-Fail": ["2"]},
        failure_callback_settings={"retries": 4},
        labels=",a,b,",
        redact_fields=["body", "header[X-Trace]"],
        flow_control_key="fk",
        flow_control_parallelism=2,
        flow_control_rate=10,
        flow_control_period=60,
    )
    opts = _round_trip(message)
    assert opts.method == message.method
    assert opts.retries == message.max_retries
    assert opts.timeout_seconds == message.timeout_seconds
    assert opts.retry_delay_expression == message.retry_delay_expression
    assert opts.header == message.header
    assert opts.callback == message.callback
    assert opts.callback_header == message.callback_header
    assert opts.callback_settings == message.callback_settings
    assert opts.failure_callback == message.failure_callback
    assert opts.failure_callback_header == message.failure_callback_header
    assert opts.failure_callback_settings == message.failure_callback_settings
    assert opts.labels == message.label_list
    assert opts.redact_fields == message.redact_fields
    fc = opts.flow_control
    assert (fc.key, fc.parallelism, fc.rate, fc.period) == ("fk", 2, 10, 60)


def test_original_headers_carry_no_delay_and_no_deduplication() -> None:
    message = _message(
        not_before=datetime(2030, 1, 1, tzinfo=UTC),
        deduplication_id="order-42",
    )
    headers = {name.lower() for name in original_headers(message)}
    assert not headers & {
        "upstash-delay",
        "upstash-not-before",
        "upstash-deduplication-id",
        "upstash-content-based-deduplication",
    }
    opts = _round_trip(message)
    assert opts.not_before is None
    assert opts.deduplication_id == ""


def test_original_headers_leave_out_unset_callbacks_labels_and_flow_control() -> None:
    headers = original_headers(_message())
    assert set(headers) == {"Upstash-Method", "Upstash-Retries", "Upstash-Timeout"}


def test_options_message_and_headers_map_one_to_the_other() -> None:
    """The three mappings of the message options agree: headers -> options (the parser),
    options -> message (message_from_draft), message -> options, options -> headers."""
    headers = {
        "Content-Type": "text/plain",
        "Upstash-Forward-X-Trace": "t1",
        "Upstash-Method": "PATCH",
        "Upstash-Retries": "4",
        "Upstash-Retry-Delay": "pow(2, retried) * 1000",
        "Upstash-Timeout": "90s",
        "Upstash-Callback": CALLBACK,
        "Upstash-Callback-Forward-X-Cb": "1",
        "Upstash-Callback-Retries": "2",
        "Upstash-Failure-Callback": FAILURE_CALLBACK,
        "Upstash-Failure-Callback-Timeout": "10s",
        "Upstash-Label": "a,b",
        "Upstash-Redact-Fields": "body",
        "Upstash-Flow-Control-Key": "fk",
        "Upstash-Flow-Control-Value": "parallelism=2, rate=5, period=30s",
    }
    parsed = parse_publish_options(headers, {}, now=NOW, limits=Limits())
    message = message_from_draft(Draft("https://example.com/h", Payload(body=b"x"), parsed), NOW)
    back = options_from_message(message)
    assert back == parsed
    assert parse_publish_options(options_to_headers(back), {}, now=NOW, limits=Limits()) == parsed
