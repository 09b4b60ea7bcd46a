"""Group commit (QSTASH_PUBLISH_GROUP_COMMIT): publishes of one process's threads committed
together by one writer, each answered after its rows committed; a failed group answers
every one of its requests 503 and wrote nothing (issue 10)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from broker.models import LogEntry, Message, Payload
from broker.services import group_commit, message_insert
from tests.conftest import Receiver
from tests.helpers import AUTH, states_of

THREADS = 8


@pytest.fixture
def grouped(settings: Any, monkeypatch: pytest.MonkeyPatch) -> group_commit.GroupCommitter:
    """Group commit on, with the writer's first statement held 0.5 s, so the requests
    that come meanwhile wait together for the next one."""
    settings.QSTASH_PUBLISH_GROUP_COMMIT = True
    committer = group_commit.committer
    real = committer._commit
    first = threading.Event()

    def held(conn: Any, jobs: Any) -> None:
        if not first.is_set():
            first.set()
            time.sleep(0.5)
        real(conn, jobs)

    monkeypatch.setattr(committer, "_commit", held)
    monkeypatch.setattr(committer, "largest", 0)
    return committer


def _publish_all(live: str, urls: list[str]) -> list[httpx.Response]:
    def one(url: str) -> httpx.Response:
        return httpx.post(
            f"{live}/v2/publish/{url}", content=url.encode(), headers=AUTH, timeout=60
        )

    with ThreadPoolExecutor(len(urls)) as pool:
        return list(pool.map(one, urls))


def test_concurrent_publishes_share_statements_and_each_is_answered_after_its_commit(
    live: str, receiver: Receiver, grouped: group_commit.GroupCommitter
) -> None:
    urls = [receiver.url(f"/g{n}") for n in range(THREADS)]
    answers = _publish_all(live, urls)
    assert [a.status_code for a in answers] == [200] * THREADS, [a.text for a in answers]
    ids = [a.json()["messageId"] for a in answers]
    assert len(set(ids)) == THREADS
    # Several requests went in one statement.
    assert grouped.largest >= 2
    for message_id, url in zip(ids, urls, strict=True):
        message = Message.objects.select_related("payload").get(message_id=message_id)
        assert message.url == url
        assert bytes(message.payload.body) == url.encode()  # each its own body
        assert states_of(message_id)[0] == "CREATED"
    # And they are delivered (announced after the commit, like a single publish).
    for n in range(THREADS):
        receiver.wait_for(1, f"/g{n}", timeout=30)


def test_a_failed_group_answers_each_of_its_requests_503_and_writes_nothing(
    live: str, receiver: Receiver, grouped: group_commit.GroupCommitter, monkeypatch: Any
) -> None:
    real = message_insert.insert_params

    def last_row_too_long(messages: Any, payloads: Any, *, now: Any) -> Any:
        # The statement inserts the payloads, then fails on the last message's row:
        # one statement, so what it wrote before the failure is rolled back too.
        messages[-1].message_id = "msg_" + "x" * 60
        return real(messages, payloads, now=now)

    monkeypatch.setattr(message_insert, "insert_params", last_row_too_long)
    before = (Message.objects.count(), Payload.objects.count(), LogEntry.objects.count())
    answers = _publish_all(live, [receiver.url(f"/f{n}") for n in range(THREADS)])
    assert [a.status_code for a in answers] == [503] * THREADS, [a.text for a in answers]
    assert all("error" in a.json() and a.headers["Retry-After"] for a in answers)
    assert grouped.largest >= 2
    after = (Message.objects.count(), Payload.objects.count(), LogEntry.objects.count())
    assert after == before
    # The writer lives on: the next publish is stored.
    monkeypatch.setattr(message_insert, "insert_params", real)
    (ok,) = _publish_all(live, [receiver.url("/after")])
    assert ok.status_code == 200, ok.text
    assert Message.objects.filter(message_id=ok.json()["messageId"]).exists()
