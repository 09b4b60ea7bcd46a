"""The admin site with the dashboard as its index (installed by broker.apps.ConsoleAdminConfig)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils import timezone

from broker.console.dashboard import dashboard_data


class ConsoleSite(admin.AdminSite):
    site_header = "QStash console"
    site_title = "QStash console"
    index_title = "Dashboard"
    index_template = "admin/console/index.html"

    def get_urls(self) -> list[Any]:
        from django.urls import path

        from broker.console.publish import publish_view

        return [
            path(
                "publish/",
                self.admin_view(lambda request: publish_view(self, request)),
                name="console_publish",
            ),
            *super().get_urls(),
        ]

    def index(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> TemplateResponse:
        context = {
            "dashboard": dashboard_data(timezone.now()),
            "can_publish": request.user.has_perm("broker.publish_message"),
            **(extra_context or {}),
        }
        return super().index(request, context)
