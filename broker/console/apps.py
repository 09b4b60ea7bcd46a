"""django.contrib.admin with the console's site, so the dashboard is the admin's index."""

from __future__ import annotations

from django.contrib.admin.apps import AdminConfig


class ConsoleAdminConfig(AdminConfig):
    default_site = "broker.console.site.ConsoleSite"
