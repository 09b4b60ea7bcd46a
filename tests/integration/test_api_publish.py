"""POST /v2/publish/{url}: what the destination receives, and what the broker stores and logs.

Deliveries go through the real worker to the loopback receiver; rows are read with the ORM.
"""

from __future__ import annotations

import base64
import hashlib
import math
import socket
import time
from datetime import timedelta
from typing import Any

import httpx
import jwt
import pytest
from django.utils import timezone

from broker.models import LogEntry, Message
from tests.conftest import (
    TEST_CURRENT_KEY,
    TEST_TOKEN,
    Reply,
    wait_until,
)
from tests.conftest import Receiver as Destination
from tests.helpers import AUTH, VERIFIER, states_of


def publish_raw(
    live: str, url: str, *, body: bytes = b"", headers: dict[str, str] | None = None
) -> httpx.Response:
    return httpx.post(
        f"{live}/v2/publish/{url}", content=body, headers={**AUTH, **(headers or {})}, timeout=30
    )


def row(message_id: str) -> Message:
    return Message.objects.get(message_id=message_id)


def wait_state(message_id: str, *states: str, timeout: float = 20.0) -> Message:
    return wait_until(
        lambda: (
            (m := Message.objects.filter(message_id=message_id).first()) is not None
            and m.state in states
            and m
        ),
        timeout=timeout,
        what=f"{message_id} in {states}",
    )


def error_logs(message_id: str) -> list[LogEntry]:
    return list(
        LogEntry.objects.filter(message__message_id=message_id, state="ERROR").order_by("pk")
    )


def move_due_into_past(*message_ids: str) -> None:
    Message.objects.filter(message_id__in=message_ids).update(
        due_at=timezone.now() - timedelta(seconds=1)
    )


# --- method and body ------------------------------------------------------------------


@pytest.mark.parametrize("method", ["PUT", "GET", "DELETE", "PATCH"])
def test_upstash_method_is_the_method_the_destination_sees(
    client_sdk: Any, receiver: Destination, method: str
) -> None:
    url = receiver.url("/method")
    res = client_sdk.message.publish(url=url, body="payload", method=method)

    (got,) = receiver.wait_for(1, "/method")
    assert got.method == method
    if method in ("PUT", "PATCH"):
        assert got.body == b"payload"
    VERIFIER.verify(signature=got.headers["Upstash-Signature"], body=got.body.decode(), url=url)
    wait_state(res.message_id, "DELIVERED")


def test_binary_body_is_forwarded_byte_for_byte_and_signed_over_the_raw_bytes(
    live: str, receiver: Destination
) -> None:
    body = bytes(range(256)) + b"\xff\xfe\x00\xc3\x28"
    url = receiver.url("/bin")
    res = publish_raw(live, url, body=body, headers={"Content-Type": "application/octet-stream"})
    assert res.status_code == 200, res.text

    (got,) = receiver.wait_for(1, "/bin")
    assert got.body == body
    assert got.headers["Content-Type"] == "application/octet-stream"
    claims = jwt.decode(
        got.headers["Upstash-Signature"],
        TEST_CURRENT_KEY,
        algorithms=["HS256"],
        issuer="Upstash",
        options={"require": ["iss", "sub", "exp", "nbf"]},
    )
    assert claims["sub"] == url
    expected = base64.urlsafe_b64encode(hashlib.sha256(body).digest()).decode().rstrip("=")
    assert claims["body"].rstrip("=") == expected


# --- delay and not-before -------------------------------------------------------------


