"""A read that runs past QSTASH_API_STATEMENT_TIMEOUT_MS is stopped and answered 503,
naming its filters; never a 500, never minutes later (issue 12).

The slow statement is made deterministic, not by a big table: another session holds
an ACCESS EXCLUSIVE lock on the table the read needs, so the read waits until the
statement timeout cancels it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.db import connection
from django.test import Client

from broker.models import Message
from tests.conftest import TEST_TOKEN

pytestmark = pytest.mark.django_db


@pytest.fixture
def locker() -> Iterator[Any]:
    """A second session on the test database that can take table locks."""
    params = connection.settings_dict
    conn = psycopg.connect(
        dbname=params["NAME"],
        user=params["USER"],
        password=params["PASSWORD"] or None,
        host=params["HOST"] or None,
        port=params["PORT"] or None,
    )
    yield conn
    conn.rollback()
    conn.close()


@pytest.fixture
def api() -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {TEST_TOKEN}")


@pytest.mark.parametrize(
    ("method", "path", "table", "named"),
    [
        ("get", "/v2/logs?label=slow&state=FAILED", "broker_logentry", "label, state"),
        ("get", "/v2/events?url=http://127.0.0.1:1/x", "broker_logentry", "url"),
        ("get", "/v2/dlq?label=slow", "broker_dlqentry", "label"),
        ("delete", "/v2/dlq?topicName=slow", "broker_dlqentry", "topicName"),
        ("post", "/v2/dlq/retry?label=slow", "broker_dlqentry", "label"),
        ("delete", "/v2/messages?label=slow", "broker_message", "label"),
    ],
)
def test_a_read_past_the_statement_timeout_answers_503_naming_its_filters(
    api: Client, locker: Any, settings: Any, method: str, path: str, table: str, named: str
) -> None:
    settings.QSTASH_API_STATEMENT_TIMEOUT_MS = 200
    # Nothing in this test's transaction has touched the table, so the lock is free.
    locker.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")

    res = getattr(api, method)(path, content_type="application/json")

    assert res.status_code == 503, res.content
    error = res.json()["error"]
    assert "took longer than 200 ms" in error
    assert f"(filters: {named})" in error


def test_the_same_read_answers_once_the_table_is_free(api: Client, settings: Any) -> None:
    settings.QSTASH_API_STATEMENT_TIMEOUT_MS = 200

    res = api.get("/v2/logs?label=slow&state=FAILED")

    assert res.status_code == 200, res.content
    assert res.json()["events"] == []


def test_a_cancel_stopped_by_the_timeout_keeps_nothing_of_its_batch(
    api: Client, locker: Any, settings: Any
) -> None:
    from django.utils import timezone

    now = timezone.now()
    message = Message.objects.create(
        url="http://127.0.0.1:1/x",
        payload_id=_payload(),
        labels=",slow,",
        state=Message.State.CREATED,
        due_at=now,
        not_before=now,
        created_at=now,
    )
    settings.QSTASH_API_STATEMENT_TIMEOUT_MS = 200
    # The batch's log insert waits on this lock; the timeout rolls the batch back.
    locker.execute("LOCK TABLE broker_logentry IN ACCESS EXCLUSIVE MODE")

    res = api.delete("/v2/messages?label=slow")

    assert res.status_code == 503, res.content
    message.refresh_from_db()
    assert message.state == Message.State.CREATED


def _payload() -> int:
    from broker.models import Payload

    return int(Payload.objects.create(body=b"x").pk)
