"""The console's later pages without a worker: the log page's /v2/logs filters, the edit
forms (queue parallelism, flow-control pin, DLQ retry with overrides), the day chart and
liveness on the dashboard. Each form is posted by a viewer (refused, nothing changes) and
by an operator (done, or the API's refusal shown on the form)."""

from __future__ import annotations

from datetime import timedelta
from html import unescape
from typing import Any
from urllib.parse import urlencode

import pytest
from django.db import connection
from django.http import QueryDict
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from broker.console.dashboard import DAY, HOUR, _chart
from broker.console.roles import OPERATOR, VIEWER
from broker.models import DlqEntry, FlowControlKey, Heartbeat, LogEntry, Message, Queue
from broker.selectors import logs_page
from broker.services.heartbeats import heartbeat_beat
from tests.conftest import TEST_TOKEN
from tests.integration.test_console_roles import login, make_failed, make_message

pytestmark = pytest.mark.django_db


def shown_ids(text: str, candidates: list[Message]) -> set[str]:
    return {m.message_id for m in candidates if m.message_id in text}


def test_log_page_has_the_filters_of_v2_logs_and_finds_what_the_api_finds() -> None:
    now = timezone.now()
    target = make_message(
        url="http://127.0.0.1:9/target?x=1",
        topic_name="grp",
        endpoint_name="ep",
        queue_name="qq",
        schedule_id="sch",
        labels=",red,blue,",
        flow_control_key="fk",
        caller_ip="10.0.0.7",
    )
    other = make_message(url="http://localhost:9/other")
    for message in (target, other):
        LogEntry.objects.create(message=message, state=LogEntry.State.CREATED, time=now)
    LogEntry.objects.create(
        message=target, state=LogEntry.State.ERROR, time=now, error="boom", duration_ms=12
    )
    old = make_message(url="http://127.0.0.1:9/old")
    LogEntry.objects.create(message=old, state=LogEntry.State.CREATED, time=now - timedelta(days=3))
    everyone = [target, other, old]
    client = login(VIEWER)
    for params in (
        {"messageId": target.message_id},
        {"url": target.url},
        {
            "host": "127.0.0.1:9",
            "fromDate": str(int((now - timedelta(hours=1)).timestamp() * 1000)),
        },
        {"path": "/target"},
        {"topicName": "grp"},
        {"endpointName": "ep"},
        {"queueName": "qq"},
        {"scheduleId": "sch"},
        {"label": "blue"},
        {"flowControlKey": "fk"},
        {"callerIp": "10.0.0.7"},
        {"state": "ERROR"},
        {"state": "IN_PROGRESS"},
    ):
        page = client.get("/admin/broker/logentry/", params)
        assert page.status_code == 200 and "?e=1" not in page.get("Location", ""), params
        rows, _ = logs_page(query=QueryDict(urlencode(params)))
        api = {row.message.message_id for row in rows}
        assert shown_ids(page.content.decode(), everyone) == api == {target.message_id}, params
    # Dates as a person types them, or milliseconds as on the wire.
    text = client.get(
        "/admin/broker/logentry/", {"toDate": (now - timedelta(days=2)).date().isoformat()}
    ).content.decode()
    assert shown_ids(text, everyone) == {old.message_id}
    # The attempt's duration is a column.
    text = client.get("/admin/broker/logentry/", {"state": "ERROR"}).content.decode()
    assert "12 ms" in text
    # Bad input: the API's own message on the page, and the filter left out.
    for params, words in (
        ({"state": "NOPE"}, "invalid state"),
        ({"fromDate": "someday"}, "is not a date"),
        ({"host": "h" * 300}, "longer than"),
    ):
        page = client.get("/admin/broker/logentry/", params)
        assert page.status_code == 200 and words in page.content.decode(), params


