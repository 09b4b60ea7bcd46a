"""The console (Django admin): pages load for a superuser, DLQ actions use the real services."""

from __future__ import annotations

from typing import Any

import httpx
from django.test import Client

from broker.models import DlqEntry, FlowControlKey, LogEntry, Message, Queue, Schedule
from groups.models import Endpoint, UrlGroup
from tests.conftest import TEST_TOKEN, Reply, wait_until
from tests.conftest import Receiver as Destination


def dead(client_sdk: Any, receiver: Destination, path: str, body: str) -> DlqEntry:
    res = client_sdk.message.publish(url=receiver.url(path), body=body, retries=0)
    entry: DlqEntry = wait_until(
        lambda: DlqEntry.objects.filter(message__message_id=res.message_id).first(),
        what=f"{res.message_id} in the DLQ",
    )
    return entry


def test_message_and_log_pages_load(
    client_sdk: Any, admin_client: Client, receiver: Destination
) -> None:
    res = client_sdk.message.publish(url=receiver.url("/seen"), body="console body")
    wait_until(
        lambda: Message.objects.get(message_id=res.message_id).state == Message.State.DELIVERED,
        what="DELIVERED",
    )
    message = Message.objects.get(message_id=res.message_id)

    page = admin_client.get("/admin/broker/message/")
    assert page.status_code == 200
    assert res.message_id in page.content.decode()

    detail = admin_client.get(f"/admin/broker/message/{message.pk}/change/")
    assert detail.status_code == 200
    text = detail.content.decode()
    assert res.message_id in text and "console body" in text and "DELIVERED" in text

    logs = admin_client.get("/admin/broker/logentry/")
    assert logs.status_code == 200
    assert LogEntry.objects.filter(message=message).count() == 3

    filtered = admin_client.get("/admin/broker/message/", {"state__exact": "DELIVERED"})
    assert filtered.status_code == 200


def test_redacted_body_is_hidden_in_the_console(
    live: str, admin_client: Client, receiver: Destination
) -> None:
    res = httpx.post(
        f"{live}/v2/publish/{receiver.url('/r')}",
        content=b"top secret",
        headers={
            "Authorization": f"Bearer {TEST_TOKEN}",
            "Upstash-Redact-Fields": "body",
            "Upstash-Delay": "1h",
        },
        timeout=30,
    )
    assert res.status_code == 200
    message = Message.objects.get(message_id=res.json()["messageId"])
    detail = admin_client.get(f"/admin/broker/message/{message.pk}/change/")
    assert detail.status_code == 200
    assert "top secret" not in detail.content.decode()
    assert "REDACTED:" in detail.content.decode()


def test_url_group_pages_load_and_the_add_form_creates_a_group_with_endpoints(
    client_sdk: Any, admin_client: Client, receiver: Destination
) -> None:
    url = receiver.url("/console-ep")
    client_sdk.url_group.upsert_endpoints(
        url_group="console-group", endpoints=[{"url": url, "name": "ep1"}]
    )
    group = UrlGroup.objects.get(name="console-group")

    listing = admin_client.get("/admin/groups/urlgroup/")
    assert listing.status_code == 200
    assert "console-group" in listing.content.decode()

    assert admin_client.get("/admin/groups/urlgroup/add/").status_code == 200

    change = admin_client.get(f"/admin/groups/urlgroup/{group.pk}/change/")
    assert change.status_code == 200
    text = change.content.decode()
    assert url in text and "ep1" in text
    assert 'name="endpoints-TOTAL_FORMS"' in text

    form = {
        "name": "made-in-console",
        "default_headers": "{}",
        "endpoints-TOTAL_FORMS": "1",
        "endpoints-INITIAL_FORMS": "0",
        "endpoints-MIN_NUM_FORMS": "0",
        "endpoints-MAX_NUM_FORMS": "1000",
        "endpoints-0-url": receiver.url("/from-console"),
        "endpoints-0-name": "fc",
    }
    created = admin_client.post("/admin/groups/urlgroup/add/", form)
    assert created.status_code == 302, created.content.decode()[:2000]
    made = UrlGroup.objects.get(name="made-in-console")
    assert list(made.endpoints.values_list("url", "name")) == [
        (receiver.url("/from-console"), "fc")
    ]
    assert client_sdk.url_group.get("made-in-console").endpoints[0].url == receiver.url(
        "/from-console"
    )

    bad = admin_client.post(
        "/admin/groups/urlgroup/add/",
        {**form, "name": "bad name!", "endpoints-0-url": "no-scheme.example"},
    )
    assert bad.status_code == 200  # the form again, with errors
    assert not UrlGroup.objects.filter(name="bad name!").exists()
    assert Endpoint.objects.filter(url="no-scheme.example").count() == 0


