from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from qstash import Receiver

from broker.backoff import decide
from broker.http import HttpResult
from broker.models import Message, Payload
from broker.services.delivery import USER_AGENT, delivery_headers

NOW = datetime(2025, 3, 14, 12, 0, 0, tzinfo=UTC)
URL = "https://example.com/api/webhook?x=1"
CURRENT_KEY = "sig_7kYjw48mhY7kAjqNGcy6cr29RJ6r"
NEXT_KEY = "sig_5ZB6DVzB1wjE8S6rZ7eenA8Pdnhs"

DELIVERED = Message.State.DELIVERED
RETRY = Message.State.RETRY
FAILED = Message.State.FAILED


def _message(**fields: Any) -> Message:
    values: dict[str, Any] = {
        "message_id": "msg_test",
        "url": URL,
        "payload": Payload(body=b'{"hello":"world"}'),
        "retried": 0,
        "max_retries": 3,
        "not_before": NOW,
        "created_at": NOW,
    }
    values.update(fields)
    return Message(**values)


def _result(
    status: int | None, headers: dict[str, str] | None = None, error: str = ""
) -> HttpResult:
    return HttpResult(
        status=status, headers={k: [v] for k, v in (headers or {}).items()}, error=error
    )


# --- decide ------------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
@pytest.mark.parametrize("retried", [0, 3])
def test_2xx_is_delivered_even_with_no_retries_left(status: int, retried: int) -> None:
    outcome = decide(_message(retried=retried, max_retries=3), _result(status), NOW)
    assert outcome.state == DELIVERED
    assert outcome.delay_seconds == 0.0


@pytest.mark.parametrize("value", ["true", "TRUE", "True"])
@pytest.mark.parametrize("name", ["Upstash-NonRetryable-Error", "upstash-nonretryable-error"])
def test_489_with_non_retryable_header_fails_even_with_retries_left(name: str, value: str) -> None:
    outcome = decide(_message(retried=0, max_retries=10), _result(489, {name: value}), NOW)
    assert outcome.state == FAILED


@pytest.mark.parametrize(
    ("status", "headers"),
    [
        (489, {}),
        (489, {"Upstash-NonRetryable-Error": "false"}),
        (489, {"Upstash-NonRetryable-Error": "yes"}),
        (500, {"Upstash-NonRetryable-Error": "true"}),
        (400, {"Upstash-NonRetryable-Error": "true"}),
    ],
)
def test_failure_without_the_489_non_retryable_pair_is_retried(
    status: int, headers: dict[str, str]
) -> None:
    outcome = decide(_message(retried=0), _result(status, headers), NOW)
    assert outcome.state == RETRY
    assert outcome.delay_seconds == pytest.approx(math.exp(2.5))


@pytest.mark.parametrize("status", [100, 199, 300, 302, 304, 400, 401, 404, 429, 500, 502, 503])
def test_non_2xx_status_is_retried_while_retries_remain(status: int) -> None:
    assert decide(_message(retried=1, max_retries=3), _result(status), NOW).state == RETRY


@pytest.mark.parametrize(
    ("retried", "max_retries", "state"),
    [
        (0, 0, FAILED),
        (0, 1, RETRY),
        (1, 1, FAILED),
        (2, 3, RETRY),
        (3, 3, FAILED),
        (19, 20, RETRY),
        (20, 20, FAILED),
        (5, 3, FAILED),
    ],
)
@pytest.mark.parametrize(
    "result", [_result(500), _result(None, error="connection refused")], ids=["500", "network"]
)
def test_failure_is_final_once_retries_are_exhausted(
    retried: int, max_retries: int, state: str, result: HttpResult
) -> None:
    outcome = decide(_message(retried=retried, max_retries=max_retries), result, NOW)
    assert outcome.state == state


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "30"}, 30.0),
        ({"Retry-After": "0"}, 0.0),
        ({"Retry-After": "1.5"}, 1.5),
        ({"retry-after": "45"}, 45.0),
        ({"Retry-After": "6m5s"}, 365.0),
        ({"Retry-After": "86400"}, 86400.0),
        ({"Retry-After": format_datetime(NOW + timedelta(seconds=90), usegmt=True)}, 90.0),
        ({"X-RateLimit-Reset": "120"}, 120.0),
        ({"X-RateLimit-Reset-Requests": "2s"}, 2.0),
        ({"X-RateLimit-Reset-Tokens": "500ms"}, 0.5),
    ],
)
@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_header_of_the_response_is_honoured(
    status: int, headers: dict[str, str], expected: float
) -> None:
    outcome = decide(_message(), _result(status, headers), NOW)
    assert outcome.state == RETRY
    assert outcome.delay_seconds == pytest.approx(expected)