def test_log_page_never_counts_the_whole_table() -> None:
    message = make_message()
    LogEntry.objects.create(message=message, state=LogEntry.State.CREATED, time=timezone.now())
    client = login(VIEWER)
    for params in ({}, {"state": "CREATED"}, {"label": "x"}):
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/admin/broker/logentry/", params).status_code == 200
        counts = [
            q["sql"] for q in captured if "COUNT(" in q["sql"] and "broker_logentry" in q["sql"]
        ]
        # Unfiltered: the planner's estimate; filtered: the first 10,001 matches at most.
        assert all("LIMIT" in sql for sql in counts), counts


def test_queue_parallelism_form_is_for_operators_and_checked_like_the_api(settings: Any) -> None:
    now = timezone.now()
    queue = Queue.objects.create(name="pq", parallelism=1, created_at=now, updated_at=now)
    url = f"/admin/broker/queue/{queue.pk}/parallelism/"
    viewer, operator = login(VIEWER), login(OPERATOR)
    assert viewer.get(url).status_code == 403
    assert viewer.post(url, {"parallelism": "5"}).status_code == 403
    assert Queue.objects.get(pk=queue.pk).parallelism == 1
    assert (
        "Set parallelism"
        not in viewer.get(f"/admin/broker/queue/{queue.pk}/change/").content.decode()
    )
    assert (
        "Set parallelism"
        in operator.get(f"/admin/broker/queue/{queue.pk}/change/").content.decode()
    )
    assert "Set parallelism" in operator.get("/admin/broker/queue/").content.decode()

    settings.QSTASH_MAX_QUEUE_PARALLELISM = 10
    for bad, words in (
        ("0", "use an integer >= 1"),
        ("two", "use an integer >= 1"),
        ("11", "the maximum is 10"),
    ):
        page = operator.post(url, {"parallelism": bad})
        assert page.status_code == 200 and words in unescape(page.content.decode()), bad
        assert Queue.objects.get(pk=queue.pk).parallelism == 1
    assert operator.post(url, {"parallelism": "4"}).status_code == 302
    assert Queue.objects.get(pk=queue.pk).parallelism == 4


def test_flow_key_pin_form_pins_values_like_the_api() -> None:
    now = timezone.now()
    key = FlowControlKey.objects.create(key="pk1", parallelism=1, created_at=now, updated_at=now)
    url = f"/admin/broker/flowcontrolkey/{key.pk}/pin/"
    viewer, operator = login(VIEWER), login(OPERATOR)
    assert viewer.get(url).status_code == 403
    assert viewer.post(url, {"parallelism": "3"}).status_code == 403
    assert FlowControlKey.objects.get(pk=key.pk).pinned_parallelism is False

    for bad, words in (({"rate": "abc"}, "pin"), ({}, "give at least one")):
        page = operator.post(url, bad)
        assert page.status_code == 200 and words in unescape(page.content.decode()), bad
    assert FlowControlKey.objects.get(pk=key.pk).pinned_parallelism is False

    assert operator.post(url, {"parallelism": "3", "rate": "10", "period": "1m"}).status_code == 302
    row = FlowControlKey.objects.get(pk=key.pk)
    assert (row.parallelism, row.rate, row.period) == (3, 10, 60)
    assert row.pinned_parallelism and row.pinned_rate


def test_dlq_retry_with_overrides_publishes_with_them_and_shows_the_apis_refusal() -> None:
    entry = make_failed()
    url = f"/admin/broker/dlqentry/retry-with-overrides/?ids={entry.pk}"
    viewer, operator = login(VIEWER), login(OPERATOR)
    form = {
        "retries": "0",
        "method": "PUT",
        "headers": "Upstash-Forward-X-Trace: t-1\nUpstash-Label: again",
    }
    assert viewer.get(url).status_code == 403
    assert viewer.post(url, form).status_code == 403
    assert DlqEntry.objects.filter(pk=entry.pk).exists()
    before = Message.objects.count()

    # What the API answers for the same bad override, word for word, on the form.
    api = Client().post(
        f"/v2/dlq/retry/{entry.dlq_id}",
        HTTP_AUTHORIZATION=f"Bearer {TEST_TOKEN}",
        HTTP_UPSTASH_RETRIES="lots",
    )
    assert api.status_code == 400
    page = operator.post(url, {"retries": "lots"})
    assert page.status_code == 200
    assert api.json()["error"] in unescape(page.content.decode())
    page = operator.post(url, {"headers": "X-Trace: t"})
    assert page.status_code == 200 and "only Upstash-* headers" in page.content.decode()
    assert DlqEntry.objects.filter(pk=entry.pk).exists() and Message.objects.count() == before

    assert (
        "Retry with overrides"
        in operator.get(f"/admin/broker/dlqentry/{entry.pk}/change/").content.decode()
    )
    done = operator.post(url, form)
    assert done.status_code == 302
    made = Message.objects.exclude(pk=entry.message_id).get()
    assert done["Location"].endswith(f"/broker/message/{made.pk}/change/")
    assert (made.max_retries, made.method, made.url, made.body) == (
        0,
        "PUT",
        entry.message.url,
        b"hello",
    )
    assert made.header.get("X-Trace") == ["t-1"] and made.label_list == ["again"]
    assert not DlqEntry.objects.filter(pk=entry.pk).exists()