def test_delayed_message_is_stored_with_its_due_time_and_arrives_once_due(
    client_sdk: Any, receiver: Destination
) -> None:
    before = timezone.now()
    res = client_sdk.message.publish(url=receiver.url("/later"), body="later", delay="1h")
    after = timezone.now()

    stored = row(res.message_id)
    assert before + timedelta(hours=1) - timedelta(seconds=1) <= stored.not_before
    assert stored.not_before <= after + timedelta(hours=1) + timedelta(seconds=1)
    assert stored.due_at == stored.not_before
    assert client_sdk.message.get(res.message_id).not_before == int(
        stored.not_before.timestamp() * 1000
    )

    # A message published afterwards without delay is delivered; the delayed one is not.
    now_res = client_sdk.message.publish(url=receiver.url("/now"), body="now")
    receiver.wait_for(1, "/now")
    wait_state(now_res.message_id, "DELIVERED")
    assert receiver.received("/later") == []
    assert row(res.message_id).state == "CREATED"

    move_due_into_past(res.message_id)
    (got,) = receiver.wait_for(1, "/later")
    assert got.body == b"later"
    assert got.headers["Upstash-Message-Id"] == res.message_id
    wait_state(res.message_id, "DELIVERED")


def test_not_before_takes_precedence_over_delay(client_sdk: Any, receiver: Destination) -> None:
    not_before = int(time.time()) + 7200
    res = client_sdk.message.publish(
        url=receiver.url("/nb"), body="x", delay="10s", not_before=not_before
    )

    stored = row(res.message_id)
    assert stored.not_before.timestamp() == not_before
    assert stored.due_at is not None
    assert stored.due_at.timestamp() == not_before
    assert client_sdk.message.get(res.message_id).not_before == not_before * 1000


def test_a_thirty_day_delay_is_accepted_and_stored(client_sdk: Any, receiver: Destination) -> None:
    before = timezone.now()
    res = client_sdk.message.publish(url=receiver.url("/month"), body="x", delay="30d")

    stored = row(res.message_id)
    assert abs((stored.not_before - before - timedelta(days=30)).total_seconds()) < 5
    assert stored.state == "CREATED"


# --- retries --------------------------------------------------------------------------


def test_failed_attempts_are_retried_with_the_retry_delay_until_delivered(
    client_sdk: Any, receiver: Destination
) -> None:
    receiver.script("/flaky", Reply(status=500), Reply(status=500), Reply(status=200))
    url = receiver.url("/flaky")
    res = client_sdk.message.publish(url=url, body='{"n": 1}', retries=3, retry_delay="100")

    attempts = receiver.wait_for(3, "/flaky")
    assert [a.headers["Upstash-Retried"] for a in attempts] == ["0", "1", "2"]
    for attempt in attempts:
        assert attempt.body == b'{"n": 1}'
        assert attempt.headers["Upstash-Message-Id"] == res.message_id
        VERIFIER.verify(
            signature=attempt.headers["Upstash-Signature"], body=attempt.body.decode(), url=url
        )
    # Each attempt is signed fresh.
    assert len({a.headers["Upstash-Signature"] for a in attempts}) == 3

    wait_until(lambda: states_of(res.message_id)[-1:] == ["DELIVERED"], what="DELIVERED")
    assert states_of(res.message_id) == [
        "CREATED",
        "ACTIVE",
        "ERROR",
        "RETRY",
        "ACTIVE",
        "ERROR",
        "RETRY",
        "ACTIVE",
        "DELIVERED",
    ]
    assert [e.response_status for e in error_logs(res.message_id)] == [500, 500]


def test_exhausted_retries_fail_the_message_and_keep_the_last_response(
    client_sdk: Any, receiver: Destination
) -> None:
    receiver.script("/down", Reply(status=500, body=b"boom"))
    res = client_sdk.message.publish(
        url=receiver.url("/down"), body="x", retries=2, retry_delay="100"
    )

    failed = wait_state(res.message_id, "FAILED")
    assert len(receiver.received("/down")) == 3
    assert failed.last_response_status == 500
    assert failed.last_response_body is not None
    assert bytes(failed.last_response_body) == b"boom"
    assert failed.due_at is None
    assert states_of(res.message_id) == [
        "CREATED",
        "ACTIVE",
        "ERROR",
        "RETRY",
        "ACTIVE",
        "ERROR",
        "RETRY",
        "ACTIVE",
        "ERROR",
        "FAILED",
    ]


