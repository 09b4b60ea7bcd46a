"""A ceiling on the time one API statement may take: ``QSTASH_API_STATEMENT_TIMEOUT_MS``.

Every filter of logs, the DLQ and bulk cancel is served by an index (migration 0002),
but a filter can still be costly: a path too short to give the trigram index anything
to search for, or a value that half the store matches combined with one that matches
nothing. Such a statement must not hold a connection and a web worker for minutes and
end in a 500. PostgreSQL cancels it after the ceiling (``SET LOCAL statement_timeout``,
so it applies to this transaction only and never to the worker's or the clock's
statements), and the request answers 503 with an error that names the filters, so the
client knows what to narrow.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import OperationalError, connection, transaction

from broker.errors import ApplicationError

QUERY_CANCELED = "57014"


class StatementTimeout(ApplicationError):
    def __init__(self, message: str) -> None:
        super().__init__(message, status=503)


def _cancelled(exc: BaseException) -> bool:
    return getattr(exc.__cause__, "sqlstate", None) == QUERY_CANCELED


@contextmanager
def statement_timeout(*, what: str, filters: Iterable[str]) -> Iterator[None]:
    """Run the block in a transaction whose statements stop after the ceiling.

    Raises ``StatementTimeout`` (503) naming ``what`` and ``filters`` when one is stopped;
    the block's writes, if any, are rolled back with it.
    """
    limit = settings.QSTASH_API_STATEMENT_TIMEOUT_MS
    if not limit or connection.vendor != "postgresql":
        with transaction.atomic():
            yield
        return
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SELECT set_config('statement_timeout', %s, true)", [str(limit)])
            yield
    except OperationalError as exc:
        if not _cancelled(exc):
            raise
        names = ", ".join(sorted(set(filters))) or "none"
        raise StatementTimeout(
            f"{what} took longer than {limit} ms and was stopped (filters: {names}); "
            "narrow it with fromDate/toDate or a more selective filter"
        ) from exc
