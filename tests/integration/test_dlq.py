"""The dead-letter queue: list, get, delete and retry with the SDK and raw HTTP."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from qstash.errors import QStashError

from broker.models import DlqEntry, Message
from tests.conftest import Receiver as Destination
from tests.conftest import Reply, wait_until
from tests.helpers import AUTH, api

BOOM = Reply(status=500, body=b"boom", headers={"X-Why": "broken"})


def dead(
    client_sdk: Any,
    receiver: Destination,
    path: str,
    *,
    body: str = "payload",
    reply: Reply | None = BOOM,
    **kwargs: Any,
) -> tuple[str, str]:
    """Publish with retries=0 to a failing path; return (message id, dlq id) once dead.

    ``reply=None`` keeps the path's current script.
    """
    if reply is not None:
        receiver.script(path, reply)
    res = client_sdk.message.publish(url=receiver.url(path), body=body, retries=0, **kwargs)
    entry = wait_until(
        lambda: DlqEntry.objects.filter(message__message_id=res.message_id).first(),
        what=f"{res.message_id} in the DLQ",
    )
    return res.message_id, entry.dlq_id


def header_value(headers: dict[str, Any], name: str) -> Any:
    return next(v for k, v in headers.items() if k.lower() == name.lower())


# --- list and get ------------------------------------------------------------------------


def test_failed_message_is_listed_and_got_with_its_last_response(
    client_sdk: Any, live: str, receiver: Destination
) -> None:
    message_id, dlq_id = dead(
        client_sdk,
        receiver,
        "/fail",
        body="the body",
        content_type="text/plain",
        headers={"X-Src": "s"},
        label="lbl",
    )
    listed = client_sdk.dlq.list()
    assert listed.cursor is None
    (entry,) = listed.messages
    assert entry.dlq_id == dlq_id
    assert entry.message_id == message_id
    assert entry.url == receiver.url("/fail")
    assert entry.method == "POST"
    assert entry.body == "the body"
    assert entry.max_retries == 0
    assert entry.response_status == 500
    assert entry.response_body == "boom"
    assert entry.response_body_base64 is None
    assert entry.response_headers is not None
    assert header_value(entry.response_headers, "X-Why") == ["broken"]
    assert entry.headers is not None and header_value(entry.headers, "X-Src") == ["s"]
    assert entry.label == "lbl"
    assert entry.caller_ip == "127.0.0.1"
    assert isinstance(entry.created_at, int) and isinstance(entry.not_before, int)

    got = client_sdk.dlq.get(dlq_id)
    assert (got.dlq_id, got.message_id, got.response_status, got.response_body) == (
        dlq_id,
        message_id,
        500,
        "boom",
    )
    raw = api(live, "GET", f"/v2/dlq/{dlq_id}").json()
    assert {"messageId", "url", "method", "maxRetries", "notBefore", "createdAt"} <= set(raw)
    assert raw["dlqId"] == dlq_id and raw["responseStatus"] == 500


def test_non_utf8_response_body_is_given_as_base64(client_sdk: Any, receiver: Destination) -> None:
    receiver.script("/binary", Reply(status=502, body=b"\xff\xfe\x00"))
    _, dlq_id = dead(client_sdk, receiver, "/binary", reply=None)
    got = client_sdk.dlq.get(dlq_id)
    assert got.response_status == 502
    assert got.response_body is None
    assert got.response_body_base64 == "//4A"


def test_filters_select_entries_and_an_unknown_filter_is_a_400(
    client_sdk: Any, live: str, receiver: Destination
) -> None:
    receiver.script("/f503", Reply(status=503, body=b"busy"))
    a = dead(client_sdk, receiver, "/fa", label="red")
    b = dead(client_sdk, receiver, "/fa", label="blue")
    c = dead(client_sdk, receiver, "/f503", label="red", reply=None)

    def ids(**filter: Any) -> set[str]:
        return {m.dlq_id for m in client_sdk.dlq.list(filter=filter).messages}

    assert ids(url=receiver.url("/fa")) == {a[1], b[1]}
    assert ids(response_status=503) == {c[1]}
    assert ids(response_status=500) == {a[1], b[1]}
    assert ids(label="red") == {a[1], c[1]}
    assert ids(label="red", url=receiver.url("/fa")) == {a[1]}
    assert ids(message_id=b[0]) == {b[1]}
    assert ids(url=receiver.url("/nothing")) == set()

    res = api(live, "GET", "/v2/dlq", params={"colour": "red"})
    assert res.status_code == 400
    assert "colour" in res.json()["error"]
    for bad in ({"responseStatus": "abc"}, {"order": "sideways"}, {"count": "x"}):
        res = api(live, "GET", "/v2/dlq", params=bad)
        assert res.status_code == 400, bad
        assert "error" in res.json()


def test_cursor_paging_walks_every_entry_and_order_latest_first_reverses(
    client_sdk: Any, live: str, receiver: Destination
) -> None:
    created = [dead(client_sdk, receiver, "/page", body=f"p{n}")[1] for n in range(4)]

    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = client_sdk.dlq.list(count=1, cursor=cursor)
        pages += 1
        assert len(page.messages) == 1
        seen.append(page.messages[0].dlq_id)
        cursor = page.cursor
        if cursor is None:
            break
        assert pages < 10
    assert seen == created
    assert pages == 4

    raw_last = api(live, "GET", "/v2/dlq", params={"count": 4}).json()
    assert "cursor" not in raw_last
    assert [m["dlqId"] for m in raw_last["messages"]] == created

    latest = api(live, "GET", "/v2/dlq", params={"order": "latestFirst"}).json()
    assert [m["dlqId"] for m in latest["messages"]] == list(reversed(created))

    first = api(live, "GET", "/v2/dlq", params={"order": "latestFirst", "count": 2}).json()
    assert [m["dlqId"] for m in first["messages"]] == created[:1:-1]
    rest = api(
        live, "GET", "/v2/dlq", params={"order": "latestFirst", "cursor": first["cursor"]}
    ).json()
    assert [m["dlqId"] for m in rest["messages"]] == created[1::-1]
    assert "cursor" not in rest


# --- delete ----------------------------------------------------------------------------


def test_delete_one_then_get_and_delete_again_are_404(
    client_sdk: Any, live: str, receiver: Destination
) -> None:
    message_id, dlq_id = dead(client_sdk, receiver, "/del")
    client_sdk.dlq.delete(dlq_id)

    res = api(live, "GET", f"/v2/dlq/{dlq_id}")
    assert res.status_code == 404 and "error" in res.json()
    res = api(live, "DELETE", f"/v2/dlq/{dlq_id}")
    assert res.status_code == 404 and "error" in res.json()
    with pytest.raises(QStashError):
        client_sdk.dlq.delete(dlq_id)
    assert not DlqEntry.objects.exists()
    # The failed message itself stays (with its log) until pruned.
    assert Message.objects.get(message_id=message_id).state == Message.State.FAILED


def test_delete_many_with_a_json_body_and_with_query_ids(
    client_sdk: Any, live: str, receiver: Destination
) -> None:
    entries = [dead(client_sdk, receiver, "/many", body=f"b{n}")[1] for n in range(5)]

    assert client_sdk.dlq.delete_many([entries[0], entries[1], "999-999"]) == 2
    assert set(DlqEntry.objects.values_list("dlq_id", flat=True)) == set(entries[2:])

    res = httpx.delete(
        f"{live}/v2/dlq?dlqIds={entries[2]}&dlqIds={entries[3]}", headers=AUTH, timeout=30
    )
    assert res.status_code == 200, res.text
    assert res.json() == {"deleted": 2}
    assert list(DlqEntry.objects.values_list("dlq_id", flat=True)) == [entries[4]]


def test_bulk_delete_by_filter_with_count_answers_a_cursor_while_more_remain(
    client_sdk: Any, live: str, receiver: Destination
) -> None:
    target = [dead(client_sdk, receiver, "/bulk", body=f"t{n}")[1] for n in range(2)]
    keep = dead(client_sdk, receiver, "/keep")[1]

    first = api(live, "DELETE", "/v2/dlq", params={"url": receiver.url("/bulk"), "count": 1})
    assert first.status_code == 200, first.text
    assert first.json()["deleted"] == 1
    assert isinstance(first.json()["cursor"], str) and first.json()["cursor"]

    second = api(
        live,
        "DELETE",
        "/v2/dlq",
        params={"url": receiver.url("/bulk"), "count": 1, "cursor": first.json()["cursor"]},
    )
    assert second.json() == {"deleted": 1}
    assert not DlqEntry.objects.filter(dlq_id__in=target).exists()
    assert list(DlqEntry.objects.values_list("dlq_id", flat=True)) == [keep]


# --- retry -----------------------------------------------------------------------------


def test_retry_one_publishes_a_new_message_with_the_same_body_and_overrides(
    client_sdk: Any, live: str, receiver: Destination
) -> None:
    receiver.script("/again", Reply(status=500, body=b"boom"), Reply(status=200))
    old_id, dlq_id = dead(
        client_sdk,
        receiver,
        "/again",
        reply=None,
        body="same body",
        content_type="text/plain",
        headers={"X-Keep": "k"},
    )

    res = api(live, "POST", f"/v2/dlq/retry/{dlq_id}", headers={"Upstash-Retries": "5"})
    assert res.status_code == 201, res.text
    new_id = res.json()["messageId"]
    assert new_id.startswith("msg_") and new_id != old_id

    assert api(live, "GET", f"/v2/dlq/{dlq_id}").status_code == 404
    assert not DlqEntry.objects.exists()
    new = Message.objects.get(message_id=new_id)
    assert new.max_retries == 5
    assert new.url == receiver.url("/again")

    attempts = receiver.wait_for(2, "/again")
    retried = attempts[1]
    assert retried.body == b"same body"
    assert retried.headers["Upstash-Message-Id"] == new_id
    assert retried.headers["X-Keep"] == "k"
    assert retried.headers["Content-Type"] == "text/plain"
    wait_until(
        lambda: Message.objects.get(message_id=new_id).state == Message.State.DELIVERED,
        what="retried message DELIVERED",
    )


def test_retry_without_override_keeps_the_original_settings(
    client_sdk: Any, live: str, receiver: Destination
) -> None:
    receiver.script("/keepsettings", Reply(status=500), Reply(status=200))
    _, dlq_id = dead(client_sdk, receiver, "/keepsettings", reply=None, method="PUT", timeout="7s")
    res = api(live, "POST", f"/v2/dlq/retry/{dlq_id}")
    assert res.status_code == 201
    new = Message.objects.get(message_id=res.json()["messageId"])
    assert (new.method, new.max_retries, new.timeout_seconds) == ("PUT", 0, 7)
    attempts = receiver.wait_for(2, "/keepsettings")
    assert attempts[1].method == "PUT"


def test_bulk_retry_by_ids_answers_201_with_one_response_per_entry(
    client_sdk: Any, live: str, receiver: Destination
) -> None:
    receiver.script("/bulkretry", Reply(status=500))
    entries = [
        dead(client_sdk, receiver, "/bulkretry", body=f"r{n}", reply=None)[1] for n in range(2)
    ]
    receiver.script("/bulkretry", Reply(status=200))

    res = httpx.post(
        f"{live}/v2/dlq/retry?dlqIds={entries[0]}&dlqIds={entries[1]}", headers=AUTH, timeout=30
    )
    assert res.status_code == 201, res.text
    data = res.json()
    assert "cursor" not in data
    new_ids = [r["messageId"] for r in data["responses"]]
    assert len(new_ids) == 2 and all(i.startswith("msg_") for i in new_ids)
    assert not DlqEntry.objects.exists()

    wait_until(
        lambda: Message.objects.filter(message_id__in=new_ids, state="DELIVERED").count() == 2,
        what="both retried messages DELIVERED",
    )
    delivered = [
        r for r in receiver.received("/bulkretry") if r.headers["Upstash-Message-Id"] in new_ids
    ]
    assert sorted(r.body for r in delivered) == [b"r0", b"r1"]


def test_bulk_retry_by_filter_and_with_a_json_body(
    client_sdk: Any, live: str, receiver: Destination
) -> None:
    receiver.script("/byfilter", Reply(status=500))
    a = dead(client_sdk, receiver, "/byfilter", label="x", reply=None)[1]
    b = dead(client_sdk, receiver, "/byfilter", label="y", reply=None)[1]
    receiver.script("/byfilter", Reply(status=200))

    res = api(live, "POST", "/v2/dlq/retry", params={"label": "x"})
    assert res.status_code == 201, res.text
    assert len(res.json()["responses"]) == 1
    assert list(DlqEntry.objects.values_list("dlq_id", flat=True)) == [b]

    res = api(live, "POST", "/v2/dlq/retry", json={"dlqIds": [b]})
    assert res.status_code == 201, res.text
    assert len(res.json()["responses"]) == 1
    assert not DlqEntry.objects.filter(dlq_id__in=[a, b]).exists()


def test_unknown_dlq_ids_are_404_json(client_sdk: Any, live: str, receiver: Destination) -> None:
    _, known = dead(client_sdk, receiver, "/known")
    for method, path in (
        ("GET", "/v2/dlq/1-1"),
        ("DELETE", "/v2/dlq/1-1"),
        ("POST", "/v2/dlq/retry/1-1"),
        ("POST", f"/v2/dlq/retry?dlqIds={known}&dlqIds=1-1"),
    ):
        res = api(live, method, path)
        assert res.status_code == 404, (method, path, res.text)
        assert isinstance(res.json()["error"], str)
    with pytest.raises(QStashError):
        client_sdk.dlq.get("1-1")
    # The failed bulk retry published nothing and kept the known entry.
    assert DlqEntry.objects.filter(dlq_id=known).exists()
    assert Message.objects.count() == 1


def test_delete_many_with_an_empty_id_list_deletes_nothing(
    client_sdk: Any, live: str, receiver: Destination
) -> None:
    entries = [dead(client_sdk, receiver, "/keepme", body=f"k{n}")[1] for n in range(2)]

    # PY dlq.delete_many([]) sends {"dlqIds": []}: nothing is named, nothing may go.
    assert client_sdk.dlq.delete_many([]) == 0
    assert set(DlqEntry.objects.values_list("dlq_id", flat=True)) == set(entries)

    res = api(live, "DELETE", "/v2/dlq?dlqIds=")
    assert res.status_code in (200, 400), res.text
    if res.status_code == 200:
        assert res.json()["deleted"] == 0
    assert set(DlqEntry.objects.values_list("dlq_id", flat=True)) == set(entries)


def test_bulk_retry_with_an_empty_id_list_retries_nothing(
    client_sdk: Any, live: str, receiver: Destination
) -> None:
    entries = [dead(client_sdk, receiver, "/stay", body=f"s{n}")[1] for n in range(2)]
    res = api(live, "POST", "/v2/dlq/retry", json={"dlqIds": []})
    assert res.status_code in (201, 400), res.text
    if res.status_code == 201:
        assert res.json()["responses"] == []
    assert set(DlqEntry.objects.values_list("dlq_id", flat=True)) == set(entries)
    assert Message.objects.count() == 2