def test_489_with_non_retryable_header_fails_after_one_attempt(
    client_sdk: Any, receiver: Destination
) -> None:
    receiver.script(
        "/stop", Reply(status=489, headers={"Upstash-NonRetryable-Error": "true"}, body=b"no")
    )
    res = client_sdk.message.publish(
        url=receiver.url("/stop"), body="x", retries=3, retry_delay="100"
    )

    failed = wait_state(res.message_id, "FAILED")
    assert len(receiver.received("/stop")) == 1
    assert failed.retried == 0
    assert failed.last_response_status == 489
    assert states_of(res.message_id) == ["CREATED", "ACTIVE", "ERROR", "FAILED"]


def test_489_without_non_retryable_header_is_retried(
    client_sdk: Any, receiver: Destination
) -> None:
    receiver.script("/busy", Reply(status=489), Reply(status=200))
    res = client_sdk.message.publish(
        url=receiver.url("/busy"), body="x", retries=3, retry_delay="100"
    )

    receiver.wait_for(2, "/busy")
    wait_state(res.message_id, "DELIVERED")
    assert states_of(res.message_id)[-3:] == ["RETRY", "ACTIVE", "DELIVERED"]


@pytest.mark.parametrize(
    ("header", "value", "expected_seconds"),
    [
        pytest.param("Retry-After", "3600", 3600.0, id="seconds"),
        pytest.param("Retry-After", "6m5s", 365.0, id="go-duration"),
        pytest.param("X-RateLimit-Reset", "120", 120.0, id="x-ratelimit-reset"),
        # Above one day the header is ignored and the default backoff (e^2.5 s) applies.
        pytest.param("Retry-After", "90000", math.exp(2.5), id="over-a-day-ignored"),
    ],
)
def test_retry_after_header_from_destination_sets_next_delivery(
    client_sdk: Any, receiver: Destination, header: str, value: str, expected_seconds: float
) -> None:
    receiver.script("/slowdown", Reply(status=503, headers={header: value}))
    res = client_sdk.message.publish(url=receiver.url("/slowdown"), body="x", retries=3)

    waiting = wait_state(res.message_id, "RETRY")
    (error,) = error_logs(res.message_id)
    assert error.response_status == 503
    assert waiting.due_at is not None
    assert abs((waiting.due_at - error.time).total_seconds() - expected_seconds) < 0.5
    assert waiting.retried == 1


def test_default_backoff_waits_e_to_the_2_5_seconds_after_the_first_failure(
    client_sdk: Any, receiver: Destination
) -> None:
    receiver.script("/backoff", Reply(status=500), Reply(status=200))
    res = client_sdk.message.publish(url=receiver.url("/backoff"), body="x", retries=3)

    waiting = wait_state(res.message_id, "RETRY")
    (error,) = error_logs(res.message_id)
    assert waiting.due_at is not None
    assert abs((waiting.due_at - error.time).total_seconds() - math.exp(2.5)) < 0.5
    assert error.next_delivery_time == waiting.due_at

    # Time passes: the retry is delivered as the second attempt.
    move_due_into_past(res.message_id)
    attempts = receiver.wait_for(2, "/backoff")
    assert attempts[1].headers["Upstash-Retried"] == "1"
    wait_state(res.message_id, "DELIVERED")


# --- transport failures ---------------------------------------------------------------


def test_destination_slower_than_upstash_timeout_fails_with_a_timeout_error(
    client_sdk: Any, receiver: Destination
) -> None:
    receiver.script("/slow", Reply(delay=3.0))
    res = client_sdk.message.publish(url=receiver.url("/slow"), body="x", timeout="1s", retries=0)

    failed = wait_state(res.message_id, "FAILED")
    (error,) = error_logs(res.message_id)
    assert "timeout" in error.error.lower()
    assert "timeout" in failed.last_error.lower()
    assert error.response_status is None


def test_refused_connection_is_logged_as_a_connection_error(client_sdk: Any) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    res = client_sdk.message.publish(url=f"http://127.0.0.1:{port}/nobody", body="x", retries=0)

    wait_state(res.message_id, "FAILED")
    (error,) = error_logs(res.message_id)
    assert "connection" in error.error.lower()
    assert error.response_status is None
    assert states_of(res.message_id)[-2:] == ["ERROR", "FAILED"]


