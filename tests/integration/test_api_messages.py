"""GET /v2/messages/{id}, DELETE /v2/messages/{id} and bulk DELETE /v2/messages."""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

import httpx
import pytest
from django.utils import timezone
from qstash.errors import QStashError

from broker.models import Message
from tests.conftest import Receiver as Destination
from tests.conftest import wait_until
from tests.helpers import AUTH, state, states_of

REQUIRED_MESSAGE_KEYS = {"messageId", "url", "method", "maxRetries", "notBefore", "createdAt"}


def publish_raw(
    live: str, url: str, *, body: bytes = b"", headers: dict[str, str] | None = None
) -> str:
    res = httpx.post(
        f"{live}/v2/publish/{url}", content=body, headers={**AUTH, **(headers or {})}, timeout=30
    )
    assert res.status_code == 200, res.text
    return str(res.json()["messageId"])


def delayed(client_sdk: Any, url: str, **kwargs: Any) -> str:
    return str(client_sdk.message.publish(url=url, body="x", delay="1h", **kwargs).message_id)


def wait_state(message_id: str, *states: str) -> None:
    wait_until(lambda: state(message_id) in states, what=f"{message_id} in {states}")


def delete(live: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(
        "DELETE", f"{live}{path}", headers={**AUTH, **kwargs.pop("headers", {})}, **kwargs
    )


# --- get ------------------------------------------------------------------------------


def test_get_message_returns_every_required_field_body_and_headers(
    live: str, client_sdk: Any, receiver: Destination
) -> None:
    url = receiver.url("/get?x=1")
    res = client_sdk.message.publish(
        url=url,
        body='{"a": 1}',
        content_type="application/json",
        headers={"My-Header": "my-value"},
        delay="1h",
        retries=2,
        retry_delay="1000 * (1 + retried)",
    )
    stored = Message.objects.get(message_id=res.message_id)

    wire = httpx.get(f"{live}/v2/messages/{res.message_id}", headers=AUTH).json()
    assert wire.keys() >= REQUIRED_MESSAGE_KEYS
    assert wire["notBefore"] == int(stored.not_before.timestamp() * 1000)
    assert wire["createdAt"] == int(stored.created_at.timestamp() * 1000)

    message = client_sdk.message.get(res.message_id)
    assert message.message_id == res.message_id
    assert message.url == url
    assert message.method == "POST"
    assert message.body == '{"a": 1}'
    assert message.body_base64 is None
    assert message.max_retries == 2
    assert message.retry_delay_expression == "1000 * (1 + retried)"
    assert message.headers["My-Header"] == ["my-value"]
    assert message.headers["Content-Type"] == ["application/json"]
    assert message.not_before > message.created_at


def test_get_message_with_a_binary_body_answers_body_base64(
    live: str, receiver: Destination
) -> None:
    body = b"\x00\xff\xfe binary"
    message_id = publish_raw(live, receiver.url("/bin"), body=body, headers={"Upstash-Delay": "1h"})

    wire = httpx.get(f"{live}/v2/messages/{message_id}", headers=AUTH).json()
    assert base64.b64decode(wire["bodyBase64"]) == body
    assert "body" not in wire


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_unknown_message_id_answers_404_json_error(live: str, method: str) -> None:
    res = httpx.request(method, f"{live}/v2/messages/msg_doesnotexist", headers=AUTH)

    assert res.status_code == 404
    assert "msg_doesnotexist" in res.json()["error"]


def test_a_delivered_message_can_no_longer_be_read_or_cancelled(
    live: str, client_sdk: Any, receiver: Destination
) -> None:
    res = client_sdk.message.publish(url=receiver.url("/done"), body="x")
    receiver.wait_for(1, "/done")
    wait_state(res.message_id, "DELIVERED")

    assert httpx.get(f"{live}/v2/messages/{res.message_id}", headers=AUTH).status_code == 404
    assert delete(live, f"/v2/messages/{res.message_id}").status_code == 404
    assert state(res.message_id) == "DELIVERED"


# --- cancel one -----------------------------------------------------------------------


def test_cancelled_message_is_logged_and_never_delivered_when_due(
    live: str, client_sdk: Any, receiver: Destination
) -> None:
    cancelled = delayed(client_sdk, receiver.url("/cancelled"))
    barrier = delayed(client_sdk, receiver.url("/barrier"))

    client_sdk.message.cancel(cancelled)

    assert state(cancelled) == "CANCELED"
    assert states_of(cancelled) == ["CREATED", "CANCEL_REQUESTED", "CANCELED"]
    assert httpx.get(f"{live}/v2/messages/{cancelled}", headers=AUTH).status_code == 404

    # Time passes for both; only the barrier is delivered.
    Message.objects.filter(message_id__in=[cancelled, barrier]).update(
        due_at=timezone.now() - timedelta(seconds=1)
    )
    receiver.wait_for(1, "/barrier")
    wait_state(barrier, "DELIVERED")
    assert receiver.received("/cancelled") == []
    assert state(cancelled) == "CANCELED"


def test_single_cancel_answers_json_cancelled_1(
    live: str, client_sdk: Any, receiver: Destination
) -> None:
    message_id = delayed(client_sdk, receiver.url("/one"))

    res = delete(live, f"/v2/messages/{message_id}")

    assert res.status_code == 200
    assert res.json() == {"cancelled": 1}
    assert state(message_id) == "CANCELED"
    again = delete(live, f"/v2/messages/{message_id}")
    assert again.status_code == 404
    assert "error" in again.json()


# --- cancel many ----------------------------------------------------------------------


def test_cancel_many_with_the_sdk_json_body_cancels_only_those_ids(
    client_sdk: Any, receiver: Destination
) -> None:
    a, b, keep = (delayed(client_sdk, receiver.url(f"/many/{i}")) for i in range(3))

    assert client_sdk.message.cancel_many([a, b]) == 2

    assert (state(a), state(b), state(keep)) == ("CANCELED", "CANCELED", "CREATED")


def test_cancel_all_cancels_every_pending_message_and_counts_only_those(
    client_sdk: Any, receiver: Destination
) -> None:
    done = client_sdk.message.publish(url=receiver.url("/delivered"), body="x").message_id
    receiver.wait_for(1, "/delivered")
    wait_state(done, "DELIVERED")
    pending = [delayed(client_sdk, receiver.url(f"/all/{i}")) for i in range(3)]

    assert client_sdk.message.cancel_all() == 3

    assert [state(m) for m in pending] == ["CANCELED"] * 3
    assert state(done) == "DELIVERED"
    assert client_sdk.message.cancel_all() == 0


@pytest.mark.parametrize("form", ["repeated", "comma"])
def test_bulk_cancel_by_message_ids_in_the_query(
    live: str, client_sdk: Any, receiver: Destination, form: str
) -> None:
    a, b, keep = (delayed(client_sdk, receiver.url(f"/ids/{i}")) for i in range(3))
    params: Any = (
        [("messageIds", a), ("messageIds", b)] if form == "repeated" else {"messageIds": f"{a},{b}"}
    )

    res = delete(live, "/v2/messages", params=params)

    assert res.status_code == 200, res.text
    assert res.json() == {"cancelled": 2}
    assert (state(a), state(b), state(keep)) == ("CANCELED", "CANCELED", "CREATED")


def test_bulk_cancel_by_label_filter_cancels_only_labelled_messages(
    live: str, client_sdk: Any, receiver: Destination
) -> None:
    x1 = delayed(client_sdk, receiver.url("/l/1"), label="x")
    x2 = delayed(client_sdk, receiver.url("/l/2"), label="x")
    y = delayed(client_sdk, receiver.url("/l/3"), label="y")

    res = delete(live, "/v2/messages", params={"label": "x"})

    assert res.json() == {"cancelled": 2}
    assert (state(x1), state(x2), state(y)) == ("CANCELED", "CANCELED", "CREATED")


def test_bulk_cancel_by_url_with_count_1_cancels_exactly_one(
    live: str, client_sdk: Any, receiver: Destination
) -> None:
    url = receiver.url("/same")
    other = delayed(client_sdk, receiver.url("/other"))
    ids = [delayed(client_sdk, url) for _ in range(3)]

    res = delete(live, "/v2/messages", params={"url": url, "count": "1"})

    assert res.status_code == 200, res.text
    assert res.json() == {"cancelled": 1}
    assert sorted(state(m) for m in ids) == ["CANCELED", "CREATED", "CREATED"]
    assert state(other) == "CREATED"


def test_bulk_cancel_with_a_json_body_of_ids_ignores_other_filters(
    live: str, client_sdk: Any, receiver: Destination
) -> None:
    a = delayed(client_sdk, receiver.url("/body/a"), label="other")
    keep = delayed(client_sdk, receiver.url("/body/b"), label="keep")

    res = delete(live, "/v2/messages", params={"label": "keep"}, json={"messageIds": [a]})

    assert res.json() == {"cancelled": 1}
    assert (state(a), state(keep)) == ("CANCELED", "CREATED")


def test_sdk_cancel_of_an_unknown_id_raises(client_sdk: Any) -> None:
    with pytest.raises(QStashError, match="404"):
        client_sdk.message.cancel("msg_unknown")
