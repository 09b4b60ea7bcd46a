"""Flow control: limits per ``Upstash-Flow-Control-Key`` enforced when claiming, measured at a
loopback destination, and managed with the official SDK (``client.flow_control``).
"""

from __future__ import annotations

import time
from typing import Any

from broker.models import FlowControlKey, Message
from tests.conftest import Receiver as Destination
from tests.conftest import Reply, wait_until
from tests.helpers import api, states_of
from tests.integration.test_queues import max_overlap


def publish(client_sdk: Any, url: str, key: str, **limits: Any) -> str:
    res = client_sdk.message.publish(
        url=url, body="x", flow_control={"key": key, **limits}, retries=0
    )
    return str(res.message_id)


def test_parallelism_caps_the_attempts_in_flight(client_sdk: Any, receiver: Destination) -> None:
    receiver.script("/p", Reply(delay=0.6))
    for _ in range(8):
        publish(client_sdk, receiver.url("/p"), "par", parallelism=2)
    got = receiver.wait_for(8, "/p", timeout=30)
    assert max_overlap([(r.time, r.time + 0.55) for r in got]) == 2
    info = client_sdk.flow_control.get("par")
    assert (info.key, info.parallelism_max) == ("par", 2)
    wait_until(lambda: client_sdk.flow_control.get("par").parallelism_count == 0, what="count 0")


def test_rate_spreads_the_starts_over_periods(client_sdk: Any, receiver: Destination) -> None:
    for _ in range(15):
        publish(client_sdk, receiver.url("/r"), "rated", rate=5, period=1)
    got = sorted(r.time for r in receiver.wait_for(15, "/r", timeout=30))
    # Five starts per one-second period, each in its own slot 0.2 s apart: any six
    # consecutive starts span a second, and they do not come in bursts (a send that
    # leaves late on a busy machine may meet the next slot's: at most a pair or two).
    for first, sixth in zip(got, got[5:], strict=False):
        assert sixth - first >= 0.8, got
    together = sum(b - a < 0.05 for a, b in zip(got, got[1:], strict=False))
    assert together <= 2, got
    info = client_sdk.flow_control.get("rated")
    assert (info.rate_max, info.rate_period) == (5, 1)
    assert info.rate_period_start >= int(got[0]) - 1


def test_a_retry_waits_for_its_turn_at_the_key(client_sdk: Any, receiver: Destination) -> None:
    # A fails once and is retried after 0.5 s; meanwhile B takes the key's only slot for
    # 2 s. A's retry is an attempt like any other: it waits for B to finish.
    receiver.script("/fa", Reply(status=500), Reply(status=200))
    receiver.script("/fb", Reply(delay=2.0))
    first = client_sdk.message.publish(
        url=receiver.url("/fa"),
        body="a",
        retries=2,
        retry_delay="500",
        flow_control={"key": "retrying", "parallelism": 1},
    )
    receiver.wait_for(1, "/fa")
    publish(client_sdk, receiver.url("/fb"), "retrying")
    b = receiver.wait_for(1, "/fb")[0]
    retry = receiver.wait_for(2, "/fa", timeout=20)[1]
    assert retry.time >= b.time + 1.9, retry.time - b.time
    wait_until(lambda: states_of(first.message_id)[-1] == "DELIVERED", what="delivered")
    assert not Message.objects.filter(flow_slot=True).exists()


def test_pause_keeps_messages_in_the_waitlist_until_resume(
    client_sdk: Any, receiver: Destination
) -> None:
    publish(client_sdk, receiver.url("/w/0"), "holdme", parallelism=5)
    receiver.wait_for(1, "/w/0")
    client_sdk.flow_control.pause("holdme")
    for n in range(1, 4):
        publish(client_sdk, receiver.url(f"/w/{n}"), "holdme")
    time.sleep(1.5)
    assert len([r for r in receiver.received() if r.path.startswith("/w/")]) == 1
    info = client_sdk.flow_control.get("holdme")
    assert (info.is_paused, info.wait_list_size, info.parallelism_max) == (True, 3, 5)
    client_sdk.flow_control.resume("holdme")
    wait_until(
        lambda: len([r for r in receiver.received() if r.path.startswith("/w/")]) == 4,
        what="all four delivered",
    )
    assert client_sdk.flow_control.get("holdme").wait_list_size == 0


