"""The API's edge: what every ``/v2/`` request must be before a view sees it.

- The body fits ``QSTASH_MAX_REQUEST_BYTES`` (413). A chunked body, which WSGI
  hands over without a length, is read here up to that cap, so every view sees
  the whole body; a server that cannot de-chunk it gets a 411.
- The path, the query string and the header values hold no control character
  and no lone surrogate (400 naming the part): such text cannot be stored in
  PostgreSQL, encoded as UTF-8 or sent on as a header.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

API_PREFIX = "/v2/"

# C0 controls but tab, DEL and UTF-16 surrogates.
BAD_TEXT = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\ud800-\udfff]")
_BAD_PATH = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


def _error(message: str, status: int) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def _problem(request: HttpRequest) -> JsonResponse | None:
    if _BAD_PATH.search(request.path):
        return _error("invalid path: it holds a control character or invalid unicode", 400)
    for name, values in request.GET.lists():
        if _BAD_PATH.search(name) or any(_BAD_PATH.search(v) for v in values):
            return _error(
                f"invalid query parameter {name[:60]!r}: it holds a control character "
                "or invalid unicode",
                400,
            )
    for key, value in request.META.items():
        if key.startswith("HTTP_") and isinstance(value, str) and BAD_TEXT.search(value):
            header = key[5:].replace("_", "-").title()
            return _error(f"invalid header {header}: it holds a control character", 400)
    return None


def _read_body(request: HttpRequest) -> JsonResponse | None:
    cap = settings.QSTASH_MAX_REQUEST_BYTES
    too_big = f"request body is larger than the maximum of {cap} bytes"
    if "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
        if not request.META.get("wsgi.input_terminated"):
            return _error(
                "a chunked request body needs a server that de-chunks it: send Content-Length", 411
            )
        data = request.META["wsgi.input"].read(cap + 1)
        if len(data) > cap:
            return _error(too_big, 413)
        # From here on the body is an ordinary one with a length.
        request._stream = io.BytesIO(data)  # type: ignore[attr-defined]
        request.META["CONTENT_LENGTH"] = str(len(data))
        return None
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return _error("invalid Content-Length", 400)
    if declared > cap:
        return _error(too_big, 413)
    return None


class ApiEdgeMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith(API_PREFIX):
            refusal = _read_body(request) or _problem(request)
            if refusal is not None:
                return refusal
        return self.get_response(request)