def test_dlq_page_loads_and_its_retry_and_remove_actions_work(
    client_sdk: Any, admin_client: Client, receiver: Destination
) -> None:
    receiver.script("/console-dlq", Reply(status=500, body=b"boom"))
    first = dead(client_sdk, receiver, "/console-dlq", "one")
    second = dead(client_sdk, receiver, "/console-dlq", "two")
    receiver.script("/console-dlq", Reply(status=200))

    page = admin_client.get("/admin/broker/dlqentry/")
    assert page.status_code == 200
    text = page.content.decode()
    assert first.dlq_id in text and second.dlq_id in text
    detail = admin_client.get(f"/admin/broker/dlqentry/{first.pk}/change/")
    assert detail.status_code == 200

    before = Message.objects.count()
    retried = admin_client.post(
        "/admin/broker/dlqentry/",
        {"action": "retry", "_selected_action": [str(first.pk)], "confirm": "yes"},
    )
    assert retried.status_code == 302
    assert not DlqEntry.objects.filter(pk=first.pk).exists()
    assert Message.objects.count() == before + 1
    new = Message.objects.exclude(pk__in=[first.message_id, second.message_id]).get()
    assert new.body == b"one"
    wait_until(
        lambda: any(
            r.headers.get("Upstash-Message-Id") == new.message_id
            for r in receiver.received("/console-dlq")
        ),
        what="the retried message delivered",
    )
    delivered = [
        r
        for r in receiver.received("/console-dlq")
        if r.headers.get("Upstash-Message-Id") == new.message_id
    ]
    assert delivered[0].body == b"one"

    removed = admin_client.post(
        "/admin/broker/dlqentry/",
        {"action": "remove", "_selected_action": [str(second.pk)], "confirm": "yes"},
    )
    assert removed.status_code == 302
    assert not DlqEntry.objects.exists()
    assert Message.objects.count() == before + 1
    assert Message.objects.get(pk=second.message_id).state == Message.State.FAILED


def test_console_refuses_default_headers_the_api_refuses(
    live: str, admin_client: Client, receiver: Destination
) -> None:
    # PATCH /v2/topics/{name} refuses headers that are not an object of strings...
    form = {
        "name": "console-headers",
        "default_headers": '["not", "an", "object"]',
        "endpoints-TOTAL_FORMS": "1",
        "endpoints-INITIAL_FORMS": "0",
        "endpoints-MIN_NUM_FORMS": "0",
        "endpoints-MAX_NUM_FORMS": "1000",
        "endpoints-0-url": receiver.url("/ch"),
        "endpoints-0-name": "",
    }
    saved = admin_client.post("/admin/groups/urlgroup/add/", form)
    publish = httpx.post(
        f"{live}/v2/publish/console-headers",
        content=b"x",
        headers={"Authorization": f"Bearer {TEST_TOKEN}"},
        timeout=30,
    )
    # ...so the console must refuse them too (the form again, with an error), and the
    # group is not created: publishing to its name is the 400 of an unknown name.
    assert (saved.status_code, publish.status_code) == (200, 400), (
        f"console answered {saved.status_code}; a publish to the group then answered "
        f"{publish.status_code} {publish.text[:200]}"
    )
    assert not UrlGroup.objects.filter(name="console-headers").exists()


def test_queues_and_flow_keys_pages_show_live_counts_and_act(
    client_sdk: Any, admin_client: Client, receiver: Destination
) -> None:
    client_sdk.queue.upsert("console-q", parallelism=2, paused=True)
    for _ in range(3):
        client_sdk.message.enqueue(queue="console-q", url=receiver.url("/cq"), body="x")
    client_sdk.message.publish(
        url=receiver.url("/ck"), body="x", flow_control={"key": "console-k", "parallelism": 1}
    )
    receiver.wait_for(1, "/ck")
    client_sdk.flow_control.pause("console-k")
    client_sdk.message.publish(url=receiver.url("/ck"), body="y", flow_control={"key": "console-k"})

    page = admin_client.get("/admin/broker/queue/")
    assert page.status_code == 200
    row = page.content.decode().split("console-q", 1)[1].split("</tr>", 1)[0]
    assert ">3<" in row  # the lag
    keys = admin_client.get("/admin/broker/flowcontrolkey/")
    assert keys.status_code == 200
    key_row = keys.content.decode().split("console-k", 1)[1].split("</tr>", 1)[0]
    assert "parallelism=1" in key_row and ">1<" in key_row  # one waiting

    queue_pk = Queue.objects.get(name="console-q").pk
    res = admin_client.post(
        "/admin/broker/queue/", {"action": "resume", "_selected_action": [queue_pk]}
    )
    assert res.status_code == 302
    assert Queue.objects.get(name="console-q").paused is False
    receiver.wait_for(3, "/cq", timeout=20)
    key_pk = FlowControlKey.objects.get(key="console-k").pk
    admin_client.post(
        "/admin/broker/flowcontrolkey/", {"action": "resume", "_selected_action": [key_pk]}
    )
    receiver.wait_for(2, "/ck", timeout=20)


