"""``?qstash_token=`` is refused on cross-origin browser requests; the header never is."""

from __future__ import annotations

import httpx
import pytest

from broker.models import Message
from tests.conftest import TEST_CURRENT_KEY, TEST_NEXT_KEY, TEST_TOKEN
from tests.helpers import api

KEYS = {"current": TEST_CURRENT_KEY, "next": TEST_NEXT_KEY}


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Origin": "http://evil.example"}, id="foreign-origin"),
        pytest.param({"Origin": "null"}, id="opaque-origin"),
        pytest.param({"Sec-Fetch-Site": "cross-site"}, id="sec-fetch-cross-site"),
        pytest.param({"Sec-Fetch-Site": "same-site"}, id="sec-fetch-same-site"),
    ],
)
def test_query_token_on_a_cross_origin_request_is_refused_with_403_json(
    live: str, headers: dict[str, str]
) -> None:
    res = httpx.get(f"{live}/v2/keys", params={"qstash_token": TEST_TOKEN}, headers=headers)

    assert res.status_code == 403
    assert list(res.json()) == ["error"]
    assert "qstash_token" in res.json()["error"]


def test_query_token_on_a_foreign_page_s_form_post_publishes_nothing(live: str) -> None:
    res = httpx.post(
        f"{live}/v2/publish/http://127.0.0.1:9/x?qstash_token={TEST_TOKEN}",
        content=b"x",
        headers={"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"},
    )

    assert res.status_code == 403
    assert Message.objects.count() == 0


def test_same_origin_query_token_is_accepted(live: str) -> None:
    res = httpx.get(
        f"{live}/v2/keys",
        params={"qstash_token": TEST_TOKEN},
        headers={"Origin": live, "Sec-Fetch-Site": "same-origin"},
    )

    assert res.status_code == 200, res.text
    assert res.json() == KEYS


def test_query_token_without_browser_headers_is_accepted(live: str) -> None:
    res = httpx.get(f"{live}/v2/keys", params={"qstash_token": TEST_TOKEN})

    assert res.status_code == 200, res.text
    assert res.json() == KEYS


def test_bearer_header_is_accepted_whatever_the_origin(live: str) -> None:
    res = api(
        live,
        "GET",
        "/v2/keys",
        headers={"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"},
    )

    assert res.status_code == 200, res.text
    assert res.json() == KEYS
