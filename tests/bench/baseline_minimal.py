"""The publish benchmark's main baseline: the same JSON view behind ONE middleware.

Settings module ``tests.bench.baseline_minimal``, gunicorn target
``tests.bench.baseline_minimal:application``. The view and URL are
``baseline_site``'s; only the stack differs. The one middleware is
CommonMiddleware, the one the product's API stack shares with every Django site
(it sets Content-Length, which keep-alive needs on both sides alike). No apps, no
database.
"""

from __future__ import annotations

import os
from typing import Any

from tests.bench.baseline_site import ALLOWED_HOSTS, APPEND_SLASH, DEBUG, SECRET_KEY, USE_TZ

__all__ = ["ALLOWED_HOSTS", "APPEND_SLASH", "DEBUG", "SECRET_KEY", "USE_TZ", "application"]

INSTALLED_APPS: list[str] = []
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
ROOT_URLCONF = "tests.bench.baseline_site"
DATABASES: dict[str, Any] = {}

_app: Any = None


def application(environ: dict[str, Any], start_response: Any) -> Any:
    global _app
    if _app is None:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.bench.baseline_minimal")
        from django.core.wsgi import get_wsgi_application

        _app = get_wsgi_application()
    return _app(environ, start_response)
