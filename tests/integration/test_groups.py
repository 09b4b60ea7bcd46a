"""URL groups (``/v2/topics``): managed with the official SDK, published to, delivered per endpoint.

Everything runs against the live server with a real worker; rows are read with the ORM.
"""

from __future__ import annotations

from typing import Any

import pytest
from qstash.errors import QStashError, SignatureError

from broker.models import LogEntry, Message, Payload
from groups.models import Endpoint, UrlGroup
from tests.conftest import Receiver as Destination
from tests.conftest import Reply, wait_until
from tests.helpers import VERIFIER, api, state


def wait_delivered(*message_ids: str) -> None:
    wait_until(
        lambda: all(state(m) == Message.State.DELIVERED for m in message_ids),
        what=f"{message_ids} DELIVERED",
    )


def publish_to_group(client_sdk: Any, group: str, **kwargs: Any) -> list[Any]:
    res = client_sdk.message.publish(url_group=group, **kwargs)
    assert isinstance(res, list), res
    return res


# --- management ------------------------------------------------------------------------


def test_upsert_creates_the_group_and_get_and_list_show_it(
    client_sdk: Any, live: str, receiver: Destination
) -> None:
    a, b = receiver.url("/a"), receiver.url("/b")
    client_sdk.url_group.upsert_endpoints(
        url_group="orders", endpoints=[{"url": a, "name": "first"}, {"url": b}]
    )

    group = client_sdk.url_group.get("orders")
    assert group.name == "orders"
    assert isinstance(group.created_at, int) and group.created_at > 1_600_000_000_000
    assert isinstance(group.updated_at, int) and group.updated_at >= group.created_at
    assert [(e.url, e.name) for e in group.endpoints] == [(a, "first"), (b, None)]

    listed = client_sdk.url_group.list()
    assert [g.name for g in listed] == ["orders"]
    assert [(e.url, e.name) for e in listed[0].endpoints] == [(a, "first"), (b, None)]

    raw = api(live, "GET", "/v2/topics/orders")
    assert raw.status_code == 200
    assert set(raw.json()) >= {"name", "createdAt", "updatedAt", "endpoints"}
    assert UrlGroup.objects.count() == 1
    assert Endpoint.objects.count() == 2


def test_upsert_again_updates_an_endpoint_name_and_adds_new_endpoints(
    client_sdk: Any, receiver: Destination
) -> None:
    a, b = receiver.url("/a"), receiver.url("/b")
    client_sdk.url_group.upsert_endpoints(url_group="g1", endpoints=[{"url": a, "name": "old"}])
    before = client_sdk.url_group.get("g1")

    client_sdk.url_group.upsert_endpoints(
        url_group="g1", endpoints=[{"url": a, "name": "new"}, {"url": b, "name": "bee"}]
    )
    after = client_sdk.url_group.get("g1")
    assert [(e.url, e.name) for e in after.endpoints] == [(a, "new"), (b, "bee")]
    assert after.created_at == before.created_at
    assert after.updated_at >= before.updated_at
    assert Endpoint.objects.filter(url=a).count() == 1


def test_remove_by_url_and_by_name_and_the_last_removal_deletes_the_group(
    client_sdk: Any, live: str, receiver: Destination
) -> None:
    a, b, c = receiver.url("/a"), receiver.url("/b"), receiver.url("/c")
    client_sdk.url_group.upsert_endpoints(
        url_group="shrink", endpoints=[{"url": a}, {"url": b, "name": "bee"}, {"url": c}]
    )

    client_sdk.url_group.remove_endpoints(url_group="shrink", endpoints=[{"url": a}])
    assert [e.url for e in client_sdk.url_group.get("shrink").endpoints] == [b, c]

    client_sdk.url_group.remove_endpoints(url_group="shrink", endpoints=[{"name": "bee"}])
    assert [e.url for e in client_sdk.url_group.get("shrink").endpoints] == [c]

    client_sdk.url_group.remove_endpoints(url_group="shrink", endpoints=[{"url": c}])
    res = api(live, "GET", "/v2/topics/shrink")
    assert res.status_code == 404
    assert "error" in res.json()
    with pytest.raises(QStashError):
        client_sdk.url_group.get("shrink")
    assert UrlGroup.objects.count() == 0
    assert Endpoint.objects.count() == 0