@pytest.mark.parametrize("url", ["http://example.invalid/hook", "http://10.1.2.3/hook"])
def test_destination_outside_the_policy_fails_with_a_policy_error(
    client_sdk: Any, url: str
) -> None:
    res = client_sdk.message.publish(url=url, body="x", retries=0)

    wait_state(res.message_id, "FAILED")
    (error,) = error_logs(res.message_id)
    assert "destination policy" in error.error
    assert error.response_status is None


# --- deduplication --------------------------------------------------------------------


def test_publish_with_a_seen_deduplication_id_answers_202_with_the_first_message_id(
    live: str, receiver: Destination
) -> None:
    url = receiver.url("/dedup")
    headers = {"Upstash-Deduplication-Id": "order-42"}
    first = publish_raw(live, url, body=b"one", headers=headers)
    second = publish_raw(live, url, body=b"two", headers=headers)

    assert first.status_code == 200, first.text
    assert second.status_code == 202, second.text
    assert second.json()["messageId"] == first.json()["messageId"]
    assert second.json()["deduplicated"] is True
    assert first.json().get("deduplicated", False) is False
    assert Message.objects.count() == 1

    (got,) = receiver.wait_for(1, "/dedup")
    assert got.body == b"one"
    wait_state(first.json()["messageId"], "DELIVERED")
    assert len(receiver.received("/dedup")) == 1


def test_content_based_deduplication_merges_identical_publishes_only(
    live: str, client_sdk: Any, receiver: Destination
) -> None:
    url = receiver.url("/content")
    first = client_sdk.message.publish(url=url, body="same", content_based_deduplication=True)
    second = client_sdk.message.publish(url=url, body="same", content_based_deduplication=True)
    raw = publish_raw(
        live, url, body=b"same", headers={"Upstash-Content-Based-Deduplication": "true"}
    )
    other = client_sdk.message.publish(url=url, body="different", content_based_deduplication=True)

    assert first.deduplicated is False
    assert second.deduplicated is True
    assert second.message_id == first.message_id
    assert raw.status_code == 202
    assert raw.json()["messageId"] == first.message_id
    assert other.deduplicated is False
    assert other.message_id != first.message_id
    assert Message.objects.count() == 2

    receiver.wait_for(2, "/content")
    wait_state(first.message_id, "DELIVERED")
    wait_state(other.message_id, "DELIVERED")
    assert sorted(r.body for r in receiver.received("/content")) == [b"different", b"same"]


# --- query-parameter configuration and header forwarding ------------------------------


def test_upstash_query_parameters_configure_the_message_and_are_stripped_from_the_url(
    live: str, receiver: Destination
) -> None:
    res = publish_raw(
        live, receiver.url("/q") + "?upstash-retries=0&upstash-method=PUT&x=1", body=b"q"
    )
    assert res.status_code == 200, res.text

    (got,) = receiver.wait_for(1, "/q")
    assert got.path == "/q?x=1"
    assert got.method == "PUT"
    assert got.body == b"q"
    stored = row(res.json()["messageId"])
    assert stored.max_retries == 0
    assert stored.url == receiver.url("/q?x=1")
    VERIFIER.verify(
        signature=got.headers["Upstash-Signature"], body="q", url=receiver.url("/q?x=1")
    )


def test_header_forward_sends_plain_headers_but_never_authorization_or_unknown_upstash_headers(
    live: str, receiver: Destination
) -> None:
    res = publish_raw(
        live,
        receiver.url("/fwd"),
        body=b"f",
        headers={
            "Upstash-Header-Forward": "true",
            "X-Custom": "abc",
            "Upstash-Forward-X-Explicit": "e",
            "Upstash-Telemetry-Sdk": "upstash-qstash-js@2.12.0",
            "Upstash-Callback-X-Cb": "quirk",
        },
    )
    assert res.status_code == 200, res.text

    (got,) = receiver.wait_for(1, "/fwd")
    lower = {k.lower(): v for k, v in got.headers.items()}
    assert lower["x-custom"] == "abc"
    assert lower["x-explicit"] == "e"
    assert "authorization" not in lower
    assert not any(TEST_TOKEN in v for v in got.headers.values())
    assert not any("telemetry" in k for k in lower)
    assert not any("x-cb" in k for k in lower)
    assert "quirk" not in got.headers.values()


