"""The API's one error shape: ``{"error": "..."}`` with a 4xx status, or 503 while the
database is unreachable (``broker/api/outage.py``)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse
from django.http.response import HttpResponseBase
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from broker.api import outage
from broker.errors import ApplicationError, NotStored


def _text(detail: Any) -> str:
    if isinstance(detail, list):
        return "; ".join(_text(d) for d in detail)
    if isinstance(detail, dict):
        return "; ".join(f"{k}: {_text(v)}" for k, v in detail.items())
    return str(detail)


def exception_handler(exc: Exception, context: dict[str, Any]) -> HttpResponseBase | None:
    if isinstance(exc, ApplicationError):
        return Response({"error": exc.message}, status=exc.status)
    if outage.is_outage(exc) or isinstance(exc, NotStored):
        request = context["request"]  # DRF's Request; Django's is inside it
        return outage.outage_response(getattr(request, "_request", request), exc)
    if isinstance(exc, exceptions.NotAuthenticated):
        exc.detail = exceptions.ErrorDetail(
            "missing token: use Authorization: Bearer <QSTASH_TOKEN>"
        )
    if isinstance(exc, exceptions.ParseError):
        exc.detail = exceptions.ErrorDetail(f"invalid JSON body: {exc.detail}")
    response = drf_exception_handler(exc, context)
    if response is not None:
        response.data = {"error": _text(getattr(exc, "detail", response.data))}
    return response


def not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse({"error": f"not found: {request.method} {request.path}"}, status=404)


def server_error(request: HttpRequest) -> JsonResponse:
    # Django calls this while still handling the exception, from wherever it was
    # raised (a middleware too), so a database outage can still be told apart here.
    exc = outage.database_outage()
    if exc is not None and outage.covers(request.path):
        return outage.outage_response(request, exc)
    return JsonResponse({"error": "internal error"}, status=500)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    """What Django refuses before any view: an unknown Host, too many query fields."""
    reason = str(exception) if exception is not None and str(exception) else "bad request"
    return JsonResponse({"error": f"invalid request: {reason}"}, status=400)
