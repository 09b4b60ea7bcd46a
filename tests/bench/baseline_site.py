"""Baseline for the publish benchmark: the smallest honest Django JSON endpoint.

Settings, URLs, view and WSGI entry in one module
(``DJANGO_SETTINGS_MODULE=tests.bench.baseline_site``, gunicorn target
``tests.bench.baseline_site:application``). Installed apps and middleware are
Django's ``startproject`` defaults; no database is configured or touched.
"""

from __future__ import annotations

import os
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import re_path
from django.views.decorators.csrf import csrf_exempt

SECRET_KEY = os.environ.get("SECRET_KEY", "bench-baseline-" + "x" * 40)
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "tests.bench.baseline_site"
APPEND_SLASH = False
DATABASES: dict[str, Any] = {}
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"


@csrf_exempt  # an API view, like the product's DRF views
def publish(request: HttpRequest, destination: str) -> HttpResponse:
    if request.method != "POST":
        return JsonResponse({"error": "method not allowed"}, status=405)
    request.body  # noqa: B018  (read the body like the product does)
    return JsonResponse({"ok": True})


urlpatterns = [re_path(r"^v2/publish/(?P<destination>.+)$", publish)]

_app: Any = None


def application(environ: dict[str, Any], start_response: Any) -> Any:
    global _app
    if _app is None:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.bench.baseline_site")
        from django.core.wsgi import get_wsgi_application

        _app = get_wsgi_application()
    return _app(environ, start_response)
