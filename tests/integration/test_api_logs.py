"""GET /v2/events and /v2/logs: entries, filters, order and cursor pagination."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from qstash.log import LogState

from broker.models import Message
from tests.conftest import Receiver as Destination
from tests.conftest import Reply, wait_until
from tests.helpers import AUTH

WIRE_STATES = {
    "CREATED",
    "ACTIVE",
    "RETRY",
    "ERROR",
    "DELIVERED",
    "FAILED",
    "CANCEL_REQUESTED",
    "CANCELED",
}


def events(live: str, params: Any = None, path: str = "/v2/events") -> dict[str, Any]:
    res = httpx.get(f"{live}{path}", params=params, headers=AUTH, timeout=30)
    assert res.status_code == 200, res.text
    return dict(res.json())


def wait_state(message_id: str, *states: str) -> None:
    wait_until(
        lambda: Message.objects.filter(message_id=message_id, state__in=states).exists(),
        what=f"{message_id} in {states}",
    )


def delivered(client_sdk: Any, receiver: Destination, path: str, **kwargs: Any) -> str:
    message_id = str(
        client_sdk.message.publish(url=receiver.url(path), body="x", **kwargs).message_id
    )
    wait_state(message_id, "DELIVERED")
    return message_id


def delayed(client_sdk: Any, url: str, **kwargs: Any) -> str:
    return str(client_sdk.message.publish(url=url, body="x", delay="1h", **kwargs).message_id)


def test_sdk_lists_a_messages_states_latest_first(client_sdk: Any, receiver: Destination) -> None:
    message_id = delivered(client_sdk, receiver, "/states")

    page = client_sdk.log.list(filter={"message_id": message_id})

    assert [log.state for log in page.logs] == [
        LogState.DELIVERED,
        LogState.ACTIVE,
        LogState.CREATED,
    ]
    assert {log.message_id for log in page.logs} == {message_id}
    assert all(log.url == receiver.url("/states") for log in page.logs)
    times = [log.time for log in page.logs]
    assert times == sorted(times, reverse=True)
    assert page.cursor is None


def test_every_entry_has_time_message_id_state_and_url(
    live: str, client_sdk: Any, receiver: Destination
) -> None:
    before = int(time.time() * 1000) - 1000
    delivered(client_sdk, receiver, "/fields")
    delayed(client_sdk, receiver.url("/fields-later"))

    data = events(live)

    assert len(data["events"]) == 4
    for entry in data["events"]:
        assert isinstance(entry["time"], int)
        assert before <= entry["time"] <= int(time.time() * 1000) + 1000
        assert entry["messageId"].startswith("msg_")
        assert entry["state"] in WIRE_STATES
        assert entry["url"].startswith(receiver.url("/fields"))


def test_order_earliest_first_reverses_the_default(
    live: str, client_sdk: Any, receiver: Destination
) -> None:
    message_id = delivered(client_sdk, receiver, "/order")

    earliest = events(live, {"messageId": message_id, "order": "earliestFirst"})["events"]
    latest = events(live, {"messageId": message_id})["events"]

    assert [e["state"] for e in earliest] == ["CREATED", "ACTIVE", "DELIVERED"]
    assert latest == list(reversed(earliest))
    assert [e["time"] for e in earliest] == sorted(e["time"] for e in earliest)


def test_events_and_logs_paths_answer_the_same_entries_under_both_keys(
    live: str, client_sdk: Any, receiver: Destination
) -> None:
    message_id = delivered(client_sdk, receiver, "/both")

    from_events = events(live, {"messageId": message_id}, path="/v2/events")
    from_logs = events(live, {"messageId": message_id}, path="/v2/logs")

    assert len(from_events["events"]) == 3
    assert from_events["events"] == from_events["logs"]
    assert from_logs["logs"] == from_events["events"]
    assert from_logs["events"] == from_logs["logs"]


def test_url_filter_returns_only_that_destination(client_sdk: Any, receiver: Destination) -> None:
    wanted = delivered(client_sdk, receiver, "/wanted")
    delivered(client_sdk, receiver, "/unwanted")

    page = client_sdk.log.list(filter={"url": receiver.url("/wanted")})

    assert len(page.logs) == 3
    assert {log.message_id for log in page.logs} == {wanted}


def test_repeated_url_keys_are_ored(live: str, client_sdk: Any, receiver: Destination) -> None:
    a = delayed(client_sdk, receiver.url("/a"))
    b = delayed(client_sdk, receiver.url("/b"))
    delayed(client_sdk, receiver.url("/c"))

    data = events(live, [("url", receiver.url("/a")), ("url", receiver.url("/b"))])

    assert {e["messageId"] for e in data["events"]} == {a, b}
    assert {e["url"] for e in data["events"]} == {receiver.url("/a"), receiver.url("/b")}


def test_label_filter_returns_only_labelled_messages(
    client_sdk: Any, receiver: Destination
) -> None:
    labelled = delayed(client_sdk, receiver.url("/lab"), label="invoices")
    delayed(client_sdk, receiver.url("/lab"), label="other")
    delayed(client_sdk, receiver.url("/lab"))

    page = client_sdk.log.list(filter={"label": "invoices"})

    assert [log.message_id for log in page.logs] == [labelled]
    assert page.logs[0].label == "invoices"


def test_state_filter_returns_only_that_state(client_sdk: Any, receiver: Destination) -> None:
    ids = {delivered(client_sdk, receiver, f"/st/{i}") for i in range(2)}
    delayed(client_sdk, receiver.url("/st/later"))

    page = client_sdk.log.list(filter={"state": LogState.DELIVERED})

    assert {log.state for log in page.logs} == {LogState.DELIVERED}
    assert {log.message_id for log in page.logs} == ids


def test_in_progress_state_filter_matches_active_retry_and_error(
    live: str, client_sdk: Any, receiver: Destination
) -> None:
    receiver.script("/failing", Reply(status=500))
    failing = client_sdk.message.publish(
        url=receiver.url("/failing"), body="x", retries=3
    ).message_id
    wait_state(failing, "RETRY")
    ok = delivered(client_sdk, receiver, "/fine")

    data = events(live, {"state": "IN_PROGRESS"})

    states = {(e["messageId"], e["state"]) for e in data["events"]}
    assert states == {(failing, "ACTIVE"), (failing, "ERROR"), (failing, "RETRY"), (ok, "ACTIVE")}


def test_cancelled_message_logs_canceled_with_one_l_and_both_spellings_filter(
    live: str, client_sdk: Any, receiver: Destination
) -> None:
    message_id = delayed(client_sdk, receiver.url("/cancel"))
    client_sdk.message.cancel(message_id)

    page = client_sdk.log.list(filter={"message_id": message_id})
    assert [log.state for log in page.logs] == [
        LogState.CANCELED,
        LogState.CANCEL_REQUESTED,
        LogState.CREATED,
    ]
    raw = events(live, {"messageId": message_id})["events"]
    assert raw[0]["state"] == "CANCELED"
    for spelling in ("CANCELED", "CANCELLED"):
        filtered = events(live, {"state": spelling})["events"]
        assert [(e["messageId"], e["state"]) for e in filtered] == [(message_id, "CANCELED")]


def test_cursor_pagination_walks_every_entry_once_and_omits_the_cursor_on_the_last_page(
    live: str, client_sdk: Any, receiver: Destination
) -> None:
    ids = [delayed(client_sdk, receiver.url("/page"), label="walk") for _ in range(7)]

    seen: list[str] = []
    sizes: list[int] = []
    cursor = None
    for _ in range(10):
        page = client_sdk.log.list(filter={"label": "walk"}, count=3, cursor=cursor)
        seen += [log.message_id for log in page.logs]
        sizes.append(len(page.logs))
        cursor = page.cursor
        if cursor is None:
            break
    assert sizes == [3, 3, 1]
    assert sorted(seen) == sorted(ids)
    assert len(seen) == len(set(seen))

    raw_seen: list[str] = []
    params: dict[str, str] = {"label": "walk", "count": "3", "order": "earliestFirst"}
    for _ in range(10):
        data = events(live, params)
        raw_seen += [e["messageId"] for e in data["events"]]
        if "cursor" not in data:
            break
        assert isinstance(data["cursor"], str) and data["cursor"] != ""
        params["cursor"] = data["cursor"]
    assert raw_seen == ids


@pytest.mark.parametrize("count", [1, 2])
def test_count_limits_the_page_size(
    live: str, client_sdk: Any, receiver: Destination, count: int
) -> None:
    for _ in range(3):
        delayed(client_sdk, receiver.url("/count"))

    data = events(live, {"count": str(count)})

    assert len(data["events"]) == count
    assert "cursor" in data
