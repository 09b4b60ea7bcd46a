"""Queues (``/v2/queues``, ``/v2/enqueue``): managed and fed with the official SDK, delivered
by the real worker and clock to loopback destinations, in order and within their parallelism.
"""

from __future__ import annotations

import time
from typing import Any

from qstash.errors import QStashError

from broker.models import LogEntry, Message, Queue
from tests.conftest import Receiver as Destination
from tests.conftest import Reply, wait_until
from tests.helpers import api, states_of


def max_overlap(spans: list[tuple[float, float]]) -> int:
    """The most spans open at one instant (a span ends before one starting at its end)."""
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    open_now = peak = 0
    for _, step in events:
        open_now += step
        peak = max(peak, open_now)
    return peak


def arrivals(destination: Destination, prefix: str) -> list[str]:
    return [r.path for r in destination.received() if r.path.startswith(prefix)]


# --- management ------------------------------------------------------------------------


def test_queue_upsert_get_list_pause_resume_delete_with_the_sdk(client_sdk: Any, live: str) -> None:
    client_sdk.queue.upsert("orders", parallelism=2)
    queue = client_sdk.queue.get("orders")
    assert (queue.name, queue.parallelism, queue.lag, queue.paused) == ("orders", 2, 0, False)
    assert queue.created_at > 1_600_000_000_000 and queue.updated_at >= queue.created_at

    client_sdk.queue.upsert("orders", parallelism=5, paused=True)
    client_sdk.queue.upsert("billing")
    listed = {q.name: q for q in client_sdk.queue.list()}
    assert set(listed) == {"orders", "billing"}
    assert (listed["orders"].parallelism, listed["orders"].paused) == (5, True)
    assert listed["billing"].parallelism == 1

    client_sdk.queue.resume("orders")
    client_sdk.queue.resume("orders")  # idempotent
    assert client_sdk.queue.get("orders").paused is False
    client_sdk.queue.pause("orders")
    client_sdk.queue.pause("orders")
    assert Queue.objects.get(name="orders").paused is True

    client_sdk.queue.delete("billing")
    assert [q.name for q in client_sdk.queue.list()] == ["orders"]
    raw = api(live, "GET", "/v2/queues/billing")
    assert raw.status_code == 404 and "billing" in raw.json()["error"]


def test_bad_queue_input_is_refused_and_stores_nothing(live: str, receiver: Destination) -> None:
    for body, needle in [
        ({"queueName": "has space", "parallelism": 1}, "queueName"),
        ({"queueName": "a/b"}, "queueName"),
        ({"queueName": "q", "parallelism": 0}, "parallelism"),
        ({"queueName": "q", "parallelism": -3}, "parallelism"),
        ({"queueName": "q", "parallelism": "2"}, "parallelism"),
        ({"queueName": "q", "paused": "yes"}, "paused"),
        ({"queueName": "q", "parallelism": 10**6}, "QSTASH_MAX_QUEUE_PARALLELISM"),
        (["q"], "body"),
    ]:
        res = api(live, "POST", "/v2/queues", json=body)
        assert 400 <= res.status_code < 500, (body, res.text)
        assert needle in res.json()["error"], (body, res.json())
    url = receiver.url("/never")
    for path, headers in [
        (f"/v2/enqueue/bad%20name/{url}", {}),
        (f"/v2/enqueue/q/{url}", {"Upstash-Delay": "10s"}),
        (f"/v2/enqueue/q/{url}", {"Upstash-Not-Before": str(int(time.time()) + 60)}),
        ("/v2/enqueue/q/no-such-group", {}),
    ]:
        res = api(live, "POST", path, headers=headers, content=b"x")
        assert res.status_code == 400, (path, res.text)
        assert res.json()["error"]
    assert Queue.objects.count() == 0
    assert Message.objects.count() == 0
    assert api(live, "GET", "/v2/queues/q").status_code == 404


# --- order and parallelism ----------------------------------------------------------------


