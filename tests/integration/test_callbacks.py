"""Callbacks after every attempt, failure callbacks after the last one, and redaction."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import httpx

from broker.models import DlqEntry, LogEntry, Message
from tests.conftest import Receiver as Destination
from tests.conftest import Reply, wait_until
from tests.helpers import AUTH, VERIFIER, api


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def redacted(value: bytes) -> str:
    return "REDACTED:" + hashlib.sha256(value).hexdigest()


def lower_keys(headers: dict[str, Any]) -> dict[str, Any]:
    return {k.lower(): v for k, v in headers.items()}


def states_of(message: Message) -> list[str]:
    return list(
        LogEntry.objects.filter(message=message).order_by("pk").values_list("state", flat=True)
    )


def test_callback_is_called_after_every_attempt_with_the_documented_body(
    client_sdk: Any, receiver: Destination
) -> None:
    receiver.script(
        "/dest",
        Reply(status=500, body=b"first failure", headers={"X-Resp": "r1"}),
        Reply(status=500, body=b"second failure", headers={"X-Resp": "r2"}),
        Reply(status=200, body=b"finally", headers={"X-Resp": "ok"}),
    )
    dest, cb, fcb = receiver.url("/dest"), receiver.url("/cb"), receiver.url("/fcb")
    res = client_sdk.message.publish(
        url=dest,
        body='{"order": 7}',
        content_type="application/json",
        headers={"X-Src": "src-value"},
        retries=2,
        retry_delay="100",
        callback=cb,
        failure_callback=fcb,
        callback_headers={"Upstash-Callback-Forward-X": "cb-forwarded"},
    )

    calls = receiver.wait_for(3, "/cb")
    assert len(calls) == 3
    bodies = sorted((json.loads(c.body) for c in calls), key=lambda b: b["retried"])
    assert [b["retried"] for b in bodies] == [0, 1, 2]
    assert [b["status"] for b in bodies] == [500, 500, 200]
    assert [base64.b64decode(b["body"]) for b in bodies] == [
        b"first failure",
        b"second failure",
        b"finally",
    ]
    assert [lower_keys(b["header"])["x-resp"] for b in bodies] == [["r1"], ["r2"], ["ok"]]
    for body in bodies:
        assert body["maxRetries"] == 2
        assert body["sourceMessageId"] == res.message_id
        assert body["url"] == dest
        assert body["method"] == "POST"
        assert lower_keys(body["sourceHeader"])["x-src"] == ["src-value"]
        assert base64.b64decode(body["sourceBody"]) == b'{"order": 7}'
        assert body["callerIP"] == "127.0.0.1"
        assert isinstance(body["createdAt"], int) and isinstance(body["notBefore"], int)
        assert "dlqId" not in body
        assert "topicName" not in body

    for call in calls:
        assert call.method == "POST"
        assert call.headers["X"] == "cb-forwarded"
        VERIFIER.verify(
            signature=call.headers["Upstash-Signature"], body=call.body.decode(), url=cb
        )
        assert call.headers["Upstash-Message-Id"] != res.message_id
    # The destination saw three attempts; the forward header is not sent there.
    attempts = receiver.received("/dest")
    assert [a.headers["Upstash-Retried"] for a in attempts] == ["0", "1", "2"]
    assert all("X" not in a.headers for a in attempts)

    source = Message.objects.get(message_id=res.message_id)
    wait_until(
        lambda: Message.objects.filter(source_message=source, state="DELIVERED").count() == 3,
        what="three callback messages DELIVERED",
    )
    # It succeeded in the end: no failure callback was published.
    assert not Message.objects.filter(url=fcb).exists()
    assert receiver.received("/fcb") == []


def test_callback_messages_are_messages_with_their_own_log(
    client_sdk: Any, live: str, receiver: Destination
) -> None:
    cb = receiver.url("/own-cb")
    res = client_sdk.message.publish(url=receiver.url("/fine"), body="x", callback=cb)
    (call,) = receiver.wait_for(1, "/own-cb")

    source = Message.objects.get(message_id=res.message_id)
    callback = wait_until(
        lambda: Message.objects.filter(source_message=source, state="DELIVERED").first(),
        what="callback message DELIVERED",
    )
    assert callback.url == cb
    assert callback.message_id == call.headers["Upstash-Message-Id"]
    assert callback.message_id != res.message_id
    assert states_of(callback) == ["CREATED", "ACTIVE", "DELIVERED"]
    assert json.loads(callback.body)["sourceMessageId"] == res.message_id
    events = api(live, "GET", "/v2/events", params={"messageId": callback.message_id}).json()
    assert {e["state"] for e in events["events"]} == {"CREATED", "ACTIVE", "DELIVERED"}
    assert all(e["url"] == cb for e in events["events"])


def test_failure_callback_is_called_once_with_the_dlq_id(
    client_sdk: Any, receiver: Destination
) -> None:
    receiver.script("/broken", Reply(status=500, body=b"nope"))
    fcb = receiver.url("/failed")
    res = client_sdk.message.publish(
        url=receiver.url("/broken"),
        body="lost",
        retries=0,
        failure_callback=fcb,
        failure_callback_headers={"Upstash-Failure-Callback-Forward-Y": "why"},
    )
    (call,) = receiver.wait_for(1, "/failed")
    entry = DlqEntry.objects.get(message__message_id=res.message_id)

    body = json.loads(call.body)
    assert body["dlqId"] == entry.dlq_id
    assert body["status"] == 500
    assert base64.b64decode(body["body"]) == b"nope"
    assert body["retried"] == 0 and body["maxRetries"] == 0
    assert body["sourceMessageId"] == res.message_id
    assert base64.b64decode(body["sourceBody"]) == b"lost"
    assert call.headers["Y"] == "why"
    VERIFIER.verify(signature=call.headers["Upstash-Signature"], body=call.body.decode(), url=fcb)

    source = Message.objects.get(message_id=res.message_id)
    failure = wait_until(
        lambda: Message.objects.filter(source_message=source, state="DELIVERED").first(),
        what="failure callback DELIVERED",
    )
    assert Message.objects.filter(source_message=source).count() == 1
    assert states_of(failure) == ["CREATED", "ACTIVE", "DELIVERED"]
    assert len(receiver.received("/failed")) == 1


def test_callback_settings_are_honoured(client_sdk: Any, receiver: Destination) -> None:
    receiver.script("/cbput", Reply(status=500), Reply(status=200))
    res = client_sdk.message.publish(
        url=receiver.url("/target"),
        body="x",
        retries=3,
        callback=receiver.url("/cbput"),
        callback_headers={
            "Upstash-Callback-Method": "PUT",
            "Upstash-Callback-Retries": "1",
            "Upstash-Callback-Retry-Delay": "100",
        },
    )
    calls = receiver.wait_for(2, "/cbput")
    assert [c.method for c in calls] == ["PUT", "PUT"]
    assert [c.headers["Upstash-Retried"] for c in calls] == ["0", "1"]
    callback = Message.objects.get(source_message__message_id=res.message_id)
    assert (callback.method, callback.max_retries, callback.retry_delay_expression) == (
        "PUT",
        1,
        "100",
    )
    wait_until(
        lambda: Message.objects.get(pk=callback.pk).state == Message.State.DELIVERED,
        what="callback DELIVERED after its own retry",
    )
    assert states_of(callback) == ["CREATED", "ACTIVE", "ERROR", "RETRY", "ACTIVE", "DELIVERED"]


# --- redaction ---------------------------------------------------------------------------


REDACT = {"Upstash-Redact-Fields": "body,header[Authorization-X]"}


def publish_redacted(live: str, url: str, body: bytes, **extra: str) -> str:
    headers = {
        **AUTH,
        **REDACT,
        "Upstash-Forward-Authorization-X": "Bearer hidden",
        "Upstash-Forward-Visible": "shown",
        **extra,
    }
    res = httpx.post(f"{live}/v2/publish/{url}", content=body, headers=headers, timeout=30)
    assert res.status_code == 200, res.text
    return str(res.json()["messageId"])


def test_redacted_fields_are_hidden_in_the_api_but_delivered_for_real(
    live: str, receiver: Destination
) -> None:
    body = b"secret body"
    # Delayed, so GET /v2/messages/{id} still shows it.
    pending = publish_redacted(live, receiver.url("/later"), body, **{"Upstash-Delay": "1h"})
    got = api(live, "GET", f"/v2/messages/{pending}")
    assert got.status_code == 200, got.text
    data = got.json()
    assert data["body"] == redacted(body)
    shown = lower_keys(data["header"])
    assert shown["authorization-x"] == [redacted(b"Bearer hidden")]
    assert shown["visible"] == ["shown"]
    assert "secret body" not in got.text and "Bearer hidden" not in got.text

    # Sent now: the destination gets the real values, the log shows the hashes.
    now = publish_redacted(live, receiver.url("/redacted"), body)
    (delivered,) = receiver.wait_for(1, "/redacted")
    assert delivered.body == body
    assert delivered.headers["Authorization-X"] == "Bearer hidden"
    assert delivered.headers["Visible"] == "shown"
    wait_until(
        lambda: Message.objects.get(message_id=now).state == Message.State.DELIVERED,
        what="DELIVERED",
    )

    for message_id in (pending, now):
        res = api(live, "GET", "/v2/events", params={"messageId": message_id})
        events = res.json()["events"]
        assert events
        assert "Bearer hidden" not in res.text
        for event in events:
            assert event["body"] == redacted(body)
            assert lower_keys(event["header"])["authorization-x"] == [redacted(b"Bearer hidden")]
            assert lower_keys(event["header"])["visible"] == ["shown"]


def test_redacted_fields_are_hidden_in_the_dlq_and_callbacks_and_a_retry_sends_real_values(
    live: str, receiver: Destination
) -> None:
    receiver.script("/redfail", Reply(status=500, body=b"bad"), Reply(status=200))
    body = b"card=4242"
    headers = {
        **AUTH,
        **REDACT,
        "Upstash-Forward-Authorization-X": "token-123",
        "Upstash-Retries": "0",
        "Upstash-Failure-Callback": receiver.url("/redfcb"),
    }
    res = httpx.post(
        f"{live}/v2/publish/{receiver.url('/redfail')}", content=body, headers=headers, timeout=30
    )
    assert res.status_code == 200, res.text
    message_id = res.json()["messageId"]

    (first,) = receiver.wait_for(1, "/redfail")
    assert first.body == body
    assert first.headers["Authorization-X"] == "token-123"

    entry = wait_until(
        lambda: DlqEntry.objects.filter(message__message_id=message_id).first(), what="DLQ entry"
    )
    dlq = api(live, "GET", f"/v2/dlq/{entry.dlq_id}")
    assert dlq.status_code == 200
    assert dlq.json()["body"] == redacted(body)
    assert lower_keys(dlq.json()["header"])["authorization-x"] == [redacted(b"token-123")]
    listed = api(live, "GET", "/v2/dlq").json()["messages"]
    assert [m["body"] for m in listed] == [redacted(body)]
    assert "token-123" not in dlq.text and "card=4242" not in dlq.text

    (failure,) = receiver.wait_for(1, "/redfcb")
    callback_body = json.loads(failure.body)
    assert callback_body["sourceBody"] == redacted(body)
    assert lower_keys(callback_body["sourceHeader"])["authorization-x"] == [redacted(b"token-123")]

    retry = api(live, "POST", f"/v2/dlq/retry/{entry.dlq_id}")
    assert retry.status_code == 201, retry.text
    attempts = receiver.wait_for(2, "/redfail")
    assert attempts[1].body == body
    assert attempts[1].headers["Authorization-X"] == "token-123"
    assert attempts[1].headers["Upstash-Message-Id"] == retry.json()["messageId"]


def test_callback_of_a_group_message_names_the_group_and_endpoint(
    client_sdk: Any, receiver: Destination
) -> None:
    client_sdk.url_group.upsert_endpoints(
        url_group="cbgroup", endpoints=[{"url": receiver.url("/member"), "name": "m1"}]
    )
    res = client_sdk.message.publish(
        url_group="cbgroup", body="g", callback=receiver.url("/groupcb")
    )
    assert isinstance(res, list)
    (call,) = receiver.wait_for(1, "/groupcb")
    body = json.loads(call.body)
    assert (body["topicName"], body["endpointName"]) == ("cbgroup", "m1")
    assert body["url"] == receiver.url("/member")
    assert body["sourceMessageId"] == res[0].message_id
    assert body["status"] == 200


def test_py_sdk_callback_header_quirk_is_accepted_and_not_forwarded(
    client_sdk: Any, receiver: Destination
) -> None:
    # PY sends callback_headers={"X-Quirk": "v"} as "Upstash-Callback-X-Quirk" (no -Forward-).
    res = client_sdk.message.publish(
        url=receiver.url("/q"),
        body="q",
        callback=receiver.url("/qcb"),
        callback_headers={"X-Quirk": "v"},
    )
    (call,) = receiver.wait_for(1, "/qcb")
    (delivered,) = receiver.wait_for(1, "/q")
    for got in (call, delivered):
        assert "X-Quirk" not in got.headers
        assert not any(k.lower().startswith("upstash-callback") for k in got.headers)
    assert json.loads(call.body)["sourceMessageId"] == res.message_id
