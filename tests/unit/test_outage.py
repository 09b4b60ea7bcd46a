"""Which database errors are an outage (503, retry later) and which are a failed request."""

from __future__ import annotations

import psycopg
import pytest
from django.db import InterfaceError, OperationalError

from broker.api.outage import is_outage


def _operational(sqlstate: str | None) -> OperationalError:
    cause = psycopg.errors.lookup(sqlstate)("x") if sqlstate else psycopg.OperationalError("x")
    error = OperationalError("x")
    error.__cause__ = cause
    return error


@pytest.mark.parametrize(
    ("error", "outage"),
    [
        (_operational(None), True),  # connection refused: raised by the client, no SQLSTATE
        (_operational("08006"), True),  # connection failure
        (_operational("57P01"), True),  # admin shutdown
        (_operational("57P03"), True),  # cannot connect now (starting up)
        (_operational("53300"), True),  # too many connections
        (_operational("57014"), False),  # query canceled (a statement timeout): this request
        (_operational("54000"), False),  # program limit exceeded (an index row too large)
        (_operational("53100"), False),  # disk full: not cured by retrying in 5 s
        (InterfaceError("connection already closed"), True),
        (ValueError("not a database error"), False),
    ],
)
def test_only_errors_that_mean_unreachable_are_an_outage(error: Exception, outage: bool) -> None:
    assert is_outage(error) is outage