def test_parallelism_one_is_fifo_through_retries_and_callbacks(
    client_sdk: Any, receiver: Destination
) -> None:
    # The first message fails once (retried after 1 s), and its callback is slow: the
    # second must wait for both, the rest for the one before.
    receiver.script("/q/0", Reply(status=500), Reply(status=200))
    receiver.script("/cb", Reply(delay=0.5))
    ids = []
    for n in range(5):
        res = client_sdk.message.enqueue(
            queue="fifo",
            url=receiver.url(f"/q/{n}"),
            body=f"m{n}",
            retries=2,
            retry_delay="1000",
            callback=receiver.url("/cb") if n == 0 else None,
        )
        ids.append(res.message_id)
    wait_until(lambda: len(arrivals(receiver, "/q/")) == 6, timeout=30, what="6 sends")
    assert arrivals(receiver, "/q/") == ["/q/0", "/q/0", "/q/1", "/q/2", "/q/3", "/q/4"]
    sends = [r for r in receiver.received() if r.path.startswith("/q/")]
    callbacks = receiver.received("/cb")
    # m0's callbacks (one per attempt) were answered before m1 was sent.
    assert len(callbacks) == 2
    assert sends[2].time >= callbacks[-1].time + 0.5
    wait_until(lambda: all(states_of(m)[-1] == "DELIVERED" for m in ids), what="all delivered")
    assert states_of(ids[0]) == ["CREATED", "ACTIVE", "ERROR", "RETRY", "ACTIVE", "DELIVERED"]
    wait_until(lambda: not Message.objects.filter(queue_slot=True).exists(), what="slots freed")


def test_parallelism_n_bounds_the_requests_in_flight(
    client_sdk: Any, receiver: Destination
) -> None:
    client_sdk.queue.upsert("wide", parallelism=3)
    receiver.script("/w", Reply(delay=0.6))
    for n in range(9):
        client_sdk.message.enqueue(queue="wide", url=receiver.url("/w"), body=f"{n}")
    got = receiver.wait_for(9, "/w", timeout=30)
    spans = [(r.time, r.time + 0.6) for r in got]
    # The receiver answers 0.6 s after each arrival; the next may only start after that.
    assert max_overlap([(s, e - 0.05) for s, e in spans]) == 3
    # Admitted in order; the three in flight at once may arrive in any order.
    bodies = [int(r.body) for r in got]
    assert sorted(bodies[:3]) == [0, 1, 2] and sorted(bodies) == list(range(9))


def test_a_paused_queue_accepts_and_delivers_nothing_until_resumed(
    client_sdk: Any, live: str, receiver: Destination
) -> None:
    client_sdk.queue.upsert("held", parallelism=2, paused=True)
    for n in range(3):
        client_sdk.message.enqueue(queue="held", url=receiver.url(f"/h/{n}"), body="x")
    assert client_sdk.queue.get("held").lag == 3
    time.sleep(2.0)  # a worker and clock run meanwhile; nothing may be sent
    assert arrivals(receiver, "/h/") == []
    client_sdk.queue.resume("held")
    receiver.wait_for(3, timeout=20)
    assert sorted(arrivals(receiver, "/h/")) == ["/h/0", "/h/1", "/h/2"]
    wait_until(lambda: client_sdk.queue.get("held").lag == 0, what="lag 0")


def test_pause_takes_effect_for_messages_already_admitted(
    client_sdk: Any, receiver: Destination
) -> None:
    receiver.script("/p/0", Reply(status=500), Reply(status=200))
    first = client_sdk.message.enqueue(
        queue="stop", url=receiver.url("/p/0"), body="x", retries=3, retry_delay="1500"
    )
    client_sdk.message.enqueue(queue="stop", url=receiver.url("/p/1"), body="y")
    receiver.wait_for(1, "/p/0")
    client_sdk.queue.pause("stop")  # m0 is waiting for its retry, holding the slot
    time.sleep(2.5)
    assert len(receiver.received("/p/0")) == 1 and receiver.received("/p/1") == []
    client_sdk.queue.resume("stop")
    receiver.wait_for(1, "/p/1", timeout=20)
    assert arrivals(receiver, "/p/") == ["/p/0", "/p/0", "/p/1"]
    assert states_of(first.message_id)[-1] == "DELIVERED"


