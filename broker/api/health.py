"""``GET /healthz``: for load balancers and orchestrators; no token needed."""

from __future__ import annotations

import logging

from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse

logger = logging.getLogger(__name__)


def healthz(request: HttpRequest) -> JsonResponse:
    """200 when PostgreSQL answers (the only thing a publish needs), else 503."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError:
        logger.warning("health check: database unreachable", exc_info=True)
        return JsonResponse({"error": "database unreachable"}, status=503)
    return JsonResponse({"status": "ok"})
