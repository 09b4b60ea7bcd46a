from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("broker.urls")),
]

handler400 = "broker.api.errors.bad_request"
handler404 = "broker.api.errors.not_found"
handler500 = "broker.api.errors.server_error"
