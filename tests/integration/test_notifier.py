"""The notifier thread: a publish's NOTIFY leaves after its commit, on a connection of its
own, and a NOTIFY that cannot be sent never costs the publish (issue 10)."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import psycopg
import pytest
from django.db import connection, transaction

from broker import wakeup
from broker.models import Message
from tests.conftest import Receiver, wait_until
from tests.helpers import AUTH


def _listener() -> psycopg.Connection[Any]:
    params = dict(connection.get_connection_params())
    params.pop("cursor_factory", None)
    conn = psycopg.connect(**params, autocommit=True)
    conn.execute(f"LISTEN {wakeup.CHANNEL}")
    return conn


def _heard(conn: psycopg.Connection[Any], timeout: float) -> list[str]:
    return [n.payload for n in conn.notifies(timeout=timeout, stop_after=1)]


def _notifier_connections() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'qstash-notifier'"
            " AND datname = current_database()"
        )
        row = cursor.fetchone()
    return int(row[0]) if row else 0


def test_a_publish_is_announced_with_its_id_and_the_idle_notifier_lets_go(
    live: str, receiver: Receiver
) -> None:
    listener = _listener()
    try:
        res = httpx.post(
            f"{live}/v2/publish/{receiver.url('/notified')}", content=b"x", headers=AUTH
        )
        assert res.status_code == 200, res.text
        pk = Message.objects.get(message_id=res.json()["messageId"]).pk
        heard = _heard(listener, 10)
        assert str(pk) in ",".join(heard).split(",")
    finally:
        listener.close()
    receiver.wait_for(1, "/notified", timeout=30)
    # Idle, the notifier holds no connection (a web process at rest holds none).
    wait_until(lambda: _notifier_connections() == 0, timeout=10, what="the notifier to let go")


def test_nothing_is_announced_before_the_rows_commit(transactional_db: Any) -> None:
    listener = _listener()
    try:
        with transaction.atomic():
            wakeup.notify_on_commit([987654321], None)
            assert _heard(listener, 0.5) == []
        assert _heard(listener, 10) == ["987654321"]
    finally:
        listener.close()


def test_a_notify_that_fails_costs_a_warning_not_the_publish(
    live: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    def refuse(params: dict[str, object]) -> Any:
        raise psycopg.OperationalError("connection refused (test)")

    wait_until(lambda: _notifier_connections() == 0, timeout=10, what="an idle notifier")
    monkeypatch.setattr(wakeup.notifier, "_connect", refuse)
    with caplog.at_level(logging.WARNING, logger="broker.wakeup"):
        res = httpx.post(f"{live}/v2/publish/{receiver.url('/swept')}", content=b"x", headers=AUTH)
        assert res.status_code == 200, res.text
        assert Message.objects.filter(message_id=res.json()["messageId"]).exists()
        wait_until(
            lambda: "due notification not sent" in caplog.text, timeout=10, what="the warning"
        )
    # The message is still delivered: the clock's sweep finds it due.
    receiver.wait_for(1, "/swept", timeout=30)
    # And the thread lives on: once it can connect again, publishes are announced.
    monkeypatch.undo()
    listener = _listener()
    try:
        res = httpx.post(f"{live}/v2/publish/{receiver.url('/again')}", content=b"x", headers=AUTH)
        pk = Message.objects.get(message_id=res.json()["messageId"]).pk
        assert str(pk) in ",".join(_heard(listener, 10)).split(",")
    finally:
        listener.close()
