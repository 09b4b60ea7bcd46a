"""A publish is delivered at once through the NOTIFY relay, not by the once-a-second sweep."""

from __future__ import annotations

import sys
from typing import Any

from django.db import connection

from broker.models import Message
from broker.wakeup import RELAY_LOCK_KEY
from tests.conftest import Process, Receiver, Services, wait_until


def relay_listening() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND objid = %s AND database = (SELECT oid FROM pg_database "
            "WHERE datname = current_database())",
            [RELAY_LOCK_KEY],
        )
        row = cursor.fetchone()
    return bool(row and row[0])


def test_publish_is_relayed_to_a_worker_by_a_clock_that_sweeps_once_an_hour(
    client_sdk: Any, receiver: Receiver, services: Services
) -> None:
    services.clock.stop()
    hourly = Process(
        "clock-hourly",
        [sys.executable, "manage.py", "qstash_clock", "--interval", "3600"],
        services.clock.env,
    )
    hourly.start()
    try:
        # Its one sweep runs at start; from then on only the relay can hand out work.
        wait_until(relay_listening, timeout=30, what="the clock to LISTEN")
        res = client_sdk.message.publish(url=receiver.url("/relayed"), body="now")
        (got,) = receiver.wait_for(1, "/relayed", timeout=30)
        assert got.body == b"now"
        assert got.headers["Upstash-Message-Id"] == res.message_id
        wait_until(
            lambda: Message.objects.get(message_id=res.message_id).state == "DELIVERED",
            what="DELIVERED",
        )
    finally:
        hourly.stop()
        services.clock.start()