def test_without_header_forward_only_prefixed_headers_reach_the_destination(
    client_sdk: Any, receiver: Destination
) -> None:
    client_sdk.message.publish(
        url=receiver.url("/plain"),
        body="p",
        headers={"X-Sent": "yes"},
        callback_headers={"X-Cb-Quirk": "quirk"},
    )

    (got,) = receiver.wait_for(1, "/plain")
    lower = {k.lower(): v for k, v in got.headers.items()}
    assert lower["x-sent"] == "yes"
    assert not any("x-cb-quirk" in k for k in lower)
    assert not any(
        k.startswith("upstash-callback") or k.startswith("upstash-forward") for k in lower
    )
    assert "authorization" not in lower


# --- settings echoed by GET /v2/messages/{id} -----------------------------------------


def test_callback_urls_forward_headers_and_settings_are_stored_and_echoed(
    live: str, client_sdk: Any, receiver: Destination
) -> None:
    res = publish_raw(
        live,
        receiver.url("/with-callbacks"),
        body=b"x",
        headers={
            "Upstash-Delay": "1h",
            "Upstash-Callback": receiver.url("/cb"),
            "Upstash-Failure-Callback": receiver.url("/failed"),
            "Upstash-Callback-Forward-X-Cb": "one",
            "Upstash-Failure-Callback-Forward-X-Fcb": "two",
            "Upstash-Callback-Method": "PUT",
            "Upstash-Callback-Retries": "2",
            "Upstash-Callback-Timeout": "5s",
            "Upstash-Failure-Callback-Retry-Delay": "1000 * (1 + retried)",
        },
    )
    assert res.status_code == 200, res.text
    message_id = res.json()["messageId"]

    wire = httpx.get(f"{live}/v2/messages/{message_id}", headers=AUTH).json()
    assert wire["callback"] == receiver.url("/cb")
    assert wire["failureCallback"] == receiver.url("/failed")
    assert {k.lower(): v for k, v in wire["callbackHeader"].items()} == {"x-cb": ["one"]}
    assert {k.lower(): v for k, v in wire["failureCallbackHeader"].items()} == {"x-fcb": ["two"]}

    sdk = client_sdk.message.get(message_id)
    assert sdk.callback == receiver.url("/cb")
    assert sdk.failure_callback == receiver.url("/failed")

    stored = row(message_id)
    assert stored.callback_settings == {"method": "PUT", "retries": 2, "timeout": 5}
    assert stored.failure_callback_settings == {"retryDelay": "1000 * (1 + retried)"}
    # Callback forward headers are not sent to the destination itself.
    assert stored.header.get("X-Cb") is None and stored.header.get("X-Fcb") is None


def test_label_and_flow_control_are_echoed_by_get_message(
    live: str, client_sdk: Any, receiver: Destination
) -> None:
    res = client_sdk.message.publish(
        url=receiver.url("/labelled"),
        body="x",
        delay="1h",
        label="billing",
        flow_control={"key": "tenant-1", "parallelism": 2, "rate": 10, "period": "1m"},
    )

    sdk = client_sdk.message.get(res.message_id)
    assert sdk.label == "billing"
    assert sdk.flow_control is not None
    assert (
        sdk.flow_control.key,
        sdk.flow_control.parallelism,
        sdk.flow_control.rate,
        sdk.flow_control.period,
    ) == (
        "tenant-1",
        2,
        10,
        60,
    )
    wire = httpx.get(f"{live}/v2/messages/{res.message_id}", headers=AUTH).json()
    assert wire["labels"] == ["billing"]
    assert wire["flowControlKey"] == "tenant-1"