def test_dlq_action_leads_to_the_overrides_form_for_the_selected_entries() -> None:
    first, second = make_failed(), make_failed()
    operator = login(OPERATOR)
    res = operator.post(
        "/admin/broker/dlqentry/",
        {"action": "retry_with_overrides", "_selected_action": [str(first.pk), str(second.pk)]},
    )
    assert res.status_code == 302
    assert sorted(res["Location"].split("?ids=")[1].split(",")) == sorted(
        [str(first.pk), str(second.pk)]
    )
    page = operator.get(res["Location"])
    assert first.dlq_id in page.content.decode() and second.dlq_id in page.content.decode()
    res = login(VIEWER).post(
        "/admin/broker/dlqentry/",
        {"action": "retry_with_overrides", "_selected_action": [str(first.pk)]},
    )
    assert res.status_code in (200, 302) and "retry-with-overrides" not in res.get("Location", "")


def test_new_forms_enforce_csrf() -> None:
    now = timezone.now()
    entry = make_failed()
    queue = Queue.objects.create(name="cq", created_at=now, updated_at=now)
    key = FlowControlKey.objects.create(key="ck", created_at=now, updated_at=now)
    client = login(OPERATOR)
    client.handler.enforce_csrf_checks = True
    for url, data in (
        (f"/admin/broker/dlqentry/retry-with-overrides/?ids={entry.pk}", {"retries": "0"}),
        (f"/admin/broker/queue/{queue.pk}/parallelism/", {"parallelism": "3"}),
        (f"/admin/broker/flowcontrolkey/{key.pk}/pin/", {"parallelism": "3"}),
    ):
        assert client.post(url, data).status_code == 403, url
    assert DlqEntry.objects.filter(pk=entry.pk).exists()
    assert Queue.objects.get(pk=queue.pk).parallelism == 1
    assert not FlowControlKey.objects.get(pk=key.pk).pinned_parallelism


def test_day_chart_buckets_a_day_by_15_minutes() -> None:
    now = timezone.now()
    message = make_message()
    for ago in (
        timedelta(minutes=1),
        timedelta(hours=5),
        timedelta(hours=5, minutes=1),
        timedelta(hours=25),
    ):
        LogEntry.objects.create(message=message, state=LogEntry.State.DELIVERED, time=now - ago)
    day = _chart(now, DAY)
    hour = _chart(now, HOUR)
    deliveries = {s.label: s for s in day["series"]}["deliveries"]
    assert deliveries.total == 3  # the row of 25 hours ago is outside
    assert {s.label: s for s in hour["series"]}["deliveries"].total == 1
    assert len(deliveries.points.split()) == 96 and day["end"] - day["start"] == timedelta(
        hours=23, minutes=45
    )
    assert day["peak"] in (
        1,
        2,
    )  # 5 h and 5 h 1 min ago share a bucket unless a boundary parts them