def test_delete_group_and_delete_unknown_group_answer_2xx(
    client_sdk: Any, live: str, receiver: Destination
) -> None:
    client_sdk.url_group.upsert_endpoints(url_group="gone", endpoints=[{"url": receiver.url("/")}])
    client_sdk.url_group.delete("gone")
    assert api(live, "GET", "/v2/topics/gone").status_code == 404
    assert UrlGroup.objects.count() == 0 and Endpoint.objects.count() == 0

    client_sdk.url_group.delete("never-existed")  # the SDK raises on any non-2xx
    res = api(live, "DELETE", "/v2/topics/never-existed")
    assert 200 <= res.status_code < 300


@pytest.mark.parametrize(
    ("name", "body", "field"),
    [
        ("empty", {"endpoints": []}, "endpoints"),
        ("bad name!", {"endpoints": [{"url": "http://127.0.0.1:9/x"}]}, "name"),
        ("noscheme", {"endpoints": [{"url": "example.com/hook"}]}, "endpoints[0].url"),
        ("badendpointname", {"endpoints": [{"url": "http://127.0.0.1:9/", "name": "a b"}]}, "name"),
    ],
)
def test_bad_upsert_is_a_400_json_error_and_stores_nothing(
    live: str, name: str, body: dict[str, Any], field: str
) -> None:
    res = api(live, "POST", f"/v2/topics/{name}/endpoints", json=body)
    assert res.status_code == 400, res.text
    error = res.json()["error"]
    assert isinstance(error, str) and field in error
    assert UrlGroup.objects.count() == 0
    assert Endpoint.objects.count() == 0


def test_publish_to_a_name_that_is_neither_url_nor_group_is_a_400(live: str) -> None:
    res = api(live, "POST", "/v2/publish/no-such-group", content=b"x")
    assert res.status_code == 400
    assert "error" in res.json()
    assert Message.objects.count() == 0
    assert Payload.objects.count() == 0


# --- publishing to a group ------------------------------------------------------------------


def test_group_publish_fans_out_one_signed_message_per_endpoint_sharing_one_payload(
    client_sdk: Any, receiver: Destination
) -> None:
    a, b = receiver.url("/ep/a"), receiver.url("/ep/b?q=1")
    client_sdk.url_group.upsert_endpoints(
        url_group="fan", endpoints=[{"url": a, "name": "alpha"}, {"url": b, "name": "beta"}]
    )
    res = publish_to_group(
        client_sdk, "fan", body="fan-out body", content_type="text/plain", headers={"X-H": "v"}
    )

    assert [r.url for r in res] == [a, b]
    assert len({r.message_id for r in res}) == 2
    assert all(r.message_id.startswith("msg_") for r in res)
    assert Message.objects.count() == 2
    assert Payload.objects.count() == 1

    for response, path in zip(res, ["/ep/a", "/ep/b"], strict=True):
        (got,) = receiver.wait_for(1, path)
        assert got.body == b"fan-out body"
        assert got.headers["Upstash-Topic-Name"] == "fan"
        assert got.headers["Upstash-Message-Id"] == response.message_id
        assert got.headers["X-H"] == "v"
        assert got.headers["Content-Type"] == "text/plain"
        VERIFIER.verify(
            signature=got.headers["Upstash-Signature"], body=got.body.decode(), url=response.url
        )
    # The signature names its own endpoint: the sibling's URL does not verify.
    got_a = receiver.received("/ep/a")[0]
    with pytest.raises(SignatureError):
        VERIFIER.verify(
            signature=got_a.headers["Upstash-Signature"], body=got_a.body.decode(), url=b
        )

    wait_delivered(*(r.message_id for r in res))
    rows = {m.url: m for m in Message.objects.all()}
    assert rows[a].topic_name == rows[b].topic_name == "fan"
    assert (rows[a].endpoint_name, rows[b].endpoint_name) == ("alpha", "beta")
    assert rows[a].payload_id == rows[b].payload_id


