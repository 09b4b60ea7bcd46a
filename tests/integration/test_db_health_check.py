"""A kept connection the server dropped is replaced before a request uses it.

The health check (qstash_site/db_backend) asks the server only when the connection's
socket has something to read: a dropped connection always does (the server's FATAL,
then end of file).
"""

from __future__ import annotations

import select

import psycopg
import pytest
from django.db import close_old_connections, connection
from django.test import Client

from tests.conftest import TEST_TOKEN, wait_until


@pytest.mark.django_db(transaction=True)
def test_publish_after_the_server_dropped_the_connection_uses_a_new_one() -> None:
    connection.ensure_connection()
    dropped = connection.connection.info.backend_pid
    with psycopg.connect(**connection.get_connection_params(), autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [dropped])
    fd = connection.connection.pgconn.socket
    wait_until(lambda: select.select([fd], [], [], 0)[0], what="the server's goodbye")

    # What gunicorn's handler runs at every request start (the test client skips it):
    # the connection is due for its health check again.
    close_old_connections()
    answer = Client().post(
        "/v2/publish/http://127.0.0.1:9/after-drop",
        data=b"x",
        content_type="text/plain",
        headers={"Authorization": f"Bearer {TEST_TOKEN}"},
    )
    assert answer.status_code == 200, answer.content
    assert connection.connection.info.backend_pid != dropped
