"""The API's one error shape: ``{"error": "..."}`` with a 4xx status."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from broker.errors import ApplicationError


def _text(detail: Any) -> str:
    if isinstance(detail, list):
        return "; ".join(_text(d) for d in detail)
    if isinstance(detail, dict):
        return "; ".join(f"{k}: {_text(v)}" for k, v in detail.items())
    return str(detail)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ApplicationError):
        return Response({"error": exc.message}, status=exc.status)
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
    return JsonResponse({"error": "internal error"}, status=500)
