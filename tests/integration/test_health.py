"""The health check answers without a token while the database does."""

from __future__ import annotations

import httpx


def test_healthz_answers_ok_without_a_token(live: str) -> None:
    answer = httpx.get(f"{live}/healthz")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok"}


def test_api_still_needs_a_token_next_to_the_health_check(live: str) -> None:
    answer = httpx.get(f"{live}/v2/keys")
    assert answer.status_code == 401
    assert "error" in answer.json()
