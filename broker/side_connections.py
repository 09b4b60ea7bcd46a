"""Connections a process opens beside Django's, for a thread of its own.

The notifier and the group-commit writer each hold one psycopg connection that
outlives any request. They take Django's connection parameters (TLS options, the
test database's name and ``prepare_threshold`` included), less Django's
client-side binding cursor, so their statements are prepared on the server.
"""

from __future__ import annotations

from django.db import connection


def side_connection_params(application_name: str) -> dict[str, object]:
    """psycopg.connect keywords for a side connection named ``application_name``.

    Read in a thread that has Django's connection settings (a request's), before
    the side thread starts.
    """
    params = dict(connection.get_connection_params())
    params.pop("cursor_factory", None)
    params["application_name"] = application_name
    return params
