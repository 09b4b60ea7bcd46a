"""PostgreSQL unreachable: the API and the health check answer 503, never a 500 traceback.

A database that is down or restarting is not a bug in the request, and a client
can do something useful with the answer: try again shortly. So every ``/v2/``
request and ``/healthz`` that meets a database it cannot reach (``is_outage``)
answers 503 with ``Retry-After`` and the API's one error shape, and is logged as
a warning (one line, no traceback) rather than as a server error.

An outage can surface in three places, and each hands over to ``outage_response``:

- a DRF view, token authentication included (the token may be read from the
  database): ``broker.api.errors.exception_handler``;
- a plain Django view such as ``/healthz``: ``DatabaseOutageMiddleware.process_exception``;
- another middleware: Django turns an exception raised there into a response
  before any outer middleware sees it (so a ``try`` around ``get_response``
  would catch nothing), and the only code it runs on the way is the ``handler500``
  view, ``broker.api.errors.server_error``, which asks ``database_outage()``.

Recovery needs nothing here: a failed connection is closed at the end of the
request (Django checks ``is_usable()`` after an error), and with
``CONN_HEALTH_CHECKS`` a connection that went stale while the server restarted
is replaced before its first query, instead of failing one request per process.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, JsonResponse
from django.http.response import HttpResponseBase
from django.utils.log import log_response

logger = logging.getLogger(__name__)

# SQLSTATEs that mean "the server is not there for you right now": connection
# exceptions (class 08), shutdowns, "cannot connect now" and too many connections.
# Any other OperationalError (a statement timeout, an index row too large) is a
# failure of this request, not an outage.
_UNAVAILABLE_PREFIXES = ("08", "57P", "53300")
RETRY_AFTER_SECONDS = 5
MESSAGE = "the database is unavailable; retry later"


def covers(path: str) -> bool:
    """The API and the health check; the console keeps Django's own error pages."""
    return path.startswith("/v2/") or path == "/healthz"


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` says the database cannot be reached (rather than refused a query)."""
    if isinstance(exc, InterfaceError):
        return True
    if not isinstance(exc, OperationalError):
        return False
    # Connection failures raised by the client library carry no SQLSTATE.
    sqlstate = getattr(exc.__cause__, "sqlstate", None)
    return sqlstate is None or sqlstate.startswith(_UNAVAILABLE_PREFIXES)


def database_outage() -> BaseException | None:
    """The database error being handled right now, if that is what is being handled."""
    exc = sys.exc_info()[1]
    return exc if exc is not None and is_outage(exc) else None


def outage_response(request: HttpRequest, exc: BaseException) -> JsonResponse:
    response = JsonResponse(
        {"error": MESSAGE}, status=503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)}
    )
    # Logged here, as a warning, which also marks the response as logged: otherwise
    # django.request reports every 5xx as an error with a traceback.
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    log_response(
        "Service Unavailable (database: %s): %s",
        reason,
        request.path,
        response=response,
        request=request,
        logger=logger,
        level="warning",
    )
    return response


class DatabaseOutageMiddleware:
    """503 for a database error that escapes a plain view under ``/v2/`` or ``/healthz``."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> JsonResponse | None:
        if covers(request.path) and is_outage(exception):
            return outage_response(request, exception)
        return None
