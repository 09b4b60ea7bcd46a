"""The API and the console run different middleware stacks (qstash_site/stacks.py).

Requests go through ``settings.MIDDLEWARE`` as shipped, as gunicorn serves them, with
Django's CSRF checks enforced (the test client skips them unless asked).
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ImproperlyConfigured
from django.test import Client

from broker.models import Message
from tests.conftest import TEST_TOKEN

AUTH = {"Authorization": f"Bearer {TEST_TOKEN}"}
# SessionMiddleware deletes a session cookie that names no session; only it does.
BAD_SESSION = "sessionid=x"


@pytest.mark.django_db
def test_api_runs_no_console_middleware_and_needs_none_while_the_console_keeps_them() -> None:
    admin = User.objects.create_superuser("root", "root@example.com", "pw-0123456789")
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(admin)  # a session cookie, and no CSRF token, on every request

    published = browser.post(
        "/v2/publish/http://127.0.0.1:9/stacks",
        data=b"hello",
        content_type="text/plain",
        headers={**AUTH, "Cookie": BAD_SESSION},
    )
    assert published.status_code == 200, published.content
    assert Message.objects.filter(message_id=published.json()["messageId"]).exists()
    # No clickjacking, session or CSRF middleware touched the answer.
    assert "X-Frame-Options" not in published.headers
    assert "Set-Cookie" not in published.headers
    assert "Cookie" not in published.headers.get("Vary", "")

    # The console: a page carries X-Frame-Options and a CSRF cookie, the same stale
    # session cookie is deleted, and a POST without the CSRF token is refused.
    console = Client(enforce_csrf_checks=True)
    login_page = console.get("/admin/login/", headers={"Cookie": BAD_SESSION})
    assert login_page.status_code == 200
    assert login_page.headers["X-Frame-Options"] == "DENY"
    assert "csrftoken" in login_page.cookies
    assert login_page.cookies["sessionid"].value == ""  # deleted
    refused = console.post("/admin/login/", {"username": "root", "password": "pw-0123456789"})
    assert refused.status_code == 403
    assert "CSRF" in refused.content.decode()
    token = login_page.cookies["csrftoken"].value
    logged_in = console.post(
        "/admin/login/?next=/admin/",
        {"username": "root", "password": "pw-0123456789", "csrfmiddlewaretoken": token},
    )
    assert logged_in.status_code == 302
    assert logged_in.cookies["sessionid"].value
    assert console.get("/admin/").status_code == 200


@pytest.mark.django_db
def test_healthz_runs_the_api_stack() -> None:
    answer = Client().get("/healthz", headers={"Cookie": BAD_SESSION})
    assert answer.status_code == 200
    assert "X-Frame-Options" not in answer.headers
    assert "Set-Cookie" not in answer.headers


def test_the_stack_switch_must_come_first(settings: Any) -> None:
    settings.MIDDLEWARE = [*settings.MIDDLEWARE[1:], settings.MIDDLEWARE[0]]
    with pytest.raises(ImproperlyConfigured, match="must come first"):
        Client().get("/healthz")