def test_group_endpoints_retry_independently(client_sdk: Any, receiver: Destination) -> None:
    ok, flaky = receiver.url("/ok"), receiver.url("/flaky")
    receiver.script("/flaky", Reply(status=500, body=b"down"), Reply(status=200))
    client_sdk.url_group.upsert_endpoints(
        url_group="indep", endpoints=[{"url": ok}, {"url": flaky}]
    )

    res = publish_to_group(client_sdk, "indep", body="b", retries=3, retry_delay="100")
    ids = {r.url: r.message_id for r in res}
    wait_delivered(*ids.values())

    assert len(receiver.received("/ok")) == 1
    flaky_attempts = receiver.received("/flaky")
    assert [r.headers["Upstash-Retried"] for r in flaky_attempts] == ["0", "1"]
    assert Message.objects.get(message_id=ids[ok]).retried == 0
    assert Message.objects.get(message_id=ids[flaky]).retried == 1
    states = {
        url: list(
            LogEntry.objects.filter(message__message_id=mid)
            .order_by("pk")
            .values_list("state", flat=True)
        )
        for url, mid in ids.items()
    }
    assert states[ok] == ["CREATED", "ACTIVE", "DELIVERED"]
    assert states[flaky] == ["CREATED", "ACTIVE", "ERROR", "RETRY", "ACTIVE", "DELIVERED"]


def test_group_messages_and_logs_carry_topic_and_endpoint_names(
    client_sdk: Any, live: str, receiver: Destination
) -> None:
    a, b = receiver.url("/n/a"), receiver.url("/n/b")
    client_sdk.url_group.upsert_endpoints(
        url_group="named", endpoints=[{"url": a, "name": "ea"}, {"url": b, "name": "eb"}]
    )
    # Delayed, so the messages are still pending and GET /v2/messages/{id} shows them.
    res = publish_to_group(client_sdk, "named", body="x", delay="1h")
    by_url = {r.url: r.message_id for r in res}

    for url, endpoint_name in ((a, "ea"), (b, "eb")):
        got = api(live, "GET", f"/v2/messages/{by_url[url]}")
        assert got.status_code == 200, got.text
        data = got.json()
        assert data["topicName"] == "named"
        assert data["endpointName"] == endpoint_name
        assert data["url"] == url
        sdk_message = client_sdk.message.get(by_url[url])
        assert sdk_message.url_group == "named"
        assert sdk_message.endpoint == endpoint_name

    events = api(live, "GET", "/v2/events", params={"topicName": "named"})
    assert events.status_code == 200
    rows = events.json()["events"]
    assert {e["messageId"] for e in rows} == set(by_url.values())
    assert all(e["topicName"] == "named" for e in rows)
    assert {(e["url"], e["endpointName"]) for e in rows} == {(a, "ea"), (b, "eb")}

    other = api(live, "GET", "/v2/events", params={"topicName": "other"})
    assert other.json()["events"] == []


def test_group_default_headers_apply_to_later_publishes_and_the_request_wins(
    client_sdk: Any, live: str, receiver: Destination
) -> None:
    url = receiver.url("/defaults")
    receiver.script("/defaults", Reply(status=500))
    client_sdk.url_group.upsert_endpoints(url_group="dflt", endpoints=[{"url": url}])

    patched = api(
        live,
        "PATCH",
        "/v2/topics/dflt",
        json={"headers": {"Upstash-Retries": "0", "Upstash-Forward-X-Default": "d"}},
    )
    assert 200 <= patched.status_code < 300, patched.text
    assert UrlGroup.objects.get(name="dflt").default_headers == {
        "Upstash-Retries": "0",
        "Upstash-Forward-X-Default": "d",
    }

    (first,) = publish_to_group(client_sdk, "dflt", body="one")
    (got,) = receiver.wait_for(1, "/defaults")
    assert got.headers["X-Default"] == "d"
    assert Message.objects.get(message_id=first.message_id).max_retries == 0
    # Retries 0: one attempt, then FAILED.
    wait_until(lambda: state(first.message_id) == Message.State.FAILED, what="FAILED")

    receiver.script("/defaults", Reply(status=200))
    (second,) = publish_to_group(
        client_sdk, "dflt", body="two", retries=2, headers={"X-Default": "mine"}
    )
    wait_delivered(second.message_id)
    got2 = [r for r in receiver.received("/defaults") if r.body == b"two"][0]
    assert got2.headers["X-Default"] == "mine"
    assert Message.objects.get(message_id=second.message_id).max_retries == 2


