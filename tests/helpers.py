"""Small helpers the integration tests share."""

from __future__ import annotations

from typing import Any

import httpx
from qstash import Receiver

from broker.models import LogEntry, Message
from tests.conftest import TEST_CURRENT_KEY, TEST_NEXT_KEY, TEST_TOKEN

AUTH = {"Authorization": f"Bearer {TEST_TOKEN}"}
# The official SDK's verifier, with the keys the test worker signs with.
VERIFIER = Receiver(current_signing_key=TEST_CURRENT_KEY, next_signing_key=TEST_NEXT_KEY)


def api(live: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """A raw, authenticated call to the API."""
    headers = {**AUTH, **kwargs.pop("headers", {})}
    return httpx.request(method, f"{live}{path}", headers=headers, timeout=30, **kwargs)


def states_of(message_id: str) -> list[str]:
    """The message's log, oldest first."""
    return list(
        LogEntry.objects.filter(message__message_id=message_id)
        .order_by("pk")
        .values_list("state", flat=True)
    )


def state(message_id: str) -> str:
    return str(Message.objects.get(message_id=message_id).state)
