"""Console roles and pages without a worker: who may act, filters, bounded queries.

The viewer/operator groups come from migration 0004_console_roles. Each action is
posted as a viewer (refused: nothing changes) and as an operator (done), so
removing any ``permissions=[...]`` guard in broker/admin.py fails a test here.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.apps import apps
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from broker.console.roles import OPERATOR, VIEWER, roles_ensure
from broker.models import (
    Credentials,
    DlqEntry,
    FlowControlKey,
    Heartbeat,
    LogEntry,
    Message,
    Payload,
    Queue,
    Schedule,
)
from groups.models import Endpoint, UrlGroup

pytestmark = pytest.mark.django_db


def make_message(**fields: Any) -> Message:
    now = timezone.now()
    defaults: dict[str, Any] = {
        "url": "http://127.0.0.1:9/x",
        "payload": Payload.objects.create(body=fields.pop("body", b"hello")),
        "not_before": now,
        "created_at": now,
        "due_at": now + timedelta(hours=1),
    }
    defaults.update(fields)
    return Message.objects.create(**defaults)


def make_failed(url: str = "http://127.0.0.1:9/dead") -> DlqEntry:
    now = timezone.now()
    message = make_message(
        url=url, state=Message.State.FAILED, due_at=None, finished_at=now, last_error="boom"
    )
    LogEntry.objects.create(message=message, state=LogEntry.State.ERROR, time=now, error="boom")
    LogEntry.objects.create(message=message, state=LogEntry.State.FAILED, time=now, error="boom")
    return DlqEntry.objects.create(
        dlq_id=DlqEntry.make_id(message, now), message=message, created_at=now
    )


def login(role: str) -> Client:
    roles_ensure(apps)  # a flush by an earlier transactional test removes the groups
    user = User.objects.create_user(f"{role}-user", password="pw-123456", is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    client = Client()
    client.force_login(user)
    return client


def act(client: Client, model: str, action: str, pk: int) -> Any:
    return client.post(
        f"/admin/broker/{model}/",
        # "confirm" answers the DLQ actions' confirmation page; the others ignore it.
        {"action": action, "_selected_action": [str(pk)], "confirm": "yes"},
    )


def test_the_migration_ships_both_groups() -> None:
    viewer = set(Group.objects.get(name=VIEWER).permissions.values_list("codename", flat=True))
    operator = set(Group.objects.get(name=OPERATOR).permissions.values_list("codename", flat=True))
    models = [m for label in ("broker", "groups") for m in apps.get_app_config(label).get_models()]
    assert viewer == {f"view_{m._meta.model_name}" for m in models}
    assert viewer < operator
    assert {"retry_dlqentry", "delete_dlqentry", "pause_queue", "cancel_message"} <= operator


def test_a_viewer_reads_every_page_but_sees_no_action() -> None:
    entry = make_failed()
    client = login(VIEWER)
    for page in (
        "/admin/",
        "/admin/broker/message/",
        f"/admin/broker/message/{entry.message_id}/change/",
        "/admin/broker/logentry/",
        "/admin/broker/dlqentry/",
        "/admin/broker/queue/",
        "/admin/broker/flowcontrolkey/",
        "/admin/broker/schedule/",
        "/admin/broker/credentials/",
        "/admin/groups/urlgroup/",
    ):
        res = client.get(page)
        assert res.status_code == 200, page
        assert 'name="action"' not in res.content.decode(), page
    assert client.get("/admin/groups/urlgroup/add/").status_code == 403


@pytest.mark.parametrize(
    ("model", "action", "changed"),
    [
        ("dlqentry", "retry", lambda e: not DlqEntry.objects.filter(pk=e.pk).exists()),
        ("dlqentry", "remove", lambda e: not DlqEntry.objects.filter(pk=e.pk).exists()),
        ("message", "retry", lambda e: not DlqEntry.objects.filter(pk=e.pk).exists()),
    ],
)
def test_dlq_actions_are_refused_to_a_viewer_and_done_for_an_operator(
    model: str, action: str, changed: Any
) -> None:
    entry = make_failed()
    pk = entry.pk if model == "dlqentry" else entry.message_id
    before = Message.objects.count()
    assert act(login(VIEWER), model, action, pk).status_code in (200, 302)
    assert not changed(entry) and Message.objects.count() == before
    assert act(login(OPERATOR), model, action, pk).status_code == 302
    assert changed(entry)


def test_cancel_is_refused_to_a_viewer_and_done_for_an_operator() -> None:
    message = make_message()
    act(login(VIEWER), "message", "cancel", message.pk)
    assert Message.objects.get(pk=message.pk).state == Message.State.CREATED
    act(login(OPERATOR), "message", "cancel", message.pk)
    assert Message.objects.get(pk=message.pk).state == Message.State.CANCELED


def test_gate_and_schedule_actions_are_refused_to_a_viewer_and_done_for_an_operator() -> None:
    now = timezone.now()
    queue = Queue.objects.create(name="q1", created_at=now, updated_at=now)
    key = FlowControlKey.objects.create(
        key="k1", created_at=now, updated_at=now, rate_count=5, pinned_parallelism=True
    )
    schedule = Schedule.objects.create(
        schedule_id="s1",
        destination="http://127.0.0.1:9/s",
        cron="* * * * *",
        payload=Payload.objects.create(body=b""),
        created_at=now,
        updated_at=now,
    )
    viewer, operator = login(VIEWER), login(OPERATOR)

    def state() -> dict[str, Any]:
        k = FlowControlKey.objects.get(pk=key.pk)
        return {
            "queue": Queue.objects.get(pk=queue.pk).paused,
            "key": k.paused,
            "schedule": Schedule.objects.get(pk=schedule.pk).paused,
            "rate_count": k.rate_count,
            "pinned": k.pinned_parallelism,
        }

    # (model, pk, action, what the operator's action changes, to what)
    steps = [
        ("queue", queue.pk, "pause", "queue", True),
        ("queue", queue.pk, "resume", "queue", False),
        ("flowcontrolkey", key.pk, "pause", "key", True),
        ("flowcontrolkey", key.pk, "resume", "key", False),
        ("flowcontrolkey", key.pk, "reset_rate", "rate_count", 0),
        ("flowcontrolkey", key.pk, "unpin", "pinned", False),
        ("schedule", schedule.pk, "pause", "schedule", True),
        ("schedule", schedule.pk, "resume", "schedule", False),
    ]
    for model, pk, action, field, after in steps:
        before = state()
        act(viewer, model, action, pk)
        assert state() == before, f"a viewer's {model} {action} took effect"
        act(operator, model, action, pk)
        assert state()[field] == after, f"the operator's {model} {action} did not"
    act(viewer, "schedule", "remove", schedule.pk)
    assert Schedule.objects.filter(pk=schedule.pk).exists()
    act(operator, "schedule", "remove", schedule.pk)
    assert not Schedule.objects.filter(pk=schedule.pk).exists()


def test_csrf_is_enforced_on_actions() -> None:
    entry = make_failed()
    client = login(OPERATOR)
    client.handler.enforce_csrf_checks = True
    res = act(client, "dlqentry", "retry", entry.pk)
    assert res.status_code == 403
    assert DlqEntry.objects.filter(pk=entry.pk).exists()


def test_message_filters_find_the_right_rows_and_bad_input_is_a_message() -> None:
    target = make_message(
        url="http://127.0.0.1:9/target",
        topic_name="grp",
        queue_name="qq",
        schedule_id="sch",
        labels=",red,blue,",
        flow_control_key="fk",
    )
    other = make_message(url="http://127.0.0.1:9/other")
    client = login(VIEWER)
    for params in (
        {"destination": "target"},
        {"url_group": "grp"},
        {"queue": "qq"},
        {"schedule": "sch"},
        {"label": "blue"},
        {"flow_key": "fk"},
        {"q": target.message_id},
        {"state": "CREATED", "destination": "/target"},
    ):
        text = client.get("/admin/broker/message/", params).content.decode()
        assert target.message_id in text and other.message_id not in text, params
    today = timezone.now().date().isoformat()
    text = client.get("/admin/broker/message/", {"created_from": today}).content.decode()
    assert target.message_id in text
    text = client.get("/admin/broker/message/", {"created_until": "2000-01-01"}).content.decode()
    assert target.message_id not in text
    bad = client.get("/admin/broker/message/", {"created_from": "yesterday-ish"})
    assert bad.status_code == 200
    assert "is not a date" in bad.content.decode()


def test_message_detail_shows_the_attempt_timeline_body_and_callbacks() -> None:
    entry = make_failed()
    message = entry.message
    message.payload.body = b"\xff\x00binary"
    message.payload.save()
    LogEntry.objects.create(
        message=message,
        state=LogEntry.State.RETRY,
        time=timezone.now(),
        response_status=503,
        response_body=b"unavailable",
        next_delivery_time=timezone.now() + timedelta(seconds=30),
    )
    callback = make_message(url="http://127.0.0.1:9/cb", source_message=message)
    text = login(VIEWER).get(f"/admin/broker/message/{message.pk}/change/").content.decode()
    assert "console-timeline" in text and "503" in text and "unavailable" in text
    assert "(hex) ff 00 62" in text
    assert callback.message_id in text


def _queries(path: str, client: Client) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(path).status_code == 200
    return len(captured)


@pytest.mark.parametrize(
    "path",
    [
        "/admin/",
        "/admin/broker/message/",
        "/admin/broker/logentry/",
        "/admin/broker/logentry/?state=ERROR&host=127.0.0.1:9",
        "/admin/broker/logentry/?fromDate=2000-01-01&label=x&queueName=q1",
        "/admin/broker/dlqentry/",
        "/admin/broker/queue/",
        "/admin/broker/flowcontrolkey/",
        "/admin/broker/schedule/",
        "/admin/groups/urlgroup/",
        # The operator's pages: the tools column and the forms.
        "operator:/admin/broker/queue/",
        "operator:/admin/broker/flowcontrolkey/",
        "operator:/admin/broker/dlqentry/retry-with-overrides/?ids=all",
        "operator:/admin/broker/queue/first/parallelism/",
        "operator:/admin/broker/flowcontrolkey/first/pin/",
    ],
)
def test_pages_make_the_same_number_of_queries_for_few_and_many_rows(path: str) -> None:
    role, _, path = path.rpartition(":") if path.startswith("operator:") else ("", "", path)
    client = login(OPERATOR if role else VIEWER)

    def url() -> str:
        # Filled in once the rows exist: every DLQ entry, the first queue and key.
        ids = ",".join(str(pk) for pk in DlqEntry.objects.values_list("pk", flat=True))
        first_queue = Queue.objects.order_by("pk").values_list("pk", flat=True).first()
        first_key = FlowControlKey.objects.order_by("pk").values_list("pk", flat=True).first()
        return (
            path.replace("ids=all", f"ids={ids}")
            .replace("queue/first/", f"queue/{first_queue}/")
            .replace("flowcontrolkey/first/", f"flowcontrolkey/{first_key}/")
        )

    def grow(n: int) -> None:
        now = timezone.now()
        for i in range(n):
            entry = make_failed(url=f"http://127.0.0.1:9/d{i % 7}")
            Queue.objects.get_or_create(
                name=f"q{entry.pk}", defaults={"created_at": now, "updated_at": now}
            )
            make_message(queue_name=f"q{entry.pk}", flow_control_key=f"k{i}", waiting_for="flow")
            FlowControlKey.objects.get_or_create(
                key=f"k{i}", defaults={"created_at": now, "updated_at": now}
            )
            group = UrlGroup.objects.create(name=f"g{entry.pk}", created_at=now, updated_at=now)
            Endpoint.objects.create(group=group, url="http://127.0.0.1:9/e")
            Schedule.objects.create(
                schedule_id=f"s{entry.pk}",
                destination="http://127.0.0.1:9/s",
                cron="*/5 * * * *",
                payload=entry.message.payload,
                created_at=now,
                updated_at=now,
            )
            Heartbeat.objects.create(
                identity=f"worker@h:{entry.pk}",
                kind="worker",
                hostname="h",
                pid=entry.pk,
                started_at=now,
                seen_at=now,
            )

    grow(2)
    few = _queries(url(), client)
    grow(20)
    many = _queries(url(), client)
    assert many == few, f"{path}: {few} queries with few rows, {many} with more (N+1)"


def test_dashboard_shows_what_is_failing_waiting_and_paused() -> None:
    now = timezone.now()
    make_failed(url="http://127.0.0.1:9/broken")
    Queue.objects.create(name="held-q", paused=True, created_at=now, updated_at=now)
    make_message(queue_name="held-q")
    make_message(flow_control_key="busy-key", waiting_for="flow")
    delivered = make_message(
        state=Message.State.DELIVERED, due_at=None, finished_at=now, created_at=now
    )
    LogEntry.objects.create(message=delivered, state=LogEntry.State.DELIVERED, time=now)
    # Five hours ago: on the day's chart, not the hour's.
    LogEntry.objects.create(
        message=delivered, state=LogEntry.State.DELIVERED, time=now - timedelta(hours=5)
    )
    text = login(VIEWER).get("/admin/").content.decode()
    dlq = text.split('id="dash-dlq"', 1)[1].split("</div>", 1)[0]
    assert ">1</a>" in dlq
    failing = text.split('id="dash-failing"', 1)[1].split("</table>", 1)[0]
    assert "http://127.0.0.1:9/broken" in failing and "boom" in failing
    queues = text.split('id="dash-queues"', 1)[1].split("</table>", 1)[0]
    assert "held-q" in queues and "paused" in queues
    assert "busy-key" in text.split('id="dash-waitlists"', 1)[1].split("</table>", 1)[0]
    hour = text.split('id="dash-chart-hour"', 1)[1].split("</svg>", 1)[0]
    day = text.split('id="dash-chart-day"', 1)[1].split("</svg>", 1)[0]
    assert hour.count('<polyline class="series"') == day.count('<polyline class="series"') == 3
    assert "deliveries: 1" in hour and "failures: 1" in hour
    assert "deliveries: 2" in day and "failures: 1" in day
    assert "p50" in text and "Messages now" in text
    assert "/static/admin/css/base.css" in text


def test_dlq_actions_ask_for_confirmation_first() -> None:
    entry = make_failed()
    client = login(OPERATOR)
    for action, words in (("retry", "published again"), ("remove", "for good")):
        page = client.post(
            "/admin/broker/dlqentry/", {"action": action, "_selected_action": [str(entry.pk)]}
        )
        assert page.status_code == 200
        text = page.content.decode()
        assert words in text and entry.dlq_id in text and 'name="confirm"' in text
        assert DlqEntry.objects.filter(pk=entry.pk).exists()


def test_dlq_filters_and_a_bad_status_is_a_message() -> None:
    broken = make_failed(url="http://127.0.0.1:9/broken")
    fine = make_failed(url="http://127.0.0.1:9/fine")
    Message.objects.filter(pk=broken.message_id).update(last_response_status=502)
    client = login(VIEWER)
    text = client.get("/admin/broker/dlqentry/", {"destination": "broken"}).content.decode()
    assert broken.dlq_id in text and fine.dlq_id not in text
    text = client.get("/admin/broker/dlqentry/", {"status": "502"}).content.decode()
    assert broken.dlq_id in text and fine.dlq_id not in text
    bad = client.get("/admin/broker/dlqentry/", {"status": "five hundred"})
    assert bad.status_code == 200 and "expected a number" in bad.content.decode()


def test_signing_keys_are_masked_and_only_an_operator_rotates_them_after_confirming(
    settings: Any,
) -> None:
    from broker.services.credentials import credentials_forget, credentials_get

    settings.QSTASH_CURRENT_SIGNING_KEY = settings.QSTASH_NEXT_SIGNING_KEY = ""
    credentials_forget()
    before = credentials_get()
    row = Credentials.objects.get()
    viewer, operator = login(VIEWER), login(OPERATOR)
    page = viewer.get("/admin/broker/credentials/").content.decode()
    assert before.current[:8] in page and before.current not in page
    assert before.token not in page

    act(viewer, "credentials", "rotate", row.pk)
    assert Credentials.objects.get().current_signing_key == before.current
    asked = operator.post(
        "/admin/broker/credentials/", {"action": "rotate", "_selected_action": [str(row.pk)]}
    )
    assert "becomes the current key" in asked.content.decode()
    assert Credentials.objects.get().current_signing_key == before.current
    act(operator, "credentials", "rotate", row.pk)
    assert Credentials.objects.get().current_signing_key == before.next
    credentials_forget()


@pytest.mark.parametrize("path", ["/admin/broker/message/", "/admin/broker/logentry/"])
def test_search_by_id_is_exact_and_indexed_not_a_scan(path: str) -> None:
    # "=field" in search_fields compares UPPER(...) = UPPER(...), which no index serves.
    message = make_message()
    LogEntry.objects.create(message=message, state=LogEntry.State.CREATED, time=timezone.now())
    client = login(VIEWER)
    with CaptureQueriesContext(connection) as captured:
        text = client.get(path, {"q": message.message_id}).content.decode()
    assert message.message_id in text
    searched = [q["sql"] for q in captured if message.message_id in q["sql"]]
    assert searched and not any("UPPER(" in sql or "LIKE" in sql for sql in searched), searched


def test_publish_form_is_for_operators_and_publishes_like_the_api() -> None:
    viewer, operator = login(VIEWER), login(OPERATOR)
    form = {
        "destination": "http://127.0.0.1:9/from-form",
        "method": "PUT",
        "headers": "Content-Type: text/plain\nUpstash-Forward-X-Trace: abc",
        "body": "hello from the console",
        "delay": "1h",
        "retries": "2",
    }
    assert viewer.get("/admin/publish/").status_code == 403
    assert viewer.post("/admin/publish/", form).status_code == 403
    assert not Message.objects.exists()
    assert 'id="publish-link"' not in viewer.get("/admin/").content.decode()
    assert 'id="publish-link"' in operator.get("/admin/").content.decode()

    done = operator.post("/admin/publish/", form)
    made = Message.objects.get()
    assert done.status_code == 302 and done["Location"].endswith(f"/{made.pk}/change/")
    assert (made.url, made.method, made.max_retries, made.body) == (
        "http://127.0.0.1:9/from-form",
        "PUT",
        2,
        b"hello from the console",
    )
    assert made.header.get("X-Trace") == ["abc"]
    assert made.not_before > timezone.now() + timedelta(minutes=59)

    for bad, words in (
        ({**form, "delay": "soon"}, "delay"),
        ({**form, "destination": "ftp://x"}, "destination"),
        ({**form, "headers": "no colon here"}, "Name: value"),
        ({**form, "retries": "-1"}, "greater than or equal"),
    ):
        page = operator.post("/admin/publish/", bad)
        assert page.status_code == 200 and words in page.content.decode(), bad
    assert Message.objects.count() == 1