def test_enqueue_to_a_url_group_and_batch_with_queue(
    client_sdk: Any, live: str, receiver: Destination
) -> None:
    client_sdk.url_group.upsert_endpoints(
        url_group="team", endpoints=[{"url": receiver.url("/g/a")}, {"url": receiver.url("/g/b")}]
    )
    res = client_sdk.message.enqueue(queue="grp", url_group="team", body="fan")
    assert isinstance(res, list) and len(res) == 2
    batch = client_sdk.message.batch(
        [
            {"queue": "grp", "url": receiver.url("/b/1"), "body": "1"},
            {"queue": "other", "url": receiver.url("/b/2"), "body": "2"},
        ]
    )
    assert len(batch) == 2
    as_json = client_sdk.message.enqueue_json(queue="grp", url=receiver.url("/j"), body={"a": 1})
    batch_json = client_sdk.message.batch_json(
        [{"queue": "other", "url": receiver.url("/j"), "body": {"b": 2}}]
    )
    assert as_json.message_id and batch_json[0].message_id
    receiver.wait_for(6, timeout=20)
    assert sorted(r.body for r in receiver.received("/j")) == [b'{"a": 1}', b'{"b": 2}']
    assert set(Message.objects.values_list("queue_name", flat=True)) == {"grp", "other"}
    assert {q.name: q.parallelism for q in client_sdk.queue.list()} == {"grp": 1, "other": 1}
    raw = api(live, "POST", "/v2/batch", json=[{"destination": receiver.url("/x"), "queue": "b d"}])
    assert raw.status_code == 200 and "queue" in raw.json()[0]["error"]


def test_lag_counts_undelivered_and_delete_cancels_them(
    client_sdk: Any, live: str, receiver: Destination
) -> None:
    client_sdk.queue.upsert("gone", parallelism=1, paused=True)
    ids = [
        client_sdk.message.enqueue(queue="gone", url=receiver.url("/d"), body="x").message_id
        for _ in range(4)
    ]
    assert client_sdk.queue.get("gone").lag == 4
    res = api(live, "DELETE", "/v2/queues/gone")
    assert res.status_code == 200 and res.json()["cancelled"] == 4
    for message_id in ids:
        assert states_of(message_id)[-2:] == ["CANCEL_REQUESTED", "CANCELED"]
    assert not Queue.objects.filter(name="gone").exists()
    assert Message.objects.filter(waiting_for__gt="").count() == 0
    time.sleep(1.0)
    assert receiver.received("/d") == []


def test_cancel_a_waiting_queue_message_lets_the_next_go(
    client_sdk: Any, receiver: Destination
) -> None:
    receiver.script("/c/0", Reply(delay=1.0))
    client_sdk.message.enqueue(queue="cq", url=receiver.url("/c/0"), body="0")
    second = client_sdk.message.enqueue(queue="cq", url=receiver.url("/c/1"), body="1")
    client_sdk.message.enqueue(queue="cq", url=receiver.url("/c/2"), body="2")
    client_sdk.message.cancel(second.message_id)
    receiver.wait_for(1, "/c/2", timeout=20)
    assert arrivals(receiver, "/c/") == ["/c/0", "/c/2"]
    assert LogEntry.objects.filter(message__message_id=second.message_id, state="CANCELED")


def test_a_missing_queue_is_an_sdk_error(client_sdk: Any) -> None:
    try:
        client_sdk.queue.get("nothing")
    except QStashError as exc:
        assert "nothing" in str(exc)
    else:
        raise AssertionError("a missing queue must be an error")


def test_cancelling_the_message_holding_the_slot_lets_the_next_go(
    client_sdk: Any, receiver: Destination
) -> None:
    receiver.script("/h/0", Reply(status=500))
    holder = client_sdk.message.enqueue(
        queue="held-slot", url=receiver.url("/h/0"), body="0", retries=3, retry_delay="60000"
    )
    client_sdk.message.enqueue(queue="held-slot", url=receiver.url("/h/1"), body="1")
    receiver.wait_for(1, "/h/0")  # now waiting a minute for its retry, holding the slot
    wait_until(lambda: states_of(holder.message_id)[-1] == "RETRY", what="m0 retrying")
    client_sdk.message.cancel(holder.message_id)
    receiver.wait_for(1, "/h/1", timeout=20)
    assert len(receiver.received("/h/0")) == 1
