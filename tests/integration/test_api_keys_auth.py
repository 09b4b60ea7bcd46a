"""GET /v2/keys, POST /v2/keys/rotate, and the API token check."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from broker.models import Message
from broker.services.credentials import credentials_forget
from tests.conftest import TEST_CURRENT_KEY, TEST_NEXT_KEY, TEST_TOKEN

SIGNING_KEY = re.compile(r"^sig_[1-9A-HJ-NP-Za-km-z]{28}$")


def test_sdk_reads_the_signing_keys(client_sdk: Any) -> None:
    keys = client_sdk.signing_key.get()

    assert (keys.current, keys.next) == (TEST_CURRENT_KEY, TEST_NEXT_KEY)


def test_rotate_promotes_next_and_generates_a_fresh_next(client_sdk: Any, settings: Any) -> None:
    settings.QSTASH_CURRENT_SIGNING_KEY = ""
    settings.QSTASH_NEXT_SIGNING_KEY = ""
    credentials_forget()
    before = client_sdk.signing_key.get()
    assert SIGNING_KEY.match(before.current) and SIGNING_KEY.match(before.next)
    assert before.current != before.next

    rotated = client_sdk.signing_key.rotate()

    assert rotated.current == before.next
    assert SIGNING_KEY.match(rotated.next)
    assert rotated.next not in (before.current, before.next)
    after = client_sdk.signing_key.get()
    assert (after.current, after.next) == (rotated.current, rotated.next)


def test_rotate_is_refused_while_keys_come_from_the_environment(live: str) -> None:
    res = httpx.post(f"{live}/v2/keys/rotate", headers={"Authorization": f"Bearer {TEST_TOKEN}"})

    assert res.status_code == 400
    assert "QSTASH_CURRENT_SIGNING_KEY" in res.json()["error"]
    keys = httpx.get(f"{live}/v2/keys", headers={"Authorization": f"Bearer {TEST_TOKEN}"}).json()
    assert keys == {"current": TEST_CURRENT_KEY, "next": TEST_NEXT_KEY}


@pytest.mark.parametrize(
    ("headers", "params"),
    [
        pytest.param({}, {}, id="no-token"),
        pytest.param({"Authorization": "Bearer wrong-token"}, {}, id="wrong-bearer"),
        pytest.param({"Authorization": "Bearer"}, {}, id="bearer-without-token"),
        pytest.param({"Authorization": "Basic x"}, {}, id="basic-scheme"),
        pytest.param({}, {"qstash_token": "wrong-token"}, id="wrong-query-token"),
    ],
)
def test_requests_without_a_valid_token_are_refused_with_401_json(
    live: str, headers: dict[str, str], params: dict[str, str]
) -> None:
    res = httpx.get(f"{live}/v2/keys", headers=headers, params=params)

    assert res.status_code == 401
    assert isinstance(res.json()["error"], str) and res.json()["error"]
    assert "current" not in res.json()


def test_token_in_the_query_string_is_accepted(live: str) -> None:
    res = httpx.get(f"{live}/v2/keys", params={"qstash_token": TEST_TOKEN})

    assert res.status_code == 200
    assert res.json() == {"current": TEST_CURRENT_KEY, "next": TEST_NEXT_KEY}


def test_unauthenticated_publish_stores_nothing(live: str) -> None:
    res = httpx.post(f"{live}/v2/publish/http://127.0.0.1:9/x", content=b"x")

    assert res.status_code == 401
    assert "error" in res.json()
    assert Message.objects.count() == 0


def test_publish_with_the_token_in_the_query_is_accepted_and_the_token_is_not_forwarded(
    live: str,
) -> None:
    # httpx drops a query written in the URL when params= is given: write the token inline.
    url = f"{live}/v2/publish/http://127.0.0.1:9/x?a=1&qstash_token={TEST_TOKEN}"
    res = httpx.post(url, content=b"x")

    assert res.status_code == 200, res.text
    stored = Message.objects.get(message_id=res.json()["messageId"])
    assert stored.url == "http://127.0.0.1:9/x?a=1"
