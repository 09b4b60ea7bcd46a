"""Publish with the official SDK, deliver with a real worker, verify with the SDK's Receiver."""

from __future__ import annotations

from typing import Any

from qstash import Receiver

from tests.conftest import (
    TEST_CURRENT_KEY,
    TEST_NEXT_KEY,
    wait_until,
)
from tests.conftest import (
    Receiver as Destination,
)
from tests.helpers import states_of


def test_published_message_arrives_signed_with_body_and_headers(
    client_sdk: Any, receiver: Destination
) -> None:
    url = receiver.url("/hook?x=1")
    res = client_sdk.message.publish(
        url=url,
        body='{"hello": "world"}',
        content_type="application/json",
        headers={"My-Header": "my-value"},
    )
    assert res.message_id.startswith("msg_")

    (got,) = receiver.wait_for(1, "/hook")
    assert got.method == "POST"
    assert got.path == "/hook?x=1"
    assert got.body == b'{"hello": "world"}'
    assert got.headers["My-Header"] == "my-value"
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["User-Agent"] == "Upstash-QStash"
    assert got.headers["Upstash-Message-Id"] == res.message_id
    assert got.headers["Upstash-Retried"] == "0"
    assert not any(h.lower().startswith("upstash-forward") for h in got.headers)
    Receiver(current_signing_key=TEST_CURRENT_KEY, next_signing_key=TEST_NEXT_KEY).verify(
        signature=got.headers["Upstash-Signature"], body=got.body.decode(), url=url
    )
    wait_until(lambda: states_of(res.message_id)[-1:] == ["DELIVERED"], what="DELIVERED")
    assert states_of(res.message_id) == ["CREATED", "ACTIVE", "DELIVERED"]
