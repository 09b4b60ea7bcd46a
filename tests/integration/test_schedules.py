"""Schedules (``/v2/schedules``): managed with the official SDK, fired by the real clock into
ordinary messages that the real worker delivers, signed, to loopback destinations.
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from qstash.errors import QStashError

from broker.cron import parse_cron
from broker.models import Message, Payload, Schedule
from tests.conftest import Receiver as Destination
from tests.conftest import Services, _subprocess_env, wait_until
from tests.helpers import VERIFIER, api, states_of

ROOT = Path(__file__).resolve().parents[2]


def materialized(schedule_id: str) -> list[Message]:
    return list(Message.objects.filter(schedule_id=schedule_id).order_by("pk"))


def away_from_a_minute_boundary() -> None:
    """Start a minute-sensitive test well inside a minute, so its next trigger is the one
    it expects, still ahead of it."""
    second = datetime.now(UTC).second
    if second > 45:
        time.sleep(62 - second)


@pytest.fixture
def second_clock(services: Services, live: str) -> Any:
    """Another clock on the same database: two clocks must still make one message a trigger."""
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "qstash_clock", "--interval", "0.5"],
        cwd=ROOT,
        env=_subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    yield proc
    proc.terminate()
    proc.wait(20)


def test_every_minute_fires_once_at_the_minute_signed_into_a_queue_and_not_when_paused(
    client_sdk: Any, live: str, receiver: Destination, second_clock: Any
) -> None:
    away_from_a_minute_boundary()
    plain = client_sdk.schedule.create(
        destination=receiver.url("/tick"),
        cron="* * * * *",
        body="tick",
        headers={"X-Tick": "yes"},
        retries=1,
    )
    queued = client_sdk.schedule.create(
        destination=receiver.url("/queued"), cron="* * * * *", body="q", queue="sched-q"
    )
    paused = client_sdk.schedule.create(destination=receiver.url("/paused"), cron="* * * * *")
    client_sdk.schedule.pause(paused)
    minute = parse_cron("* * * * *").next_after(datetime.now(UTC))

    got = receiver.wait_for(1, "/tick", timeout=90)
    receiver.wait_for(1, "/queued", timeout=30)
    time.sleep(1.0)  # a second message for the same trigger would be here by now
    tick = got[0]
    assert len(receiver.received("/tick")) == 1 and len(receiver.received("/queued")) == 1
    assert tick.time >= minute.timestamp()  # not before its minute
    assert tick.body == b"tick"
    assert tick.headers["X-Tick"] == "yes"
    assert tick.headers["Upstash-Schedule-Id"] == plain
    VERIFIER.verify(
        signature=tick.headers["Upstash-Signature"], body="tick", url=receiver.url("/tick")
    )
    assert receiver.received("/paused") == []

    made = [m for m in materialized(plain) if m.scheduled_for == minute]
    assert len(made) == 1 and made[0].max_retries == 1
    assert made[0].created_at < minute  # made ahead, due at its minute
    assert made[0].not_before == minute
    assert Message.objects.get(schedule_id=queued, scheduled_for=minute).queue_name == "sched-q"
    wait_until(lambda: states_of(made[0].message_id)[-1] == "DELIVERED", what="delivered")

    info = client_sdk.schedule.get(plain)
    # On a slow machine a later minute may have come by now: read whichever is last.
    last = datetime.fromtimestamp(info.last_schedule_time / 1000, tz=UTC)
    assert last >= minute and last.second == 0
    assert info.next_schedule_time == int((last + timedelta(minutes=1)).timestamp() * 1000)
    last_ids = {m.message_id for m in materialized(plain) if m.scheduled_for == last}
    assert set(info.last_schedule_states) == last_ids and len(last_ids) == 1
    if last == minute:
        assert info.last_schedule_states[made[0].message_id].value == "SUCCESS"
    logs = api(live, "GET", f"/v2/events?scheduleId={plain}").json()["events"]
    assert {e["messageId"] for e in logs} >= {made[0].message_id}
    assert all(e["scheduleId"] == plain for e in logs)


def test_sdk_create_get_list_pause_resume_delete(client_sdk: Any, receiver: Destination) -> None:
    url = receiver.url("/s")
    created = client_sdk.schedule.create_json(
        destination=url,
        cron="CRON_TZ=America/New_York 0 4 * * *",
        body={"a": 1},
        schedule_id="nightly.report-1",
        delay="30s",
        timeout=20,
        retries=2,
        retry_delay="1000 * (1 + retried)",
        callback=receiver.url("/cb"),
        label="reports",
        flow_control={"key": "reports", "parallelism": 2},
    )
    assert created == "nightly.report-1"
    info = client_sdk.schedule.get(created)
    assert (info.schedule_id, info.destination, info.cron) == (
        created,
        url,
        "CRON_TZ=America/New_York 0 4 * * *",
    )
    assert (info.retries, info.delay, info.timeout, info.paused) == (2, 30, 20, False)
    assert info.retry_delay_expression == "1000 * (1 + retried)"
    assert info.callback == receiver.url("/cb") and info.label == "reports"
    assert info.flow_control.key == "reports" and info.flow_control.parallelism == 2
    assert info.body == '{"a": 1}'
    expected = parse_cron(info.cron).next_after(datetime.now(UTC))
    assert info.next_schedule_time == int(expected.timestamp() * 1000)
    assert info.last_schedule_time is None and info.last_schedule_states is None

    client_sdk.schedule.pause(created)
    client_sdk.schedule.pause(created)  # idempotent, PATCH as the SDK sends it
    assert client_sdk.schedule.get(created).paused is True
    client_sdk.schedule.resume(created)
    assert client_sdk.schedule.get(created).paused is False

    other = client_sdk.schedule.create(destination=url, cron="0 0 1 1 *")
    assert other.startswith("scd_")
    assert {s.schedule_id for s in client_sdk.schedule.list()} == {created, other}
    client_sdk.schedule.delete(other)
    assert [s.schedule_id for s in client_sdk.schedule.list()] == [created]
    with pytest.raises(QStashError):
        client_sdk.schedule.get(other)


def test_an_update_without_body_has_no_body_field_and_post_pauses_too(
    client_sdk: Any, live: str, receiver: Destination
) -> None:
    sid = client_sdk.schedule.create(destination=receiver.url("/b"), cron="0 0 1 1 *", body="x")
    client_sdk.schedule.create(destination=receiver.url("/b"), cron="0 0 1 1 *", schedule_id=sid)
    raw = api(live, "GET", f"/v2/schedules/{sid}").json()
    assert "body" not in raw and "bodyBase64" not in raw
    assert None not in raw.values()
    assert raw["callerIP"] == raw["callerIp"]
    assert api(live, "POST", f"/v2/schedules/{sid}/pause").status_code == 200
    assert Schedule.objects.get(schedule_id=sid).paused is True
    assert api(live, "POST", f"/v2/schedules/{sid}/resume").status_code == 200
    assert Schedule.objects.get(schedule_id=sid).paused is False


def test_a_trigger_made_ahead_is_withdrawn_by_upsert_pause_and_delete(
    client_sdk: Any, live: str, receiver: Destination
) -> None:
    away_from_a_minute_boundary()
    sid = client_sdk.schedule.create(
        destination=receiver.url("/v1"), cron="* * * * *", schedule_id="ahead"
    )
    first = wait_until(lambda: materialized(sid), what="the next trigger made ahead")
    assert first[0].url == receiver.url("/v1") and first[0].state == "CREATED"

    client_sdk.schedule.create(destination=receiver.url("/v2"), cron="* * * * *", schedule_id=sid)
    assert not Message.objects.filter(pk=first[0].pk).exists()  # withdrawn, never happened
    second = wait_until(lambda: materialized(sid), what="the trigger made again")
    assert [m.url for m in second] == [receiver.url("/v2")]

    client_sdk.schedule.pause(sid)
    assert materialized(sid) == []
    assert "nextScheduleTime" not in api(live, "GET", f"/v2/schedules/{sid}").json()
    client_sdk.schedule.resume(sid)
    wait_until(lambda: materialized(sid), what="made again after resume")
    cancelled = api(live, "DELETE", f"/v2/messages?scheduleId={sid}").json()
    assert cancelled == {"cancelled": 1}
    client_sdk.schedule.delete(sid)
    assert not Schedule.objects.filter(schedule_id=sid).exists()


def test_a_schedule_to_a_url_group_makes_one_message_per_endpoint(
    client_sdk: Any, receiver: Destination
) -> None:
    client_sdk.url_group.upsert_endpoints(
        url_group="sched-team",
        endpoints=[{"url": receiver.url("/ga")}, {"url": receiver.url("/gb")}],
    )
    sid = client_sdk.schedule.create(destination="sched-team", cron="* * * * *")
    made = wait_until(lambda: len(materialized(sid)) == 2 and materialized(sid), what="2 messages")
    assert sorted(m.url for m in made) == [receiver.url("/ga"), receiver.url("/gb")]
    assert {m.topic_name for m in made} == {"sched-team"}


def test_bad_schedules_are_refused_and_store_nothing(live: str, receiver: Destination) -> None:
    url = receiver.url("/bad")
    for headers, needle in [
        ({}, "Upstash-Cron"),
        ({"Upstash-Cron": "* * * *"}, "fields"),
        ({"Upstash-Cron": "0 * * * * *"}, "6 fields"),
        ({"Upstash-Cron": "61 * * * *"}, "minute"),
        ({"Upstash-Cron": "CRON_TZ=Nowhere/City * * * * *"}, "time zone"),
        ({"Upstash-Cron": "0 0 31 2 *"}, "never fires"),
        ({"Upstash-Cron": "* * * * *", "Upstash-Schedule-Id": "no spaces"}, "Schedule-Id"),
        ({"Upstash-Cron": "* * * * *", "Upstash-Not-Before": "2000000000"}, "Not-Before"),
        ({"Upstash-Cron": "* * * * *", "Upstash-Deduplication-Id": "x"}, "Deduplication"),
        ({"Upstash-Cron": "* * * * *", "Upstash-Queue-Name": "a b"}, "Queue-Name"),
        ({"Upstash-Cron": "* * * * *", "Upstash-Retries": "x"}, "Upstash-Retries"),
    ]:
        res = api(live, "POST", f"/v2/schedules/{url}", headers=headers, content=b"body")
        assert res.status_code == 400, (headers, res.text)
        assert needle in res.json()["error"], (headers, res.json())
    res = api(live, "POST", "/v2/schedules/no-such-group", headers={"Upstash-Cron": "* * * * *"})
    assert res.status_code == 400 and "no-such-group" in res.json()["error"]
    assert api(live, "GET", "/v2/schedules/missing").status_code == 404
    assert api(live, "DELETE", "/v2/schedules/missing").status_code == 404
    assert api(live, "PATCH", "/v2/schedules/missing/pause").status_code == 404
    assert Schedule.objects.count() == 0 and Payload.objects.count() == 0
    assert Message.objects.count() == 0


def test_a_trigger_made_ahead_into_a_queue_does_not_hold_the_queue_before_its_minute(
    client_sdk: Any, receiver: Destination
) -> None:
    away_from_a_minute_boundary()
    sid = client_sdk.schedule.create(
        destination=receiver.url("/later"), cron="* * * * *", queue="shared"
    )
    ahead = wait_until(lambda: materialized(sid), what="the trigger made ahead")[0]
    assert ahead.scheduled_for is not None
    client_sdk.message.enqueue(queue="shared", url=receiver.url("/now"), body="now")
    got = receiver.wait_for(1, "/now", timeout=10)
    assert got[0].time < ahead.scheduled_for.timestamp()  # not queued behind it
    receiver.wait_for(1, "/later", timeout=90)  # and it still goes at its minute
