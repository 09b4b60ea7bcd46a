"""Django's PostgreSQL backend with a health check that costs no round trip.

``CONN_HEALTH_CHECKS`` makes Django test a kept connection before the first query of
every request, with a ``SELECT 1``: a second round trip on a publish that otherwise
makes one, about a third of its time under load (py-spy, issue 10). A connection
the server has dropped (a restart, ``pg_terminate_backend``, an idle timeout) has
said so on its socket: the server sends its FATAL and closes, so the socket turns
readable. An idle client connection receives nothing otherwise (the web and
worker connections LISTEN to nothing), so a quiet socket means usable, and only a
readable one is worth Django's real check. A peer that vanished without a word is
missed as ``SELECT 1`` missed it: both would wait on the socket.
"""

from __future__ import annotations

import select

import psycopg
from django.db.backends.postgresql import base


def _socket_has_news(connection: psycopg.Connection[object]) -> bool:
    """True when the server sent something on an idle connection (or it has no socket)."""
    try:
        fd = connection.pgconn.socket
    except psycopg.OperationalError:
        return True
    readable, _, _ = select.select([fd], [], [], 0)
    return bool(readable)


class DatabaseWrapper(base.DatabaseWrapper):
    def is_usable(self) -> bool:
        if self.connection is None or self.connection.closed or self.connection.broken:
            return False
        if not _socket_has_news(self.connection):
            return True
        return bool(super().is_usable())