def test_retry_after_wins_over_the_retry_delay_expression() -> None:
    message = _message(retry_delay_expression="5000")
    outcome = decide(message, _result(429, {"Retry-After": "7"}), NOW)
    assert outcome.delay_seconds == 7.0


@pytest.mark.parametrize("value", ["86401", "172800", "25h", "soon", ""])
@pytest.mark.parametrize("retried", [0, 2])
def test_retry_after_over_a_day_or_unusable_falls_back_to_default_backoff(
    value: str, retried: int
) -> None:
    outcome = decide(_message(retried=retried), _result(429, {"Retry-After": value}), NOW)
    assert outcome.state == RETRY
    assert outcome.delay_seconds == pytest.approx(math.exp(2.5 * (retried + 1)))


def test_retry_after_over_a_day_falls_back_to_the_retry_delay_expression() -> None:
    message = _message(retry_delay_expression="2000")
    outcome = decide(message, _result(429, {"Retry-After": "90000"}), NOW)
    assert outcome.delay_seconds == 2.0


@pytest.mark.parametrize(
    ("expression", "retried", "seconds"),
    [
        ("1000", 0, 1.0),
        ("1500", 2, 1.5),
        ("0", 0, 0.0),
        ("1000 * (1 + retried)", 0, 1.0),
        ("1000 * (1 + retried)", 2, 3.0),
        ("pow(2, retried) * 1000", 3, 8.0),
        ("max(1000, pow(2, retried) * 100)", 5, 3.2),
        ("-1000", 0, 0.0),
    ],
)
def test_retry_delay_expression_gives_milliseconds_for_the_retry_count(
    expression: str, retried: int, seconds: float
) -> None:
    message = _message(retried=retried, max_retries=10, retry_delay_expression=expression)
    outcome = decide(message, _result(500), NOW)
    assert outcome.state == RETRY
    assert outcome.delay_seconds == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("expression", "retried"),
    [("1000 / retried", 0), ("sqrt(retried - 5)", 1), ("foo", 0)],
)
def test_failing_retry_delay_expression_falls_back_to_default_backoff(
    expression: str, retried: int
) -> None:
    message = _message(retried=retried, max_retries=10, retry_delay_expression=expression)
    outcome = decide(message, _result(500), NOW)
    assert outcome.state == RETRY
    assert outcome.delay_seconds == pytest.approx(math.exp(2.5 * (retried + 1)))


@pytest.mark.parametrize(
    ("retried", "seconds"),
    [
        (0, math.exp(2.5)),
        (1, math.exp(5.0)),
        (2, math.exp(7.5)),
        (3, math.exp(10.0)),
        (4, 86400.0),
        (10, 86400.0),
    ],
)
def test_default_backoff_is_exponential_in_the_next_retry_number(
    retried: int, seconds: float
) -> None:
    outcome = decide(_message(retried=retried, max_retries=20), _result(500), NOW)
    assert outcome.state == RETRY
    assert outcome.delay_seconds == pytest.approx(seconds)


def test_huge_retry_delay_expression_is_capped() -> None:
    message = _message(retry_delay_expression="pow(10, 1000)")
    outcome = decide(message, _result(500), NOW)
    assert outcome.state == RETRY
    assert math.isfinite(outcome.delay_seconds)
    assert outcome.delay_seconds <= 365 * 86400


