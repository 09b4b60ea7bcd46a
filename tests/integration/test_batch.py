"""``POST /v2/batch``: many publishes in one request, with the SDK and raw."""

from __future__ import annotations

import json
from typing import Any

import httpx
from qstash.message import BatchResponse, BatchUrlGroupResponse, prepare_batch_message_body

from broker.models import Message, Payload
from tests.conftest import Receiver as Destination
from tests.conftest import wait_until
from tests.helpers import AUTH


def batch_raw(live: str, payload: Any) -> httpx.Response:
    return httpx.post(f"{live}/v2/batch", json=payload, headers=AUTH, timeout=60)


def wait_all_delivered(count: int, timeout: float = 30.0) -> None:
    wait_until(
        lambda: Message.objects.filter(state=Message.State.DELIVERED).count() == count,
        timeout=timeout,
        what=f"{count} messages DELIVERED",
    )


def test_sdk_batch_of_urls_and_a_group_answers_aligned_and_delivers_each_item(
    client_sdk: Any, receiver: Destination
) -> None:
    g1, g2 = receiver.url("/g/1"), receiver.url("/g/2")
    client_sdk.url_group.upsert_endpoints(
        url_group="batchgroup", endpoints=[{"url": g1}, {"url": g2}]
    )
    res = client_sdk.message.batch(
        [
            {
                "url": receiver.url("/one"),
                "body": "first",
                "content_type": "text/plain",
                "headers": {"X-Item": "1"},
            },
            {"url_group": "batchgroup", "body": "to the group", "headers": {"X-Item": "g"}},
            {
                "url": receiver.url("/two"),
                "body": '{"n": 2}',
                "method": "PUT",
                "content_type": "application/json",
                "headers": {"X-Item": "2"},
            },
        ]
    )

    assert len(res) == 3
    assert isinstance(res[0], BatchResponse) and res[0].message_id.startswith("msg_")
    assert isinstance(res[1], list) and len(res[1]) == 2
    assert all(isinstance(r, BatchUrlGroupResponse) for r in res[1])
    assert [r.url for r in res[1]] == [g1, g2]
    assert isinstance(res[2], BatchResponse)
    ids = [res[0].message_id, *(r.message_id for r in res[1]), res[2].message_id]
    assert len(set(ids)) == 4
    assert Message.objects.count() == 4

    (one,) = receiver.wait_for(1, "/one")
    assert (one.method, one.body) == ("POST", b"first")
    assert one.headers["X-Item"] == "1"
    assert one.headers["Content-Type"] == "text/plain"
    assert one.headers["Upstash-Message-Id"] == res[0].message_id
    assert "Upstash-Topic-Name" not in one.headers

    (two,) = receiver.wait_for(1, "/two")
    assert (two.method, two.body) == ("PUT", b'{"n": 2}')
    assert two.headers["X-Item"] == "2"
    assert two.headers["Content-Type"] == "application/json"

    for response, path in zip(res[1], ["/g/1", "/g/2"], strict=True):
        (got,) = receiver.wait_for(1, path)
        assert got.body == b"to the group"
        assert got.headers["X-Item"] == "g"
        assert got.headers["Upstash-Topic-Name"] == "batchgroup"
        assert got.headers["Upstash-Message-Id"] == response.message_id
    wait_all_delivered(4)


def test_sdk_sends_null_body_and_queue_and_the_server_accepts_them(
    client_sdk: Any, receiver: Destination
) -> None:
    url = receiver.url("/nullbody")
    sent = json.loads(prepare_batch_message_body([{"url": url}]))
    assert sent == [{"destination": url, "headers": {}, "body": None, "queue": None}]

    res = client_sdk.message.batch([{"url": url}])
    assert len(res) == 1 and isinstance(res[0], BatchResponse)
    (got,) = receiver.wait_for(1, "/nullbody")
    assert got.body == b""
    assert got.headers["Upstash-Message-Id"] == res[0].message_id


def test_raw_batch_with_bad_items_answers_errors_in_place_and_publishes_the_others(
    live: str, receiver: Destination
) -> None:
    res = batch_raw(
        live,
        [
            {"destination": receiver.url("/ok/0"), "body": "zero"},
            {"headers": {"Upstash-Forward-X": "y"}, "body": "no destination"},
            {
                "destination": receiver.url("/ok/2"),
                "headers": {"Upstash-Delay": "soon"},
                "body": "bad delay",
            },
            {"destination": receiver.url("/ok/3"), "body": "three", "queue": None},
        ],
    )
    assert res.status_code == 200, res.text
    answers = res.json()
    assert len(answers) == 4
    assert answers[0]["messageId"].startswith("msg_")
    assert answers[0]["url"] == receiver.url("/ok/0")
    assert set(answers[1]) == {"error"} and "destination" in answers[1]["error"]
    assert set(answers[2]) == {"error"} and "Upstash-Delay" in answers[2]["error"]
    assert answers[3]["messageId"].startswith("msg_")

    assert Message.objects.count() == 2
    assert set(Message.objects.values_list("message_id", flat=True)) == {
        answers[0]["messageId"],
        answers[3]["messageId"],
    }
    receiver.wait_for(1, "/ok/0")
    receiver.wait_for(1, "/ok/3")
    wait_all_delivered(2)
    assert receiver.received("/ok/2") == []
    assert sorted(r.body for r in receiver.received()) == [b"three", b"zero"]


def test_non_array_batch_body_is_a_400_json_error(live: str, receiver: Destination) -> None:
    for payload in ({"destination": receiver.url("/x")}, "text", 42):
        res = batch_raw(live, payload)
        assert res.status_code == 400, res.text
        assert isinstance(res.json()["error"], str)
    res = httpx.post(
        f"{live}/v2/batch",
        content=b"[not json",
        headers={**AUTH, "Content-Type": "application/json"},
        timeout=30,
    )
    assert res.status_code == 400
    assert "error" in res.json()
    assert Message.objects.count() == 0


def test_batch_of_100_items_publishes_100_messages(live: str, receiver: Destination) -> None:
    items = [
        {"destination": receiver.url(f"/many/{n}"), "body": f"m{n}", "headers": {}}
        for n in range(100)
    ]
    res = batch_raw(live, items)
    assert res.status_code == 200, res.text
    answers = res.json()
    assert len(answers) == 100
    assert all("messageId" in a for a in answers)
    assert [a["url"] for a in answers] == [i["destination"] for i in items]
    assert Message.objects.count() == 100
    assert Payload.objects.count() == 100

    wait_all_delivered(100, timeout=60)
    assert sorted(r.body for r in receiver.received()) == sorted(
        f"m{n}".encode() for n in range(100)
    )
