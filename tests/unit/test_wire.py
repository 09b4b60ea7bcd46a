from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from typing import Any

import pytest

from broker.models import Message, Payload
from broker.wire import body_fields, message_to_wire, redacted, visible_header

NOT_BEFORE = datetime(2025, 3, 14, 12, 0, 0, 123000, tzinfo=UTC)
CREATED_AT = datetime(2025, 3, 14, 11, 59, 0, tzinfo=UTC)
SHA256_OF_X = "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"


def _message(**fields: Any) -> Message:
    values: dict[str, Any] = {
        "message_id": "msg_wire",
        "url": "https://example.com/hook",
        "method": "PUT",
        "header": {},
        "payload": Payload(body=b"hello"),
        "max_retries": 4,
        "not_before": NOT_BEFORE,
        "created_at": CREATED_AT,
        "caller_ip": "203.0.113.7",
    }
    values.update(fields)
    return Message(**values)


def _digest(value: bytes) -> str:
    return "REDACTED:" + hashlib.sha256(value).hexdigest()


@pytest.mark.parametrize("value", [b"x", b"", b"secret", "\u2603".encode(), b"\xff\x00"])
def test_redacted_is_sha256_hex_with_prefix(value: bytes) -> None:
    assert redacted(value) == _digest(value)


def test_redacted_x_matches_the_known_digest() -> None:
    assert redacted(b"x") == "REDACTED:" + SHA256_OF_X


HEADER = {
    "Authorization-X": ["Bearer secret"],
    "X-Trace": ["t1", "t2"],
    "Content-Type": ["application/json"],
}


@pytest.mark.parametrize(
    ("redact_fields", "redacted_names"),
    [
        ([], set()),
        (["body"], set()),
        (["header"], {"Authorization-X", "X-Trace", "Content-Type"}),
        (["body", "header"], {"Authorization-X", "X-Trace", "Content-Type"}),
        (["header[Authorization-X]"], {"Authorization-X"}),
        (["header[authorization-x]"], {"Authorization-X"}),
        (["header[AUTHORIZATION-X]"], {"Authorization-X"}),
        (["header[X-Trace]", "header[content-type]"], {"X-Trace", "Content-Type"}),
        (["header[X-Missing]"], set()),
    ],
)
def test_visible_header_redacts_all_or_named_headers(
    redact_fields: list[str], redacted_names: set[str]
) -> None:
    visible = visible_header(_message(header=HEADER, redact_fields=redact_fields))
    assert set(visible) == set(HEADER)
    for name, values in HEADER.items():
        if name in redacted_names:
            assert visible[name] == [_digest(v.encode()) for v in values]
        else:
            assert visible[name] == values


def test_visible_header_does_not_change_the_stored_header() -> None:
    message = _message(header={"A": ["1"]}, redact_fields=["header"])
    visible_header(message)
    assert message.header == {"A": ["1"]}


@pytest.mark.parametrize(
    ("body", "redact", "expected"),
    [
        (b"hello", False, {"body": "hello"}),
        (b"", False, {"body": ""}),
        ("h\u00e9llo \u2603".encode(), False, {"body": "h\u00e9llo \u2603"}),
        (b"\xff\xfe\x00", False, {"bodyBase64": base64.b64encode(b"\xff\xfe\x00").decode()}),
        (b"\x89PNG\r\n", False, {"bodyBase64": "iVBORw0K"}),
        (b"hello", True, {"body": _digest(b"hello")}),
        (b"\xff\xfe\x00", True, {"body": _digest(b"\xff\xfe\x00")}),
        (b"x", True, {"body": "REDACTED:" + SHA256_OF_X}),
    ],
)
def test_body_fields_text_base64_or_redacted(
    body: bytes, redact: bool, expected: dict[str, str]
) -> None:
    assert body_fields(body, redact=redact, text_key="body", base64_key="bodyBase64") == expected


def test_message_to_wire_has_the_keys_the_sdks_require() -> None:
    data = message_to_wire(_message())
    for key in ("messageId", "url", "method", "maxRetries", "notBefore", "createdAt"):
        assert key in data
    assert data["messageId"] == "msg_wire"
    assert data["url"] == "https://example.com/hook"
    assert data["method"] == "PUT"
    assert data["maxRetries"] == 4
    assert data["notBefore"] == 1741953600123
    assert data["createdAt"] == 1741953540000
    assert data["callerIP"] == data["callerIp"] == "203.0.113.7"
    assert data["body"] == "hello"
    assert data["header"] == {}


def test_message_to_wire_omits_unset_optional_fields() -> None:
    data = message_to_wire(_message())
    for key in (
        "topicName",
        "endpointName",
        "queueName",
        "scheduleId",
        "callback",
        "failureCallback",
        "retryDelayExpression",
        "flowControlKey",
        "label",
        "labels",
        "bodyBase64",
    ):
        assert key not in data


@pytest.mark.parametrize(
    ("labels", "label", "label_list"),
    [
        (",a,b,", "a", ["a", "b"]),
        (",only,", "only", ["only"]),
        (Message.join_labels(["x", "y", "z"]), "x", ["x", "y", "z"]),
    ],
)
def test_message_to_wire_has_first_label_and_all_labels(
    labels: str, label: str, label_list: list[str]
) -> None:
    data = message_to_wire(_message(labels=labels))
    assert data["label"] == label
    assert data["labels"] == label_list


def test_message_to_wire_redacts_body_and_headers() -> None:
    message = _message(
        header={"Authorization": ["Bearer s"], "X-Ok": ["1"]},
        redact_fields=["body", "header[Authorization]"],
    )
    data = message_to_wire(message)
    assert data["body"] == _digest(b"hello")
    assert data["header"] == {"Authorization": [_digest(b"Bearer s")], "X-Ok": ["1"]}


def test_message_to_wire_gives_non_utf8_body_as_base64() -> None:
    data = message_to_wire(_message(payload=Payload(body=b"\xff\xd8\xff")))
    assert "body" not in data
    assert data["bodyBase64"] == "/9j/"


def test_message_to_wire_includes_set_optional_fields() -> None:
    data = message_to_wire(
        _message(
            topic_name="orders",
            endpoint_name="shipping",
            callback="https://cb.example.com/",
            callback_header={"X-Cb": ["1"]},
            retry_delay_expression="1000",
            flow_control_key="k",
            flow_control_parallelism=2,
            flow_control_rate=10,
            flow_control_period=60,
        )
    )
    assert data["topicName"] == "orders"
    assert data["endpointName"] == "shipping"
    assert data["callback"] == "https://cb.example.com/"
    assert data["callbackHeader"] == {"X-Cb": ["1"]}
    assert data["retryDelayExpression"] == "1000"
    assert (data["flowControlKey"], data["parallelism"], data["rate"], data["period"]) == (
        "k",
        2,
        10,
        60,
    )
