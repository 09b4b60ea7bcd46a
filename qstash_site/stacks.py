"""Two middleware stacks: the API's short one, the console's full one.

The API (``/v2/`` and ``/healthz``) authenticates each request by its token, sets no
cookie and renders no page, so the session, CSRF, authentication, messages and
clickjacking middleware (and WhiteNoise, which serves the console's files) only cost
it time: about a fifth of a publish's Python (issue 10). ``settings.MIDDLEWARE``
stays the console's stack, so Django's own checks (the admin's, ``check --deploy``)
still read it, and the API's stack is that list less ``CONSOLE_ONLY_MIDDLEWARE``:
anything added to ``MIDDLEWARE`` (the edge checks, the outage handler, a test's
middleware) runs on both.

Why a middleware that owns a second handler, rather than a choice in ``wsgi.py``:
the test client and the live server build their handler from ``settings.MIDDLEWARE``
as gunicorn does, so every test goes through the stacks production uses. The API's
handler resolves the URL and runs the view itself, with only its own middleware's
``process_view`` and ``process_exception``: the console's CSRF check never sees an
API request, and nothing of the API's stack is skipped for the console.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, MiddlewareNotUsed
from django.core.handlers.base import BaseHandler
from django.core.handlers.exception import convert_exception_to_response
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.utils.module_loading import import_string

SELF = f"{__name__}.ApiStackMiddleware"


def is_api_path(path: str) -> bool:
    """The API and the health check: the paths the edge and outage middleware guard."""
    return path.startswith("/v2/") or path == "/healthz"


class _Stack(BaseHandler):
    """Django's request handling with ``middleware`` instead of ``settings.MIDDLEWARE``.

    ``BaseHandler.load_middleware`` reads the setting, so its loop is repeated here,
    for synchronous middleware only (the project serves WSGI).
    """

    def __init__(self, middleware: list[str]) -> None:
        self._view_middleware: list[Any] = []
        self._template_response_middleware: list[Any] = []
        self._exception_middleware: list[Any] = []
        handler: Any = convert_exception_to_response(self._get_response)  # type: ignore[attr-defined]
        for path in reversed(middleware):
            try:
                instance = import_string(path)(handler)
            except MiddlewareNotUsed:
                continue
            if hasattr(instance, "process_view"):
                self._view_middleware.insert(0, instance.process_view)
            if hasattr(instance, "process_template_response"):
                self._template_response_middleware.append(instance.process_template_response)
            if hasattr(instance, "process_exception"):
                self._exception_middleware.append(instance.process_exception)
            handler = convert_exception_to_response(instance)
        self.chain: Callable[[HttpRequest], HttpResponseBase] = handler


class ApiStackMiddleware:
    """First in ``MIDDLEWARE``: sends API requests down the short stack."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        if not settings.MIDDLEWARE or settings.MIDDLEWARE[0] != SELF:
            # Anything before it would run twice for the API, or only for the console.
            raise ImproperlyConfigured(f"{SELF} must come first in MIDDLEWARE")
        self.console = get_response
        skipped = set(settings.CONSOLE_ONLY_MIDDLEWARE)
        self.api = _Stack([m for m in settings.MIDDLEWARE[1:] if m not in skipped])

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if is_api_path(request.path):
            return self.api.chain(request)
        return self.console(request)