def test_patch_headers_of_an_unknown_group_is_404(live: str) -> None:
    res = api(live, "PATCH", "/v2/topics/nope", json={"headers": {"Upstash-Retries": "1"}})
    assert res.status_code == 404
    assert "error" in res.json()


def test_remove_endpoints_of_an_unknown_group_is_404(live: str) -> None:
    res = api(
        live,
        "DELETE",
        "/v2/topics/unknown-group/endpoints",
        json={"endpoints": [{"url": "http://127.0.0.1:9/"}]},
    )
    assert res.status_code == 404
    assert "error" in res.json()


def test_deleting_a_group_keeps_its_messages_in_flight(
    client_sdk: Any, live: str, receiver: Destination
) -> None:
    client_sdk.url_group.upsert_endpoints(url_group="short", endpoints=[{"url": receiver.url("/")}])
    (res,) = publish_to_group(client_sdk, "short", body="x", delay="1h")
    client_sdk.url_group.delete("short")
    got = api(live, "GET", f"/v2/messages/{res.message_id}")
    assert got.status_code == 200
    assert got.json()["topicName"] == "short"
    assert state(res.message_id) == Message.State.CREATED


def test_group_publish_with_a_deduplication_id_answers_202_with_the_original_ids(
    client_sdk: Any, live: str, receiver: Destination
) -> None:
    client_sdk.url_group.upsert_endpoints(
        url_group="dedup", endpoints=[{"url": receiver.url("/d1")}, {"url": receiver.url("/d2")}]
    )
    first = publish_to_group(client_sdk, "dedup", body="x", deduplication_id="same")
    assert not any(r.deduplicated for r in first)
    again = api(
        live,
        "POST",
        "/v2/publish/dedup",
        content=b"x",
        headers={"Upstash-Deduplication-Id": "same"},
    )
    assert again.status_code == 202, again.text
    assert [(r["messageId"], r["url"], r.get("deduplicated")) for r in again.json()] == [
        (r.message_id, r.url, True) for r in first
    ]
    assert Message.objects.count() == 2


def test_a_failed_group_message_is_in_the_dlq_with_its_group_and_a_retry_keeps_it(
    client_sdk: Any, live: str, receiver: Destination
) -> None:
    receiver.script("/gfail", Reply(status=500, body=b"no"), Reply(status=200))
    client_sdk.url_group.upsert_endpoints(
        url_group="gdlq",
        endpoints=[
            {"url": receiver.url("/gok"), "name": "ok"},
            {"url": receiver.url("/gfail"), "name": "bad"},
        ],
    )
    publish_to_group(client_sdk, "gdlq", body="grp", retries=0)
    wait_until(lambda: client_sdk.dlq.list().messages, what="a DLQ entry")

    (entry,) = client_sdk.dlq.list(filter={"url_group": "gdlq"}).messages
    assert (entry.url, entry.url_group, entry.endpoint) == (receiver.url("/gfail"), "gdlq", "bad")
    assert client_sdk.dlq.list(filter={"url_group": "other"}).messages == []

    res = api(live, "POST", f"/v2/dlq/retry/{entry.dlq_id}")
    assert res.status_code == 201, res.text
    attempts = receiver.wait_for(2, "/gfail")
    assert attempts[1].headers["Upstash-Topic-Name"] == "gdlq"
    assert attempts[1].body == b"grp"
    VERIFIER.verify(
        signature=attempts[1].headers["Upstash-Signature"], body="grp", url=receiver.url("/gfail")
    )
    new = Message.objects.get(message_id=res.json()["messageId"])
    assert (new.topic_name, new.endpoint_name) == ("gdlq", "bad")