def test_dashboard_shows_each_process_alive_or_stale() -> None:
    now = timezone.now()
    heartbeat_beat(kind="worker", started_at=now, now=now, detail={"in_flight": 2, "slots": 8})
    Heartbeat.objects.create(
        identity="clock@gone:1",
        kind="clock",
        hostname="gone",
        pid=1,
        started_at=now - timedelta(hours=2),
        seen_at=now - timedelta(minutes=10),
    )
    Heartbeat.objects.create(
        identity="clock@ancient:2",
        kind="clock",
        hostname="ancient",
        pid=2,
        started_at=now - timedelta(days=3),
        seen_at=now - timedelta(days=2),
    )
    text = login(VIEWER).get("/admin/").content.decode()
    live = text.split('id="dash-liveness"', 1)[1].split("</table>", 1)[0]
    rows = live.split("<tr")[2:]
    alive = [r for r in rows if 'class="alive"' in r]
    stale = [r for r in rows if 'class="stale"' in r]
    assert len(alive) == 1 and "2/8" in alive[0]
    assert len(stale) == 1 and "gone:1" in stale[0] and "stale" in stale[0]
    assert "ancient" not in live  # gone for more than a day


def test_heartbeat_is_one_upsert_per_process() -> None:
    now = timezone.now()
    heartbeat_beat(kind="clock", started_at=now, now=now)
    with CaptureQueriesContext(connection) as captured:
        heartbeat_beat(kind="clock", started_at=now, now=now + timedelta(seconds=5))
    assert len(captured) == 1
    assert Heartbeat.objects.get().seen_at == now + timedelta(seconds=5)


def _group_form(name: str, urls: list[str]) -> dict[str, str]:
    form = {
        "name": name,
        "default_headers": "{}",
        "endpoints-TOTAL_FORMS": str(len(urls)),
        "endpoints-INITIAL_FORMS": "0",
        "endpoints-MIN_NUM_FORMS": "0",
        "endpoints-MAX_NUM_FORMS": "1000",
    }
    for i, url in enumerate(urls):
        form[f"endpoints-{i}-url"] = url
        form[f"endpoints-{i}-name"] = ""
    return form


def test_url_group_form_keeps_the_apis_endpoint_cap_and_url_length(settings: Any) -> None:
    from groups.models import UrlGroup

    settings.QSTASH_MAX_GROUP_ENDPOINTS = 2
    operator = login(OPERATOR)
    urls = [f"http://127.0.0.1:9/e{i}" for i in range(3)]
    api = Client().post(
        "/v2/topics/capped/endpoints",
        {"endpoints": [{"url": u} for u in urls]},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {TEST_TOKEN}",
    )
    assert api.status_code == 400
    page = operator.post("/admin/groups/urlgroup/add/", _group_form("capped", urls))
    assert page.status_code == 200
    assert api.json()["error"] in unescape(page.content.decode())
    assert not UrlGroup.objects.filter(name="capped").exists()

    long_url = "http://127.0.0.1:9/" + "x" * 2100
    page = operator.post("/admin/groups/urlgroup/add/", _group_form("long", [long_url]))
    assert page.status_code == 200 and "longer than 2048" in page.content.decode()
    assert not UrlGroup.objects.filter(name="long").exists()

    assert (
        operator.post("/admin/groups/urlgroup/add/", _group_form("fine", urls[:2])).status_code
        == 302
    )
    assert UrlGroup.objects.get(name="fine").endpoints.count() == 2


def test_closed_chart_buckets_are_read_once_then_come_from_the_cache() -> None:
    now = timezone.now()
    message = make_message()
    old = LogEntry.objects.create(
        message=message, state=LogEntry.State.DELIVERED, time=now - timedelta(hours=5)
    )
    assert _chart(now, DAY)["series"][0].total == 1
    # The closed bucket is not read again: a row gone from it (pruned) still counts...
    old.delete()
    LogEntry.objects.create(message=message, state=LogEntry.State.DELIVERED, time=now)
    with CaptureQueriesContext(connection) as captured:
        later = _chart(now + timedelta(seconds=1), DAY)
    assert later["series"][0].total == 2
    # ...and the one query starts at the open bucket, not a day back.
    (sql,) = [q["sql"] for q in captured]
    assert str((later["end"]).year) in sql and str(later["start"].isoformat()[:13]) not in sql
