"""``GET /healthz``: for load balancers and orchestrators; no token needed."""

from __future__ import annotations

from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse

from broker.api.outage import outage_response


def healthz(request: HttpRequest) -> JsonResponse:
    """200 when PostgreSQL answers (the only thing a publish needs), else 503."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        return outage_response(request, exc)
    return JsonResponse({"status": "ok"})