def test_pin_fixes_limits_and_unpin_lets_messages_change_them(
    client_sdk: Any, receiver: Destination
) -> None:
    publish(client_sdk, receiver.url("/pin"), "pinned", parallelism=4, rate=100)
    receiver.wait_for(1, "/pin")  # its start counted in the period the pin resets
    client_sdk.flow_control.pin("pinned", {"parallelism": 1, "rate": 3, "period": 2})
    info = client_sdk.flow_control.get("pinned")
    assert (info.parallelism_max, info.rate_max, info.rate_period) == (1, 3, 2)
    assert info.is_pinned_parallelism and info.is_pinned_rate and info.rate_count == 0
    publish(client_sdk, receiver.url("/pin"), "pinned", parallelism=9, rate=50)
    info = client_sdk.flow_control.get("pinned")
    assert (info.parallelism_max, info.rate_max) == (1, 3)
    client_sdk.flow_control.unpin("pinned", {"parallelism": True})
    publish(client_sdk, receiver.url("/pin"), "pinned", parallelism=7, rate=50)
    info = client_sdk.flow_control.get("pinned")
    assert (info.parallelism_max, info.rate_max) == (7, 3)
    assert not info.is_pinned_parallelism and info.is_pinned_rate
    client_sdk.flow_control.reset_rate("pinned")
    assert client_sdk.flow_control.get("pinned").rate_count == 0
    receiver.wait_for(3, "/pin", timeout=20)


def test_cancel_by_key_empties_the_waitlist(
    client_sdk: Any, live: str, receiver: Destination
) -> None:
    publish(client_sdk, receiver.url("/c"), "stopped", parallelism=1)
    receiver.wait_for(1, "/c")
    client_sdk.flow_control.pause("stopped")
    ids = [publish(client_sdk, receiver.url("/c"), "stopped") for _ in range(3)]
    res = api(live, "DELETE", "/v2/messages?flowControlKey=stopped")
    assert res.status_code == 200 and res.json()["cancelled"] == 3
    for message_id in ids:
        assert states_of(message_id)[-1] == "CANCELED"
    assert client_sdk.flow_control.get("stopped").wait_list_size == 0
    client_sdk.flow_control.resume("stopped")
    time.sleep(1.0)
    assert len(receiver.received("/c")) == 1


def test_delayed_messages_join_the_waitlist_when_due(
    client_sdk: Any, receiver: Destination
) -> None:
    client_sdk.message.publish(
        url=receiver.url("/late"), body="x", delay="2s", flow_control={"key": "later", "rate": 1}
    )
    sent = time.time()
    got = receiver.wait_for(1, "/late", timeout=20)
    assert got[0].time - sent >= 1.9


def test_list_search_and_global_parallelism(
    client_sdk: Any, live: str, receiver: Destination
) -> None:
    publish(client_sdk, receiver.url("/l"), "alpha-1", parallelism=1)
    publish(client_sdk, receiver.url("/l"), "beta-1", rate=2)
    listed = api(live, "GET", "/v2/flowControl").json()
    assert [k["flowControlKey"] for k in listed] == ["alpha-1", "beta-1"]
    assert set(listed[0]) >= {
        "waitListSize",
        "parallelismMax",
        "parallelismCount",
        "rateMax",
        "rateCount",
        "ratePeriod",
        "ratePeriodStart",
        "isPaused",
        "isPinnedParallelism",
        "isPinnedRate",
    }
    searched = api(live, "GET", "/v2/flowControl?search=BETA").json()
    assert [k["flowControlKey"] for k in searched] == ["beta-1"]
    info = client_sdk.flow_control.get_global_parallelism()
    assert info.parallelism_count >= 0 and info.parallelism_max == 0


def test_bad_flow_control_input_is_refused(live: str, receiver: Destination) -> None:
    url = receiver.url("/bad")
    for value in ["parallelism=0", "rate=-1", "parallelism=x", "speed=3", "period=9w"]:
        res = api(
            live,
            "POST",
            f"/v2/publish/{url}",
            headers={"Upstash-Flow-Control-Key": "k", "Upstash-Flow-Control-Value": value},
        )
        assert res.status_code == 400 and "Flow-Control-Value" in res.json()["error"], value
    assert Message.objects.count() == 0 and FlowControlKey.objects.count() == 0
    assert api(live, "GET", "/v2/flowControl/nope").status_code == 404
    assert api(live, "POST", "/v2/flowControl/nope/pause").status_code == 400
    api(live, "POST", f"/v2/publish/{url}", headers={"Upstash-Flow-Control-Key": "k"})
    for query in ["", "?parallelism=0", "?rate=abc", "?period=0"]:
        res = api(live, "POST", f"/v2/flowControl/k/pin{query}")
        assert res.status_code == 400 and res.json()["error"], query
    assert api(live, "POST", "/v2/flowControl/k/unpin?rate=maybe").status_code == 400
    assert api(live, "POST", "/v2/flowControl/k/explode").status_code == 404
    assert FlowControlKey.objects.get(key="k").pinned_parallelism is False
