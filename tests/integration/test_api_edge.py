"""Bad characters, deep JSON and oversize requests: a 4xx ``{"error"}`` naming the part, nothing
written, and the API still answering afterwards."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from django.test import override_settings

from broker.models import LogEntry, Message
from groups.models import UrlGroup
from tests.conftest import Receiver
from tests.helpers import AUTH, api

pytestmark = pytest.mark.django_db(transaction=True)

DEST = "http://127.0.0.1:9/hook"
DEEP = "[" * 100_000 + "]" * 100_000


def _expect_error(response: httpx.Response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    for word in words:
        assert word.lower() in error.lower(), (word, error)


def _still_answers(live: str) -> None:
    assert api(live, "GET", "/v2/logs").status_code == 200
    assert api(live, "GET", "/v2/dlq").status_code == 200
    assert api(live, "GET", "/v2/topics").status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "word"),
    [
        ("GET", "/v2/messages/a%00b", "path"),
        ("DELETE", "/v2/messages/a%00b", "path"),
        ("GET", "/v2/dlq/a%00b", "path"),
        ("GET", "/v2/topics/a%00b", "path"),
        ("POST", f"/v2/publish/{DEST}%00", "path"),
        ("GET", "/v2/logs?url=%00", "url"),
        ("GET", "/v2/logs?label=%00", "label"),
        ("GET", "/v2/logs?label=a%0Ab", "label"),
        ("DELETE", "/v2/messages?label=%00", "label"),
        ("GET", "/v2/dlq?url=%00", "url"),
        ("GET", "/v2/logs?responseStatus=99999999999999999999999", "responseStatus"),
        ("GET", "/v2/logs?cursor=99999999999999999999999", "cursor"),
    ],
)
def test_nul_and_control_characters_in_path_and_query_are_a_400(
    live: str, method: str, path: str, word: str
) -> None:
    _expect_error(api(live, method, path), 400, word)
    _still_answers(live)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v2/batch"),
        ("POST", "/v2/topics/g/endpoints"),
        ("DELETE", "/v2/topics/g/endpoints"),
        ("PATCH", "/v2/topics/g"),
        ("DELETE", "/v2/messages"),
        ("DELETE", "/v2/dlq"),
        ("POST", "/v2/dlq/retry"),
    ],
)
def test_deeply_nested_json_is_a_400(live: str, method: str, path: str) -> None:
    response = api(live, method, path, content=DEEP, headers={"Content-Type": "application/json"})
    _expect_error(response, 400, "invalid JSON body", "nested")
    _still_answers(live)


@pytest.mark.parametrize(
    ("item", "words"),
    [
        ({"destination": DEST, "body": "a\u0000b"}, ["[0].body", "NUL"]),
        ({"destination": DEST + "\u0000"}, ["[0].destination"]),
        ({"destination": DEST, "headers": {"Upstash-Label": "a\u0000"}}, ["Upstash-Label"]),
        ({"destination": DEST, "headers": {"\udfff": "x"}}, ["key"]),
        ({"destination": DEST, "headers": {"Upstash-Forward-X": "\udfff"}}, ["Upstash-Forward"]),
        ({"destination": "grou\u0000p"}, ["[0].destination"]),
    ],
)
def test_nul_and_lone_surrogates_in_json_are_a_400_and_later_reads_answer(
    live: str, item: dict[str, Any], words: list[str]
) -> None:
    # ensure_ascii keeps the lone surrogate as its \\udfff escape, as an attacker sends it.
    raw = json.dumps([item])
    response = api(
        live, "POST", "/v2/batch", content=raw, headers={"Content-Type": "application/json"}
    )
    _expect_error(response, 400, "invalid JSON body", *words)
    assert Message.objects.count() == 0
    _still_answers(live)


@pytest.mark.parametrize(
    "body",
    [
        {"endpoints": [{"url": DEST, "name": "a\u0000"}]},
        {"endpoints": [{"url": DEST + "\u0000"}]},
    ],
)
def test_nul_in_group_endpoints_is_a_400(live: str, body: dict[str, Any]) -> None:
    _expect_error(api(live, "POST", "/v2/topics/g/endpoints", json=body), 400, "endpoints[0]")
    assert not UrlGroup.objects.exists()


def test_group_headers_with_control_characters_are_refused(live: str) -> None:
    assert api(
        live, "POST", "/v2/topics/g/endpoints", json={"endpoints": [{"url": DEST}]}
    ).is_success
    for headers in ({"Upstash-Forward-X": "a\r\nb"}, {"Upstash-Forward-Host": "evil"}):
        _expect_error(api(live, "PATCH", "/v2/topics/g", json={"headers": headers}), 400, "header")
    assert UrlGroup.objects.get(name="g").default_headers == {}


def test_cancel_ids_with_nul_are_a_400(live: str) -> None:
    response = api(live, "DELETE", "/v2/messages", json={"messageIds": ["msg_\u0000"]})
    _expect_error(response, 400, "messageIds[0]")


def test_flow_control_key_longer_than_its_column_is_a_400(live: str) -> None:
    response = api(
        live,
        "POST",
        f"/v2/publish/{DEST}",
        headers={"Upstash-Flow-Control-Key": "k" * 300, "Upstash-Flow-Control-Value": "rate=1"},
    )
    _expect_error(response, 400, "Upstash-Flow-Control-Key", "200")
    assert Message.objects.count() == 0


# --- caps ---------------------------------------------------------------------------


@override_settings(QSTASH_MAX_REQUEST_BYTES=4096)
def test_request_body_over_the_cap_is_a_413_on_every_endpoint(live: str) -> None:
    big = b"[" + b'"x",' * 2000 + b'"x"]'
    for method, path in (
        ("POST", "/v2/batch"),
        ("POST", "/v2/topics/g/endpoints"),
        ("DELETE", "/v2/messages"),
        ("POST", "/v2/dlq/retry"),
        ("POST", f"/v2/publish/{DEST}"),
    ):
        response = api(
            live, method, path, content=big, headers={"Content-Type": "application/json"}
        )
        _expect_error(response, 413, "4096")
    assert Message.objects.count() == 0
    assert not UrlGroup.objects.exists()


@override_settings(QSTASH_MAX_BATCH_ITEMS=5)
def test_batch_over_the_item_cap_is_refused_whole(live: str) -> None:
    items = [{"destination": DEST, "body": str(i)} for i in range(6)]
    _expect_error(api(live, "POST", "/v2/batch", json=items), 400, "QSTASH_MAX_BATCH_ITEMS", "5")
    assert Message.objects.count() == 0
    assert api(live, "POST", "/v2/batch", json=items[:5]).status_code == 200
    assert Message.objects.count() == 5


@override_settings(QSTASH_MAX_MESSAGES_PER_REQUEST=6)
def test_fan_out_over_the_message_cap_is_refused_whole(live: str) -> None:
    endpoints = [{"url": f"http://127.0.0.1:9/e{i}"} for i in range(3)]
    assert api(live, "POST", "/v2/topics/g/endpoints", json={"endpoints": endpoints}).is_success
    _expect_error(
        api(live, "POST", "/v2/batch", json=[{"destination": "g"}] * 3),
        400,
        "9 messages",
        "QSTASH_MAX_MESSAGES_PER_REQUEST",
    )
    assert Message.objects.count() == 0
    assert api(live, "POST", "/v2/batch", json=[{"destination": "g"}] * 2).status_code == 200
    assert Message.objects.count() == 6


@override_settings(QSTASH_MAX_GROUP_ENDPOINTS=3)
def test_group_endpoints_over_the_cap_are_refused_and_nothing_is_added(live: str) -> None:
    two = [{"url": f"http://127.0.0.1:9/e{i}"} for i in range(2)]
    assert api(live, "POST", "/v2/topics/g/endpoints", json={"endpoints": two}).is_success
    more = [{"url": f"http://127.0.0.1:9/f{i}"} for i in range(2)]
    _expect_error(
        api(live, "POST", "/v2/topics/g/endpoints", json={"endpoints": more}),
        400,
        "QSTASH_MAX_GROUP_ENDPOINTS",
    )
    assert UrlGroup.objects.get(name="g").endpoints.count() == 2


@override_settings(QSTASH_MAX_LABELS=3)
def test_labels_over_the_cap_are_refused(live: str) -> None:
    response = api(live, "POST", f"/v2/publish/{DEST}", headers={"Upstash-Label": "a,b,c,d"})
    _expect_error(response, 400, "Upstash-Label", "3")
    assert Message.objects.count() == 0


@override_settings(QSTASH_MAX_HEADERS=20)
def test_headers_over_the_cap_are_refused(live: str) -> None:
    headers = {f"Upstash-Forward-X-{i}": "v" for i in range(25)}
    _expect_error(api(live, "POST", f"/v2/publish/{DEST}", headers=headers), 400, "20")
    assert Message.objects.count() == 0


def test_chunked_body_needs_a_server_that_dechunks_it(live: str) -> None:
    # Django's test server (wsgiref) passes chunked bodies through undecoded: 411, not a
    # silently empty message. gunicorn de-chunks: see test_dev_server.
    response = httpx.post(
        f"{live}/v2/publish/{DEST}",
        headers=AUTH,
        content=iter([b"abc", b"def"]),
        timeout=10,
    )
    _expect_error(response, 411, "Content-Length")
    assert Message.objects.count() == 0


def test_log_and_message_reads_answer_after_refused_input(live: str, receiver: Receiver) -> None:
    # The original finding: a header name "\udfff" was stored and broke reads until pruned.
    raw = json.dumps([{"destination": receiver.url("/x"), "headers": {"\udfff": "x"}}])
    api(live, "POST", "/v2/batch", content=raw, headers={"Content-Type": "application/json"})
    ok = api(live, "POST", f"/v2/publish/{receiver.url('/ok')}", content=b"fine")
    assert ok.status_code == 200
    message_id = ok.json()["messageId"]
    assert api(live, "GET", f"/v2/messages/{message_id}").status_code in (200, 404)
    assert api(live, "GET", "/v2/logs").status_code == 200
    assert LogEntry.objects.filter(message__message_id=message_id).exists()