@pytest.mark.parametrize("retried", [0, 1, 3])
def test_network_error_is_retried_with_backoff_and_ignores_retry_after(retried: int) -> None:
    result = _result(None, {"Retry-After": "5"}, error="connection failed: refused")
    outcome = decide(_message(retried=retried, max_retries=5), result, NOW)
    assert outcome.state == RETRY
    assert outcome.delay_seconds == pytest.approx(math.exp(2.5 * (retried + 1)))


def test_network_error_uses_the_retry_delay_expression() -> None:
    message = _message(retry_delay_expression="250 * (retried + 1)", retried=1)
    outcome = decide(message, _result(None, error="timeout: no response within 30s"), NOW)
    assert outcome.delay_seconds == pytest.approx(0.5)


# --- delivery_headers ----------------------------------------------------------------


def _header_map(headers: list[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in headers:
        out.setdefault(name, []).append(value)
    return out


def test_delivery_headers_flatten_forwarded_headers_and_add_upstash_ones() -> None:
    message = _message(
        retried=2,
        header={"Content-Type": ["application/json"], "X-Multi": ["a", "b"]},
    )
    headers = _header_map(delivery_headers(message, signing_key=CURRENT_KEY, now=time.time()))
    assert headers["Content-Type"] == ["application/json"]
    assert headers["X-Multi"] == ["a", "b"]
    assert headers["User-Agent"] == [USER_AGENT] == ["Upstash-QStash"]
    assert headers["Upstash-Message-Id"] == ["msg_test"]
    assert headers["Upstash-Retried"] == ["2"]
    assert len(headers["Upstash-Signature"]) == 1


@pytest.mark.parametrize("retried", [0, 1, 7])
def test_upstash_retried_counts_previous_attempts(retried: int) -> None:
    headers = _header_map(
        delivery_headers(_message(retried=retried), signing_key=CURRENT_KEY, now=time.time())
    )
    assert headers["Upstash-Retried"] == [str(retried)]


@pytest.mark.parametrize(
    ("url", "body"),
    [
        (URL, b'{"hello":"world"}'),
        ("http://127.0.0.1:8080/hook", b""),
        ("https://example.com/", "h\u00e9llo \u2603".encode()),
    ],
)
def test_delivery_signature_verifies_for_the_message_url_and_body(url: str, body: bytes) -> None:
    message = _message(url=url, payload=Payload(body=body))
    headers = _header_map(delivery_headers(message, signing_key=CURRENT_KEY, now=time.time()))
    receiver = Receiver(current_signing_key=CURRENT_KEY, next_signing_key=NEXT_KEY)
    receiver.verify(signature=headers["Upstash-Signature"][0], body=body.decode(), url=url)


@pytest.mark.parametrize(
    ("fields", "present", "absent"),
    [
        pytest.param(
            {},
            {},
            ["Upstash-Topic-Name", "Upstash-Schedule-Id", "Upstash-Caller-Ip"],
            id="plain",
        ),
        pytest.param(
            {"topic_name": "orders", "endpoint_name": "shipping"},
            {"Upstash-Topic-Name": ["orders"]},
            ["Upstash-Schedule-Id"],
            id="group",
        ),
        pytest.param(
            {"schedule_id": "scd_123"},
            {"Upstash-Schedule-Id": ["scd_123"]},
            ["Upstash-Topic-Name"],
            id="schedule",
        ),
        pytest.param(
            {"caller_ip": "203.0.113.7"},
            {"Upstash-Caller-Ip": ["203.0.113.7"]},
            ["Upstash-Topic-Name"],
            id="caller-ip",
        ),
    ],
)
def test_topic_schedule_and_caller_headers_only_when_set(
    fields: dict[str, str], present: dict[str, list[str]], absent: list[str]
) -> None:
    headers = _header_map(
        delivery_headers(_message(**fields), signing_key=CURRENT_KEY, now=time.time())
    )
    for name, values in present.items():
        assert headers[name] == values
    for name in absent:
        assert name not in headers