def test_schedules_page_shows_cron_in_words_and_acts(
    client_sdk: Any, admin_client: Client, receiver: Destination
) -> None:
    sid = client_sdk.schedule.create(
        destination=receiver.url("/s"), cron="CRON_TZ=Asia/Tokyo 0 9 * * MON-FRI"
    )
    page = admin_client.get("/admin/broker/schedule/")
    assert page.status_code == 200
    row = page.content.decode().split(sid, 1)[1].split("</tr>", 1)[0]
    assert "at 09:00 on MON, TUE, WED, THU, FRI (Asia/Tokyo)" in row
    assert "JST" in row  # the next trigger in the schedule's own zone
    pk = Schedule.objects.get(schedule_id=sid).pk
    assert admin_client.get(f"/admin/broker/schedule/{pk}/change/").status_code == 200
    res = admin_client.post(
        "/admin/broker/schedule/", {"action": "pause", "_selected_action": [pk]}
    )
    assert res.status_code == 302
    assert client_sdk.schedule.get(sid).paused is True


def _parent_pid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        # "pid (comm) state ppid ...": comm may hold spaces, so split after its ")".
        return int(stat.read().rsplit(")", 1)[1].split()[1])


def test_dashboard_shows_the_real_worker_processes_and_clock_alive(
    live: str, services: Any, admin_client: Client
) -> None:
    from broker.models import Heartbeat

    worker_pid, clock_pid = services.worker.proc.pid, services.clock.proc.pid

    def reported() -> list[Heartbeat] | None:
        beats = list(Heartbeat.objects.all())
        kinds = [b.kind for b in beats]
        # The session's worker runs two prefork children; each reports for itself.
        return beats if kinds.count("worker") == 2 and "clock" in kinds else None

    # The tables were emptied before this test: both report again within a beat or two.
    beats = wait_until(reported, what="a worker and the clock reporting in", timeout=20)
    clocks = [b for b in beats if b.kind == "clock"]
    workers = [b for b in beats if b.kind == "worker"]
    assert [b.pid for b in clocks] == [clock_pid]
    assert workers and all(_parent_pid(b.pid) == worker_pid for b in workers)
    assert all(b.detail.get("slots") for b in workers)

    text = admin_client.get("/admin/").content.decode()
    live_table = text.split('id="dash-liveness"', 1)[1].split("</table>", 1)[0]
    assert f":{clock_pid}</code>" in live_table
    assert 'class="stale"' not in live_table
    assert live_table.count('class="alive"') == len(beats) == 3

    # A beat a moment later moves seen_at on: the rows are kept fresh, not written once.
    first = max(b.seen_at for b in clocks)
    wait_until(
        lambda: Heartbeat.objects.filter(kind="clock", seen_at__gt=first).exists(),
        what="the clock's next beat",
        timeout=20,
    )


def test_timeline_shows_how_long_each_attempt_took(
    client_sdk: Any, admin_client: Client, receiver: Destination
) -> None:
    receiver.script("/slow", Reply(status=500, delay=0.3), Reply(status=200, delay=0.15))
    res = client_sdk.message.publish(
        url=receiver.url("/slow"), body="x", retries=1, retry_delay="0"
    )
    wait_until(
        lambda: Message.objects.get(message_id=res.message_id).state == Message.State.DELIVERED,
        what="DELIVERED after a retry",
        timeout=30,
    )
    message = Message.objects.get(message_id=res.message_id)
    took: dict[str, int] = {
        state: int(ms or 0)
        for state, ms in LogEntry.objects.filter(
            message=message, duration_ms__isnull=False
        ).values_list("state", "duration_ms")
    }
    assert set(took) == {"ERROR", "DELIVERED"}
    assert 300 <= took["ERROR"] < 3000 and 150 <= took["DELIVERED"] < 3000
    text = admin_client.get(f"/admin/broker/message/{message.pk}/change/").content.decode()
    timeline = text.split("console-timeline", 1)[1].split("</table>", 1)[0]
    assert f"{took['ERROR']} ms" in timeline and f"{took['DELIVERED']} ms" in timeline
