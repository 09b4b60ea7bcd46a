"""Nothing accepted is lost when a worker is killed mid-delivery or the broker is flushed."""

from __future__ import annotations

from typing import Any

import redis
from django.conf import settings

from broker.models import LogEntry, Message
from qstash_site.celery import app
from tests.conftest import Receiver, Reply, Services, wait_until


def test_killed_worker_loses_no_message_its_lease_expires_and_another_delivers(
    client_sdk: Any, receiver: Receiver, services: Services
) -> None:
    # The first attempt hangs long enough for the worker to be killed while in flight.
    receiver.script("/slow", Reply(delay=30), Reply(status=200))
    res = client_sdk.message.publish(url=receiver.url("/slow"), body="payload", timeout="3s")
    receiver.wait_for(1, "/slow")
    assert Message.objects.get(message_id=res.message_id).state == Message.State.ACTIVE

    services.worker.kill()
    services.worker.start()

    # Lease = timeout 3 s + margin 2 s; then the sweep hands it to the new worker.
    wait_until(
        lambda: Message.objects.get(message_id=res.message_id).state == Message.State.DELIVERED,
        timeout=40,
        what="redelivery after the lease expired",
    )
    attempts = receiver.received("/slow")
    assert len(attempts) == 2
    assert attempts[0].body == attempts[1].body == b"payload"
    assert attempts[0].headers["Upstash-Message-Id"] == attempts[1].headers["Upstash-Message-Id"]
    states = list(
        LogEntry.objects.filter(message__message_id=res.message_id)
        .order_by("pk")
        .values_list("state", flat=True)
    )
    assert states == ["CREATED", "ACTIVE", "ACTIVE", "DELIVERED"]


def test_flushed_broker_loses_no_message_the_sweep_redelivers_from_postgres(
    client_sdk: Any, receiver: Receiver, services: Services
) -> None:
    services.worker.stop()
    ids = [
        client_sdk.message.publish(url=receiver.url(f"/flush/{n}"), body=f"m{n}").message_id
        for n in range(20)
    ]
    # Every hint sent for those messages (by the relay and the sweep) is gone.
    if settings.CELERY_BROKER_URL.startswith("redis"):
        redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
    else:
        app.control.purge()
    assert receiver.received() == []

    services.worker.start()
    wait_until(
        lambda: Message.objects.filter(message_id__in=ids, state="DELIVERED").count() == 20,
        timeout=40,
        what="all 20 messages delivered after the flush",
    )
    bodies = sorted(r.body for r in receiver.received())
    assert bodies == sorted(f"m{n}".encode() for n in range(20))
