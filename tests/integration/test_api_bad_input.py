"""Invalid requests: a 4xx JSON error naming the field at fault, and nothing stored or changed."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from broker.models import LogEntry, Message
from tests.helpers import AUTH

DEST = "http://127.0.0.1:9/hook"
JSON = {"Content-Type": "application/json"}


def case(
    name: str, headers: dict[str, str], field: str, *, path: str = f"/v2/publish/{DEST}"
) -> Any:
    return pytest.param(path, headers, field, id=name)


PUBLISH_CASES = [
    case("no-scheme", {}, "destination", path="/v2/publish/example.com/hook"),
    case("ftp-scheme", {}, "destination", path="/v2/publish/ftp://127.0.0.1/file"),
    case("unknown-method", {"Upstash-Method": "FETCH"}, "Upstash-Method"),
    case("negative-delay", {"Upstash-Delay": "-5s"}, "Upstash-Delay"),
    case("malformed-delay", {"Upstash-Delay": "5x"}, "Upstash-Delay"),
    case("delay-beyond-maximum", {"Upstash-Delay": "400d"}, "Upstash-Delay"),
    case("malformed-not-before", {"Upstash-Not-Before": "tomorrow"}, "Upstash-Not-Before"),
    case("retries-not-a-number", {"Upstash-Retries": "abc"}, "Upstash-Retries"),
    case("retries-above-maximum", {"Upstash-Retries": "21"}, "Upstash-Retries"),
    case("negative-retries", {"Upstash-Retries": "-1"}, "Upstash-Retries"),
    case("retry-delay-python", {"Upstash-Retry-Delay": "__import__('os')"}, "Upstash-Retry-Delay"),
    case("retry-delay-wrong-arity", {"Upstash-Retry-Delay": "pow(1)"}, "Upstash-Retry-Delay"),
    case("retry-delay-syntax", {"Upstash-Retry-Delay": "1000 *"}, "Upstash-Retry-Delay"),
    case("malformed-timeout", {"Upstash-Timeout": "10x"}, "Upstash-Timeout"),
    case("callback-ftp", {"Upstash-Callback": "ftp://127.0.0.1/cb"}, "Upstash-Callback"),
    case("callback-not-a-url", {"Upstash-Callback": "not a url"}, "Upstash-Callback"),
    case(
        "failure-callback-no-scheme",
        {"Upstash-Failure-Callback": "127.0.0.1/f"},
        "Upstash-Failure-Callback",
    ),
    case("delayed-callback", {"Upstash-Callback-Delay": "10s"}, "Upstash-Callback-Delay"),
    case("callback-retries", {"Upstash-Callback-Retries": "many"}, "Upstash-Callback-Retries"),
    case(
        "flow-control-value-not-a-number",
        {"Upstash-Flow-Control-Key": "k", "Upstash-Flow-Control-Value": "parallelism=abc"},
        "Upstash-Flow-Control-Value",
    ),
    case(
        "flow-control-value-unknown-key",
        {"Upstash-Flow-Control-Key": "k", "Upstash-Flow-Control-Value": "speed=3"},
        "Upstash-Flow-Control-Value",
    ),
    case(
        "flow-control-value-without-key",
        {"Upstash-Flow-Control-Value": "parallelism=1"},
        "Upstash-Flow-Control-Value",
    ),
    case("bad-redact-field", {"Upstash-Redact-Fields": "password"}, "Upstash-Redact-Fields"),
    case(
        "content-based-dedup-not-a-bool",
        {"Upstash-Content-Based-Deduplication": "maybe"},
        "Upstash-Content-Based-Deduplication",
    ),
    case(
        "retries-as-query-parameter",
        {},
        "Upstash-Retries",
        path=f"/v2/publish/{DEST}?upstash-retries=abc",
    ),
]


@pytest.mark.parametrize(("path", "headers", "field"), PUBLISH_CASES)
def test_invalid_publish_is_refused_with_an_error_naming_the_field(
    live: str, path: str, headers: dict[str, str], field: str
) -> None:
    res = httpx.post(f"{live}{path}", content=b"body", headers={**AUTH, **headers})

    assert res.status_code == 400, res.text
    error = res.json()["error"]
    assert isinstance(error, str)
    assert field.lower() in error.lower()
    assert Message.objects.count() == 0


def test_body_above_the_size_limit_is_refused_with_413(live: str, settings: Any) -> None:
    settings.QSTASH_MAX_BODY_BYTES = 1000

    res = httpx.post(f"{live}/v2/publish/{DEST}", content=b"x" * 2000, headers=AUTH)

    assert res.status_code == 413
    assert "1000" in res.json()["error"]
    assert Message.objects.count() == 0
    ok = httpx.post(
        f"{live}/v2/publish/{DEST}", content=b"x" * 1000, headers={**AUTH, "Upstash-Delay": "1h"}
    )
    assert ok.status_code == 200


READ_CASES = [
    pytest.param(
        "GET", "/v2/messages/msg_nope", {}, None, 404, "msg_nope", id="get-unknown-message"
    ),
    pytest.param(
        "DELETE", "/v2/messages/msg_nope", {}, None, 404, "msg_nope", id="cancel-unknown-message"
    ),
    pytest.param(
        "DELETE", "/v2/messages", JSON, b"{not json", 400, "JSON", id="cancel-malformed-json"
    ),
    pytest.param(
        "DELETE", "/v2/messages", JSON, b'["msg_a"]', 400, "body", id="cancel-body-not-an-object"
    ),
    pytest.param(
        "DELETE",
        "/v2/messages",
        JSON,
        b'{"messageIds": "msg_a"}',
        400,
        "messageIds",
        id="cancel-ids-not-a-list",
    ),
    pytest.param("DELETE", "/v2/messages?count=0", {}, None, 400, "count", id="cancel-count-0"),
    pytest.param("DELETE", "/v2/messages?count=501", {}, None, 400, "count", id="cancel-count-501"),
    pytest.param("DELETE", "/v2/messages?count=x", {}, None, 400, "count", id="cancel-count-x"),
    pytest.param(
        "DELETE", "/v2/messages?colour=red", {}, None, 400, "colour", id="cancel-unknown-filter"
    ),
    pytest.param(
        "DELETE", "/v2/messages?fromDate=yesterday", {}, None, 400, "fromDate", id="cancel-bad-date"
    ),
    pytest.param("GET", "/v2/events?count=0", {}, None, 400, "count", id="logs-count-0"),
    pytest.param("GET", "/v2/events?count=x", {}, None, 400, "count", id="logs-count-x"),
    pytest.param("GET", "/v2/events?colour=red", {}, None, 400, "colour", id="logs-unknown-filter"),
    pytest.param("GET", "/v2/logs?state=SLEEPING", {}, None, 400, "state", id="logs-bad-state"),
    pytest.param("GET", "/v2/events?order=random", {}, None, 400, "order", id="logs-bad-order"),
    pytest.param("GET", "/v2/events?cursor=abc", {}, None, 400, "cursor", id="logs-bad-cursor"),
    pytest.param("GET", "/v2/events?fromDate=x", {}, None, 400, "fromDate", id="logs-bad-date"),
]


@pytest.mark.parametrize(("method", "path", "headers", "body", "status", "field"), READ_CASES)
def test_invalid_read_or_cancel_is_refused_and_changes_nothing(
    live: str,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes | None,
    status: int,
    field: str,
) -> None:
    seeded = httpx.post(
        f"{live}/v2/publish/{DEST}", content=b"x", headers={**AUTH, "Upstash-Delay": "1h"}
    )
    assert seeded.status_code == 200

    res = httpx.request(method, f"{live}{path}", content=body, headers={**AUTH, **headers})

    assert res.status_code == status, res.text
    error = res.json()["error"]
    assert isinstance(error, str)
    assert field.lower() in error.lower()
    assert list(Message.objects.values_list("state", flat=True)) == ["CREATED"]
    assert list(LogEntry.objects.values_list("state", flat=True)) == ["CREATED"]
